"""Carrying remote links over Redis Streams: the Redis backend, which makes the pumps.

One stream per link; one consumer group per receiving module (named after it); one
consumer per process running that module. Payloads are the lossless msgpack encoding
of :mod:`actorflow._data`.

* :class:`~._producer.ProducerPump` drains the sending half of the link into the stream;
* :class:`~._consumer.ConsumerPump` reads the stream into the receiving half
  (:class:`~actorflow._transport.RemoteInLink`) and acknowledges what was handled;
* a module that is not shared holds a lease on its stream (:mod:`._lease`): a second
  instance waits, as a standby, until the first stops.

Every Redis call is retried while the server cannot be reached (one warning, then one
``remote.recovered`` event), so a Redis restart delays items but loses none that it
had accepted (run Redis with ``appendonly yes`` for that).
"""

from __future__ import annotations

from typing import Any, final

from .._link import Mailbox
from .._specs import LinkSpec, Remote
from .._transport import RemoteInLink, sending_link
from ._consumer import ConsumerPump
from ._producer import ProducerPump

__all__ = ["ConsumerPump", "ProducerPump", "RedisBackend", "backend", "stream_key"]


def stream_key(graph: str, source: str, source_port: str, target: str, target_port: str) -> str:
    """The default stream of a remote link."""
    return f"actorflow:{graph}:{source}.{source_port}>{target}.{target_port}"


@final
class RedisBackend:
    """Carries remote links over Redis Streams (see :class:`~actorflow.Remote`)."""

    def sender(self, spec: LinkSpec, *, url: str, graph: str, bound: int) -> ProducerPump:
        """The producer's pump: its link holds up to a batch, the stream ``bound`` items."""
        remote = _remote_of(spec)
        return ProducerPump(
            sending_link(spec, remote.batch),
            url=url,
            stream=_stream_of(spec, graph),
            group=spec.target,
            bound=bound,
            remote=remote,
        )

    def receiver(
        self,
        spec: LinkSpec,
        mailbox: Mailbox,
        *,
        url: str,
        graph: str,
        shared: bool,
        accepts: Any = object,
    ) -> ConsumerPump:
        """The consumer's pump, feeding a :class:`RemoteInLink` into ``mailbox``; items
        that are not of type ``accepts`` (the input port's) are dead-lettered."""
        remote = _remote_of(spec)
        # Room for two entries: one to read while the module works on the other.
        inbound = RemoteInLink(spec, 2 * remote.batch, mailbox)
        return ConsumerPump(
            inbound,
            url=url,
            stream=_stream_of(spec, graph),
            group=spec.target,
            shared=shared,
            remote=remote,
            accepts=accepts,
        )


def _remote_of(spec: LinkSpec) -> Remote:
    if spec.remote is None:
        raise ValueError(f"link {spec.name} is not remote")
    return spec.remote


def _stream_of(spec: LinkSpec, graph: str) -> str:
    remote = _remote_of(spec)
    return remote.stream or stream_key(
        graph, spec.source, spec.source_port, spec.target, spec.target_port
    )


backend = RedisBackend()
"""What :func:`actorflow._transport.load_backend` finds here."""
