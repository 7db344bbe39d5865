"""``manage.py telegraphy_catalog``: this project's event catalog (proto/PROTOCOL.md section 12) as JSON.

Without options it prints the entries of the registered event classes (a JSON array, the values ``--sync``
would put); ``--sync`` writes them to the catalog KV bucket and removes the stale entries this deploy owns;
``--remote`` prints what the bucket holds now (every owner), reporting unreadable entries on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import catalog
from ...exceptions import PublishError


def build_or_fail(command: BaseCommand, owner: str | None = None, generation: int | None = None) -> catalog.Catalog:
    """This project's catalog; its problems go to the command's stderr, a bad owner or generation is a
    ``CommandError``."""
    try:
        built = catalog.build(owner, generation)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    for line in built.problems:
        command.stderr.write(f"catalog: {line}")
    return built


def write_output(command: BaseCommand, text: str, path: str | None) -> None:
    """``text`` to ``path`` (UTF-8), or to the command's stdout."""
    if not path:
        command.stdout.write(text, ending="")
        return
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc}") from exc
    command.stderr.write(f"wrote {path}")


class Command(BaseCommand):
    help = "Print this project's event catalog as JSON; --sync writes it to NATS (KV bucket telegraphy_catalog)."

    def add_arguments(self, parser: Any) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--sync", action="store_true", help="write the entries to NATS, remove stale own ones")
        action.add_argument("--remote", action="store_true", help="print the entries the bucket holds (all owners)")
        parser.add_argument("--owner", help=f"this deploy's owner name (default ${catalog.OWNER_ENV} or "
                                            "django-<settings package>)")
        parser.add_argument("--generation", type=int, help=f"this deploy's generation (default "
                                                           f"${catalog.GENERATION_ENV} or the event sources' mtime)")
        parser.add_argument("--bucket", default=catalog.BUCKET, help="the KV bucket (gateway catalog.bucket)")
        parser.add_argument("--timeout", type=float, default=None, help="seconds (default PUBLISH_TIMEOUT)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["remote"]:
                entries, problems = catalog.read(bucket=options["bucket"], timeout=options["timeout"])
                self._print(list(entries.values()))
                self._problems(problems)
                return
            if options["sync"]:
                report = catalog.sync(owner=options["owner"], generation=options["generation"],
                                      bucket=options["bucket"], timeout=options["timeout"])
                self.stdout.write(report.summary())
                self._problems(report.problems + report.invalid + report.conflicts)
                if report.problems:
                    raise CommandError(f"{len(report.problems)} event class(es) could not be catalogued")
                return
        except (ValueError, PublishError) as exc:
            raise CommandError(str(exc)) from exc
        built = build_or_fail(self, options["owner"], options["generation"])
        self._print(list(built.entries.values()))
        if built.problems:
            raise CommandError(f"{len(built.problems)} event class(es) could not be catalogued")

    def _print(self, entries: list[dict[str, Any]]) -> None:
        self.stdout.write(json.dumps(entries, indent=2, ensure_ascii=False, sort_keys=True))

    def _problems(self, lines: list[str]) -> None:
        for line in lines:
            self.stderr.write(f"catalog: {line}")
        sys.stderr.flush()
