#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks into .whl/ (git-ignored), for bench/gpu_check.py.
#
# The GPU machine (Python 3.12, x86-64, no network) already has torch, numpy, scipy, PyYAML,
# matplotlib, transformers, tensorboard and pytest (see docs/benchmarks.md, "GPU check"), but not
# soundfile and soxr, which dpda imports for audio I/O and resampling, nor soundfile's own needs
# cffi and pycparser. Run this here, where PyPI is reachable; name `.whl` in the device call's
# `carry`. bench/gpu_check.py installs them there with `pip install --no-index --no-deps --target`.
#
# Usage: bash bench/gpu_wheels.sh            (PYTHON=... to choose the interpreter whose pip is used)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# One version of each (two versions of a package stop the whole install there).
WHEELS=(
    "soundfile==0.14.0"   # needs cffi, numpy; the manylinux wheel bundles libsndfile
    "soxr==1.1.0"         # needs numpy
    "cffi==2.1.1"         # needs pycparser
    "pycparser==3.12"     # pure Python
)

mkdir -p .whl
# soundfile's wheel is py3-none-manylinux; soxr's and cffi's are cp312 manylinux_2_17 / _2_27 / _2_28.
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"

# Keep exactly the pinned versions (an older download of another version would break the install).
for spec in "${WHEELS[@]}"; do
    spec="${spec%%#*}"; spec="${spec// /}"
    name="${spec%%==*}"; version="${spec##*==}"
    for f in .whl/"${name}"-*.whl; do
        [ -e "$f" ] || { echo "missing wheel for $spec" >&2; exit 1; }
        case "$f" in
            .whl/"${name}-${version}-"*) ;;
            *) echo "removing $f (not $spec)"; rm -f "$f" ;;
        esac
    done
done

echo "wheels in .whl/ (for the device call: carry [\".whl\"]):"
ls -l .whl/*.whl | awk '{printf "  %8.1f KiB  %s\n", $5 / 1024, $NF}'
du -ch .whl/*.whl | tail -1 | awk '{print "  total " $1}'
