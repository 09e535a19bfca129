"""The quantum and its clock stride (actorflow/_actor/_pacing.py)."""

from __future__ import annotations

from actorflow._actor._pacing import _MAX_STRIDE, Pacing
from actorflow._status import ActorState


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pacing(clock: FakeClock, quantum: float = 1.0) -> Pacing:
    states: list[ActorState] = []
    made = Pacing(quantum, lambda state, blocked_on=None: states.append(state), now=clock)
    made.deadline = clock.now + quantum
    return made


def test_strides_give_out_every_item_when_the_quantum_is_not_spent() -> None:
    """A cheap batch is handed out whole, in strides that double up to the maximum."""
    clock = FakeClock()
    paced = pacing(clock)
    sizes = list(paced.strides(1000))
    assert sum(sizes) == 1000
    assert sizes[:5] == [1, 2, 4, 8, 16]
    assert max(sizes) == _MAX_STRIDE


def test_strides_stop_once_the_deadline_has_passed() -> None:
    """The clock is read between two strides; past the deadline no more are given out."""
    clock = FakeClock()
    paced = pacing(clock)
    given = 0
    for size in paced.strides(100):
        given += size
        clock.now += 0.6
    assert given < 100
    assert paced.over()


def test_the_stride_shrinks_when_a_stride_costs_much_of_the_quantum() -> None:
    """Expensive items make the clock be read more often."""
    clock = FakeClock()
    paced = pacing(clock, quantum=16.0)
    paced.stride = 8
    paced.last_check = 0.0
    clock.now = 2.0  # a stride took 1/8 of the quantum
    assert not paced.spent(paced.deadline)
    assert paced.stride == 4
