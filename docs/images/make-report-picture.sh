#!/usr/bin/env bash
# Render the first screen of a real report.html into docs/images/report-first-screen.png, as shown in
# the README. Needs Debian's chromium (apt-get install chromium); run after `make demo`:
#   bash docs/images/make-report-picture.sh runs/demo-YYYYmmdd-HHMMSS/report/report.html
set -euo pipefail
report=${1:?usage: $0 PATH/TO/report.html}
out=$(dirname "$0")/report-first-screen.png
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1280,1000 \
  --screenshot="$out" "file://$(realpath "$report")" 2>/dev/null
echo "wrote $out"
