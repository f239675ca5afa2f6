"""`servescope export`: flags -> ExportOptions -> pipeline, then a table of the written variants.

Imports nothing heavy at module level: TensorFlow and ONNX load only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from servescope.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data and training")
    data.add_argument(
        "--dataset",
        default="synthetic",
        help="synthetic (seeded IMDb-like corpus), imdb (Keras' imdb.npz, cached or --dataset-path; "
        "never downloaded) or PATH.npz in the same format",
    )
    data.add_argument(
        "--dataset-path", type=Path, default=None, help="imdb.npz to use with --dataset imdb (default: "
        "~/.keras/datasets/imdb.npz)"
    )  # fmt: skip
    data.add_argument("--epochs", type=int, default=10, help="training epochs")
    data.add_argument("--batch-size", type=int, default=128, help="training batch size (samples)")
    data.add_argument("--train-samples", type=int, default=25000, help="training reviews (IMDb has 25000)")
    data.add_argument(
        "--test-samples", type=int, default=5000, help="held-out reviews for accuracy and checks (>= 256)"
    )
    data.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus and of training")

    out = parser.add_argument_group("model repository")
    out.add_argument("--output", type=Path, default=Path("models"), help="model repository folder to write")
    out.add_argument("--force", action="store_true", help="replace model folders that already exist")
    out.add_argument(
        "--variants",
        default="fp32,int8,fp16",
        help="comma-separated precisions to write (models sentiment_<precision>)",
    )
    out.add_argument("--opset", type=int, default=17, help="ONNX opset")
    out.add_argument(
        "--max-batch-size", type=int, default=64, help="config.pbtxt max_batch_size (samples per batch)"
    )
    out.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=1000,
        help="config.pbtxt dynamic_batching.max_queue_delay_microseconds (microseconds)",
    )
    out.add_argument(
        "--preferred-batch-size",
        type=int,
        action="append",
        default=None,
        help="config.pbtxt dynamic_batching.preferred_batch_size, repeatable (samples; default 8 16 32 64, "
        "capped by --max-batch-size)",
    )
    out.add_argument(
        "--max-queue-size",
        type=int,
        default=1024,
        help="config.pbtxt default_queue_policy.max_queue_size (requests; 0 = unbounded)",
    )
    out.add_argument("--instances", type=int, default=1, help="config.pbtxt instance_group count")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from exporter.pipeline import DEFAULT_PREFERRED_BATCH_SIZES, ExportOptions, export_repository

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.dataset_path is not None and args.dataset != "imdb":
        raise UsageError(f"--dataset-path {args.dataset_path}: only used with --dataset imdb")
    options = ExportOptions(
        output=args.output,
        dataset=args.dataset,
        dataset_path=args.dataset_path,
        epochs=args.epochs,
        batch_size=args.batch_size,
        train_samples=args.train_samples,
        test_samples=args.test_samples,
        seed=args.seed,
        variants=variants,
        force=args.force,
        opset=args.opset,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        preferred_batch_sizes=tuple(args.preferred_batch_size or DEFAULT_PREFERRED_BATCH_SIZES),
        max_queue_size=args.max_queue_size,
        instances=args.instances,
    )
    reports = export_repository(options)
    print(format_table([r.metadata for r in reports]))
    print(f"\nwrote {len(reports)} models to {args.output} (serve them: servescope serve --model-repository "
          f"{args.output})")  # fmt: skip
    return 0


def format_table(rows: list[dict]) -> str:
    """The variants side by side: size, accuracy, agreement with fp32, CPU latency."""
    header = (
        "model",
        "size MB",
        "params",
        "MFLOP/sample",
        "accuracy",
        "max|diff| fp32",
        "CPU ms b1",
        "CPU ms b32",
    )
    lines = [
        (
            m["model_name"],
            f"{m['file_size_bytes'] / 1e6:.2f}",
            f"{m['parameter_count']:,}",
            f"{m['flops_per_sample'] / 1e6:.2f}",
            f"{m['accuracy']:.4f}",
            f"{m['max_abs_diff_vs_fp32']:.1e}",
            f"{m['cpu_latency_s']['batch_1'] * 1e3:.3f}",
            f"{m['cpu_latency_s']['batch_32'] * 1e3:.3f}",
        )
        for m in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    render = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *lines]
    ]
    return "\n".join([render[0], "  ".join("-" * w for w in widths), *render[1:]])
