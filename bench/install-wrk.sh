#!/usr/bin/env bash
# Install wrk (the HTTP load generator the benchmark drives) from Debian's
# packages when it is missing. Needs root or sudo; does nothing if wrk is there.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
else
  sudo="sudo"
fi
$sudo apt-get update
$sudo apt-get install -y wrk
