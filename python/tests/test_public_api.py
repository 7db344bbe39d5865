"""The package's public names survive its split into one-job modules (issue 14), every public error is a
``TelegraphyError``, and the NATS link follows ``TELEGRAPHY`` changes with a receiver of its own."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from django.core.signals import setting_changed
from django.test import override_settings

import telegraphy
from telegraphy import conf, exceptions, filters, minting, nats_link, publisher, revocations, token_format, tokens

# What each module exported (its __all__, plus the documented extras) at a2ed67a, before the split.
BEFORE_THE_SPLIT = {
    "telegraphy": [
        "BaseEvent", "BaseEventModel", "PublishError", "RevocationError", "allow_patterns", "apublish",
        "arevoke_session", "arevoke_user", "flush", "publish", "revoke_session", "revoke_user",
    ],
    "telegraphy.publisher": [
        "PublishError", "Publisher", "get_publisher", "reset_publisher", "encode_data", "subject_for", "publish",
        "apublish", "flush", "MAX_EVENT_BYTES",
    ],
    "telegraphy.tokens": [
        "CONNECT_PREFIX", "RESUME_PREFIX", "MAX_TTL", "TokenError", "TokenRegistrationError", "secret_weakness",
        "sign", "verify", "claims_for", "user_sub", "token_allowed", "mint", "amint", "register",
        "MAX_TOKEN_BYTES", "MAX_ALLOW", "CLOCK_SKEW", "MIN_SECRET_BYTES", "PLACEHOLDER_WORDS",
        "MIN_SECRET_ENTROPY_BITS",
    ],
    "telegraphy.revocations": [
        "REVOCATIONS_MAX_AGE", "RevocationError", "user_key", "session_key", "revoke_user", "revoke_session",
        "arevoke_user", "arevoke_session", "issue_time",
    ],
    "telegraphy.events": ["BaseEvent", "BaseEventModel", "registered", "unregister", "allow_patterns", "EventTemplate"],
    "telegraphy.filters": ["LOOKUPS", "DEFAULT_LIMITS", "FilterError", "check", "limits", "MAX_CONDITIONS",
                           "MAX_REGEX_CONDITIONS"],
    "telegraphy.conf": ["DEFAULTS", "telegraphy_settings", "parse_rate", "redact_url", "user_settings"],
}


@pytest.mark.parametrize("module", sorted(BEFORE_THE_SPLIT))
def test_every_name_exported_before_the_split_is_still_there(module):
    mod = importlib.import_module(module)
    missing = [name for name in BEFORE_THE_SPLIT[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"
    exported = getattr(mod, "__all__", None)
    if exported is not None:
        assert [name for name in exported if not hasattr(mod, name)] == []


def test_old_paths_are_the_new_objects():
    """A moved name is re-exported, not copied: patching or catching it by either path is the same."""
    assert tokens.mint is minting.mint and tokens.amint is minting.amint and tokens.register is minting.register
    assert tokens.token_allowed is minting.token_allowed
    assert tokens.sign is token_format.sign and tokens.verify is token_format.verify
    assert tokens.claims_for is token_format.claims_for and tokens.user_sub is token_format.user_sub
    assert tokens.TokenError is exceptions.TokenError
    assert tokens.TokenRegistrationError is exceptions.TokenRegistrationError
    assert publisher.PublishError is telegraphy.PublishError is exceptions.PublishError
    assert revocations.RevocationError is telegraphy.RevocationError is exceptions.RevocationError
    assert filters.FilterError is exceptions.FilterError
    assert publisher.Publisher is nats_link.NatsLink
    assert publisher.get_publisher() is nats_link.get_link()
    publisher.reset_publisher()
    assert publisher.get_publisher() is nats_link.get_link(), "one process-wide link under both names"


def test_the_old_publisher_path_still_publishes_and_counts(settings):
    """README: ``telegraphy.publisher.get_publisher().stats()``; with NATS down (port 1) an event waits."""
    assert telegraphy.publish("compat.old.path", {"n": 1}) is True
    stats = publisher.get_publisher().stats()
    assert (stats["connected"], stats["buffered"], stats["dropped"]) == (False, 1, 0)
    assert publisher.flush(0.05) is False


def _package_exception_classes() -> dict[str, type]:
    found = {}
    modules = [telegraphy] + [importlib.import_module(info.name)
                              for info in pkgutil.walk_packages(telegraphy.__path__, "telegraphy.")]
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__.startswith("telegraphy"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_error_is_a_telegraphy_error_and_keeps_its_builtin_base():
    classes = _package_exception_classes()
    assert len(classes) >= 6, classes
    assert [name for name, cls in classes.items() if not issubclass(cls, telegraphy.TelegraphyError)] == []
    every = {cls for cls in classes.values() if cls is not telegraphy.TelegraphyError}
    assert every <= {getattr(telegraphy, name) for name in telegraphy.__all__}, "each is exported from telegraphy"
    assert issubclass(telegraphy.TokenError, ValueError) and issubclass(telegraphy.FilterError, ValueError)
    assert issubclass(telegraphy.PublishError, RuntimeError)
    assert issubclass(telegraphy.TokenRegistrationError, RuntimeError)
    assert issubclass(telegraphy.RevocationError, telegraphy.PublishError)


def test_one_except_clause_catches_what_the_package_raises(settings):
    caught = []
    for attempt in (
        lambda: tokens.verify("tg1.bad", ["x" * 32]),
        lambda: filters.check(filter=[]),
        lambda: telegraphy.revoke_session("s1", timeout=0.5),  # NATS down
        lambda: tokens.register("0" * 32, timeout=0.5),
        lambda: telegraphy.publish("compat.acked.x", {}, ack=True, timeout=0.5),
    ):
        with pytest.raises(telegraphy.TelegraphyError) as error:
            attempt()
        caught.append(type(error.value).__name__)
    assert caught == ["TokenError", "FilterError", "RevocationError", "TokenRegistrationError", "PublishError"]


def test_a_changed_telegraphy_setting_gets_a_fresh_link(settings):
    """The link module's own setting_changed receiver (as Django Channels does): override_settings on
    TELEGRAPHY closes the process's link, and the next use opens one with the new settings."""
    before = nats_link.get_link()
    assert before.servers == ["nats://127.0.0.1:1"]
    with override_settings(TELEGRAPHY={**settings.TELEGRAPHY, "NATS_URL": "nats://127.0.0.1:2", "PUBLISH_BUFFER": 3}):
        inside = nats_link.get_link()
        assert inside is not before
        assert (inside.servers, inside.buffer_size) == (["nats://127.0.0.1:2"], 3)
        with pytest.raises(telegraphy.PublishError, match="closed"):
            before.publish_raw("telegraphy.x", b"{}")  # the old link was closed, not left running
    after = nats_link.get_link()
    assert after is not inside and after.servers == ["nats://127.0.0.1:1"]


def test_the_receiver_is_the_link_modules_and_ignores_other_settings():
    link = nats_link.get_link()
    setting_changed.send(sender=None, setting="USE_TZ", value=True, enter=True)
    assert nats_link.get_link() is link, "another setting leaves the link alone"
    conf._on_setting_changed(setting="TELEGRAPHY")
    assert nats_link.get_link() is link, "the settings module only reloads settings; it knows no link"
    setting_changed.send(sender=None, setting="TELEGRAPHY", value={}, enter=True)
    assert nats_link.get_link() is not link
