"""``manage.py telegraphy_check``: is NATS reachable, the tokens KV bucket there, the gateway ready? With NATS
reachable it also syncs the event catalog (proto/PROTOCOL.md section 12; ``--no-catalog`` skips it)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandError

from ... import catalog
from ...conf import telegraphy_settings as ts
from ...exceptions import PublishError
from ...nats_link import get_link
from ...token_format import MAX_TTL


def gateway_http_url() -> str | None:
    """The gateway's HTTP base URL: GATEWAY_HTTP_URL, else GATEWAY_URL with ws->http, wss->https, no path
    (None when GATEWAY_URL is a same-origin path: then only GATEWAY_HTTP_URL can say where the gateway is)."""
    if ts.GATEWAY_HTTP_URL:
        return str(ts.GATEWAY_HTTP_URL).rstrip("/")
    parts = urlsplit(ts.GATEWAY_URL)
    if not parts.netloc:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class Command(BaseCommand):
    help = "Check the Telegraphy setup: NATS reachable with JetStream, tokens KV bucket present, gateway /readyz."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--create-bucket", action="store_true", help="create the tokens KV bucket if missing")
        parser.add_argument("--skip-gateway", action="store_true", help="do not check the gateway")
        parser.add_argument("--no-catalog", action="store_true", help="do not sync the event catalog")
        parser.add_argument("--timeout", type=float, default=3.0)

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = options["timeout"]
        failures = 0

        def report(ok: bool, what: str) -> None:
            nonlocal failures
            failures += 0 if ok else 1
            style = self.style.SUCCESS if ok else self.style.ERROR
            self.stdout.write(style("ok  " if ok else "FAIL") + f" {what}")

        async def nats_checks(nc: Any) -> list[tuple[bool, str]]:
            from nats.js.errors import BucketNotFoundError

            results = [(True, f"NATS reachable at {nc.connected_url.geturl() if nc.connected_url else ts.NATS_URL}")]
            js = nc.jetstream(timeout=timeout)
            try:
                await js.account_info()
            except Exception as exc:
                return results + [(False, f"JetStream not available ({type(exc).__name__}); start nats-server with -js")]
            bucket = ts.TOKENS_BUCKET
            try:
                await js.key_value(bucket)
                results.append((True, f"KV bucket {bucket!r} present"))
            except BucketNotFoundError:
                if options["create_bucket"]:
                    await js.create_key_value(bucket=bucket, history=1, ttl=MAX_TTL, replicas=ts.KV_REPLICAS)
                    results.append((True, f"KV bucket {bucket!r} created"))
                else:
                    results.append((False, f"KV bucket {bucket!r} missing (the first mint or the gateway creates it; "
                                           "or run with --create-bucket)"))
            return results

        nats_up = False
        try:
            for ok, what in get_link().run(nats_checks, timeout):
                report(ok, what)
                nats_up = nats_up or ok
        except (PublishError, ConnectionError) as exc:
            report(False, f"NATS not reachable at {ts.NATS_URL}: {exc}")

        if nats_up and not options["no_catalog"]:
            lines: list[str] = []
            synced = catalog.sync_quietly(lines.append, timeout=timeout)
            report(synced is not None and not synced.problems, lines[0])
            for line in lines[1:]:
                self.stdout.write(f"     {line}")

        base = gateway_http_url()
        if not options["skip_gateway"] and base is None:
            report(False, 'gateway: GATEWAY_URL is a path; set TELEGRAPHY["GATEWAY_HTTP_URL"] to check /readyz')
        elif not options["skip_gateway"]:
            url = base + "/readyz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    report(response.status == 200, f"gateway ready ({url} -> {response.status})")
            except urllib.error.HTTPError as exc:
                report(False, f"gateway not ready ({url} -> {exc.code})")
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                report(False, f"gateway not reachable at {url}: {getattr(exc, 'reason', exc)}")

        if failures:
            raise CommandError(f"{failures} check(s) failed")
