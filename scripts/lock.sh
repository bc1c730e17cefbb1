#!/usr/bin/env bash
# Regenerate the lock files in locks/ from the requirement files, with hashes.
#
#   scripts/lock.sh             relock; versions already in the locks are kept where they still fit
#   scripts/lock.sh --upgrade   relock with the newest versions that fit
#
# One lock per set (runtime, train, build, dev), each valid on Linux x86_64 and aarch64 with
# CPython 3.11 and later (uv's universal resolution: per-machine pins such as torch carry
# environment markers). The dev set is resolved first and the smaller sets are constrained to
# its versions, so every set installs the versions the test suite ran with. Each lock records
# the sha256 of the requirement files it was made from; tests/test_locks.py fails when one of
# them changed without a relock. Then it checks that every locked release has a wheel for
# both machines and Python 3.11-3.13. Needs the package index (PyPI), not the local wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
TOOLS=.cache/lock-tools
SETS=(dev build train runtime)  # dev first: the others are constrained to its versions

upgrade=()
case "${1:-}" in
  --upgrade) upgrade=(--upgrade) ;;
  "") ;;
  *) echo "usage: $0 [--upgrade]" >&2; exit 2 ;;
esac

input_of() { # set name -> its requirement file
  case "$1" in
    runtime) echo requirements.txt ;;
    *) echo "requirements-$1.txt" ;;
  esac
}

chain_of() { # requirement file -> it and every file it includes with -r, depth first
  local file=$1 included
  echo "$file"
  while read -r included; do
    chain_of "$included"
  done < <(sed -n 's/^-r[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$file")
}

uv_tool() { # uv, pinned, in a venv of its own; installed from locks/uv.txt with hashes
  if [ "$("$TOOLS/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    echo "lock: installing uv $UV_VERSION into $TOOLS" >&2
    python3 -m venv "$TOOLS"
    if grep -q "^uv==$UV_VERSION " locks/uv.txt 2>/dev/null; then
      "$TOOLS/bin/pip" install -q --disable-pip-version-check --require-hashes -r locks/uv.txt >&2
    else  # UV_VERSION was just raised: locks/uv.txt is remade below
      echo "lock: locks/uv.txt does not pin uv $UV_VERSION: installing it without hashes" >&2
      "$TOOLS/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
    fi
  fi
  echo "$TOOLS/bin/uv"
}

uv=$(uv_tool)
for set in "${SETS[@]}"; do
  input=$(input_of "$set")
  lock="locks/$set.txt"
  constraints=()
  [ "$set" = dev ] || constraints=(--constraints locks/dev.txt)
  echo "lock: $input -> $lock" >&2
  "$uv" pip compile "$input" --quiet --generate-hashes --universal --fork-strategy fewest \
    --python-version 3.11 --custom-compile-command "scripts/lock.sh" "${constraints[@]}" \
    "${upgrade[@]}" --output-file "$lock"
  # The record of the input, after uv's header: tests/test_locks.py recomputes it.
  record=$(mktemp)
  {
    sed -n '1,/^#    scripts\/lock.sh$/p' "$lock"
    echo "# Inputs (sha256 of each requirement file this lock was made from):"
    while read -r file; do
      echo "#   $file $(sha256sum "$file" | cut -d' ' -f1)"
    done < <(chain_of "$input")
    sed '1,/^#    scripts\/lock.sh$/d' "$lock"
  } >"$record"
  chmod 644 "$record"
  mv "$record" "$lock"
done
echo "uv==$UV_VERSION" >"$TOOLS/uv.in"
"$uv" pip compile "$TOOLS/uv.in" --quiet --generate-hashes --universal --python-version 3.11 --no-annotate \
  --custom-compile-command "scripts/lock.sh" --output-file locks/uv.txt
# Every locked release must have a wheel for each machine and Python we support (glibc 2.28 and
# later: Debian 10+, Ubuntu 20.04+, Raspberry Pi OS 64-bit): no build from source on a Pi.
# The dev lock holds every release the other locks hold (they are constrained to it).
for platform in x86_64-manylinux_2_28 aarch64-manylinux_2_28; do
  for python in 3.11 3.12 3.13; do
    "$uv" pip compile locks/dev.txt --quiet --no-deps --no-build --python-platform "$platform" \
      --python-version "$python" --output-file /dev/null ||
      { echo "lock: locks/dev.txt: no wheel for $platform, Python $python (above)" >&2; exit 1; }
  done
done
echo "lock: done; check them with: .venv/bin/python -m pytest tests/test_locks.py" >&2
