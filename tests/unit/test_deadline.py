import pytest

from wsgi_drain.deadline import Deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_remaining_counts_down_and_never_goes_negative() -> None:
    clock = FakeClock()
    d = Deadline(10.0, clock)
    assert d.remaining() == 10.0
    clock.now += 4
    assert d.remaining() == 6.0
    assert not d.expired()
    clock.now += 7
    assert d.remaining() == 0.0
    assert d.expired()


def test_within_is_capped_by_the_parent() -> None:
    clock = FakeClock()
    parent = Deadline(5.0, clock)
    assert parent.within(2.0).remaining() == 2.0
    assert parent.within(60.0).remaining() == 5.0
    clock.now += 4
    assert parent.within(2.0).remaining() == 1.0


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        Deadline(-1)
