"""The dynamic batcher in pure asyncio: combining, splitting, delay bound, failures, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from server.batcher import Batcher, BatchReport, BatchSettings
from server.errors import DeadlineExpired, InvalidInput, Overloaded


class FakeModel:
    """Doubles its input; records every batch it ran; can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.gate: asyncio.Event | None = None
        self.fail_when_contains: int | None = None

    async def execute(self, inputs: list[np.ndarray]) -> Sequence[np.ndarray]:
        self.batches.append(inputs[0].copy())
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_when_contains is not None and (inputs[0] == self.fail_when_contains).any():
            raise RuntimeError("model failed on purpose")
        return [inputs[0] * 2.0, inputs[0].sum(axis=1, keepdims=True)]


def rows(*values: int) -> list[np.ndarray]:
    """One request: one row per value, each row [v, v, v]."""
    return [np.array([[v, v, v] for v in values], dtype=np.float32)]


def make(model: FakeModel, **settings: object) -> tuple[Batcher, list[BatchReport], list[str]]:
    reports: list[BatchReport] = []
    drops: list[str] = []
    options = {"max_batch_size": 8, "max_queue_delay_us": 50_000, **settings}
    batcher = Batcher(
        "m", model.execute, BatchSettings(**options), on_batch=reports.append, on_drop=drops.append
    )  # type: ignore[arg-type]
    return batcher, reports, drops


async def test_requests_are_combined_and_split_back_exactly() -> None:
    model = FakeModel()
    batcher, reports, _ = make(model, preferred_batch_sizes=(6,))
    outcomes = await asyncio.gather(
        batcher.submit(rows(1)), batcher.submit(rows(2, 3, 4)), batcher.submit(rows(5, 6))
    )
    assert len(model.batches) == 1
    np.testing.assert_array_equal(model.batches[0][:, 0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(outcomes[0].outputs[0], [[2, 2, 2]])
    np.testing.assert_array_equal(outcomes[1].outputs[0], [[4, 4, 4], [6, 6, 6], [8, 8, 8]])
    np.testing.assert_array_equal(outcomes[1].outputs[1], [[6], [9], [12]])
    np.testing.assert_array_equal(outcomes[2].outputs[0], [[10, 10, 10], [12, 12, 12]])
    assert [o.batch_size for o in outcomes] == [6, 6, 6]
    assert reports == [BatchReport(6, 3, reports[0].compute_s, ok=True)]
    await batcher.close()


async def test_batches_never_exceed_max_batch_size_and_keep_requests_whole() -> None:
    model = FakeModel()
    batcher, _, _ = make(model, max_batch_size=8, max_queue_delay_us=20_000)
    outcomes = await asyncio.gather(*(batcher.submit(rows(i, i, i)) for i in range(5)))
    sizes = [len(b) for b in model.batches]
    assert sum(sizes) == 15 and max(sizes) <= 8
    assert all(size % 3 == 0 for size in sizes)
    for i, outcome in enumerate(outcomes):
        np.testing.assert_array_equal(outcome.outputs[0], np.full((3, 3), 2.0 * i))
    await batcher.close()


async def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    model = FakeModel()
    batcher, _, _ = make(model, max_queue_delay_us=30_000)
    start = time.perf_counter()
    outcome = await batcher.submit(rows(7))
    waited_s = time.perf_counter() - start
    # The lower bound is exact; the upper one leaves room for a busy 2-core machine's scheduling.
    assert 0.0299 <= outcome.queue_s <= 0.08
    assert waited_s < 0.12
    await batcher.close()


async def test_adaptive_delay_skips_waiting_when_no_company_is_coming() -> None:
    for adaptive, should_wait in ((True, False), (False, True)):
        model = FakeModel()
        batcher, _, _ = make(model, max_queue_delay_us=30_000, adaptive_delay=adaptive)
        await batcher.submit(rows(1))
        await asyncio.sleep(0.1)  # arrivals 130 ms apart: nothing will join within a 30 ms delay
        outcome = await batcher.submit(rows(2))
        assert (outcome.queue_s >= 0.0299) is should_wait, (adaptive, outcome.queue_s)
        await batcher.close()


async def test_a_full_preferred_batch_leaves_without_waiting_out_the_delay() -> None:
    model = FakeModel()
    batcher, _, _ = make(model, max_queue_delay_us=5_000_000, preferred_batch_sizes=(2, 4))
    start = time.perf_counter()
    await asyncio.gather(*(batcher.submit(rows(i)) for i in range(4)))
    assert time.perf_counter() - start < 0.5
    assert [len(b) for b in model.batches] == [4]
    await batcher.close()


async def test_requests_that_waited_for_a_busy_slot_leave_with_the_next_free_one() -> None:
    model = FakeModel()
    model.gate = asyncio.Event()
    batcher, _, _ = make(model, max_queue_delay_us=200_000, preferred_batch_sizes=(1,))
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.01)
    queued = [asyncio.ensure_future(batcher.submit(rows(i))) for i in (2, 3)]
    await asyncio.sleep(0.25)  # both queued longer than the delay while the slot was busy
    released = time.perf_counter()
    model.gate.set()
    outcomes = await asyncio.gather(first, *queued)
    assert time.perf_counter() - released < 0.1  # no second 200 ms delay once the slot is free
    assert [len(b) for b in model.batches] == [1, 2]
    assert outcomes[1].queue_s >= 0.25
    await batcher.close()


async def test_a_failed_batch_fails_only_its_own_requests() -> None:
    model = FakeModel()
    model.fail_when_contains = 99
    batcher, reports, _ = make(model, max_batch_size=2, max_queue_delay_us=10_000)
    results = await asyncio.gather(
        batcher.submit(rows(99)), batcher.submit(rows(1)), batcher.submit(rows(2)), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert str(results[0]) == "model failed on purpose"
    np.testing.assert_array_equal(results[2].outputs[0], [[4, 4, 4]])
    assert [r.ok for r in reports] == [False, True]
    ok = await batcher.submit(rows(3))  # the batcher keeps serving
    np.testing.assert_array_equal(ok.outputs[0], [[6, 6, 6]])
    await batcher.close()


async def test_cancelled_requests_are_dropped_before_compute() -> None:
    model = FakeModel()
    model.gate = asyncio.Event()
    batcher, _, drops = make(model, max_queue_delay_us=0)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.01)
    doomed = asyncio.ensure_future(batcher.submit(rows(42)))
    kept = asyncio.ensure_future(batcher.submit(rows(3)))
    await asyncio.sleep(0.01)
    doomed.cancel()
    model.gate.set()
    await asyncio.gather(first, kept)
    assert doomed.cancelled()
    assert all(42 not in batch for batch in model.batches)
    assert drops == ["cancelled"]
    assert batcher.queue_depth == 0
    await batcher.close()


async def test_expired_deadlines_are_dropped_before_compute() -> None:
    model = FakeModel()
    model.gate = asyncio.Event()
    batcher, _, drops = make(model, max_queue_delay_us=0)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(batcher.submit(rows(42), deadline_s=time.perf_counter() + 0.01))
    await asyncio.sleep(0.05)
    model.gate.set()
    await first
    with pytest.raises(DeadlineExpired, match=r"model 'm': deadline passed after .* dropped before compute"):
        await late
    assert all(42 not in batch for batch in model.batches)
    assert drops == ["deadline"]
    await batcher.close()


async def test_a_full_queue_sheds_load_at_once() -> None:
    model = FakeModel()
    model.gate = asyncio.Event()
    batcher, _, _ = make(model, max_queue_delay_us=0, max_queue_size=1)
    running = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batcher.submit(rows(2)))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match=r"model 'm': queue full \(1 requests, max_queue_size 1\)"):
        await batcher.submit(rows(3))
    model.gate.set()
    assert len((await running).outputs[0]) == 1 and len((await queued).outputs[0]) == 1
    await batcher.close()


