#!/usr/bin/env bash
# Airflow 2 lane: the same DAG and plugins on Airflow 2.11 (what MWAA and many teams run).
#
# 1. Creates or updates .venv-airflow2/ from constraints/airflow-2.txt (pinned, no download of
#    Airflow's constraints file). Skipped when the constraints and pyproject.toml are unchanged
#    since the last install; `rm -rf .venv-airflow2` forces a clean one.
# 2. Runs, with that venv's pytest, the tests marked `airflow2` in tests/test_dag.py, tests/test_findings.py,
#    tests/test_compat.py and tests/test_bounded.py: the DagBag
#    test and an end-to-end `airflow dags test cloudtrail_daily <day>` run (plus its rerun and the
#    next day). Extra arguments go to pytest.
#
# Needs Python 3.11+, the MySQL client headers (mysqlclient builds from source) and MySQL/MariaDB on
# 127.0.0.1:3306 (root, empty password), as `make test` does.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-airflow2
CONSTRAINTS=constraints/airflow-2.txt
STAMP="$VENV/.lane-installed"

# The MySQL client headers, as `make system-deps` installs them.
if ! pkg-config --exists mariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  echo "Installing MySQL client headers (libmariadb-dev)..."
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libmariadb-dev pkg-config
fi

want="$(cat "$CONSTRAINTS" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/pytest" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$VENV is up to date with $CONSTRAINTS"
else
  started=$SECONDS
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  rm -f "$STAMP"
  "$VENV/bin/pip" install -q -c "$CONSTRAINTS" -e '.[test]'
  # A dependency added to pyproject.toml but not pinned here installs unpinned: say so.
  unpinned="$("$VENV/bin/pip" freeze --exclude-editable 2>/dev/null | grep -vxF -f <(grep -v '^#' "$CONSTRAINTS") || true)"
  if [ -n "$unpinned" ]; then
    echo "WARNING: installed but not pinned in $CONSTRAINTS (add them):" $unpinned >&2
  fi
  echo "$want" > "$STAMP"
  echo "Installed $VENV from $CONSTRAINTS in $((SECONDS - started)) s"
fi

version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
case "$version" in
  2.*) echo "Airflow $version in $VENV" ;;
  *) echo "ERROR: $VENV has Airflow $version, expected 2.x (rm -rf $VENV and run again)" >&2; exit 1 ;;
esac

exec "$VENV/bin/pytest" tests/test_dag.py tests/test_findings.py tests/test_compat.py tests/test_bounded.py -m airflow2 -q -p no:cacheprovider "$@"
