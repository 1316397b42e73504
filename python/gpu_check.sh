#!/usr/bin/env bash
# The one GPU check: on a GPU machine with torch preinstalled and no network, build the extension
# against that torch, run the CUDA tests, compute-sanitizer (memcheck + racecheck) on small cases of
# every op, and the benchmarks. Everything lands in $OUT (default ./gpu_out): logs, JSON, Markdown.
#
#   OUT=/path bash python/gpu_check.sh        # or: make gpu-check
#
# Wheels the machine lacks (lpips, nvidia-cutlass, ...) may be carried in .carry/wheels.
# The device tool brings back at most 8 files from $OUT, so output is kept to 7: summary.txt,
# build_info.json, build.log, cuda_tests.log, sanitizer.log, bench.json, bench.md.
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

step "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
step "torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')  commit: $(git rev-parse --short HEAD 2>/dev/null)"
if [ -d .carry/wheels ]; then
  $PY -m pip install -q --no-index --find-links .carry/wheels .carry/wheels/*.whl >"$OUT/carry_install.log" 2>&1 || true
fi

step "build (archs $GANSR_CUDA_ARCHS)"
start=$(date +%s)
if ! $PY -m pip install -q --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  step "BUILD FAILED (see build.log)"; tail -40 "$OUT/build.log"; exit 1
fi
step "build took $(( $(date +%s) - start )) s"
$PY -c "import gansr_ext, json; print(json.dumps(gansr_ext.build_info()))" | tee "$OUT/build_info.json"

step "CUDA tests"
$PY -m pytest -q -p no:cacheprovider tests -k cuda --continue-on-collection-errors \
  >"$OUT/cuda_tests.log" 2>&1 || status=1
tail -5 "$OUT/cuda_tests.log" | tee -a "$OUT/summary.txt"

if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    step "compute-sanitizer $tool"
    compute-sanitizer --tool $tool --error-exitcode 3 $PY python/gpu_sanitize_cases.py \
      >"$TMP/sanitizer_$tool.log" 2>&1 || status=1
    { echo "== $tool"; tail -200 "$TMP/sanitizer_$tool.log"; } >>"$OUT/sanitizer.log"
    tail -3 "$TMP/sanitizer_$tool.log" | tee -a "$OUT/summary.txt"
  done
else
  step "compute-sanitizer not found"; status=1
fi

for bench in python/bench_*.py; do
  name=$(basename "$bench" .py)
  step "benchmark $name"
  timeout 300 $PY "$bench" --out "$TMP/$name" >"$TMP/$name.log" 2>&1 || { status=1; echo "failed" | tee -a "$OUT/summary.txt"; }
  tail -20 "$TMP/$name.log" | tee -a "$OUT/summary.txt"
  [ -f "$TMP/$name.md" ] && { cat "$TMP/$name.md"; echo; } >>"$OUT/bench.md"
done
$PY - "$TMP" "$OUT/bench.json" <<'PYEOF'
import json, pathlib, sys
tmp, out = pathlib.Path(sys.argv[1]), sys.argv[2]
json.dump({p.stem: json.loads(p.read_text()) for p in sorted(tmp.glob("*.json"))}, open(out, "w"), indent=2)
PYEOF
step "exit status $status"
exit $status
