"""The demo project (examples/demo) passes its own checks and tests, in a subprocess (its own settings)."""

import os
import subprocess
import sys

from .helpers import REPO

DEMO = REPO / "examples" / "demo"


def run_demo(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DEMO_DB": str(tmp_path / "demo.sqlite3"),
        "TELEGRAPHY_NATS_URL": "nats://127.0.0.1:1",  # NATS down: pages must still work
        "PYTHONPATH": str(REPO / "python"),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, str(DEMO / "manage.py"), *args], cwd=DEMO, env=env, capture_output=True, text=True, timeout=120
    )


def test_demo_checks_migrations_and_tests(tmp_path):
    check = run_demo("check", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    pending = run_demo("makemigrations", "--check", "--dry-run", tmp_path=tmp_path)
    assert pending.returncode == 0, "the demo's models and migrations differ:\n" + pending.stdout
    tests = run_demo("test", "demo", "-v", "1", tmp_path=tmp_path)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "OK" in tests.stderr
