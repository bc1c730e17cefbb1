#!/usr/bin/env bash
# Set up, build the default INT8 model if needed, and run the daemon on the
# built-in demo source. Results print as JSON lines; extra arguments go to
# `edgecam run` (e.g. --http-port 8080 for the web preview, or drop --no-mqtt
# by passing --mqtt-host HOST to publish to a broker).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=$(.venv/bin/edgecam model build --arch auto --out models --print-path)
if [ "$#" -gt 0 ] && printf '%s\n' "$@" | grep -q -- '^--mqtt-host$'; then
  exec .venv/bin/edgecam run --source demo --model "$model" "$@"
fi
exec .venv/bin/edgecam run --source demo --model "$model" --no-mqtt "$@"
