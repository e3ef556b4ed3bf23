#!/usr/bin/env bash
# Sets up .venv (with the test tools) on first use, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh --dev
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
# Lint and types first (settings in pyproject.toml): a finding fails the run before the tests start.
.venv/bin/ruff check modules webui.py
.venv/bin/mypy
exec .venv/bin/python -m pytest tests "$@"
