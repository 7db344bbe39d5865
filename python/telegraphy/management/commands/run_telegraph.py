"""``manage.py run_telegraph``: exec the Telegraphy gateway with this site's TELEGRAPHY settings.

The binary is ``TELEGRAPHY["GATEWAY_BINARY"]``, else ``$TELEGRAPHY_GATEWAY_BIN``, else ``telegraphy-gateway``
on PATH, else in this Python environment's scripts directory (where ``pip install "django-telegraphy[gateway]"``
puts it: a virtualenv's bin/ is not on PATH when manage.py runs as ``venv/bin/python manage.py``). Settings reach
it as environment variables (never on the command line, where ``ps`` shows them). Before that it syncs the event
catalog (proto/PROTOCOL.md section 12), bounded by PUBLISH_TIMEOUT and never fatal (``--no-catalog`` skips it).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import catalog
from ...conf import telegraphy_settings as ts

BINARY_NAME = "telegraphy-gateway"


def environment_scripts_dirs() -> list[str]:
    """Where pip puts console scripts and wheel binaries for this interpreter: next to it, its scheme's
    scripts directory, and the user scheme's (``pip install --user``)."""
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    try:
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:  # no user scheme on this platform
        pass
    return list(dict.fromkeys(d for d in dirs if d))


def find_gateway_binary() -> str:
    configured = ts.GATEWAY_BINARY or os.environ.get("TELEGRAPHY_GATEWAY_BIN")
    if configured:
        path = str(configured)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise CommandError(
                f"The gateway binary {path!r} does not exist or is not executable "
                '(TELEGRAPHY["GATEWAY_BINARY"] or $TELEGRAPHY_GATEWAY_BIN). Build it with '
                "`cargo build --release --bin telegraphy-gateway` or install it."
            )
        return path
    found = shutil.which(BINARY_NAME) or shutil.which(BINARY_NAME, path=os.pathsep.join(environment_scripts_dirs()))
    if not found:
        raise CommandError(
            f"The gateway binary {BINARY_NAME!r} was not found on PATH nor in this Python environment. Install it "
            'with `pip install "django-telegraphy[gateway]"`, or set TELEGRAPHY["GATEWAY_BINARY"] or '
            "$TELEGRAPHY_GATEWAY_BIN to its path (build it with `cargo build --release --bin telegraphy-gateway`)."
        )
    return found


def gateway_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The gateway's environment: ``base`` (default os.environ) plus the mapped TELEGRAPHY settings."""
    env = dict(os.environ if base is None else base)
    secret = ts.SECRET
    if not secret:
        raise CommandError('TELEGRAPHY["SECRET"] is not set; the gateway needs the same secret (auth.secret).')
    env.update(
        {
            "TELEGRAPHY_NATS__URL": ",".join(ts.nats_servers),
            "TELEGRAPHY_NATS__SUBJECT_PREFIX": ts.SUBJECT_PREFIX,
            "TELEGRAPHY_AUTH__SECRET": secret,
            "TELEGRAPHY_AUTH__SINGLE_USE": "true" if ts.REGISTER_TOKENS else "false",
            "TELEGRAPHY_AUTH__TOKENS_BUCKET": ts.TOKENS_BUCKET,
            "TELEGRAPHY_AUTH__REVOCATIONS_BUCKET": ts.REVOCATIONS_BUCKET,
            "TELEGRAPHY_PRESENCE__BUCKET": ts.PRESENCE_BUCKET,
        }
    )
    if ts.GATEWAY_BIND:
        env["TELEGRAPHY_HTTP__BIND"] = str(ts.GATEWAY_BIND)
    env.update({str(k): str(v) for k, v in (ts.GATEWAY_ENV or {}).items()})
    return env


class Command(BaseCommand):
    help = "Run the Telegraphy WebSocket gateway with this project's TELEGRAPHY settings (replaces this process)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--config", help="a gateway TOML config file (environment settings still win)")
        parser.add_argument(
            "--print-env",
            action="store_true",
            help="print the command and the TELEGRAPHY_* variables it would get (secret masked), do not run",
        )
        parser.add_argument("--no-catalog", action="store_true", help="do not sync the event catalog first")
        parser.add_argument("gateway_args", nargs="*", help="further arguments for the gateway binary")

    def handle(self, *args: Any, **options: Any) -> None:
        binary = find_gateway_binary()
        argv = [binary]
        if options["config"]:
            argv += ["--config", options["config"]]
        argv += options["gateway_args"]
        env = gateway_env()
        if options["print_env"]:
            self.stdout.write(" ".join(argv))
            for key in sorted(k for k in env if k.startswith("TELEGRAPHY_") and "__" in k):
                value = "********" if key == "TELEGRAPHY_AUTH__SECRET" else env[key]
                self.stdout.write(f"{key}={value}")
            return
        if not options["no_catalog"]:
            catalog.sync_quietly(self.stderr.write)
        self.stdout.flush()
        self.stderr.flush()
        os.execve(binary, argv, env)
