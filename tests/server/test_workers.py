"""`servescope serve --workers 2` as a real child process: both workers serve one port, the metrics add up
exactly, statistics answer for the whole server, a killed worker is replaced while the other serves,
SIGTERM drains both, and the multiprocess folder is gone afterwards."""

from __future__ import annotations

import collections
import os
import re
import signal
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow
MODEL = "sentiment_fp32"
CONNECTIONS = 16  # the kernel spreads connections over the workers: all 16 on one is a 1 in 32768 chance
# What gRPC's client says of a call whose connection broke (the worker's process is gone).
BROKEN_CONNECTION = re.compile(r"Socket closed|Connection reset|Broken pipe|failed to connect|Stream removed")


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def request() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="tokens", datatype="INT32", shape=[1, 100])
    message.raw_input_contents.append(np.ones((1, 100), np.int32).tobytes())
    return message


def stubs(port: int) -> list[pb_grpc.GRPCInferenceServiceStub]:
    options = [("grpc.use_local_subchannel_pool", 1)]  # each channel its own connection
    return [
        pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}", options=options))
        for _ in range(CONNECTIONS)
    ]


def worker_cpu(port: int) -> dict[str, float]:
    return {
        dict(labels)["worker"]: value
        for (name, labels), value in metrics(port).items()
        if name == "servescope_worker_cpu_seconds_total"
    }


def shared_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"servescope-{pid}-*"))


@pytest.fixture
def two_workers(model_repository: Path, tmp_path: Path, serve_cli):
    ready_file = tmp_path / "ready.json"
    process = serve_cli.start(model_repository, ready_file, "--workers", "2", "--grace-period-s", "10")
    try:
        yield process, serve_cli.wait_ready(process, ready_file)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except Exception:
                process.kill()
                process.wait()


def test_two_workers_share_the_port_and_the_metrics_add_up(two_workers) -> None:
    process, ready = two_workers
    grpc_port, metrics_port = ready["grpc_port"], ready["metrics_port"]
    assert ready["pid"] == process.pid
    assert len(shared_folders(process.pid)) == 1
    before = metrics(metrics_port)
    assert before[("servescope_workers", ())] == 2
    assert before[("servescope_worker_restarts_total", ())] == 0
    cpu_before = worker_cpu(metrics_port)
    assert set(cpu_before) == {"0", "1"}
    sent = 0
    for _ in range(25):
        for stub in stubs(grpc_port):
            stub.ModelInfer(request(), timeout=30)
            sent += 1
    after = metrics(metrics_port)
    ok = ("servescope_requests_total", (("code", "OK"), ("model", MODEL)))
    assert after[ok] - before.get(ok, 0.0) == sent  # exactly what the client counted, across workers
    inferences = ("servescope_inferences_total", (("model", MODEL),))
    assert after[inferences] - before[inferences] == sent
    # Both workers did work: each used CPU well beyond the idle loop's (a few ms per second).
    cpu_after = worker_cpu(metrics_port)
    assert all(cpu_after[w] - cpu_before[w] > 0.1 for w in ("0", "1")), (cpu_before, cpu_after)
    lag = {
        dict(labels)["worker"]
        for (name, labels) in after
        if name == "servescope_event_loop_lag_seconds_count"
    }
    assert lag == {"0", "1"}
    assert after[("process_cpu_seconds_total", ())] > before[("process_cpu_seconds_total", ())]
    # ModelStatistics answer for the whole server, whichever worker takes the call.
    time.sleep(0.5)  # a worker publishes its statistics every 0.25 s
    for stub in stubs(grpc_port)[:4]:
        (stats,) = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=10).model_stats
        assert stats.inference_stats.success.count == sent
        assert stats.inference_count == sent
        config = stub.ModelConfig(pb.ModelConfigRequest(name=MODEL), timeout=10).config
        assert config.parameters["servescope.workers"].string_value == "2"
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready


def rest_infer(port: int) -> int:
    """One REST inference on a new connection (the kernel deals connections over the workers)."""
    import http.client
    import json

    header = json.dumps(
        {"inputs": [{"name": "tokens", "datatype": "INT32", "shape": [1, 100],
                     "parameters": {"binary_data_size": 400}}]}
    ).encode()  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = header + np.ones((1, 100), np.int32).tobytes()
        connection.request(
            "POST", f"/v2/models/{MODEL}/infer", body, {"Inference-Header-Content-Length": str(len(header))}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_every_worker_serves_rest_on_the_shared_port(two_workers) -> None:
    _process, ready = two_workers
    http_port, metrics_port = ready["http_port"], ready["metrics_port"]
    assert http_port and http_port not in (ready["grpc_port"], metrics_port)
    before, cpu_before = metrics(metrics_port), worker_cpu(metrics_port)
    statuses = [rest_infer(http_port) for _ in range(300)]
    assert statuses == [200] * 300
    after, cpu_after = metrics(metrics_port), worker_cpu(metrics_port)
    ok = ("servescope_requests_total", (("code", "OK"), ("model", MODEL)))
    assert after[ok] - before.get(ok, 0.0) == 300
    assert all(cpu_after[w] - cpu_before[w] > 0.05 for w in ("0", "1")), (cpu_before, cpu_after)


def _steady_caller(port: int, stop: threading.Event, outcomes: list[tuple[float, float, str, str]]) -> None:
    """One call in flight at all times, until stop, recording (sent, ended, code, details) of each.

    As a careful client does: after a failure it opens a new connection (its next call must not go out
    on the broken one before gRPC noticed), and calls wait for a ready connection (wait_for_ready), so
    that a reconnection landing in the dying worker's accept queue is retried by gRPC rather than
    failing a call no worker ever received."""
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 100)]
    while not stop.is_set():
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                sent_s = time.monotonic()
                try:
                    stub.ModelInfer(request(), timeout=10, wait_for_ready=True)
                    outcomes.append((sent_s, time.monotonic(), "OK", ""))
                except grpc.RpcError as exc:
                    outcomes.append((sent_s, time.monotonic(), exc.code().name, exc.details() or ""))
                    break


