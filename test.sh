#!/usr/bin/env bash
# Sets up .venv (with the test tools) on first use, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh --dev
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest tests "$@"
