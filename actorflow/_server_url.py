"""What makes a Redis URL one the client can use, checked where settings and link specs
are validated (``actorflow validate`` included), not first at run time.

The client (coredis) raised a bare ``ValueError`` for a port out of range or a ``db``
that is not a number, and ignored query options it does not know (a typo went unseen).
No import of the client here: it is an optional extra.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

__all__ = ["QUERY_OPTIONS", "redis_url_problem"]

_INT = ("max_connections", "timeout", "max_idle_time", "db")
_FLOAT = ("stream_timeout", "connect_timeout")
_BOOL = ("noreply", "noevict", "notouch", "ssl_check_hostname")
_TEXT = ("client_name", "ssl_keyfile", "ssl_certfile", "ssl_ca_certs", "ssl_cert_reqs")
QUERY_OPTIONS = frozenset((*_INT, *_FLOAT, *_BOOL, *_TEXT))
"""The query options the client understands (``?db=1&client_name=x``)."""
_TRUTH = frozenset(("", "0", "1", "true", "false", "yes", "no", "on", "off"))


def redis_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` (without quoting it: it may hold a password), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"its port is not one from 1 to 65535 ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "its scheme is not redis://, rediss:// or unix://"
    if port == 0:
        return "its port is not one from 1 to 65535"
    if parts.scheme != "unix":
        path = parts.path.strip("/")
        if path and not (path.isascii() and path.isdigit()):
            return f"its database {path[:20]!r} is not a number (redis://host:port/0)"
    return _query_problem(parts.query)


def _query_problem(query: str) -> str | None:
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in QUERY_OPTIONS:
            return f"its option {name[:30]!r} is not one of {', '.join(sorted(QUERY_OPTIONS))}"
        value = values[-1]
        if name in _INT and not (value.isascii() and value.isdigit()):
            return f"its option {name}={value[:20]!r} is not a whole number"
        if name in _FLOAT and not _is_float(value):
            return f"its option {name}={value[:20]!r} is not a number"
        if name in _BOOL and value.lower() not in _TRUTH:
            return f"its option {name}={value[:20]!r} is not true or false"
    return None


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
