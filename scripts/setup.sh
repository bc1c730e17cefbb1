#!/usr/bin/env bash
# Set up edgecam in ./.venv on a fresh Debian/Ubuntu/Raspberry Pi OS machine. Idempotent.
# Installs the exact versions of the lock files in locks/ (with --require-hashes).
#
#   scripts/setup.sh --runtime  what the daemon imports (`edgecam run`); no torch
#   scripts/setup.sh --train    runtime + onnx, for training a model's head on the device; no torch
#   scripts/setup.sh            runtime + train + torch, for `edgecam model build` and --finetune
#   scripts/setup.sh --dev      build + the test tools, plus the system tools the tests use
#                               (mosquitto, shellcheck, chromium, systemd-analyze)
#
# Linux x86_64 or aarch64 with CPython 3.11 or later. PYTHON=python3.12 picks another
# interpreter, VENV=DIR another folder. Modes add packages; a smaller mode does not remove any
# (use a fresh VENV for that). Install sizes and times: docs/install.md.
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
[ "$#" -le 1 ] || { echo "usage: $0 [--runtime|--train|--dev]" >&2; exit 2; }

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=locks/$mode.txt

die() { echo "setup: error: $*" >&2; exit 1; }

without_locks() { # the fallback for machines the locks do not cover
  local file=requirements.txt
  [ "$mode" = runtime ] || file="requirements-$mode.txt"
  echo "setup: to install without the locks (newest versions, untested here):" >&2
  echo "  $PYTHON -m venv $VENV && $VENV/bin/pip install -r $file && $VENV/bin/pip install --no-deps -e ." >&2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "setup: installing system packages: $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

apt_install_missing() {
  # $@: pairs of "command:package"; installs the packages whose command is missing.
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}" || die "cannot install ${missing[*]}: no apt-get"
}

check_machine() {
  local os arch
  os=$(uname -s) arch=$(uname -m)
  if [ "$os" != Linux ] || { [ "$arch" != x86_64 ] && [ "$arch" != aarch64 ]; }; then
    echo "setup: error: the locks in locks/ cover Linux x86_64 and aarch64 (64-bit Raspberry Pi OS);" \
      "this is $os $arch" >&2
    without_locks
    exit 1
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: apt-get install python3 (or PYTHON=/path/to/python3.11)"
  if ! "$PYTHON" -c 'import platform, sys; sys.exit(platform.python_implementation() != "CPython" or sys.version_info < (3, 11))'; then
    echo "setup: error: edgecam needs CPython 3.11 or later; $PYTHON is $("$PYTHON" -V 2>&1)." \
      "Debian 12 and Raspberry Pi OS bookworm ship 3.11: PYTHON=/path/to/python3.11 $0 $*" >&2
    without_locks
    exit 1
  fi
}

ensure_venv_support() {
  # Stock Debian's python3 lacks ensurepip (python3-venv), so `python3 -m venv` fails half-way.
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null && return 0
  local version
  version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt_install python3-venv "python$version-venv" ||
    die "$PYTHON cannot create a venv (no ensurepip) and there is no apt-get to install python3-venv"
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "$PYTHON still lacks ensurepip after installing python3-venv"
}

ensure_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "$VENV has $("$VENV/bin/python" -V 2>&1); edgecam needs 3.11 or later: remove $VENV and run again"
    return 0
  fi
  ensure_venv_support
  echo "setup: creating $VENV"
  "$PYTHON" -m venv --clear "$VENV"  # --clear: a venv left without pip by an earlier failed attempt
}

check_machine "$@"
[ -f "$LOCK" ] || die "$LOCK missing (scripts/lock.sh makes it)"
if [ "$mode" = dev ]; then
  apt_install_missing mosquitto:mosquitto mosquitto_passwd:mosquitto-clients shellcheck:shellcheck \
    chromium:chromium systemd-analyze:systemd openssl:openssl strace:strace ip:iproute2
fi
ensure_venv
echo "setup: pip install --require-hashes -r $LOCK"
"$VENV/bin/pip" install -q --disable-pip-version-check --progress-bar off --require-hashes -r "$LOCK"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
echo "setup: done ($mode): $("$VENV/bin/edgecam" --version)"
