#!/usr/bin/env bash
# Downloads, here (where PyPI is reachable), the wheels tools/device_checks.sh needs on a GPU
# machine that cannot reach it: bitsandbytes, at the version CI pins, built for x86-64 Linux and
# that machine's Python (3.12 unless given). They land in the git-ignored .whl/ folder; carry it
# with the tree.
#
#   bash tools/fetch_device_wheels.sh          # for Python 3.12
#   bash tools/fetch_device_wheels.sh 3.11
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_version="${1:-3.12}"
version=$(sed -n 's/^bitsandbytes==//p' constraints/ci.txt)
if [ -z "$version" ]; then
    echo "fetch_device_wheels.sh: constraints/ci.txt pins no bitsandbytes version" >&2
    exit 1
fi

# pip matches manylinux tags exactly, so name every one bitsandbytes has been built for.
platforms=()
for tag in manylinux_2_24_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
rm -f .whl/bitsandbytes-*.whl # one version only: two would stop the install there
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp "${platforms[@]}" -d .whl "bitsandbytes==$version"
ls -l .whl
