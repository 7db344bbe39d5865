"""``manage.py telegraphy_worker``: serve the site's RPC methods and lifecycle handlers (``@telegraphy.rpc``,
``@telegraphy.on_disconnect``...; proto/PROTOCOL.md sections 14 and 15) from NATS, until SIGTERM or SIGINT,
then drain: requests already received are answered, new ones go to the other workers of the queue group."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError


from ...conf import redact_url, telegraphy_settings as ts
from ...worker import Worker


class Command(BaseCommand):
    help = "Serve @telegraphy.rpc handlers and lifecycle handlers from NATS (queue group telegraphy_workers)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=16,
                            help="requests handled at once (and threads for sync handlers); default 16")
        parser.add_argument("--drain-timeout", type=float, default=30.0,
                            help="seconds to finish in-flight requests after SIGTERM; default 30")
        parser.add_argument("--method", action="append", dest="methods", metavar="METHOD",
                            help="serve only this method (repeatable); default: every registered one")
        parser.add_argument("--no-lifecycle", action="store_true", help="do not run lifecycle handlers")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["drain_timeout"] <= 0:
            raise CommandError("--drain-timeout must be positive")
        logging.getLogger("telegraphy").setLevel(logging.INFO)
        if not logging.getLogger("telegraphy").handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("telegraphy").addHandler(handler)
        try:
            worker = Worker(concurrency=options["concurrency"], drain_timeout=options["drain_timeout"],
                            methods=options["methods"], lifecycle=not options["no_lifecycle"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not worker.handlers and not worker.lifecycle:
            raise CommandError("nothing to serve: no @telegraphy.rpc or lifecycle handler is registered "
                               "(declare them in <app>/rpc.py or <app>/events.py)")
        self.stdout.write(f"telegraphy worker: NATS {redact_url(ts.NATS_URL)}, methods: "
                          f"{', '.join(sorted(worker.handlers)) or '-'}; lifecycle: "
                          f"{', '.join(sorted(worker.lifecycle)) or '-'}")
        self.stdout.flush()
        asyncio.run(self._serve(worker))

    async def _serve(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()



