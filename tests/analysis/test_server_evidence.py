"""The server's machine evidence in the verdict: a remote server is said to be remote (its CPU is not
measured here, rather than "host CPU not recorded"), and busy compute slots at no more users than slots,
with the server's CPU measured and not full, are the users' own cycle, not a compute limit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from analysis import analyze
from analysis.reader import load_campaign
from servescope.results import SERVER_NOT_FOUND, SERVER_REMOTE, append_step, write_campaign


def _reasons(folder: Path, kit, where: str | None) -> list[str]:
    folder.mkdir()
    write_campaign(kit.make_info(), folder)
    for index, users in enumerate((1, 4)):
        step = kit.make_step(
            index, kit.Shape(users=users, queue_s=0.0002, compute_s=0.004, batch_mean=1, server_cores=None)
        )
        step.cpu = dataclasses.replace(step.cpu, server_process=where, server_process_note="why")
        append_step(step, folder)
    data = json.loads(json.dumps(analyze(load_campaign(folder)).to_json()))
    (verdict,) = data["verdicts"]
    return verdict["reasons"]


def test_a_remote_server_is_said_to_be_remote(tmp_path: Path, kit) -> None:
    reasons = " ".join(_reasons(tmp_path / "remote", kit, SERVER_REMOTE))
    assert "the server is remote: its CPU is not measured here" in reasons
    assert "host CPU not recorded" not in reasons


def test_a_local_server_not_found_keeps_host_cpu_not_recorded(tmp_path: Path, kit) -> None:
    reasons = " ".join(_reasons(tmp_path / "local", kit, SERVER_NOT_FOUND))
    assert "host CPU not recorded" in reasons and "remote" not in reasons


def _verdict(folder: Path, kit, **shape: object) -> dict:
    """One 1-instance step whose compute is 75% of each request's cycle (compute slot busy 75%)."""
    step = kit.Shape(queue_s=0.0, compute_s=0.003, overhead_s=0.0002, rest_s=0.0008, batch_mean=1, **shape)
    folder.mkdir()
    write_campaign(kit.make_info(), folder)
    append_step(kit.make_step(0, step), folder)
    data = json.loads(json.dumps(analyze(load_campaign(folder)).to_json()))
    (verdict,) = data["verdicts"]
    return verdict


def test_one_user_on_one_slot_with_spare_server_cpu_is_healthy_not_compute_bound(tmp_path: Path, kit) -> None:
    """The compute slot is busy 75% of the step, but one user never asks it for two requests at once and
    the server's process tree used 0.9 of 2 cores: the objective met with headroom is healthy."""
    verdict = _verdict(tmp_path / "one", kit, users=1, server_cores=0.9)
    assert verdict["kind"] == "healthy", verdict
    assert any(
        "1 user on 1 compute slot never asked a slot for two requests at once" in r
        and "the server used 0.90 of 2 cores" in r
        for r in verdict["reasons"]
    ), verdict["reasons"]


@pytest.mark.parametrize(
    ("shape", "why"),
    [
        ({"users": 1, "server_cores": None}, "the server's CPU not measured"),
        ({"users": 1, "server_cores": 1.9}, "the server's cores full"),
        ({"users": 2, "server_cores": 0.9}, "more users than slots: a request may wait for the slot"),
    ],
)
def test_busy_compute_without_that_evidence_is_not_called_healthy(tmp_path: Path, kit, shape, why) -> None:
    verdict = _verdict(tmp_path / "case", kit, **shape)
    assert verdict["kind"] != "healthy", why
