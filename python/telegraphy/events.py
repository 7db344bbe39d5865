"""Event classes: custom events (``BaseEvent``) and model events (``BaseEventModel``).

Declare them in ``<app>/events.py``; the telegraphy app imports that module of every installed app in
``AppConfig.ready()``. Each class is registered once; its ``allow_patterns(user)`` says which of its events a
user's token may subscribe to, and ``telegraphy.tokens.mint(user)`` grants the union over all classes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, ClassVar, Iterable

from . import emitting, names
from . import presence as presence_kv
from .conf import telegraphy_settings
from .publisher import apublish, encode_data, publish

logger = logging.getLogger("telegraphy")

__all__ = ["BaseEvent", "BaseEventModel", "registered", "unregister", "allow_patterns", "EventTemplate"]

ACTIONS = {"create": "created", "update": "updated", "delete": "deleted"}
PRESENT = "present"  # <base>.present.<key>: a model instance's presence channel, beside its action tokens
PRESENT_KEYWORDS = ("limit", "timeout")  # BaseEvent.present()'s own keywords: no name parameter may use them

# The check of outgoing data against its class's JSON Schema (telegraphy.validation, set by the app's ready() only
# while VALIDATE_DATA / DEBUG is on; None otherwise, so production events skip it entirely). Called with the event object, the event name and the data as JSON text;
# raises EventDataError. Kept as a hook so that this module does not depend on the catalog's schemas.
_data_check: Callable[[Any, str, str], None] | None = None


def set_data_check(check: Callable[[Any, str, str], None] | None) -> None:
    global _data_check
    _data_check = check


_registry_lock = threading.Lock()
_registry: dict[str, Any] = {}  # "module.QualName" -> event class instance


def registered() -> list[Any]:
    """The registered event class instances, in registration order."""
    with _registry_lock:
        return list(_registry.values())


def allow_patterns(user: Any) -> list[str]:
    """Union (in registration order, without duplicates) of what every event class grants ``user``."""
    result: list[str] = []
    for event in registered():
        for pattern in event.allow_patterns(user):
            names.validate_pattern(pattern)
            if pattern not in result:
                result.append(pattern)
    return result


def unregister(event_class: type) -> None:
    """Forget an event class (its model signals are disconnected). Mostly for tests."""
    key = f"{event_class.__module__}.{event_class.__qualname__}"
    with _registry_lock:
        old = _registry.pop(key, None)
        if old is not None and hasattr(old, "_disconnect"):
            old._disconnect()


def _register(instance: Any) -> None:
    """Register (or replace, when a module is imported again) an event class instance."""
    key = f"{type(instance).__module__}.{type(instance).__qualname__}"
    with _registry_lock:
        old = _registry.get(key)
        _registry[key] = instance
        if old is not None and hasattr(old, "_disconnect"):
            old._disconnect()
        if hasattr(instance, "_connect"):
            instance._connect()


class EventTemplate:
    """A dotted name whose tokens are literals or whole-token ``{parameter}`` placeholders."""

    def __init__(self, template: str):
        if not isinstance(template, str) or not template:
            raise ValueError(f"event name template must be a non-empty string, got {template!r}")
        self.template = template
        self.tokens: list[tuple[bool, str]] = []  # (is_param, text)
        for token in template.split("."):
            if token.startswith("{") and token.endswith("}") and names.is_valid_token(token[1:-1]):
                self.tokens.append((True, token[1:-1]))
            elif names.is_valid_token(token):
                self.tokens.append((False, token))
            else:
                raise ValueError(
                    f"invalid event name template {template!r}: each dotted part must be a token of "
                    f"[A-Za-z0-9_-] or a whole '{{param}}'"
                )
        self.params = [text for is_param, text in self.tokens if is_param]

    def render(self, values: dict[str, Any], *, escape: bool = False) -> str:
        missing = [p for p in self.params if p not in values]
        if missing:
            raise ValueError(f"event {self.template!r} needs parameter(s) {', '.join(missing)}")
        parts = []
        for is_param, text in self.tokens:
            if not is_param:
                parts.append(text)
                continue
            value = values[text]
            if escape:
                parts.append(names.key_token(value))
            else:
                parts.append(names.validate_token(str(value), f"value for {{{text}}} in {self.template!r}"))
        return names.check_joined(".".join(parts))  # every part is a valid token: only the size may be wrong

    def pattern(self) -> str:
        """The template with every parameter replaced by ``*``."""
        return ".".join("*" if is_param else text for is_param, text in self.tokens)


def _require_presence(event_class: type) -> None:
    if event_class.presence is not True:
        raise TypeError(
            f"{event_class.__qualname__} has presence = {event_class.presence!r}; set presence = True to give "
            "its events a presence channel"
        )


def _user_flag(user: Any, flag: str) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, flag, False))


class BaseEvent:
    """A custom event. Subclass with ``name = "chat.{room}.message"`` and send with
    ``ChatMessage.send(data, room="lobby")`` (parameters must be valid tokens).

    ``allowed(user)`` (default: authenticated users) decides whether ``allow_patterns(user)`` grants the
    name with every parameter as ``*``; override ``allow_patterns`` for finer grants (e.g. one room).

    ``presence = True``: the rendered name is also a presence channel (PROTOCOL section 11), e.g. a chat room
    page subscribes to ``chat.lobby.message`` with ``{presence: true}``; ``ChatMessage.present(room="lobby")``
    says who is there.
    """

    name: ClassVar[str] = ""
    abstract: ClassVar[bool] = True
    presence: ClassVar[bool] = False
    _template: ClassVar[EventTemplate]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        if not cls.name:
            raise TypeError(f"{cls.__qualname__} needs a name, e.g. name = \"chat.{{room}}.message\"")
        cls._template = EventTemplate(cls.name)
        _register(cls())

    @classmethod
    def event_name(cls, **params: Any) -> str:
        return cls._template.render(params)

    @classmethod
    def send(cls, data: Any = None, **params: Any) -> Any:
        """Publish ``data`` under the name rendered with ``params``. See :func:`telegraphy.publish`."""
        ack = params.pop("ack", False)
        name = cls.event_name(**params)
        cls._check_data(name, data)
        return publish(name, data, ack=ack)

    @classmethod
    async def asend(cls, data: Any = None, **params: Any) -> Any:
        ack = params.pop("ack", False)
        name = cls.event_name(**params)
        cls._check_data(name, data)
        return await apublish(name, data, ack=ack)

    @classmethod
    def _check_data(cls, name: str, data: Any) -> None:
        if _data_check is not None:
            with _registry_lock:
                event = _registry.get(f"{cls.__module__}.{cls.__qualname__}")
            if event is not None:
                _data_check(event, name, encode_data(data))

    # -- presence (presence = True)

    @classmethod
    def presence_channel(cls, **params: Any) -> str:
        """The presence channel: the event name rendered with ``params`` (a page subscribes to it with
        ``{presence: true}``). ``TypeError`` unless ``presence = True``."""
        _require_presence(cls)
        return cls.event_name(**params)

    @classmethod
    def present(cls, *, limit: int = 100, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Who is present on ``presence_channel(**params)``: see :func:`telegraphy.presence`."""
        return presence_kv.presence(cls.presence_channel(**params), limit=limit, timeout=timeout)

    @classmethod
    async def apresent(cls, *, limit: int = 100, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        return await presence_kv.apresence(cls.presence_channel(**params), limit=limit, timeout=timeout)

    @classmethod
    def present_stats(cls, *, timeout: float | None = None, **params: Any) -> dict[str, int]:
        """How many are present on ``presence_channel(**params)``: see :func:`telegraphy.presence_stats`."""
        return presence_kv.presence_stats(cls.presence_channel(**params), timeout=timeout)

    @classmethod
    async def apresent_stats(cls, *, timeout: float | None = None, **params: Any) -> dict[str, int]:
        return await presence_kv.apresence_stats(cls.presence_channel(**params), timeout=timeout)

    def allowed(self, user: Any) -> bool:
        return bool(user is not None and getattr(user, "is_authenticated", False))

    def allow_patterns(self, user: Any) -> list[str]:
        return [self._template.pattern()] if self.allowed(user) else []


class BaseEventModel:
    """Model events: ``<name>.<created|updated|deleted>.<key_token(pk)>`` with ``name`` defaulting to
    ``<app_label>.<model_name>``.

    ``name`` may use ``{attribute}`` placeholders filled (escaped like keys) from the instance, e.g.
    ``name = "shop.mine.{owner_id}"``. Events are published after the transaction commits; raw (fixture)
    saves are ignored. ``allowed(user)`` defaults to active staff users (model rows can be sensitive).

    ``presence = True``: each instance has a presence channel ``<name>.present.<key_token(pk)>``, inside the
    default grant ``<name pattern>.>``; ``presence_channel(instance)`` gives it, ``present(instance)`` says who
    is there (e.g. who else views this order).
    """

    model: ClassVar[Any] = None
    fields: ClassVar[Iterable[str] | None] = None
    exclude: ClassVar[Iterable[str]] = ()
    operations: ClassVar[Iterable[str]] = ("create", "update", "delete")
    name: ClassVar[str | None] = None
    abstract: ClassVar[bool] = True
    presence: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False) or cls.model is None:
            return
        cls.abstract = False
        _register(cls())

    def __init__(self) -> None:
        from django.apps import apps

        model = self.model
        if isinstance(model, str):
            model = apps.get_model(model)
            type(self).model = model
        self.opts = model._meta
        unknown = [op for op in self.operations if op not in ACTIONS]
        if unknown:
            raise ValueError(f"{type(self).__qualname__}.operations: unknown {unknown}; use {tuple(ACTIONS)}")
        self.template = EventTemplate(self.name or f"{self.opts.app_label}.{self.opts.model_name}")
        self._uid = f"telegraphy:{type(self).__module__}.{type(self).__qualname__}"
        # Worked out once per class rather than on every save (issue 25).
        self._operations = frozenset(self.operations)
        self._static_base = None if self.template.params else self.template.render({})
        cls = type(self)
        self._own_names = cls.event_name is BaseEventModel.event_name
        self._own_fields = cls.get_fields is BaseEventModel.get_fields
        self._fields: list[Any] | None = None  # get_fields(), unless a subclass overrides it
        self._own_serialize = cls.serialize_field is BaseEventModel.serialize_field
        from django.db.models import FileField

        self._file_fields = frozenset(f.name for f in self.opts.concrete_fields if isinstance(f, FileField))

    # -- signals

    def _connect(self) -> None:
        from django.db.models.signals import post_delete, post_save

        post_save.connect(self._on_save, sender=self.model, weak=False, dispatch_uid=self._uid)
        post_delete.connect(self._on_delete, sender=self.model, weak=False, dispatch_uid=self._uid)

    def _disconnect(self) -> None:
        from django.db.models.signals import post_delete, post_save

        post_save.disconnect(sender=self.model, dispatch_uid=self._uid)
        post_delete.disconnect(sender=self.model, dispatch_uid=self._uid)

    def _on_save(self, sender: Any, instance: Any, created: bool, raw: bool = False, using: str | None = None, **kw: Any) -> None:
        if raw:
            return
        self.emit(instance, "create" if created else "update", using=using)

    def _on_delete(self, sender: Any, instance: Any, using: str | None = None, **kw: Any) -> None:
        self.emit(instance, "delete", using=using)

    def emit(self, instance: Any, operation: str, using: str | None = None) -> None:
        """Serialise now (a deleted row loses its pk later), publish when the transaction commits; nothing
        inside ``muted()``, one event per object at the end of ``coalesced()``."""
        if emitting.is_muted():
            return
        coalescer = emitting.current_coalescer()
        if coalescer is None and operation not in self._operations:
            return
        try:
            prefix = telegraphy_settings.as_dict()["SUBJECT_PREFIX"]
            if coalescer is None:
                subject = f"{prefix}.{self._event_name(instance, operation)}"
            else:  # the merged event may end as any published operation: name them now, while the pk is there
                subjects = {op: f"{prefix}.{self._event_name(instance, op)}" for op in self._operations}
            payload = encode_data(self.to_dict(instance))
        except ValueError:
            logger.exception("telegraphy: %s event for %r not published", operation, instance)
            return
        if _data_check is not None:
            name = subject if coalescer is None else subjects.get(operation, f"{prefix}.{type(self).__qualname__}")
            _data_check(self, name[len(prefix) + 1:], payload)
        if coalescer is None:
            emitting.after_commit(subject, payload, using)
        else:
            key = (self._uid, names.key_token(instance.pk))
            coalescer.add(key, operation, subjects, payload, using, self._operations)

    # -- naming, payload, permissions (override freely)

    def _event_name(self, instance: Any, operation: str) -> str:
        if self._own_names:
            return self._instance_name(instance, ACTIONS[operation])
        return names.validate_name(self.event_name(instance, operation))

    def _instance_name(self, instance: Any, middle: str) -> str:
        """``<rendered name>.<middle>.<key_token(pk)>``: an event name or the presence channel."""
        base = self._static_base
        if base is None:
            base = self.template.render({p: getattr(instance, p) for p in self.template.params}, escape=True)
        return names.check_joined(f"{base}.{middle}.{names.key_token(instance.pk)}")

    def event_name(self, instance: Any, operation: str) -> str:
        return self._instance_name(instance, ACTIONS[operation])

    # -- presence (presence = True)

    def presence_channel(self, instance: Any) -> str:
        """``<rendered name>.present.<key_token(pk)>``. ``TypeError`` unless ``presence = True``; ``ValueError``
        for an unsaved instance."""
        _require_presence(type(self))
        if instance.pk is None:
            raise ValueError(f"this {type(instance).__name__} has no primary key yet: save it before asking for its "
                             "presence channel")
        return self._instance_name(instance, PRESENT)

    def present(self, instance: Any, *, limit: int = 100, timeout: float | None = None) -> dict[str, Any]:
        """Who is present on ``presence_channel(instance)``: see :func:`telegraphy.presence`."""
        return presence_kv.presence(self.presence_channel(instance), limit=limit, timeout=timeout)

    async def apresent(self, instance: Any, *, limit: int = 100, timeout: float | None = None) -> dict[str, Any]:
        return await presence_kv.apresence(self.presence_channel(instance), limit=limit, timeout=timeout)

    def present_stats(self, instance: Any, *, timeout: float | None = None) -> dict[str, int]:
        """How many are present on ``presence_channel(instance)``: see :func:`telegraphy.presence_stats`."""
        return presence_kv.presence_stats(self.presence_channel(instance), timeout=timeout)

    async def apresent_stats(self, instance: Any, *, timeout: float | None = None) -> dict[str, int]:
        return await presence_kv.apresence_stats(self.presence_channel(instance), timeout=timeout)

    def get_fields(self) -> list[Any]:
        selected = None if self.fields in (None, "__all__") else set(self.fields)
        excluded = set(self.exclude or ())
        return [
            f
            for f in self.opts.concrete_fields
            if (selected is None or f.name in selected or f.attname in selected)
            and f.name not in excluded
            and f.attname not in excluded
        ]

    def serialize_field(self, field: Any, instance: Any) -> Any:
        from django.db.models import FileField

        if isinstance(field, FileField):
            file = getattr(instance, field.attname)
            if not file:
                return None
            try:
                return file.url
            except (ValueError, NotImplementedError):
                return file.name
        return field.value_from_object(instance)  # a foreign key gives the related pk

    def to_dict(self, instance: Any) -> dict[str, Any]:
        """The payload: selected concrete fields by name, plus ``pk``. JSON-encoded with Django's rules."""
        fields = self._fields
        if fields is None:
            fields = self.get_fields()
            if self._own_fields:  # kept; an overridden get_fields() is asked every time, as it always was
                self._fields = fields
        data: dict[str, Any] = {"pk": instance.pk}
        if self._own_serialize:
            file_fields = self._file_fields
            for field in fields:
                name = field.name
                if name in file_fields:
                    data[name] = self.serialize_field(field, instance)
                else:
                    data[name] = field.value_from_object(instance)  # a foreign key gives the related pk
            return data
        for field in fields:
            data[field.name] = self.serialize_field(field, instance)
        return data

    def allowed(self, user: Any) -> bool:
        return _user_flag(user, "is_staff") and bool(getattr(user, "is_active", True))

    def allow_patterns(self, user: Any) -> list[str]:
        return [f"{self.template.pattern()}.>"] if self.allowed(user) else []

