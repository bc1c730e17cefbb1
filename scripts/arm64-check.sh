#!/usr/bin/env bash
# arm64-check: does edgecam's runtime run on a Raspberry Pi's CPU? (qemu-user emulation)
#
# Builds once, then reuses from a cache, a Debian bookworm arm64 root
# (debootstrap --foreign + qemu-user-static) holding a venv with the RUNTIME
# requirements and the edgecam package, presents a Pi 4 (Cortex-A72) or Pi 5
# (Cortex-A76) CPU to it, and checks, against the host:
#   1. `edgecam classify` gives the same Top-3 labels on real photos (a swap is
#      accepted only between labels the host itself scores as tied);
#   2. the image pipeline (crop, colour order, mean/std) is bit-identical, and raw model
#      outputs agree within limits derived from why x86 and ARM INT8 kernels differ
#      (edgecam/bench/arm64/tolerance.py; FP32 < 1e-4), top-1 where the host's margin allows;
#   3. `edgecam run` on a clip publishes results to a Mosquitto broker on the
#      host, and exits 0 on SIGTERM.
# Prints a short report and exits non-zero on any disagreement or failure.
#
# usage: scripts/arm64-check.sh [--pi5] [--cache DIR] [--keep] [--only STEPS] [--fault KIND]
#   --pi5         emulate a Raspberry Pi 5 (cortex-a76); default: a Pi 4 (cortex-a72)
#   --cache DIR   root tarball, models and logs (default ${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/arm64)
#   --keep        leave the unpacked root in CACHE/root after the run (to look inside)
#   --only STEPS  run only these checks, comma-separated: classify,outputs,run (default: all)
#   --fault KIND  break the arm side's preprocessing on purpose, to see the check fail:
#                 bgr, mean, std, stretch or linear (edgecam/bench/arm64/dump_outputs.py FAULTS)
# Needs root (debootstrap, chroot, mount) and the host venv (.venv, with torch for the model build).
# Timings under emulation say nothing about a real Pi.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPERS="$REPO/edgecam/bench/arm64"
HOST_PY=${EDGECAM_HOST_PYTHON:-$REPO/.venv/bin/python}
SUITE=bookworm
RECIPE=1                  # bump when the way the root is made changes: forces a rebuild
VENV=/opt/edgecam-venv    # inside the root
CHECK=/check              # inside the root: photos, inputs, models, outputs
RUNTIME_PKGS=(numpy opencv-python-headless onnxruntime PyYAML paho-mqtt pydantic ruamel.yaml)
PI=4
CPU_MODEL=cortex-a72
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/edgecam/arm64"
KEEP=0
STEPS=classify,outputs,run
FAULT=""
MODELS=() ROOT_MODELS=() HOST_MODELS=() ROOT_ENV=() BROKER_PORT=""
MOUNTS=()   # mounted paths, unmounted in reverse order on exit
PIDS=()     # processes we started (broker, subscriber, daemon), killed on exit
FAILS=0
ROOT=""

# shellcheck source-path=SCRIPTDIR source=arm64/checks.sh
source "$REPO/scripts/arm64/checks.sh"

say() { printf 'arm64-check: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
report() { printf '%s\n' "$*" | tee -a "$CACHE/report.txt"; }
fail() { report "FAIL: $*"; FAILS=$((FAILS + 1)); }
usage() { sed -n '/^# usage:/,/^# Timings/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --pi5) PI=5; CPU_MODEL=cortex-a76 ;;
      --cache) [ $# -ge 2 ] || die "--cache needs a directory"; CACHE=$2; shift ;;
      --keep) KEEP=1 ;;
      --only) [ $# -ge 2 ] || die "--only needs a list of steps"; STEPS=$2; shift ;;
      --fault) [ $# -ge 2 ] || die "--fault needs a kind"; FAULT=$2; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  local step
  [ -n "${STEPS//,/}" ] || die "--only: no steps given (classify, outputs, run)"
  for step in ${STEPS//,/ }; do
    case "$step" in classify | outputs | run) ;; *) die "--only: unknown step $step (classify, outputs, run)" ;; esac
  done
  case "$FAULT" in "" | bgr | mean | std | stretch | linear) ;; *) die "--fault: unknown kind $FAULT" ;; esac
  mkdir -p "$CACHE"
  CACHE=$(cd "$CACHE" && pwd)
  ROOT="$CACHE/root"
}

