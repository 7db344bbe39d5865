"""Outgoing event data checked against its class's JSON Schema (the catalog entry's ``data``, PROTOCOL section
12), so that a model field added, renamed or retyped without the schema following fails the project's tests and
its DEBUG runs instead of the browsers and the other-language consumers that rely on the catalog.

On when ``TELEGRAPHY["VALIDATE_DATA"]`` is true, or, when it is ``None`` (the default), when Django's ``DEBUG``
is: the check runs where the event is emitted (``BaseEvent.send``, a model save's ``emit``) and raises
:class:`~telegraphy.exceptions.EventDataError`. Off (production), the check is not hooked in at all. Needs
the ``jsonschema`` package (``pip install jsonschema``; a system check warns when it is missing and the check is
wanted). Validators are built once per class (the schema comes from :func:`telegraphy.catalog.entry_of`).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from . import catalog, events
from .conf import telegraphy_settings
from .exceptions import EventDataError

__all__ = ["enabled", "available", "check", "install"]

_lock = threading.Lock()
_validators: dict[type, Any] = {}
_enabled: bool | None = None  # cached; reset when DEBUG or TELEGRAPHY changes


def available() -> bool:
    """Whether ``jsonschema`` can be imported."""
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return True


def wanted() -> bool:
    """What the settings ask for: ``VALIDATE_DATA``, or ``DEBUG`` when it is ``None``."""
    setting = telegraphy_settings.as_dict()["VALIDATE_DATA"]
    if setting is None:
        from django.conf import settings

        return bool(getattr(settings, "DEBUG", False))
    return bool(setting)


def enabled() -> bool:
    """Whether outgoing data is checked now (wanted and ``jsonschema`` importable); cached."""
    global _enabled
    if _enabled is None:
        _enabled = wanted() and available()
    return _enabled


def _validator(event: Any) -> Any:
    cls = type(event)
    with _lock:
        validator = _validators.get(cls)
    if validator is None:
        from jsonschema import Draft202012Validator, FormatChecker

        schema = catalog.entry_of(event)["data"]
        validator = Draft202012Validator(schema, format_checker=FormatChecker())
        with _lock:
            _validators[cls] = validator
    return validator


def check(event: Any, name: str, payload: str) -> None:
    """Raises :class:`EventDataError` when ``payload`` (the data as published, JSON text) does not match the
    schema of ``event``'s class; nothing when the check is off."""
    if not enabled():
        return
    errors = list(_validator(event).iter_errors(json.loads(payload)))
    if errors:
        first = min(errors, key=lambda e: (len(e.absolute_path), str(list(e.absolute_path))))
        path = "".join(f"[{p!r}]" for p in first.absolute_path)
        raise EventDataError(name, path, first.message)


def reset() -> None:
    """Forget the cached state and validators (settings changed, or a class was redefined), and hook
    :func:`check` into the event classes only when it is on: off, an event pays nothing (not even encoding its
    data a second time)."""
    global _enabled
    with _lock:
        _enabled = None
        _validators.clear()
    events.set_data_check(check if enabled() else None)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DEBUG", "TELEGRAPHY"):
        reset()


def install() -> None:
    """Hooks :func:`check` into the event classes when it is on, now and whenever DEBUG or TELEGRAPHY change
    (the app's ``ready()``)."""
    from django.core.signals import setting_changed

    setting_changed.connect(_on_setting_changed, dispatch_uid="telegraphy-validation-settings-changed")
    reset()
