#!/usr/bin/env bash
# Set up edgecam in ./.venv on a fresh Debian/Ubuntu machine. Idempotent.
#
#   scripts/setup.sh            runtime + model-building packages (torch, for `edgecam model build`)
#   scripts/setup.sh --runtime  runtime packages only (what the daemon imports; no torch)
#   scripts/setup.sh --train    runtime + onnx: `edgecam train` (head only) without torch, e.g. on a Pi
#   scripts/setup.sh --dev      everything, plus the system tools the tests use
#                               (mosquitto, shellcheck, chromium, systemd-analyze)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  --runtime) mode=runtime ;;
  --train) mode=train ;;
  --dev) mode=dev ;;
  "") ;;
  *) echo "usage: $0 [--runtime|--train|--dev]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install_missing() {
  # $@: pairs of "command:package"; installs the packages whose command is missing.
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "setup: installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

if [ "$mode" = dev ]; then
  apt_install_missing mosquitto:mosquitto mosquitto_passwd:mosquitto-clients shellcheck:shellcheck \
    chromium:chromium systemd-analyze:systemd openssl:openssl strace:strace ip:iproute2
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

case "$mode" in
  runtime) requirements="requirements.txt" ;;
  train) requirements="requirements-train.txt" ;;
  *) requirements="requirements-dev.txt" ;;  # quoted: bare a-b reads as arithmetic (SC2100)
esac
echo "setup: pip install -r $requirements (torch comes from the local disk where available)"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$requirements"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
echo "setup: done ($mode): $("$VENV/bin/edgecam" --version)"
