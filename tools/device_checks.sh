#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one command for a machine that has one and no network:
#
#   1. every test marked `gpu` (CUDA paths of every package) and the QLoRA tests;
#   2. the MEFT memory-and-speed table on CUDA (torch.cuda peak memory; BERT-base shape, batch 8,
#      128 and 512 tokens) with its depth sweep.
#
# The packages are used from the source tree (PYTHONPATH), so nothing is built or fetched there.
# bitsandbytes is not in such images: download its wheel here first (see the `device` notes), into
# an ignored .whl/ folder carried with the tree; without it the QLoRA tests skip and say so.
# Logs and the JSON records land in $OUT (default /tmp/device-checks).
#
#   bash tools/device_checks.sh            # about 10 minutes on one H100, most of it the table
#   bash tools/device_checks.sh tests      # step 1 only
set -uo pipefail

out="${OUT:-/tmp/device-checks}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
sources="packages/peft-core/src:packages/meft/src:packages/deft/src:packages/point-peft/src"
export PYTHONPATH=".:${sources}${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee "$out/device.txt"

status=0
python3 -m pytest -q -p no:cacheprovider -rs packages/peft-core/tests packages/meft/tests \
    packages/deft/tests \
    packages/point-peft/tests -m "gpu" 2>&1 | tee "$out/gpu-tests.log" || status=1
python3 -m pytest -q -p no:cacheprovider -rs packages/deft/tests -k "qlora" -m "not slow" 2>&1 \
    | tee "$out/qlora-tests.log" || status=1
if [ "${1:-all}" != "tests" ]; then
    python3 -m benchmarks.run meft 2>&1 | tee "$out/meft-table.log" || status=1
    cp benchmarks/results/meft-*-cuda.json "$out"/
fi
exit $status
