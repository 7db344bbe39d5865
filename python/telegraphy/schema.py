"""JSON Schemas (2020-12) of event ``data``: model fields as :class:`~telegraphy.events.BaseEventModel` serialises
them (proto/PROTOCOL.md section 2, Django's ``DjangoJSONEncoder``), and the typed fields a custom event declares.

Only keywords that JSON Schema draft-07 shares with 2020-12 are produced (``type`` arrays, ``enum``,
``properties``, ``required``, ``additionalProperties``, ``items``, ``format``, ``pattern``, ``maxLength``,
``minimum``), so the same schema also serves as an AsyncAPI payload and as the source of TypeScript types.
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
import uuid
from typing import Any

__all__ = ["DIALECT", "ANY", "model_data_schema", "field_schema", "python_type_schema", "nullable"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ANY: dict[str, Any] = {}  # the schema every JSON value satisfies

# str(Decimal) as DjangoJSONEncoder writes it: "12.50", "-3", "0E-8", "1E+2".
DECIMAL = {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?([Ee][-+]?[0-9]+)?$",
           "description": "a decimal number written as a string"}
DATETIME = {"type": "string", "format": "date-time"}
DATE = {"type": "string", "format": "date"}
TIME = {"type": "string", "description": "a time of day, ISO 8601 (HH:MM[:ss[.mmm]])"}
DURATION = {"type": "string", "format": "duration"}
UUID = {"type": "string", "format": "uuid"}

_INTEGER_FIELDS = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
                   "SmallIntegerField"}
_POSITIVE_FIELDS = {"PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField"}
_STRING_FIELDS = {"CharField", "TextField", "SlugField", "EmailField", "URLField", "GenericIPAddressField",
                  "IPAddressField", "FilePathField"}
_BY_INTERNAL_TYPE: dict[str, dict[str, Any]] = {
    "FloatField": {"type": "number"},
    "BooleanField": {"type": "boolean"},
    "NullBooleanField": {"type": "boolean"},
    "DecimalField": DECIMAL,
    "DateTimeField": DATETIME,
    "DateField": DATE,
    "TimeField": TIME,
    "DurationField": DURATION,
    "UUIDField": UUID,
    "JSONField": ANY,
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also admits ``null``."""
    if not schema:
        return schema  # already any value
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], *([None] if None not in out["enum"] else [])]
    kind = out.get("type")
    if isinstance(kind, str) and kind != "null":
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    elif kind is None and "enum" not in out:
        return {"anyOf": [schema, {"type": "null"}]}
    return out


def _base_field_schema(field: Any) -> dict[str, Any]:
    from django.db.models import FileField

    if isinstance(field, FileField):
        return {"type": "string", "description": "the file's URL, or its name when it has no URL"}
    if field.is_relation:
        target = getattr(field, "target_field", None)
        return field_schema(target, null=False) if target is not None else ANY  # the related object's pk
    kind = field.get_internal_type()
    if kind in _INTEGER_FIELDS:
        return {"type": "integer"}
    if kind in _POSITIVE_FIELDS:
        return {"type": "integer", "minimum": 0}
    if kind in _STRING_FIELDS:
        schema: dict[str, Any] = {"type": "string"}
        if isinstance(getattr(field, "max_length", None), int) and kind != "GenericIPAddressField":
            schema["maxLength"] = field.max_length
        return schema
    if kind in _BY_INTERNAL_TYPE:
        return dict(_BY_INTERNAL_TYPE[kind])
    return {"description": f"a {kind} (no JSON Schema known for this field type)"}


def field_schema(field: Any, *, null: bool | None = None) -> dict[str, Any]:
    """The schema of one model field's serialised value: choices become an ``enum``; a nullable field (and a
    file field, whose empty value is written as null) admits ``null``."""
    from django.db.models import FileField

    schema = _base_field_schema(field)
    choices = getattr(field, "flatchoices", None) or []
    values = [value for value, _label in choices if isinstance(value, (str, int, float, bool))]
    if values and len(values) == len(choices):
        schema = {**schema, "enum": values}
        schema.pop("maxLength", None)
    if field.verbose_name and "description" not in schema:
        schema = {**schema, "title": str(field.verbose_name)}
    is_null = (field.null or isinstance(field, FileField)) if null is None else null
    return nullable(schema) if is_null else schema


def model_data_schema(event: Any) -> dict[str, Any]:
    """The schema of ``event.to_dict(instance)`` for a :class:`BaseEventModel` instance: ``pk`` plus the
    selected fields by name, every one always present. When the class overrides ``to_dict`` the payload is
    its own business: an object of unknown shape (declare ``schema`` on the class to describe it)."""
    from .events import BaseEventModel

    cls = type(event)
    if cls.to_dict is not BaseEventModel.to_dict:
        return {"type": "object", "description": f"{cls.__qualname__}.to_dict is overridden: declare `schema`"}
    own_values = cls.serialize_field is not BaseEventModel.serialize_field
    pk = event.opts.pk
    properties: dict[str, Any] = {"pk": field_schema(pk, null=False)}
    for field in event.get_fields():
        properties[field.name] = ANY if own_values else field_schema(field)
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_PY_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    decimal.Decimal: DECIMAL,
    datetime.datetime: DATETIME,
    datetime.date: DATE,
    datetime.time: TIME,
    datetime.timedelta: DURATION,
    uuid.UUID: UUID,
    type(None): {"type": "null"},
    dict: {"type": "object"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    typing.Any: ANY,
    object: ANY,
}


def python_type_schema(hint: Any) -> dict[str, Any]:
    """The schema of a value of Python type ``hint`` once JSON-encoded with Django's rules: ``str``, ``int``,
    ``float``, ``bool``, ``Decimal``, ``datetime``/``date``/``time``/``timedelta``, ``UUID``, ``list[X]``,
    ``dict[str, X]``, ``X | None``, ``Optional[X]``, ``Literal[...]``, ``Any``, a ``TypedDict``, or a dict of
    such (an object with these required properties). Raises ``TypeError`` for anything else."""
    if isinstance(hint, dict):
        return _object_schema({str(k): v for k, v in hint.items()}, set(map(str, hint)))
    if hint in _PY_SCALARS:
        return dict(_PY_SCALARS[hint])
    if isinstance(hint, type) and hasattr(hint, "__annotations__") and hasattr(hint, "__required_keys__"):
        hints = typing.get_type_hints(hint)
        return _object_schema(hints, set(hint.__required_keys__))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = python_type_schema(options[0]) if len(options) == 1 else {"anyOf": [python_type_schema(a) for a in options]}
        return nullable(inner) if len(options) < len(args) else inner
    if origin in (list, tuple, set, frozenset) and args:
        return {"type": "array", "items": python_type_schema(args[0])}
    if origin is dict and len(args) == 2:
        return {"type": "object", "additionalProperties": python_type_schema(args[1])}
    raise TypeError(f"no JSON Schema for the type {hint!r}: use str, int, float, bool, Decimal, datetime, date, "
                    "UUID, list[...], dict[str, ...], X | None, Literal[...], a TypedDict, or declare `schema`")


def _object_schema(hints: dict[str, Any], required: set[str]) -> dict[str, Any]:
    properties = {name: python_type_schema(hint) for name, hint in hints.items()}
    return {"type": "object", "properties": properties, "required": [n for n in properties if n in required],
            "additionalProperties": False}
