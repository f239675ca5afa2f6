"""A server the campaign found remote: the analysis says its CPU is not measured here, not that the host's
CPU was not recorded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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