def test_a_killed_worker_is_replaced_while_the_other_serves(two_workers) -> None:
    """Only the calls in flight on the killed worker fail: one per connection it held (UNAVAILABLE,
    saying the connection broke, right after the kill), none once the caller reconnected; new
    connections made while the replacement loads all go to the living worker and succeed (a worker
    listens only once it is loaded: before, those got "model ... is still loading")."""
    process, ready = two_workers
    grpc_port, metrics_port = ready["grpc_port"], ready["metrics_port"]
    import psutil

    stop = threading.Event()
    per_connection: list[list[tuple[float, float, str, str]]] = [[] for _ in range(CONNECTIONS)]
    callers = [
        threading.Thread(target=_steady_caller, args=(grpc_port, stop, outcomes))
        for outcomes in per_connection
    ]
    for caller in callers:
        caller.start()
    try:
        time.sleep(1.0)  # every connection has a call in flight
        workers = psutil.Process(process.pid).children()
        victim = next(w for w in workers if "spawn_main" in " ".join(w.cmdline()))
        killed_s = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)  # from now on the kernel deals new connections to listening sockets only
        dead_s = time.monotonic()
        fresh: list[str] = []
        deadline = time.monotonic() + 60
        restarted = False
        while time.monotonic() < deadline and not restarted:
            for stub in stubs(grpc_port):  # new connections while the replacement loads
                try:
                    stub.ModelInfer(request(), timeout=10)
                    fresh.append("OK")
                except grpc.RpcError as exc:
                    fresh.append(f"{exc.code().name}: {exc.details()}")
            now = metrics(metrics_port)
            restarted = (
                now[("servescope_worker_restarts_total", ())] == 1 and now[("servescope_workers", ())] == 2
            )
        time.sleep(0.5)
    finally:
        stop.set()
        for caller in callers:
            caller.join(30)
    assert restarted
    assert fresh and set(fresh) == {"OK"}, collections.Counter(fresh)  # new connections: the living worker
    failures = [(ended_s, code, details) for outcomes in per_connection
                for _, ended_s, code, details in outcomes if code != "OK"]  # fmt: skip
    hit = sum(1 for outcomes in per_connection if any(code != "OK" for *_, code, _ in outcomes))
    print(f"\n{hit} of {CONNECTIONS} connections were on the killed worker, {len(failures)} calls failed; "
          f"{len(fresh)} calls on new connections while the replacement loaded, all OK")  # fmt: skip
    for outcomes in per_connection:  # a connection on the killed worker had one call in flight on it
        assert sum(1 for *_, code, _ in outcomes if code != "OK") <= 1, [o for o in outcomes if o[2] != "OK"]
    assert len(failures) == hit <= CONNECTIONS
    for at_s, code, details in failures:
        assert code == "UNAVAILABLE" and BROKEN_CONNECTION.search(details), (code, details)
        assert at_s - killed_s < 2, at_s - killed_s
    for outcomes in per_connection:  # once answered by a living worker, a caller never fails again
        served_s = min(sent_s for sent_s, _, code, _ in outcomes if code == "OK" and sent_s > dead_s)
        assert all(code == "OK" for sent_s, _, code, _ in outcomes if sent_s > served_s), outcomes[-5:]
    assert process.poll() is None
    for stub in stubs(grpc_port):
        assert stub.ModelInfer(request(), timeout=10).model_name == MODEL


def test_sigterm_drains_both_workers_and_removes_the_folder(two_workers) -> None:
    process, ready = two_workers
    for stub in stubs(ready["grpc_port"])[:4]:
        stub.ModelInfer(request(), timeout=30)
    assert shared_folders(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert shared_folders(process.pid) == []
    log = process.stderr.read()
    assert "draining 2 workers" in log and log.count("all accepted requests answered") == 2


def test_a_folder_left_by_a_killed_supervisor_is_removed_at_the_next_start(
    model_repository: Path, tmp_path: Path, serve_cli
) -> None:
    stale = Path(tempfile.mkdtemp(prefix="servescope-999999999-"))  # no such process
    (stale / "counter_1.db").write_bytes(b"\0" * 16)
    ready_file = tmp_path / "ready.json"
    process = serve_cli.start(model_repository, ready_file, "--workers", "2")
    try:
        serve_cli.wait_ready(process, ready_file)
        assert not stale.exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert os.path.exists(ready_file)
