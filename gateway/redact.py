"""Keep credentials out of everything the gateway prints: log lines, `/health`, error texts.

`redact(text)` hides the user information of URLs (`http://user:pass@host` -> `http://***@host`) and the values
of secret-looking query parameters (`?token=abc` -> `?token=***`); `RedactingFilter` applies it to log records.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# scheme://userinfo@ ; userinfo may not contain '/', '@' or whitespace
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")
SECRET_PARAMS = ("token", "access_token", "api_key", "apikey", "key", "password", "passwd", "pwd", "secret",
                 "auth", "authorization", "signature", "sig", "client_secret", "credential", "credentials", "p")
_PARAM = re.compile(
    r"(?P<lead>[?&;](?:" + "|".join(re.escape(p) for p in SECRET_PARAMS) + r")=)(?P<value>[^&#\s\"'<>]+)",
    re.IGNORECASE,
)
_KEYS = "|".join(re.escape(p) for p in SECRET_PARAMS if len(p) > 1)
# "token": "abc" in JSON (or 'token': 'abc' in a Python repr); the closing quote may be cut off by a truncation
_JSON = re.compile(r"""(?P<lead>(?P<q>["'])(?:""" + _KEYS + r""")(?P=q)\s*:\s*(?P<vq>["']))(?:(?!(?P=vq)).)*""",
                   re.IGNORECASE)
# a logged HTTP header line: "authorization: Bearer abc", "cookie: session=abc"
_HEADER = re.compile(r"(?P<lead>\b(?:proxy-)?authorization\s*:\s*|\bcookie\s*:\s*|\bx-api-key\s*:\s*)"
                     r"(?:(?:bearer|basic|token)\s+)?[^\s,;]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URL user information and secret query values replaced by ***."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _PARAM.sub(lambda m: m["lead"] + MASK, text)
    if ":" in text:
        text = _JSON.sub(lambda m: m["lead"] + MASK, text)
        text = _HEADER.sub(lambda m: m["lead"] + MASK, text)
    return text


def redact_obj(value: Any) -> Any:
    """A copy of a JSON-like value with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    return value


def secret_param(name: str) -> bool:
    """True when a query parameter of this name carries a credential."""
    return name.lower() in SECRET_PARAMS


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the formatted message (and the exception text) of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            if redact(exc_text) != exc_text:
                record.exc_text = redact(exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add a `RedactingFilter` to every handler of `logger` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
