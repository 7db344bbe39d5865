"""The event catalog (proto/PROTOCOL.md section 12): one entry per declared event class, kept in the JetStream
KV bucket ``telegraphy_catalog`` so that gateways can list and check events, and publishers in any language can
register theirs with a plain KV put.

    from telegraphy import catalog
    catalog.build()             # -> Catalog(entries=[{...}], problems=[...]) from the registered classes
    catalog.sync()              # write this deploy's entries, remove the stale ones it owns (bounded, CAS)

An entry names its ``owner`` (one deploy's identity, :func:`default_owner`) and the ``generation`` of the deploy
that wrote it (:func:`default_generation`): a sync never overwrites nor deletes an entry of a newer generation,
so an older deploy still running beside a newer one cannot undo it. Nothing here runs on import or in a
request: ``run_telegraph``, ``telegraphy_check`` and ``telegraphy_catalog --sync`` call :func:`sync_quietly`
or :func:`sync`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sys
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import constants, names
from .events import ACTIONS, PRESENT, BaseEventModel, EventTemplate, registered
from .exceptions import CatalogError, PublishError
from .kv_replay import current_entries
from .nats_link import NatsLink, get_link
from .schema import ANY, model_data_schema, python_type_schema

__all__ = [
    "BUCKET", "FORMAT", "MAX_ENTRY_BYTES", "MAX_PATTERNS", "MAX_DESCRIPTION_CHARS", "MAX_ENTRIES_READ",
    "CatalogError", "Catalog", "SyncReport", "overlaps", "template_pattern", "entry_key", "encode_entry",
    "check_entry", "build", "default_owner", "default_generation", "plan_sync", "sync", "sync_quietly", "read",
]

BUCKET = constants.CATALOG_BUCKET_NAME  # gateway catalog.bucket
FORMAT = constants.CATALOG_FORMAT  # the entry format of this section; a reader leaves entries of another format alone
MAX_ENTRY_BYTES = constants.CATALOG_MAX_ENTRY_BYTES  # one entry's JSON value, checked before it is parsed
MAX_PATTERNS = constants.CATALOG_MAX_PATTERNS
MAX_DESCRIPTION_CHARS = constants.CATALOG_MAX_DESCRIPTION_CHARS
MAX_ENTRIES_READ = 10000  # most entries one read or sync looks at (a bound on its work)
MAX_SAFE_INTEGER = 2**53 - 1
GENERATION_ENV = "TELEGRAPHY_CATALOG_GENERATION"
OWNER_ENV = "TELEGRAPHY_CATALOG_OWNER"
KINDS = ("model", "custom")

_OWNER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SYNC_TIMED_OUT = "catalog sync timed out"


# ------------------------------------------------------------------------------------------- the rules


def overlaps(a: str, b: str) -> bool:
    """True when some event name matches both patterns ``a`` and ``b`` (both assumed valid): token by token,
    a ``>`` on either side overlaps whatever is left (at least one token), ``*`` overlaps any token, literals
    must be equal; both must run out together."""
    x, y = a.split("."), b.split(".")
    for i in range(max(len(x), len(y))):
        if i >= len(x) or i >= len(y):
            return False
        if x[i] == ">" or y[i] == ">":
            return True
        if x[i] != "*" and y[i] != "*" and x[i] != y[i]:
            return False
    return True


def template_pattern(name: str) -> str:
    """The pattern of a name template: every ``{param}`` token as ``*``. ``ValueError`` for a bad template."""
    template = EventTemplate(name)
    if len(set(template.params)) != len(template.params):
        raise ValueError(f"event name template {name!r} repeats a parameter")
    return names.validate_pattern(template.pattern())


def entry_key(owner: str, name: str) -> str:
    """The KV key of ``owner``'s entry for template ``name``: ``<owner>.<template pattern, * written as =>``."""
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise ValueError(f"invalid catalog owner {owner!r}: expected 1..64 of [A-Za-z0-9_-]")
    return owner + "." + template_pattern(name).replace("*", "=")


