"""The catalog's generated documents checked by the real tools: the `.d.ts` of ``telegraphy_typescript`` with
tsc --strict (a right snippet compiles, a wrong field does not), the AsyncAPI document of
``telegraphy_asyncapi`` with the official parser @asyncapi/parser (tools/asyncapi-check)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from django.core.management import call_command

from .helpers import REPO

NODE = shutil.which("node")
TSC = REPO / "js" / "node_modules" / "typescript" / "bin" / "tsc"
ASYNCAPI_CHECK = REPO / "tools" / "asyncapi-check"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the generated TypeScript and "
                                                     "AsyncAPI documents are checked with node tools")


def run_node(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def typed_project(tmp_path):
    """A TypeScript project that imports the JS client as the package telegraphy-client, with the generated
    declarations beside it."""
    assert TSC.exists(), f"{TSC} missing: run scripts/bootstrap (npm ci in js/)"
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "telegraphy-client").symlink_to(REPO / "js", target_is_directory=True)
    call_command("telegraphy_typescript", "-o", str(tmp_path / "events.d.ts"))

    def compile_snippet(body: str) -> subprocess.CompletedProcess:
        source = tmp_path / "snippet.ts"
        source.write_text('import "./events.js";\nimport { Telegraphy } from "telegraphy-client";\n'
                          'const tg = new Telegraphy({ url: "/ws" });\n' + body, encoding="utf-8")
        return run_node(str(TSC), "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
                        "--moduleResolution", "nodenext", "--lib", "es2022,dom", str(source), cwd=tmp_path)

    return compile_snippet


def test_typescript_declarations_type_the_data_of_a_subscription(typed_project):
    ok = typed_project("""
tg.subscribe("testapp.book.>", (ev) => {
  const price: string = ev.data.price;          // a Decimal is a string
  const author: number = ev.data.author;        // a foreign key is the related pk
  const published: string | null = ev.data.published;
  console.log(price, author, published, ev.name);
});
tg.subscribe("testapp.*.created.*", (ev) => console.log(ev.data.pk));   // book, tag or filterrow: all have pk
tg.subscribe("notes.7.>", (ev) => { const text: string = ev.data.text; });
tg.subscribe<{ x: number }>("not.catalogued", (ev) => console.log(ev.data.x));  // explicit types still work
tg.subscribe("not.catalogued.>", (ev) => console.log(ev.data));                 // unknown, not an error
""")
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.parametrize("body, error", [
    ('tg.subscribe("testapp.book.>", (ev) => console.log(ev.data.totl));', "Property 'totl' does not exist"),
    ('tg.subscribe("testapp.book.created.*", (ev) => { const n: number = ev.data.price; });', "not assignable"),
    ('tg.subscribe("testapp.tag.>", (ev) => console.log(ev.data.title));', "Property 'title' does not exist"),
])
def test_typescript_declarations_refuse_a_wrong_field(typed_project, body, error):
    wrong = typed_project(body)
    assert wrong.returncode != 0 and error in wrong.stdout, wrong.stdout + wrong.stderr


def asyncapi_check(path) -> subprocess.CompletedProcess:
    assert (ASYNCAPI_CHECK / "node_modules" / "@asyncapi" / "parser").exists(), (
        f"{ASYNCAPI_CHECK}/node_modules missing: run scripts/bootstrap (npm ci in tools/asyncapi-check)")
    return run_node(str(ASYNCAPI_CHECK / "check.mjs"), str(path))


def test_asyncapi_document_passes_the_official_parser(tmp_path, settings):
    settings.TELEGRAPHY = {**settings.TELEGRAPHY, "GATEWAY_URL": "wss://rt.example.com/ws"}
    path = tmp_path / "asyncapi.json"
    call_command("telegraphy_asyncapi", "-o", str(path), "--title", "Test events", "--doc-version", "7")
    doc = json.loads(path.read_text(encoding="utf-8"))
    checked = asyncapi_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid AsyncAPI 3.0.0: 5 channel(s), 0 warning(s)" in checked.stdout
    assert (doc["asyncapi"], doc["info"]["title"], doc["info"]["version"]) == ("3.0.0", "Test events", "7")
    assert doc["servers"]["websocket"] == {**doc["servers"]["websocket"], "host": "rt.example.com",
                                           "protocol": "wss", "pathname": "/ws"}
    assert (doc["servers"]["sse"]["protocol"], doc["servers"]["sse"]["pathname"]) == ("https", "/sse")
    assert "token" in doc["components"]["securitySchemes"]
    book = next(c for c in doc["channels"].values() if c["address"] == "testapp.book.{action}.{key}")
    assert book["parameters"]["action"]["enum"] == ["created", "updated", "deleted"]
    message = doc["components"]["messages"][book["messages"]["event"]["$ref"].rsplit("/", 1)[-1]]
    assert message["payload"]["properties"]["data"]["properties"]["price"]["type"] == "string"


def test_asyncapi_check_fails_a_broken_document(tmp_path):
    """The checker is not a rubber stamp: a channel pointing at a message that does not exist is an error."""
    path = tmp_path / "broken.json"
    call_command("telegraphy_asyncapi", "-o", str(path))
    doc = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(doc["channels"].values()))
    first["messages"]["event"]["$ref"] = "#/components/messages/nope"
    del doc["info"]
    path.write_text(json.dumps(doc), encoding="utf-8")
    checked = asyncapi_check(path)
    assert checked.returncode == 1 and "error" in checked.stdout, checked.stdout + checked.stderr