# ---------------------------------------------------------------- cleanup
unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null ||
      say "warning: could not unmount ${MOUNTS[i]}"
  done
  MOUNTS=()
}

unmount_stale() {
  # Mounts left under the root by a run that was killed hard (no trap).
  local target
  findmnt -rn -o TARGET | awk -v r="$ROOT/" 'index($0, r) == 1' | sort -r |
    while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
}

# shellcheck disable=SC2317 # only called by the EXIT trap
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  unmount_all
  if [ -n "$ROOT" ] && [ -d "$ROOT" ]; then
    if [ "$KEEP" = 1 ]; then say "root kept in $ROOT"; else rm -rf --one-file-system "$ROOT"; fi
  fi
  exit "$rc"
}

do_mount() { # do_mount TARGET MOUNT-ARGS...: mount and remember for cleanup
  local target=$1
  shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}

# ---------------------------------------------------------------- host
ensure_host_tools() {
  [ "$(id -u)" -eq 0 ] || die "must run as root: debootstrap, chroot and mount need it (sudo $0)"
  [ -x "$HOST_PY" ] || die "host venv not found ($HOST_PY): run scripts/setup.sh first"
  local missing=() pair
  for pair in debootstrap:debootstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
    mosquitto:mosquitto mosquitto_sub:mosquitto-clients zstd:zstd findmnt:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing host packages: ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$CACHE/apt-host.log" 2>&1 ||
    die "apt-get install ${missing[*]} failed (see $CACHE/apt-host.log): debootstrap/qemu are needed"
}

ensure_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null ||
      die "cannot mount binfmt_misc at $dir (a container needs --privileged for qemu-user emulation)"
  fi
  if [ ! -e "$dir/qemu-aarch64" ] || ! grep -qx enabled "$dir/qemu-aarch64"; then
    update-binfmts --enable qemu-aarch64 || die "update-binfmts --enable qemu-aarch64 failed"
  fi
  grep -qx enabled "$dir/qemu-aarch64" || die "binfmt_misc has no enabled qemu-aarch64 handler"
}

debian_mirror() {
  # The Debian mirror the host's apt uses (this machine reaches only package registries).
  if [ -n "${EDGECAM_DEBIAN_MIRROR:-}" ]; then echo "$EDGECAM_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$({
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    sed -E -n 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1 || true)
  [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list(.d): set EDGECAM_DEBIAN_MIRROR"
  echo "$uri"
}

# ---------------------------------------------------------------- the root
write_cpuinfo() { # the Pi's /proc/cpuinfo, bind-mounted over the root's
  local file="$CACHE/cpuinfo-pi$PI" part variant rev features model hardware i
  if [ "$PI" = 5 ]; then
    part=0xd0b variant=0x4 rev=1 hardware=BCM2712 model="Raspberry Pi 5 Model B Rev 1.0"
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
  else
    part=0xd08 variant=0x0 rev=3 hardware=BCM2835 model="Raspberry Pi 4 Model B Rev 1.4"
    features="fp asimd evtstrm crc32 cpuid"
  fi
  {
    for i in 0 1 2 3; do
      printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
      printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$rev"
    done
    printf 'Hardware\t: %s\nRevision\t: %s\nSerial\t\t: 100000000000abcd\nModel\t\t: %s\n' \
      "$hardware" "$([ "$PI" = 5 ] && echo d04170 || echo c03114)" "$model"
  } >"$file"
  echo "$file"
}

write_fake_sys() {
  # A 4-core CPU tree instead of the host's /sys: onnxruntime's CPU detection
  # crashes under qemu when it reads the host's x86 cache files.
  local cpu="$ROOT/sys/devices/system/cpu" i
  mkdir -p "$cpu"
  for i in possible present online; do echo 0-3 >"$cpu/$i"; done
  for i in 0 1 2 3; do mkdir -p "$cpu/cpu$i"; echo 1 >"$cpu/cpu$i/online"; done
}

