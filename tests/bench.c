/* Throughput benchmark: N instances of an S-step saga whose steps do
 * nothing (or sleep, as a network call would), K in flight, W workers (a
 * list of worker counts is run in alternation), FULL or NORMAL durability;
 * --raw measures the store's ceiling for the same write shape in the same
 * run (on PostgreSQL in two statement shapes: a statement per row, and a
 * round's rows as arrays in one statement per table). The store is a file in --dir, the file --store names, or with
 * --store postgresql://... a database made afresh for each run on that
 * server (saga_bench; saga_bench_raw for the ceiling, written through libpq
 * in pipeline mode). `meson test --benchmark` runs short versions; run it
 * by hand with flags for the figures in docs/performance.md.
 * SPDX-License-Identifier: MIT */
#include <saga.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef SAGA_HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

#define MAX_WORKER_COUNTS 16

typedef struct opts {
	long n;
	int steps;
	unsigned int inflight;
	unsigned int workers;                          /* of this run */
	unsigned int worker_counts[MAX_WORKER_COUNTS]; /* --workers W[,W...] */
	int nworker_counts;
	long step_sleep_us; /* --step-sleep US: each step blocks this long */
	long backlog;       /* --backlog B: keep B more started than in flight */
	saga_durability durability;
	double fail_rate;
	int raw;
	int start_batch; /* --start-batch: caller-driven, starts in their own commits */
	int keys;        /* --keys: every start with a business key of its own */
	int repeat;      /* --repeat R: R engine runs between R + 1 raw ones */
	long park;       /* --park N: N instances parked on an async step; RSS */
	long reopen;     /* --reopen N: N unfinished instances resumed after reopen */
	long prefill;    /* --prefill M: M finished instances in the store first */
	int procs;       /* --procs P: P processes on one store, each n/P instances */
	const char *dir;
	const char *store; /* --store NAME: a file, or a PostgreSQL URI; emptied each run */
} opts;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double fail_rate;
static int park_mode;
static long step_sleep_us;
static unsigned int fail_seed = 1;

