#!/usr/bin/env bash
# The GPU measuring run on a bare machine (docs/server.md, GPU): install what is missing from the wheels
# sent with the run, then benchmarks/gpu/driver.py within its budget. Exports nothing: the models travel.
#
#   bash benchmarks/gpu/run.sh --device cuda --output "$OUT/gpu"          # on the lent GPU machine
#   bash benchmarks/gpu/run.sh --receive-parts-only                        # a run that only brings parts
#   PYTHON=.venv/bin/python bash benchmarks/gpu/run.sh --device cpu --quick --model-repository models \
#       --output /tmp/gpu-dry                                              # the dry run, anywhere
#
# Files it reads (ignored by git, named in the device run's `carry`):
#   gpu-models/   the model repository (servescope export --output gpu-models), the driver's default
#   .whl/*.whl    small wheels the machine lacks (grpcio-health-checking, grpcio-reflection)
#   .whl/parts/   manifest.json and one or more parts of the onnxruntime-gpu wheel (parts.py split)
# Environment: PYTHON (default python3), SERVESCOPE_GPU_STORE (where parts gather between runs,
# default /tmp/servescope-parts), SERVESCOPE_GPU_SITE (install target, default /tmp/servescope-site),
# SERVESCOPE_GPU_HARD_LIMIT_S (the run is killed after this, default 540: under a device run's 600 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
wheels=$root/.whl
store=${SERVESCOPE_GPU_STORE:-/tmp/servescope-parts}
site=${SERVESCOPE_GPU_SITE:-/tmp/servescope-site}
joined=$store/joined
hard_limit_s=${SERVESCOPE_GPU_HARD_LIMIT_S:-540}

if [ -f "$wheels/parts/manifest.json" ]; then
  "$python" "$here/parts.py" receive "$wheels/parts" "$store"
fi
if [ "${1:-}" = "--receive-parts-only" ]; then
  exit 0
fi
if [ -f "$store/manifest.json" ] && [ ! -d "$joined" ]; then
  "$python" "$here/parts.py" join "$store" "$joined" || { echo "run.sh: error: the onnxruntime-gpu parts are incomplete: send the rest with --receive-parts-only runs first" >&2; exit 1; }
fi
to_install=()
for wheel in "$wheels"/*.whl "$joined"/*.whl; do
  [ -f "$wheel" ] && to_install+=("$wheel")
done
if [ ${#to_install[@]} -gt 0 ]; then
  echo "run.sh: installing ${#to_install[@]} wheel(s) into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${to_install[@]}"
  # First on the path: an onnxruntime-gpu here shadows the machine's CPU-only onnxruntime.
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

missing=$("$python" - <<'PY'
import importlib.util
needed = ["grpc", "grpc_health", "grpc_reflection", "google.protobuf", "numpy", "onnxruntime", "prometheus_client",
          "psutil", "aiohttp", "yaml", "pynvml"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
PY
)
if [ -n "$missing" ]; then
  echo "run.sh: error: missing Python packages: $missing (send their wheels in .whl/)" >&2
  exit 1
fi
exec timeout -k 10 "$hard_limit_s" "$python" "$here/driver.py" "$@"
