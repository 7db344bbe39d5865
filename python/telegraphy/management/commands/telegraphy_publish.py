"""``manage.py telegraphy_publish <event> <json>``: publish one event and wait until NATS has it."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...conf import telegraphy_settings as ts
from ...exceptions import PublishError
from ...publisher import flush, publish


class Command(BaseCommand):
    help = "Publish one event (name, JSON data) to NATS and wait for NATS to confirm it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("event", help="event name, e.g. chat.lobby.message")
        parser.add_argument("data", nargs="?", default="null", help="JSON data (default: null)")
        parser.add_argument("--ack", action="store_true", help="require a JetStream acknowledgement")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait (default PUBLISH_TIMEOUT)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"])
        except ValueError as exc:
            raise CommandError(f"data is not valid JSON: {exc}") from None
        timeout = options["timeout"] if options["timeout"] is not None else ts.PUBLISH_TIMEOUT
        try:
            result = publish(options["event"], data, ack=options["ack"], timeout=timeout)
        except (ValueError, PublishError) as exc:
            raise CommandError(str(exc)) from None
        if options["ack"]:
            self.stdout.write(f"published {options['event']} (stream {result.stream}, seq {result.seq})")
            return
        if not result or not flush(timeout):
            raise CommandError(f"NATS did not confirm the event within {timeout:g}s (is it reachable at {ts.NATS_URL}?)")
        self.stdout.write(f"published {options['event']}")
