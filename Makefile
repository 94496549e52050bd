# Newcomer commands: make install, make demo, make test (make test-quick and make lint for the inner loop).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.txt
DEMO_MYSQL_URL ?= mysql://root@127.0.0.1:3306/cloudtrail_demo
DEMO_DIR := .demo
DEMO_DAY ?= 2017-04-10

.PHONY: install system-deps demo lint test test-quick test-airflow2 test-airflow30 test-lanes bench clean

install: $(BIN)/cloudtrail-mysql

# mysqlclient (needed by the MySQL provider) builds from source and needs the client headers.
system-deps:
	@if ! pkg-config --exists mariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then \
		echo "Installing MySQL client headers (libmariadb-dev)..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libmariadb-dev pkg-config; \
	fi

$(BIN)/cloudtrail-mysql: pyproject.toml $(CONSTRAINTS) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[test,lint]'
	@touch $@
	@echo "Installed: $(BIN)/cloudtrail-mysql and $(BIN)/airflow"

# A sample CloudTrail day through the daily DAG (local S3 server -> local MySQL), then the tutorial's questions.
demo: install
	rm -rf $(DEMO_DIR)
	DEMO_MYSQL_URL=$(DEMO_MYSQL_URL) DEMO_DAY=$(DEMO_DAY) $(BIN)/python scripts/demo.py

# ruff (rules in pyproject.toml) on everything, mypy on plugins/ and dags/.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install
	$(BIN)/pytest

# The inner loop: no Airflow (no db migrate, no DAG run), no browser. Extra pytest arguments: ARGS=...
test-quick: install
	$(BIN)/pytest -m "not slow and not ui and not airflow" $(ARGS)

# The same DAG and plugins on other Airflow versions (scripts/airflow-lane.sh): the lane's tests, ARGS=... for pytest.
# Airflow 2.11: .venv-airflow2/ from constraints/airflow-2.txt.
test-airflow2:
	scripts/airflow-lane.sh 2 $(ARGS)

# The oldest Airflow 3 allowed, 3.0: .venv-airflow30/ from constraints/airflow-3.0.txt.
test-airflow30:
	scripts/airflow-lane.sh 3.0 $(ARGS)

test-lanes: test-airflow2 test-airflow30

# Loader speed and memory against the tutorial's way and LOAD DATA, on generated data (see bench/bench.py).
BENCH_ARGS ?=
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-airflow2 .venv-airflow30 $(DEMO_DIR) .bench .pytest_cache .ruff_cache .mypy_cache
