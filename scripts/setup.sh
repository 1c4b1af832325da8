#!/usr/bin/env bash
# Create .venv (if missing) and install ldc with its test dependencies, compiling the C extensions.
# Idempotent: re-running rebuilds the extensions from the current sources.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
.venv/bin/python -m pip install -q -e '.[test]'
