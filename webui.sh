#!/usr/bin/env bash
# Sets up .venv on first use, then starts Easel. Flags are A1111's: --listen, --port, --api, ...
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python webui.py "$@"
