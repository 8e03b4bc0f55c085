"""The queue-depth scaling rule: 0 when empty, capped, monotonic, bad inputs refused."""

from __future__ import annotations

import itertools

import pytest

from transcription.scaling import desired_workers, queue_depth


def test_empty_queue_lets_capacity_fall_to_zero() -> None:
    assert desired_workers(0, 0, 4) == 0
    assert desired_workers(0, 0, 4, chunks_per_worker=10) == 0


@pytest.mark.parametrize(("visible", "in_flight", "maximum", "per", "want"), [
    (1, 0, 4, 1, 1),
    (0, 1, 4, 1, 1),  # a message being worked on keeps its worker
    (2, 1, 4, 1, 3),
    (3, 1, 4, 1, 4),
    (100, 5, 4, 1, 4),  # capped
    (5, 0, 4, 2, 3),  # ceil(5 / 2)
    (4, 0, 4, 2, 2),
    (1, 0, 4, 50, 1),  # one message still gets a worker
    (7, 3, 0, 1, 0),  # maximum 0: capacity switched off
])
def test_rule(visible, in_flight, maximum, per, want) -> None:
    assert desired_workers(visible, in_flight, maximum, chunks_per_worker=per) == want


def test_never_above_maximum_and_never_below_busy_workers() -> None:
    for visible, in_flight, maximum in itertools.product(range(12), range(6), range(8)):
        got = desired_workers(visible, in_flight, maximum)
        assert 0 <= got <= maximum
        assert got == min(visible + in_flight, maximum)
        assert got >= min(in_flight, maximum)


def test_monotonic_in_every_count() -> None:
    grid = range(0, 15)
    for per in (1, 2, 3, 7):
        for a, b in itertools.product(grid, grid):
            base = desired_workers(a, b, 6, per)
            assert desired_workers(a + 1, b, 6, per) >= base
            assert desired_workers(a, b + 1, 6, per) >= base
            assert desired_workers(a, b, 7, per) >= base
            assert desired_workers(a, b, 6, per + 1) <= base


@pytest.mark.parametrize(("args", "error"), [
    ((-1, 0, 4), ValueError),
    ((0, -1, 4), ValueError),
    ((0, 0, -1), ValueError),
    ((1, 0, 4, 0), ValueError),
    ((1, 0, 4, -2), ValueError),
    ((1.5, 0, 4), TypeError),
    (("3", 0, 4), TypeError),
    ((None, 0, 4), TypeError),
    ((True, 0, 4), TypeError),
    ((1, 0, 4.0), TypeError),
])
def test_bad_inputs_are_refused(args, error) -> None:
    with pytest.raises(error):
        desired_workers(*args)


def test_queue_depth_reads_sqs_attributes() -> None:
    attrs = {"ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "2", "Other": "x"}
    assert queue_depth(attrs) == (7, 2)
    assert desired_workers(*queue_depth(attrs), maximum=4) == 4


@pytest.mark.parametrize("attrs", [
    {},
    {"ApproximateNumberOfMessages": "7"},
    {"ApproximateNumberOfMessages": "seven", "ApproximateNumberOfMessagesNotVisible": "0"},
    {"ApproximateNumberOfMessages": "-1", "ApproximateNumberOfMessagesNotVisible": "0"},
])
def test_queue_depth_refuses_bad_attributes(attrs) -> None:
    with pytest.raises(ValueError, match="Approximate"):
        queue_depth(attrs)
