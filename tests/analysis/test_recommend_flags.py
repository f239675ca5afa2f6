"""Every server change the analysis recommends prints a flag that server/cli.py's real parser reads as
the change's own settings (a renamed flag in servescope/settings.py cannot leave a stale one behind)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from analysis import analyze
from analysis.reader import load_campaign
from server.cli import add_arguments, options_from_args


def shapes(S: Any) -> dict[str, list]:
    """Hand-made campaigns (as in test_verdicts.py), one per server change a verdict recommends."""
    front = dict(delay_us=1000, cores=8, server_cores=1.3, generator_cores=0.5, other_cores=0.1)
    full = dict(max_batch=8, delay_us=1000, server_cores=0.8, generator_cores=0.3)
    return {
        "max_queue_delay_us": [S(users=1, queue_s=0.020, compute_s=0.001, batch_mean=1, delay_us=20000)],
        "batching off": [
            S(users=1, queue_s=0.003, compute_s=0.003, batch_mean=1, delay_us=3000, rest_s=0.0004)
        ],
        "batching on": [
            S(users=1, queue_s=0.0, compute_s=0.0008, batch_mean=1, batching=False),
            S(users=32, queue_s=0.030, compute_s=0.0008, batch_mean=1, batching=False),
        ],
        "max_batch_size": [
            S(users=1, queue_s=0.001, compute_s=0.0013, batch_mean=1, **full),
            S(users=8, queue_s=0.002, compute_s=0.0022, batch_mean=4, **full),
            S(users=64, queue_s=0.040, compute_s=0.0034, batch_mean=8, **full),
        ],
        "workers": [
            S(users=1, queue_s=0.0001, compute_s=0.0003, batch_mean=1, loop_cores=0.3, **front),
            S(users=32, queue_s=0.0005, compute_s=0.0006, batch_mean=3, rest_s=0.011, loop_cores=0.97,
              loop_lag_s=0.004, **front),
        ],
    }  # fmt: skip


@pytest.mark.parametrize("case", ["max_queue_delay_us", "batching off", "batching on", "max_batch_size",
                                  "workers"])  # fmt: skip
def test_every_recommended_server_flag_parses_to_the_change(handmade, kit, tmp_path: Path, case: str) -> None:
    summary = analyze(load_campaign(handmade(shapes(kit.Shape)[case])))
    data = json.loads(json.dumps(summary.to_json()))
    changes = [
        r["change"]
        for verdict in data["verdicts"]
        for r in verdict["recommendations"]
        if r["change"] and r["change"]["where"] == "server"
    ]
    setting, value = case.split()[0], {"off": False, "on": True}.get(case.split()[-1])
    assert any(c["setting"] == setting and value in (None, c["value"]) for c in changes), changes
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    for change in changes:
        argv = ["--model-repository", str(tmp_path), *change["flag"].split()]
        options = options_from_args(parser.parse_args(argv))
        wanted = {change["setting"]: change["value"], **change["also"]}
        assert {name: getattr(options, name) for name in wanted} == wanted, change
