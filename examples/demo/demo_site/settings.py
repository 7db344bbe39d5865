"""Demo settings. Everything that differs between machines comes from the environment, with dev defaults:

    TELEGRAPHY_NATS_URL     nats://127.0.0.1:4222
    TELEGRAPHY_GATEWAY_URL  ws://127.0.0.1:8080/ws      (as the browser reaches the gateway)
    TELEGRAPHY_SECRET       required unless DJANGO_DEBUG=1: then a random one made on first use and kept in
                            .telegraphy-secret next to the database (runserver and run_telegraph share it)
    TELEGRAPHY_GATEWAY_BIND 127.0.0.1:8080              (run_telegraph)
    DEMO_DB                 examples/demo/db.sqlite3
    DJANGO_DEBUG            1
    DJANGO_SECRET_KEY       required unless DJANGO_DEBUG=1: then a random key made for this process
                            (LOCAL USE ONLY: sign-ins do not survive a restart)
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_DB = os.environ.get("DEMO_DB", str(BASE_DIR / "db.sqlite3"))

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: the demo makes one up only for local use with DJANGO_DEBUG=1. Set it, "
            "e.g. DJANGO_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = "local-debug-only-" + secrets.token_urlsafe(50)  # this process only, never for a deployment


def local_telegraphy_secret(path: Path) -> str:
    """DEBUG only: a random secret kept in ``path`` (created once, atomically: runserver and run_telegraph
    may start together and must agree on it)."""
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


TELEGRAPHY_SECRET = os.environ.get("TELEGRAPHY_SECRET") or (
    local_telegraphy_secret(Path(DEMO_DB).parent / ".telegraphy-secret") if DEBUG else None
)
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "telegraphy",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "demo_site.wsgi.application"
ASGI_APPLICATION = "demo_site.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DEMO_DB,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tracker"
LOGOUT_REDIRECT_URL = "login"

# The demo's gateway (started by `manage.py run_telegraph`, which hands it this environment and syncs the event
# catalog first) refuses a subscription that can match no catalogued event (PROTOCOL.md section 12): a typo in a
# page's pattern is an `unknown_event` error in the console rather than a page that silently receives nothing.
os.environ.setdefault("TELEGRAPHY_CATALOG__MODE", "strict")

TELEGRAPHY = {
    "NATS_URL": os.environ.get("TELEGRAPHY_NATS_URL", "nats://127.0.0.1:4222"),
    "GATEWAY_URL": os.environ.get("TELEGRAPHY_GATEWAY_URL", "ws://127.0.0.1:8080/ws"),
    "SECRET": TELEGRAPHY_SECRET,
    "GATEWAY_BIND": os.environ.get("TELEGRAPHY_GATEWAY_BIND", "127.0.0.1:8080"),
    "TOKEN_INFO": "demo.presence.token_info",  # presence shows names, not user ids
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"telegraphy": {"handlers": ["console"], "level": "INFO"}},
}
