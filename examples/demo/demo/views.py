from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from telegraphy.filters import FilterError, check
from telegraphy.names import is_valid_token, key_token

from .events import ChatMessage, ItemEvents, ItemViewers
from .forms import ChatForm, ItemForm
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
    if not is_valid_token(room):
        raise Http404("room names are one token of [A-Za-z0-9_-]")


@login_required
def chat(request, room):
    _check_room(room)
    # The room's messages and its presence channel are one name (ChatMessage.presence = True).
    page = {"pattern": ChatMessage.presence_channel(room=room)}
    return render(request, "demo/chat.html", {"room": room, "page": page})


@login_required
def events(request):
    """The event catalog as this user's token sees it: the page asks the gateway (`tg.events()`, PROTOCOL
    section 12) and lists what it may subscribe to, with each event's data schema."""
    return render(request, "demo/events.html", {"page": {}})


def _load_user(request):
    request.user.is_authenticated  # evaluates the lazy user (a database query) here, in a thread
    return request.user


async def chat_send(request, room):
    """An async view: publishing from async code is `await ChatMessage.asend(...)`."""
    # request.auser() exists from Django 5.0 on; 4.2 needs the thread.
    user = await request.auser() if hasattr(request, "auser") else await sync_to_async(_load_user)(request)
    if not user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=403)
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    _check_room(room)
    form = ChatForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("text is required")
    queued = await ChatMessage.asend({"user": user.get_username(), "text": form.cleaned_data["text"]}, room=room)
    return JsonResponse({"queued": queued})
