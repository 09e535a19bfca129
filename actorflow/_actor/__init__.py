"""The engine room: the actor that drives one module, and its owned parts.

``_core`` holds the :class:`Actor` (identity, states, the supervisor's Worker protocol,
one :class:`~._incarnation.Incarnation` per run); ``_pacing`` the quantum; ``_outbox``
ports to links and owed items; ``_retries`` suspect items and dead letters; and one
driver per module kind: ``_source``, ``_consumer``, ``_stepper``.
"""

from __future__ import annotations

from ._core import Actor
from ._pacing import _MAX_STRIDE
from ._retries import DeadLetter

__all__ = ["_MAX_STRIDE", "Actor", "DeadLetter"]
