#!/usr/bin/env bash
# Rebuild requirements.lock, the exact version of every package scripts/setup.sh (and so CI) installs.
# It installs peppp with its test tools into a throwaway virtual environment under /tmp, with the same
# steps as setup.sh but without the lock, so pip resolves pyproject.toml afresh, then writes what pip
# installed (pip itself included; peppp, installed editable, left out). Run it after changing a
# dependency in pyproject.toml, or to move to newer releases; then run setup.sh and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
lock=requirements.lock

tmp=$(mktemp -d /tmp/peppp-lock.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip)
echo "lock: resolving pyproject.toml in a fresh environment (a few minutes)" >&2
# The same steps as setup.sh, which adds `-c requirements.lock` to each; keep the two in step.
"${pip[@]}" install -q --upgrade pip
"${pip[@]}" install -q "torch==2.13.0"
"${pip[@]}" install -q -e ".[test]"
"${pip[@]}" install -q --no-deps "animal-mnist==0.4"

"${pip[@]}" freeze --all --exclude-editable | grep -v -i '^peppp==' | LC_ALL=C sort -f -t= -k1,1 > "$tmp/frozen"
# A constraints file takes name==version only: a package installed from a URL or a path would not be
# reproducible from the registry, so stop instead of writing it down.
if bad=$(grep -v -E '^[A-Za-z0-9][A-Za-z0-9._-]*==[^ ]+$' "$tmp/frozen"); then
  echo "lock: not a name==version line: $bad" >&2
  exit 1
fi
{
  echo "# Every package scripts/setup.sh installs, at the version it installs (a pip constraints file)."
  echo "# Made by scripts/lock.sh from pyproject.toml; edit that, then run scripts/lock.sh, not this file."
  cat "$tmp/frozen"
} > "$lock"
echo "lock: wrote $(wc -l < "$tmp/frozen") packages to $lock" >&2
