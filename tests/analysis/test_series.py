"""A series is every step that differs only in load: any other difference, a setting included, splits it."""

from __future__ import annotations

import dataclasses

from analysis.curves import group_series, series_label
from servescope.results import ServerSettings

BASE = ServerSettings(
    batching=True, max_batch_size=64, max_queue_delay_us=2000, preferred_batch_sizes=[8, 64],
    max_queue_size=0, instances=1, device="cpu", adaptive_delay=True, intra_op_threads=1, workers=1,
    server="servescope",
)  # fmt: skip
# Another value for each field; a field added to ServerSettings must be added here.
OTHER = {
    "batching": False, "max_batch_size": 32, "max_queue_delay_us": 500, "preferred_batch_sizes": [16],
    "max_queue_size": 16, "instances": 2, "device": "cuda", "adaptive_delay": False,
    "intra_op_threads": 2, "workers": 2, "server": "triton",
}  # fmt: skip


def test_every_server_setting_is_part_of_the_series(kit) -> None:
    assert set(OTHER) == {f.name for f in dataclasses.fields(ServerSettings)}
    Shape, make_step = kit.Shape, kit.make_step
    step = {"queue_s": 0.001, "compute_s": 0.001, "batch_mean": 1}
    base = make_step(0, Shape(users=1, **step))
    base.server_settings = BASE
    for name, value in OTHER.items():
        other = make_step(1, Shape(users=8, **step))
        other.server_settings = dataclasses.replace(BASE, **{name: value})
        assert series_label(other) != series_label(base), name
        assert len(group_series([base, other])) == 2, name
    same = make_step(2, Shape(users=8, **step))
    same.server_settings = dataclasses.replace(BASE)
    assert len(group_series([base, same])) == 1
