/* The PostgreSQL store's spine: the SQL of every statement prepared on the
 * connection (nothing is assembled from input), opening (the connection,
 * the session, the schema under an advisory lock), reconnecting, the
 * pipeline (statements queued, answers read at a Sync), the round's
 * transaction, and the store_pg_ops table. store_pg_int.h describes the
 * pipeline and lists the other files.
 * SPDX-License-Identifier: MIT */
#include "store_pg_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHEMA_VERSION 4

/* The server's clock in ms: every lease is compared on it, never on a
 * client's. */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

#define ROW_COLUMNS                                                                       \
	"id, uid, def_name, def_version, business_key, state, phase, step, attempt,"      \
	" inflight, pending, pivot_done, reason, fwd_started, comp_done_any, due_at,"     \
	" deadline_at, attempt_deadline, step_since, prev_delay, created_at, updated_at," \
	" error, context, owner, fence, next_seq, recoveries"

/* A fenced write of a batch: the count of rows it changed must be the count
 * of rows in its arrays ($1 the first), else the division fails and the
 * transaction with it.
 *
 * Its rows are matched to instances by "i.id = ANY(ARRAY[v.id])", not
 * "i.id = v.id", and the fence by IS NOT DISTINCT FROM (never NULL here):
 * the same tests, but none a hash join can use, so the plan is a lookup in
 * the primary key for each row whatever the table's size. A prepared
 * statement keeps its plan; one made while the table was small would
 * otherwise hash the batch against the whole table, read every round once
 * it has grown, until the next ANALYZE (tests/test-pg-store.c). */
#define FENCED_MANY(cte)                                         \
	"WITH w AS (" cte " RETURNING 1) SELECT 1 / (count(*) =" \
	" cardinality($1::bigint[]))::int FROM w"

