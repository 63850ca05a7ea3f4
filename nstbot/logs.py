"""Logging set up once for the whole process: one root handler, text or JSON lines, redaction.

Like discord.py's `setup_logging`, `setup_logging()` puts one handler on the root logger, so every
library's records (discord.py, aiohttp, celery) come out in one format. A redaction filter on that
handler scrubs the bot token, token-shaped strings, webhook and interaction tokens in URLs, and the
signature of Discord's signed attachment URLs (`?ex=...&is=...&hm=...`) from every record: its
message, its arguments, its extra fields and its traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from nstbot.config import ConfigError, LoggingConfig

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
"""Shorter secrets are refused: scrubbing a short string would mangle ordinary words."""

# A bot token: base64 user id, base64 timestamp, HMAC. Matching the shape catches tokens the
# filter was never told about (a second bot's, one pasted into an error message).
_TOKEN_SHAPE = re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}\b")
# Webhook and interaction URLs carry a token that lets anyone post as the bot for 15 minutes.
_URL_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.-]{20,}")
# The same tokens inside payloads that libraries log at DEBUG (an INTERACTION_CREATE event's
# "token" field): a dict repr or JSON text.
_FIELD_TOKEN = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+(['"])""")
# Any URL with a query string; the query is dropped when it is a Discord CDN signature.
_URL_QUERY = re.compile(r"""(https?://[^\s?#"'<>]+)\?([^\s#"'<>]*)""")
_SIGNED_KEYS = re.compile(r"(?:^|&)(?:ex|is|hm)=")
_CDN_HOSTS = re.compile(r"^https?://(?:cdn\.discordapp\.com|media\.discordapp\.net)/", re.I)

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class RedactionFilter(logging.Filter):
    """Rewrites each record so that no secret reaches any handler's output."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._formatter = logging.Formatter()
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str) -> None:
        """Scrub this exact string from now on (e.g. the token, once it has been read)."""
        secret = (secret or "").strip()
        if len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        """The text with every secret and signed-URL query replaced."""
        # Longest first, so a secret containing another is removed whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _TOKEN_SHAPE.sub(REDACTED, text)
        text = _URL_TOKEN.sub(rf"\1{REDACTED}", text)
        text = _FIELD_TOKEN.sub(rf"\1{REDACTED}\2", text)
        return _URL_QUERY.sub(_scrub_query, text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # bad %-arguments: leave it to the handler's own error report
            return True
        clean = self.redact(message)
        if clean != message or record.args:
            # Freeze the formatted text: a secret may sit in an argument's repr.
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set, so the traceback is rendered once, redacted.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            setattr(record, key, self._redact_value(value))
        return True

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._redact_value(v) for v in value)
        return value


def _scrub_query(match: re.Match[str]) -> str:
    base, query = match.group(1), match.group(2)
    if _SIGNED_KEYS.search(query) or _CDN_HOSTS.match(base):
        return f"{base}?{REDACTED}"
    return match.group(0)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got through `extra=` (job_id, user_id, ...)."""
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, extras appended in order given."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """One line (plus a traceback when there is one)."""
        text = super().format(record)
        extras = extra_fields(record)
        if not extras:
            return text
        pairs = " ".join(f"{k}={_short(v)}" for k, v in extras.items())
        first, sep, rest = text.partition("\n")
        return f"{first} [{pairs}]{sep}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out[key if key not in out else f"extra_{key}"] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _short(value: Any) -> str:
    text = str(value)
    return text if text and " " not in text else json.dumps(text, ensure_ascii=False)


# One filter for the process, so that `add_secret` works before and after `setup_logging`.
_redactor = RedactionFilter()
_handler: logging.Handler | None = None


def add_secret(secret: str) -> None:
    """Scrub this string from every log record from now on."""
    _redactor.add_secret(secret)


def redact(text: str) -> str:
    """The text as it would appear in the log."""
    return _redactor.redact(text)


def setup_logging(
    config: LoggingConfig,
    *,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
    force: bool = True,
) -> logging.Handler:
    """Install the one root handler (stderr by default) at the configured level and format.

    Calling it again replaces the handler it installed before. With `force` (the default), other
    root handlers (e.g. `logging.basicConfig`'s) are removed too; without it they stay, and get the
    redaction filter as well.
    """
    global _handler
    level = config.level.strip().upper()
    if level not in LEVELS:
        raise ConfigError(f"logging.level must be one of {', '.join(LEVELS)}, not {config.level!r}")
    fmt = config.format.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"logging.format must be text or json, not {config.format!r}")
    for secret in secrets:
        _redactor.add_secret(secret)

    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_redactor)

    root = logging.getLogger()
    for old in list(root.handlers):
        if old is _handler or force:
            root.removeHandler(old)
            if old is _handler:
                old.close()
        elif _redactor not in old.filters:
            old.addFilter(_redactor)
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    # Python warnings (deprecations in libraries, ResourceWarning) go through the same handler.
    logging.captureWarnings(True)
    return handler
