"""scripts/gen-constants: the generated constants and the versions follow their single sources (proto/constants.json,
VERSION), and ``--check`` fails naming each file that does not. The script runs on a copy of the files it reads
and writes, so the tests can make them stale."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import telegraphy
from telegraphy import constants

from .helpers import REPO

SCRIPT = Path("scripts/gen-constants")
GENERATED = ["src/protocol/constants.rs", "python/telegraphy/constants.py", "js/src/constants.js", "js/src/version.js"]
VERSIONED = ["Cargo.toml", "bench/Cargo.toml", "Cargo.lock", "python/pyproject.toml", "python/telegraphy/__init__.py",
             "js/package.json", "js/package-lock.json"]


def test_the_package_version_is_the_version_file():
    assert telegraphy.__version__ == (REPO / "VERSION").read_text().strip()


def test_the_generated_module_holds_the_file_values():
    doc = json.loads((REPO / "proto" / "constants.json").read_text())
    assert constants.NAMES_MAX_TOKENS == doc["names"]["max_tokens"]
    assert constants.FILTERS_LOOKUPS == tuple(doc["filters"]["lookups"])
    assert constants.LIMITS_MAX_EVENT_BYTES == doc["limits"]["max_event_bytes"]["default"]
    assert constants.CLOSE_CODES == {name: c["code"] for name, c in doc["close_codes"].items()}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the script and of every file it reads or writes."""
    for name in [str(SCRIPT), "proto/constants.json", "VERSION", *GENERATED, *VERSIONED]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def gen(tree: Path, *args: str) -> subprocess.CompletedProcess:
    # From another directory: the script finds its files next to itself.
    return subprocess.run([sys.executable, str(tree / SCRIPT), *args], cwd=tree.parent, capture_output=True,
                          text=True, timeout=60)


def test_the_repository_is_up_to_date(tree):
    assert gen(tree, "--check").returncode == 0


def test_a_changed_constant_makes_each_generated_file_stale_until_regenerated(tree):
    path = tree / "proto" / "constants.json"
    path.write_text(path.read_text().replace('"max_tokens": 16', '"max_tokens": 17'))
    check = gen(tree, "--check")
    assert check.returncode == 1
    stale = [line for line in check.stderr.splitlines() if line.startswith("out of date: ")]
    assert stale == [f"out of date: {name} (run scripts/gen-constants)" for name in GENERATED[:3]]
    assert "NAMES_MAX_TOKENS = 16" in (tree / "python/telegraphy/constants.py").read_text(), "--check wrote nothing"

    assert gen(tree).returncode == 0
    assert gen(tree, "--check").returncode == 0
    assert "NAMES_MAX_TOKENS = 17\n" in (tree / "python/telegraphy/constants.py").read_text()
    assert "pub const MAX_TOKENS: usize = 17;" in (tree / "src/protocol/constants.rs").read_text()
    assert '"max_tokens": 17,' in (tree / "js/src/constants.js").read_text()


def test_a_version_edited_elsewhere_than_version_is_named_and_set_back(tree):
    path = tree / "js" / "package.json"
    path.write_text(path.read_text().replace('"version": "', '"version": "9.9.9-', 1))
    check = gen(tree, "--check")
    assert check.returncode == 1
    assert "versions disagree" in check.stderr and "js/package.json has 9.9.9-" in check.stderr
    assert "out of date: js/package.json" in check.stderr

    (tree / "VERSION").write_text("2.3.4\n")
    assert gen(tree).returncode == 0
    assert gen(tree, "--check").returncode == 0
    assert json.loads(path.read_text())["version"] == "2.3.4"
    assert '__version__ = "2.3.4"' in (tree / "python/telegraphy/__init__.py").read_text()
    assert 'export const VERSION = "2.3.4";' in (tree / "js/src/version.js").read_text()
    assert 'name = "telegraphy"\nversion = "2.3.4"' in (tree / "Cargo.lock").read_text()


def test_a_value_without_a_rule_is_refused_and_nothing_is_written(tree):
    path = tree / "proto" / "constants.json"
    path.write_text(path.read_text().replace('"max_tokens": 16', '"max_tokens": 16.5'))
    before = {name: (tree / name).read_text() for name in GENERATED}
    result = gen(tree)
    assert result.returncode == 2
    assert "names.max_tokens" in result.stderr
    assert {name: (tree / name).read_text() for name in GENERATED} == before


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_js_module_is_the_file_without_its_comment_deep_frozen():
    script = """
        import { PROTOCOL } from "./js/src/constants.js";
        import { VERSION } from "./js/src/version.js";
        const frozen = (v) => typeof v !== "object" || (Object.isFrozen(v) && Object.values(v).every(frozen));
        console.log(JSON.stringify({ protocol: PROTOCOL, frozen: frozen(PROTOCOL), version: VERSION }));
    """
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    got = json.loads(out)
    doc = json.loads((REPO / "proto" / "constants.json").read_text())
    del doc["comment"]
    assert list(got["protocol"]) == list(doc), "keys in file order"
    assert got["protocol"] == doc
    assert got["frozen"] is True
    assert got["version"] == (REPO / "VERSION").read_text().strip()