static const char *const stmt_sql[P_COUNT] = {
	[P_BEGIN] = "BEGIN",
	[P_COMMIT] = "COMMIT",
	[P_ROLLBACK] = "ROLLBACK",
	/* The lease is renewed only while it runs: a lapsed one never comes
	 * back. Answers the ms it now has left; a lapsed one divides by zero,
	 * which aborts the transaction the renewal is in. */
	[P_RENEW] = "WITH w AS (UPDATE owners o SET lease_until = t.now + $2 FROM (SELECT " NOW_MS
	            " AS now) t WHERE o.epoch = $1 AND o.state = 0 AND o.lease_until > t.now"
	            " RETURNING o.lease_until - t.now AS ms)"
	            " SELECT max(ms) + 0 * (1 / count(*)::int) FROM w",
	[P_REGISTER] =
	        "INSERT INTO owners(host, pid, started_at, lease_until, state)"
	        " SELECT $1::text, $2::bigint, t.now, t.now + $3::bigint, 0 FROM (SELECT " NOW_MS
	        " AS now) t RETURNING epoch",
	/* Owner $1 ends (state $2: 1 dead, 2 retired): its unfinished
	 * instances go back to the pool, its definitions are forgotten. The
	 * instances are found through the index of owned ones (owner <> 0): a
	 * plan kept for any $1 could not use it otherwise, and would read the
	 * whole table, finished instances and all. */
	[P_END_OWNER] = "WITH o AS (UPDATE owners SET state = $2 WHERE epoch = $1 AND state = 0),"
	                " r AS (UPDATE instances SET owner = 0 WHERE state < 3 AND owner <> 0"
	                " AND owner = $1),"
	                " d AS (DELETE FROM owner_defs WHERE epoch = $1) SELECT 1",
	[P_SERVE] = "INSERT INTO owner_defs(epoch, def_name, def_version) VALUES ($1, $2, $3)"
	            " ON CONFLICT DO NOTHING",
	/* Owners whose lease lapsed on the server's clock are marked dead, their
	 * instances back to the pool; one that is in a transaction right now
	 * (its row locked) is left for the next reaping. Answers the count
	 * reaped and the count of other live owners. Run at every poll: the
	 * instances are found through the index of owned ones, never by reading
	 * the table (as P_END_OWNER). */
	[P_REAP] = "WITH t AS MATERIALIZED (SELECT " NOW_MS " AS now),"
	           " c AS (SELECT epoch FROM owners WHERE state = 0 AND epoch <> $1"
	           " AND lease_until <= (SELECT now FROM t) ORDER BY epoch FOR UPDATE SKIP LOCKED),"
	           " dead AS (UPDATE owners SET state = 1 WHERE epoch IN (SELECT epoch FROM c)"
	           " RETURNING epoch),"
	           " r AS (UPDATE instances SET owner = 0 WHERE state < 3 AND owner <> 0"
	           " AND owner IN (SELECT epoch FROM dead)),"
	           " d AS (DELETE FROM owner_defs WHERE epoch IN (SELECT epoch FROM dead))"
	           " SELECT (SELECT count(*) FROM dead), (SELECT count(*) FROM owners"
	           " WHERE state = 0 AND epoch <> $1 AND lease_until > (SELECT now FROM t))",
	/* A claim: unowned due instances of the definitions this owner serves,
	 * earliest first, skipping rows another claimer holds; each one's
	 * fence grows, and an interrupted attempt counts a recovery. */
	[P_CLAIM] = "WITH c AS (SELECT id FROM instances WHERE owner = 0 AND state < 3"
	            " AND (state <> 1 OR due_at > 0) AND due_at <= $2 AND (def_name, def_version)"
	            " IN (SELECT def_name, def_version FROM owner_defs WHERE epoch = $1)"
	            " ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED),"
	            " u AS (UPDATE instances i SET owner = $1, fence = i.fence + 1,"
	            " recoveries = i.recoveries + i.inflight FROM c WHERE i.id = c.id"
	            " RETURNING i.id, i.due_at) SELECT id FROM u ORDER BY due_at, id",
	[P_CLAIM_ONE] = "UPDATE instances SET owner = $1, fence = fence + 1,"
	                " recoveries = recoveries + inflight WHERE id = $2 AND owner = 0"
	                " AND (state < 3 OR state = 5) RETURNING 1",
	[P_NOTIFY] = "SELECT pg_notify($1, $2)",
	[P_DEF_GET] = "SELECT snapshot FROM definitions WHERE name = $1 AND version = $2",
	[P_DEF_PUT] = "INSERT INTO definitions(name, version, snapshot) VALUES ($1, $2, $3)"
	              " ON CONFLICT DO NOTHING RETURNING 1",
	/* A business key already taken gives no row (and leaves the
	 * transaction usable): it waits for a concurrent inserter's outcome. */
	[P_INSERT] = "INSERT INTO instances(uid, def_name, def_version, business_key, state,"
	             " phase, step, attempt, inflight, pending, pivot_done, reason, fwd_started,"
	             " comp_done_any, due_at, deadline_at, attempt_deadline, step_since,"
	             " prev_delay, created_at, updated_at, error, context, owner, fence,"
	             " next_seq, recoveries, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
	             " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,"
	             " $23, $24, $25, $26, $27, $28) ON CONFLICT (business_key)"
	             " WHERE business_key IS NOT NULL DO NOTHING RETURNING id",
	/* Many starts at once, one row each of the arrays (as P_INSERT); the
	 * answer names the rows made, by uid. */
	[P_INSERT_MANY] = "INSERT INTO instances(uid, def_name, def_version, business_key,"
	                  " state, phase, step, attempt, inflight, pending, pivot_done, reason,"
	                  " fwd_started, comp_done_any, due_at, deadline_at, attempt_deadline,"
	                  " step_since, prev_delay, created_at, updated_at, error, context, owner,"
	                  " fence, next_seq, recoveries, finished_at) SELECT unnest($1::text[]),"
	                  " unnest($2::text[]), unnest($3::int[]), unnest($4::text[]),"
	                  " unnest($5::int[]), unnest($6::int[]), unnest($7::int[]),"
	                  " unnest($8::bigint[]), unnest($9::int[]), unnest($10::int[]),"
	                  " unnest($11::int[]), unnest($12::int[]), unnest($13::int[]),"
	                  " unnest($14::int[]), unnest($15::bigint[]), unnest($16::bigint[]),"
	                  " unnest($17::bigint[]), unnest($18::bigint[]), unnest($19::bigint[]),"
	                  " unnest($20::bigint[]), unnest($21::bigint[]), unnest($22::text[]),"
	                  " unnest($23::text[]), unnest($24::bigint[]), unnest($25::bigint[]),"
	                  " unnest($26::bigint[]), unnest($27::bigint[]), unnest($28::bigint[])"
	                  " ON CONFLICT (business_key) WHERE business_key IS NOT NULL DO NOTHING"
	                  " RETURNING id, uid",
	/* A round's instance updates, one row each of the arrays: a row changes
	 * only for its owner with the fence it was loaded with (or for anyone
	 * when it has ended and stays so). The arrays are unnested in a select
	 * list, which steps through them together; unnest(a, b, ...) in FROM
	 * copies each into a tuplestore first (tests/bench: 16 % more
	 * transitions a second this way). The LIMIT, the arrays' own length,
	 * changes no result: it makes the server's plan for arrays of any
	 * length expect few rows, as a plan for one row does, so the server
	 * keeps that plan instead of planning each round of one row anew
	 * (which cost more than running it: 1,690 against 2,860 transitions a
	 * second at one in flight). The history statement does the same. */
	[P_UPDATE_MANY] = FENCED_MANY(
	        "UPDATE instances i SET state = v.state, phase = v.phase, step = v.step,"
	        " attempt = v.attempt, inflight = v.inflight, pending = v.pending,"
	        " pivot_done = v.pivot_done, reason = v.reason, fwd_started = v.fwd_started,"
	        " comp_done_any = v.comp_done_any, due_at = v.due_at,"
	        " deadline_at = v.deadline_at, attempt_deadline = v.attempt_deadline,"
	        " step_since = v.step_since, prev_delay = v.prev_delay,"
	        " updated_at = v.updated_at, error = v.error, context = v.context,"
	        " next_seq = v.next_seq, recoveries = v.recoveries,"
	        /* an ended instance belongs to nobody */
	        " owner = CASE WHEN v.state < 3 THEN v.epoch ELSE 0 END,"
	        /* the time it reached its final state, kept while it stays there */
	        " finished_at = CASE WHEN v.state < 3 THEN 0 WHEN i.state = v.state THEN"
	        " i.finished_at ELSE v.updated_at END"
	        " FROM (SELECT unnest($1::bigint[]) AS id, unnest($2::int[]) AS state,"
	        " unnest($3::int[]) AS phase, unnest($4::int[]) AS step,"
	        " unnest($5::bigint[]) AS attempt, unnest($6::int[]) AS inflight,"
	        " unnest($7::int[]) AS pending, unnest($8::int[]) AS pivot_done,"
	        " unnest($9::int[]) AS reason, unnest($10::int[]) AS fwd_started,"
	        " unnest($11::int[]) AS comp_done_any, unnest($12::bigint[]) AS due_at,"
	        " unnest($13::bigint[]) AS deadline_at, unnest($14::bigint[]) AS attempt_deadline,"
	        " unnest($15::bigint[]) AS step_since, unnest($16::bigint[]) AS prev_delay,"
	        " unnest($17::bigint[]) AS updated_at, unnest($18::text[]) AS error,"
	        " unnest($19::text[]) AS context, unnest($20::bigint[]) AS next_seq,"
	        " unnest($21::bigint[]) AS recoveries, unnest($22::bigint[]) AS epoch,"
	        " unnest($23::bigint[]) AS fence LIMIT cardinality($1::bigint[])) AS v"
	        " WHERE i.id = ANY(ARRAY[v.id]) AND i.fence IS NOT DISTINCT FROM v.fence AND "
	        "(i.owner = v.epoch OR"
	        " (i.owner = 0 AND i.state >= 3 AND v.state >= 3))"),
	[P_LOAD] = "SELECT " ROW_COLUMNS " FROM instances WHERE id = $1",
	[P_LOAD_UID] = "SELECT " ROW_COLUMNS " FROM instances WHERE uid = $1",
	[P_FIND_BKEY] = "SELECT id FROM instances WHERE business_key = $1",
	/* History is fenced too: written only by the instance's owner, or to an
	 * ended instance's (a note). A round's rows, one row each of the arrays;
	 * a row whose instance this transaction also updates ($13, written) is
	 * fenced by that update (store_pg_batch.c), the others by a lookup. */
	[P_HIST_MANY] = FENCED_MANY(
	        "INSERT INTO history(instance, seq, at, type, state, step, phase, attempt,"
	        " outcome, detail, fence) SELECT v.instance, v.seq, v.at, v.type, v.state,"
	        " v.step, v.phase, v.attempt, v.outcome, v.detail, v.fence FROM"
	        " (SELECT unnest($1::bigint[]) AS instance, unnest($2::bigint[]) AS seq,"
	        " unnest($3::bigint[]) AS at, unnest($4::int[]) AS type,"
	        " unnest($5::int[]) AS state, unnest($6::int[]) AS step,"
	        " unnest($7::int[]) AS phase, unnest($8::bigint[]) AS attempt,"
	        " unnest($9::int[]) AS outcome, unnest($10::text[]) AS detail,"
	        " unnest($11::bigint[]) AS fence, unnest($12::bigint[]) AS epoch,"
	        " unnest($13::bool[]) AS written LIMIT cardinality($1::bigint[])) AS v"
	        " WHERE v.written"
	        " OR EXISTS (SELECT 1 FROM instances i"
	        " WHERE i.id = ANY(ARRAY[v.instance]) AND (i.owner = v.epoch OR (i.owner = 0 AND"
	        " i.state >= 3)))"),
	[P_LAST_OUTCOME] = "SELECT outcome FROM history WHERE instance = $1 AND step = $2 AND"
	                   " phase = $3 AND type = 3 ORDER BY seq DESC LIMIT 1",
	[P_SCAN_ACTIVE] = "SELECT id FROM instances WHERE state < 3 AND state IN (0, 2)"
	                  " AND owner = $1 ORDER BY id",
	[P_SCAN_DUE] = "SELECT id FROM instances WHERE state = 1 AND owner = $1 AND due_at > 0"
	               " AND due_at <= $2 ORDER BY due_at LIMIT $3",
	[P_NEXT_DUE] = "SELECT coalesce((SELECT min(due_at) FROM instances WHERE state = 1"
	               " AND owner = $1 AND due_at > 0), 0), coalesce((SELECT"
	               " min(greatest(due_at, 1)) FROM instances WHERE owner = 0 AND state < 3"
	               " AND (state <> 1 OR due_at > 0) AND (def_name, def_version) IN (SELECT"
	               " def_name, def_version FROM owner_defs WHERE epoch = $1)), 0)",
	[P_HISTORY] = "SELECT seq, at, type, state, step, phase, attempt, outcome, detail, fence"
	              " FROM history WHERE instance = $1 ORDER BY seq",
	[P_PAGE] = "SELECT " ROW_COLUMNS " FROM instances WHERE id > $1 AND ($9::int < 0"
	           " OR state = $9) AND ($2::text IS NULL OR def_name = $2) AND ($3::int = 0"
	           " OR def_version = $3) AND created_at >= $4 AND created_at < $5"
	           " AND updated_at >= $6 AND updated_at < $7 ORDER BY id LIMIT $8",
	[P_PENDING] = "SELECT " ROW_COLUMNS " FROM instances WHERE state = 1 AND state < 3"
	              " AND pending = 1 AND id > $1 ORDER BY id LIMIT $2",
	[P_COUNTS] = "SELECT state, count(*) FROM instances GROUP BY state",
	[P_PURGE] = "WITH p AS (SELECT id FROM instances WHERE state >= 3 AND state = $1"
	            " AND finished_at < $2 ORDER BY finished_at LIMIT $3),"
	            " h AS (DELETE FROM history WHERE instance IN (SELECT id FROM p)),"
	            " c AS (DELETE FROM commands WHERE instance IN (SELECT id FROM p)),"
	            " i AS (DELETE FROM instances WHERE id IN (SELECT id FROM p) AND state = $1"
	            " RETURNING id) SELECT count(*) FROM i",
	[P_CMD_PUT] = "INSERT INTO commands(instance, verb, step, phase, result, output,"
	              " requested_at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
	[P_CMD_LIST] = "SELECT c.id, c.instance, c.verb, c.step, c.phase, c.result, c.output,"
	               " c.requested_at FROM commands c JOIN instances i ON i.id = c.instance"
	               " WHERE i.owner = $1 ORDER BY c.id",
	[P_CMD_DEL] = "DELETE FROM commands WHERE id = $1",
	[P_CMD_COUNT] = "SELECT count(*) FROM commands WHERE instance = $1 AND verb = $2"
	                " AND step = $3 AND phase = $4",
	/* What an operator reads: the owners (the ended ones too when $1), with
	 * their ages and leases on the server's clock, the definitions each
	 * serves and the unfinished instances a live one holds. */
	[P_OWNERS] = "SELECT o.epoch, o.host, o.pid, o.state, greatest(t.now - o.started_at, 0),"
	             " CASE WHEN o.state = 0 THEN greatest(o.lease_until - t.now, 0) ELSE 0 END,"
	             " coalesce((SELECT string_agg(d.def_name || '@' || d.def_version, ' '"
	             " ORDER BY d.def_name, d.def_version) FROM owner_defs d"
	             " WHERE d.epoch = o.epoch), ''),"
	             " CASE WHEN o.state = 0 THEN (SELECT count(*) FROM instances i"
	             " WHERE i.owner = o.epoch AND i.state < 3) ELSE 0 END"
	             " FROM owners o, (SELECT " NOW_MS " AS now) t"
	             " WHERE $1::int <> 0 OR o.state = 0 ORDER BY o.epoch",
	[P_DEFS] = "SELECT name, version, snapshot FROM definitions ORDER BY name, version",
	[P_DEF_COUNTS] = "SELECT def_name, def_version, state, count(*) FROM instances"
	                 " GROUP BY def_name, def_version, state"
	                 " ORDER BY def_name, def_version, state",
	[P_STUCK] = "SELECT def_name, def_version, reason, count(*) FROM instances"
	            " WHERE state >= 3 AND state = 5 GROUP BY def_name, def_version, reason"
	            " ORDER BY def_name, def_version, reason",
	/* The WAITING ones due by $1, and of them those due by $2. */
	[P_OVERDUE] = "SELECT count(*) FILTER (WHERE due_at <= $2), coalesce(min(due_at), 0)"
	              " FROM instances WHERE state = 1 AND due_at > 0 AND due_at <= $1",
	[P_LOAD_MANY] = "SELECT " ROW_COLUMNS " FROM instances WHERE id = ANY($1::bigint[])",
};

