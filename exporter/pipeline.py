"""`servescope export` end to end: data, training, ONNX conversion, checks, variants, repository.

Everything that can be refused (dataset, output folder, existing models) is checked before training, so
a bad command fails in a second, and nothing on disk is replaced unless `force` is set. Each model folder
is written beside its final place and renamed into it once complete.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from exporter.datasets import Dataset, check_dataset_spec
from exporter.variants import PRECISIONS
from servescope import repository
from servescope.corpus import SEQUENCE_LENGTH, VOCAB_SIZE
from servescope.errors import CommandError, UsageError
from servescope.protocol import model_config_pb2 as mc

log = logging.getLogger(__name__)

MODEL_PREFIX = "sentiment_"
VERSION = "1"
MODEL_FILE = repository.DEFAULT_MODEL_FILE
PARITY_TOLERANCE = 1e-5  # fp32 ONNX Runtime vs Keras
PARITY_MIN_SAMPLES = 256
# A variant that strays further than this from fp32 on the held-out set is a broken conversion (those
# differ by ~0.5). Dynamic int8 quantization of a trained LSTM moved probabilities by 0.02-0.06 here, fp16
# by 1e-4 to 1e-3.
VARIANT_TOLERANCE = {"fp32": 0.0, "fp16": 1e-2, "int8": 2e-1}
DEFAULT_PREFERRED_BATCH_SIZES = (8, 16, 32, 64)
_PACKAGES = ("servescope", "tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime-gpu",
             "onnxruntime", "numpy")  # fmt: skip


@dataclass(frozen=True)
class ExportOptions:
    """Everything `servescope export` takes; the CLI fills it from flags, tests build it directly."""

    output: Path
    dataset: str = "synthetic"
    dataset_path: Path | None = None
    epochs: int = 10
    batch_size: int = 128
    train_samples: int = 25000
    test_samples: int = 5000
    seed: int = 0
    variants: tuple[str, ...] = PRECISIONS
    force: bool = False
    opset: int = 17
    max_batch_size: int = 64
    max_queue_delay_us: int = 1000
    preferred_batch_sizes: tuple[int, ...] = DEFAULT_PREFERRED_BATCH_SIZES
    max_queue_size: int = 1024
    instances: int = 1
    instance_kind: str = "cpu"  # config.pbtxt instance_group kind: "cpu" (KIND_CPU) or "gpu" (KIND_GPU)


@dataclass
class VariantReport:
    """One written model: where it is and its metadata.json content."""

    name: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


def model_name(precision: str) -> str:
    return f"{MODEL_PREFIX}{precision}"


def validate(options: ExportOptions) -> None:
    """Refuse bad options and unsafe outputs before any work; raises UsageError with one line."""
    positive = {
        "--epochs": options.epochs,
        "--batch-size": options.batch_size,
        "--train-samples": options.train_samples,
        "--max-batch-size": options.max_batch_size,
        "--instances": options.instances,
    }
    for flag, value in positive.items():
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    if options.test_samples < PARITY_MIN_SAMPLES:
        raise UsageError(
            f"--test-samples {options.test_samples}: must be at least {PARITY_MIN_SAMPLES} "
            "(the ONNX Runtime vs Keras check needs them)"
        )
    if options.instance_kind not in INSTANCE_KINDS:
        raise UsageError(
            f"--instance-kind {options.instance_kind!r}: must be one of {', '.join(INSTANCE_KINDS)}"
        )
    if options.max_queue_delay_us < 0:
        raise UsageError(f"--max-queue-delay-us {options.max_queue_delay_us}: must be >= 0")
    if options.max_queue_size < 0:
        raise UsageError(f"--max-queue-size {options.max_queue_size}: must be >= 0 (0 means unbounded)")
    for size in options.preferred_batch_sizes:
        if size < 1:
            raise UsageError(f"--preferred-batch-size {size}: must be at least 1")
    if not options.variants:
        raise UsageError("--variants: name at least one of fp32,int8,fp16")
    for precision in options.variants:
        if precision not in PRECISIONS:
            raise UsageError(
                f"--variants: unknown precision {precision!r}; choose from {','.join(PRECISIONS)}"
            )
    if len(set(options.variants)) != len(options.variants):
        raise UsageError(f"--variants {','.join(options.variants)}: a precision is named twice")
    if not 17 <= options.opset <= 18:
        raise UsageError(
            f"--opset {options.opset}: must be 17 or 18 (17 or newer is required; tf2onnx stops at 18)"
        )
    check_dataset_spec(options.dataset, options.dataset_path)
    _check_output(options)


def _check_output(options: ExportOptions) -> None:
    output = options.output
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output}: exists and is not a folder")
    if not options.force:
        existing = [model_name(p) for p in options.variants if (output / model_name(p)).exists()]
        if existing:
            raise UsageError(
                f"--output {output}: model folder {existing[0]} already exists; pass --force to replace "
                "it or choose another --output"
            )
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".servescope-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"--output {output}: cannot write there: {exc.strerror or exc}") from exc


def export_repository(options: ExportOptions) -> list[VariantReport]:
    """Train, convert, check and write every requested variant; returns what was written.

    Raises:
        UsageError: bad options, dataset or output (before any training).
        CommandError: the ONNX model disagrees with Keras, or a variant with fp32 (nothing written).
    """
    created_output = not options.output.exists()
    validate(options)
    try:
        return _export(options)
    except BaseException:
        # Leave no empty repository folder behind when this run made it (failure or Ctrl-C).
        if created_output and options.output.is_dir() and not any(options.output.iterdir()):
            options.output.rmdir()
        raise


def _export(options: ExportOptions) -> list[VariantReport]:
    from exporter import convert, train
    from exporter.datasets import load_dataset

    data = load_dataset(
        options.dataset,
        train_samples=options.train_samples,
        test_samples=options.test_samples,
        seed=options.seed,
        dataset_path=options.dataset_path,
    )
    log.info(
        "dataset %s: %d training and %d held-out reviews, padded to %d tokens",
        data.name,
        len(data.x_train),
        len(data.x_test),
        SEQUENCE_LENGTH,
    )
    trained = train.train(
        data.x_train, data.y_train, epochs=options.epochs, batch_size=options.batch_size, seed=options.seed
    )
    log.info("trained %d epochs, %.1f s per epoch", options.epochs, float(np.mean(trained.epoch_seconds)))

    start = time.perf_counter()
    fp32 = convert.keras_to_onnx(trained.model, opset=options.opset)
    log.info("converted to ONNX (opset %d) in %.1f s", options.opset, time.perf_counter() - start)
    exported_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    with tempfile.TemporaryDirectory(prefix=".servescope-export-", dir=options.output) as staging_root:
        staging = Path(staging_root)
        # Parity first: a conversion that disagrees with Keras must not reach the repository.
        fp32_probabilities, parity = _check_against_keras(fp32, trained.model, data, staging)
        common = {
            "opset": options.opset,
            "packages": _package_versions(),
            "dataset": data.describe(),
            "seed": options.seed,
            "epochs": options.epochs,
            "exported_at": exported_at,
            "inputs": {"tokens": {"min_value": 0, "max_value": VOCAB_SIZE - 1}},
            # The trained model's parameters: the same for every precision (int8 adds scales only).
            "parameter_count": int(trained.model.count_params()),
            "training": {
                "batch_size": options.batch_size,
                "epoch_seconds": [round(s, 3) for s in trained.epoch_seconds],
                "history": trained.history,
                "optimizer": "adam",
                "loss": "binary_crossentropy",
            },
            "parity_vs_keras": parity,
        }
        reports = []
        for precision in options.variants:
            folder = staging / model_name(precision)
            metadata = _write_variant(precision, fp32, folder, data, fp32_probabilities, common)
            repository.write_config(_model_config(folder.name, options), folder / repository.CONFIG_FILE)
            repository.write_metadata(metadata, folder)
            reports.append(
                VariantReport(name=folder.name, path=options.output / folder.name, metadata=metadata)
            )
        for report in reports:
            _move_into_place(staging / report.name, report.path, options.force)
    return reports


def _check_against_keras(
    fp32: Any, keras_model: Any, data: Dataset, staging: Path
) -> tuple[np.ndarray, dict]:
    """fp32 probabilities on the held-out set, once ONNX Runtime is shown to match Keras (CommandError)."""
    from exporter import convert, measure, train

    path = staging / "fp32-check.onnx"
    _save(fp32, path)
    session = measure.cpu_session(path)
    x = data.x_test[: max(PARITY_MIN_SAMPLES, min(len(data.x_test), 1024))]
    try:
        diff = convert.check_parity(
            train.predict(keras_model, x),
            measure.run_batches(session, x),
            PARITY_TOLERANCE,
            "ONNX Runtime fp32 vs Keras",
        )
    except convert.ParityError as exc:
        raise CommandError(f"export refused: {exc}") from exc
    log.info("parity: ONNX Runtime vs Keras max abs diff %.2e on %d samples", diff, len(x))
    parity = {"samples": len(x), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE}
    return measure.run_batches(session, data.x_test), parity


def _write_variant(
    precision: str,
    fp32: Any,
    folder: Path,
    data: Dataset,
    fp32_probabilities: np.ndarray,
    common: dict[str, Any],
) -> dict[str, Any]:
    """Write folder/1/model.onnx of one precision, check it against fp32, and return its metadata."""
    from exporter import convert, measure
    from exporter.variants import make_variant, op_types
    from servescope.flops import flops_per_sample

    (folder / VERSION).mkdir(parents=True)
    model = make_variant(fp32, precision)
    model_path = folder / VERSION / MODEL_FILE
    _save(model, model_path)
    session = measure.cpu_session(model_path)
    probabilities = measure.run_batches(session, data.x_test)
    tolerance = VARIANT_TOLERANCE[precision]
    try:
        diff = convert.check_parity(fp32_probabilities, probabilities, tolerance, f"{folder.name} vs fp32")
    except convert.ParityError as exc:
        raise CommandError(f"export refused: {exc}") from exc
    flops = flops_per_sample(model)
    metadata = {
        "model_name": folder.name,
        "precision": precision,
        "file_size_bytes": model_path.stat().st_size,
        "initializer_elements": measure.initializer_elements(model),
        "weight_bytes": measure.weight_bytes(model),
        "flops_per_sample": flops["total"],
        "flops_by_op": {k: v for k, v in flops.items() if k != "total"},
        "accuracy": measure.accuracy(probabilities, data.y_test),
        "max_abs_diff_vs_fp32": diff,
        "mean_abs_diff_vs_fp32": float(np.mean(np.abs(probabilities - fp32_probabilities))),
        "label_agreement_vs_fp32": float(np.mean((probabilities >= 0.5) == (fp32_probabilities >= 0.5))),
        "variant_tolerance_vs_fp32": tolerance,
        "cpu_latency_s": {
            "batch_1": measure.median_latency_s(session, data.x_test, 1),
            "batch_32": measure.median_latency_s(session, data.x_test, 32),
        },
        "onnx_op_types": op_types(model),
        **common,
    }
    log.info("%s ready: accuracy %.4f, max abs diff vs fp32 %.2e", folder.name, metadata["accuracy"], diff)
    return metadata


# --instance-kind -> config.pbtxt instance_group kind.
INSTANCE_KINDS = {"cpu": mc.ModelInstanceGroup.KIND_CPU, "gpu": mc.ModelInstanceGroup.KIND_GPU}


def _model_config(name: str, options: ExportOptions) -> mc.ModelConfig:
    """config.pbtxt content. instance_group's kind is what Triton runs the model on: KIND_CPU (the
    default, for CPU hosts) or KIND_GPU (--instance-kind gpu, for GPU deployment: with KIND_CPU Triton
    would run the model on the CPU of a GPU host). The servescope server picks CPU or CUDA at run time
    (--device) whatever this says."""
    config = mc.ModelConfig(
        name=name,
        platform=repository.PLATFORM,
        max_batch_size=options.max_batch_size,
        input=[mc.ModelInput(name="tokens", data_type=mc.TYPE_INT32, dims=[SEQUENCE_LENGTH])],
        output=[mc.ModelOutput(name="probability", data_type=mc.TYPE_FP32, dims=[1])],
        instance_group=[
            mc.ModelInstanceGroup(count=options.instances, kind=INSTANCE_KINDS[options.instance_kind])
        ],
    )
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = options.max_queue_delay_us
    batching.preferred_batch_size.extend(
        sorted({size for size in options.preferred_batch_sizes if size <= options.max_batch_size})
    )
    batching.default_queue_policy.max_queue_size = options.max_queue_size
    return config


def _save(model: Any, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, path)


def _move_into_place(staged: Path, final: Path, force: bool) -> None:
    if final.exists():
        if not force:  # appeared while we trained
            raise UsageError(
                f"--output {final.parent}: model folder {final.name} already exists; pass --force"
            )
        shutil.rmtree(final) if final.is_dir() else final.unlink()
    staged.rename(final)


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions
