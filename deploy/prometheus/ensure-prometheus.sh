#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` (Debian package `prometheus`, 2.42 on bookworm) are installed.
# Idempotent and quiet: prints nothing and exits 0 when both are already there. Installs with apt-get
# when run as root (CI, dev containers); otherwise says what to run and exits 1.
# The package's own system service is never started (tests run their own instance on free ports).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-prometheus: prometheus/promtool missing; run as root: apt-get install -y prometheus" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-prometheus: installing the Debian package prometheus (promtool included)..." >&2
# policy-rc.d exit 101 stops the package's postinst from starting a system prometheus on :9090.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null 2>&1
