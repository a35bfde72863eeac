#!/usr/bin/env bash
# Idempotent: make sure Debian's PostgreSQL server is installed, then print its bin folder
# (e.g. /usr/lib/postgresql/15/bin) on stdout. Installs with apt-get only when it is missing.
# devtools/services.py runs the server itself on a temporary data folder; no system cluster is needed.
set -euo pipefail

bin_dir() {
  # The newest /usr/lib/postgresql/<version>/bin that has a server program.
  local dir best="" best_version=-1 version
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] || continue
    version=$(basename "$(dirname "$dir")")
    [[ "$version" =~ ^[0-9]+$ ]] || continue
    if [ "$version" -gt "$best_version" ]; then best_version=$version; best=$dir; fi
  done
  [ -n "$best" ] && echo "$best"
}

if dir=$(bin_dir); then
  echo "$dir"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-postgres: PostgreSQL is not installed; run as root (or: sudo apt-get install postgresql)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-postgres: PostgreSQL is not installed and there is no apt-get; install PostgreSQL >= 13 yourself" >&2
  exit 1
fi

echo "install-postgres: installing Debian package postgresql" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends postgresql >&2

if ! dir=$(bin_dir); then
  echo "install-postgres: apt-get installed postgresql but no server program was found under /usr/lib/postgresql" >&2
  exit 1
fi
echo "$dir"
