"""Profile a server of the peer benchmark under load with py-spy: where its CPU time goes.

    .venv/bin/python benchmarks/peers/profile_server.py servescope --model-repository models

Starts the server (settings from results/latest.json unless --settings), loads it with the lean client
at --concurrency for --duration-s while `py-spy record` samples every thread of the server, then
prints and writes (results/profile-<server>.txt) the share of samples per thread, the functions with
the most own time and the most inclusive time. py-spy is installed on first use into
benchmarks/peers/.venvs/tools. Python frames only: time inside C extensions (ONNX Runtime, the gRPC
core) is charged to the Python frame that called them.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import harness  # noqa: E402
import servers  # noqa: E402
import venvs  # noqa: E402


def summarize_raw(raw: str, top: int = 25) -> tuple[str, dict]:
    """Read py-spy's raw (collapsed) output: per-thread, own and inclusive shares of the samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        line = line.strip()
        if not line or " " not in line:
            continue
        stack, count_text = line.rsplit(" ", 1)
        count = int(count_text)
        frames = stack.split(";")
        total += count
        # With --subprocesses and --threads a stack starts "process ...;thread (...);frame;..."
        labels = [f for f in frames if f.startswith(("process ", "thread ("))]
        code = [f for f in frames if not f.startswith(("process ", "thread ("))]
        threads[" / ".join(_short(label) for label in labels) or "?"] += count
        if code:
            own[code[-1]] += count
        for frame in set(code):
            inclusive[frame] += count
    if not total:
        return "no samples", {}

    def block(title: str, counter: collections.Counter[str], n: int) -> list[str]:
        return [title] + [f"  {c / total:6.1%}  {name}" for name, c in counter.most_common(n)]

    lines = [f"{total} samples"]
    lines += block("threads:", threads, 10)
    lines += block("own time:", own, top)
    lines += block("inclusive time:", inclusive, top)
    data = {
        "samples": total,
        "threads": {k: v / total for k, v in threads.most_common(10)},
        "own": {k: v / total for k, v in own.most_common(top)},
        "inclusive": {k: v / total for k, v in inclusive.most_common(top)},
    }
    return "\n".join(lines), data


def _short(label: str) -> str:
    """'process 12:"/path/python3 /path/servescope serve ..."' -> 'process 12 (servescope)'."""
    if label.startswith("process "):
        pid, _, command = label[len("process ") :].partition(":")
        words = command.strip('"').split()
        name = Path(words[1]).name if len(words) > 1 else (Path(words[0]).name if words else "?")
        return f"process {pid} ({name})"
    return label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("server", choices=servers.SERVERS, help="which server to profile")
    parser.add_argument("--model-repository", type=Path, required=True, help="exported model repository")
    parser.add_argument("--model", default="sentiment_fp32", help="model to serve")
    parser.add_argument(
        "--settings", default=None, help="JSON server settings (default: results/latest.json)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--duration-s", type=float, default=10.0, help="profiled seconds")
    parser.add_argument("--rate-hz", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--output", type=Path, default=HERE / "results", help="folder for profile-<server>.txt"
    )
    args = parser.parse_args(argv)
    settings = servers.chosen_settings(args.server, args.settings)
    py_spy = venvs.ensure("tools").parent / "py-spy"
    workdir = Path(tempfile.mkdtemp(prefix=f"servescope-profile-{args.server}-"))
    server = servers.start(args.server, settings, args.model_repository.resolve(), args.model, workdir)
    raw_path = workdir / "py-spy.txt"
    try:
        # py-spy attaches to the server's main process; for Triton that is the PyTriton process that
        # runs ONNX Runtime (tritonserver itself is C++).
        spy = subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(server.process.pid),
                "--duration",
                str(int(args.duration_s)),
                "--rate",
                str(args.rate_hz),
                "--format",
                "raw",
                "--output",
                str(raw_path),
                "--threads",
                "--nonblocking",
                "--subprocesses",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        point = harness.measure_point(
            server, args.model, harness.PointSpec(args.concurrency, args.duration_s + 1.0, 1.0)
        )
        _, spy_err = spy.communicate(timeout=args.duration_s + 60)
    finally:
        servers.stop(server)
    if not raw_path.is_file():
        print(f"py-spy wrote nothing: {spy_err.strip()}", file=sys.stderr)
        return 1
    text, data = summarize_raw(raw_path.read_text())
    header = (
        f"{args.server} {settings} at concurrency {args.concurrency}: {point['throughput_rps']:.0f} req/s, "
        f"p50 {point['p50_s'] * 1e3:.2f} ms, p99 {point['p99_s'] * 1e3:.2f} ms, "
        f"server {point['server_cores']} cores, client {point['client_cores']} cores, "
        f"mean batch {point['mean_batch_size']}"
    )
    report = header + "\n" + text + "\n"
    print(report)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / f"profile-{args.server}.txt").write_text(report)
    (args.output / f"profile-{args.server}.json").write_text(
        harness.dumps({"point": point, "settings": settings, **data})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
