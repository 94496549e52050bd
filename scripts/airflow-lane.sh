#!/usr/bin/env bash
# A test lane: the same DAG and plugins on another Airflow than .venv's.
#
#   scripts/airflow-lane.sh 2      Airflow 2.11 (what MWAA 2 and many teams run)
#   scripts/airflow-lane.sh 3.0    the oldest Airflow 3 that pyproject.toml allows
#
# 1. Creates or updates .venv-airflow<LANE without dots>/ (.venv-airflow2, .venv-airflow30) from
#    constraints/airflow-<LANE>.txt (pinned, no download of Airflow's constraints file). Skipped when
#    the constraints and pyproject.toml are unchanged since the last install; `rm -rf` the venv
#    forces a clean one.
# 2. Runs, with that venv's pytest, the tests marked `lane` in tests/test_dag.py, tests/test_findings.py,
#    tests/test_compat.py and tests/test_bounded.py: the DagBag, the timeouts, compat.py and an
#    end-to-end `airflow dags test cloudtrail_daily <day>` run (plus its rerun and the next day).
#    Extra arguments go to pytest.
#
# Needs Python 3.11+, the MySQL client headers (mysqlclient builds from source) and MySQL/MariaDB on
# 127.0.0.1:3306 (root, empty password), as `make test` does.
set -euo pipefail
cd "$(dirname "$0")/.."

LANE="${1:-}"
CONSTRAINTS="constraints/airflow-$LANE.txt"
if [ -z "$LANE" ] || [ ! -f "$CONSTRAINTS" ]; then
  echo "usage: $0 LANE [pytest arguments], LANE one of:" $(ls constraints | sed -n 's/^airflow-\(.*\)\.txt$/\1/p' | grep -vx 3) >&2
  exit 2
fi
shift
PYTHON="${PYTHON:-python3}"
VENV=".venv-airflow${LANE//./}"
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
  "$LANE".*) echo "Airflow $version in $VENV" ;;
  *) echo "ERROR: $VENV has Airflow $version, expected $LANE.x (rm -rf $VENV and run again)" >&2; exit 1 ;;
esac

exec "$VENV/bin/pytest" tests/test_dag.py tests/test_findings.py tests/test_compat.py tests/test_bounded.py -m lane -q -p no:cacheprovider "$@"
