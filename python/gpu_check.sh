#!/usr/bin/env bash
# The one GPU check: on a GPU machine with torch preinstalled and no network, build the extension
# against that torch, run the CUDA tests, compute-sanitizer (memcheck, racecheck, synccheck,
# initcheck) on small cases of every op, and the benchmarks. Everything lands in $OUT (default ./gpu_out): logs, JSON, Markdown.
#
#   OUT=/path bash python/gpu_check.sh        # or: make gpu-check
#
# Wheels the machine lacks (lpips, nvidia-cutlass, ...) may be carried in .carry/wheels.
# The device tool brings back at most 8 files from $OUT, so output is kept to 7: summary.txt,
# build_info.json, build.log, cuda_tests.log, sanitizer.log, bench.json, bench.md (the graph check's
# and the tile sweep's JSON go into bench.json).
#
# Time (one 600 s device command, BUDGET_S 560; estimates from this project's compile times, none
# measured on the device yet): build ~1-2 min on 16 cores for one arch (here, 2 cores and 4 archs:
# ~6 min, of which the CUTLASS files ~150 s CPU); CUDA tests <= 240 s; graphed-step check <= 90 s
# (expected 30-60 s); tile sweep <= 60 s (expected < 30 s); compute-sanitizer 4 tools <= 240 s;
# benchmarks get what is left (each <= 180 s, skipped under 45 s left: their lines say so).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
TMP=$(mktemp -d)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export GANSR_CUDA_ARCHS=${GANSR_CUDA_ARCHS:-$($PY -c "import torch; c=torch.cuda.get_device_capability(); print(f'{c[0]}{c[1]}')")}
status=0
step() { echo "== $*" | tee -a "$OUT/summary.txt"; }
# One device command may run 600 s: every later stage gets a timeout from what is left of BUDGET_S,
# so a hang or a slow stage costs its own output, never the files already written.
BUDGET_S=${BUDGET_S:-560}
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
cap() { local l; l=$(( $(left) - ${2:-0} )); echo $(( l < $1 ? (l > 1 ? l : 1) : $1 )); }

