#!/usr/bin/env bash
# Creates .venv and installs Easel's dependencies, once: later runs skip pip while the requirement
# files are unchanged. Usage: scripts/setup_env.sh [--dev]
#   --dev           also install the test tools (requirements-dev.txt)
#   EASEL_TORCH_INDEX=https://download.pytorch.org/whl/cu128   take torch from another index
#   PYTHON=python3.11                                          interpreter for the venv
set -euo pipefail
cd "$(dirname "$0")/.."
files=(requirements.txt)
nodeps=()
if [ "${1:-}" = "--dev" ]; then
  files+=(requirements-dev.txt)
  nodeps+=(requirements-test-nodeps.txt)  # test-only references whose own dependencies we must not pull
fi
python=${PYTHON:-python3}
if [ "${1:-}" = "--dev" ] && [ ! -x /usr/bin/chromium ]; then
  # The browser tests drive Debian's Chromium (Playwright's own download is never used).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "Could not install chromium: the browser tests will fail. Install it with: apt-get install chromium" >&2
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
      || echo "Could not install chromium: the browser tests will fail. Install it with: sudo apt-get install chromium" >&2
  else
    echo "No /usr/bin/chromium and no root to install it: the browser tests will fail. Run: sudo apt-get install chromium" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($python --version 2>&1)"
  "$python" -m venv .venv
fi
want="$(cat "${files[@]}" "${nodeps[@]}" scripts/setup_env.sh | sha256sum | cut -c1-16)${EASEL_TORCH_INDEX:-}"
stamp=.venv/.easel-installed-$(echo "${files[*]}" | tr ' /' '__')
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing dependencies (${files[*]})..."
  quiet() { grep -v -e 'is ignored: it is neither a file nor a directory' -e '^$' || true; }
  if [ -n "${EASEL_TORCH_INDEX:-}" ]; then
    .venv/bin/pip install -q "torch==2.13.0" --index-url "$EASEL_TORCH_INDEX" 2>&1 | quiet
  fi
  for f in "${files[@]}"; do .venv/bin/pip install -q -r "$f" 2>&1 | quiet; done
  # Only for its MIT CLIP vocabulary file (the tokenizer is built from it offline); its own
  # dependencies (torchvision, timm...) are not needed.
  .venv/bin/pip install -q --no-deps "open-clip-torch==3.3.0" 2>&1 | quiet
  # spandrel reads upscaler model files (ESRGAN, SwinIR, DAT...); it imports torchvision for two
  # architectures Easel does not run. A CUDA/ROCm torch gets the matching torchvision; a CPU torch
  # gets none (PyPI's Linux torchvision wheels are CUDA builds that fail beside it): see
  # modules/upscalers/spandrel_import.py.
  .venv/bin/pip install -q --no-deps "spandrel==0.4.2" 2>&1 | quiet
  if .venv/bin/python -c "import sys, torch; sys.exit(0 if (torch.version.cuda or torch.version.hip) else 1)"; then
    if [ -n "${EASEL_TORCH_INDEX:-}" ]; then
      .venv/bin/pip install -q --no-deps "torchvision==0.28.0" --index-url "$EASEL_TORCH_INDEX" 2>&1 | quiet
    else
      .venv/bin/pip install -q --no-deps "torchvision==0.28.0" 2>&1 | quiet
    fi
  fi
  for f in "${nodeps[@]}"; do .venv/bin/pip install -q --no-deps -r "$f" 2>&1 | quiet; done
  .venv/bin/python -c "import torch, diffusers, transformers, gradio; from modules.upscalers.spandrel_import import import_spandrel; import_spandrel()" || { echo "Install failed: see the pip output above." >&2; exit 1; }
  echo "$want" > "$stamp"
fi
