# shellcheck shell=bash
# The checks of scripts/arm64-check.sh (sourced by it; uses its globals and helpers):
# models built on the host, raw outputs, `edgecam classify`, `edgecam run` over MQTT.
build_models() { # INT8 + FP32 models built on the HOST (torch is not in the root)
  local log="$CACHE/model-build.log" m
  say "building the models on the host (skipped when up to date; log: $log)"
  # Real ImageNet weights (offline): Top-3 labels mean something; the daemon runs its INT8.
  "$HOST_PY" -m edgecam model build --arch efficientnet_lite0 --out "$CACHE/models" >"$log" 2>&1 ||
    die "edgecam model build --arch efficientnet_lite0 failed on the host: see $log"
  # The default architecture's INT8 kernels too (random weights: raw outputs only, no labels).
  "$HOST_PY" -m edgecam model build --arch resnet18 --weights random --out "$CACHE/models-random" >>"$log" 2>&1 ||
    die "edgecam model build --arch resnet18 --weights random failed on the host: see $log"
  MODELS=("$CACHE/models/efficientnet_lite0_160_fp32.onnx" "$CACHE/models/efficientnet_lite0_160_int8.onnx")
  ROOT_MODELS=() HOST_MODELS=()
  mkdir -p "$ROOT$CHECK/models"
  for m in "${MODELS[@]}" "$CACHE/models-random/resnet18_160_int8.onnx"; do
    [ -f "$m" ] || die "model build did not write $m"
    cp "$m" "$ROOT$CHECK/models/"
    ROOT_MODELS+=("$CHECK/models/${m##*/}")      # the path seen inside the root
    HOST_MODELS+=("$ROOT$CHECK/models/${m##*/}") # the same file seen from the host
  done
}

derive_tolerance() { # the INT8 limits, from the host's own rounding spread (edgecam/bench/arm64/tolerance.py)
  local out
  out=$("$HOST_PY" -m edgecam.bench.arm64.tolerance --inputs "$ROOT$CHECK/inputs" --photos "$ROOT$CHECK/photos" \
    --out "$CACHE/tolerance.json" "${HOST_MODELS[@]}") || die "tolerance.py failed on the host"
  report "$out"
}

report_versions() { # runs the models inside the root (their outputs are compared in check_outputs)
  local v fault=()
  [ -z "$FAULT" ] || fault=(--fault "$FAULT")
  v=$(in_root python "$CHECK/dump_outputs.py" --inputs "$CHECK/inputs" --out "$CHECK/out-arm" --photos "$CHECK/photos" \
    --repeat 1 "${fault[@]}" "${ROOT_MODELS[@]}" 2>"$CACHE/dump-arm.log") ||
    { cat "$CACHE/dump-arm.log" >&2; die "running the models inside the root failed"; }
  "$HOST_PY" - "$v" "$ROOT$CHECK/out-arm/summary.json" <<'EOF' | while read -r line; do report "$line"; done
import json, sys
v = json.loads(sys.argv[1])
print(f"root: uname -m {v['machine']}, cpuinfo CPU part {v.get('cpu_part')} x{v['cores_in_cpuinfo']} ({v.get('model')})")
print(f"root: python {v['python']}, numpy {v['numpy']}, onnxruntime {v['onnxruntime']}, "
      f"opencv {v['opencv']}, pydantic {v['pydantic']}")
for stem, m in json.load(open(sys.argv[2]))["models"].items():
    print(f"emulated ms per inference {stem}: {m['ms_per_inference']}")
EOF
}

check_outputs() {
  # --exact-int8: the host's reference accumulates exactly whatever x86 SIMD level runs it
  "$HOST_PY" -m edgecam.bench.arm64.dump_outputs --inputs "$ROOT$CHECK/inputs" --out "$ROOT$CHECK/out-host" \
    --photos "$ROOT$CHECK/photos" --repeat 0 --exact-int8 "${HOST_MODELS[@]}" >/dev/null
  local out
  if out=$("$HOST_PY" -m edgecam.bench.arm64.compare outputs --host "$ROOT$CHECK/out-host" --arm "$ROOT$CHECK/out-arm" \
    --tolerance "$CACHE/tolerance.json" "${HOST_MODELS[@]}"); then
    report "$out"
  else
    report "$out"
    fail "raw model outputs differ between the host and the arm64 root"
  fi
}

