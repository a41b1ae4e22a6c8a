#!/usr/bin/env bash
# The whole test suite, installing what it needs: the README's second command and what CI runs.
# Runs in the active virtualenv, else in .venv beside this repo (made on first use), so a newcomer
# and CI test exactly what a fresh install gives: runtime dependencies as pyproject allows, the
# test tools at the versions pinned in constraints/test.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

# PostgreSQL: start the local cluster if it is installed but not running (tests skip PG otherwise).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
  fi
fi

python -m pip install --quiet --disable-pip-version-check -e ".[test]" -c constraints/test.txt

ruff check src tests bench
ruff format --check src tests bench
mypy
python -m pytest -n 2 -q -p no:cacheprovider "$@"
