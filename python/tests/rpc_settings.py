"""Settings of the ``manage.py telegraphy_worker`` subprocesses of test_rpc*.py: the tests' settings plus the
``rpcapp`` handlers, and a database file the test shares with the worker (``TEST_TELEGRAPHY_DB``)."""

import os

from .settings import *  # noqa: F401,F403
from .settings import INSTALLED_APPS, TELEGRAPHY

INSTALLED_APPS = [*INSTALLED_APPS, "tests.rpcapp"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("TEST_TELEGRAPHY_DB", ":memory:")}
}
# Each test serves its own subject prefix, so workers of one test never answer another's requests.
TELEGRAPHY = {**TELEGRAPHY, "SUBJECT_PREFIX": os.environ.get("TEST_TELEGRAPHY_PREFIX", "telegraphy")}
