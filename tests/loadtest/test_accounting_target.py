"""Machine accounting for a server the campaign did not start: found by the port it listens on, its process
tree's CPU recorded as for a server the campaign starts; a target nobody serves here is said to be so."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import psutil
import pytest

from loadtest.campaign import run_campaign
from loadtest.campaign_config import CampaignConfig, parse_campaign_config
from loadtest.listener import locate
from loadtest.server_proc import start_server
from servescope import results
from servescope.settings import ServeFlags

QUICK_STEPS = {"warmup_s": 0.5, "duration_s": 1.5, "max_duration_s": 1.5}
# What the accounting measures of the server's process tree (loadtest/accounting.py).
SERVER_FIGURES = (
    "server_cores",
    "server_available_cores",
    "server_loop_cores",
    "server_busiest_thread_cores",
    "server_loop_wait_share",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(**extra: object) -> CampaignConfig:
    """One step of two users on sentiment_fp32."""
    base = {"name": "acct", "models": ["sentiment_fp32"], "load": {"concurrency": [2]}, "step": QUICK_STEPS}
    return parse_campaign_config(base | extra)


def _listeners(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid
    }


@pytest.mark.slow
def test_a_running_server_with_workers_is_found_and_measured_as_one_the_campaign_starts(
    model_repository: Path, tmp_path: Path
) -> None:
    server = start_server(
        model_repository,
        ["sentiment_fp32"],
        ServeFlags(batching=True, workers=2),
        tmp_path / "srv",
        "external",
    )
    try:
        port = int(server.target.rsplit(":", 1)[1])
        workers = _listeners(port)
        supervisor_children = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        assert len(workers) == 2 and workers <= supervisor_children  # each worker listens (SO_REUSEPORT)
        found = locate(server.target)
        assert (found.where, found.pid) == ("found", server.pid)
        assert set(found.pids) == {server.pid, *supervisor_children}
        assert f"pid {server.pid} (" in found.note and f"listening on port {port}" in found.note
        assert locate(server.http_target or "").pid == server.pid  # the REST port: the same tree

        run_campaign(_config(), tmp_path / "target", target=server.target, metrics_url=server.metrics_url,
                     progress=lambda line: None)  # fmt: skip
    finally:
        server.stop()
    (external,), _ = results.read_steps(tmp_path / "target")
    own_config = _config(server=[{"batching": True, "workers": 2}])
    run_campaign(own_config, tmp_path / "own", model_repository=model_repository, progress=lambda line: None)
    (own,), _ = results.read_steps(tmp_path / "own")

    cpu = external.cpu
    assert cpu.server_process == "found" and cpu.server_pids == found.pids
    assert cpu.server_process_note == found.note
    assert external.completed > 0 and cpu.server_cores is not None and cpu.server_cores > 0.05
    assert own.cpu.server_process == "started" and len(own.cpu.server_pids or []) >= 3  # + 2 workers
    # Equal in kind: every figure the accounting records for its own server is there for the found one.
    measured = {f.name for f in dataclasses.fields(cpu) if getattr(own.cpu, f.name) is not None}
    assert set(SERVER_FIGURES) <= measured
    assert measured == {f.name for f in dataclasses.fields(cpu) if getattr(cpu, f.name) is not None}


def test_a_port_nobody_listens_on_is_not_found_with_the_reason() -> None:
    port = _free_port()
    for target in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"http://127.0.0.1:{port}"):
        found = locate(target)
        assert (found.where, found.pid, found.pids) == ("not found", None, []), target
        assert f"nothing listens on port {port}" in found.note, found.note


def test_a_non_local_address_is_remote_without_any_connection() -> None:
    """Documentation ranges (RFC 5737, RFC 3849): resolved and classified only, never connected to."""
    for target, host in (("203.0.113.1:8001", "203.0.113.1"), ("[2001:db8::1]:8001", "2001:db8::1")):
        found = locate(target)
        assert (found.where, found.pid) == ("remote", None), found
        assert found.note == f"{host} ({host}) is not an address of this machine"


def test_an_address_of_this_machine_is_local() -> None:
    """One of the machine's own (non-loopback) addresses counts as this host."""
    own = [
        entry.address
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family == socket.AF_INET and not entry.address.startswith("127.")
    ]
    if not own:
        pytest.skip("this machine has no non-loopback IPv4 address")
    port = _free_port()
    assert locate(f"{own[0]}:{port}").where == "not found"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nonsense", "target 'nonsense' is not HOST:PORT"),
        ("127.0.0.1:", "target '127.0.0.1:' is not HOST:PORT"),
        (":8001", "target ':8001' is not HOST:PORT"),
    ],
)
def test_a_malformed_target_is_not_found_naming_it(target: str, message: str) -> None:
    found = locate(target)
    assert (found.where, found.note) == ("not found", message)
