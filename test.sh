#!/usr/bin/env bash
# Set up everything the tests need (idempotent), check lint, format and
# types (mypy on src/glnet, as [tool.mypy] in pyproject.toml says), and run the whole suite.
#   ./test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_screen.sh
scripts/setup.sh test,napari
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
