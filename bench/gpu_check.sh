#!/usr/bin/env bash
# One command for a GPU machine without network (python3 with torch, nvcc, ninja, pytest;
# pytest-benchmark is not needed): builds fastgan._C there with its CUDA kernels, runs every
# CUDA test (tests/test_*_cuda.py), then prints the CUDA timing tables.
#
#   bash bench/gpu_check.sh          (or `make gpu-check`; PYTHON=... picks the interpreter,
#                                     MAX_JOBS=... the parallel compile jobs, default 16)
#
# Exit status: 0 when the build and every CUDA test passed on a GPU and the benchmarks' own
# checks against stock PyTorch held; 1 when the build, a CUDA test or such a check failed
# (after a test failure the timing tables still print); 3 when no GPU is visible: the build
# ran and the CUDA tests were collected and skipped, nothing was checked on a GPU (a dry run).
#
# Files: gpu_check.log (all it prints), gpu_check.json (the report), build.log,
# cuda-tests.xml (JUnit) and bench/bench-cuda-quick.{json,md,png} (`fastgan bench`), in $OUT
# when it is set, else in build/gpu-check. At most 7 files, none deeper than bench/.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${OUT:-build/gpu-check}
mkdir -p "$DEST"
# `fastgan bench --quick` compiles every case with torch.compile (one compile per case, mode,
# dtype and layout): float32 and contiguous only, and a cap, to fit a short session.
BENCH_TIMEOUT=${BENCH_TIMEOUT:-180}