step "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
step "torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')  commit: $(git rev-parse --short HEAD 2>/dev/null)"
if [ -d .carry/wheels ]; then
  # by name, so what the machine already has stays as it is; --no-deps, as `make gpu-carry` downloads
  # them: one unresolvable requirement (nvidia-cutlass needs cuda-python, pydot, treelib; only its
  # headers are used) would otherwise make pip install none
  names=$(ls .carry/wheels/*.whl | xargs -n1 basename | sed 's/-[0-9].*//')
  $PY -m pip install -q --no-index --no-deps --find-links .carry/wheels $names >"$OUT/carry_install.log" 2>&1 || true
fi

step "build (archs $GANSR_CUDA_ARCHS)"
start=$(date +%s)
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  step "BUILD FAILED (see build.log)"; tail -40 "$OUT/build.log"; exit 1
fi
step "build took $(( $(date +%s) - start )) s"
$PY -c "import gansr_ext, json; print(json.dumps(gansr_ext.build_info()))" | tee "$OUT/build_info.json"

step "CUDA tests"
timeout "$(cap 240 120)" $PY -m pytest -q -p no:cacheprovider tests -k cuda --continue-on-collection-errors \
  --durations=15 >"$OUT/cuda_tests.log" 2>&1 || status=1
tail -5 "$OUT/cuda_tests.log" | tee -a "$OUT/summary.txt"

# issue 14's new paths, before the sanitizer and benchmarks so their verdicts come back first:
# the CUDA-graphed G step (train.cuda_graph=on vs off: same weights, replays, timing) and the CUTLASS
# fprop tile sweep (fastest valid tile); each writes one JSON into $TMP, folded into bench.json
step "graphed G step check ($(left) s left)"
timeout "$(cap 90 60)" $PY python/gpu_graph_check.py >"$TMP/gpu_graph_check.log" 2>&1 || status=1
tail -4 "$TMP/gpu_graph_check.log" | tee -a "$OUT/summary.txt"
grep '^{' "$TMP/gpu_graph_check.log" | tail -1 >"$TMP/gpu_graph_check.json" || true
[ -s "$TMP/gpu_graph_check.json" ] || rm -f "$TMP/gpu_graph_check.json"
step "CUTLASS fprop tile sweep ($(left) s left)"
timeout "$(cap 60 60)" $PY python/gpu_tile_sweep.py --out "$TMP/gpu_tile_sweep.json" >"$TMP/gpu_tile_sweep.log" 2>&1 || status=1
tail -6 "$TMP/gpu_tile_sweep.log" | tee -a "$OUT/summary.txt"

SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ -n "$SAN" ]; then
  # seconds per tool: together the 240 s the two tools had before synccheck / initcheck were added
  # (memcheck instruments cuFFT too; synccheck and initcheck only add a pass over our own kernels)
  for tool_s in memcheck:90 racecheck:60 synccheck:45 initcheck:45; do
    tool=${tool_s%:*}
    step "compute-sanitizer $tool"
    # only this project's kernels (and cuFFT's, for the plan layouts) are instrumented: cuDNN under
    # the sanitizer would take minutes; no caching allocator, so an overrun hits unowned memory.
    # initcheck: memory written by uninstrumented kernels (cuDNN) may count as uninitialised, so an
    # initcheck report on one of our kernels reading a cuDNN output needs a second look.
    # one regex (partial match; our CUTLASS kernel mangled or demangled, not cuDNN's cutlass__5x_cudnn ones)
    kernels='gansr|N7cutlass|cutlass::conv::kernel::ImplicitGemmConvolution'
    [ $tool = memcheck ] && kernels="$kernels|fft"
    san() { PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$(cap ${tool_s#*:} 60)" "$SAN" --tool $tool --kernel-name "$1" \
              --error-exitcode 3 $PY python/gpu_sanitize_cases.py >"$TMP/sanitizer_$tool.log" 2>&1; }
    san "regex=$kernels"; rc=$?
    if [ $rc -ne 0 ] && ! grep -q "ERROR SUMMARY" "$TMP/sanitizer_$tool.log" && grep -qi "kernel-name\|regex" "$TMP/sanitizer_$tool.log"; then
      echo "(no regex filter in this compute-sanitizer: kns=gansr, CUTLASS unchecked)" | tee -a "$OUT/summary.txt"
      san kns=gansr; rc=$?
    fi
    [ $rc -eq 0 ] || status=1
    { echo "== $tool"; tail -200 "$TMP/sanitizer_$tool.log"; } >>"$OUT/sanitizer.log"
    tail -3 "$TMP/sanitizer_$tool.log" | tee -a "$OUT/summary.txt"
  done
else
  step "compute-sanitizer not found"; status=1
fi

for bench in python/bench_*.py; do
  name=$(basename "$bench" .py)
  if [ "$(left)" -lt 45 ]; then step "benchmark $name skipped: time budget spent"; status=1; continue; fi
  step "benchmark $name ($(left) s left)"
  extra=(); [ $name = bench_rrdb ] && extra=(--quick)  # the full 23-RRDB generator does not fit the budget
  timeout "$(cap 180 15)" $PY "$bench" --out "$TMP/$name" ${extra[@]+"${extra[@]}"} >"$TMP/$name.log" 2>&1 || { status=1; echo "failed or timed out" | tee -a "$OUT/summary.txt"; }
  tail -20 "$TMP/$name.log" | tee -a "$OUT/summary.txt"
  [ -f "$TMP/$name.md" ] && { cat "$TMP/$name.md"; echo; } >>"$OUT/bench.md"
done
$PY - "$TMP" "$OUT/bench.json" <<'PYEOF'
import json, pathlib, sys
tmp, out = pathlib.Path(sys.argv[1]), sys.argv[2]
def load(p):
    try:
        return json.loads(p.read_text())
    except ValueError as e:  # a truncated file (a stage killed mid-write) must not lose the others
        return {"unreadable": str(e)}
json.dump({p.stem: load(p) for p in sorted(tmp.glob("*.json"))}, open(out, "w"), indent=2)
PYEOF
step "exit status $status"
exit $status
