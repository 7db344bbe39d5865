"""The event catalog in a real NATS KV bucket: sync writes, removes only its own stale entries, never undoes a
newer deploy nor touches another owner; entries put by "another language" are read; garbage is reported, not
fatal; run_telegraph and telegraphy_check sync without being asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from telegraphy import BaseEvent, catalog
from telegraphy.events import unregister

from .test_catalog import ENTRY_SCHEMA

PYTHON_DIR = Path(__file__).resolve().parents[1]


def bucket_values(client, bucket: str = catalog.BUCKET) -> dict[str, bytes]:
    from nats.js.errors import NoKeysError

    async def dump():
        kv = await client.js.key_value(bucket)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return {}
        return {key: (await kv.get(key)).value for key in keys}

    return client.run(dump())


def put(client, key: str, value: bytes, bucket: str = catalog.BUCKET) -> None:
    from nats.js.errors import BucketNotFoundError

    async def go():
        try:
            kv = await client.js.key_value(bucket)
        except BucketNotFoundError:
            kv = await client.js.create_key_value(bucket=bucket, history=1)
        await kv.put(key, value)

    client.run(go())


def raw_entry(name: str, patterns: list[str], owner: str, generation: int, **extra) -> dict:
    entry = {"format": 1, "name": name, "patterns": patterns, "kind": "custom", "operations": [],
             "description": "", "data": {}, "presence": None, "version": 1, "owner": owner, "generation": generation}
    return {**entry, **extra}


def encoded(entry: dict) -> bytes:
    return json.dumps(entry).encode()  # another language: not sorted, not compact


@pytest.fixture
def extra_event():
    class Extra(BaseEvent):
        """An event a newer deploy adds."""

        name = "extra.{room}.thing"

    yield Extra
    unregister(Extra)


def test_sync_writes_is_idempotent_and_creates_a_bucket_without_max_age(fresh_nats):
    server, client = fresh_nats
    first = catalog.sync(owner="shop", generation=100)
    built = catalog.build("shop", 100)
    assert sorted(first.written) == sorted(built.entries) and first.removed == [] and first.problems == []
    stored = bucket_values(client)
    assert {k: json.loads(v) for k, v in stored.items()} == built.entries
    info = client.run(client.js.stream_info(f"KV_{catalog.BUCKET}"))
    assert info.config.max_age in (0, None)  # an entry lives until its owner removes it
    again = catalog.sync(owner="shop", generation=100)
    assert again.written == [] and sorted(again.unchanged) == sorted(built.entries)
    assert bucket_values(client) == stored  # nothing rewritten


def test_sync_removes_own_stale_entries_only(fresh_nats):
    server, client = fresh_nats
    catalog.sync(owner="shop", generation=100)
    put(client, "shop.old.thing", encoded(raw_entry("old.thing", ["old.thing"], "shop", 50)))
    put(client, "shop.newer", encoded(raw_entry("newer", ["newer"], "shop", 200)))  # a newer deploy's
    put(client, "shop.same.gen", encoded(raw_entry("same.gen", ["same.gen"], "shop", 100)))
    put(client, "other.old.thing", encoded(raw_entry("old.thing", ["old.thing"], "other", 1)))  # another owner
    put(client, "shop.junk", b"{not json")
    put(client, "shop.future", encoded({"format": 2, "owner": "shop", "whatever": True}))
    report = catalog.sync(owner="shop", generation=100)
    assert report.removed == ["shop.old.thing"]
    assert [line.split(":")[0] for line in report.invalid] == ["shop.junk"] and "not_json" in report.invalid[0]
    stored = bucket_values(client)
    assert "shop.old.thing" not in stored
    for kept in ("shop.newer", "shop.same.gen", "other.old.thing", "shop.junk", "shop.future"):
        assert kept in stored, kept


def test_an_older_deploy_never_undoes_a_newer_one(fresh_nats, extra_event):
    server, client = fresh_nats
    newer = catalog.sync(owner="shop", generation=200)  # the newer code declares Extra
    assert "shop.extra.=.thing" in newer.written
    unregister(extra_event)  # the older code does not know Extra
    older = catalog.sync(owner="shop", generation=100)
    assert older.written == [] and older.removed == []
    assert sorted(older.kept_newer) == sorted(k for k in newer.written if k != "shop.extra.=.thing")
    stored = bucket_values(client)
    assert json.loads(stored["shop.extra.=.thing"])["generation"] == 200
    assert {json.loads(v)["generation"] for v in stored.values()} == {200}
    # The next deploy (generation 300) no longer declares Extra: its sync removes it.
    latest = catalog.sync(owner="shop", generation=300)
    assert latest.removed == ["shop.extra.=.thing"] and "shop.extra.=.thing" not in bucket_values(client)
    # Its delete marker is read as "absent" (and may end the replay): the next sync changes nothing.
    settled = catalog.sync(owner="shop", generation=300)
    assert (settled.written, settled.removed, settled.invalid) == ([], [], [])
    assert sorted(settled.unchanged) == sorted(k for k in newer.written if k != "shop.extra.=.thing")


def test_entries_put_by_another_language_are_read_and_garbage_is_reported(fresh_nats, capsys):
    server, client = fresh_nats
    go = raw_entry("chat.{room}.message", ["chat.*.message"], "go-chat", 7, presence="chat.{room}.message",
                   description="From the Go service.", data={"type": "object", "required": ["text"]})
    ENTRY_SCHEMA.validate(go)
    put(client, "go-chat.chat.=.message", encoded(go))
    put(client, "go-chat.big", b"x" * (catalog.MAX_ENTRY_BYTES + 1))
    put(client, "go-chat.text", b"hello")
    put(client, "go-chat.wrong.key", encoded(raw_entry("right.key", ["right.key"], "go-chat", 1)))
    catalog.sync(owner="shop", generation=1)
    entries, problems = catalog.read()
    assert entries["go-chat.chat.=.message"] == go
    assert "shop.testapp.book.=.=" in entries
    reasons = {line.split(":")[0]: line for line in problems}
    assert set(reasons) == {"go-chat.big", "go-chat.text", "go-chat.wrong.key"}
    assert "too_big" in reasons["go-chat.big"] and "not_json" in reasons["go-chat.text"]
    assert "key_mismatch" in reasons["go-chat.wrong.key"]
    capsys.readouterr()
    call_command("telegraphy_catalog", "--remote")
    out, err = capsys.readouterr()
    assert go in json.loads(out) and "go-chat.big" in err and "go-chat.text" in err


def test_reading_a_missing_bucket_is_an_empty_catalog(fresh_nats):
    assert catalog.read() == ({}, [])


def test_command_sync_and_print(fresh_nats, capsys):
    server, client = fresh_nats
    call_command("telegraphy_catalog", "--sync", "--owner", "cmd", "--generation", "5")
    out = capsys.readouterr().out
    built = catalog.build("cmd", 5)
    assert f"catalog: {len(built.entries)} written" in out
    assert sorted(bucket_values(client)) == sorted(built.entries)
    call_command("telegraphy_catalog", "--owner", "cmd", "--generation", "5")
    assert json.loads(capsys.readouterr().out) == list(built.entries.values())
    with pytest.raises(CommandError, match="owner"):
        call_command("telegraphy_catalog", "--owner", "bad owner")


def test_sync_with_nats_down_is_reported_not_raised(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "NATS_URL": "nats://127.0.0.1:1", "PUBLISH_TIMEOUT": 1.0}
    lines: list[str] = []
    assert catalog.sync_quietly(lines.append) is None
    assert lines and lines[0].startswith("catalog not synced")
    with pytest.raises(CommandError):
        call_command("telegraphy_catalog", "--sync", "--timeout", "1")


def test_telegraphy_check_syncs_the_catalog(fresh_nats, capsys, monkeypatch):
    server, client = fresh_nats
    monkeypatch.delenv(catalog.OWNER_ENV, raising=False)
    call_command("telegraphy_check", "--skip-gateway", "--create-bucket")
    out = capsys.readouterr().out
    assert "ok   catalog: " in out
    assert sorted(bucket_values(client)) == sorted(catalog.build().entries)
    assert all(key.startswith("django-tests.") for key in bucket_values(client)), bucket_values(client).keys()


def test_run_telegraph_syncs_before_starting_the_gateway(fresh_nats, tmp_path):
    """The real exec path with a stand-in binary: the catalog is in NATS before the gateway starts."""
    server, client = fresh_nats
    fake = tmp_path / "telegraphy-gateway"
    fake.write_text('#!/bin/sh\necho "gateway started"\n')
    fake.chmod(0o755)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(PYTHON_DIR),
           "TELEGRAPHY_GATEWAY_BIN": str(fake), "TEST_TELEGRAPHY_NATS_URL": server.url,
           catalog.OWNER_ENV: "runner", catalog.GENERATION_ENV: "9"}
    done = subprocess.run([sys.executable, "-m", "django", "run_telegraph"], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "gateway started" in done.stdout and "catalog: " in done.stderr
    stored = bucket_values(client)
    assert stored and all(key.startswith("runner.") for key in stored)
    assert {json.loads(v)["generation"] for v in stored.values()} == {9}
    skipped = subprocess.run([sys.executable, "-m", "django", "run_telegraph", "--no-catalog"],
                             env={**env, catalog.OWNER_ENV: "skipped"}, capture_output=True, text=True,
                             timeout=60, check=True)
    assert "gateway started" in skipped.stdout and "catalog" not in skipped.stderr
    assert not any(key.startswith("skipped.") for key in bucket_values(client))


def test_a_newer_write_between_read_and_write_wins(fresh_nats, monkeypatch):
    """Compare-and-set: a newer deploy that writes after this sync read the bucket is neither overwritten nor
    deleted; the sync reports the conflicts instead."""
    server, client = fresh_nats
    catalog.sync(owner="shop", generation=100)
    put(client, "shop.stale", encoded(raw_entry("stale", ["stale"], "shop", 50)))
    newer = {key: encoded(raw_entry(f"newer.{i}", [f"newer.{i}"], "shop", 200)) for i, key in
             enumerate(["shop.chat.=.message", "shop.stale"])}
    read_values = catalog._read_values

    async def read_then_race(kv, subject_filter, deadline):
        found = await read_values(kv, subject_filter, deadline)
        for key, value in newer.items():  # another deploy writes right after this sync's read
            await kv.put(key, value)
        return found

    monkeypatch.setattr(catalog, "_read_values", read_then_race)
    report = catalog.sync(owner="shop", generation=150)  # its snapshot says: rewrite everything, remove stale
    conflicted = sorted(line.split(":")[0] for line in report.conflicts)
    assert conflicted == ["shop.chat.=.message", "shop.stale"]
    assert "shop.stale" not in report.removed and "shop.chat.=.message" not in report.written
    stored = bucket_values(client)
    assert {key: stored[key] for key in newer} == newer
