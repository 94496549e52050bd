"""Static checks of docker-compose.yaml (Docker cannot run here): the local stack is complete, pinned,
self-consistent and points at files that exist; plus the MinIO seeding script, run against moto.

The compose file is read with yaml.safe_load (merge keys resolved as Compose does) and its
``${VAR:-default}`` references are interpolated the way Compose does with an empty environment,
i.e. as ``docker compose up`` sees them on a machine without an .env file.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import FAKE_AWS_ENV, MYSQL_PORT

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

AIRFLOW_ROLES = ("api-server", "scheduler", "dag-processor", "triggerer")
ONE_SHOT_CONDITION = "service_completed_successfully"
VALID_CONDITIONS = {"service_started", "service_healthy", ONE_SHOT_CONDITION}


# -- helpers ---------------------------------------------------------------------------------------
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation: $$ -> $, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, $VAR."""
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expression = match.group("braced") if match.group("braced") is not None else match.group("bare")
        for operator in (":-", "-", ":?", "?"):
            name, found, default = expression.partition(operator)
            if found and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                current = env.get(name)
                if operator == ":-":
                    return current if current else default
                if operator == "-":
                    return default if current is None else current
                if current is None or (operator == ":?" and not current):
                    raise KeyError(f"required variable {name} is not set: {default}")
                return current
        return env.get(expression, "")

    return _VARIABLE.sub(substitute, value)


def variables(value: str) -> list[str]:
    """The ${...} / $VAR expressions of a string (not the $$ escapes)."""
    return [m.group(0) for m in _VARIABLE.finditer(value) if m.group(0) != "$$"]


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def as_list(command: Any) -> list[str]:
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(str(v)) if v is not None else "" for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of the service's bind mounts (not named volumes)."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = interpolate(volume).split(":")
            if len(parts) >= 2 and parts[0].startswith((".", "/", "~")):
                mounts.append((parts[0], parts[1]))
        elif volume.get("type") == "bind":
            mounts.append((interpolate(volume["source"]), interpolate(volume["target"])))
    return mounts


def host_path(source: str) -> Path:
    return (REPO / source).resolve() if not source.startswith("/") else Path(source)


