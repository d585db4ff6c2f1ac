#!/usr/bin/env bash
# The checks that need a GPU, in one go: the CuPy cases of the test suite, the GPU benchmarks, and short
# `--device cuda` runs of the train and eval commands.  Run from the repository root on a machine with an
# NVIDIA GPU and CuPy:
#
#     bash scripts/gpu_check.sh [OUT_DIR]          # logs go to OUT_DIR (default gpu-check/)
#
# Each step has its own time limit and a failing step does not stop the others; the last lines printed
# are a summary, and the exit status is 1 if any step failed.  EVAL_RUN=runs/NAME also times
# `tinydgm eval --device cuda` on 1000 test images of a copy of that run; ONLY="tests-cupy bench-vae" runs
# only the steps named; PYTEST_ARGS replaces the tests selected (default: tests -k cupy).
set -uo pipefail
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"; rm -rf /tmp/gpu-check-runs
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
summary=()
failed=0

step() {                       # step NAME SECONDS COMMAND...: run it, log it, note its exit status and time
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "=== $name: $*"
    timeout -k 15 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || failed=1
    tail -n 25 "$out/$name.log"
    summary+=("$(printf '%-16s exit %3s  %4ss' "$name" "$rc" "$((SECONDS - t0))")")
}

step env 60 bash -c "nvidia-smi -L; $py -c 'import sys, numpy, scipy, cupy; print(sys.version.split()[0], \"numpy\", numpy.__version__, \"scipy\", scipy.__version__, \"cupy\", cupy.__version__, cupy.cuda.runtime.getDeviceProperties(0)[\"name\"])'"
# The CuPy cases only (the NumPy ones are what CI runs): 10 hypothesis examples where a test sets no
# count, no shrinking, a per-test limit where pytest-timeout is installed.
per_test=$("$py" -c 'import pytest_timeout' 2>/dev/null && echo --timeout=60)
step tests-cupy 200 "$py" -m pytest -q -rfE --tb=short -p no:cacheprovider -o addopts= --hypothesis-profile=quick \
    --maxfail=40 $per_test ${PYTEST_ARGS:-tests -k cupy}
step bench-engine 60 "$py" scripts/bench.py engine --device cuda --rounds 5 --batch 100 1000
step bench-vae 45 "$py" scripts/bench.py vae --device cuda --rounds 5 --batch 100 1000
step bench-ws 45 "$py" scripts/bench.py wake-sleep --device cuda --rounds 3 --images 2500
step train-vae 60 "$py" -m tinydgm train vae --device cuda --epochs 2 --out /tmp/gpu-check-runs/vae --quiet
step train-rws 60 "$py" -m tinydgm train wake-sleep --device cuda --reweighted --k 5 --epochs 1 --out /tmp/gpu-check-runs/rws --quiet
if [ -n "${EVAL_RUN:-}" ]; then
    mkdir -p /tmp/gpu-check-runs && cp -r "$EVAL_RUN" /tmp/gpu-check-runs/eval   # shard files stay out of the run
    step eval-cuda 120 "$py" -m tinydgm eval /tmp/gpu-check-runs/eval --device cuda --k 5000 --limit 1000 --quiet
fi
echo "=== summary"
printf '%s\n' ${summary[@]+"${summary[@]}"}
exit "$failed"
