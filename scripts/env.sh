#!/usr/bin/env bash
# Source this file: it installs libtorch (PyTorch 2.11.0 from PyPI) on first use into a cache
# keyed by the torch version, links it as the git-ignored `.venv` of this checkout, and exports
# what the build needs (LIBTORCH_USE_PYTORCH=1, the environment's python first on PATH).
#
#   source scripts/env.sh
#
#   OPTARCH_CACHE   where the environment is kept (default: ~/.cache/optarch)
#   OPTARCH_TORCH   the torch version (default and only supported: 2.11.0, for tch 0.24.0)
#
# Besides torch the environment holds numpy and safetensors (the exported PyTorch module's
# weights are read with `safetensors.torch.load_file`); an environment made before safetensors
# was on that list gets it added once (a few hundred kB; the `.extras` marker records it).
#
# The caller's shell options are left as they were. A failed install returns non-zero and
# leaves no half-made environment behind (the `.complete` marker is written last); concurrent
# first uses (parallel CI jobs) wait on a lock instead of installing twice.
#
# LIBTORCH_BYPASS_VERSION_CHECK is left alone: torch-sys skips its version check when the
# variable is set at all, even to 0, so exporting it would hide a torch/tch mismatch.
#
# No LD_LIBRARY_PATH is set on purpose: the build records libtorch's directory as an rpath
# (build/link_libtorch.rs), and the tests check that executables run without it.

_optarch_saved_opts="$(set +o)" # a command substitution does not see errexit: record it apart
case $- in *e*) _optarch_saved_opts="$_optarch_saved_opts; set -e" ;; esac
set -uo pipefail
_optarch_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_torch="${OPTARCH_TORCH:-2.11.0}"
_cache="${OPTARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/optarch}"
_venv="$_cache/torch-$_torch/venv"
_extras="safetensors==0.8.0"

# Runs in a subshell (for the lock). Every step is chained with && because `set -e` has no
# effect inside the `if !` that calls it.
_optarch_install() (
  mkdir -p "$(dirname "$_venv")" && exec 9>"$(dirname "$_venv")/.lock" || return 1
  if command -v flock >/dev/null; then flock 9 || return 1; fi
  if [ -x "$_venv/bin/python" ] && [ -f "$_venv/.complete" ]; then
    return 0 # another process finished it while we waited
  fi
  echo "optarch: installing torch==$_torch from PyPI into $_venv (once, about 4.6 GB)" >&2
  rm -rf "$_venv" &&
    python3 -m venv "$_venv" &&
    "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "torch==$_torch" numpy $_extras &&
    echo "$_extras" >"$_venv/.extras" &&
    touch "$_venv/.complete"
)

# The small packages added to the list after an environment was made, installed once.
_optarch_extras() (
  exec 9>"$(dirname "$_venv")/.lock" || return 1
  if command -v flock >/dev/null; then flock 9 || return 1; fi
  [ "$(cat "$_venv/.extras" 2>/dev/null)" = "$_extras" ] && return 0
  echo "optarch: adding $_extras to $_venv" >&2
  "$_venv/bin/python" -m pip install --quiet --disable-pip-version-check $_extras &&
    echo "$_extras" >"$_venv/.extras"
)

_optarch_status=0
if [ ! -x "$_venv/bin/python" ] || [ ! -f "$_venv/.complete" ]; then
  if ! _optarch_install; then
    echo "optarch: installing torch==$_torch into $_venv failed (see the messages above)" >&2
    _optarch_status=1
  fi
fi
if [ "$_optarch_status" = 0 ] && [ "$(cat "$_venv/.extras" 2>/dev/null)" != "$_extras" ]; then
  if ! _optarch_extras; then
    echo "optarch: installing $_extras into $_venv failed (see the messages above)" >&2
    _optarch_status=1
  fi
fi
if [ "$_optarch_status" = 0 ]; then
  if [ "$(readlink "$_optarch_root/.venv" 2>/dev/null)" != "$_venv" ]; then
    rm -rf "$_optarch_root/.venv"
    ln -s "$_venv" "$_optarch_root/.venv"
  fi
  export PATH="$_venv/bin:$PATH"
  export LIBTORCH_USE_PYTORCH=1
fi
eval "$_optarch_saved_opts"
unset -f _optarch_install _optarch_extras
unset _optarch_saved_opts _optarch_root _torch _cache _venv _extras
# `return` when sourced, `exit` when run as a script.
return "$_optarch_status" 2>/dev/null || exit "$_optarch_status"
