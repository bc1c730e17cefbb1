#!/usr/bin/env bash
# Install edgecam as a hardened systemd service on Raspberry Pi OS bookworm (64-bit).
#
#   sudo scripts/install-pi.sh --model resnet18_160_int8.onnx   # model built on a PC (recommended)
#   sudo scripts/install-pi.sh --build-model                    # build it here (torch, ~1.5 GB, slow)
#   sudo scripts/install-pi.sh --with-mosquitto ...             # plus a local MQTT broker
#   scripts/install-pi.sh --dry-run                             # print every command, change nothing
#   sudo scripts/install-pi.sh --uninstall [--purge]            # remove (keeps config unless --purge)
#
# Idempotent: every step checks first, so re-running after `git pull` upgrades in place.
# Layout: /opt/edgecam/venv (code), /etc/edgecam/{config.yaml,edgecam.env},
# /var/lib/edgecam/models (model), /etc/systemd/system/edgecam.service.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${EDGECAM_ROOT:-}          # install under another root (tests, image building); "" = /
SERVICE=edgecam
SERVICE_USER=edgecam
APP_DIR=/opt/edgecam
VENV=$APP_DIR/venv
ETC_DIR=/etc/edgecam
STATE_DIR=/var/lib/edgecam
MODEL_DIR=$STATE_DIR/models
CACHE_DIR=/var/cache/edgecam
UNIT_PATH=/etc/systemd/system/$SERVICE.service
DEFAULT_MODEL=resnet18_160_int8.onnx
APT_PACKAGES=(python3-venv python3-pip python3-picamera2)
MOSQUITTO_PACKAGES=(mosquitto mosquitto-clients)
# picamera2's apt dependencies (simplejpeg, ...) are built against Debian's numpy 1.x;
# a numpy 2 in the venv would break `import picamera2` (picamera2 issues #1088, #1211).
PI_PINS=("numpy<2")

DRY_RUN=0 UNINSTALL=0 PURGE=0 WITH_MOSQUITTO=0 BUILD_MODEL=0 FORCE=0 PRINT_CONFIG=0
MODEL_FILE="" CONFIG_FILE="$SRC_DIR/config.yaml"
CHANGED=0

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --model FILE       install this prebuilt .onnx model (from `edgecam model build --out models`)
  --build-model      build the INT8 model on this machine in a throwaway venv (needs internet)
  --config FILE      config to install when /etc/edgecam/config.yaml does not exist yet
                     (default: the repository's config.yaml, set up for the Pi camera)
  --with-mosquitto   also install and enable a local Mosquitto broker
  --uninstall        stop and remove the service, the venv and the cache
  --purge            with --uninstall: also remove /etc/edgecam, the models and the user
  --dry-run          print every command that would run; change nothing
  --print-config     print the config.yaml this script would install, and exit
  --force            install on a machine that is not a Raspberry Pi
  -h, --help         this help
EOF
}

log() { printf 'install-pi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command, or only print it with --dry-run. Every change goes through here.
run() {
  CHANGED=1
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
    return 0
  fi
  "$@"
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --model) [ $# -ge 2 ] || die "--model needs a file"; MODEL_FILE=$2; shift ;;
      --build-model) BUILD_MODEL=1 ;;
      --config) [ $# -ge 2 ] || die "--config needs a file"; CONFIG_FILE=$2; shift ;;
      --with-mosquitto) WITH_MOSQUITTO=1 ;;
      --uninstall) UNINSTALL=1 ;;
      --purge) PURGE=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --print-config) PRINT_CONFIG=1 ;;
      --force) FORCE=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  if [ "$PURGE" -eq 1 ] && [ "$UNINSTALL" -eq 0 ]; then die "--purge only goes with --uninstall"; fi
  if [ -n "$MODEL_FILE" ] && [ "$BUILD_MODEL" -eq 1 ]; then die "give --model or --build-model, not both"; fi
  if [ -n "$MODEL_FILE" ] && [ ! -f "$MODEL_FILE" ]; then die "--model $MODEL_FILE: no such file"; fi
  if [ ! -f "$CONFIG_FILE" ]; then die "--config $CONFIG_FILE: no such file"; fi
  return 0
}

model_name() {
  if [ -n "$MODEL_FILE" ]; then basename "$MODEL_FILE"; else echo "$DEFAULT_MODEL"; fi
}

# The installed config is the given one with an absolute model path and the Pi camera as source.
config_edits() {
  printf '%s\n' -e "s#^  \(\# \)\{0,1\}path: .*\.onnx\$#  path: $MODEL_DIR/$(model_name)#" -e 's#^  uri: demo$#  uri: picamera2#'
}

render_config() {
  local edits
  mapfile -t edits < <(config_edits)
  sed "${edits[@]}" "$CONFIG_FILE"
}