check_classify() { # 1. `edgecam classify` on real photos: the host's Top-3 (up to near-ties)
  local model kind names=() p out
  for p in "$ROOT$CHECK"/photos/*; do names+=("${p##*/}"); done
  for model in "${MODELS[@]}"; do
    kind=$(basename "$model" .onnx)
    kind=${kind##*_}
    # the host's reference: exact INT8 accumulation on every x86 SIMD level (host_classify.py)
    "$HOST_PY" -m edgecam.bench.arm64.host_classify --top 10 --model "$ROOT$CHECK/models/${model##*/}" \
      "${names[@]/#/$ROOT$CHECK/photos/}" >"$CACHE/classify-host-$kind.txt" 2>&1 ||
      die "edgecam classify failed on the host: see $CACHE/classify-host-$kind.txt"
    if ! in_root edgecam classify --top 10 --model "$CHECK/models/${model##*/}" "${names[@]/#/$CHECK/photos/}" \
      >"$CACHE/classify-arm-$kind.txt" 2>&1; then
      fail "edgecam classify ($kind) failed inside the root: $(tail -n 3 "$CACHE/classify-arm-$kind.txt")"
      continue
    fi
    if out=$("$HOST_PY" -m edgecam.bench.arm64.compare classify --model "$model" --tolerance "$CACHE/tolerance.json" \
      --host "$CACHE/classify-host-$kind.txt" --arm "$CACHE/classify-arm-$kind.txt"); then
      report "$out"
    else
      report "$out"
      fail "edgecam classify ($kind) gives other Top-3 labels inside the root"
    fi
  done
}

free_port() {
  "$HOST_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_broker() { # a private Mosquitto on the HOST; the root shares the host's network
  local dir="$CACHE/mosquitto" i rc
  BROKER_PORT=$(free_port)
  rm -rf "$dir" && mkdir -p "$dir"
  printf '%s\n' "listener $BROKER_PORT 127.0.0.1" "allow_anonymous true" "persistence false" \
    "log_dest file $dir/mosquitto.log" "user root" >"$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" 2>>"$dir/stderr.txt" &
  PIDS+=("$!")
  for i in $(seq 50); do
    # -W 1 timing out (exit 27) means it connected: the broker is up.
    mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t probe -W 1 -C 1 >/dev/null 2>&1 && rc=0 || rc=$?
    [ "$rc" = 27 ] && return 0
    sleep 0.2
  done
  die "mosquitto did not start on port $BROKER_PORT: $(cat "$dir/stderr.txt" "$dir/mosquitto.log" 2>&1)"
}

run_summary() { # RESULTS-FILE COUNT SECONDS EXIT-CODE -> the report's `run:` line
  "$HOST_PY" - "$@" <<'PY'
import json, statistics, sys
path, got, elapsed, rc = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [json.loads(line) for line in open(path) if line.startswith("{")]
ms = statistics.median(r["latency_ms"]["inference"] for r in rows) if rows else float("nan")
top = rows[-1]["top"][0]["label"] if rows else "-"
print(f"run: {got} results on MQTT within {elapsed} s (emulated inference {ms:.0f} ms/frame, "
      f"last top-1 {top!r}), SIGTERM -> exit {rc}")
PY
}

check_run() { # 3. the daemon inside the root publishes to the host's broker; SIGTERM -> exit 0
  # The model check's limits are sized for a real Pi; under emulation one image takes ~1 s
  # (measured 1009 ms on a 2-core VM), so they are raised here: this step checks the run.
  local want=5 results="$CACHE/mqtt-results.txt" log="$CACHE/daemon.log" sub daemon rc i got t0
  start_broker
  printf '%s\n' "device_id: arm64check" \
    "source: {uri: $CHECK/clip.avi, loop: true, pace: true, width: null, height: null}" \
    "model: {path: $CHECK/models/${MODELS[1]##*/}, threads: 2," \
    "  checks: {max_run_ms: 60000, max_load_s: 900}}" "publish: {policy: every}" \
    "mqtt: {host: 127.0.0.1, port: $BROKER_PORT}" "stats: {interval_s: 5}" >"$ROOT$CHECK/config.yaml"
  mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t edgecam/arm64check/result -C "$want" -W 300 >"$results" 2>&1 &
  sub=$!
  PIDS+=("$sub")
  t0=$SECONDS
  env -i "${ROOT_ENV[@]}" chroot "$ROOT" edgecam run --config "$CHECK/config.yaml" >"$log" 2>&1 &
  daemon=$! # env, chroot and python exec each other: this is the daemon's PID
  PIDS+=("$daemon")
  wait "$sub" || true
  got=$(grep -c '^{' "$results" || true)
  if ! kill -0 "$daemon" 2>/dev/null; then
    wait "$daemon" && rc=0 || rc=$?
    fail "edgecam run exited early (code $rc) inside the root: $(tail -n 5 "$log")"
    return
  fi
  kill -TERM "$daemon"
  for i in $(seq 120); do
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.5
  done
  [ "$i" -lt 120 ] || { kill -KILL "$daemon"; fail "edgecam run did not stop within 60 s of SIGTERM"; }
  wait "$daemon" && rc=0 || rc=$?
  report "$(run_summary "$results" "$got" "$((SECONDS - t0))" "$rc")"
  [ "$got" -ge "$want" ] || fail "the host's subscriber got $got of $want results: $(tail -n 5 "$log")"
  [ "$rc" = 0 ] || fail "edgecam run exited $rc on SIGTERM inside the root: $(tail -n 5 "$log")"
}
