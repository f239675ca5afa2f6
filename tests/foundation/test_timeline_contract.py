"""The request timeline's contract (servescope/timeline.py): parsing is strict and never raises."""

from __future__ import annotations

from servescope import timeline as tl


def _stamped(**overrides: object) -> dict[str, object]:
    params: dict[str, object] = {tl.PREFIX + name: 1000 + 10 * i for i, name in enumerate(tl.STAMPS)}
    params[tl.CLOCK] = tl.clock_id()
    params[tl.WORKER] = 4242
    params[tl.BATCH_SIZE] = 3
    params.update(overrides)
    return params


def test_a_full_set_of_stamps_parses_into_parts_that_sum_to_the_server_time() -> None:
    stamps, why = tl.parse_stamps(_stamped())
    assert why == "" and stamps is not None
    parts = stamps.parts_ns()
    assert list(parts) == [p.name for p in tl.SERVER_PARTS]
    assert all(value == 10 for value in parts.values())
    assert sum(parts.values()) == stamps.ns["returned"] - stamps.ns["handler"]
    assert stamps.worker == 4242 and stamps.batch_size == 3
    assert stamps.clock.startswith("monotonic@")


def test_parts_chain_every_stamp_once_in_order() -> None:
    chained = [tl.SERVER_PARTS[0].start] + [p.end for p in tl.SERVER_PARTS]
    assert tuple(chained) == tl.STAMPS


def test_no_stamps_is_not_an_error() -> None:
    assert tl.parse_stamps({"other": 1}) == (None, "")


def test_bad_stamps_are_refused_with_a_reason() -> None:
    assert tl.parse_stamps(_stamped(**{tl.PREFIX + "queue": None, tl.PREFIX + "compute_end": -5}))[1] == (
        "stamp 'compute_end' missing or not a non-negative integer"
    )
    assert tl.parse_stamps(_stamped(**{tl.PREFIX + "handler": "12"}))[1] == (
        "stamp 'handler' missing or not a non-negative integer"
    )
    assert tl.parse_stamps(_stamped(**{tl.PREFIX + "returned": 1}))[1] == "stamps out of order"
    assert tl.parse_stamps(_stamped(**{tl.PREFIX + "decoded": True}))[0] is None