static saga_step_result noop(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	if (park_mode)
		return SAGA_STEP_PENDING;
	if (step_sleep_us) {
		struct timespec ts = { step_sleep_us / 1000000, step_sleep_us % 1000000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (fail_rate > 0 && saga_step_phase(ctx) == SAGA_PHASE_ACTION &&
	    (double)rand_r(&fail_seed) / RAND_MAX < fail_rate)
		return SAGA_STEP_FAIL;
	return SAGA_STEP_OK;
}

/* Per-instance latency: start time taken before the start call, end from
 * the final state event. With workers, listeners run on the driver thread:
 * mu guards the counts, and cv wakes the thread that tops up. */
typedef struct lat {
	double *start;
	double *end;
	long cap;
	int64_t base; /* id of the first instance of the run, minus one */
	long transitions;
	long ends;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool waiting; /* the topping-up thread waits for an end */
} lat;

static void on_event(const saga_event *ev, void *user)
{
	lat *l = user;
	int64_t i = ev->instance - l->base;
	if (i <= 0 || i > l->cap)
		return;
	bool end = ev->type == SAGA_EVENT_STATE &&
	           (ev->state == SAGA_COMPLETED || ev->state == SAGA_COMPENSATED ||
	            ev->state == SAGA_STUCK);
	if (ev->type != SAGA_EVENT_ATTEMPT_END && !end)
		return;
	pthread_mutex_lock(&l->mu);
	if (ev->type == SAGA_EVENT_ATTEMPT_END)
		l->transitions++;
	if (end) {
		l->end[i - 1] = now_s();
		l->ends++;
		if (l->waiting) {
			l->waiting = false;
			pthread_cond_signal(&l->cv);
		}
	}
	pthread_mutex_unlock(&l->mu);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static long long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Removes a store and its WAL files left by an earlier run. */
static void remove_store(const char *path)
{
	char p[2200];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* The raw ceiling: one UPDATE of an instance row plus one INSERT of a history
 * row per transition, on a WAL file with the same durability; committed one
 * at a time, and `batch` at a time. Returns transitions per second. */
static double raw_ceiling_sqlite(const opts *o, int batch, double *commit_latency)
{
	char path[2100];
	/* Next to the store the engine runs on: the same file system. */
	if (o->store)
		snprintf(path, sizeof(path), "%s-raw-%d", o->store, batch);
	else
		snprintf(path, sizeof(path), "%s/raw-%d.db", o->dir, batch);
	unlink(path);
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return 0;
	sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	sqlite3_exec(db,
	             o->durability == SAGA_DURABILITY_FULL ? "PRAGMA synchronous=FULL"
	                                                   : "PRAGMA synchronous=NORMAL",
	             NULL, NULL, NULL);
	sqlite3_exec(db,
	             "CREATE TABLE inst(id INTEGER PRIMARY KEY, state INT, step INT, attempt INT,"
	             " updated INT, context TEXT);"
	             "CREATE TABLE hist(seq INTEGER PRIMARY KEY, instance INT, at INT, type INT,"
	             " step INT, detail TEXT);"
	             "CREATE INDEX hist_i ON hist(instance, seq);",
	             NULL, NULL, NULL);
	sqlite3_stmt *ins, *upd, *hist, *begin, *commit;
	sqlite3_prepare_v2(db, "INSERT INTO inst VALUES (?1, 0, 0, 0, 0, '{}')", -1, &ins, NULL);
	sqlite3_prepare_v2(db,
	                   "UPDATE inst SET step = step + 1, attempt = 1, updated = ?2"
	                   " WHERE id = ?1",
	                   -1, &upd, NULL);
	sqlite3_prepare_v2(db,
	                   "INSERT INTO hist(instance, at, type, step, detail)"
	                   " VALUES (?1, ?2, 3, 1, '')",
	                   -1, &hist, NULL);
	sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL);
	sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL);
	long rows = 1000;
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (long i = 1; i <= rows; i++) {
		sqlite3_bind_int64(ins, 1, i);
		sqlite3_step(ins);
		sqlite3_reset(ins);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	long total = batch == 1 ? 2000 : 64L * 400;
	double t0 = now_s();
	for (long done = 0; done < total;) {
		sqlite3_step(begin);
		sqlite3_reset(begin);
		for (int k = 0; k < batch; k++, done++) {
			sqlite3_bind_int64(upd, 1, done % rows + 1);
			sqlite3_bind_int64(upd, 2, done);
			sqlite3_step(upd);
			sqlite3_reset(upd);
			sqlite3_bind_int64(hist, 1, done % rows + 1);
			sqlite3_bind_int64(hist, 2, done);
			sqlite3_step(hist);
			sqlite3_reset(hist);
		}
		sqlite3_step(commit);
		sqlite3_reset(commit);
	}
	double el = now_s() - t0;
	if (commit_latency)
		*commit_latency = el / ((double)total / batch);
	sqlite3_finalize(ins);
	sqlite3_finalize(upd);
	sqlite3_finalize(hist);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	remove_store(path);
	return (double)total / el;
}

/* A store name that names a PostgreSQL database. */
static bool is_pg(const char *name)
{
	return name && (!strncmp(name, "postgresql:", 11) || !strncmp(name, "postgres://", 11));
}

#ifdef SAGA_HAVE_POSTGRESQL
/* The libpq connection string of a store name: a URI as it is, the
 * key=value form without its "postgresql:" prefix. */
static const char *pg_conninfo(const char *name)
{
	return strncmp(name, "postgresql://", 13) && strncmp(name, "postgres://", 11) ? name + 11
	                                                                              : name;
}

/* Notices ("does not exist, skipping") are not the benchmark's output. */
static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* A connection to the database `db` of the server the store name points
 * at (db NULL: the name's own database), or NULL after a message. */
static PGconn *pg_connect(const char *name, const char *db)
{
	const char *keys[] = { "dbname", db ? "dbname" : NULL, NULL };
	const char *vals[] = { pg_conninfo(name), db, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "postgresql: %s\n", c ? PQerrorMessage(c) : "out of memory");
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

static int pg_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int ok = r &&
	         (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
	if (!ok)
		fprintf(stderr, "postgresql: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return ok ? 0 : 1;
}

/* Makes the database `db` afresh on the store name's server and writes
 * into out the store name of it ("postgresql:" and the name's connection
 * parameters, with dbname=db). Returns 0, or 1 after a message. */
static int pg_fresh_db(const char *name, const char *db, char *out, size_t size)
{
	PGconn *admin = pg_connect(name, NULL);
	if (!admin)
		return 1;
	char sql[256];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	int rc = pg_exec(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
	rc = rc || pg_exec(admin, sql);
	PQfinish(admin);
	char *err = NULL;
	PQconninfoOption *opt = PQconninfoParse(pg_conninfo(name), &err);
	if (rc || !opt) {
		if (err)
			fprintf(stderr, "postgresql: %s", err);
		PQfreemem(err);
		PQconninfoFree(opt);
		return 1;
	}
	size_t n = (size_t)snprintf(out, size, "postgresql:dbname='%s'", db);
	for (PQconninfoOption *k = opt; k->keyword && n < size; k++) {
		if (!k->val || !strcmp(k->keyword, "dbname"))
			continue;
		n += (size_t)snprintf(out + n, size - n, " %s='", k->keyword);
		for (const char *v = k->val; *v && n + 3 < size; v++) {
			if (*v == '\'' || *v == '\\')
				out[n++] = '\\';
			out[n++] = *v;
		}
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, "'");
	}
	PQconninfoFree(opt);
	if (n >= size) {
		fprintf(stderr, "postgresql: the connection string is too long\n");
		return 1;
	}
	return 0;
}

/* Sends one prepared statement into the pipeline. */
static int pg_send(PGconn *c, const char *stmt, int n, const char *const *vals)
{
	if (PQsendQueryPrepared(c, stmt, n, vals, NULL, NULL, 0))
		return 0;
	fprintf(stderr, "postgresql: send %s: %s", stmt, PQerrorMessage(c));
	return 1;
}

/* Reads the results of `sent` statements and the sync of one pipeline;
 * with `lost` set, the lease UPDATE (the second statement) must have
 * changed its row. */
static int pg_drain(PGconn *c, int sent)
{
	int bad = 0;
	for (int i = 0; i < sent; i++) {
		PGresult *r;
		while ((r = PQgetResult(c)) != NULL) {
			ExecStatusType st = PQresultStatus(r);
			if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
				if (!bad)
					fprintf(stderr, "postgresql: %s", PQresultErrorMessage(r));
				bad = 1;
			} else if (i == 1 && strcmp(PQcmdTuples(r), "1") != 0) {
				fprintf(stderr, "postgresql: the raw owner lost its lease\n");
				bad = 1;
			}
			PQclear(r);
		}
	}
	PGresult *r = PQgetResult(c);
	if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC)
		bad = 1;
	PQclear(r);
	return bad;
}

/* A text array parameter ("{1,2,3}"), one element at a time; room for the
 * history rows of a round of 64 transitions. */
typedef struct pg_array {
	char s[4096];
	size_t n;
} pg_array;

static void pg_array_add(pg_array *a, long long v)
{
	a->n += (size_t)snprintf(a->s + a->n, sizeof(a->s) - a->n, "%c%lld", a->n ? ',' : '{', v);
}

/* The array's text, closed ("{}" when empty). */
static const char *pg_array_text(pg_array *a)
{
	snprintf(a->s + a->n, sizeof(a->s) - a->n, a->n ? "}" : "{}");
	return a->s;
}

/* The raw ceiling on PostgreSQL: the write shape of an engine round on
 * that server (a fenced owner UPDATE that renews the lease on the server's
 * clock, per transition an instance row changed and two history rows
 * added, the attempt's end and the next one's start), `batch` transitions
 * (at most 64, distinct instances) a round, each round one pipeline
 * (BEGIN ... COMMIT, one sync), with synchronous_commit as the durability
 * says; in the database saga_bench_raw, made afresh. Row statements: per
 * transition an instance UPDATE and two history INSERTs, each a prepared
 * statement of its own. Array statements (`arrays`): the round's instance
 * rows in one UPDATE ... FROM (SELECT unnest(...), ...), fenced and
 * owner-checked, and its history rows in one INSERT ... SELECT from
 * unnested arrays that checks the owner, each failing unless it wrote
 * every row it was given.
 * Transitions per second, 0 on failure. */
static double raw_ceiling_pg(const opts *o, int batch, bool arrays, double *commit_latency)
{
	if (batch < 1 || batch > 64)
		return 0;
	char name[2048];
	if (pg_fresh_db(o->store, "saga_bench_raw", name, sizeof(name)))
		return 0;
	PGconn *c = pg_connect(name, NULL);
	if (!c)
		return 0;
	static const char *const setup[] = {
		"CREATE TABLE owners(epoch bigint PRIMARY KEY, lease_until bigint NOT NULL,"
		" state int NOT NULL)",
		"CREATE TABLE inst(id bigint PRIMARY KEY, owner bigint NOT NULL, fence bigint NOT "
		"NULL,"
		" state int, step int, attempt int, inflight int, due_at bigint, updated_at bigint,"
		" context text)",
		"CREATE TABLE hist(instance bigint NOT NULL, seq bigint NOT NULL, at bigint,"
		" type int, state int, step int, phase int, attempt int, outcome int, detail text,"
		" fence bigint, PRIMARY KEY(instance, seq))",
		"INSERT INTO owners VALUES (1, 0, 0)",
		"INSERT INTO inst SELECT i, 1, 1, 0, 0, 0, 0, 0, 0, '{}'"
		" FROM generate_series(1, 1000) AS i",
		"UPDATE owners SET lease_until = (extract(epoch FROM clock_timestamp()) * "
		"1000)::bigint"
		" + 3600000",
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]) && !bad; i++)
		bad = pg_exec(c, setup[i]);
	bad = bad ||
	      pg_exec(c, o->durability == SAGA_DURABILITY_FULL ? "SET synchronous_commit = on"
	                                                       : "SET synchronous_commit = off");
	static const struct {
		const char *name, *sql;
		int nparams;
	} stmts[] = {
		{ "begin", "BEGIN", 0 },
		{ "commit", "COMMIT", 0 },
		{ "lease",
		  "UPDATE owners SET lease_until = (extract(epoch FROM clock_timestamp()) * "
		  "1000)::bigint"
		  " + 10000 WHERE epoch = $1 AND state = 0 AND lease_until > (extract(epoch FROM"
		  " clock_timestamp()) * 1000)::bigint",
		  1 },
		{ "upd",
		  "UPDATE inst SET step = step + 1, attempt = 1, inflight = 1, updated_at = $2,"
		  " context = '{}' WHERE id = $1 AND owner = $3",
		  3 },
		{ "hist",
		  "INSERT INTO hist(instance, seq, at, type, state, step, phase, attempt, outcome,"
		  " detail, fence) VALUES ($1, $2, $3, $4, 1, 1, 0, 1, 1, '', 1)",
		  4 },
		/* The array statements: the count written must be the count given,
		 * else the division fails and the transaction with it. */
		{ "upd_arrays",
		  "WITH w AS (UPDATE inst i SET step = i.step + 1, attempt = 1, inflight = 1,"
		  " updated_at = v.at, context = '{}' FROM (SELECT unnest($1::bigint[]) AS id,"
		  " unnest($2::bigint[]) AS at, unnest($3::bigint[]) AS fence,"
		  " unnest($4::bigint[]) AS epoch LIMIT cardinality($1::bigint[])) AS v"
		  " WHERE i.id = ANY(ARRAY[v.id]) AND i.fence IS NOT DISTINCT FROM v.fence"
		  " AND i.owner IS NOT DISTINCT FROM v.epoch RETURNING 1)"
		  " SELECT 1 / (count(*) = cardinality($1::bigint[]))::int FROM w",
		  4 },
		{ "hist_arrays",
		  "WITH w AS (INSERT INTO hist(instance, seq, at, type, state, step, phase, "
		  "attempt,"
		  " outcome, detail, fence) SELECT v.instance, v.seq, v.at, v.type, 1, 1, 0, 1, 1,"
		  " '', 1 FROM (SELECT unnest($1::bigint[]) AS instance,"
		  " unnest($2::bigint[]) AS seq, unnest($3::bigint[]) AS at,"
		  " unnest($4::int[]) AS type, unnest($5::bigint[]) AS epoch"
		  " LIMIT cardinality($1::bigint[])) AS v"
		  " WHERE EXISTS (SELECT 1"
		  " FROM inst WHERE id = ANY(ARRAY[v.instance]) AND owner IS NOT DISTINCT FROM"
		  " v.epoch) RETURNING 1)"
		  " SELECT 1 / (count(*) = cardinality($1::bigint[]))::int FROM w",
		  5 },
	};
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]) && !bad; i++) {
		PGresult *r = PQprepare(c, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
		bad = !r || PQresultStatus(r) != PGRES_COMMAND_OK;
		if (bad)
			fprintf(stderr, "postgresql: prepare %s: %s", stmts[i].name,
			        PQerrorMessage(c));
		PQclear(r);
	}
	if (bad || !PQenterPipelineMode(c)) {
		PQfinish(c);
		return 0;
	}
	static int64_t seq[1001];
	memset(seq, 0, sizeof(seq));
	long total = batch == 1 ? 1000 : 64L * 400;
	double t0 = now_s();
	for (long done = 0; done < total && !bad;) {
		int sent = 0;
		char a[4][24];
		const char *v[4] = { a[0], a[1], a[2], a[3] };
		bad = pg_send(c, "begin", 0, NULL);
		snprintf(a[0], sizeof(a[0]), "1");
		bad = bad || pg_send(c, "lease", 1, v);
		sent = 2;
		if (arrays) {
			/* instance: id, at, fence, owner; history: instance, seq,
			 * at, type, owner (the engine's statements take the
			 * writer's epoch with each row, as here) */
			static pg_array ua[4], ha[5];
			for (int i = 0; i < 4; i++)
				ua[i].n = 0;
			for (int i = 0; i < 5; i++)
				ha[i].n = 0;
			for (int k = 0; k < batch; k++, done++) {
				long id = done % 1000 + 1;
				pg_array_add(&ua[0], id);
				pg_array_add(&ua[1], done);
				pg_array_add(&ua[2], 1);
				pg_array_add(&ua[3], 1);
				for (int type = 3; type >= 2; type--) {
					pg_array_add(&ha[0], id);
					pg_array_add(&ha[1], (long long)++seq[id]);
					pg_array_add(&ha[2], done);
					pg_array_add(&ha[3], type);
					pg_array_add(&ha[4], 1);
				}
			}
			const char *uv[4] = { pg_array_text(&ua[0]), pg_array_text(&ua[1]),
				              pg_array_text(&ua[2]), pg_array_text(&ua[3]) };
			const char *hv[5] = { pg_array_text(&ha[0]), pg_array_text(&ha[1]),
				              pg_array_text(&ha[2]), pg_array_text(&ha[3]),
				              pg_array_text(&ha[4]) };
			bad = bad || pg_send(c, "upd_arrays", 4, uv) ||
			      pg_send(c, "hist_arrays", 5, hv);
			sent += 2;
		} else
			for (int k = 0; k < batch && !bad; k++, done++) {
				long id = done % 1000 + 1;
				snprintf(a[0], sizeof(a[0]), "%ld", id);
				snprintf(a[1], sizeof(a[1]), "%ld", done);
				snprintf(a[2], sizeof(a[2]), "1");
				bad = pg_send(c, "upd", 3, v);
				for (int type = 3; type >= 2 && !bad; type--) {
					snprintf(a[1], sizeof(a[1]), "%lld", (long long)++seq[id]);
					snprintf(a[2], sizeof(a[2]), "%ld", done);
					snprintf(a[3], sizeof(a[3]), "%d", type);
					bad = pg_send(c, "hist", 4, v);
				}
				sent += 3;
			}
		bad = bad || pg_send(c, "commit", 0, NULL) || !PQpipelineSync(c);
		bad = bad || pg_drain(c, sent + 1);
	}
	double el = now_s() - t0;
	PQfinish(c);
	if (bad)
		return 0;
	if (commit_latency)
		*commit_latency = el / ((double)total / batch);
	return (double)total / el;
}
#else
static int pg_fresh_db(const char *name, const char *db, char *out, size_t size)
{
	(void)name;
	(void)db;
	(void)out;
	(void)size;
	fprintf(stderr, "bench: built without libpq: no PostgreSQL store\n");
	return 1;
}

