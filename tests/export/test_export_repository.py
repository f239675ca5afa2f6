"""The repository that `servescope export` writes (the session's `model_repository` fixture).

Checks files, names, shapes, opset, the int8 op type, agreement of every variant with fp32, the FLOP
count against a hand computation, metadata.json, and that config.pbtxt parses with Triton's own
ModelConfig definition (tritonclient) as well as with servescope's.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import numpy_helper

from servescope import repository
from servescope.corpus import pad_sequences, synthetic_reviews
from servescope.flops import flops_per_sample
from servescope.protocol import model_config_pb2 as servescope_mc

pytestmark = pytest.mark.slow  # the session fixture trains and exports once (~15-30 s)

PRECISIONS = ("fp32", "int8", "fp16")
MODELS = tuple(f"sentiment_{p}" for p in PRECISIONS)
# Stated tolerances of each variant against fp32 (exporter.pipeline.VARIANT_TOLERANCE).
TOLERANCE = {"fp32": 0.0, "fp16": 1e-2, "int8": 2e-1}
# Hand count, 2 FLOPs per multiply-add: LSTM 100 steps x 2 x 4 gates x 128 units x (64 inputs + 128 hidden)
# = 19,660,800; Dense 2 x 128 x 1 = 256; the embedding Gather does no arithmetic.
EXPECTED_FLOPS = 100 * 2 * 4 * 128 * (64 + 128) + 2 * 128 * 1
# Keras' count: Embedding 10000 x 64 + LSTM 4 x 128 x (64 + 128 + 1) + Dense 128 + 1.
EXPECTED_PARAMETERS = 10000 * 64 + 4 * 128 * (64 + 128 + 1) + 128 + 1


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def fresh_tokens() -> np.ndarray:
    """Reviews the model never saw (another seed), 300 of them."""
    reviews, _ = synthetic_reviews(300, seed=12345)
    return pad_sequences(reviews)


def test_layout_has_the_three_variants(model_repository: Path) -> None:
    for name in MODELS:
        folder = model_repository / name
        assert (folder / "config.pbtxt").is_file()
        assert (folder / "metadata.json").is_file()
        assert (folder / "1" / "model.onnx").is_file()
    entries = repository.list_models(model_repository)
    assert sorted(e.name for e in entries) == sorted(MODELS)
    assert all(e.versions == (1,) for e in entries)
    # No staging leftovers beside the models.
    assert sorted(p.name for p in model_repository.iterdir()) == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_config_parses_with_triton_and_servescope_definitions(model_repository: Path, name: str) -> None:
    from tritonclient.grpc import model_config_pb2 as triton_mc

    text = (model_repository / name / "config.pbtxt").read_text()
    triton = text_format.Parse(text, triton_mc.ModelConfig())
    ours = repository.read_config(model_repository / name / "config.pbtxt")
    assert isinstance(ours, servescope_mc.ModelConfig)
    for config, mc in ((triton, triton_mc), (ours, servescope_mc)):
        assert config.name == name
        assert config.platform == "onnxruntime_onnx"
        assert config.max_batch_size == 64
        inputs = [(i.name, i.data_type, list(i.dims)) for i in config.input]
        outputs = [(o.name, o.data_type, list(o.dims)) for o in config.output]
        assert inputs == [("tokens", mc.TYPE_INT32, [100])]
        assert outputs == [("probability", mc.TYPE_FP32, [1])]
        assert config.dynamic_batching.max_queue_delay_microseconds == 1000
        assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32, 64]
        assert config.dynamic_batching.default_queue_policy.max_queue_size == 1024
        assert [(g.count, g.kind) for g in config.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]


@pytest.mark.parametrize("name", MODELS)
def test_onnx_names_shapes_and_opset(model_repository: Path, name: str) -> None:
    model = onnx.load(model_repository / name / "1" / "model.onnx")
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17

    def signature(values):
        return [
            (
                v.name,
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        ]

    assert signature(model.graph.input) == [("tokens", onnx.TensorProto.INT32, ["batch", 100])]
    assert signature(model.graph.output) == [("probability", onnx.TensorProto.FLOAT, ["batch", 1])]


def test_int8_lstm_is_dynamically_quantized(model_repository: Path) -> None:
    model = onnx.load(model_repository / "sentiment_int8" / "1" / "model.onnx")
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert ("com.microsoft", "DynamicQuantizeLSTM") in ops
    assert ("", "LSTM") not in ops
    assert ("", "MatMulInteger") in ops
    # LSTM and Dense weights become int8, the embedding table uint8 (quantize_dynamic's choice for Gather).
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    quantized = [i for i in model.graph.initializer if i.data_type in eight_bit]
    assert sum(int(np.prod(i.dims)) for i in quantized) > 738_000


def test_fp16_stores_half_precision_weights(model_repository: Path) -> None:
    model = onnx.load(model_repository / "sentiment_fp16" / "1" / "model.onnx")
    types = {i.data_type for i in model.graph.initializer if int(np.prod(i.dims)) > 1000}
    assert types == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_variants_load_and_agree_with_fp32(
    model_repository: Path, fresh_tokens: np.ndarray, precision: str
) -> None:
    reference = _session(model_repository / "sentiment_fp32" / "1" / "model.onnx")
    variant = _session(model_repository / f"sentiment_{precision}" / "1" / "model.onnx")
    assert [i.name for i in variant.get_inputs()] == ["tokens"]
    expected = reference.run(None, {"tokens": fresh_tokens})[0]
    got = variant.run(None, {"tokens": fresh_tokens})[0]
    assert got.shape == expected.shape == (300, 1)
    assert got.dtype == np.float32
    assert np.all((got >= 0) & (got <= 1))
    assert float(np.max(np.abs(got - expected))) <= TOLERANCE[precision]


def test_batch_dimension_is_dynamic(model_repository: Path, fresh_tokens: np.ndarray) -> None:
    session = _session(model_repository / "sentiment_fp32" / "1" / "model.onnx")
    single = session.run(None, {"tokens": fresh_tokens[:1]})[0]
    batch = session.run(None, {"tokens": fresh_tokens[:64]})[0]
    assert single.shape == (1, 1) and batch.shape == (64, 1)
    assert abs(float(single[0, 0]) - float(batch[0, 0])) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_flops_match_the_hand_count(model_repository: Path, name: str) -> None:
    counted = flops_per_sample(onnx.load(model_repository / name / "1" / "model.onnx"))
    assert counted["total"] == EXPECTED_FLOPS == 19_661_056
    metadata = json.loads((model_repository / name / "metadata.json").read_text())
    assert metadata["flops_per_sample"] == EXPECTED_FLOPS


@pytest.mark.parametrize("precision", PRECISIONS)
def test_metadata_records_the_contract(model_repository: Path, precision: str) -> None:
    name = f"sentiment_{precision}"
    folder = model_repository / name
    meta = json.loads((folder / "metadata.json").read_text())
    model = onnx.load(folder / "1" / "model.onnx")
    assert meta["model_name"] == name
    assert meta["precision"] == precision
    assert meta["file_size_bytes"] == (folder / "1" / "model.onnx").stat().st_size
    assert meta["parameter_count"] == EXPECTED_PARAMETERS == 738_945
    assert meta["weight_bytes"] == sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer)
    assert 0.0 <= meta["accuracy"] <= 1.0
    assert 0.0 <= meta["max_abs_diff_vs_fp32"] <= TOLERANCE[precision]
    assert set(meta["cpu_latency_s"]) == {"batch_1", "batch_32"}
    assert 0 < meta["cpu_latency_s"]["batch_1"] < meta["cpu_latency_s"]["batch_32"] < 1.0
    assert meta["opset"] >= 17
    assert {"onnx", "tf2onnx", "keras", "numpy"} <= set(meta["packages"])
    assert meta["dataset"]["name"] and meta["dataset"]["test_samples"] >= 256
    assert 0.0 <= meta["mean_abs_diff_vs_fp32"] <= meta["max_abs_diff_vs_fp32"]
    assert 0.0 <= meta["label_agreement_vs_fp32"] <= 1.0
    assert isinstance(meta["seed"], int) and meta["epochs"] >= 1
    assert datetime.fromisoformat(meta["exported_at"]).tzinfo is not None
    assert meta["inputs"] == {"tokens": {"min_value": 0, "max_value": 9999}}
    assert meta["parity_vs_keras"]["samples"] >= 256
    assert meta["parity_vs_keras"]["max_abs_diff"] <= 1e-5


def test_the_lstm_learns_the_synthetic_corpus(model_repository: Path) -> None:
    """One epoch over 8000 synthetic reviews (the fixture) already reaches >= 0.85 held-out accuracy."""
    meta = json.loads((model_repository / "sentiment_fp32" / "metadata.json").read_text())
    if meta["dataset"]["name"] != "synthetic" or meta["dataset"]["train_samples"] * meta["epochs"] < 8000:
        pytest.skip(
            f"SERVESCOPE_TEST_REPOSITORY was trained on less: {meta['dataset']}, {meta['epochs']} epochs"
        )
    assert meta["accuracy"] >= 0.85
    int8 = json.loads((model_repository / "sentiment_int8" / "metadata.json").read_text())
    assert int8["label_agreement_vs_fp32"] >= 0.97
    assert abs(int8["accuracy"] - meta["accuracy"]) <= 0.02


def test_precision_changes_size_as_expected(model_repository: Path) -> None:
    sizes = {
        p: json.loads((model_repository / f"sentiment_{p}" / "metadata.json").read_text())["weight_bytes"]
        for p in PRECISIONS
    }
    # fp32: 4 bytes per weight; fp16 half of that; int8 a quarter (plus scales).
    assert sizes["fp32"] >= 4 * EXPECTED_PARAMETERS
    assert 0.45 < sizes["fp16"] / sizes["fp32"] < 0.55
    assert 0.2 < sizes["int8"] / sizes["fp32"] < 0.3