def encode_entry(entry: dict[str, Any]) -> bytes:
    """The KV value of an entry: compact UTF-8 JSON with sorted keys (equal entries give equal bytes)."""
    return json.dumps(entry, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False).encode()


def _fail(message: str) -> None:
    raise CatalogError("invalid", message)


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SAFE_INTEGER


def check_entry(value: bytes, key: str | None = None) -> dict[str, Any] | None:
    """Parse and check one KV value (PROTOCOL section 12, in this order: size, JSON, format, fields, key).
    Returns the entry, None for an entry of another ``format`` (left alone), or raises :class:`CatalogError`."""
    if len(value) > MAX_ENTRY_BYTES:
        raise CatalogError("too_big", f"{len(value)} bytes, more than {MAX_ENTRY_BYTES}")
    try:
        entry = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CatalogError("not_json", "not a UTF-8 JSON document") from None
    if not isinstance(entry, dict):
        raise CatalogError("not_json", "not a JSON object")
    if entry.get("format") != FORMAT:
        if _is_int(entry.get("format"), FORMAT + 1):
            return None
        _fail(f"format must be {FORMAT}")
    if not isinstance(entry.get("owner"), str) or not _OWNER.fullmatch(entry["owner"]):
        _fail("owner must be 1..64 of [A-Za-z0-9_-]")
    for name, low in (("generation", 0), ("version", 1)):
        if not _is_int(entry.get(name), low):
            _fail(f"{name} must be an integer in {low}..2^53-1")
    try:
        template_pattern(entry.get("name"))  # type: ignore[arg-type]
    except ValueError as exc:
        _fail(f"name: {exc}")
    patterns = entry.get("patterns")
    if (not isinstance(patterns, list) or not 1 <= len(patterns) <= MAX_PATTERNS
            or not all(names.is_valid_pattern(p) for p in patterns) or len(set(patterns)) != len(patterns)):
        _fail(f"patterns must be 1..{MAX_PATTERNS} distinct valid patterns")
    kind, operations = entry.get("kind"), entry.get("operations")
    if kind not in KINDS:
        _fail(f"kind must be one of {KINDS}")
    if (not isinstance(operations, list) or not all(op in ACTIONS for op in operations)
            or len(set(operations)) != len(operations) or (kind == "model") != bool(operations)):
        _fail("operations must be distinct values of create/update/delete, at least one for a model entry and "
              "none for a custom one")
    description = entry.get("description")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        _fail(f"description must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    if not isinstance(entry.get("data"), (dict, bool)):
        _fail("data must be a JSON Schema (an object or a boolean)")
    presence = entry.get("presence")
    if presence is not None:
        try:
            template_pattern(presence)
        except ValueError as exc:
            _fail(f"presence: {exc}")
    if key is not None and key != entry_key(entry["owner"], entry["name"]):
        raise CatalogError("key_mismatch", f"key {key!r} is not {entry_key(entry['owner'], entry['name'])!r}")
    return entry


# ----------------------------------------------------------------------------- entries of this process


@dataclass
class Catalog:
    """Entries of the registered event classes (key -> entry) and what could not be catalogued."""

    owner: str
    generation: int
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _description(cls: type, fallback: str) -> str:
    doc = getattr(cls, "description", None)
    if doc is None:
        doc = cls.__dict__.get("__doc__")  # its own docstring, not an inherited one
    text = inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else fallback
    return text[:MAX_DESCRIPTION_CHARS]


def _version(cls: type) -> int:
    version = getattr(cls, "version", 1)
    if not _is_int(version, 1):
        raise ValueError(f"{cls.__qualname__}.version must be a positive integer, got {version!r}")
    return version


def _free(template: EventTemplate, wanted: str) -> str:
    """A parameter name not already used by the template (``key``, else ``key_``...)."""
    while wanted in template.params:
        wanted += "_"
    return wanted


def _model_entry(event: Any) -> dict[str, Any]:
    cls = type(event)
    template = event.template
    action, key = _free(template, "action"), _free(template, "key")
    base = template.pattern()
    operations = [op for op in ACTIONS if op in tuple(event.operations)]
    patterns = [f"{base}.{ACTIONS[op]}.*" for op in operations]
    presence = None
    if cls.presence is True:
        presence = f"{template.template}.{PRESENT}.{{{key}}}"
        patterns.append(f"{base}.{PRESENT}.*")
    schema = getattr(cls, "schema", None)
    return {
        "name": f"{template.template}.{{{action}}}.{{{key}}}",
        "patterns": patterns,
        "kind": "model",
        "operations": operations,
        "description": _description(cls, f"{event.opts.verbose_name} {'/'.join(ACTIONS[op] for op in operations)}"),
        "data": schema if schema is not None else model_data_schema(event),
        "presence": presence,
        "version": _version(cls),
    }


def _custom_entry(event: Any) -> dict[str, Any]:
    cls = type(event)
    schema = getattr(cls, "schema", None)
    if schema is None:
        fields = getattr(cls, "fields", None)
        schema = python_type_schema(fields) if fields is not None else ANY
    return {
        "name": cls.name,
        "patterns": [cls._template.pattern()],
        "kind": "custom",
        "operations": [],
        "description": _description(cls, ""),
        "data": schema,
        "presence": cls.name if cls.presence is True else None,
        "version": _version(cls),
    }


def entry_of(event: Any) -> dict[str, Any]:
    """The catalog entry (without owner and generation) of a registered event class instance."""
    return _model_entry(event) if isinstance(event, BaseEventModel) else _custom_entry(event)


def build(owner: str | None = None, generation: int | None = None, events: Iterable[Any] | None = None) -> Catalog:
    """The entries of the registered event classes (or ``events``), each checked as a reader would check it; a
    class that cannot be catalogued is a problem (reported), never an exception."""
    owner = default_owner() if owner is None else owner
    generation = default_generation() if generation is None else generation
    entry_key(owner, "x")  # ValueError for a bad owner, before anything else
    if not _is_int(generation, 0):
        raise ValueError(f"generation must be an integer in 0..2^53-1, got {generation!r}")
    result = Catalog(owner, generation)
    for event in registered() if events is None else events:
        what = f"{type(event).__module__}.{type(event).__qualname__}"
        try:
            entry = {**entry_of(event), "format": FORMAT, "owner": owner, "generation": generation}
            key = entry_key(owner, entry["name"])
            check_entry(encode_entry(entry), key)
        except (ValueError, TypeError) as exc:
            result.problems.append(f"{what}: {exc}")
            continue
        if key in result.entries:
            result.problems.append(f"{what}: {entry['name']!r} is already declared by another class (key {key!r})")
            continue
        result.entries[key] = entry
    return result


def default_owner() -> str:
    """``$TELEGRAPHY_CATALOG_OWNER``, else ``django-<top package of DJANGO_SETTINGS_MODULE>`` (one owner per
    project: deploys of the same project replace each other's entries; other projects' stay)."""
    configured = os.environ.get(OWNER_ENV)
    if configured:
        return configured
    from django.conf import settings

    # Under override_settings SETTINGS_MODULE reads None: the environment still names the module.
    module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE") or "project"
    return "django-" + re.sub(r"[^A-Za-z0-9_-]", "_", module.split(".")[0])[:57]


def default_generation() -> int:
    """``$TELEGRAPHY_CATALOG_GENERATION`` (a deploy sets it, e.g. to its commit time ``git log -1 --format=%ct``
    or a build number), else the newest modification time (whole seconds) of the source files that define the
    registered event classes and their models: the same for every process running the same code, newer for
    newer code."""
    configured = os.environ.get(GENERATION_ENV)
    if configured:
        if not configured.isdigit() or not _is_int(int(configured), 0):
            raise ValueError(f"${GENERATION_ENV} must be an integer in 0..2^53-1, got {configured!r}")
        return int(configured)
    newest = 0
    for event in registered():
        classes = [type(event)] + ([event.model] if isinstance(event, BaseEventModel) else [])
        for cls in classes:
            path = getattr(sys.modules.get(cls.__module__), "__file__", None)
            try:
                newest = max(newest, int(os.stat(path).st_mtime)) if path else newest
            except OSError:
                continue
    return newest


# ------------------------------------------------------------------------------------------------ sync


@dataclass
class SyncReport:
    """What a sync did, by key."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_newer: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "<key>: <reason>", left in place
    conflicts: list[str] = field(default_factory=list)  # changed by someone else meanwhile: left, next sync retries
    problems: list[str] = field(default_factory=list)  # classes that could not be catalogued

    def summary(self) -> str:
        parts = [f"{len(getattr(self, n))} {n.replace('_', ' ')}" for n in
                 ("written", "unchanged", "kept_newer", "removed", "invalid", "conflicts", "problems")]
        return "catalog: " + ", ".join(parts)


def _classify(value: bytes, key: str) -> tuple[str, dict[str, Any] | None, str]:
    """``("valid", entry, "")``, ``("other_format", None, "")`` or ``("invalid", None, reason)``."""
    try:
        entry = check_entry(value, key)
    except CatalogError as exc:
        return "invalid", None, f"{exc.reason}: {exc}"
    return ("valid", entry, "") if entry is not None else ("other_format", None, "")


def plan_sync(owner: str, generation: int, mine: dict[str, bytes],
              existing: dict[str, bytes]) -> dict[str, list[str]]:
    """The decisions of a sync (PROTOCOL section 12) from this deploy's entries and the values now under
    ``<owner>.>``, by key: ``write`` (create or compare-and-set), ``unchanged``, ``kept_newer`` (a newer
    generation or another format holds the key), ``remove`` (stale: this owner's, an older generation, not in
    ``mine``), ``keep`` (not in ``mine`` but not provably older), ``invalid`` (unreadable: left alone)."""
    plan: dict[str, list[str]] = {k: [] for k in ("write", "unchanged", "kept_newer", "remove", "keep", "invalid")}
    for key in sorted(set(mine) | set(existing)):
        if key not in existing:
            plan["write"].append(key)
            continue
        state, entry, _reason = _classify(existing[key], key)
        if state == "invalid":
            plan["invalid" if key not in mine else "write"].append(key)
        elif state == "other_format":
            plan["kept_newer" if key in mine else "keep"].append(key)
        elif key in mine:
            if entry["generation"] > generation:
                plan["kept_newer"].append(key)
            else:
                plan["unchanged" if existing[key] == mine[key] else "write"].append(key)
        else:
            plan["remove" if entry["owner"] == owner and entry["generation"] < generation else "keep"].append(key)
    return plan


async def _read_values(kv: Any, subject_filter: str, deadline: float) -> tuple[dict[str, tuple[bytes, int]], bool]:
    """key -> (value, revision) under ``subject_filter``, at most MAX_ENTRIES_READ (then truncated)."""
    found: dict[str, tuple[bytes, int]] = {}
    async with aclosing(current_entries(kv, subject_filter, deadline)) as entries:
        async for entry in entries:
            if entry.key not in found and len(found) >= MAX_ENTRIES_READ:
                return found, True
            found[entry.key] = (entry.value or b"", entry.revision)
    return found, False


async def _apply(link: NatsLink, bucket: str, catalog: Catalog, timeout: float) -> SyncReport:
    from nats.js.errors import KeyWrongLastSequenceError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    nc = await link.wait_connected(timeout)
    kv = await link.bucket(nc, bucket, 0, timeout)
    existing, truncated = await _read_values(kv, f"{catalog.owner}.>", deadline)
    mine = {key: encode_entry(entry) for key, entry in catalog.entries.items()}
    plan = plan_sync(catalog.owner, catalog.generation, mine, {k: v for k, (v, _r) in existing.items()})
    report = SyncReport(unchanged=plan["unchanged"], kept_newer=plan["kept_newer"], problems=list(catalog.problems))
    report.invalid = [f"{k}: {_classify(existing[k][0], k)[2]}" for k in plan["invalid"]]
    if truncated:
        report.problems.append(f"more than {MAX_ENTRIES_READ} entries under {catalog.owner}.>: stale removal skipped")
        plan["remove"] = []

    async def guarded(key: str, done: list[str], action: Any) -> None:
        try:
            await asyncio.wait_for(action, max(deadline - loop.time(), 0.01))
            done.append(key)
        except (KeyWrongLastSequenceError, asyncio.TimeoutError) as exc:
            report.conflicts.append(f"{key}: {type(exc).__name__}")
        except Exception as exc:  # a compare-and-set delete refused, the bucket gone...: the next sync retries
            report.conflicts.append(f"{key}: {type(exc).__name__}: {exc}")

    for key in plan["write"]:
        action = kv.update(key, mine[key], last=existing[key][1]) if key in existing else kv.create(key, mine[key])
        await guarded(key, report.written, action)
    for key in plan["remove"]:
        await guarded(key, report.removed, kv.delete(key, last=existing[key][1]))
    return report


def sync(*, owner: str | None = None, generation: int | None = None, bucket: str = BUCKET,
         timeout: float | None = None) -> SyncReport:
    """Write this deploy's entries to the catalog bucket (created when missing) and remove the stale ones it
    owns, all within ``timeout`` (default PUBLISH_TIMEOUT). Raises ``ValueError`` for a bad owner or
    generation, :class:`telegraphy.PublishError` when NATS is unreachable or does not answer in time."""
    catalog = build(owner, generation)
    link = get_link()
    limit = link.timeout if timeout is None else timeout
    try:
        return link.call(lambda: _apply(link, bucket, catalog, limit), limit, _SYNC_TIMED_OUT)
    except BaseException:
        link.forget_bucket(bucket)
        raise


def sync_quietly(write: Any, *, timeout: float | None = None) -> SyncReport | None:
    """:func:`sync` for the commands that start or check a deploy: a failure is reported through ``write``
    (a one-line message), never raised; returns the report or None."""
    try:
        report = sync(timeout=timeout)
    except (PublishError, ConnectionError, ValueError, OSError) as exc:
        write(f"catalog not synced: {exc}")
        return None
    write(report.summary())
    for line in report.problems + report.invalid:
        write(f"catalog: {line}")
    return report


async def _read_all(link: NatsLink, bucket: str, timeout: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    from nats.js.errors import BucketNotFoundError

    loop = asyncio.get_running_loop()
    nc = await link.wait_connected(timeout)
    try:
        kv = await asyncio.wait_for(nc.jetstream(timeout=timeout).key_value(bucket), timeout)
    except BucketNotFoundError:
        return {}, []
    values, truncated = await _read_values(kv, ">", loop.time() + timeout)
    entries: dict[str, dict[str, Any]] = {}
    problems = [f"more than {MAX_ENTRIES_READ} entries: the rest was not read"] if truncated else []
    for key, (value, _revision) in sorted(values.items()):
        state, entry, reason = _classify(value, key)
        if state == "valid":
            entries[key] = entry  # type: ignore[assignment]
        elif state == "invalid":
            problems.append(f"{key}: {reason}")
    return entries, problems


def read(*, bucket: str = BUCKET, timeout: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every valid entry in the bucket, by key (all owners), and one line per invalid entry (skipped, never
    fatal). A missing bucket is an empty catalog. Raises :class:`telegraphy.PublishError` when NATS does not
    answer within ``timeout``."""
    link = get_link()
    limit = link.timeout if timeout is None else timeout
    return link.call(lambda: _read_all(link, bucket, limit), limit, "catalog read timed out")