static double raw_ceiling_pg(const opts *o, int batch, bool arrays, double *commit_latency)
{
	(void)o;
	(void)batch;
	(void)arrays;
	(void)commit_latency;
	return 0;
}
#endif

/* The store of one run, emptied: the file --store names, or `file` in the
 * run's directory (old files removed); on PostgreSQL the database
 * saga_bench made afresh. Writes its name into out; returns 0, or 1 after
 * a message. */
static int fresh_store(const opts *o, const char *file, char *out, size_t size)
{
	if (is_pg(o->store))
		return pg_fresh_db(o->store, "saga_bench", out, size);
	if (o->store)
		snprintf(out, size, "%s", o->store);
	else
		snprintf(out, size, "%s/%s", o->dir, file);
	remove_store(out);
	return 0;
}

/* The store's size in bytes: its file and WAL (0 on PostgreSQL). */
static long long store_bytes(const char *name)
{
	if (is_pg(name))
		return 0;
	char wal[2100];
	snprintf(wal, sizeof(wal), "%s-wal", name);
	return file_size(name) + file_size(wal);
}

/* The raw ceiling of the run's store kind, transitions per second; on
 * PostgreSQL in the write shape `shape` (RAW_ROWS or RAW_ARRAYS), on
 * SQLite in its one shape. */