/* Schema 4, as the SQLite store's, in PostgreSQL's types: times are bigint
 * ms, epochs a bigserial (never reused), the pool and the owners' rows
 * found through partial indexes. The instances table leaves half of each
 * page free: a running instance's update changes no indexed column, so
 * with room on its page it is a heap-only update that writes no index
 * entry (about 1.5 WAL records a row instead of 5; tests/bench 15 % more
 * transitions a second), for twice the table's size on disk. */
static const char schema_sql[] =
        "CREATE TABLE meta(application text NOT NULL, schema_version integer NOT NULL);"
        "CREATE TABLE definitions(name text NOT NULL, version integer NOT NULL,"
        "  snapshot text NOT NULL, PRIMARY KEY(name, version));"
        "CREATE TABLE owners(epoch bigserial PRIMARY KEY, host text NOT NULL,"
        "  pid bigint NOT NULL, started_at bigint NOT NULL, lease_until bigint NOT NULL,"
        "  state integer NOT NULL);"
        "CREATE INDEX owners_live ON owners(lease_until) WHERE state = 0;"
        "CREATE TABLE owner_defs(epoch bigint NOT NULL, def_name text NOT NULL,"
        "  def_version integer NOT NULL, PRIMARY KEY(epoch, def_name, def_version));"
        "CREATE TABLE instances("
        "  id bigserial PRIMARY KEY, uid text NOT NULL UNIQUE,"
        "  def_name text NOT NULL, def_version integer NOT NULL, business_key text,"
        "  state integer NOT NULL, phase integer NOT NULL, step integer NOT NULL,"
        "  attempt bigint NOT NULL, inflight integer NOT NULL, pending integer NOT NULL,"
        "  pivot_done integer NOT NULL, reason integer NOT NULL,"
        "  fwd_started integer NOT NULL, comp_done_any integer NOT NULL,"
        "  due_at bigint NOT NULL, deadline_at bigint NOT NULL,"
        "  attempt_deadline bigint NOT NULL, step_since bigint NOT NULL,"
        "  prev_delay bigint NOT NULL, created_at bigint NOT NULL,"
        "  updated_at bigint NOT NULL, error text NOT NULL, context text NOT NULL,"
        "  owner bigint NOT NULL DEFAULT 0, fence bigint NOT NULL DEFAULT 0,"
        "  next_seq bigint NOT NULL DEFAULT 1, recoveries bigint NOT NULL DEFAULT 0,"
        "  finished_at bigint NOT NULL) WITH (fillfactor = 50);"
        "CREATE UNIQUE INDEX instances_bkey ON instances(business_key)"
        "  WHERE business_key IS NOT NULL;"
        "CREATE INDEX instances_waiting ON instances(owner, due_at) WHERE state = 1;"
        "CREATE INDEX instances_state ON instances(state, id) WHERE state < 3;"
        "CREATE INDEX instances_owned ON instances(owner) WHERE owner <> 0;"
        "CREATE INDEX instances_pool ON instances(due_at) WHERE owner = 0 AND state < 3;"
        "CREATE INDEX instances_finished ON instances(state, finished_at) WHERE state >= 3;"
        "CREATE TABLE history(instance bigint NOT NULL, seq bigint NOT NULL,"
        "  at bigint NOT NULL, type integer NOT NULL, state integer NOT NULL,"
        "  step integer NOT NULL, phase integer NOT NULL, attempt bigint NOT NULL,"
        "  outcome integer NOT NULL, detail text NOT NULL, fence bigint NOT NULL,"
        "  PRIMARY KEY(instance, seq));"
        "CREATE TABLE commands(id bigserial PRIMARY KEY, instance bigint NOT NULL,"
        "  verb integer NOT NULL, step integer NOT NULL, phase integer NOT NULL,"
        "  result integer NOT NULL, output text, requested_at bigint NOT NULL,"
        "  origin bigint NOT NULL);"
        "CREATE INDEX commands_instance ON commands(instance, id);"
        "INSERT INTO meta VALUES ('libsaga', 4);";

