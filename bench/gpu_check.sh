#!/usr/bin/env bash
# One command for a GPU machine without network (python3 with torch, nvcc, ninja):
# builds fastgan._C there, runs the CUDA tests, then the CUDA benchmark table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
start=$(date +%s)
echo "== build ($($PY -c 'import torch; print(torch.__version__, torch.version.cuda)'))"
FASTGAN_CUDA=1 FASTGAN_PTXAS_VERBOSE=1 MAX_JOBS=${MAX_JOBS:-16} \
  $PY setup.py build_ext --inplace > /tmp/fastgan_build.log 2>&1 || { tail -50 /tmp/fastgan_build.log; exit 1; }
echo "spill lines (non-zero): $(grep -E 'spill' /tmp/fastgan_build.log | grep -vc ' 0 bytes spill stores, 0 bytes spill loads' || true)"
$PY -c 'import fastgan; print(fastgan.backend_info())'
echo "== CUDA tests"
FASTGAN_BACKEND=ext $PY -m pytest tests/test_bias_act_cuda.py tests/test_upsample_conv2d_cuda.py -q -x -p no:cacheprovider 2>&1 | tail -15
echo "== benchmark"
$PY bench/cuda_bench.py
echo "total $(( $(date +%s) - start )) s"
