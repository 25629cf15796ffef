#!/usr/bin/env bash
# Downloads, here (where PyPI is reachable), the wheels tools/device_checks.sh needs on a GPU
# machine that cannot reach it, at the versions CI pins (constraints/ci.txt), built for x86-64
# Linux and that machine's Python (3.12 unless given):
#
#   bitsandbytes   not in the GPU image at all (QLoRA)
#   transformers   the image's is older than the 5.24 whose layer code meft follows
#   peft           the version CI tests deft and the LoRA rows with
#   regex          transformers 5.24 checks for regex >= 2025.10.22 when imported
#
# They land in the git-ignored .whl/ folder; carry it with the tree (about 58 MB of a call's
# 64 MiB, the tree itself about 4 MB).
#
#   bash tools/fetch_device_wheels.sh          # for Python 3.12
#   bash tools/fetch_device_wheels.sh 3.11
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_version="${1:-3.12}"
names=(bitsandbytes transformers peft regex)

requirements=()
for name in "${names[@]}"; do
    version=$(sed -n "s/^${name}==//p" constraints/ci.txt)
    if [ -z "$version" ]; then
        echo "fetch_device_wheels.sh: constraints/ci.txt pins no ${name} version" >&2
        exit 1
    fi
    requirements+=("${name}==${version}")
done

# pip matches manylinux tags exactly, so name every one these wheels are built for.
platforms=()
for tag in manylinux_2_24_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
# one version of each only: two would stop the install there
for name in "${names[@]}"; do
    rm -f ".whl/${name}-"*.whl
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp "${platforms[@]}" -d .whl "${requirements[@]}"
ls -l .whl
du -cb .whl/*.whl | tail -1
