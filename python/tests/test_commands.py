import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from telegraphy.management.commands.run_telegraph import find_gateway_binary, gateway_env
from telegraphy.management.commands.telegraphy_check import gateway_http_url

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_run_telegraph_missing_binary_is_a_clear_error(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("TELEGRAPHY_GATEWAY_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError, match="not found on PATH"):
        call_command("run_telegraph")
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_BINARY": str(tmp_path / "nope")}
    with pytest.raises(CommandError, match="does not exist or is not executable"):
        call_command("run_telegraph")


def test_run_telegraph_finds_the_binary_beside_the_interpreter(tmp_path, monkeypatch):
    """`pip install "django-telegraphy[gateway]"` puts the binary in the venv's bin/, which is not on PATH when
    manage.py runs as `venv/bin/python manage.py`: the lookup falls back to the interpreter's directory."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    binary = venv_bin / "telegraphy-gateway"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.delenv("TELEGRAPHY_GATEWAY_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert find_gateway_binary() == str(binary)
    on_path = tmp_path / "telegraphy-gateway"  # PATH still wins: the user's explicit choice
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert find_gateway_binary() == str(on_path)


def test_gateway_env_maps_settings(settings):
    settings.TELEGRAPHY = {
        **settings.TELEGRAPHY,
        "NATS_URL": ["nats://a:4222", "nats://b:4222"],
        "SUBJECT_PREFIX": "rt",
        "GATEWAY_BIND": "0.0.0.0:9000",
        "REGISTER_TOKENS": False,
        "GATEWAY_ENV": {"TELEGRAPHY_LOG__FORMAT": "json"},
    }
    env = gateway_env({})
    assert env == {
        "TELEGRAPHY_NATS__URL": "nats://a:4222,nats://b:4222",
        "TELEGRAPHY_NATS__SUBJECT_PREFIX": "rt",
        "TELEGRAPHY_AUTH__SECRET": settings.TELEGRAPHY["SECRET"],
        "TELEGRAPHY_AUTH__SINGLE_USE": "false",
        "TELEGRAPHY_AUTH__TOKENS_BUCKET": "telegraphy_tokens",
        "TELEGRAPHY_AUTH__REVOCATIONS_BUCKET": "telegraphy_revocations",
        "TELEGRAPHY_PRESENCE__BUCKET": "telegraphy_presence",
        "TELEGRAPHY_HTTP__BIND": "0.0.0.0:9000",
        "TELEGRAPHY_LOG__FORMAT": "json",
    }


def test_run_telegraph_execs_the_binary_with_the_environment(tmp_path):
    """The real exec path, with a stand-in binary that reports its argv and environment."""
    fake = tmp_path / "telegraphy-gateway"
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "url=$TELEGRAPHY_NATS__URL secret=$TELEGRAPHY_AUTH__SECRET"\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(PYTHON_DIR),
        "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEST_TELEGRAPHY_NATS_URL": "nats://127.0.0.1:4999",
    }
    env.pop("TELEGRAPHY_GATEWAY_BIN", None)
    out = subprocess.run(
        [sys.executable, "-m", "django", "run_telegraph", "--config", "gw.toml", "extra"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "argv: --config gw.toml extra" in out
    assert "url=nats://127.0.0.1:4999 secret=telegraphy-test-secret-0123456789abcdef" in out


def test_run_telegraph_print_env_masks_the_secret(settings, tmp_path, capsys):
    fake = tmp_path / "gw"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_BINARY": str(fake)}
    call_command("run_telegraph", "--print-env")
    out = capsys.readouterr().out
    assert "TELEGRAPHY_AUTH__SECRET=********" in out and settings.TELEGRAPHY["SECRET"] not in out


def test_gateway_http_url(settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_URL": "wss://rt.example.com/live/ws"}
    assert gateway_http_url() == "https://rt.example.com"
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_HTTP_URL": "http://10.0.0.5:8080/"}
    assert gateway_http_url() == "http://10.0.0.5:8080"
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_URL": "/ws", "GATEWAY_HTTP_URL": None}
    assert gateway_http_url() is None
