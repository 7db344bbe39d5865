"""Settings for the package's own tests. NATS and gateway addresses come from the environment so that
subprocesses (run_telegraph) see the servers a test started."""

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "telegraphy",
    "tests.testapp",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "tests.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

TELEGRAPHY = {
    # Port 1 on loopback refuses connections: unit tests run with "NATS down" unless a test points here.
    "NATS_URL": os.environ.get("TEST_TELEGRAPHY_NATS_URL", "nats://127.0.0.1:1"),
    "GATEWAY_URL": os.environ.get("TEST_TELEGRAPHY_GATEWAY_URL", "ws://127.0.0.1:8080/ws"),
    "SECRET": "telegraphy-test-secret-0123456789abcdef",
    "GATEWAY_BIND": os.environ.get("TEST_TELEGRAPHY_GATEWAY_BIND"),
    "RECONNECT_WAIT": 0.2,
    "PUBLISH_TIMEOUT": 5.0,
}
