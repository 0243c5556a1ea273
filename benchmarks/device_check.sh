#!/usr/bin/env bash
# The network on this machine's GPU: parity of the "xla" kernel set with the CPU program's logits,
# and the train step of JAX (float32, bfloat16) against the original PyTorch network (eager
# float32, bfloat16 autocast) at 224, batch 32 (benchmarks/device_check.py). Installs into a venv
# of its own; under 8 minutes on one GPU. Run from the repository root:
#
#     bash benchmarks/device_check.sh [--smoke]
#
# --smoke: 64 px, batch 2, on whatever backend is present (checks the script on a CPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${DEVICE_CHECK_VENV:-/tmp/hpe_jax_device_check_venv}"
jax_version="$(python3 -c 'import re, pathlib; print(re.search(r"jax\[tpu\]==([0-9.]+)", pathlib.Path("pyproject.toml").read_text())[1])')"
python3 -m venv "$venv"
. "$venv/bin/activate"
pip install -q -e '.[torch]'
if [[ "${1:-}" != "--smoke" ]]; then
  pip install -q "jax[cuda12]==${jax_version}"
fi
reference="$(mktemp -d)/reference.npz"
export PYTHONPATH="$PWD:$PWD/benchmarks"
JAX_PLATFORMS=cpu python benchmarks/device_check.py reference --out "$reference" "$@"
python benchmarks/device_check.py device --reference "$reference" "$@"
