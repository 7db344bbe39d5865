"""RPC and lifecycle handlers served by the worker subprocesses of test_rpc*.py (discovered as <app>/rpc.py)."""

import os
import threading
import time

from django.contrib.auth import get_user_model

import telegraphy

_lock = threading.Lock()
_running = 0
_peak = 0


@telegraphy.rpc("test.echo", allow=lambda user: True)
async def echo(request):
    """Async handler: what the worker knows of the request, and which worker answered."""
    return {"data": request.data, "sub": request.sub, "user": getattr(request.user, "username", ""),
            "authenticated": request.user.is_authenticated, "client": request.client, "session": request.session,
            "info": request.info, "node": request.node, "pid": os.getpid()}


@telegraphy.rpc("test.fail", allow=lambda user: True)
def fail(request):
    raise telegraphy.RpcError("not_found", "no such room")


@telegraphy.rpc("test.crash", allow=lambda user: True)
def crash(request):
    raise RuntimeError("database password is hunter2")


@telegraphy.rpc("test.slow", allow=lambda user: True)
def slow(request):
    """Sync handler that holds a thread for data["seconds"]; reports the most handlers seen running at once."""
    global _running, _peak
    with _lock:
        _running += 1
        _peak = max(_peak, _running)
    print(f"slow started {request.data.get('tag', '')}", flush=True)
    try:
        time.sleep(float(request.data.get("seconds", 0.5)))
    finally:
        with _lock:
            _running -= 1
    return {"tag": request.data.get("tag"), "peak": _peak, "pid": os.getpid()}


@telegraphy.rpc("test.rename")
def rename(request):
    """Sync ORM: the default permission (authenticated users) and a write through the loaded user."""
    request.user.first_name = str(request.data["first_name"])
    request.user.save(update_fields=["first_name"])
    return {"username": request.user.username, "users": get_user_model().objects.count()}


@telegraphy.rpc("test.staff", allow=lambda user: user.is_authenticated and user.is_staff)
def staff_only(request):
    return "staff"


@telegraphy.on_disconnect
def disconnected(event):
    """Sync lifecycle handler: reports what it saw as an event (telegraphy.publish from the worker)."""
    telegraphy.publish("test.lifecycle.disconnect", {"user": getattr(event.user, "username", ""), "code": event.code,
                                                      "client": event.client, "session": event.session})
    telegraphy.flush(5)


@telegraphy.rpc("test.big", allow=lambda user: True)
def big(request):
    return "x" * 70000  # over the gateway's rpc.max_reply_bytes default (65536)


@telegraphy.rpc("test.unencodable", allow=lambda user: True)
def unencodable(request):
    return {"value": object()}