main() {
  local start=$SECONDS
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bench/*.py import fastgan from here

  echo "== environment"
  $PY -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torch CUDA {torch.version.cuda}")' \
    || { echo "FAIL: $PY cannot import torch"; REPORT_STATUS=1; return 1; }
  echo "nvcc: $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null) | grep -o 'release [0-9.]*' || echo 'not found')"
  # pyproject.toml's SPDX license string needs setuptools 77.0.3 (older ones reject the file).
  $PY -c 'import setuptools, sys; v = setuptools.__version__; print("setuptools", v); sys.exit(tuple(map(int, v.split(".")[:2])) < (77, 0))' \
    || { echo "FAIL: the build needs setuptools>=77.0.3 (pip install 'setuptools>=77.0.3,<82')"; REPORT_STATUS=1; return 1; }
  $PY -c 'import pytest' || { echo "FAIL: $PY cannot import pytest"; REPORT_STATUS=1; return 1; }
  $PY -c 'from torch.utils.cpp_extension import is_ninja_available as a; print("ninja:", "yes" if a() else "NO (a serial build)")' 2>/dev/null
  GPU=$($PY -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)
  if [ -n "$GPU" ]; then
    echo "GPU: $GPU"
  else
    echo "GPU: none visible (torch.cuda.is_available() is False): a dry run; the CUDA tests will"
    echo "     skip and the CUDA timings are not run"
  fi
  echo "cores: $(nproc), MAX_JOBS=${MAX_JOBS:-16}"

  echo "== build (CUDA kernels on; log: $DEST/build.log)"
  local t0=$SECONDS
  FASTGAN_CUDA=1 FASTGAN_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-16} \
    $PY setup.py build_ext --inplace > "$DEST/build.log" 2>&1
  BUILD_RC=$?
  BUILD_S=$((SECONDS - t0))
  if [ "$BUILD_RC" -ne 0 ]; then
    tail -50 "$DEST/build.log"
    echo "FAIL: build (exit $BUILD_RC) after $BUILD_S s"
    REPORT_STATUS=1
    return 1
  fi
  grep -m1 '^fastgan: CPU kernels' "$DEST/build.log"
  SPILLS=$(grep -E 'spill' "$DEST/build.log" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads')
  if grep -q 'spill' "$DEST/build.log"; then
    echo "built in $BUILD_S s; ptxas lines with register spills: $SPILLS"
  else
    SPILLS=""
    echo "built in $BUILD_S s; no .cu file was recompiled, so no ptxas report"
  fi
  SUMMARY=$($PY -c 'import fastgan._backend as b; print(b.summary()); raise SystemExit(0 if b.backend_info()["cuda_kernels"] else 1)')
  local rc=$?
  echo "$SUMMARY"
  if [ "$rc" -ne 0 ]; then
    echo "FAIL: the build has no usable CUDA kernels"
    REPORT_STATUS=1
    return 1
  fi

  echo "== CUDA tests (tests/test_*_cuda.py)"
  t0=$SECONDS
  FASTGAN_BACKEND=ext $PY -m pytest tests/test_*_cuda.py -q -p no:cacheprovider -rfE \
    --junitxml="$DEST/cuda-tests.xml"
  TESTS_RC=$?
  TESTS_S=$((SECONDS - t0))
  echo "CUDA tests: exit $TESTS_RC after $TESTS_S s"

  if [ -z "$GPU" ]; then
    echo "== benchmarks: not run (no GPU)"
  else
    echo "== benchmark: bias_act, upfirdn2d, upsample block (bench/cuda_bench.py)"
    run_bench cuda_bench $PY bench/cuda_bench.py
    echo "== benchmark: gradient penalties (bench/cuda_bench_penalties.py)"
    run_bench cuda_bench_penalties $PY bench/cuda_bench_penalties.py
    echo "== fastgan bench --device cuda --quick (at most $BENCH_TIMEOUT s)"
    run_bench fastgan_bench timeout "$BENCH_TIMEOUT" $PY -m fastgan.benchmark.cli --device cuda --quick \
      --dtypes float32 --layouts contiguous --out "$DEST/bench"
  fi

  TOTAL_S=$((SECONDS - start))
  if [ "$TESTS_RC" -ne 0 ] || [ -n "$BENCH_FAILED" ]; then
    REPORT_STATUS=1
  elif [ -z "$GPU" ]; then
    REPORT_STATUS=3
  else
    REPORT_STATUS=0
  fi
}

BENCHES=""      # name:exit:seconds, space-separated
BENCH_FAILED=""
run_bench() {
  local name=$1 t0=$SECONDS rc
  shift
  "$@"
  rc=$?
  BENCHES="$BENCHES $name:$rc:$((SECONDS - t0))"
  if [ "$name" = fastgan_bench ]; then
    # `fastgan bench` exits 1 when any case fails its check, torch.compile's included (it
    # cannot compile the double-backward penalty steps): only fastgan's own kernels count here.
    local bad
    bad=$($PY - "$DEST/bench/bench-cuda-quick.json" <<'EOF'
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e:
    print(f"no report ({e})"); raise SystemExit
bad = [r for r in doc["results"] if r["status"] != "ok"]
for r in bad:
    print(f"  {r['status']}: {r['case']} {r['impl']} {r['mode']} {r['dtype']} {r['layout']}: {r.get('message', '')[:160]}",
          file=sys.stderr)
print(" ".join(f"{r['case']}/{r['mode']}/{r['dtype']}/{r['layout']}" for r in bad if r["impl"] == "fastgan"))
EOF
)
    if [ "$rc" -eq 124 ]; then
      echo "fastgan bench: stopped after $BENCH_TIMEOUT s (BENCH_TIMEOUT): its tables are incomplete"
    elif [ -n "$bad" ]; then
      echo "FAIL: fastgan bench: fastgan's kernels failed their checks: $bad"
      BENCH_FAILED="$BENCH_FAILED $name"
    fi
  elif [ "$rc" -ne 0 ]; then
    echo "FAIL: $name (exit $rc)"
    BENCH_FAILED="$BENCH_FAILED $name"
  fi
}

write_report() {
  GPU="${GPU:-}" BUILD_RC="${BUILD_RC:-}" BUILD_S="${BUILD_S:-}" SPILLS="${SPILLS:-}" SUMMARY="${SUMMARY:-}" \
  TESTS_RC="${TESTS_RC:-}" TESTS_S="${TESTS_S:-}" BENCHES="$BENCHES" BENCH_FAILED="$BENCH_FAILED" \
  STATUS="$REPORT_STATUS" TOTAL_S="$TOTAL_S" DEST="$DEST" \
  $PY - <<'EOF'
import json, os, platform
import xml.etree.ElementTree as ET

e = os.environ
num = lambda k: int(e[k]) if e.get(k, "").lstrip("-").isdigit() else None
tests = {"exit": num("TESTS_RC"), "seconds": num("TESTS_S")}
try:
    suite = ET.parse(os.path.join(e["DEST"], "cuda-tests.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
except (OSError, ET.ParseError, AttributeError):
    pass
try:
    import torch
    versions = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
except ImportError:
    versions = {"torch": None, "torch_cuda": None}
report = {
    "status": {0: "passed", 1: "failed", 3: "no GPU (dry run)"}.get(num("STATUS"), "unknown"),
    "exit": num("STATUS"),
    "gpu": e["GPU"] or None,
    "python": platform.python_version(),
    **versions,
    "cores": os.cpu_count(),
    "build": {"exit": num("BUILD_RC"), "seconds": num("BUILD_S"), "spill_lines": num("SPILLS"),
              "summary": e["SUMMARY"] or None},
    "cuda_tests": tests,
    "benchmarks": [dict(zip(("name", "exit", "seconds"), (n, int(r), int(s))))
                   for n, r, s in (b.split(":") for b in e["BENCHES"].split())],
    "failed_benchmarks": e["BENCH_FAILED"].split(),
    "total_seconds": num("TOTAL_S"),
}
path = os.path.join(e["DEST"], "gpu_check.json")
with open(path, "w") as fh:
    json.dump(report, fh, indent=1)
print(f"report: {path}")
EOF
}

run_all() {
  local start=$SECONDS
  REPORT_STATUS=1
  main
  TOTAL_S=$((SECONDS - start))
  echo "== result"
  write_report
  case $REPORT_STATUS in
    0) echo "PASSED: build, CUDA tests and benchmark checks on $GPU" ;;
    3) echo "NO GPU: the build passed and the CUDA tests were collected and skipped; nothing ran on a GPU" ;;
    *) echo "FAILED:${BUILD_RC:+ build exit $BUILD_RC,}${TESTS_RC:+ CUDA tests exit $TESTS_RC,} benchmarks failed: ${BENCH_FAILED:-none}" ;;
  esac
  echo "total $TOTAL_S s"
  return "$REPORT_STATUS"
}

run_all 2>&1 | tee "$DEST/gpu_check.log"
exit "${PIPESTATUS[0]}"