/* Creation and migration are serialised by this advisory lock (its first
 * key "SAGA", its second the schema's name). */
#define SCHEMA_LOCK "SELECT pg_advisory_xact_lock(1396786497, hashtext(current_schema()))"

uint64_t pg_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int pg_refuse(saga_store *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	saga_vfmt(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	/* libpq's messages end in a newline */
	size_t len = strlen(s->errmsg);
	while (len && (s->errmsg[len - 1] == '\n' || s->errmsg[len - 1] == ' '))
		s->errmsg[--len] = '\0';
	return code;
}

/* An integer in decimal (written by hand: snprintf was a third of a
 * round's client time). */
void p_int(pg_params *p, int64_t v)
{
	char tmp[24], *end = tmp + sizeof(tmp), *d = end;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do {
		*--d = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--d = '-';
	memcpy(p->buf[p->n], d, (size_t)(end - d));
	p->buf[p->n][end - d] = '\0';
	p->v[p->n] = p->buf[p->n];
	p->n++;
}

/* A time bound as the store holds it: never past the largest signed value. */
void p_time(pg_params *p, uint64_t t)
{
	p_int(p, t > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)t);
}

void p_text(pg_params *p, const char *t)
{
	p->v[p->n++] = t; /* NULL is SQL's NULL */
}

int64_t pg_i64(const PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* The libsaga code of a server error's SQLSTATE. */
static int sqlstate_code(const char *state, enum pg_kind kind)
{
	if (!state)
		return SAGA_EIO;
	if (strcmp(state, "23505") == 0)
		return SAGA_EEXISTS;
	if ((kind == K_FENCED || kind == K_LEASE) && strcmp(state, "22012") == 0)
		return SAGA_EFENCED;
	if (strcmp(state, "55P03") == 0 || strcmp(state, "40P01") == 0 ||
	    strcmp(state, "40001") == 0)
		return SAGA_EBUSY;
	if (strcmp(state, "53100") == 0)
		return SAGA_EFULL;
	if (strcmp(state, "53200") == 0)
		return SAGA_ENOMEM;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
	    strcmp(state, "58030") == 0)
		return SAGA_EIO;
	return SAGA_ESTORE;
}

static void quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message; /* the library never prints */
}