is_raspberry_pi() {
  [ -r /proc/device-tree/model ] && tr -d '\0' </proc/device-tree/model | grep -q "Raspberry Pi"
}

check_platform() {
  local arch
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  if ! is_raspberry_pi; then
    if [ "$DRY_RUN" -eq 1 ]; then
      log "note: this is not a Raspberry Pi ($arch); showing what would run on Raspberry Pi OS bookworm arm64"
    elif [ "$FORCE" -eq 0 ]; then
      die "this is not a Raspberry Pi: use --dry-run to see the steps, or --force to install anyway"
    fi
  elif [ "$arch" != arm64 ] && [ "$arch" != aarch64 ]; then
    die "needs the 64-bit Raspberry Pi OS (found $arch): onnxruntime has no 32-bit ARM wheels"
  fi
  if [ "$(id -u)" -ne 0 ] && [ "$DRY_RUN" -eq 0 ]; then die "run as root (sudo $0 ...)"; fi
  for file in requirements.txt pyproject.toml systemd/edgecam.service systemd/edgecam.env.example; do
    [ -f "$SRC_DIR/$file" ] || die "$SRC_DIR/$file missing: run this from an edgecam checkout"
  done
}

apt_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_apt_packages() {
  local wanted=("${APT_PACKAGES[@]}") missing=() pkg
  if [ "$WITH_MOSQUITTO" -eq 1 ]; then wanted+=("${MOSQUITTO_PACKAGES[@]}"); fi
  for pkg in "${wanted[@]}"; do
    apt_installed "$pkg" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then log "apt packages present: ${wanted[*]}"; return 0; fi
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_user() {
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --groups video --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "edgecam camera classifier" "$SERVICE_USER"
  elif ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video; then
    run usermod --append --groups video "$SERVICE_USER"
  else
    log "user $SERVICE_USER exists and is in group video"
  fi
}

ensure_dir() {  # path mode owner group
  if [ -d "$ROOT$1" ]; then return 0; fi
  run install -d -m "$2" -o "$3" -g "$4" "$ROOT$1"
}

fix_mode() {  # path mode group: an upgrade from a release whose daemon could not write /etc/edgecam
  [ -e "$ROOT$1" ] || return 0
  [ "$(stat -c '%a' "$ROOT$1")" = "$2" ] && return 0
  run chmod "$2" "$ROOT$1"
  run chgrp "$3" "$ROOT$1"
}

ensure_dirs() {
  fix_mode "$ETC_DIR" 770 "$SERVICE_USER"
  fix_mode "$ETC_DIR/config.yaml" 660 "$SERVICE_USER"
  ensure_dir "$APP_DIR" 0755 root root
  ensure_dir "$ETC_DIR" 0770 root "$SERVICE_USER"  # the daemon writes config.yaml (web region editor, deploys)
  ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER" "$SERVICE_USER"
  ensure_dir "$MODEL_DIR" 0750 "$SERVICE_USER" "$SERVICE_USER"
}

source_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC_DIR/pyproject.toml" | head -n 1
}

install_venv() {
  local version installed=""
  if [ ! -x "$ROOT$VENV/bin/python" ]; then
    # --system-site-packages: picamera2 and libcamera come from apt, not PyPI.
    run python3 -m venv --system-site-packages "$ROOT$VENV"
  fi
  version=$(source_version)
  if [ -x "$ROOT$VENV/bin/edgecam" ]; then installed=$("$ROOT$VENV/bin/edgecam" --version 2>/dev/null || true); fi
  if [ "$installed" = "edgecam $version" ]; then
    log "edgecam $version already installed in $VENV"
  else
    run "$ROOT$VENV/bin/pip" install --disable-pip-version-check --upgrade \
      -r "$SRC_DIR/requirements.txt" "${PI_PINS[@]}"
    run "$ROOT$VENV/bin/pip" install --disable-pip-version-check --upgrade --no-deps "$SRC_DIR"
  fi
  if [ -f "$SRC_DIR/README.md" ] && ! cmp -s "$SRC_DIR/README.md" "$ROOT$APP_DIR/README.md"; then
    run install -m 0644 "$SRC_DIR/README.md" "$ROOT$APP_DIR/README.md"
  fi
}

install_model() {
  local target
  target="$MODEL_DIR/$(model_name)"
  if [ -n "$MODEL_FILE" ]; then
    if cmp -s "$MODEL_FILE" "$ROOT$target"; then log "model $target up to date"; return 0; fi
    run install -m 0640 -o root -g "$SERVICE_USER" "$MODEL_FILE" "$ROOT$target"
  elif [ "$BUILD_MODEL" -eq 1 ]; then
    build_model
  elif [ -f "$ROOT$target" ]; then
    log "model $target present"
  elif [ "$DRY_RUN" -eq 1 ]; then
    log "note: no model at $target yet: a real run needs --model FILE or --build-model"
  else
    die "no model at $target: pass --model FILE (built on a PC: edgecam model build --out models) or --build-model"
  fi
}