async def test_without_batching_every_request_is_its_own_batch() -> None:
    model = FakeModel()
    batcher, _, _ = make(model, batching=False, max_concurrent_batches=2)
    await asyncio.gather(*(batcher.submit(rows(i)) for i in range(5)))
    assert sorted(len(b) for b in model.batches) == [1] * 5
    await batcher.close()


async def test_a_request_above_max_batch_size_is_invalid() -> None:
    batcher, _, _ = make(FakeModel(), max_batch_size=2)
    with pytest.raises(InvalidInput, match=r"batch size 3 is outside 1..max_batch_size \(2\)"):
        await batcher.submit(rows(1, 2, 3))
    await batcher.close()


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"max_batch_size": 0}, ValueError, "max_batch_size must be in 1..65536, got 0"),
        ({"max_batch_size": "8"}, TypeError, "max_batch_size must be an int, got '8'"),
        (
            {"max_batch_size": 8, "max_queue_delay_us": -1},
            ValueError,
            "max_queue_delay_us must be in 0..10000000, got -1",
        ),
        (
            {"max_batch_size": 8, "max_queue_delay_us": 2**64 - 1},
            ValueError,
            "max_queue_delay_us must be in 0..10000000, got 18446744073709551615",
        ),
        (
            {"max_batch_size": 8, "preferred_batch_sizes": (16,)},
            ValueError,
            "preferred batch size 16 is outside",
        ),
        (
            {"max_batch_size": 8, "max_concurrent_batches": 0},
            ValueError,
            "max_concurrent_batches must be in 1..64, got 0",
        ),
        ({"max_batch_size": 8, "batching": 1}, TypeError, "batching must be a bool, got 1"),
    ],
)
def test_settings_are_checked_up_front(
    settings: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        BatchSettings(**settings)  # type: ignore[arg-type]


async def test_adaptive_delay_waits_again_soon_after_an_idle_spell() -> None:
    model = FakeModel()
    batcher, _, _ = make(model, max_queue_delay_us=20_000, preferred_batch_sizes=(8,))
    await batcher.submit(rows(0))
    await asyncio.sleep(0.5)  # a long idle spell, then a steady stream every 2 ms
    pending = []
    for i in range(16):
        pending.append(asyncio.ensure_future(batcher.submit(rows(i))))
        await asyncio.sleep(0.002)
    outcomes = await asyncio.gather(*pending)
    assert outcomes[0].batch_size == 1  # right after the idle spell nothing waits
    assert max(o.batch_size for o in outcomes) >= 2  # within a few arrivals, requests wait for company
    await batcher.close()