/* Opens a connection to the store's database; the message says why not. */
PGconn *pg_connect(saga_store *s, const char *app, int *rc)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { s->conninfo, app, NULL };
	/* Started, then polled: the notice processor is set before the
	 * server says anything (libpq's own prints to stderr). */
	PGconn *c = PQconnectStartParams(keys, vals, 1);
	if (!c) {
		*rc = pg_refuse(s, SAGA_ENOMEM, "store: out of memory connecting to PostgreSQL");
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	while (PQstatus(c) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
	       ps != PGRES_POLLING_FAILED) {
		struct pollfd pfd = { PQsocket(c), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT,
			              0 };
		if (pfd.fd < 0 || (poll(&pfd, 1, -1) < 0 && errno != EINTR))
			break;
		ps = PQconnectPoll(c);
	}
	if (PQstatus(c) != CONNECTION_OK) {
		/* libpq's reason: unreachable, refused, authentication failed,
		 * no such database. */
		const char *msg = PQerrorMessage(c);
		*rc = pg_refuse(s, SAGA_ESTORE, "store: cannot connect to PostgreSQL: %s", msg);
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Runs SQL outside the pipeline (opening, the listening connection);
 * a result of the wanted status is handed back when out is not NULL. */
static int exec_plain(saga_store *s, PGconn *c, const char *sql, PGresult **out, const char *what)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		int rc = pg_refuse(
		        s,
		        r ? sqlstate_code(PQresultErrorField(r, PG_DIAG_SQLSTATE), K_PLAIN)
		          : SAGA_EIO,
		        "store: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
		PQclear(r);
		return rc;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return SAGA_OK;
}

/* The session: durability, how long a lock is waited for, the prepared
 * statements, then pipeline mode. Again after every reconnect. */
static int setup_session(saga_store *s)
{
	char sql[160];
	saga_fmt(sql, sizeof(sql), "SET synchronous_commit = %s; SET lock_timeout = %u",
	         s->durability == SAGA_DURABILITY_FULL ? "on" : "off", (unsigned)s->busy_ms);
	int rc = exec_plain(s, s->conn, sql, NULL, "session settings");
	if (rc)
		return rc;
	if (!PQenterPipelineMode(s->conn))
		return pg_refuse(s, SAGA_ESTORE, "store: cannot enter pipeline mode: %s",
		                 PQerrorMessage(s->conn));
	char name[16];
	for (int i = 0; i < P_COUNT; i++) {
		saga_fmt(name, sizeof(name), "s%d", i);
		if (!PQsendPrepare(s->conn, name, stmt_sql[i], 0, NULL))
			return pg_refuse(s, SAGA_EIO, "store: prepare: %s",
			                 PQerrorMessage(s->conn));
		s->q[s->nq++] = (struct pg_pending){ K_PLAIN, i, 0 };
	}
	return pg_sync(s);
}

/* Marks the connection lost: the transaction went with it. */
static int lost(saga_store *s, const char *when)
{
	s->broken = true;
	s->nq = 0;
	pg_batch_clear(&s->upd);
	pg_batch_clear(&s->hist);
	if (s->in_txn && !s->failed)
		s->failed = SAGA_EIO; /* the server rolled it back */
	return pg_refuse(s, SAGA_EIO, "store: connection to PostgreSQL lost %s: %s", when,
	                 PQerrorMessage(s->conn));
}

/* The connection is up, or is opened again (no sooner than the backoff
 * allows): statements prepared anew, and changed() says yes (a rescan:
 * notifications sent while it was down are lost). */
int pg_ready(saga_store *s)
{
	if (!s->broken && PQstatus(s->conn) == CONNECTION_OK)
		return SAGA_OK;
	s->broken = true;
	uint64_t now = pg_mono_ms();
	if (now < s->retry_at)
		return pg_refuse(s, SAGA_EIO,
		                 "store: connection to PostgreSQL lost; trying again in %llu ms",
		                 (unsigned long long)(s->retry_at - now));
	if (PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF)
		PQexitPipelineMode(s->conn);
	PQreset(s->conn);
	int rc;
	if (PQstatus(s->conn) != CONNECTION_OK) {
		rc = pg_refuse(s, SAGA_EIO, "store: cannot reconnect to PostgreSQL: %s",
		               PQerrorMessage(s->conn));
	} else {
		s->nq = 0;
		rc = setup_session(s);
	}
	if (rc) {
		s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 50;
		if (s->backoff_ms > 5000)
			s->backoff_ms = 5000;
		s->retry_at = pg_mono_ms() + s->backoff_ms;
		return rc;
	}
	s->broken = false;
	s->backoff_ms = 0;
	s->rescan = true;
	return SAGA_OK;
}

static int sync_queued(saga_store *s);

/* Queues one statement, after nothing gathered (pg_queue flushes first). */
int pg_queue_one(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id)
{
	int rc;
	if (s->nq == PG_QUEUE_MAX && (rc = sync_queued(s)))
		return rc;
	char name[16];
	saga_fmt(name, sizeof(name), "s%d", stmt);
	if (!PQsendQueryPrepared(s->conn, name, p ? p->n : 0, p ? p->v : NULL, NULL, NULL, 0))
		return lost(s, "sending a statement");
	s->q[s->nq++] = (struct pg_pending){ kind, stmt, id };
	return SAGA_OK;
}

/* Queues one statement behind the gathered writes. */
int pg_queue(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id)
{
	int rc = pg_flush(s);
	return rc ? rc : pg_queue_one(s, stmt, p, kind, id);
}

/* Records the first error of a transaction (or of a statement outside one). */
static void note_error(saga_store *s, PGresult *r, const struct pg_pending *p, int *rc)
{
	if (*rc)
		return;
	*rc = sqlstate_code(PQresultErrorField(r, PG_DIAG_SQLSTATE), p->kind);
	if (*rc == SAGA_EFENCED && p->kind == K_LEASE) {
		s->lease_end = 0; /* the next begin asks the server at once */
		pg_refuse(s, *rc,
		          "store: the lease of owner %lld lapsed; another process may own "
		          "its instances now",
		          (long long)s->epoch);
	} else if (*rc == SAGA_EFENCED && !p->id)
		pg_refuse(s, *rc,
		          "store: an instance written in this round is no longer this "
		          "process's (a fenced write changed nothing): the transaction "
		          "cannot commit");
	else if (*rc == SAGA_EFENCED)
		pg_refuse(s, *rc,
		          "store: instance %lld is no longer this process's (the fenced "
		          "write changed nothing): the transaction cannot commit",
		          (long long)p->id);
	else
		pg_refuse(s, *rc, "store: %s", PQresultErrorMessage(r));
}

/* Sends a Sync and reads the answers of every queued statement, in order.
 * The K_WANT one's result is kept in s->want. The first error is returned
 * (the server skipped what followed it); in a transaction it sticks. */
static int sync_queued(saga_store *s)
{
	int rc = SAGA_OK;
	PQclear(s->want);
	s->want = NULL;
	if (!PQpipelineSync(s->conn))
		return lost(s, "sending");
	for (int i = 0; i < s->nq; i++) {
		const struct pg_pending *p = &s->q[i];
		PGresult *r = PQgetResult(s->conn);
		if (!r)
			return lost(s, "waiting for an answer");
		for (; r; r = PQgetResult(s->conn)) {
			ExecStatusType st = PQresultStatus(r);
			if (st == PGRES_FATAL_ERROR && p->kind != K_NOTIFY) {
				note_error(s, r, p, &rc);
			} else if (st == PGRES_COMMAND_OK && p->kind == K_COMMIT &&
			           strcmp(PQcmdStatus(r), "COMMIT") != 0 && !rc) {
				rc = pg_refuse(
				        s, SAGA_ESTORE,
				        "store: the transaction was rolled back at its commit");
			} else if (st == PGRES_TUPLES_OK && p->kind == K_LEASE &&
			           PQntuples(r) == 1) {
				/* It counts once the transaction commits (a rolled-back
				 * round renewed nothing in the store). */
				s->lease_next = s->renew_sent + (uint64_t)pg_i64(r, 0, 0);
			} else if (st == PGRES_TUPLES_OK && p->kind == K_WANT && !s->want) {
				s->want = r;
				continue;
			}
			PQclear(r);
		}
		if (PQstatus(s->conn) != CONNECTION_OK)
			return lost(s, "waiting for an answer");
	}
	s->nq = 0;
	PGresult *r = PQgetResult(s->conn);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	PQclear(r);
	if (st != PGRES_PIPELINE_SYNC)
		return lost(s, "at a sync");
	if (s->in_txn && rc && !s->failed)
		s->failed = rc;
	return s->in_txn && s->failed ? s->failed : rc;
}

/* Queues what was gathered, then sends a Sync and reads every answer. */
int pg_sync(saga_store *s)
{
	int rc = pg_flush(s);
	return rc ? rc : sync_queued(s);
}

/* Runs a statement that answers rows (after whatever is queued); the
 * caller PQclears *out. */
int pg_query(saga_store *s, int stmt, const pg_params *p, PGresult **out)
{
	*out = NULL;
	int rc = pg_usable(s);
	if (rc)
		return rc;
	if ((rc = pg_queue(s, stmt, p, K_WANT, 0)) || (rc = pg_sync(s)))
		return rc;
	if (!s->want)
		return pg_refuse(s, SAGA_ESTORE, "store: a query answered no rows");
	*out = s->want;
	s->want = NULL;
	return SAGA_OK;
}

/* The first row's first n integer columns of a statement's answer:
 * SAGA_ENOTFOUND without a row. */
int pg_ints(saga_store *s, int stmt, const pg_params *p, int64_t *out, int n)
{
	PGresult *r = NULL;
	int rc = pg_query(s, stmt, p, &r);
	if (rc)
		return rc;
	if (PQntuples(r) < 1)
		rc = SAGA_ENOTFOUND;
	for (int i = 0; i < n && rc == SAGA_OK; i++)
		out[i] = pg_i64(r, 0, i);
	PQclear(r);
	return rc;
}

/* A write: queued in the open transaction (its answer read at the next
 * Sync), or run at once outside one. */
/* Whether a statement may be queued now: not in a transaction an error
 * aborted (its error again), and with the connection up (reopened if it
 * was lost). */
int pg_usable(saga_store *s)
{
	return s->in_txn && s->failed ? s->failed : pg_ready(s);
}

int pg_write(saga_store *s, int stmt, const pg_params *p, enum pg_kind kind, int64_t id)
{
	int rc = pg_usable(s);
	if (rc)
		return rc;
	if ((rc = pg_queue(s, stmt, p, kind, id)))
		return rc;
	return s->in_txn ? SAGA_OK : pg_sync(s);
}

/* What was written should wake other processes once committed. */
void pg_note_wake(saga_store *s)
{
	s->wakes = true;
}

/* Queues the notification peers hear (after a COMMIT, so outside the
 * transaction: a notifying commit takes a lock every other notifying commit
 * waits for, and the round's rows must not be held meanwhile). Its payload
 * is this connection's backend, so that this handle does not wake itself. */
int pg_queue_notify(saga_store *s)
{
	char me[24];
	saga_fmt(me, sizeof(me), "%d", PQbackendPID(s->conn));
	pg_params p = { .n = 0 };
	p_text(&p, s->channel);
	p_text(&p, me);
	return pg_queue(s, P_NOTIFY, &p, K_NOTIFY, 0);
}

static void txn_reset(saga_store *s)
{
	pg_batch_clear(&s->upd);
	pg_batch_clear(&s->hist);
	s->nwritten = 0;
	s->lease_next = 0;
	s->in_txn = false;
	s->wakes = false;
	s->failed = SAGA_OK;
}

int pg_begin(saga_store *s)
{
	txn_reset(s);
	int rc = pg_ready(s);
	if (rc)
		return rc;
	if ((rc = pg_queue(s, P_BEGIN, NULL, K_PLAIN, 0)))
		return rc;
	s->in_txn = true;
	if (!s->epoch)
		return SAGA_OK; /* sent with the first statement that needs an answer */
	/* The heartbeat, and the fence of everything this transaction writes:
	 * the lease is renewed only while it has not lapsed, on the server's
	 * clock; here it is counted down from when the renewal was sent. */
	uint64_t sent = pg_mono_ms();
	pg_params p = { .n = 0 };
	p_int(&p, s->epoch);
	p_int(&p, (int64_t)s->lease_ms);
	s->renew_sent = sent;
	if ((rc = pg_queue(s, P_RENEW, &p, K_LEASE, 0)))
		goto fail;
	/* With half its lease left or more, the renewal goes with the round's
	 * statements, answered at their first sync; should the server refuse
	 * it, the transaction is aborted there (nothing of the round commits,
	 * and commit says SAGA_EFENCED) and the next begin asks at once. With
	 * less left, begin waits for the answer. */
	if (s->lease_end > sent && s->lease_end - sent >= s->lease_ms / 2)
		return SAGA_OK;
	if ((rc = pg_sync(s)) == SAGA_OK)
		return SAGA_OK;
fail:
	pg_rollback(s);
	return rc;
}

int pg_commit(saga_store *s)
{
	if (!s->in_txn)
		return pg_refuse(s, SAGA_ESTATE, "store: commit without a transaction");
	int rc = s->failed;
	if (rc == SAGA_OK && (rc = pg_queue(s, P_COMMIT, NULL, K_COMMIT, 0)) == SAGA_OK &&
	    (!s->wakes || (rc = pg_queue_notify(s)) == SAGA_OK)) {
		rc = pg_sync(s);
		/* A connection lost here leaves the outcome unknown: the engine
		 * reloads what it holds and goes on from what the store says
		 * (an attempt whose start did not commit is invoked again with
		 * the same key). */
		if (rc == SAGA_EIO && s->broken)
			pg_refuse(s, SAGA_EIO,
			          "store: connection to PostgreSQL lost during the commit (its "
			          "outcome is unknown: what the store holds decides)");
	}
	if (rc) {
		pg_rollback(s);
		return rc;
	}
	if (s->lease_next)
		s->lease_end = s->lease_next; /* the renewal is the store's now */
	txn_reset(s);
	return SAGA_OK;
}

void pg_rollback(saga_store *s)
{
	pg_batch_clear(&s->upd); /* gathered, never sent */
	pg_batch_clear(&s->hist);
	if (!s->broken && PQstatus(s->conn) == CONNECTION_OK) {
		/* What was queued is answered first (a failed statement skipped
		 * the rest); then a transaction still open on the server ends. */
		bool was = s->in_txn;
		s->in_txn = false;
		if (s->nq)
			pg_sync(s);
		PGTransactionStatusType ts = PQtransactionStatus(s->conn);
		if (!s->broken && was && (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) &&
		    pg_queue(s, P_ROLLBACK, NULL, K_PLAIN, 0) == SAGA_OK)
			pg_sync(s);
	}
	s->nq = 0;
	txn_reset(s);
}

/* Reads or creates the schema, under the advisory lock (waiting up to the
 * busy timeout): a schema with a newer version is refused (SAGA_EVERSION),
 * a schema holding other tables and no libsaga store too (SAGA_ECORRUPT),
 * and neither writes anything. */
static int open_schema(saga_store *s)
{
	PGresult *r = NULL;
	char sql[64];
	saga_fmt(sql, sizeof(sql), "SET LOCAL lock_timeout = %u", (unsigned)s->busy_ms);
	int rc = exec_plain(s, s->conn, "BEGIN", NULL, "begin");
	if (rc)
		return rc;
	if ((rc = exec_plain(s, s->conn, sql, NULL, "lock timeout")))
		goto done;
	if ((rc = exec_plain(s, s->conn, SCHEMA_LOCK, NULL, "lock the schema"))) {
		if (rc == SAGA_EBUSY)
			pg_refuse(s, rc,
			          "store: another process has been creating or migrating the store "
			          "for %u ms",
			          (unsigned)s->busy_ms);
		goto done;
	}
	if ((rc = exec_plain(s, s->conn,
	                     "SELECT current_schema(), current_database(), (SELECT count(*) FROM"
	                     " pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE"
	                     " n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v',"
	                     " 'm', 'f')), to_regclass(quote_ident(current_schema()) || '.meta')"
	                     " IS NOT NULL",
	                     &r, "read the schema")))
		goto done;
	if (PQgetisnull(r, 0, 0)) {
		rc = pg_refuse(s, SAGA_ESTORE,
		               "store: no schema to create the store's tables in (search_path "
		               "names none that exists)");
		goto done;
	}
	const char *schema = PQgetvalue(r, 0, 0), *db = PQgetvalue(r, 0, 1);
	long long tables = pg_i64(r, 0, 2);
	bool has_meta = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
	saga_fmt(s->channel, sizeof(s->channel), "libsaga.%.50s", schema);
	if (!has_meta && tables > 0) {
		rc = pg_refuse(s, SAGA_ECORRUPT,
		               "store: schema %s of database %s is not a libsaga store (%lld "
		               "tables, no libsaga meta table); give the store a schema of its own",
		               schema, db, tables);
		goto done;
	}
	if (!has_meta) {
		if ((rc = exec_plain(s, s->conn, schema_sql, NULL, "create the store")) ||
		    (rc = exec_plain(s, s->conn, "COMMIT", NULL, "commit the new store")))
			goto done;
		PQclear(r);
		return SAGA_OK;
	}
	char name[200];
	saga_fmt(name, sizeof(name), "schema %s of database %s", schema, db);
	PQclear(r);
	r = NULL;
	if ((rc = exec_plain(s, s->conn, "SELECT application, schema_version FROM meta", &r,
	                     "read the store's version")))
		goto done;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "libsaga") != 0 ||
	    pg_i64(r, 0, 1) < 1) {
		rc = pg_refuse(s, SAGA_ECORRUPT,
		               "store: %s is not a libsaga store (its meta table)", name);
		goto done;
	}
	if (pg_i64(r, 0, 1) > SCHEMA_VERSION) {
		rc = pg_refuse(s, SAGA_EVERSION,
		               "store: %s: schema version %lld is newer than this libsaga (%d)",
		               name, (long long)pg_i64(r, 0, 1), SCHEMA_VERSION);
		goto done;
	}
	if (pg_i64(r, 0, 1) < SCHEMA_VERSION) {
		rc = pg_refuse(s, SAGA_ECORRUPT, "store: %s: schema version %lld is unknown", name,
		               (long long)pg_i64(r, 0, 1));
		goto done;
	}
	rc = exec_plain(s, s->conn, "COMMIT", NULL, "commit");
done:
	PQclear(r);
	if (rc) {
		PGresult *rb = PQexec(s->conn, "ROLLBACK");
		PQclear(rb);
	}
	return rc;
}

