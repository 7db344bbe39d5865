"""Publishing from outside a request (issue 25): a script, management command or task process that saves
models and publishes, then exits at once. It runs as a separate process against a real nats-server while this
test subscribes; what it enqueued must arrive (atexit gives the buffer a bounded chance; ``flush()`` is the way
when the process ends without running atexit handlers, as ``os._exit`` does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .helpers import next_message

PYTHON_DIR = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, sys
from decimal import Decimal

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
django.setup()

from django.core.management import call_command
from django.db import transaction

import telegraphy
from tests.testapp.models import Author, Book

call_command("migrate", run_syncdb=True, verbosity=0)  # in-memory SQLite: the tables of this process
author = Author.objects.create(name="script")
rows = int(sys.argv[1])
with telegraphy.muted():  # e.g. fixtures loaded first: no events
    Book.objects.create(title="fixture", author=author, price=Decimal("0"))
with transaction.atomic(), telegraphy.coalesced():  # an import: one event per book, after the commit
    for i in range(rows):
        book = Book.objects.create(title=f"draft {i}", author=author, price=Decimal(i))
        book.title = f"book {i}"
        book.save()
for i in range(rows):
    telegraphy.publish("script.row.x", {"i": i})
telegraphy.publish("script.last.x", {"pid": os.getpid()})
"""


def run_script(tmp_path: Path, nats_url: str, rows: int, ending: str) -> subprocess.CompletedProcess:
    script = tmp_path / "import_books.py"
    script.write_text(textwrap.dedent(SCRIPT) + ending, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "TEST_TELEGRAPHY_NATS_URL": nats_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, str(script), str(rows)], env=env, cwd=PYTHON_DIR, capture_output=True,
                          text=True, timeout=120)


def assert_everything_arrived(received, rows: int) -> None:
    books = [next_message(received, 15) for _ in range(rows)]
    assert all(".book.created." in b.subject for b in books)
    titles = [json.loads(b.data)["title"] for b in books]
    assert titles == [f"book {i}" for i in range(rows)]  # no fixture, one event per book, in order
    assert [json.loads(next_message(received).data)["i"] for _ in range(rows)] == list(range(rows))
    assert next_message(received).subject == "telegraphy.script.last.x"
    assert received.empty()


def test_a_script_that_just_exits_loses_nothing(tmp_path, nats_server, nats_client):
    """No flush() call: the interpreter's exit flushes the buffer (more events than one batch carries)."""
    received = nats_client.subscribe("telegraphy.>")
    rows = 1500
    result = run_script(tmp_path, nats_server.url, rows, "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_everything_arrived(received, rows)


def test_flush_before_a_hard_exit(tmp_path, nats_server, nats_client):
    """``os._exit`` (forked task runners use it) skips atexit: ``telegraphy.flush()`` first delivers all."""
    received = nats_client.subscribe("telegraphy.>")
    rows = 300
    ending = "ok = telegraphy.flush(10)\nprint('flushed', ok, flush=True)\nos._exit(0 if ok else 3)\n"
    result = run_script(tmp_path, nats_server.url, rows, ending)
    assert result.returncode == 0 and "flushed True" in result.stdout, result.stdout + result.stderr
    assert_everything_arrived(received, rows)
