"""/metrics parsed with prometheus_client's parser; values checked against what the test sent."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from server.gpu import gpu_count
from servescope.protocol import grpc_service_pb2 as pb
from servescope.protocol import grpc_service_pb2_grpc as pb_grpc

MODEL = "sentiment_fp32"


def infer_request(batch_size: int, model: str = MODEL, value: int = 1) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="tokens", datatype="INT32", shape=[batch_size, 100])
    message.raw_input_contents.append(np.full((batch_size, 100), value, np.int32).tobytes())
    return message


def families(running) -> dict[str, object]:
    status, text = running.http_get("/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_counts_add_up_for_sequential_requests(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=0)
    with grpc.insecure_channel(running.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for size in (1, 2, 5):
            stub.ModelInfer(infer_request(size))
        for bad in (infer_request(1, value=20000), infer_request(1, model="missing")):
            with contextlib.suppress(grpc.RpcError):
                stub.ModelInfer(bad)
    metric = running.metric
    assert metric("servescope_inferences_total", model=MODEL) == 8
    assert metric("servescope_batches_total", model=MODEL) == 3
    assert metric("servescope_batch_size_sum", model=MODEL) == 8
    assert metric("servescope_batch_size_count", model=MODEL) == 3
    assert metric("servescope_batch_size_bucket", model=MODEL, le="4.0") == 2
    assert metric("servescope_requests_total", model=MODEL, code="OK") == 3
    assert metric("servescope_requests_total", model=MODEL, code="INVALID_ARGUMENT") == 1
    assert metric("servescope_requests_total", model="_unknown", code="NOT_FOUND") == 1
    assert metric("servescope_requests_rejected_total", model=MODEL, reason="invalid") == 1
    assert metric("servescope_requests_rejected_total", model=MODEL, reason="queue_full") == 0
    for histogram in ("request_duration_seconds", "queue_duration_seconds", "compute_duration_seconds"):
        assert metric(f"servescope_{histogram}_count", model=MODEL) == 3
    assert metric("servescope_request_duration_seconds_sum", model=MODEL) > 0
    assert metric("servescope_queue_depth", model=MODEL) == 0
    assert metric("servescope_inflight_requests", model=MODEL) == 0
    info = {"model": MODEL, "version": "1", "precision": "fp32", "provider": "CPUExecutionProvider"}
    assert metric("servescope_model_info", **info) == 1


def test_bucket_boundaries_process_metrics_and_gpu_gauges(start_server) -> None:
    running = start_server(models=(MODEL,))
    found = families(running)
    batch_bounds = {
        s.labels["le"] for s in found["servescope_batch_size"].samples if s.name.endswith("_bucket")
    }
    assert batch_bounds == {"1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "+Inf"}
    latency = found["servescope_request_duration_seconds"].samples
    latency_bounds = {float(s.labels["le"]) for s in latency if s.name.endswith("_bucket")}
    assert {0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 10.0} <= latency_bounds
    assert min(latency_bounds) == 0.0001 and max(b for b in latency_bounds if b != float("inf")) == 10.0
    assert "process_cpu_seconds" in found and "process_resident_memory_bytes" in found
    assert ("servescope_gpu_utilization_ratio" in found) == (gpu_count() > 0)


def test_counts_add_up_under_concurrent_batched_load(start_server) -> None:
    running = start_server(models=(MODEL,), max_queue_delay_us=3000)
    sizes = [1, 2, 3] * 14

    async def load() -> None:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            await asyncio.gather(*(stub.ModelInfer(infer_request(size)) for size in sizes))

    asyncio.run(load())
    batches = running.metric("servescope_batches_total", model=MODEL)
    assert running.metric("servescope_inferences_total", model=MODEL) == sum(sizes)
    assert running.metric("servescope_batch_size_sum", model=MODEL) == sum(sizes)
    assert running.metric("servescope_batch_size_count", model=MODEL) == batches
    assert batches < len(sizes)  # requests were combined
    assert running.metric("servescope_requests_total", model=MODEL, code="OK") == len(sizes)
    with grpc.insecure_channel(running.target) as channel:
        stats = pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            pb.ModelStatisticsRequest(name=MODEL)
        )
    assert stats.model_stats[0].execution_count == batches
    assert stats.model_stats[0].inference_count == sum(sizes)


def test_each_server_has_its_own_registry(start_server) -> None:
    first = start_server(models=(MODEL,))
    with grpc.insecure_channel(first.target) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(4))
    second = start_server(models=(MODEL,))
    assert first.metric("servescope_inferences_total", model=MODEL) == 4
    assert second.metric("servescope_inferences_total", model=MODEL) == 0


def test_gpu_gauges_read_nvml_at_scrape_time() -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from server.gpu import GpuCollector

    class FakeNvml:
        """Two GPUs; the utilization changes between scrapes."""

        busy = 30

        def nvmlDeviceGetCount(self) -> int:
            return 2

        def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
            return index

        def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
            return SimpleNamespace(gpu=self.busy + handle)

        def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
            return SimpleNamespace(used=1_000_000 * (handle + 1), total=80_000_000_000)

        def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
            return 250_500  # milliwatts

    collector = GpuCollector()
    fake = FakeNvml()
    collector._nvml = fake
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("servescope_gpu_utilization_ratio", {"gpu": "1"}) == 0.31
    fake.busy = 90
    assert registry.get_sample_value("servescope_gpu_utilization_ratio", {"gpu": "0"}) == 0.9
    assert registry.get_sample_value("servescope_gpu_memory_used_bytes", {"gpu": "1"}) == 2_000_000
    assert registry.get_sample_value("servescope_gpu_memory_total_bytes", {"gpu": "0"}) == 80e9
    assert registry.get_sample_value("servescope_gpu_power_watts", {"gpu": "0"}) == 250.5
    assert b"servescope_gpu_power_watts" in generate_latest(registry)