enum { RAW_ROWS, RAW_ARRAYS, RAW_SHAPES };
static double raw_ceiling(const opts *o, int batch, int shape, double *commit_latency)
{
	return is_pg(o->store) ? raw_ceiling_pg(o, batch, shape == RAW_ARRAYS, commit_latency)
	                       : raw_ceiling_sqlite(o, batch, commit_latency);
}

static saga_engine *open_bench(const opts *o, const char *path)
{
	saga_options so = SAGA_OPTIONS_INIT;
	so.path = path;
	so.durability = o->durability;
	so.workers = o->workers;
	so.max_in_flight = o->inflight;
	saga_engine *e;
	char err[256];
	if (saga_engine_open(&e, &so, err, sizeof(err)) != SAGA_OK) {
		fprintf(stderr, "open: %s\n", err);
		return NULL;
	}
	saga_definition *d;
	saga_definition_new(&d, "bench", 1);
	for (int i = 0; i < o->steps; i++) {
		char name[32];
		snprintf(name, sizeof(name), "s%d", i);
		saga_step_spec s = { name, SAGA_STEP_COMPENSATABLE, noop, noop, NULL };
		saga_definition_add_step(d, &s);
	}
	int rc = saga_engine_register(e, d);
	saga_definition_free(d);
	if (rc) {
		fprintf(stderr, "register: %s\n", saga_engine_errmsg(e));
		saga_engine_close(e);
		return NULL;
	}
	return e;
}

