#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a machine that has one and no network. Three stages; each
# fits one command on a machine lent for at most 10 minutes a command:
#
#   bash tools/device_checks.sh tests   # every test marked `gpu` (CUDA paths of every package)
#                                       # and the QLoRA tests
#   bash tools/device_checks.sh table   # MEFT's memory-and-speed table on CUDA (torch.cuda peak
#                                       # memory; BERT-base shape, batch 8, 128 then 512 tokens)
#   bash tools/device_checks.sh sweep   # its activation-memory depth sweep (6/12/24 layers)
#   bash tools/device_checks.sh steps   # MEFT's step time vs vanilla backprop, every model in one
#                                       # process, 30 rounds (benchmarks/meft/bench_step_time.py)
#   bash tools/device_checks.sh         # all four, in that order
#
# The packages are used from the source tree (PYTHONPATH), so nothing is built or fetched there.
# Such an image lacks bitsandbytes and holds a transformers older than meft's floor (5.24):
# `bash tools/fetch_device_wheels.sh` downloads here the wheels of CI's versions into the
# git-ignored .whl/ folder, which is then carried with the tree and installed ahead of the image's.
#
# Logs and the JSON records land in $OUT (default /tmp/device-checks). Each record is copied there
# as soon as it is written, so a stage stopped by a time limit still returns what it finished.
# Most of the time is start-up: the table runs each of its 22 rows in a fresh process, the sweep
# 15 more, and importing torch and transformers' BERT takes 11-15 s on 2 CPU cores (less on a
# GPU machine's 16). On a 2-core CPU the tests stage took 54 s, the wheels' install included; on
# one H100 plan `tests` and `table` in one command, `sweep` and `steps` in a second. A device
# machine returns at most 8 files a command: `tests` and `table` write 6, `sweep` and `steps` 6
# (`all` would write 11).
set -uo pipefail

stage="${1:-all}"
case "$stage" in
    all | tests | table | sweep | steps) ;;
    *)
        echo "usage: bash tools/device_checks.sh [tests|table|sweep|steps]   (default: all four)" >&2
        exit 2
        ;;
esac

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

# what the benchmark records say of where they ran: the device and the libraries in use
python3 -c "import json; from benchmarks.records import device_description, library_versions; \
print(json.dumps({'device': device_description(), 'versions': library_versions()}, indent=1))" \
    | tee "$out/device.txt"

status=0

# Runs a MEFT benchmark module with the given arguments, then copies its CUDA records.
meft_bench() {
    local log="$1"
    shift
    SECONDS=0
    python3 -m "$@" 2>&1 | tee "$out/$log" || status=1
    echo "($SECONDS s)" | tee -a "$out/$log"
    cp benchmarks/results/meft-*-cuda.json "$out"/ 2>/dev/null || true
}

if [ "$stage" = all ] || [ "$stage" = tests ]; then
    # One log for both runs: a device machine returns at most 8 files a command (see above).
    # A test module that cannot be imported there (a package the image lacks) must not stop the
    # others: it is reported as an error and the rest run.
    pytest=(python3 -m pytest -q -p no:cacheprovider -rs --continue-on-collection-errors)
    "${pytest[@]}" packages/peft-core/tests packages/meft/tests packages/deft/tests \
        packages/point-peft/tests -m "gpu" 2>&1 | tee "$out/tests.log" || status=1
    "${pytest[@]}" packages/deft/tests -k "qlora" -m "not slow" 2>&1 \
        | tee -a "$out/tests.log" || status=1
fi
if [ "$stage" = all ] || [ "$stage" = table ]; then
    meft_bench meft-table-128.log benchmarks.meft.bench_memory_speed --lengths 128 --no-depth-sweep
    meft_bench meft-table-512.log benchmarks.meft.bench_memory_speed --lengths 512 --no-depth-sweep
fi
if [ "$stage" = all ] || [ "$stage" = sweep ]; then
    meft_bench meft-depth-sweep.log benchmarks.meft.bench_memory_speed --lengths 128 \
        --depth-sweep-only
fi
if [ "$stage" = all ] || [ "$stage" = steps ]; then
    meft_bench meft-step-time.log benchmarks.run meft-step-time
fi
exit $status
