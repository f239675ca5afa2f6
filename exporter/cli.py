"""`servescope export`: flags -> ExportOptions -> pipeline, then a table of the written variants.

Imports nothing heavy at module level: TensorFlow and ONNX load only when the command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from servescope.errors import UsageError

DEFAULT_IMDB_PATH = "~/.keras/datasets/imdb.npz"
DEFAULT_PREFERRED_BATCH_SIZES = [8, 16, 32, 64]  # same as exporter.pipeline's; this module stays light


class _AppendOverDefault(argparse.Action):
    """Like action="append", but the first use replaces the default list instead of extending it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if current is self.default else current), values])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser.add_argument_group("data and training"))
    _add_repository_arguments(parser.add_argument_group("model repository"))


def _add_data_arguments(data: argparse._ArgumentGroup) -> None:
    """What to train on and how: the corpus, its size, the epochs and the seed."""
    data.add_argument(
        "--dataset",
        default="synthetic",
        metavar="synthetic|imdb|PATH.npz",
        help="synthetic (seeded IMDb-like corpus), imdb (Keras' imdb.npz, cached or --dataset-path; "
        "never downloaded) or PATH.npz in the same format",
    )
    data.add_argument(
        "--dataset-path", metavar="FILE", default=DEFAULT_IMDB_PATH, help="imdb.npz for --dataset imdb"
    )
    data.add_argument("--epochs", type=int, metavar="N", default=10, help="training epochs")
    data.add_argument(
        "--batch-size", type=int, metavar="N", default=128, help="training batch size (samples)"
    )
    data.add_argument(
        "--train-samples", type=int, metavar="N", default=25000, help="training reviews (IMDb has 25000)"
    )
    data.add_argument(
        "--test-samples",
        type=int,
        metavar="N",
        default=5000,
        help="held-out reviews for accuracy and checks (>= 256)",
    )
    data.add_argument(
        "--seed", type=int, metavar="N", default=0, help="seed of the synthetic corpus and of training"
    )


def _add_repository_arguments(out: argparse._ArgumentGroup) -> None:
    """What to write: the folder, the precisions, the ONNX opset and each config.pbtxt's settings."""
    out.add_argument(
        "--output", type=Path, metavar="DIR", default=Path("models"), help="model repository folder to write"
    )
    out.add_argument("--force", action="store_true", help="replace model folders that already exist")
    out.add_argument(
        "--variants",
        default="fp32,int8,fp16",
        metavar="LIST",
        help="comma-separated precisions to write (models sentiment_<precision>)",
    )
    out.add_argument("--opset", type=int, metavar="N", default=17, help="ONNX opset")
    out.add_argument(
        "--max-batch-size",
        type=int,
        metavar="N",
        default=64,
        help="config.pbtxt max_batch_size (samples per batch)",
    )
    out.add_argument(
        "--max-queue-delay-us",
        type=int,
        metavar="US",
        default=1000,
        help="config.pbtxt dynamic_batching.max_queue_delay_microseconds (microseconds)",
    )
    out.add_argument(
        "--preferred-batch-size",
        type=int,
        action=_AppendOverDefault,
        default=DEFAULT_PREFERRED_BATCH_SIZES,
        metavar="N",
        help="config.pbtxt dynamic_batching.preferred_batch_size, repeatable (samples; sizes above "
        "--max-batch-size are dropped)",
    )
    out.add_argument(
        "--max-queue-size",
        type=int,
        metavar="N",
        default=1024,
        help="config.pbtxt default_queue_policy.max_queue_size (requests; 0 = unbounded)",
    )
    out.add_argument(
        "--instances", type=int, metavar="N", default=1, help="config.pbtxt instance_group count"
    )
    out.add_argument(
        "--instance-kind",
        metavar="cpu|gpu",
        default="cpu",
        help="config.pbtxt instance_group kind: cpu (KIND_CPU) or gpu (KIND_GPU, for Triton on a GPU host; "
        "servescope serve chooses its device with --device either way)",
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from exporter.pipeline import ExportOptions, export_repository

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.dataset_path != DEFAULT_IMDB_PATH and args.dataset != "imdb":
        raise UsageError(f"--dataset-path {args.dataset_path}: only used with --dataset imdb")
    options = ExportOptions(
        output=args.output,
        dataset=args.dataset,
        dataset_path=Path(args.dataset_path).expanduser(),
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
        preferred_batch_sizes=tuple(args.preferred_batch_size),
        max_queue_size=args.max_queue_size,
        instances=args.instances,
        instance_kind=args.instance_kind,
    )
    reports = export_repository(options)
    print(format_table([r.metadata for r in reports]))
    print(f"\nwrote {len(reports)} models to {args.output}")
    print(f"serve them: servescope serve --model-repository {args.output}")
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