/* Starts n instances in batches of 1000; returns 0 on success. */
static int start_many(saga_engine *e, long n)
{
	static saga_start_request reqs[1000];
	static int64_t ids[1000];
	for (size_t i = 0; i < 1000; i++)
		reqs[i].definition = "bench";
	for (long done = 0; done < n;) {
		size_t k = (size_t)(n - done < 1000 ? n - done : 1000);
		if (saga_start_batch(e, ids, NULL, reqs, k) != SAGA_OK) {
			fprintf(stderr, "start: %s\n", saga_engine_errmsg(e));
			return 1;
		}
		done += (long)k;
	}
	return 0;
}

/* --park: instances waiting on an async step live in the store, not in
 * memory: RSS must not grow with their number. */
static int run_park(const opts *o)
{
	char path[2048];
	if (fresh_store(o, "park.db", path, sizeof(path)))
		return 1;
	saga_engine *e = open_bench(o, path);
	if (!e)
		return 1;
	park_mode = 1;
	long rss0 = peak_rss_kb();
	double t0 = now_s();
	for (long done = 0; done < o->park; done += 10000) {
		long k = o->park - done < 10000 ? o->park - done : 10000;
		if (start_many(e, k) || saga_run_until_idle(e) != SAGA_OK) {
			fprintf(stderr, "park: %s\n", saga_engine_errmsg(e));
			saga_engine_close(e);
			return 1;
		}
	}
	int64_t counts[SAGA_STATE_COUNT];
	saga_counts(e, counts);
	double el = now_s() - t0;
	printf("park: %ld instances parked on an async step in %.1f s\n", o->park, el);
	printf("  WAITING in store  %lld\n", (long long)counts[SAGA_WAITING]);
	printf("  peak RSS KB       %ld (before: %ld)\n", peak_rss_kb(), rss0);
	if (!is_pg(path))
		printf("  store bytes/instance %.0f\n",
		       (double)store_bytes(path) / (double)o->park);
	saga_engine_close(e);
	park_mode = 0;
	return 0;
}

/* --reopen: N unfinished instances in the store; time from open to all
 * finished. */
static int run_reopen(const opts *o)
{
	char path[2048];
	if (fresh_store(o, "reopen.db", path, sizeof(path)))
		return 1;
	saga_engine *e = open_bench(o, path);
	if (!e || start_many(e, o->reopen))
		return 1;
	saga_engine_close(e);
	double t0 = now_s();
	e = open_bench(o, path);
	if (!e)
		return 1;
	double t_open = now_s() - t0;
	int rc = o->workers ? saga_wait_idle(e, 600000) : saga_run_until_idle(e);
	double el = now_s() - t0;
	int64_t counts[SAGA_STATE_COUNT];
	saga_counts(e, counts);
	printf("reopen: %ld unfinished instances x %d steps\n", o->reopen, o->steps);
	printf("  open + register   %.3f s\n", t_open);
	printf("  all finished in   %.2f s (%lld COMPLETED)\n", el,
	       (long long)counts[SAGA_COMPLETED]);
	saga_engine_close(e);
	return rc != SAGA_OK;
}

/* --prefill: M finished 5-step instances with their history, written
 * straight into the store (same rows the engine writes), before the run. */
static int prefill(const char *path, long m, int steps)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return 1;
	char sql[2048];
	snprintf(
	        sql, sizeof(sql),
	        "PRAGMA synchronous=OFF; BEGIN;"
	        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %ld)"
	        " INSERT INTO instances(uid, def_name, def_version, business_key, state, phase,"
	        " step, attempt, inflight, pending, pivot_done, reason, fwd_started,"
	        " comp_done_any, due_at, deadline_at, attempt_deadline, step_since, prev_delay,"
	        " created_at, updated_at, error, context, finished_at)"
	        " SELECT printf('%%032x', i), 'bench', 1, NULL, 3, 0, %d, 0, 0, 0, 0, 0, %d, 0,"
	        " 0, 0, 0, 0, 0, 1700000000000, 1700000000000, '', '{}', 1700000000000 FROM n;"
	        "INSERT INTO history(instance, seq, at, type, state, step, phase, attempt, outcome,"
	        " detail) SELECT id, (id - 1) * %d + t.j + 1, 1700000000000, t.type, 0, t.step, 0,"
	        " 1, t.outcome, ''"
	        " FROM instances, (WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1"
	        " FROM k WHERE j < %d) SELECT j, 2 AS type, j / 2 AS step, 0 AS outcome FROM k"
	        " WHERE j %% 2 = 0 UNION ALL SELECT j, 3, j / 2, 1 FROM k WHERE j %% 2 = 1) AS t"
	        " WHERE instances.state = 3;"
	        "UPDATE counters SET next_seq = %ld * %d + 1;"
	        "COMMIT;",
	        m, steps, steps, 2 * steps, 2 * steps - 1, m, 2 * steps);
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fprintf(stderr, "prefill: %s\n", err ? err : "?");
	sqlite3_free(err);
	sqlite3_close(db);
	/* The prefill wrote with synchronous=OFF: flush it to the disk now, or
	 * the engine's first checkpoint fsync would pay for it in the run. */
	int fd = open(path, O_RDWR);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return rc != SQLITE_OK;
}

/* Of the last engine run: median latency and durable commits per instance. */
static double last_p50_ms, last_commits_per_instance;