static void pg_close(saga_store *s)
{
	if (!s)
		return;
	PQclear(s->want);
	pg_batch_free(s, &s->upd);
	pg_batch_free(s, &s->hist);
	pg_batch_free(s, &s->ins);
	saga_free(&s->alloc, s->written);
	saga_free(&s->alloc, s->written_flags.buf);
	if (s->conn)
		PQfinish(s->conn);
	if (s->listen)
		PQfinish(s->listen);
	saga_free(&s->alloc, s->conninfo);
	saga_free(&s->alloc, s);
}

static int pg_open(saga_store **out, const char *conninfo, saga_durability durability,
                   uint32_t busy_ms, const saga_alloc *alloc, char *err, size_t err_size)
{
	*out = NULL;
	saga_store *s = saga_calloc(alloc, 1, sizeof(*s));
	if (!s) {
		saga_fmt(err, err_size, "out of memory");
		return SAGA_ENOMEM;
	}
	s->alloc = *alloc;
	/* The columns of P_UPDATE_MANY, P_HIST_MANY and P_INSERT_MANY: 'i' a
	 * number, 't' a text. */
	pg_batch_init(&s->upd, P_UPDATE_MANY, "iiiiiiiiiiiiiiiiittiiii", true);
	pg_batch_init(&s->hist, P_HIST_MANY, "iiiiiiiiitii", false);
	pg_batch_init(&s->ins, P_INSERT_MANY, "ttitiiiiiiiiiiiiiiiiittiiiii", false);
	s->durability = durability;
	s->busy_ms = busy_ms ? busy_ms : 5000;
	s->rescan = true;
	int rc = SAGA_ENOMEM;
	if (!(s->conninfo = saga_strdup(alloc, conninfo)))
		pg_refuse(s, rc, "out of memory");
	else if ((s->conn = pg_connect(s, "libsaga", &rc)) && (rc = open_schema(s)) == SAGA_OK &&
	         (rc = setup_session(s)) == SAGA_OK)
		rc = pg_listen_open(s);
	if (rc) {
		saga_fmt(err, err_size, "%s", s->errmsg);
		pg_close(s);
		return rc;
	}
	*out = s;
	return SAGA_OK;
}

