#!/usr/bin/env bash
# tests/pg-run.sh CMD ARGS...: runs CMD against a throwaway PostgreSQL server
# of its own and returns CMD's exit status.
#
# The server is initdb'ed into a fresh temporary directory and listens only on
# a Unix socket in that directory (no TCP). As root it runs as the postgres
# user (initdb refuses root). CMD sees:
#   SAGA_TEST_PG       libpq conninfo of the maintenance database
#                      ("host=DIR user=postgres dbname=postgres")
#   SAGA_TEST_PGHOST   the socket directory
#   SAGA_TEST_PGBIN    the server's binaries (pg_ctl, psql, ...)
#   SAGA_TEST_PGDATA   the data directory, so a test can restart the server:
#   SAGA_TEST_PGUSER   the user to run pg_ctl as ("" when not root), e.g.
#                      runuser -u "$SAGA_TEST_PGUSER" -- "$SAGA_TEST_PGBIN/pg_ctl"
#                        -D "$SAGA_TEST_PGDATA" -w restart -m immediate
#   SAGA_TEST_PGPW_ROLE  a role name that must log in with a password
#                      (scram-sha-256); the test creates the role itself
# With SAGA_TEST_PG_STATEMENTS=1 the server loads pg_stat_statements, planning
# counted (a test creates the extension in its database to read it).
# The server is stopped and its directory removed on every exit path.
#
# Exit 77 (skipped) when the PostgreSQL server binaries are missing, or when
# SAGA_TEST_HAVE_PG=0 (libsaga was built without PostgreSQL); with
# SAGA_TEST_PG_REQUIRED=1 (CI) those are failures instead. A server that
# does not start is a failure (exit 1), never a skip.
#
# Settings favour speed where they do not change what a test can observe:
# fsync and full-page writes are off (a crash of the machine is not
# simulated; a crash of the server, pg_ctl restart -m immediate, still loses
# nothing that was committed). synchronous_commit is left alone: the store
# chooses it.
set -u

if [ "$#" -lt 1 ]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

skip() {
	if [ "${SAGA_TEST_PG_REQUIRED:-0}" = 1 ]; then
		echo "pg-run: $1, and SAGA_TEST_PG_REQUIRED=1" >&2
		exit 1
	fi
	echo "pg-run: $1; skipped" >&2
	exit 77
}

if [ "${SAGA_TEST_HAVE_PG:-1}" = 0 ]; then
	skip "libsaga was built without PostgreSQL"
fi

bindir=""
if command -v pg_config >/dev/null 2>&1; then
	bindir=$(pg_config --bindir 2>/dev/null || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
	bindir=""
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			bindir=$d
			break
		fi
	done
fi
if [ -z "$bindir" ]; then
	skip "no PostgreSQL server binaries (initdb, pg_ctl)"
fi

pguser=""
as_server() { "$@"; }
if [ "$(id -u)" = 0 ]; then
	pguser=postgres
	if ! id "$pguser" >/dev/null 2>&1; then
		echo "pg-run: running as root and there is no postgres user" >&2
		exit 1
	fi
	as_server() { runuser -u "$pguser" -- "$@"; }
fi

# A short base directory: a Unix socket path holds at most 107 bytes.
base=${TMPDIR:-/tmp}
if [ "${#base}" -gt 60 ]; then
	base=/tmp
fi
dir=$(mktemp -d "$base/saga-pg.XXXXXX") || exit 1
data=$dir/data
started=0

cleanup() {
	if [ "$started" = 1 ]; then
		as_server "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

fail() {
	echo "pg-run: $1" >&2
	if [ -f "$dir/log" ]; then
		echo "--- server log" >&2
		tail -n 40 "$dir/log" >&2
	fi
	exit 1
}

if [ -n "$pguser" ]; then
	chown "$pguser" "$dir" || fail "chown $dir"
fi
chmod 0700 "$dir"

pw_role=saga_password_role
as_server "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
	--no-sync >"$dir/initdb.log" 2>&1 || {
	cat "$dir/initdb.log" >&2
	fail "initdb failed"
}

# The password role's line comes first: pg_hba.conf is read top down.
{
	echo "local all $pw_role scram-sha-256"
	echo "local all all trust"
} | as_server tee "$data/pg_hba.conf" >/dev/null || fail "pg_hba.conf"

cat <<EOF | as_server tee -a "$data/postgresql.conf" >/dev/null || fail "postgresql.conf"
# tests/pg-run.sh
listen_addresses = ''
unix_socket_directories = '$dir'
port = 5432
max_connections = 200
fsync = off
full_page_writes = off
password_encryption = scram-sha-256
log_min_messages = warning
EOF
if [ "${SAGA_TEST_PG_STATEMENTS:-0}" = 1 ]; then
	printf '%s\n' "shared_preload_libraries = 'pg_stat_statements'" \
		"pg_stat_statements.track_planning = on" |
		as_server tee -a "$data/postgresql.conf" >/dev/null || fail "postgresql.conf"
fi

started=1
as_server "$bindir/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 start >/dev/null 2>&1 ||
	fail "pg_ctl start failed"

export SAGA_TEST_PG="host=$dir user=postgres dbname=postgres"
export SAGA_TEST_PGHOST=$dir
export SAGA_TEST_PGBIN=$bindir
export SAGA_TEST_PGDATA=$data
export SAGA_TEST_PGUSER=$pguser
export SAGA_TEST_PGPW_ROLE=$pw_role

# In the background and waited for, so that a TERM from the test runner
# reaches the trap (and the cleanup) at once; the command gets the TERM too
# (same process group).
"$@" &
child=$!
wait "$child"
status=$?
exit "$status"
