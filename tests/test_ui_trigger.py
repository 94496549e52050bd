"""The daily DAG triggered the way a person does it: Airflow's web UI, the trigger form, a run.

A real Airflow 3 (api-server, scheduler with the LocalExecutor, dag-processor; SQLite metadata DB
in its own AIRFLOW_HOME; simple auth manager with every user an admin) serves this repository's
``dags/`` and ``plugins/``. Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright)
opens the DAG, opens *Trigger*, fills ``day`` and ``bucket`` in the params form, keeps
"Unpause on trigger" ticked, and presses *Trigger*. The run must succeed and load exactly the
records of that day's log files (counted here with gzip + json) into a fresh MySQL database.

Screenshots (the filled form, the finished run, or the page at the moment of a failure) are left in
the test's ``tmp_path``; the components' logs too (``airflow_home/*.log``).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import airflow_connections

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAG_ID = "cloudtrail_daily"
DAY = date(2017, 4, 10)

START_TIMEOUT = 120  # api-server healthy, scheduler and dag-processor heartbeating, DAG parsed
RUN_TIMEOUT = 180  # from pressing Trigger to the run's final state
STOP_TIMEOUT = 20  # for all components to exit on SIGTERM, before SIGKILL
UI_TIMEOUT_MS = 30_000  # any single browser action or wait


def _airflow_major() -> int:
    try:
        return int(importlib.metadata.version("apache-airflow").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(
        _airflow_major() < 3, reason="the UI test drives Airflow 3's api-server and React UI (Airflow 3 not installed)"
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no browser: {CHROMIUM} is missing; to run this UI test, "
        "apt-get install --no-install-recommends chromium fonts-liberation",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the 'playwright' Python package is not installed (pip install playwright; no browser download needed)",
    ),
]


# -- helpers -------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0,
              diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, reported then
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{diagnostics()}", pytrace=False)
        time.sleep(interval)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"<{path}: {exc}>"


class AirflowInstance:
    """api-server + scheduler + dag-processor, each in its own process group, logs under ``home``."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.env = env
        self.base_url = f"http://127.0.0.1:{port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # process control
    def migrate(self) -> None:
        result = subprocess.run([str(AIRFLOW), "db", "migrate"], env=self.env, capture_output=True, text=True,
                                timeout=180, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed below, the child keeps its copy
        try:
            self.processes[name] = subprocess.Popen(
                [str(AIRFLOW), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()

    def stop(self) -> None:
        """SIGTERM each component's whole process group (workers, gunicorn/uvicorn children), then SIGKILL."""
        for proc in self.processes.values():
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes.values():
            # Children may outlive the leader: always sweep the group, then reap the leader.
            self._signal(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
        except (ProcessLookupError, PermissionError):
            pass

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                pytest.fail(f"airflow {name} exited with {proc.returncode}\n{self.diagnostics()}", pytrace=False)

    # REST API (the simple auth manager with all_admins needs no token)
    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/{path.lstrip('/')}", timeout=10) as response:
            return json.loads(response.read())

    def healthy(self) -> bool:
        self.check_alive()
        health = self.api("monitor/health")
        return all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "dag_processor"))

    def dag_parsed(self) -> bool:
        self.check_alive()
        errors = self.api("importErrors").get("import_errors", [])
        if errors:
            pytest.fail(f"DAG import errors: {json.dumps(errors, indent=1)[:4000]}", pytrace=False)
        try:
            return bool(self.api(f"dags/{DAG_ID}").get("dag_id"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def diagnostics(self, task_ids: set[str] | None = None) -> str:
        """Tails of the components' logs and of task logs (those of ``task_ids``, else the latest four)."""
        parts = [f"--- {name}.log (tail) ---\n{_tail(self.home / f'{name}.log', 3000)}" for name in self.processes]
        task_logs = sorted((self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        if task_ids:
            task_logs = [path for path in task_logs if any(f"/task_id={t}/" in str(path) for t in task_ids)]
        for path in task_logs[-4:]:
            parts.append(f"--- {path.relative_to(self.home)} (tail) ---\n{_tail(path, 2500)}")
        return "\n".join(parts)


def _fail_run(airflow: AirflowInstance, run_id: str, state: str, tis: list[dict[str, Any]],
              bad: list[dict[str, Any]]) -> None:
    summary = sorted((ti["task_id"], ti.get("map_index"), ti["state"]) for ti in tis)
    pytest.fail(f"run {run_id} is {state}; tasks not succeeding: "
                f"{[(ti['task_id'], ti.get('map_index'), ti['state']) for ti in bad]}\nall tasks: {summary}\n"
                f"{airflow.diagnostics({ti['task_id'] for ti in bad})}", pytrace=False)


def _upload_days(client: Any, bucket: str) -> int:
    """Upload the day (two accounts x two regions, an organization trail, digests) and the next day.

    Returns the number of records in that day's log files, read back with gzip + json only.
    """
    from cloudtrail_mysql.sample import day_files

    expected = 0
    for day in (DAY, DAY + timedelta(days=1)):
        objects = [
            *day_files(day, records=240, accounts=("111122223333", "444455556666"),
                       regions=("us-east-1", "eu-west-1"), files_per_region=2),
            *day_files(day, records=40, accounts=("777788889999",), regions=("ap-south-1",),
                       organization_id="o-a1b2c3d4e5", files_per_region=1),
        ]
        for item in objects:
            client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
            if day == DAY and "/CloudTrail/" in f"/{item.key}":
                expected += len(json.loads(gzip.decompress(item.body))["Records"])
    return expected


def _airflow_env(home: Path, port: int, s3_endpoint: str, mysql_url: str) -> dict[str, str]:
    """os.environ without any Airflow setting or CLOUDTRAIL_BUCKET, plus this instance's settings."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AIRFLOW_") and name != "CLOUDTRAIL_BUCKET"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # so the test goes through unpausing
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # Airflow 3.3 runs the LocalExecutor on SQLite: tasks reach the DB through the execution API.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        # Only the run triggered from the form: no scheduled run appears when the DAG is unpaused.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        **airflow_connections(s3_endpoint, mysql_url),
    })
    return env


# -- the test ------------------------------------------------------------------------------------
def test_trigger_form_loads_the_day_into_mysql(
    tmp_path: Path, s3_bucket: tuple[Any, str], s3_server: str, mysql_db: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    client, bucket = s3_bucket
    expected_rows = _upload_days(client, bucket)
    assert expected_rows > 0

    home = tmp_path / "airflow_home"
    home.mkdir()
    port = _free_port()
    airflow = AirflowInstance(home, _airflow_env(home, port, s3_server, mysql_db.url), port)
    page = None
    started = time.monotonic()

    def phase(name: str) -> None:  # shown with -s, or with the output of a failed test
        print(f"[ui-test] {name}: {time.monotonic() - started:.1f}s")

    with ExitStack() as stack:
        stack.callback(airflow.stop)  # registered first, so it runs last: after the browser is closed
        try:
            airflow.migrate()
            airflow.start("api-server", "api-server")
            airflow.start("scheduler", "scheduler", "--skip-serve-logs")
            airflow.start("dag-processor", "dag-processor")
            _wait_for("the api-server, scheduler and dag-processor to be healthy", airflow.healthy,
                      START_TIMEOUT, diagnostics=airflow.diagnostics)
            _wait_for(f"{DAG_ID} to be parsed", airflow.dag_parsed, START_TIMEOUT, diagnostics=airflow.diagnostics)
            phase("airflow up, DAG parsed")

            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                                 timeout=UI_TIMEOUT_MS)
            stack.callback(browser.close)
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)  # expect() has its own default of 5 s

            # The DAG's page, then the trigger form.
            page.goto(f"{airflow.base_url}/dags/{DAG_ID}", wait_until="domcontentloaded")
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text(f"Trigger Dag - {DAG_ID}")
            dialog.get_by_text("Single Run", exact=True).click()

            # A paused DAG: the form offers to unpause it on trigger (ticked by default); keep it ticked.
            unpause = dialog.get_by_role("checkbox", name=re.compile(rf"Unpause {DAG_ID}"))
            if airflow.api(f"dags/{DAG_ID}")["is_paused"]:
                expect(unpause).to_be_visible()
                if not unpause.is_checked():
                    dialog.get_by_text(re.compile(rf"Unpause {DAG_ID}")).click()
                expect(unpause).to_be_checked()

            # The params form: the day and the bucket, every other param left at its default.
            day_field = dialog.locator("#element_day")
            bucket_field = dialog.locator("#element_bucket")
            expect(day_field).to_be_visible()
            day_field.fill(DAY.isoformat())
            bucket_field.fill(bucket)
            expect(day_field).to_have_value(DAY.isoformat())
            expect(bucket_field).to_have_value(bucket)

            trigger = dialog.get_by_role("button", name="Trigger", exact=True)
            page.screenshot(path=str(tmp_path / "trigger_form.png"), full_page=True)
            if not trigger.is_enabled():
                page.wait_for_timeout(2000)  # the form validates on change; give it a moment
            if not trigger.is_enabled():
                empty = [
                    field.get_attribute("id").removeprefix("element_")
                    for field in dialog.locator("input[id^=element_]").all()
                    if field.get_attribute("type") != "checkbox" and field.input_value() == ""
                ]
                pytest.fail(
                    "the trigger form keeps its Trigger button disabled after filling day and bucket "
                    f"('Run Parameters' flagged); text params left empty: {empty}. Airflow's form treats a param "
                    "whose type does not include 'null' as required and refuses an empty value, so a param with "
                    "default \"\" and type 'string' cannot be submitted from the UI: give it type "
                    "[\"null\", \"string\"] (and read None as \"\" in the task).",
                    pytrace=False,
                )
            trigger.click()
            expect(dialog).to_be_hidden()
            phase("form submitted")

            # The run the form created: one manual run, with the values typed in the form.
            runs = _wait_for("the triggered run to appear",
                             lambda: airflow.api(f"dags/{DAG_ID}/dagRuns")["dag_runs"], 30,
                             diagnostics=airflow.diagnostics)
            assert len(runs) == 1, runs
            run = runs[0]
            assert run["run_type"] == "manual", run
            assert run["conf"]["day"] == DAY.isoformat() and run["conf"]["bucket"] == bucket, run["conf"]
            run_id = run["dag_run_id"]
            _wait_for(f"{DAG_ID} to be unpaused", lambda: not airflow.api(f"dags/{DAG_ID}")["is_paused"], 30)

            run_path = f"dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

            def finished() -> str | None:
                """The run's final state; fails at once when a task fails or waits for a retry."""
                airflow.check_alive()
                state = airflow.api(run_path)["state"]
                if state in ("success", "failed"):
                    return state
                tis = airflow.api(f"{run_path}/taskInstances")["task_instances"]
                bad = [ti for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
                if bad:  # fixed data on a local server: a retry is a bug, and waiting for it only costs minutes
                    _fail_run(airflow, run_id, state, tis, bad)
                return None

            state = _wait_for(f"run {run_id} to finish", finished, RUN_TIMEOUT, interval=2,
                              diagnostics=airflow.diagnostics)
            phase(f"run {state}")
            if state != "success":
                tis = airflow.api(f"{run_path}/taskInstances")["task_instances"]
                _fail_run(airflow, run_id, state, tis, [ti for ti in tis if ti["state"] != "success"])

            # The run as the UI shows it.
            page.goto(f"{airflow.base_url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id, safe='')}",
                      wait_until="domcontentloaded")
            expect(page.get_by_text(run_id).first).to_be_visible()
            expect(page.get_by_text("Success").first).to_be_visible()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "run_success.png"), full_page=True)
        except BaseException:
            if page is not None:
                try:
                    page.screenshot(path=str(tmp_path / "failure.png"), full_page=True, timeout=10_000)
                    print(f"screenshot of the page at the failure: {tmp_path / 'failure.png'}")
                except Exception as exc:  # noqa: BLE001 - the original failure matters more
                    print(f"no failure screenshot: {exc!r}")
            raise

    phase("browser closed, airflow stopped")

    # Exactly the day's log records, once each (nothing from the next day, no digest file).
    assert mysql_db.count("logs") == expected_rows
    assert mysql_db.query("SELECT COUNT(*) FROM logs_files WHERE status <> 'loaded'")[0][0] == 0
    assert {row[0] for row in mysql_db.query("SELECT DISTINCT LEFT(eventTime, 10) FROM logs")} <= {
        (DAY - timedelta(days=1)).isoformat(), DAY.isoformat()}
