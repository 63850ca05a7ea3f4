"""nstbot.logs: one root handler, text and JSON formats, redaction of tokens and signed URLs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nstbot import logs
from nstbot.config import ConfigError, LoggingConfig

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
SIGNED = (
    "https://cdn.discordapp.com/attachments/111/222/photo.png"
    "?ex=67a1b2c3&is=67a06143&hm=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef&"
)
SIGNATURE = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    """Give the root logger back as pytest set it up."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
        if logs._redactor in handler.filters:
            handler.removeFilter(logs._redactor)
    root.setLevel(level)
    logging.captureWarnings(False)
    logs._handler = None
    logs._redactor._secrets.clear()


def setup(fmt: str = "text", level: str = "INFO", **kwargs: object) -> io.StringIO:
    stream = io.StringIO()
    logs.setup_logging(LoggingConfig(level=level, format=fmt), stream=stream, **kwargs)
    return stream


def test_text_format_with_extras() -> None:
    stream = setup("text")
    log = logging.getLogger("nstbot.test")
    log.info("job %s started", "abc", extra={"job_id": "abc", "device": "cuda:0"})
    log.debug("not shown at INFO")
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert line.endswith("INFO     nstbot.test: job abc started [job_id=abc device=cuda:0]")
    assert "not shown" not in stream.getvalue()


def test_json_format_lines() -> None:
    stream = setup("json", level="debug")
    log = logging.getLogger("nstbot.jobs.test")
    log.debug("queued %d", 3, extra={"job_id": "j1", "user_id": 42, "time": "mine"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("worker failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "DEBUG" and first["logger"] == "nstbot.jobs.test"
    assert first["message"] == "queued 3"
    assert first["job_id"] == "j1" and first["user_id"] == 42
    assert first["extra_time"] == "mine" and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc_info"]


def test_one_handler_even_when_called_twice() -> None:
    root = logging.getLogger()
    setup("text")
    stream = setup("json")
    assert len(root.handlers) == 1
    logging.getLogger("x").warning("once")
    assert len(stream.getvalue().splitlines()) == 1


def test_force_false_keeps_other_handlers_and_redacts_for_them_too() -> None:
    other = io.StringIO()
    foreign = logging.StreamHandler(other)
    logging.getLogger().addHandler(foreign)
    ours = setup("text", force=False, secrets=[TOKEN])
    logging.getLogger("x").warning("token %s", TOKEN)
    assert TOKEN not in ours.getvalue() and TOKEN not in other.getvalue()
    assert logs.REDACTED in other.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_token_and_signed_url_never_reach_the_output(fmt: str) -> None:
    stream = setup(fmt, secrets=[TOKEN])
    log = logging.getLogger("discord.http")
    log.info("POST with Authorization: Bot " + TOKEN)  # in the message itself
    log.info("downloading %s for %r", SIGNED, {"token": TOKEN})  # in the arguments
    log.info("attachment", extra={"url": SIGNED, "nested": {"urls": [SIGNED]}})  # in extras
    try:
        raise ValueError(f"bad response for {SIGNED} with {TOKEN}")
    except ValueError:
        log.exception("request failed")  # in the traceback
    log.info("stack", stack_info=True, extra={"job_id": "j9"})
    out = stream.getvalue()
    assert TOKEN not in out
    assert SIGNATURE not in out and "ex=67a1b2c3" not in out
    # What remains is still useful: the path of the attachment and the rest of the line.
    assert "https://cdn.discordapp.com/attachments/111/222/photo.png?[redacted]" in out
    assert "ValueError: bad response for" in out and "Bot [redacted]" in out


def test_token_given_after_setup_and_token_shaped_strings() -> None:
    stream = setup("text")
    late = "xyz-not-a-discord-shape-but-secret-123456"
    logs.add_secret(late)
    logs.add_secret("short")  # refused: it would scrub ordinary words
    other_bot = "OTg3NjU0MzIxMDk4NzY1NDMyMQ.Zz9_Yy.ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210-_"
    logging.getLogger("x").info("a %s b %s short", late, other_bot)
    out = stream.getvalue()
    assert late not in out and other_bot not in out and "short" in out


def test_webhook_and_interaction_tokens_in_urls() -> None:
    stream = setup("text")
    hook = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpTRUNSRVQ"
    logging.getLogger("discord.webhook.async_").info(
        "PATCH https://discord.com/api/v10/webhooks/123456/%s/messages/@original and "
        "POST /interactions/987654/%s/callback",
        hook,
        hook,
    )
    out = stream.getvalue()
    assert hook not in out
    assert "/webhooks/123456/[redacted]/messages/@original" in out
    assert "/interactions/987654/[redacted]/callback" in out


def test_ordinary_urls_and_messages_untouched() -> None:
    stream = setup("text")
    text = "see https://example.com/search?q=style+transfer&page=2 and 50% done"
    logging.getLogger("x").info(text)
    assert text in stream.getvalue()
    assert logs.redact("https://cdn.discordapp.com/a/b.png?size=64") == (
        "https://cdn.discordapp.com/a/b.png?[redacted]"
    )


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"logging\.level"):
        logs.setup_logging(LoggingConfig(level="LOUD"))
    with pytest.raises(ConfigError, match=r"logging\.format"):
        logs.setup_logging(LoggingConfig(format="xml"))


def test_token_fields_in_logged_payloads_are_redacted() -> None:
    from nstbot.logs import redact

    event = {"op": 0, "d": {"id": "1", "token": "itok-123456", "type": 2}}
    assert "itok-123456" not in redact(str(event))
    assert "itok-123456" not in redact('{"token": "itok-123456", "id": "1"}')
    assert "'id': '1'" in redact(str(event))
