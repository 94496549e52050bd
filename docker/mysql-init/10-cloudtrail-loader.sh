#!/bin/bash
# First start of the mysql service (docker-compose.yaml): the loader's account, with the least
# privileges the DAG and the command need on the cloudtrail database (see docs/deploy.md,
# "Least-privilege grants"). The official image runs this once, after creating MYSQL_DATABASE,
# while its temporary server listens on the socket only.
#
# Sourced by the image's entrypoint (which provides docker_process_sql and runs with set -eo pipefail,
# so a failure here stops the initialisation); also works when executed. No `set` here: options set
# in a sourced file would stay on for the rest of the entrypoint.

: "${MYSQL_DATABASE:?MYSQL_DATABASE must be set}"
: "${CLOUDTRAIL_LOADER_USER:?CLOUDTRAIL_LOADER_USER must be set}"
: "${CLOUDTRAIL_LOADER_PASSWORD:?CLOUDTRAIL_LOADER_PASSWORD must be set}"

case "${CLOUDTRAIL_LOADER_USER}${CLOUDTRAIL_LOADER_PASSWORD}" in
    *"'"* | *'\'* ) echo "CLOUDTRAIL_LOADER_USER/PASSWORD must not contain quotes or backslashes" >&2; exit 1 ;;
esac

run_sql() {
    if declare -F docker_process_sql >/dev/null; then
        docker_process_sql --database=mysql
    else
        mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" mysql
    fi
}

run_sql <<SQL
CREATE USER IF NOT EXISTS '${CLOUDTRAIL_LOADER_USER}'@'%' IDENTIFIED BY '${CLOUDTRAIL_LOADER_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, CREATE TEMPORARY TABLES
    ON \`${MYSQL_DATABASE}\`.* TO '${CLOUDTRAIL_LOADER_USER}'@'%';
SQL
echo "cloudtrail loader user '${CLOUDTRAIL_LOADER_USER}' granted on ${MYSQL_DATABASE}"