/* Connects and looks for the store's meta table in the connection's
 * current schema, creating nothing. */
static int pg_probe(const char *conninfo, char *err, size_t err_size)
{
	saga_store tmp;
	memset(&tmp, 0, sizeof(tmp));
	tmp.alloc = saga_default_alloc;
	tmp.conninfo = (char *)conninfo; /* read only */
	int rc = SAGA_OK;
	PGconn *c = pg_connect(&tmp, "libsaga", &rc);
	PGresult *r = NULL;
	if (c && (rc = exec_plain(&tmp, c,
	                          "SELECT to_regclass(quote_ident(current_schema()) || '.meta')"
	                          " IS NOT NULL, current_schema(), current_database()",
	                          &r, "look for the store")) == SAGA_OK) {
		if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
			rc = pg_refuse(&tmp, SAGA_ENOTFOUND,
			               "store: no libsaga store in schema %s of database %s",
			               PQgetisnull(r, 0, 1) ? "(none)" : PQgetvalue(r, 0, 1),
			               PQgetvalue(r, 0, 2));
		PQclear(r);
	}
	if (c)
		PQfinish(c);
	if (rc)
		saga_fmt(err, err_size, "%s", tmp.errmsg);
	return rc;
}

static const char *pg_errmsg(const saga_store *s)
{
	return s->errmsg;
}

