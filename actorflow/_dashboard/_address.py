"""Where the dashboard listens: ``[HOST:]PORT`` read, checked and bound before anything runs.

The socket is bound by the caller's thread before the graph is built, so a port in use
(or a host that is not this machine's) is one clear error, not a failure inside a
running system. 127.0.0.1 unless a host is given: a dashboard shows what runs, and
nobody else's machine should see it unless asked.
"""

from __future__ import annotations

import ipaddress
import socket

from .. import _address
from .._address import DEFAULT_HOST, bind_failure
from .._checks import short
from .._exceptions import ServeError

__all__ = ["DEFAULT_HOST", "DashboardError", "bind", "parse_address", "require_extra"]


class DashboardError(ServeError):
    """The dashboard cannot listen where it was asked to (a port in use, say): a
    :class:`~actorflow.ServeError`, as for the metrics endpoint."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__("dashboard", address, reason)
        self.reason = reason


def parse_address(value: object) -> tuple[str, int]:
    """``value`` (``"8080"``, ``"0.0.0.0:8080"``, ``"[::1]:8080"``, ``8080`` or a
    ``(host, port)`` pair) as a host and port, read as the metrics endpoint's address is.

    Raises:
        ValueError: It is none of those, or the port is not from 0 to 65535 (0: any
            free port), naming what was given.
        TypeError: It is neither text, a number nor a pair.
    """
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        host, port = value
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535):
            raise ValueError(f"dashboard port must be from 0 to 65535, got {short(value)}")
        value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    address = _address.parse_address(value, "dashboard")
    return address.host, address.port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket at ``host:port``.

    Raises:
        DashboardError: It cannot be bound, saying where and why (in use, not this
            machine's address, a name that does not resolve).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.AF_INET6 if isinstance(_ip(host), ipaddress.IPv6Address) else 0
        found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        family, kind, proto, _, address = found[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise DashboardError(where, bind_failure(exc)) from None
    except ValueError as exc:  # the host is no name at all: "..", a label of 64 letters
        raise DashboardError(where, f"not a host name ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(100)
    except OSError as exc:
        sock.close()
        raise DashboardError(where, bind_failure(exc)) from None
    sock.setblocking(False)
    return sock


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def require_extra() -> None:
    """Raise an ImportError naming the extra unless hypercorn and starlette import."""
    try:
        import hypercorn.trio  # noqa: F401
        import starlette.applications  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the dashboard needs hypercorn and starlette: pip install 'actorflow[dashboard]' "
            f"({exc})"
        ) from exc
