#!/usr/bin/env bash
# One command from a fresh checkout to the demo:
#   ./run.sh [--image PATH] [--weights CKPT] ...   (arguments go to python -m napari_glnet.demo)
# Creates or refreshes .venv (scripts/setup.sh: the CPU build of torch, then
# the project with its napari extra; skipped while pyproject.toml is
# unchanged). With a screen it opens napari; without one it says so and runs
# the headless equivalent, writing out/<image>_glnet.png.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" napari >&2
exec "$ROOT/.venv/bin/python" -m napari_glnet.demo "$@"
