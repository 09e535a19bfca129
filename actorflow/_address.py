"""``[HOST:]PORT``: where a server of the system (metrics endpoint, dashboard) listens.

A leaf module: it imports nothing from actorflow but the checks, so settings, the
command line and the servers read an address the same way.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

import attrs

from ._checks import short

__all__ = [
    "DEFAULT_HOST",
    "Address",
    "address_text",
    "bind_failure",
    "host_named",
    "loopback_names",
    "parse_address",
]

DEFAULT_HOST = "127.0.0.1"
"""Bound when an address gives only a port: nothing outside the machine can reach it."""


@attrs.frozen
class Address:
    """A host and a TCP port (0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(value: object, option: str = "address") -> Address:
    """``value`` (``9464``, ``"9464"``, ``"0.0.0.0:9464"``, ``"[::1]:9464"``) as an
    :class:`Address`; a bare port listens on :data:`DEFAULT_HOST`.

    Raises:
        TypeError: It is neither a number nor a string.
        ValueError: It is not ``[HOST:]PORT`` with a port from 0 to 65535, naming
            ``option``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{option} must be [HOST:]PORT, got {short(value)}")
    host, colon, port = value.strip().rpartition(":")
    if not colon:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 address, bracketed as in a URL
    elif ":" in host:
        host = ""  # an unbracketed IPv6 address: which colon starts the port?
    if not host or any(c.isspace() or c in "[]/" for c in host):
        raise ValueError(f"{option} must be [HOST:]PORT, got {short(value)}")
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"{option} must be [HOST:]PORT, got {short(value)}")
    if int(port) > 65535:
        raise ValueError(
            f"{option} must be [HOST:]PORT with a port from 0 to 65535, got {short(value)}"
        )
    return Address(host, int(port))


def address_text(value: Any) -> Any:
    """A port given as a number (``metrics=9464``) as the text of an address; anything
    else as it is, for the validator to check."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def loopback_names(host: str) -> frozenset[str] | None:
    """The names a server bound to ``host`` answers to when that is a loopback address
    (``None``: bound to another, whose names cannot be known here: any). A server of
    the machine alone refuses other names in ``Host`` (DNS rebinding: a page elsewhere
    whose name is made to point at 127.0.0.1 must not read the dashboard or metrics)."""
    if host.lower() != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None
    return frozenset({host.lower(), "localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def host_named(header: bytes) -> str:
    """The host a ``Host`` header names, without its port, lowercase."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rpartition(":")[0] if ":" in text else text


def bind_failure(exc: OSError) -> str:
    """Why a server could not listen, in the words both servers use (lowercase, a port
    in use explained)."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another program listens there)"
    return (exc.strerror or str(exc)).lower()
