"""The GPU measuring run: provider check, in-process ONNX Runtime, served, a short campaign; all inside
one time budget, progress on stdout, results under --output (see docs/server.md, GPU).

    python benchmarks/gpu/driver.py --device cuda --model-repository gpu-models --output out
    python benchmarks/gpu/driver.py --device cpu --quick --output /tmp/gpu-dry   # the dry run

benchmarks/gpu/run.sh installs what a bare GPU machine lacks and then runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.gpu import campaign, inprocess, report, served  # noqa: E402
from benchmarks.gpu.budget import Budget  # noqa: E402

FULL_BATCH_SIZES = [2**i for i in range(11)]  # 1..1024
QUICK_BATCH_SIZES = [1, 8, 64]
# Shares of the whole budget: in-process (with the provider check), served, campaign.
SHARES = {"in-process": 0.35, "served": 0.45, "campaign": 0.20}


@dataclass(frozen=True)
class Plan:
    batch_sizes: list[int]
    setups: list[tuple[served.ServerSetup, list[int]]]
    step_duration_s: float
    step_warmup_s: float
    campaign_concurrency: list[int]


def plan(quick: bool, workers: int) -> Plan:
    if quick:
        return Plan(
            QUICK_BATCH_SIZES,
            [
                (served.ServerSetup(True, 1), [1, 8]),
                (served.ServerSetup(True, workers), [8]),
                (served.ServerSetup(False, workers), [8]),
            ],
            1.0,
            0.5,
            [4],
        )
    concurrency = [1, 4, 16, 64, 256]
    return Plan(
        FULL_BATCH_SIZES,
        [
            (served.ServerSetup(True, 1), concurrency),
            (served.ServerSetup(True, workers), concurrency),
            (served.ServerSetup(False, workers), [1, 64]),
        ],
        3.0,
        1.0,
        [16, 64, 256],
    )


class DriverError(Exception):
    """Bad input or a device that cannot run: one line on stderr."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise DriverError(message)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--device", required=True, choices=("cpu", "cuda"), help="execution provider to measure"
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=REPO_ROOT / "gpu-models",
        help="a repository made by `servescope export` (models travel; nothing is exported)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="models measured in-process (default: every model in the repository)",
    )
    parser.add_argument(
        "--served-model",
        default=None,
        help="model served and load-tested (default: a *_fp32 model, else the first)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the multi-worker server (default: 4 on cuda, 2 on cpu)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the dry run: batch 1, 8, 64; concurrency 1 and 8; 1 s steps"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds for the whole run (default: 450, 100 with --quick)",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for the results")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 100.0 if args.quick else 450.0
    if args.budget_s <= 0:
        raise DriverError(f"--budget-s {args.budget_s}: must be > 0")
    if args.workers is None:
        args.workers = 4 if args.device == "cuda" else 2
    if args.workers < 2:
        raise DriverError(f"--workers {args.workers}: the multi-worker server needs at least 2")
    repository: Path = args.model_repository
    if not repository.is_dir():
        raise DriverError(
            f"--model-repository {str(repository)!r}: no such folder (export the models "
            "with `servescope export` and send them with the run)"
        )
    found = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    if not found:
        raise DriverError(f"--model-repository {str(repository)!r}: no model (no */config.pbtxt in it)")
    args.models = args.models or found
    unknown = [m for m in [*args.models, args.served_model] if m is not None and m not in found]
    if unknown:
        raise DriverError(f"model {unknown[0]!r} is not in {str(repository)!r} (it holds {found})")
    if args.served_model is None:
        args.served_model = next((m for m in args.models if m.endswith("_fp32")), args.models[0])
    if args.output.exists() and not args.output.is_dir():
        raise DriverError(f"--output {str(args.output)!r} exists and is not a folder")
    return args


def environment(device: str) -> dict[str, Any]:
    """Versions, providers and the GPU NVML sees: what the figures were measured on."""
    import onnxruntime as ort

    from server.gpu import gpu_count

    gpus = []
    if gpu_count():
        import pynvml

        for index in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            gpus.append(name.decode() if isinstance(name, bytes) else str(name))
    return {
        "device": device,
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "gpus": gpus,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def check_device(device: str, env: dict[str, Any]) -> None:
    if device == "cuda" and inprocess.CUDA not in env["available_providers"]:
        raise DriverError(
            f"--device cuda: this onnxruntime {env['onnxruntime']} has no CUDA execution provider "
            f"(providers {env['available_providers']}): install onnxruntime-gpu (benchmarks/gpu/run.sh)",
            1,
        )
    if device == "cuda" and not env["gpus"]:
        raise DriverError("--device cuda: NVML finds no GPU on this machine", 1)
    if device == "cuda":
        import onnxruntime as ort

        # CUDA and cuDNN from the NVIDIA wheels already installed (onnxruntime-gpu >= 1.21); the
        # placement check then says whether the provider really came up.
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()


def write(output: Path, name: str, data: dict[str, Any]) -> None:
    (output / name).write_text(json.dumps(data, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    started = time.time()
    budget = Budget(args.budget_s)
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)
    check_device(args.device, env)
    p = plan(args.quick, args.workers)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "budget_s": args.budget_s,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "environment": env,
        "sections_s": {},
    }
    print(f"gpu driver: device {args.device}, budget {args.budget_s:.0f} s, models {args.models}", flush=True)

    section = budget.section("in-process", SHARES["in-process"] * args.budget_s)
    in_process = inprocess.measure(args.model_repository, args.models, args.device, p.batch_sizes, section)
    write(output, "in_process.json", in_process.to_json())
    meta["sections_s"]["in-process"] = section.elapsed_s()

    section = budget.section("served", SHARES["served"] * args.budget_s)
    served_result = served.measure(
        args.model_repository,
        args.served_model,
        args.device,
        p.setups,
        p.step_duration_s,
        p.step_warmup_s,
        section,
    )
    write(output, "served.json", served_result.to_json())
    meta["sections_s"]["served"] = section.elapsed_s()

    section = budget.section("campaign", budget.left_s())
    campaign_result = campaign.run(
        args.model_repository,
        args.served_model,
        args.device,
        1,
        p.campaign_concurrency,
        p.step_duration_s,
        p.step_warmup_s,
        output,
        section,
    )
    write(output, "campaign.json", campaign_result.to_json())
    meta["sections_s"]["campaign"] = section.elapsed_s()

    meta["wall_s"] = budget.elapsed_s()
    write(output, "run.json", meta)
    text = report.markdown(meta, in_process, served_result, campaign_result)
    (output / "report.md").write_text(text)
    print(
        f"\ngpu driver: done in {meta['wall_s']:.1f} s (budget {args.budget_s:.0f} s); wrote {output}/"
        "{run,in_process,served,campaign}.json and report.md",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    except DriverError as exc:
        print(f"gpu driver: error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
