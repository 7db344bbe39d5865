#!/usr/bin/env python
"""Telegraphy demo site. Quick start (from the repo root, with nats-server and the gateway running):

    pip install -e python
    python examples/demo/manage.py migrate        # creates the demo users admin/admin and alice/alice
    python examples/demo/manage.py run_telegraph  # the gateway, with this site's settings (another shell)
    python examples/demo/manage.py runserver
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