const store_ops store_pg_ops = {
	.version = STORE_OPS_VERSION,
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.errmsg = pg_errmsg,
	.register_owner = pg_register,
	.epoch = pg_epoch,
	.lease_left = pg_lease_left,
	.serve = pg_serve,
	.retire = pg_retire,
	.reap = pg_reap,
	.claim = pg_claim,
	.claim_one = pg_claim_one,
	.changed = pg_changed,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.put_definition = pg_put_definition,
	.get_definition = pg_get_definition,
	.insert = pg_insert,
	.update = pg_update,
	.load = pg_load,
	.load_uid = pg_load_uid,
	.find_bkey = pg_find_bkey,
	.add_history = pg_add_history,
	.last_outcome = pg_last_outcome,
	.scan_active = pg_scan_active,
	.scan_due = pg_scan_due,
	.next_due = pg_next_due,
	.next_due_pool = pg_next_due_pool,
	.put_command = pg_put_command,
	.commands = pg_commands,
	.delete_command = pg_delete_command,
	.count_commands = pg_count_commands,
	.history = pg_history,
	.page = pg_page,
	.pending = pg_pending_rows,
	.counts = pg_counts,
	.json_valid = pg_json_valid,
	.purge_batch = pg_purge_batch,
	.owners = pg_list_owners,
	.definitions = pg_list_definitions,
	.def_counts = pg_def_counts,
	.stuck_counts = pg_stuck_counts,
	.overdue = pg_overdue,
	.load_many = pg_load_many,
	.insert_many = pg_insert_many,
	.probe = pg_probe,
};