static int run_engine(const opts *o, double *tps_out)
{
	char path[2048];
	if (fresh_store(o, "bench.db", path, sizeof(path)))
		return 1;
	if (o->prefill) {
		/* Create the schema, then fill it while no engine holds it. */
		saga_engine *pe = open_bench(o, path);
		if (!pe)
			return 1;
		saga_engine_close(pe);
		double tp = now_s();
		if (prefill(path, o->prefill, o->steps))
			return 1;
		printf("prefill: %ld finished instances in %.1f s\n", o->prefill, now_s() - tp);
	}
	saga_engine *e = open_bench(o, path);
	if (!e)
		return 1;
	int rc = SAGA_OK;
	/* The prefill wrote ids 1..M: the run's instances follow. */
	lat l;
	memset(&l, 0, sizeof(l));
	l.start = calloc((size_t)o->n, sizeof(double));
	l.end = calloc((size_t)o->n, sizeof(double));
	l.cap = o->n;
	l.base = o->prefill;
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.cv, NULL);
	saga_engine_add_listener(e, on_event, &l);
	double t0 = now_s();
	/* Keep about `inflight` (+ backlog) instances unfinished at any time. */
	long started = 0, unfinished = (long)o->inflight + o->backlog;
	saga_start_request reqs[1024];
	int64_t ids[1024];
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		reqs[i].definition = "bench";
		reqs[i].business_key = NULL;
		reqs[i].input = NULL;
	}
	for (;;) {
		/* Top up: caller-driven, in the round's commit (saga_run_due_start);
		 * with workers or --start-batch, in a transaction of their own
		 * (saga_start_batch). With workers, this thread sleeps until an
		 * instance ends. */
		pthread_mutex_lock(&l.mu);
		long room;
		for (;;) {
			room = started - l.ends < unfinished ? unfinished - (started - l.ends) : 0;
			if (room > o->n - started)
				room = o->n - started;
			if (room || l.ends == o->n || !o->workers)
				break;
			l.waiting = true;
			pthread_cond_wait(&l.cv, &l.mu);
		}
		bool done = l.ends == o->n;
		pthread_mutex_unlock(&l.mu);
		if (done)
			break;
		size_t k = room < (long)(sizeof(reqs) / sizeof(reqs[0]))
		                   ? (size_t)room
		                   : sizeof(reqs) / sizeof(reqs[0]);
		static char keys[1024][24];
		for (size_t i = 0; o->keys && i < k; i++) {
			snprintf(keys[i], sizeof(keys[i]), "order-%ld", started + (long)i);
			reqs[i].business_key = keys[i];
		}
		double t = now_s();
		bool own = o->workers || o->start_batch;
		if (own && k)
			rc = saga_start_batch(e, ids, NULL, reqs, k);
		else if (!own)
			rc = saga_run_due_start(e, NULL, ids, NULL, reqs, k);
		if (rc)
			break;
		if (k && ids[0] - 1 != l.base + started) {
			fprintf(stderr, "engine: instance ids are not consecutive\n");
			rc = 1;
			break;
		}
		for (size_t i = 0; i < k; i++)
			l.start[started + (long)i] = t;
		started += (long)k;
		if (!o->workers && own)
			rc = saga_run_due(e, NULL);
		if (rc)
			break;
	}
	double el = now_s() - t0;
	saga_stats st;
	if (rc || (rc = saga_engine_stats(e, &st)) != SAGA_OK) {
		fprintf(stderr, "engine: %s\n", saga_engine_errmsg(e));
		saga_engine_close(e);
		return 1;
	}
	saga_engine_close(e);
	double *lats = malloc((size_t)o->n * sizeof(double));
	for (long i = 0; i < o->n; i++)
		lats[i] = (l.end[i] - l.start[i]) * 1000.0;
	qsort(lats, (size_t)o->n, sizeof(double), cmp_double);
	double ips = (double)o->n / el;
	double tps = (double)l.transitions / el;
	long long bytes = store_bytes(path);
	printf("engine: %ld instances x %d steps, %u in flight, %u workers, %s\n", o->n, o->steps,
	       o->inflight, o->workers, o->durability == SAGA_DURABILITY_FULL ? "FULL" : "NORMAL");
	printf("  instances/s     %10.0f\n", ips);
	printf("  transitions/s   %10.0f\n", tps);
	printf("  commits/s       %10.0f (%.1f transitions and %.1f history rows each)\n",
	       (double)st.commits / el, (double)l.transitions / (double)st.commits,
	       (double)st.history_rows / (double)st.commits);
	printf("  latency p50 ms  %10.3f\n", lats[o->n / 2]);
	printf("  latency p99 ms  %10.3f\n", lats[(long)((double)o->n * 0.99)]);
	printf("  peak RSS KB     %10ld\n", peak_rss_kb());
	if (!is_pg(path))
		printf("  store bytes/instance %6.0f\n", (double)bytes / (double)o->n);
	*tps_out = tps;
	last_p50_ms = lats[o->n / 2];
	last_commits_per_instance = (double)st.commits / (double)o->n;
	free(lats);
	free(l.start);
	free(l.end);
	pthread_cond_destroy(&l.cv);
	pthread_mutex_destroy(&l.mu);
	return 0;
}

/* The median of n values, sorted in place. */
/* One process of --procs: its share of the instances, caller-driven (or
 * with o->workers), to the end; writes its history rows to fd. */
static void proc_child(const opts *o, const char *path, long n, int fd)
{
	saga_engine *e = open_bench(o, path);
	if (!e)
		_exit(1);
	if (start_many(e, n) || saga_wait_idle(e, 600000) != SAGA_OK) {
		fprintf(stderr, "procs: %s\n", saga_engine_errmsg(e));
		_exit(1);
	}
	saga_stats st;
	saga_engine_stats(e, &st);
	saga_engine_close(e);
	uint64_t rows = st.history_rows;
	if (write(fd, &rows, sizeof(rows)) != (ssize_t)sizeof(rows))
		_exit(1);
	_exit(0);
}

/* --procs P: P processes share one store, each starting n/P instances and
 * running them to the end; history rows (transitions) per second, all of
 * them together. SQLite has one writer: the figure says what the processes
 * cost, not a gain. */
