"""``manage.py telegraphy_asyncapi``: an AsyncAPI 3.0 document of this project's events (JSON).

One channel per catalog entry (proto/PROTOCOL.md section 12): its address is the event's name template with
its parameters, its message the gateway's ``event`` frame whose ``data`` follows the entry's schema. The
servers are the gateway's WebSocket and SSE endpoints (from GATEWAY_URL / SSE_URL); the security scheme is the
connect token. ``-o FILE`` writes the file instead of stdout. Validate it with ``tools/asyncapi-check``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand

from ... import catalog
from ...conf import telegraphy_settings as ts
from ...events import ACTIONS, EventTemplate
from .telegraphy_catalog import build_or_fail, write_output

ASYNCAPI_VERSION = "3.0.0"
SECURITY = {
    "type": "apiKey",
    "in": "user",
    "description": "A single-use connect token (tg1...) minted by Django (telegraphy.tokens.mint), sent in the "
                   "first frame {\"type\":\"connect\",\"token\":...} (PROTOCOL section 4); on SSE inside the "
                   "frames parameter or the X-Telegraphy-Frames header. Its allow patterns say what it may "
                   "subscribe to.",
}


def _endpoint(url: str, default_path: str) -> tuple[str, str, str]:
    """(protocol, host, pathname) of a gateway URL; a same-origin path gets host ``localhost``."""
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    return scheme, parts.netloc or "localhost", parts.path or default_path


def servers() -> dict[str, Any]:
    ws_scheme, host, ws_path = _endpoint(ts.GATEWAY_URL, "/ws")
    if ts.SSE_URL:
        sse_scheme, sse_host, sse_path = _endpoint(ts.SSE_URL, "/sse")
    else:  # the JS client's default: the WebSocket URL with /ws -> /sse and ws(s) -> http(s)
        sse_scheme = {"ws": "http", "wss": "https"}.get(ws_scheme, ws_scheme)
        sse_host, sse_path = host, re.sub(r"/ws$", "", ws_path) + "/sse"
    security = [{"$ref": "#/components/securitySchemes/token"}]
    return {
        "websocket": {"host": host, "protocol": ws_scheme if ws_scheme in ("ws", "wss") else "wss",
                      "pathname": ws_path, "description": "Telegraphy gateway, WebSocket (PROTOCOL section 3)",
                      "security": security},
        "sse": {"host": sse_host, "protocol": sse_scheme if sse_scheme in ("http", "https") else "https",
                "pathname": sse_path, "description": "Telegraphy gateway, Server-Sent Events (PROTOCOL section 10.1)",
                "security": security},
    }


def _parameters(entry: dict[str, Any]) -> dict[str, Any]:
    params = EventTemplate(entry["name"]).params
    result: dict[str, Any] = {p: {"description": f"the {p} token of the event name"} for p in params}
    if entry["kind"] == "model":
        action, key = params[-2], params[-1]
        result[action] = {"enum": [ACTIONS[op] for op in entry["operations"]], "description": "what happened"}
        result[key] = {"description": "the object's primary key as a name token (PROTOCOL section 2)"}
    return result


def _frame(entry: dict[str, Any]) -> dict[str, Any]:
    """The ``event`` frame that carries the entry's events (PROTOCOL section 3)."""
    return {
        "type": "object",
        "properties": {
            "type": {"const": "event"},
            "sub": {"type": "string", "description": "the subscription that matched"},
            "name": {"type": "string", "description": f"an event name of {entry['name']}"},
            "data": entry["data"],
            "seq": {"type": "integer", "description": "stream position (history on, section 7)"},
            "epoch": {"type": "string"},
        },
        "required": ["type", "sub", "name", "data"],
    }


def document(entries: list[dict[str, Any]], title: str, version: str) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for entry in entries:
        ident = re.sub(r"[^A-Za-z0-9_-]", "_", catalog.template_pattern(entry["name"]).replace("*", "x"))
        while ident in channels:
            ident += "_"
        description = entry["description"] or f"{entry['kind']} event {entry['name']}"
        messages[ident] = {
            "name": entry["name"],
            "title": entry["name"],
            "summary": description.splitlines()[0][:200],
            "description": description,
            "contentType": "application/json",
            "payload": _frame(entry),
            "x-telegraphy-version": entry["version"],
            "x-telegraphy-patterns": entry["patterns"],
        }
        channels[ident] = {
            "address": entry["name"],
            "title": entry["name"],
            "description": description + (f"\n\nPresence channel: {entry['presence']}" if entry["presence"] else ""),
            "parameters": _parameters(entry),
            "messages": {"event": {"$ref": f"#/components/messages/{ident}"}},
        }
        operations[f"receive_{ident}"] = {
            "action": "receive",
            "title": f"Subscribe to {entry['name']}",
            "channel": {"$ref": f"#/channels/{ident}"},
            "messages": [{"$ref": f"#/channels/{ident}/messages/event"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version,
                 "description": "Events pushed by the Telegraphy gateway (generated by manage.py telegraphy_asyncapi "
                                "from the event catalog, proto/PROTOCOL.md section 12)."},
        "defaultContentType": "application/json",
        "servers": servers(),
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "securitySchemes": {"token": SECURITY}},
    }


class Command(BaseCommand):
    help = "Write an AsyncAPI 3.0 document (JSON) of this project's events to stdout or -o FILE."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("-o", "--output", help="write to this file instead of stdout")
        parser.add_argument("--title", help="info.title (default: '<owner> events')")
        parser.add_argument("--doc-version", dest="doc_version", help="info.version (default: the catalog generation)")

    def handle(self, *args: Any, **options: Any) -> None:
        built = build_or_fail(self)
        doc = document(list(built.entries.values()), options["title"] or f"{built.owner} events",
                       options["doc_version"] or str(built.generation))
        write_output(self, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", options["output"])

