#!/usr/bin/env bash
# Source this file: it installs libtorch (PyTorch 2.11.0 from PyPI) on first use into a cache
# keyed by the torch version, links it as the git-ignored `.venv` of this checkout, and exports
# what the build needs (LIBTORCH_USE_PYTORCH=1, the environment's python first on PATH).
#
#   OPTARCH_CACHE   where the environment is kept (default: ~/.cache/optarch)
#   OPTARCH_TORCH   the torch version (default and only supported: 2.11.0, for tch 0.24.0)
set -euo pipefail
_optarch_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_torch="${OPTARCH_TORCH:-2.11.0}"
_cache="${OPTARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optarch}"
_venv="$_cache/torch-$_torch/venv"
if [ ! -x "$_venv/bin/python" ] || [ ! -f "$_venv/.complete" ]; then
  echo "optarch: installing torch==$_torch from PyPI into $_venv (once, about 4.6 GB)" >&2
  rm -rf "$_venv"
  mkdir -p "$(dirname "$_venv")"
  python3 -m venv "$_venv"
  "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$_torch" numpy
  touch "$_venv/.complete"
fi
if [ "$(readlink "$_optarch_root/.venv" 2>/dev/null)" != "$_venv" ]; then
  rm -rf "$_optarch_root/.venv"
  ln -s "$_venv" "$_optarch_root/.venv"
fi
export PATH="$_venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-0}"
set +euo pipefail
