"""Pure unit tests: payloads, samples and windows, stability, /metrics parsing (servescope and Triton)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadtest.payload import InputSpec, PayloadError, build_requests
from loadtest.runner import is_stable
from loadtest.samples import SAMPLE_DTYPE, SampleReader, code_name, tally
from loadtest.scrape import gpu_usage, parse_metrics, process_cpu_seconds, server_deltas
from servescope.results import Window

TOKENS = [InputSpec("tokens", "INT32", (-1, 100))]


def test_token_payloads_are_padded_reviews_never_zeros() -> None:
    requests = build_requests("m", TOKENS, batch_size=4, count=8, seed=1, ranges={"tokens": (0, 5000)})
    assert len(requests) == 8
    arrays = []
    for request in requests:
        assert request.model_name == "m"
        assert request.inputs[0].name == "tokens" and request.inputs[0].datatype == "INT32"
        assert list(request.inputs[0].shape) == [4, 100]
        array = np.frombuffer(request.raw_input_contents[0], dtype="<i4").reshape(4, 100)
        arrays.append(array)
        assert (array.max(axis=1) > 0).all()  # every row holds a review
        assert array.min() >= 0 and array.max() <= 5000
    stacked = np.concatenate(arrays)
    # Keras-style "pre" padding: a review shorter than 100 tokens starts with zeros and ends with words.
    assert (stacked[:, -1] > 0).all()
    assert len({row.tobytes() for row in stacked}) == 32  # distinct reviews
    again = build_requests("m", TOKENS, batch_size=4, count=8, seed=1, ranges={"tokens": (0, 5000)})
    assert again[0].raw_input_contents[0] == requests[0].raw_input_contents[0]


def test_random_payloads_for_other_models_have_the_right_dtype_and_shape() -> None:
    inputs = [
        InputSpec("image", "FP32", (-1, 3, -1)),
        InputSpec("mask", "BOOL", (-1,)),
        InputSpec("k", "INT64", (-1, 2)),
    ]
    (request,) = build_requests("vision", inputs, batch_size=2, count=1, seed=0)
    assert [list(t.shape) for t in request.inputs] == [[2, 3, 1], [2], [2, 2]]
    image = np.frombuffer(request.raw_input_contents[0], dtype="<f4")
    assert image.size == 6 and np.any(image != 0)
    ints = np.frombuffer(request.raw_input_contents[2], dtype="<i8")
    assert ints.size == 4 and (ints >= 1).all()
    with pytest.raises(PayloadError, match=r"model 'vision': token payloads need one integer input"):
        build_requests("vision", inputs, batch_size=1, count=1, seed=0, kind="tokens")
    with pytest.raises(PayloadError, match=r"input 'x': datatype 'BYTES' is not supported"):
        build_requests("s", [InputSpec("x", "BYTES", (-1,))], batch_size=1, count=1, seed=0)


def test_sample_reader_reads_whole_records_incrementally(tmp_path: Path) -> None:
    records = np.array(
        [(10.0, 0.01, 0, 1, np.nan), (10.5, 0.02, 14, 1, 0.001), (11.2, 0.03, 0, 4, 0.003)],
        dtype=SAMPLE_DTYPE,
    )
    path = tmp_path / "samples-host-1.bin"
    raw = records.tobytes()
    path.write_bytes(raw[: SAMPLE_DTYPE.itemsize + 5])  # one record and a partial one
    reader = SampleReader(tmp_path)
    reader.poll()
    assert reader.all().size == 1
    path.write_bytes(raw)
    reader.poll()
    assert reader.all().size == 3
    counted = tally(reader.all(), 10.0, 11.5)
    assert counted.completed == 2 and counted.inferences == 5
    assert counted.errors_by_code == {"UNAVAILABLE": 1}
    assert counted.throughput_rps == pytest.approx(2 / 1.5)
    assert counted.delays_s.tolist() == [0.001, 0.003]  # every request's, where the generator knew it
    assert code_name(-1) == "CLIENT_DROPPED" and code_name(8) == "RESOURCE_EXHAUSTED"


def test_stability_needs_three_agreeing_windows() -> None:
    def w(rps: float, p99: float | None) -> Window:
        return Window(1.0, int(rps), rps, p99)

    assert not is_stable([w(100, 0.01), w(101, 0.01)], 3, 10)
    assert is_stable([w(50, 0.5), w(100, 0.010), w(105, 0.0105), w(98, 0.0098)], 3, 10)
    assert not is_stable([w(100, 0.010), w(105, 0.010), w(130, 0.010)], 3, 10)  # throughput drifts
    assert not is_stable([w(100, 0.010), w(100, 0.013), w(100, 0.010)], 3, 10)  # p99 jumps
    assert not is_stable([w(0, None), w(0, None), w(0, None)], 3, 10)


SERVESCOPE_BEFORE = """
servescope_requests_total{model="m",code="OK"} 100
servescope_request_duration_seconds_count{model="m"} 100
servescope_request_duration_seconds_sum{model="m"} 1.0
servescope_inferences_total{model="m"} 100
servescope_batches_total{model="m"} 50
servescope_batch_size_bucket{model="m",le="1.0"} 10
servescope_batch_size_bucket{model="m",le="2.0"} 50
servescope_batch_size_bucket{model="m",le="+Inf"} 50
servescope_batch_size_sum{model="m"} 100
servescope_batch_size_count{model="m"} 50
servescope_requests_rejected_total{model="m",reason="queue_full"} 0
servescope_requests_total{model="other",code="OK"} 7
process_cpu_seconds_total 3.0
"""
SERVESCOPE_AFTER = """
servescope_requests_total{model="m",code="OK"} 300
servescope_requests_total{model="m",code="RESOURCE_EXHAUSTED"} 5
servescope_request_duration_seconds_count{model="m"} 305
servescope_request_duration_seconds_sum{model="m"} 3.0
servescope_queue_duration_seconds_count{model="m"} 200
servescope_queue_duration_seconds_sum{model="m"} 0.5
servescope_compute_duration_seconds_count{model="m"} 60
servescope_compute_duration_seconds_sum{model="m"} 0.6
servescope_inferences_total{model="m"} 300
servescope_batches_total{model="m"} 110
servescope_batch_size_bucket{model="m",le="1.0"} 20
servescope_batch_size_bucket{model="m",le="2.0"} 80
servescope_batch_size_bucket{model="m",le="4.0"} 110
servescope_batch_size_bucket{model="m",le="+Inf"} 110
servescope_batch_size_sum{model="m"} 300
servescope_batch_size_count{model="m"} 110
servescope_requests_rejected_total{model="m",reason="queue_full"} 5
servescope_requests_total{model="other",code="OK"} 70
servescope_gpu_utilization_ratio{gpu="0"} 0.5
servescope_gpu_memory_used_bytes{gpu="0"} 1e9
servescope_gpu_memory_total_bytes{gpu="0"} 8e9
process_cpu_seconds_total 4.5
"""


def test_servescope_metrics_deltas() -> None:
    before, after = parse_metrics(SERVESCOPE_BEFORE, 0.0), parse_metrics(SERVESCOPE_AFTER, 1.0)
    deltas = server_deltas(before, after, "m")
    assert deltas is not None and deltas.source == "servescope"
    assert deltas.requests == 205 and deltas.request_s_sum == pytest.approx(2.0)
    assert (
        deltas.inferences == 200
        and deltas.batches == 60
        and deltas.batch_size_mean == pytest.approx(200 / 60)
    )
    assert deltas.queue_count == 200 and deltas.compute_mean_s == pytest.approx(0.01)
    assert deltas.batch_size_buckets == {"1": 10, "2": 30, "4": 110, "+Inf": 60}
    assert list(deltas.batch_size_buckets) == ["1", "2", "4", "+Inf"]
    assert deltas.rejected == {"queue_full": 5}
    assert deltas.requests_by_code == {"OK": 200, "RESOURCE_EXHAUSTED": 5}
    assert process_cpu_seconds(after) - process_cpu_seconds(before) == pytest.approx(1.5)
    gpu = gpu_usage([after])
    assert gpu is not None and gpu.utilization_ratio == 0.5 and gpu.memory_total_bytes == 8e9
    assert gpu_usage([before]) is None


TRITON = """
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="m",version="1"}} {ok}
nv_inference_request_failure{{model="m",reason="REJECTED",version="1"}} {rej}
nv_inference_request_failure{{model="m",reason="BACKEND",version="1"}} 0
# TYPE nv_inference_count counter
nv_inference_count{{model="m",version="1"}} {inf}
nv_inference_exec_count{{model="m",version="1"}} {ex}
nv_inference_request_duration_us{{model="m",version="1"}} {req_us}
nv_inference_queue_duration_us{{model="m",version="1"}} {q_us}
nv_inference_compute_infer_duration_us{{model="m",version="1"}} {c_us}
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{gpu_uuid="GPU-1"}} {util}
nv_gpu_memory_used_bytes{{gpu_uuid="GPU-1"}} 2e9
nv_gpu_memory_total_bytes{{gpu_uuid="GPU-1"}} 16e9
nv_gpu_power_usage{{gpu_uuid="GPU-1"}} 70
"""


def test_triton_metrics_map_into_server_deltas() -> None:
    before = parse_metrics(
        TRITON.format(ok=10, rej=0, inf=40, ex=5, req_us=1e4, q_us=1e3, c_us=5e3, util=0.2)
    )
    after = parse_metrics(
        TRITON.format(ok=110, rej=3, inf=440, ex=25, req_us=2.01e6, q_us=5.01e5, c_us=1.005e6, util=0.6)
    )
    deltas = server_deltas(before, after, "m")
    assert deltas is not None and deltas.source == "triton"
    assert deltas.requests == 103 and deltas.inferences == 400 and deltas.batches == 20
    assert deltas.batch_size_mean == pytest.approx(20.0)
    assert deltas.request_s_sum == pytest.approx(2.0) and deltas.queue_mean_s == pytest.approx(0.005)
    assert deltas.compute_mean_s == pytest.approx(0.01)
    assert deltas.rejected == {"queue_full": 3}
    assert deltas.requests_by_code == {"OK": 100, "FAILURE": 3}
    gpu = gpu_usage([before, after])
    assert gpu is not None and gpu.name == "GPU-1" and gpu.utilization_ratio == pytest.approx(0.4)
    assert gpu.memory_used_bytes == 2e9 and gpu.power_watts == 70
    assert server_deltas(parse_metrics("x_total 1\n"), parse_metrics("x_total 2\n"), "m") is None


def test_every_user_class_the_driver_names_is_in_the_locustfile() -> None:
    """The locustfile cannot be imported here (gevent); its classes are read from its source."""
    import ast

    from loadtest.locust_run import LOCUSTFILE
    from loadtest.user_classes import USER_CLASSES

    tree = ast.parse(LOCUSTFILE.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(USER_CLASSES.values()) == defined
