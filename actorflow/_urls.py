"""URLs as they may be shown: the password (and secret query values) hidden.

A Redis or HTTP reporter URL may carry a password (``redis://:secret@host/0``); anything
that reaches a log event, the live view, an error message or a ``repr`` goes through
:func:`redact_url` (a URL) or :func:`hide_secrets` (any text that may quote one we know),
and text from elsewhere (a module's error) through :func:`redact_text`, which hides what
looks like a secret in any URL it quotes. A leaf module: it imports nothing from
actorflow, so every room may use it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "HIDDEN",
    "hide_secrets",
    "is_secret_name",
    "redact_data",
    "redact_text",
    "redact_url",
    "secrets_of",
    "url_repr",
]

HIDDEN = "***"
"""What a hidden secret reads as."""


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    try:
        return tuple(urlsplit(url))  # type: ignore[return-value]
    except ValueError:  # an invalid port or IPv6 literal: no URL to take apart
        return None


def redact_url(url: str) -> str:
    """``url`` with its password (and any secret query value) replaced by ``***``.

    The user name stays (it says which account, not how to get in); a string that is not
    a URL is returned as it is.
    """
    parts = _split(url)
    if parts is None:
        return url
    scheme, netloc, path, query, fragment = parts
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if colon else f"{user}@{host}"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = urlencode(
                [(n, HIDDEN if is_secret_name(n) else v) for n, v in pairs], safe="*"
            )
    return urlunsplit((scheme, netloc, path, query, fragment))


def url_repr(url: str | None) -> str:
    """The ``repr`` of an optional URL, redacted (for attrs fields: ``repr=url_repr``)."""
    return repr(None if url is None else redact_url(url))


def secrets_of(url: str) -> list[str]:
    """The secrets ``url`` carries (its password, secret query values), longest first."""
    parts = _split(url)
    if parts is None:
        return []
    _scheme, netloc, _path, query, _fragment = parts
    found: list[str] = []
    userinfo, at, _host = netloc.rpartition("@")
    if at:
        found.append(userinfo.partition(":")[2])
    found += [v for n, v in parse_qsl(query) if is_secret_name(n)]
    # As written in the URL and as a client quotes it back, decoded.
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def hide_secrets(text: str, *urls: str | None) -> str:
    """``text`` (an error message, say) with the secrets of ``urls`` replaced by ``***``,
    wherever it quotes them, whole or in part."""
    for url in urls:
        if url:
            for secret in secrets_of(url):
                text = text.replace(secret, HIDDEN)
    return text


_USERINFO = re.compile(r"(?P<start>://[^\s:/?#@]*):[^\s/?#@]*@")
"""``scheme://user:password@``: the password is what follows the user's colon. Found
from each ``://`` (whatever the scheme), so the scan is linear and text without one is
skipped at ``str.find`` speed; no part can match a ``/`` or ``@``, so none runs on."""

_NAMES = [
    *("password", "passwd", "pass", "pwd", "token", "secret", "key", "apikey", "auth"),
    *("credential", "credentials", "signature", "sig"),
]

_SECRET_NAME = re.compile(rf"(?:^|[_.-])(?:{'|'.join(_NAMES)})\Z", re.IGNORECASE)
"""A name that says its value is a secret: ``token``, ``api_key``, ``X-Amz-Signature``."""

_SECRET_ASSIGNED = re.compile(
    "=(?i:(?<=[{}]=)(?:{}))[^&;#\\s'\"<>]*".format(
        "".join(sorted({name[-1] for name in _NAMES})),
        "|".join(rf"(?<={name}=)(?<![^\W_]{name}=)" for name in _NAMES),
    )
)
"""The value of ``?token=...``, ``&api_key=...``, ``X-Amz-Signature=...``: a value whose
name says it is a secret (the word before ``=``, alone or after ``_``, ``.`` or ``-``),
in a query or said plainly. Found from each ``=`` looking back, so the scan is linear:
text without ``=`` is skipped at ``str.find`` speed, and no long word is tried split by
split (as a pattern for the whole name would, 19 ms for 100 KB)."""


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret (``api_key``)."""
    return _SECRET_NAME.search(name) is not None


_ASSIGNED_HIDDEN = f"={HIDDEN}"


def redact_text(text: str) -> str:
    """``text`` with the password of every URL it quotes (``redis://u:pw@db/0``) and every
    secret-looking value (``?token=...``, ``api_key=...``) replaced by ``***``: for text
    whose URLs nobody told us of, a module's error quoting its database, say. Linear in
    the text's length (a 100 KB error costs about a millisecond)."""
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['start']}:{HIDDEN}@", text)
    if "=" in text:
        text = _SECRET_ASSIGNED.sub(_ASSIGNED_HIDDEN, text)
    return text


def redact_data(value: Any) -> Any:
    """JSON-ready ``value`` (``set_info`` fields) as it may be shown: the value of a
    secret-looking key (``api_key``, ``password``) is ``***``, and every string goes
    through :func:`redact_text`. Depth is bounded by the caller (``json_ready``)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: HIDDEN if is_secret_name(key) and item is not None else redact_data(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_data(item) for item in value]
    return value
