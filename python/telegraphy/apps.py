from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TelegraphyConfig(AppConfig):
    name = "telegraphy"
    verbose_name = "Telegraphy"

    def ready(self) -> None:
        from . import auth_signals, checks, validation  # noqa: F401  (checks registers the system checks)

        auth_signals.connect()
        validation.install()  # outgoing event data checked against its schema when VALIDATE_DATA / DEBUG  # revoke gateway sessions on logout, password change, deactivation

        # Imports <app>.events of every installed app. A missing module is fine; an events module that
        # fails to import raises here (autodiscover_modules re-raises when the submodule exists).
        autodiscover_modules("events")