static int run_procs(const opts *o)
{
	char path[2048];
	double tps[100];
	for (int r = 0; r < o->repeat; r++) {
		if (fresh_store(o, "procs.db", path, sizeof(path)))
			return 1;
		int fds[2];
		if (pipe(fds) != 0)
			return 1;
		double t0 = now_s();
		for (int p = 0; p < o->procs; p++) {
			pid_t pid = fork();
			if (pid < 0)
				return 1;
			if (pid == 0) {
				close(fds[0]);
				proc_child(o, path, o->n / o->procs, fds[1]);
			}
		}
		close(fds[1]);
		uint64_t total = 0, rows;
		int got = 0, status, bad = 0;
		while (read(fds[0], &rows, sizeof(rows)) == (ssize_t)sizeof(rows)) {
			total += rows;
			got++;
		}
		close(fds[0]);
		while (wait(&status) > 0)
			bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		double el = now_s() - t0;
		if (bad || got != o->procs) {
			fprintf(stderr, "procs: a process failed\n");
			return 1;
		}
		tps[r] = (double)total / el;
		printf("  %d process%s: %.0f transitions/s (%.2f s)\n", o->procs,
		       o->procs > 1 ? "es" : "", tps[r], el);
	}
	qsort(tps, (size_t)o->repeat, sizeof(double), cmp_double);
	printf("procs: %d process%s on one store, %ld instances x %d steps, %u in flight and %u "
	       "workers each: %.0f transitions/s (median of %d)\n",
	       o->procs, o->procs > 1 ? "es" : "", o->n, o->steps, o->inflight, o->workers,
	       tps[o->repeat / 2], o->repeat);
	return 0;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --workers W1,W2,...: one run of each count in turn, --repeat times, so
 * that every count sees the same minutes of a machine whose speed drifts;
 * prints each count's median, its ratio to the first count's median, and
 * the median of its ratios to the first count's run of the same turn. */
static int run_compare(const opts *base)
{
	int nc = base->nworker_counts, nr = base->repeat;
	static double tps[MAX_WORKER_COUNTS][100], ratio[MAX_WORKER_COUNTS][100];
	for (int r = 0; r < nr; r++) {
		for (int c = 0; c < nc; c++) {
			opts o = *base;
			o.workers = base->worker_counts[c];
			if (run_engine(&o, &tps[c][r]))
				return 1;
			ratio[c][r] = tps[c][r] / tps[0][r];
		}
	}
	printf("in turn, %d run%s of each (%ld instances x %d steps, %u in flight, step sleep "
	       "%ld us, backlog %ld, %s):\n",
	       nr, nr > 1 ? "s" : "", base->n, base->steps, base->inflight, base->step_sleep_us,
	       base->backlog, base->durability == SAGA_DURABILITY_FULL ? "FULL" : "NORMAL");
	double first = 0;
	for (int c = 0; c < nc; c++) {
		double lo = tps[c][0], hi = tps[c][0];
		for (int r = 1; r < nr; r++) {
			lo = tps[c][r] < lo ? tps[c][r] : lo;
			hi = tps[c][r] > hi ? tps[c][r] : hi;
		}
		double m = median(tps[c], nr);
		if (c == 0)
			first = m;
		printf("  %3u workers  %9.0f transitions/s median (%.0f..%.0f)",
		       base->worker_counts[c], m, lo, hi);
		if (c > 0)
			printf("  %.2f x %u workers (turn by turn: median %.2f)", m / first,
			       base->worker_counts[0], median(ratio[c], nr));
		printf("\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	opts o = { .n = 2000,
		   .steps = 5,
		   .inflight = 64,
		   .durability = SAGA_DURABILITY_FULL,
		   .repeat = 1 };
	char dir[] = "/tmp/saga-bench-XXXXXX";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--raw")) {
			o.raw = 1;
			continue;
		}
		if (!strcmp(a, "--start-batch")) {
			o.start_batch = 1;
			continue;
		}
		if (!strcmp(a, "--keys")) {
			o.keys = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "%s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "-n"))
			o.n = atol(v);
		else if (!strcmp(a, "--steps"))
			o.steps = atoi(v);
		else if (!strcmp(a, "--inflight"))
			o.inflight = (unsigned)atoi(v);
		else if (!strcmp(a, "--workers")) {
			char *end = (char *)v;
			o.nworker_counts = 0;
			do {
				const char *from = end + (end != v);
				unsigned long w = strtoul(from, &end, 10);
				if (end == from || o.nworker_counts == MAX_WORKER_COUNTS) {
					fprintf(stderr, "--workers: a list of at most %d counts\n",
					        MAX_WORKER_COUNTS);
					return 2;
				}
				o.worker_counts[o.nworker_counts++] = (unsigned)w;
			} while (*end == ',');
			if (*end) {
				fprintf(stderr, "--workers: a list of at most %d counts\n",
				        MAX_WORKER_COUNTS);
				return 2;
			}
			o.workers = o.worker_counts[0];
		} else if (!strcmp(a, "--step-sleep"))
			o.step_sleep_us = atol(v);
		else if (!strcmp(a, "--backlog"))
			o.backlog = atol(v);
		else if (!strcmp(a, "--durability"))
			o.durability = !strcmp(v, "NORMAL") ? SAGA_DURABILITY_NORMAL
			                                    : SAGA_DURABILITY_FULL;
		else if (!strcmp(a, "--fail"))
			o.fail_rate = atof(v);
		else if (!strcmp(a, "--park"))
			o.park = atol(v);
		else if (!strcmp(a, "--reopen"))
			o.reopen = atol(v);
		else if (!strcmp(a, "--procs"))
			o.procs = atoi(v);
		else if (!strcmp(a, "--prefill"))
			o.prefill = atol(v);
		else if (!strcmp(a, "--dir"))
			o.dir = v;
		else if (!strcmp(a, "--store"))
			o.store = v;
		else if (!strcmp(a, "--repeat"))
			o.repeat = atoi(v);
		else {
			fprintf(stderr, "usage: bench [-n N] [--steps S] [--inflight K] [--workers "
			                "W[,W...]]"
			                " [--step-sleep US] [--backlog B]"
			                " [--durability FULL|NORMAL] [--fail RATE] [--raw] "
			                "[--start-batch] [--keys] "
			                "[--dir D]"
			                " [--store FILE|postgresql://...] [--repeat R] [--park N] "
			                "[--reopen N]"
			                " [--prefill M] [--procs P]\n");
			return 2;
		}
	}
	if (o.n < 1 || o.steps < 1 || o.inflight < 1 || o.repeat < 1 || o.repeat > 99 ||
	    o.step_sleep_us < 0 || o.backlog < 0 || (o.raw && o.nworker_counts > 1) ||
	    o.procs < 0 || o.procs > 64 || (o.prefill && is_pg(o.store))) {
		fprintf(stderr, "bad arguments (--raw takes one worker count; --prefill a SQLite "
		                "store)\n");
		return 2;
	}
	if (!o.dir) {
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			return 1;
		}
		o.dir = dir;
	}
	fail_rate = o.fail_rate;
	step_sleep_us = o.step_sleep_us;
	if (o.park || o.reopen || o.procs || o.nworker_counts > 1) {
		int rc = o.park     ? run_park(&o)
		         : o.reopen ? run_reopen(&o)
		         : o.procs  ? run_procs(&o)
		                    : run_compare(&o);
		if (o.dir == dir) {
			char rm[600];
			snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
			if (system(rm) != 0)
				fprintf(stderr, "could not remove %s\n", dir);
		}
		return rc;
	}
	/* With --raw the batched ceiling is measured before and after each
	 * engine run, and each run is set against the mean of its two
	 * neighbours: a machine that drifts during the run (a noisy neighbour,
	 * a disk that slows) biases no ratio. On PostgreSQL in both write
	 * shapes, row statements and array statements, each run against each. */
	static const char *const shape_name[RAW_SHAPES] = { "", ", array statements," };
	int shapes = o.raw ? (is_pg(o.store) ? RAW_SHAPES : 1) : 0;
	double batched[RAW_SHAPES][100], ratio[RAW_SHAPES][100], engine[100];
	for (int sh = 0; sh < shapes; sh++)
		if ((batched[sh][0] = raw_ceiling(&o, 64, sh, NULL)) <= 0)
			return 1;
	for (int r = 0; r < o.repeat; r++) {
		if (run_engine(&o, &engine[r]))
			return 1;
		for (int sh = 0; sh < shapes; sh++) {
			double *b = batched[sh];
			if ((b[r + 1] = raw_ceiling(&o, 64, sh, NULL)) <= 0)
				return 1;
			ratio[sh][r] = engine[r] / ((b[r] + b[r + 1]) / 2);
			printf("  raw 64 per commit%s before %.0f, after %.0f transitions/s: ratio "
			       "%.2f\n",
			       shape_name[sh], b[r], b[r + 1], ratio[sh][r]);
		}
	}
	if (o.raw) {
		double single[RAW_SHAPES] = { 0 }, lat1 = 0;
		for (int sh = 0; sh < shapes; sh++)
			if ((single[sh] = raw_ceiling(&o, 1, sh, sh == RAW_ROWS ? &lat1 : NULL)) <=
			    0)
				return 1;
		for (int sh = 0; sh < shapes; sh++) {
			qsort(batched[sh], (size_t)o.repeat + 1, sizeof(double), cmp_double);
			qsort(ratio[sh], (size_t)o.repeat, sizeof(double), cmp_double);
		}
		qsort(engine, (size_t)o.repeat, sizeof(double), cmp_double);
		printf(is_pg(o.store) ? "raw PostgreSQL, same server, pipeline and durability:\n"
		                      : "raw SQLite, same file kind and durability:\n");
		printf("  one at a time   %10.0f transitions/s (commit %.3f ms)\n",
		       single[RAW_ROWS], lat1 * 1e3);
		if (shapes > RAW_ARRAYS)
			printf("  one at a time (array statements) %10.0f transitions/s\n",
			       single[RAW_ARRAYS]);
		if (o.inflight == 1)
			printf("  one instance alone: p50 %.3f ms / (%.2f commits x %.3f ms) = "
			       "%.2f\n",
			       last_p50_ms, last_commits_per_instance, lat1 * 1e3,
			       last_p50_ms / (last_commits_per_instance * lat1 * 1e3));
		printf("  64 per commit   %10.0f transitions/s (median of %d)\n",
		       batched[RAW_ROWS][o.repeat / 2], o.repeat + 1);
		if (shapes > RAW_ARRAYS)
			printf("  64 per commit (array statements) %10.0f transitions/s (median of "
			       "%d)\n",
			       batched[RAW_ARRAYS][o.repeat / 2], o.repeat + 1);
		printf("  engine          %10.0f transitions/s (median of %d)\n",
		       engine[o.repeat / 2], o.repeat);
		/* The first line as it always was (row statements on PostgreSQL);
		 * then, on PostgreSQL, each shape by name. */
		static const char *const ratio_name[RAW_SHAPES + 1] = { "", " (row statements)",
			                                                " (array statements)" };
		for (int k = 0; k < (shapes > 1 ? 3 : 1); k++) {
			double *q = ratio[k ? k - 1 : RAW_ROWS];
			printf("  engine / batched ceiling%s  %.2f (median of %d; lowest %.2f, "
			       "highest %.2f)\n",
			       ratio_name[k], q[o.repeat / 2], o.repeat, q[0], q[o.repeat - 1]);
		}
	}
	char cmd[600];
	if (o.dir == dir) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return 0;
}