mount_root() {
  rm -f "$ROOT/etc/resolv.conf" "$ROOT/etc/hosts"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  cp -L /etc/hosts "$ROOT/etc/hosts"
  write_fake_sys
  do_mount "$ROOT/proc" -t proc proc
  do_mount "$ROOT/proc/cpuinfo" --bind "$(write_cpuinfo)"
  do_mount "$ROOT/dev" --bind /dev
}

copy_tls_and_pip_config() {
  # So pip inside works behind a TLS-intercepting proxy, configured like the host's.
  # Replace, never write through: the root's absolute symlinks would resolve on the host.
  local f dir
  rm -rf "${ROOT:?}/etc/ssl/certs" "$ROOT/usr/local/share/ca-certificates"
  mkdir -p "$ROOT/etc/ssl/certs" "$ROOT/usr/local/share" "$ROOT/root/.config" "$ROOT/etc/xdg"
  for f in /etc/ssl/certs/*; do [ -f "$f" ] && cp -L "$f" "$ROOT/etc/ssl/certs/"; done
  [ -d /usr/local/share/ca-certificates ] && cp -rL /usr/local/share/ca-certificates "$ROOT/usr/local/share/"
  rm -rf "$ROOT/etc/pip.conf" "$ROOT/etc/xdg/pip" "$ROOT/root/.config/pip" "$ROOT/root/.pip"
  [ -f /etc/pip.conf ] && cp -L /etc/pip.conf "$ROOT/etc/pip.conf"
  [ -d /etc/xdg/pip ] && cp -rL /etc/xdg/pip "$ROOT/etc/xdg/"
  for dir in .config/pip .pip; do
    [ -d "$HOME/$dir" ] && cp -rL "$HOME/$dir" "$ROOT/root/$dir"
  done
  return 0
}

set_root_env() { # ROOT_ENV: a clean environment, the Pi's CPU, pip/proxy variables passed on
  local name
  ROOT_ENV=(PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root
    LANG=C.UTF-8 QEMU_CPU="$CPU_MODEL")
  for name in $(compgen -e); do
    case "$name" in
      PIP_* | http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | SSL_CERT_FILE | REQUESTS_CA_BUNDLE)
        ROOT_ENV+=("$name=${!name}") ;;
    esac
  done
}

in_root() { env -i "${ROOT_ENV[@]}" chroot "$ROOT" "$@"; }

host_pins() { # the host venv's versions of the runtime packages, as pip constraints
  "$HOST_PY" - "${RUNTIME_PKGS[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
EOF
}

root_key() {
  { echo "recipe $RECIPE $SUITE"; cat "$REPO/requirements.txt"; host_pins; } | sha256sum | cut -c1-16
}

bootstrap_root() {
  local mirror log="$CACHE/bootstrap.log"
  mirror=$(debian_mirror)
  say "building a Debian $SUITE arm64 root from $mirror (a few minutes; log: $log)"
  rm -rf --one-file-system "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,python3-pip \
    "$SUITE" "$ROOT" "$mirror" >"$log" 2>&1 || die "debootstrap (first stage) failed: see $log"
  install -m 0755 "$(command -v qemu-aarch64-static)" "$ROOT/usr/bin/qemu-aarch64-static"
  QEMU_CPU=$CPU_MODEL chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$log" 2>&1 ||
    die "debootstrap --second-stage failed inside the root: see $log"
  rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*
}

install_venv() {
  local log="$CACHE/pip.log"
  host_pins >"$ROOT/opt/edgecam-pins.txt"
  cp "$REPO/requirements.txt" "$ROOT/opt/edgecam-requirements.txt"
  say "installing the runtime requirements into $VENV inside the root (log: $log)"
  in_root python3 -m venv "$VENV" >"$log" 2>&1 || die "python3 -m venv failed inside the root: see $log"
  if ! in_root pip install --no-cache-dir -c /opt/edgecam-pins.txt -r /opt/edgecam-requirements.txt \
    "setuptools>=68" wheel >>"$log" 2>&1; then
    say "the host's exact versions are not all available for aarch64: installing the newest (see $log)"
    in_root pip install --no-cache-dir -r /opt/edgecam-requirements.txt "setuptools>=68" wheel >>"$log" 2>&1 ||
      die "pip install -r requirements.txt failed inside the root: see $log"
  fi
}

package_hash() {
  (cd "$REPO" && find edgecam pyproject.toml requirements.txt README.md -type f \
    ! -path '*/__pycache__/*' -print0 2>/dev/null | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

install_package() { # re-install edgecam (--no-deps) when its files changed; returns 1 if unchanged
  local want have="" src="$ROOT/opt/edgecam-src" log="$CACHE/pip-package.log"
  want=$(package_hash)
  [ -f "$ROOT/opt/edgecam-package.sha" ] && have=$(cat "$ROOT/opt/edgecam-package.sha")
  [ "$want" = "$have" ] && return 1
  say "installing the edgecam package into the root"
  rm -rf "$src" && mkdir -p "$src"
  local files=(edgecam pyproject.toml requirements.txt)
  [ -f "$REPO/README.md" ] && files+=(README.md)
  (cd "$REPO" && tar --exclude=__pycache__ -cf - "${files[@]}") | tar -C "$src" -xf -
  in_root pip install --no-cache-dir --no-deps --no-build-isolation --force-reinstall /opt/edgecam-src \
    >"$log" 2>&1 || die "pip install --no-deps of the package failed inside the root: see $log"
  echo "$want" >"$ROOT/opt/edgecam-package.sha"
}

save_root() {
  say "caching the root in $CACHE/root.tar.zst"
  tar -C "$ROOT" --numeric-owner --one-file-system -I 'zstd -T0 -3 -q' -cf "$CACHE/root.tar.zst.tmp" .
  mv "$CACHE/root.tar.zst.tmp" "$CACHE/root.tar.zst"
}

prepare_root() {
  local key changed=0
  key=$(root_key)
  unmount_stale
  if [ -f "$CACHE/root.tar.zst" ] && [ "$(cat "$CACHE/root.key" 2>/dev/null)" = "$key" ]; then
    say "reusing the cached root ($CACHE/root.tar.zst)"
    rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT"
    tar -C "$ROOT" --numeric-owner -I zstd -xf "$CACHE/root.tar.zst"
    copy_tls_and_pip_config
    mount_root
  else
    rm -f "$CACHE/root.key"
    bootstrap_root
    copy_tls_and_pip_config
    mount_root
    install_venv
    changed=1
  fi
  install_package && changed=1
  if [ "$changed" = 1 ]; then
    unmount_all
    save_root
    echo "$key" >"$CACHE/root.key"
    mount_root
  fi
}

step() { [[ ",$STEPS," == *",$1,"* ]]; } # step NAME: was NAME asked for (--only)?

main() {
  parse_args "$@"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  exec 9>"$CACHE/lock"
  flock -n 9 || die "another arm64-check is using $CACHE"
  : >"$CACHE/report.txt"
  local start=$SECONDS
  ensure_host_tools
  ensure_binfmt
  set_root_env
  prepare_root
  build_models
  mkdir -p "$ROOT$CHECK"
  cp "$HELPERS/dump_outputs.py" "$ROOT$CHECK/"
  "$HOST_PY" -m edgecam.bench.arm64.host_prep --work "$ROOT$CHECK" "${HOST_MODELS[@]}" >&2
  report "== edgecam arm64 check: Raspberry Pi $PI (QEMU_CPU=$CPU_MODEL) =="
  [ -z "$FAULT" ] || report "fault injected on the arm side: --fault $FAULT (this run must FAIL)"
  derive_tolerance
  report_versions
  step classify && check_classify
  step outputs && check_outputs
  step run && check_run
  report "elapsed: $((SECONDS - start)) s"
  if [ "$FAILS" -gt 0 ]; then report "RESULT: FAIL ($FAILS)"; exit 1; fi
  report "RESULT: PASS"
}

# In braces: bash reads the whole block before running it, so editing this file
# while it runs cannot make bash run stray text after main returns.
{
  main "$@"
  exit
}
