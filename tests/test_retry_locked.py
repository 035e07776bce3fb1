"""tracking._retry_locked (tenacity): which errors are retried, how often, and how long it waits in between."""

import time

import pytest

from gradlab.tracking import _retry_locked


@pytest.fixture
def waits(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # tenacity's default sleep calls time.sleep
    return slept


def failing(times: int, error: BaseException):
    calls = []

    @_retry_locked
    def call(x):
        """the docstring"""
        calls.append(x)
        if len(calls) <= times:
            raise error
        return x * 2

    return call, calls


def test_locked_is_retried_until_it_succeeds(waits):
    call, calls = failing(3, RuntimeError("(sqlite3.OperationalError) database is LOCKED"))
    assert call(21) == 42 and calls == [21] * 4
    assert waits == pytest.approx([0.05, 0.075, 0.1125])
    assert call.__name__ == "call" and call.__doc__ == "the docstring"


def test_forty_tries_then_the_error_itself(waits):
    error = RuntimeError("database is locked")
    call, calls = failing(100, error)
    with pytest.raises(RuntimeError) as info:
        call(1)
    assert info.value is error and len(calls) == 40
    expected = [min(0.05 * 1.5**i, 1.0) for i in range(39)]  # 0.05, 0.075, ... then 1 s from the 9th wait on
    assert waits == pytest.approx(expected) and waits[-1] == 1.0


@pytest.mark.parametrize("error", [ValueError("no such run"), KeyboardInterrupt("locked")])
def test_other_errors_are_raised_at_once(waits, error):
    """Only an Exception that says 'locked' is retried: anything else (and Ctrl-C, whatever it says) goes through."""
    call, calls = failing(1, error)
    with pytest.raises(type(error)) as info:
        call(1)
    assert info.value is error and calls == [1] and waits == []
