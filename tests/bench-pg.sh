#!/bin/sh
# tests/bench-pg.sh BENCH ARGS...: runs BENCH --store postgresql:$SAGA_TEST_PG
# ARGS on the throwaway server of tests/pg-run.sh (run it through that
# script), with the server's fsync and full-page writes turned back on
# first: pg-run.sh turns them off for functional tests, a benchmark
# measures durable commits.
#
#   tests/pg-run.sh tests/bench-pg.sh build/tests/bench -n 2000 --raw --repeat 3
#
# SPDX-License-Identifier: MIT
set -eu

bench=${1:?usage: bench-pg.sh BENCH [ARGS...]}
shift
: "${SAGA_TEST_PG:?run through tests/pg-run.sh}"
psql="$SAGA_TEST_PGBIN/psql"
"$psql" -X -q -d "$SAGA_TEST_PG" -c "ALTER SYSTEM SET fsync = on" \
	-c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
# The reload reaches new sessions once the server has read the file again.
tries=0
until [ "$("$psql" -X -At -d "$SAGA_TEST_PG" -c "SHOW fsync")" = on ]; do
	tries=$((tries + 1))
	if [ "$tries" -gt 50 ]; then
		echo "bench-pg: the server's fsync did not turn on" >&2
		exit 1
	fi
	sleep 0.1
done
echo "server: $("$psql" -X -At -d "$SAGA_TEST_PG" -c "SELECT 'PostgreSQL ' ||
	current_setting('server_version') || ', fsync ' || current_setting('fsync') ||
	', full_page_writes ' || current_setting('full_page_writes') || ', wal_sync_method ' ||
	current_setting('wal_sync_method') || ', Unix socket'")"
exec "$bench" --store "postgresql:$SAGA_TEST_PG" "$@"