def container_to_host(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository path behind a container path, through the service's bind mounts (longest match)."""
    path = PurePosixPath(container_path)
    best: tuple[int, Path] | None = None
    for source, target in bind_mounts(service):
        target_path = PurePosixPath(target)
        if path == target_path or target_path in path.parents:
            depth = len(target_path.parts)
            if best is None or depth > best[0]:
                best = (depth, host_path(source) / path.relative_to(target_path))
    return best[1] if best else None


def image_tag(image: str) -> str | None:
    """The tag of an image reference (registry host:port aware); None if it has none."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def assert_pinned(image: str, where: str) -> None:
    tag = image_tag(image)
    assert tag, f"{where}: image {image!r} has no tag"
    assert "latest" not in tag.lower(), f"{where}: image {image!r} uses a latest tag"
    assert re.search(r"\d", tag), f"{where}: image {image!r} has no version in its tag"


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host ip, host port, container port, protocol) of the service's published ports."""
    found = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            found.append((
                str(port.get("host_ip", "0.0.0.0")), int(interpolate(str(port["published"]))),
                int(port["target"]), port.get("protocol", "tcp"),
            ))
            continue
        spec, _, protocol = interpolate(str(port)).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            ip, published, target = parts
        elif len(parts) == 2:
            ip, (published, target) = "0.0.0.0", parts
        else:
            continue  # container port only: Docker picks a free host port
        found.append((ip, int(published), int(target), protocol or "tcp"))
    return found


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def by_command(services: dict[str, dict[str, Any]], word: str) -> list[str]:
    return [name for name, service in services.items() if word in as_list(service.get("command"))]


def one(names: list[str], what: str) -> str:
    assert len(names) == 1, f"expected exactly one {what} service, found {names}"
    return names[0]


@pytest.fixture(scope="module")
def roles(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Service name of each part of the stack, found by what it runs, not by its name."""
    found = {role: one(by_command(services, role), role) for role in AIRFLOW_ROLES}
    found["postgres"] = one([n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")], "postgres")
    found["mysql"] = one([n for n, s in services.items() if str(s.get("image", "")).startswith("mysql:")], "mysql")
    found["minio"] = one([n for n, s in services.items() if "minio/minio:" in str(s.get("image", ""))], "minio")
    found["init"] = one(
        [n for n, s in services.items() if "airflow db migrate" in " ".join(strings(s.get("command")))], "init (db migrate)"
    )
    found["seed"] = one(
        [n for n, s in services.items() if any(p.endswith("seed_minio.py") for p in as_list(s.get("command")))], "seed"
    )
    return found


@pytest.fixture(scope="module")
def airflow_services(roles: dict[str, str]) -> list[str]:
    return [roles[role] for role in AIRFLOW_ROLES] + [roles["init"]]


# -- the stack is complete --------------------------------------------------------------------------
def test_required_services_exist(roles: dict[str, str]) -> None:
    assert len(set(roles.values())) == len(roles), f"one service plays two parts: {roles}"


def test_airflow_services_share_one_image_and_local_executor(services, roles, airflow_services) -> None:
    images = {services[name].get("image") for name in airflow_services}
    assert len(images) == 1, f"Airflow services use different images: {images}"
    assert services[roles["seed"]].get("image") in images, "the seed service must run the same (orjson) image"
    for name in airflow_services:
        env = environment(services[name])
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "LocalExecutor", name
        assert env.get("AIRFLOW__CORE__AUTH_MANAGER", "").endswith("SimpleAuthManager"), name
        assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"), name
        assert env.get("AIRFLOW__API_AUTH__JWT_SECRET"), f"{name}: tasks need a JWT secret shared by all components"


def test_metadata_database_is_the_postgres_service(services, roles, airflow_services) -> None:
    postgres = environment(services[roles["postgres"]])
    for name in airflow_services:
        url = urlsplit(environment(services[name])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert url.scheme.startswith("postgresql"), name
        assert url.hostname == roles["postgres"], f"{name} talks to {url.hostname}, not the postgres service"
        assert url.username == postgres["POSTGRES_USER"] and url.password == postgres["POSTGRES_PASSWORD"], name
        assert url.path.strip("/") == postgres["POSTGRES_DB"], name


def test_execution_api_points_at_the_api_server(services, roles, airflow_services) -> None:
    api = roles["api-server"]
    container_ports = {target for _, _, target, _ in published_ports(services[api])}
    for name in airflow_services:
        url = urlsplit(environment(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == api, name
        assert (url.port or 80) in container_ports, f"{name}: execution API port {url.port} is not the API server's"
        assert url.path.rstrip("/") == "/execution", name


def test_init_migrates_and_writes_the_login(services, roles) -> None:
    init = services[roles["init"]]
    script = " ".join(strings(init.get("command")))
    assert "airflow db migrate" in script
    assert environment(init)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in script
    assert init.get("restart", "no") == "no"


def test_inline_shell_scripts_parse(services) -> None:
    """`bash -c` scripts in the file (after Compose's interpolation) are valid bash."""
    checked = 0
    for name, service in services.items():
        entrypoint, command = as_list(service.get("entrypoint")), as_list(service.get("command"))
        if entrypoint and entrypoint[0].endswith("bash") and command[:1] == ["-c"]:
            result = subprocess.run(["bash", "-n", "-c", interpolate(command[1])], capture_output=True, text=True)
            assert result.returncode == 0 and not result.stderr, f"{name}: {result.stderr}"
            checked += 1
    assert checked, "expected the init service's bash script"


# -- connections and settings of the DAG -------------------------------------------------------------
def test_aws_connection_is_json_with_the_minio_endpoint(services, roles, airflow_services) -> None:
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    minio = environment(services[roles["minio"]])
    command = as_list(services[roles["minio"]].get("command"))
    api_port = int(command[command.index("--address") + 1].rsplit(":", 1)[1]) if "--address" in command else 9000
    for name in airflow_services:
        raw = environment(services[name])["AIRFLOW_CONN_AWS_DEFAULT"]
        document = json.loads(raw)
        assert document["conn_type"] == "aws", name
        endpoint = urlsplit(document["extra"]["endpoint_url"])
        assert endpoint.hostname == roles["minio"], f"{name}: endpoint_url {endpoint.geturl()} is not the minio service"
        assert endpoint.port == api_port, f"{name}: endpoint_url port {endpoint.port}, MinIO listens on {api_port}"
        assert document["login"] == minio["MINIO_ROOT_USER"] and document["password"] == minio["MINIO_ROOT_PASSWORD"]
        # ...and Airflow itself reads it that way.
        wrapper = AwsConnectionWrapper(Connection.from_json(raw, conn_id="aws_default"))
        assert wrapper.endpoint_url == document["extra"]["endpoint_url"]
        assert wrapper.region_name == "us-east-1"
        assert wrapper.botocore_config is not None and wrapper.botocore_config.s3 == {"addressing_style": "path"}


def test_mysql_connection_is_the_loader_on_the_mysql_service(services, roles, airflow_services) -> None:
    from airflow.models.connection import Connection

    mysql = environment(services[roles["mysql"]])
    for name in airflow_services:
        conn = Connection(conn_id="mysql_default", uri=environment(services[name])["AIRFLOW_CONN_MYSQL_DEFAULT"])
        assert conn.conn_type == "mysql", name
        assert conn.host == roles["mysql"] and conn.port == 3306, name
        assert conn.schema == mysql["MYSQL_DATABASE"] == "cloudtrail", name
        assert conn.login == mysql["CLOUDTRAIL_LOADER_USER"] and conn.login != "root", name
        assert conn.password == mysql["CLOUDTRAIL_LOADER_PASSWORD"], name
        assert conn.extra_dejson.get("charset") == "utf8mb4", name


def test_bucket_and_sql_dir_are_set_where_the_dag_runs(services, roles, airflow_services) -> None:
    seed_bucket = environment(services[roles["seed"]])["CLOUDTRAIL_BUCKET"]
    for name in airflow_services:
        env = environment(services[name])
        assert env.get("CLOUDTRAIL_BUCKET") == seed_bucket, f"{name} reads another bucket than the seed fills"
        sql_dir = env.get("CLOUDTRAIL_MYSQL_SQL_DIR")
        assert sql_dir, name
        assert container_to_host(services[name], sql_dir) == (REPO / "include" / "sql").resolve(), (
            f"{name}: CLOUDTRAIL_MYSQL_SQL_DIR={sql_dir} is not include/sql of this repository"
        )
        assert int(env["CLOUDTRAIL_MYSQL_PARALLEL_LOADS"]) >= 1


def test_repository_folders_are_mounted_into_opt_airflow(services, airflow_services) -> None:
    for name in airflow_services:
        mounts = {target: host_path(source) for source, target in bind_mounts(services[name])}
        for folder in ("dags", "plugins", "include"):
            assert mounts.get(f"/opt/airflow/{folder}") == (REPO / folder).resolve(), f"{name}: {folder}/ not mounted"


# -- pinned images, existing files -----------------------------------------------------------------
def test_every_image_is_pinned(services) -> None:
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name} has neither image nor build"
        if service.get("image"):
            assert_pinned(interpolate(service["image"]), f"service {name}")


def dockerfiles(services: dict[str, dict[str, Any]]) -> list[tuple[str, Path, Path]]:
    found = []
    for name, service in services.items():
        build = service.get("build")
        if not build:
            continue
        context = host_path(build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        found.append((name, context, dockerfile))
    return found


def test_dockerfiles_exist_pin_their_base_and_copy_existing_files(services) -> None:
    built = dockerfiles(services)
    assert built, "expected the Airflow image to be built from docker/Dockerfile"
    for name, context, dockerfile in built:
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        lines = [line.strip() for line in dockerfile.read_text().splitlines()]
        bases = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
        assert bases, f"{dockerfile} has no FROM"
        for base in bases:
            assert_pinned(base, str(dockerfile))
        for line in lines:
            if line.upper().startswith(("COPY ", "ADD ")):
                sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile}: {line!r} copies a missing {source}"


def test_airflow_image_matches_the_tested_versions(services) -> None:
    """The base image's Airflow and the extra pins are the versions the test suite runs with."""
    pins = dict(
        line.strip().split("==", 1)
        for line in (REPO / "constraints" / "airflow-3.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for _, context, dockerfile in dockerfiles(services):
        text = dockerfile.read_text()
        base = re.search(r"^FROM\s+apache/airflow:(\S+)", text, re.M)
        assert base, f"{dockerfile} is not based on the official apache/airflow image"
        assert base.group(1).split("-")[0] == pins["apache-airflow"], "base image Airflow differs from constraints"
        for requirement in re.findall(r"-r\s+\S*?([\w.-]+\.txt)", text):
            for line in (context / requirement).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    package, _, version = line.partition("==")
                    assert version, f"{requirement}: {line!r} is not pinned"
                    assert pins.get(package) == version, f"{requirement}: {package}=={version}, constraints say {pins.get(package)}"


def test_bind_mounts_and_referenced_files_exist(services) -> None:
    for name, service in services.items():
        for source, target in bind_mounts(service):
            assert host_path(source).exists(), f"{name}: bind mount source {source} (-> {target}) does not exist"
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            required = isinstance(env_file, str) or env_file.get("required", True)
            assert not required or host_path(path).is_file(), f"{name}: env_file {path} is missing"
        # Files the service runs from its mounts (scripts, the seed program) must be in the repository.
        for token in as_list(service.get("command")) + as_list(service.get("entrypoint")):
            if token.startswith("/"):
                mapped = container_to_host(service, token)
                assert mapped is None or mapped.exists(), f"{name}: {token} maps to missing {mapped}"


def test_mysql_allows_the_loaders_load_data_path(services, roles) -> None:
    """The operator's default load_method "auto" uses LOAD DATA LOCAL INFILE only where the server allows it."""
    command = [part.replace("_", "-").lower() for part in as_list(services[roles["mysql"]].get("command"))]
    assert command[:1] == ["mysqld"], "the mysql service must still run mysqld (its entrypoint initialises it)"
    assert any(part in ("--local-infile=on", "--local-infile=1", "--local-infile") for part in command), command


def test_mysql_init_scripts_exist_and_create_the_loader(services, roles) -> None:
    mysql = services[roles["mysql"]]
    init_dir = container_to_host(mysql, "/docker-entrypoint-initdb.d")
    assert init_dir is not None and init_dir.is_dir(), "mysql has no init scripts mounted"
    scripts = sorted(p for p in init_dir.iterdir() if p.suffix in (".sh", ".sql"))
    assert scripts, f"no .sh/.sql in {init_dir}"
    text = "\n".join(p.read_text() for p in scripts)
    assert "CLOUDTRAIL_LOADER_USER" in text and "CLOUDTRAIL_LOADER_PASSWORD" in text
    assert "MYSQL_USER" not in environment(mysql), "MYSQL_USER would get ALL PRIVILEGES on the database"
    for script in scripts:
        if script.suffix == ".sh":
            result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, f"{script}: {result.stderr}"


def grant_privileges(text: str) -> set[str]:
    match = re.search(r"\bGRANT\s+([A-Z][A-Z ,\n]*?)\s+ON\s", text)
    assert match, "no GRANT statement found"
    return {" ".join(p.split()).upper() for p in match.group(1).split(",")}


def test_loader_grants_match_the_documented_least_privilege(services, roles) -> None:
    init_dir = container_to_host(services[roles["mysql"]], "/docker-entrypoint-initdb.d")
    granted = grant_privileges("\n".join(p.read_text() for p in sorted(init_dir.glob("*.sh"))))
    documented = grant_privileges(DEPLOY_DOC.read_text().split("## Least-privilege grants", 1)[1])
    assert granted == documented
    assert {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "CREATE TEMPORARY TABLES"} <= granted
    assert not granted & {"ALL", "ALL PRIVILEGES", "SUPER", "GRANT OPTION", "FILE"}


# -- ports, dependencies, variables ----------------------------------------------------------------
def test_published_ports_do_not_collide(services, roles) -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, service in services.items():
        for _ip, published, _, protocol in published_ports(service):
            key = (published, protocol)
            assert key not in seen, f"host port {published}/{protocol} published by {seen.get(key)} and {name}"
            seen[key] = name
    mysql_ports = {published for _, published, _, _ in published_ports(services[roles["mysql"]])}
    assert MYSQL_PORT not in mysql_ports, "the stack's MySQL would take the port of the test suite's MySQL"
    assert any(target == 8080 for _, _, target, _ in published_ports(services[roles["api-server"]])), "no UI port"


def test_depends_on_only_existing_services_with_sound_conditions(services, roles) -> None:
    one_shot = {roles["init"], roles["seed"]}
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name, f"{name} depends on itself"
            assert condition in VALID_CONDITIONS, f"{name} -> {dependency}: unknown condition {condition}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), f"{name} waits for {dependency} to be healthy, it has no healthcheck"
            if dependency in one_shot:
                assert condition == ONE_SHOT_CONDITION, f"{name} -> one-shot {dependency} must wait for its completion"
    for role in AIRFLOW_ROLES:
        assert depends_on(services[roles[role]]).get(roles["init"]) == ONE_SHOT_CONDITION, f"{role} must wait for init"
    assert depends_on(services[roles["seed"]]).get(roles["minio"]) == "service_healthy"
    scheduler = depends_on(services[roles["scheduler"]])
    for needed in (roles["mysql"], roles["minio"], roles["api-server"]):
        assert needed in scheduler, f"the scheduler runs the tasks (LocalExecutor); it must wait for {needed}"


def test_depends_on_has_no_cycle(services) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"depends_on cycle: {' -> '.join(path + [name])}"
        state[name] = "visiting"
        for dependency in depends_on(services[name]):
            visit(dependency, path + [name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_every_variable_has_a_default(compose) -> None:
    """`docker compose up` works without an .env file: every ${VAR} has a :- default."""
    for text in strings(compose):
        for expression in variables(text):
            assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-[^}]*\}", expression), (
                f"{expression!r} in {text[:80]!r} has no default"
            )


def test_named_volumes_are_declared(compose, services) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, str):
                source = volume.split(":", 1)[0] if ":" in volume else ""
            else:
                source = volume.get("source", "") if volume.get("type") == "volume" else ""
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses undeclared named volume {source}"


def test_interpolate_behaves_like_compose() -> None:
    assert interpolate("${A:-x}") == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A}-$B", {"A": "1", "B": "2"}) == "1-2"
    assert interpolate("$${HOSTNAME}") == "${HOSTNAME}"
    with pytest.raises(KeyError):
        interpolate("${A:?needed}")
    assert image_tag("quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z") == "RELEASE.2025-04-22T22-12-26Z"
    assert image_tag("localhost:5000/airflow") is None
    assert published_ports({"ports": ["127.0.0.1:3307:3306", "9000:9000/udp", "8080"]}) == [
        ("127.0.0.1", 3307, 3306, "tcp"), ("0.0.0.0", 9000, 9000, "udp")
    ]


# -- the seeding program, against a real (moto) S3 server ----------------------------------------------
def test_seed_script_uploads_a_day_in_cloudtrail_layout_idempotently(services, roles, s3_server: str) -> None:
    import boto3

    seed = services[roles["seed"]]
    script = container_to_host(seed, as_list(seed["command"])[-1])
    plugins = container_to_host(seed, environment(seed)["PYTHONPATH"])
    assert script is not None and plugins is not None
    bucket = "ctm-seed-check"
    env = {
        **FAKE_AWS_ENV, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(plugins), "S3_ENDPOINT_URL": s3_server,
        "CLOUDTRAIL_BUCKET": bucket, "SEED_DAYS": "2017-04-10", "SEED_RECORDS": "300",
    }
    client = boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1",
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )

    def listing() -> dict[str, str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", ())}

    try:
        for attempt in range(2):
            result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            if attempt == 0:
                first = listing()
        second = listing()
        logs = [key for key in first if "/CloudTrail/" in key]
        assert logs and all(re.fullmatch(r"AWSLogs/\d{12}/CloudTrail/[a-z0-9-]+/2017/04/10/\S+\.json\.gz", k) for k in logs)
        assert second == first, "a second seeding must put byte-identical objects (same keys and ETags)"
    finally:
        keys = list(listing()) if bucket in [b["Name"] for b in client.list_buckets()["Buckets"]] else []
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        if keys or bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]:
            client.delete_bucket(Bucket=bucket)
