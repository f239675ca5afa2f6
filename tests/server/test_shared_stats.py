"""Statistics of several workers add up: each worker's file plus the answering worker's live figures."""

from __future__ import annotations

from pathlib import Path

from server.served import ModelStats
from server.shared_stats import SharedStats


def stats(requests: int, batch: int) -> ModelStats:
    s = ModelStats("m", "1")
    for _ in range(requests):
        s.success.add(0.002)
        s.queue.add(0.001)
    s.inference_count = requests
    s.execution_count = requests // batch
    s.last_inference_ms = 1000 + requests
    for _ in range(requests // batch):
        s.batch_infer[batch].add(0.003)
    return s


def test_whole_server_adds_every_worker(tmp_path: Path) -> None:
    first, second = SharedStats(tmp_path, 0), SharedStats(tmp_path, 1)
    second.path = tmp_path / "stats-1-2.json"  # another process
    second.publish([stats(40, 4)])
    (tmp_path / "stats-2-3.json").write_text("[{half a file")  # being replaced: skipped
    mine = stats(10, 2)
    (total,) = first.whole_server([mine])
    assert total.success.count == 50 and total.queue.count == 50
    assert total.success.ns == mine.success.ns + 40 * 2_000_000
    assert (total.inference_count, total.execution_count, total.last_inference_ms) == (50, 15, 1040)
    assert {size: d.count for size, d in total.batch_infer.items()} == {2: 5, 4: 10}
    assert mine.success.count == 10  # the live figures are not changed
