#!/usr/bin/env bash
# Idempotent setup: .venv with a CPU build of torch (no CUDA downloads on a CPU machine), the package
# in editable mode with test and benchmark extras. Safe to run again; fast when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" install torch                      # a GPU machine: the default (CUDA) build is wanted
  else
    # CPU build: from a local wheel folder when pip is configured with one, else PyTorch's CPU index.
    "${PIP[@]}" install "torch==2.13.0+cpu" 2>/dev/null \
      || "${PIP[@]}" install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${PIP[@]}" install -e ".[test,bench]"
# The memory page's browser test runs Debian's headless Chromium and its matching driver (nothing is downloaded
# at test time). Installed when missing and this account may: root, or sudo without a password.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
  { "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
      --no-install-recommends chromium chromium-driver; } >/dev/null \
    || echo "setup: could not install chromium and chromium-driver (the browser test needs them)" >&2
fi
# Export the bundled embedding model to ONNX once (offline, ~5 s); the server would otherwise do it on first start.
HF_HUB_OFFLINE=1 .venv/bin/python -m memoryos_mcp.adapters.onnx_embedder
