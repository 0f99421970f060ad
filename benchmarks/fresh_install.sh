#!/usr/bin/env bash
# A non-editable install builds and loads the LAMMPS plugin: a fresh venv, the CPU torch, the mlff
# wheel built from this checkout (with the lammps extra), `mlff lammps build`, `mlff lammps doctor`.
# Slow (about 5 minutes: dependency installs and one plugin compile), so it lives here and not in
# the test suite; tests/lammps/test_packaging.py checks the wheel's contents quickly.
#
#   bash benchmarks/fresh_install.sh [WORKDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install --quiet "$TORCH_SPEC"
"$PY" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$ROOT"
WHEEL="$(ls "$WORK"/dist/mlff-*.whl)"
"$PY" -m pip install --quiet "${WHEEL}[lammps]"
cd "$WORK"   # away from the checkout: the installed package, not the source tree, is imported
"$PY" -c "import mlff, os; assert 'site-packages' in mlff.__file__, mlff.__file__; print('mlff from', os.path.dirname(mlff.__file__))"
"$WORK/venv/bin/mlff" lammps build
"$WORK/venv/bin/mlff" lammps doctor
echo "fresh install: OK ($WORK)"
