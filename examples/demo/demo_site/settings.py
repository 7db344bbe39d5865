"""Demo settings. Everything that differs between machines comes from the environment, with dev defaults:

    TELEGRAPHY_NATS_URL     nats://127.0.0.1:4222
    TELEGRAPHY_GATEWAY_URL  ws://127.0.0.1:8080/ws      (as the browser reaches the gateway)
    TELEGRAPHY_SECRET       a dev-only secret (>= 32 bytes, the gateway must use the same one)
    TELEGRAPHY_GATEWAY_BIND 127.0.0.1:8080              (run_telegraph)
    DEMO_DB                 examples/demo/db.sqlite3
    DJANGO_DEBUG            1
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-django-secret-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
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
        "NAME": os.environ.get("DEMO_DB", str(BASE_DIR / "db.sqlite3")),
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

TELEGRAPHY = {
    "NATS_URL": os.environ.get("TELEGRAPHY_NATS_URL", "nats://127.0.0.1:4222"),
    "GATEWAY_URL": os.environ.get("TELEGRAPHY_GATEWAY_URL", "ws://127.0.0.1:8080/ws"),
    "SECRET": os.environ.get("TELEGRAPHY_SECRET", "demo-only-telegraphy-secret-change-me-0123456789"),
    "GATEWAY_BIND": os.environ.get("TELEGRAPHY_GATEWAY_BIND", "127.0.0.1:8080"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"telegraphy": {"handlers": ["console"], "level": "INFO"}},
}
