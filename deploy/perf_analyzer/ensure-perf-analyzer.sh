#!/usr/bin/env bash
# Make sure NVIDIA perf_analyzer and the two libraries it loads sit in VENV/lib/perf_analyzer/.
# Usage: ensure-perf-analyzer.sh VENV   (make test and make perf-analyzer pass .venv)
#
# The binary comes from the tritonclient 2.48.0 wheel (tritonclient-2.48.0.data/data/bin/perf_analyzer);
# only that file is unpacked, so the venv's newer tritonclient stays as it is. libcudart.so.12 comes from
# the nvidia-cuda-runtime-cu12 wheel and libb64.so.0d from the Debian package libb64-0d (unpacked, not
# installed). servescope (loadtest/perf_analyzer.py) finds the folder and sets LD_LIBRARY_PATH for its
# child itself. Idempotent and quiet: prints nothing and exits 0 when the binary already runs.
set -euo pipefail

TRITONCLIENT_VERSION=2.48.0
CUDART_VERSION=12.3.101

venv=${1:?usage: ensure-perf-analyzer.sh VENV}
dest="$venv/lib/perf_analyzer"
binary="$dest/perf_analyzer"
say() { echo "ensure-perf-analyzer: $*" >&2; }

runs() { [ -x "$binary" ] && LD_LIBRARY_PATH="$dest" "$binary" --version >/dev/null 2>&1; }
if runs; then
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  say "no Python environment at $venv (make venv creates .venv)"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
say "installing perf_analyzer $TRITONCLIENT_VERSION into $dest ..."

# The wheels: downloaded, never installed (x86_64 Linux only; the wheels carry no other binary).
if ! "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: --platform manylinux1_x86_64 --python-version 3.11 -d "$work" \
  "tritonclient==$TRITONCLIENT_VERSION" "nvidia-cuda-runtime-cu12==$CUDART_VERSION" >"$work/pip.log" 2>&1; then
  say "cannot download tritonclient==$TRITONCLIENT_VERSION / nvidia-cuda-runtime-cu12==$CUDART_VERSION from the package index: $(tail -n 1 "$work/pip.log")"
  exit 1
fi
"$venv/bin/python" - "$work" "$dest" "$TRITONCLIENT_VERSION" <<'PY'
import pathlib
import sys
import zipfile

work, dest, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
members = {
    "tritonclient-*.whl": f"tritonclient-{version}.data/data/bin/perf_analyzer",
    "nvidia_cuda_runtime_cu12-*.whl": "nvidia/cuda_runtime/lib/libcudart.so.12",
}
for pattern, member in members.items():
    (wheel,) = work.glob(pattern)
    target = dest / pathlib.PurePosixPath(member).name
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read(member))
    target.chmod(0o755)
PY

# libb64.so.0d: the system's when it has one, else unpacked from the Debian package beside the binary.
if ! ldconfig -p 2>/dev/null | grep 'libb64\.so\.0d' >/dev/null && [ ! -e "$dest/libb64.so.0d" ]; then
  fetch_deb() { (cd "$work" && apt-get download -qq libb64-0d >/dev/null 2>&1); }
  if ! fetch_deb && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    fetch_deb || true
  fi
  deb=$(ls "$work"/libb64-0d_*.deb 2>/dev/null | head -n 1 || true)
  if [ -z "$deb" ]; then
    say "libb64.so.0d missing and the Debian package libb64-0d cannot be downloaded; run as root: apt-get update && apt-get install -y libb64-0d"
    exit 1
  fi
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./usr/lib/x86_64-linux-gnu/libb64.so.0d >"$dest/libb64.so.0d"
fi

if ! runs; then
  say "perf_analyzer in $dest does not run: $(LD_LIBRARY_PATH="$dest" "$binary" --version 2>&1 | tail -n 1)"
  exit 1
fi
say "$(LD_LIBRARY_PATH="$dest" "$binary" --version 2>&1 | tail -n 1) ready in $dest"
