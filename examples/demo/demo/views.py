from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from telegraphy.filters import FilterError, check
from telegraphy.names import key_token

from . import chat as chat_rules
from .events import ChatMessage, ChatTyping, ItemEvents, ItemViewers
from .forms import ItemForm
from .models import Item


def visible_items(user):
    """Staff see every item, other users their own (exactly what their token allows them to receive)."""
    return Item.objects.all() if user.is_staff else Item.objects.filter(owner=user)


def item_pattern(user, pk=None):
    """The pattern a page subscribes to; it must be inside the user's allow patterns (see events.py)."""
    key = "*" if pk is None else key_token(pk)
    if user.is_staff:
        return "demo.item.>" if pk is None else f"demo.item.*.{key}"
    mine = f"demo.mine.{key_token(user.pk)}"
    return f"{mine}.>" if pk is None else f"{mine}.*.{key}"


def viewers_channel(item):
    """The presence channel of an item's page (events.ItemViewers): the same for its owner and the staff."""
    return ItemViewers.presence_channel(owner_id=key_token(item.owner_id), pk=key_token(item.pk))


# The tracker's toggle: query parameter (a Django lookup) -> the model field it reads.
TRACKER_LOOKUPS = {"owner": "owner", "price__gt": "price"}


def tracker_filter(query):
    """The tracker's filter from the query string (`?owner=7`, `?price__gt=10`): the same lookups select the
    rows with the ORM and, in the gateway, the live changes the page receives. Raises ValidationError."""
    lookups = {
        key: Item._meta.get_field(field).to_python(query[key]) for key, field in TRACKER_LOOKUPS.items() if key in query
    }
    try:
        return check(filter=lookups).get("filter", {})
    except FilterError as exc:
        raise ValidationError(str(exc)) from exc


def tracked_items(request):
    """The rows the tracker shows: the user's visible items that pass the filter, and the filter."""
    lookups = tracker_filter(request.GET)
    return visible_items(request.user).filter(**lookups).select_related("owner"), lookups


@login_required
def tracker(request):
    try:
        items, lookups = tracked_items(request)
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    page = {"pattern": item_pattern(request.user), "sub": "tracker", "user": request.user.pk, "filter": lookups}
    return render(request, "demo/tracker.html", {"items": items, "page": page})


@login_required
def item_list(request):
    """JSON for the tracker after it changed its filter: {"filter": ..., "items": [event data of each row]}."""
    try:
        items, lookups = tracked_items(request)
    except ValidationError as exc:
        return JsonResponse({"error": " ".join(exc.messages)}, status=400)
    events = ItemEvents()
    return JsonResponse({"filter": lookups, "items": [events.to_dict(item) for item in items]})


@login_required
def item_detail(request, pk):
    item = get_object_or_404(visible_items(request.user), pk=pk)
    page = {"pattern": item_pattern(request.user, pk), "viewers": viewers_channel(item), "user": request.user.pk}
    return render(request, "demo/item_detail.html", {"item": item, "page": page})


@login_required
def item_edit(request, pk=None):
    item = get_object_or_404(visible_items(request.user), pk=pk) if pk is not None else None
    form = ItemForm(request.POST or None, instance=item)
    if request.method == "POST" and form.is_valid():
        item = form.save(commit=False)
        if item.owner_id is None:
            item.owner = request.user
        item.save()
        return redirect("tracker")
    return render(request, "demo/item_form.html", {"form": form, "item": item})


@login_required
@require_POST
def item_delete(request, pk):
    get_object_or_404(visible_items(request.user), pk=pk).delete()
    return redirect("tracker")


def _check_room(room):
    if not chat_rules.valid_room(room):
        raise Http404("room names are 1..64 characters of [A-Za-z0-9_-]")


@login_required
def chat(request, room):
    _check_room(room)
    # The room's messages and its presence channel are one name (ChatMessage.presence = True); "is typing" is
    # a client publish on the room's typing name (ChatTyping, ephemeral), which the token's grant allows.
    page = {
        "pattern": ChatMessage.presence_channel(room=room),
        "typing": ChatTyping.event_name(room=room),
        "room": room,
    }
    context = {"room": room, "page": page, "recent": chat_rules.recent(room), "text_max": chat_rules.Message.TEXT_MAX}
    return render(request, "demo/chat.html", context)


@login_required
@require_POST
def chat_send(request, room):
    """The form's fallback without JavaScript (the page sends with ``tg.rpc("chat.send")`` over its socket):
    the same rules (demo/chat.py), then back to the room."""
    _check_room(room)
    try:
        chat_rules.post(request.user, room, request.POST.get("text", ""))
    except chat_rules.ChatError as exc:
        return HttpResponseBadRequest(exc.message)
    return redirect("chat", room=room)


@login_required
def events(request):
    """The event catalog as this user's token sees it: the page asks the gateway (`tg.events()`, PROTOCOL
    section 12) and lists what it may subscribe to, with each event's data schema."""
    return render(request, "demo/events.html", {"page": {}})
