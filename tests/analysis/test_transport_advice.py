"""The analysis recommends streaming or another protocol with the transport probe's measured figures
(campaign.json `transport`) where time outside queue and compute dominates, and only then."""

from __future__ import annotations

import json

from analysis import analyze
from analysis.reader import load_campaign
from servescope.results import TransportProbe


def verdict(handmade, kit, probe: TransportProbe | None) -> dict:
    S = kit.Shape
    info = kit.make_info()
    info.transport = probe
    # Across a network: on loopback with small requests the transport is not blamed (docs/analysis.md).
    info.target = {"grpc": "10.1.2.3:8001", "metrics_url": None, "embedded": False}
    folder = handmade(
        [
            S(users=1, queue_s=0.0002, compute_s=0.001, batch_mean=1, rest_s=0.040, overhead_s=0.004),
            S(users=8, queue_s=0.0005, compute_s=0.001, batch_mean=2, rest_s=0.060, overhead_s=0.004),
        ],
        info,
    )
    data = json.loads(json.dumps(analyze(load_campaign(folder)).to_json()))
    (found,) = data["verdicts"]
    assert found["kind"] == "serialization-bound"
    return found


def probe(used: str, **p50_ms: float) -> TransportProbe:
    return TransportProbe(
        model="sentiment_fp32",
        requests=200,
        p50_s={name: value / 1e3 for name, value in p50_ms.items()},
        mean_s={name: value / 1e3 for name, value in p50_ms.items()},
        used=used,
    )


def test_streaming_is_recommended_with_the_measured_figures(handmade, kit) -> None:
    found = verdict(handmade, kit, probe("grpc", grpc=1.40, grpc_stream=0.90, http=1.60))
    (advice,) = [r for r in found["recommendations"] if r["text"].startswith("switch to")]
    assert advice["change"]["setting"] == "streaming" and advice["change"]["value"] is True
    assert advice["change"]["where"] == "client" and advice["change"]["flag"] == "--streaming"
    assert advice["text"] == (
        "switch to gRPC streaming (one ModelStreamInfer stream per client: servescope load --streaming, "
        "load.streaming: true): the transport probe measured 0.90 ms per request against 1.40 ms over unary "
        "gRPC (p50 of 200 sequential batch-1 requests each), 0.50 ms (36%) less per request"
    )


def test_rest_users_are_pointed_to_grpc(handmade, kit) -> None:
    found = verdict(handmade, kit, probe("http", grpc=1.0, grpc_stream=1.05, http=1.5))
    (advice,) = [r for r in found["recommendations"] if r["text"].startswith("switch to")]
    assert advice["text"].startswith("switch to unary gRPC (--protocol grpc")
    assert (advice["change"]["setting"], advice["change"]["value"], advice["change"]["current"]) == (
        "protocol",
        "grpc",
        "http",
    )


def test_no_transport_advice_without_a_probe_or_a_clear_saving(handmade, kit) -> None:
    for measured in (
        None,
        probe("grpc_stream", grpc=1.4, grpc_stream=0.9),
        probe("grpc", grpc=1.0, http=0.95),
    ):
        found = verdict(handmade, kit, measured)
        assert not [r for r in found["recommendations"] if r["text"].startswith("switch to")], measured
        assert any("client batch 8" in r["text"] for r in found["recommendations"])  # the other advice stays


def test_a_saturated_event_loop_is_also_pointed_to_the_cheaper_transport(handmade, kit) -> None:
    """The front end's cost is per request, and streaming measured cheaper per request: say so there too."""
    S = kit.Shape
    info = kit.make_info()
    info.transport = probe("grpc", grpc=1.40, grpc_stream=0.90, http=1.60)
    common = dict(delay_us=1000, cores=8, server_cores=1.3, generator_cores=0.5, other_cores=0.1)
    folder = handmade(
        [
            S(users=1, queue_s=0.0001, compute_s=0.0003, batch_mean=1, loop_cores=0.3, **common),
            S(users=32, queue_s=0.0005, compute_s=0.0006, batch_mean=3, rest_s=0.011, loop_cores=0.97,
              loop_lag_s=0.004, **common),
        ],
        info,
    )  # fmt: skip
    (found,) = json.loads(json.dumps(analyze(load_campaign(folder)).to_json()))["verdicts"]
    assert found["kind"] == "front-end-bound"
    (advice,) = [r for r in found["recommendations"] if r["text"].startswith("switch to gRPC streaming")]
    assert "0.90 ms per request against 1.40 ms over unary gRPC" in advice["text"]