# torch is only needed to build the model: it goes into a throwaway venv that is
# deleted afterwards, so the service venv stays torch-free (locks/build.txt
# pins torch 2.9.1 / torchvision 0.24.1 for aarch64, with hashes).
build_model() {
  local build="$ROOT$CACHE_DIR/build"
  ensure_dir "$CACHE_DIR" 0750 root root
  run python3 -m venv "$build/venv"
  run "$build/venv/bin/pip" install --disable-pip-version-check --require-hashes -r "$SRC_DIR/locks/build.txt"
  run "$build/venv/bin/pip" install --disable-pip-version-check --no-deps "$SRC_DIR"
  run env TORCH_HOME="$build/torch" "$build/venv/bin/edgecam" model build --out "$build/out"
  run install -m 0640 -o root -g "$SERVICE_USER" "$build/out/$DEFAULT_MODEL" "$ROOT$MODEL_DIR/$DEFAULT_MODEL"
  run rm -rf "$build"
}

install_config() {
  if [ -f "$ROOT$ETC_DIR/config.yaml" ]; then
    log "keeping existing $ETC_DIR/config.yaml"
  else
    local edits
    mapfile -t edits < <(config_edits)
    run install -m 0660 -o root -g "$SERVICE_USER" "$CONFIG_FILE" "$ROOT$ETC_DIR/config.yaml"
    run sed -i "${edits[@]}" "$ROOT$ETC_DIR/config.yaml"
  fi
  if [ ! -f "$ROOT$ETC_DIR/edgecam.env" ]; then
    run install -m 0600 -o root -g root "$SRC_DIR/systemd/edgecam.env.example" "$ROOT$ETC_DIR/edgecam.env"
  fi
}

install_unit() {
  if cmp -s "$SRC_DIR/systemd/edgecam.service" "$ROOT$UNIT_PATH"; then
    log "unit $UNIT_PATH up to date"
  else
    run install -m 0644 "$SRC_DIR/systemd/edgecam.service" "$ROOT$UNIT_PATH"
    run systemctl daemon-reload
  fi
  if ! systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then run systemctl enable "$SERVICE"; fi
  if [ "$WITH_MOSQUITTO" -eq 1 ] && ! systemctl is-active --quiet mosquitto 2>/dev/null; then
    run systemctl enable --now mosquitto
  fi
}

start_service() {
  if [ "$CHANGED" -eq 0 ] && systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
    log "nothing changed; $SERVICE is running"
    return 0
  fi
  # Type=notify: this returns once the daemon reported READY=1 (first result) or failed.
  if ! run systemctl restart "$SERVICE"; then
    die "$SERVICE did not start: journalctl -u $SERVICE -n 50"
  fi
}

do_install() {
  check_platform
  install_apt_packages
  ensure_user
  ensure_dirs
  install_venv
  install_model
  install_config
  install_unit
  start_service
  if [ "$DRY_RUN" -eq 1 ]; then log "dry run: nothing was changed"; return 0; fi
  log "done. Logs: journalctl -u $SERVICE -f   Results: $VENV/bin/edgecam listen"
  log "config: $ETC_DIR/config.yaml (secrets in $ETC_DIR/edgecam.env); apply changes with: systemctl restart $SERVICE"
}

remove_path() {
  if [ -e "$ROOT$1" ]; then run rm -rf "$ROOT$1"; fi
}

do_uninstall() {
  if [ "$(id -u)" -ne 0 ] && [ "$DRY_RUN" -eq 0 ]; then die "run as root (sudo $0 --uninstall)"; fi
  if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null || systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
    run systemctl disable --now "$SERVICE"
  fi
  if [ -e "$ROOT$UNIT_PATH" ]; then
    run rm -f "$ROOT$UNIT_PATH"
    run systemctl daemon-reload
  fi
  remove_path "$APP_DIR"
  remove_path "$CACHE_DIR"
  if [ "$PURGE" -eq 1 ]; then
    remove_path "$ETC_DIR"
    remove_path "$STATE_DIR"
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then run userdel "$SERVICE_USER"; fi
  else
    log "kept $ETC_DIR, the models in $MODEL_DIR and user $SERVICE_USER (--purge removes them)"
  fi
  log "apt packages (${APT_PACKAGES[*]}, mosquitto) are left installed"
  if [ "$CHANGED" -eq 0 ]; then log "nothing to remove"; fi
}

main() {
  parse_args "$@"
  if [ "$PRINT_CONFIG" -eq 1 ]; then render_config; exit 0; fi
  if [ "$UNINSTALL" -eq 1 ]; then do_uninstall; else do_install; fi
}

main "$@"
