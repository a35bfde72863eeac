#!/usr/bin/env bash
# Idempotent setup from the project's own files: a virtual environment in .venv with peppp and its
# test tools installed at the versions in requirements.lock (scripts/lock.sh rebuilds it), plus the
# offline Fashion-MNIST package when we may install system packages.
# Fast when nothing changed (a stamp of pyproject.toml and the lock decides whether pip runs again).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian package dataset-fashion-mnist" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "setup: could not install dataset-fashion-mnist; fashion-mnist tasks will be unavailable" >&2
  else
    echo "setup: dataset-fashion-mnist not installed (sudo apt-get install dataset-fashion-mnist to enable it)" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.peppp-installed
lock=requirements.lock
want=$(cat pyproject.toml "$lock" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing peppp and its dependencies into .venv" >&2
  # Every step takes the lock as constraints (-c): each package, pip included, at its locked version.
  # scripts/lock.sh runs these steps without the lock; keep the two in step.
  .venv/bin/python -m pip install -q --upgrade pip -c "$lock" >/dev/null
  # torch is pinned to the CPU build in pyproject.toml; install it first on its own.
  .venv/bin/python -m pip install -q "torch==2.13.0" -c "$lock"
  .venv/bin/python -m pip install -q -e ".[test]" -c "$lock"
  # animal-mnist's metadata asks for tensorflow; peppp reads only its data files.
  .venv/bin/python -m pip install -q --no-deps "animal-mnist==0.4" -c "$lock"
  echo "$want" > "$stamp"
fi
