/* Many processes on one store, with real processes and real signals: the
 * workers are tests/mp-worker (path in MP_WORKER), each an engine of its own
 * on the shared store, recording every callback into a participant ledger.
 *
 *  - kill: 4 workers start sagas; a seeded schedule (MP_SEED) stops each
 *    victim, notes the instances it owns, SIGKILLs it, times their takeover
 *    and restarts it; a final clean worker runs everything to its end. Then
 *    every instance ended as its input says, every effect was applied once
 *    per key, every compensation undid its action once, no two callbacks of
 *    one instance overlapped, and each orphan was claimed within one poll
 *    (plus slack: MP_SLACK_MS, default 1000) of the kill, far inside the
 *    lease (3 s): on one host the kernel says at once that the owner is gone.
 *  - zombie: a worker stops itself (SIGSTOP) inside a callback. Paused under
 *    the lease margin, nobody takes its instance and no callbacks overlap.
 *    Paused past its lease, another worker takes the instance over and ends
 *    it; continued, the paused callback is refused by the fenced guard
 *    (STALE), and the paused process writes nothing more under its old fence.
 *  - zombie-workers: the same past the lease with attempts already handed
 *    to the paused process's worker thread: continued, it begins none.
 *  - checker: the history checker run after every test above, fed an intact
 *    history, then doctored ones it must reject.
 *
 * The store is a SQLite file (one host), or with SAGA_TEST_STORE=postgresql
 * a fresh PostgreSQL database (many hosts, simulated; run through
 * tests/pg-run.sh). There the kill test also pauses workers (SIGSTOP, 0.5 to
 * 2 leases, MP_PAUSES) and restarts the server (pg_ctl restart -m
 * immediate), and an orphan's takeover waits for its owner's lease: no host
 * can see that another died.
 *
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef SAGA_HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

#include "mp-time.h"
#include "test-common.h"

enum { EV_ATTEMPT_START = 2, EV_ATTEMPT_END = 3, EV_OPERATOR = 7 };
enum { NSTEPS = 4, STEP_NAME_MAX = 16 };
static const char *const step_names[NSTEPS] = { "reserve", "charge", "confirm", "notify" };

static char dir[PATH_MAX];
static char store_path[PATH_MAX + 512]; /* a file, or postgresql:CONNINFO */
static char ledger_path[PATH_MAX + 32];

static bool is_pg_name(const char *name)
{
	return strncmp(name, "postgresql:", 11) == 0;
}

static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* The store: a SQLite file in the test's directory, or with
 * SAGA_TEST_STORE=postgresql a fresh database (test-common.h). The
 * participants' ledger is a SQLite file there either way. */
static void setup(void)
{
	tmpdir_make(dir, sizeof dir);
	test_store_name(store_path, sizeof store_path, dir, "store.db");
	snprintf(ledger_path, sizeof ledger_path, "%s/ledger.db", dir);
}

static void teardown(void)
{
	test_store_drop(store_path);
	tmpdir_remove(dir);
}

/* ------------------------------------------------------------------------ */
/* Worker processes                                                         */
/* ------------------------------------------------------------------------ */

typedef struct worker_args {
	int id, ids, sagas, threads;
	unsigned lease, margin;
	unsigned pace_ms, step_ms; /* --pace-ms; --step-ms (0: the worker's 5) */
	int until_final;
	const char *stop; /* MP_STOP, or NULL */
} worker_args;

/* Forks and execs mp-worker; returns once it runs the worker's code. The
 * child dies with this process, so that a failed check leaves no worker
 * behind, and starts with SIGTERM blocked: the worker unblocks it once its
 * handler is in place, so an early SIGTERM still stops it cleanly. */
static pid_t spawn(const worker_args *w)
{
	const char *exe = getenv("MP_WORKER");
	ck_assert_msg(exe && *exe, "MP_WORKER names tests/mp-worker");
	char id[16], ids[16], sagas[16], threads[16], lease[16], margin[16], pace[16], step[16];
	snprintf(id, sizeof id, "%d", w->id);
	snprintf(ids, sizeof ids, "%d", w->ids ? w->ids : 1);
	snprintf(sagas, sizeof sagas, "%d", w->sagas);
	snprintf(threads, sizeof threads, "%d", w->threads);
	snprintf(lease, sizeof lease, "%u", w->lease);
	snprintf(margin, sizeof margin, "%u", w->margin);
	snprintf(pace, sizeof pace, "%u", w->pace_ms);
	snprintf(step, sizeof step, "%u", w->step_ms ? w->step_ms : 5);
	/* A server restart may lose what NORMAL did not wait for; a process
	 * crash loses nothing either way. */
	char *durability = is_pg_name(store_path) ? "full" : "normal";
	/* clang-format off */
	char *argv[] = { (char *)exe, "--store", store_path, "--ledger", ledger_path,
	                 "--durability", durability,
	                 "--id", id, "--ids", ids, "--sagas", sagas, "--threads", threads,
	                 "--lease", lease, "--margin", margin, "--pace-ms", pace,
	                 "--step-ms", step, w->until_final ? "--until-final" : NULL, NULL };
	/* clang-format on */
	int gate[2];
	ck_assert_int_eq(pipe2(gate, O_CLOEXEC), 0);
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &term, &old), 0);
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(gate[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (w->stop)
			setenv("MP_STOP", w->stop, 1);
		else
			unsetenv("MP_STOP");
		execv(exe, argv);
		_exit(127);
	}
	ck_assert_int_eq(sigprocmask(SIG_SETMASK, &old, NULL), 0);
	close(gate[1]);
	char byte;
	while (read(gate[0], &byte, 1) == -1 && errno == EINTR)
		; /* end of file once the child's exec closed its end */
	close(gate[0]);
	return pid;
}

/* Waits for pid to change as `flags` asks (0: exit; WUNTRACED: also a
 * stop), at most timeout_ms; returns the status, fails the test on timeout. */
static int wait_for(pid_t pid, int flags, long timeout_ms, const char *what)
{
	int64_t until = wall_ms() + timeout_ms;
	for (;;) {
		int status = 0;
		pid_t r = waitpid(pid, &status, flags | WNOHANG);
		ck_assert_int_ge(r, 0);
		if (r == pid)
			return status;
		ck_assert_msg(wall_ms() < until, "%s: pid %d did not within %ld ms", what, (int)pid,
		              timeout_ms);
		nap_ms(5);
	}
}

static void expect_clean_exit(pid_t pid, long timeout_ms, const char *what)
{
	int status = wait_for(pid, 0, timeout_ms, what);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "%s: pid %d ended with status %#x", what, (int)pid, status);
}

/* ------------------------------------------------------------------------ */
/* Reading the store and the ledger                                         */
/* ------------------------------------------------------------------------ */

/* The store is a SQLite file or a PostgreSQL database (SAGA_TEST_STORE, see
 * test-common.h); the ledger is always a SQLite file. One reader serves
 * both: statements are written with SQLite's parameters (?N, or ? in
 * order), rewritten $N for PostgreSQL, whose connection is made again when
 * the server restarted under it. */
typedef struct db {
	sqlite3 *lite;
#ifdef SAGA_HAVE_POSTGRESQL
	PGconn *pg;
#endif
} db;

/* A statement's parameter: text when s is set, else the integer i. */
typedef struct arg {
	const char *s;
	int64_t i;
} arg;
#define I(x) ((arg){ NULL, (x) })
#define S(x) ((arg){ (x), 0 })

/* The rows of one statement, read with rows_next. */
typedef struct rows {
	db *d;
	sqlite3_stmt *st;
#ifdef SAGA_HAVE_POSTGRESQL
	PGresult *res;
	int row;
#endif
} rows;

static db *open_db(const char *name)
{
	db *d = calloc(1, sizeof *d);
	ck_assert_ptr_nonnull(d);
	if (is_pg_name(name)) {
#ifdef SAGA_HAVE_POSTGRESQL
		d->pg = PQconnectdb(name + 11);
		ck_assert_msg(d->pg && PQstatus(d->pg) == CONNECTION_OK, "%s: %s", name,
		              d->pg ? PQerrorMessage(d->pg) : "out of memory");
#else
		ck_abort_msg("%s: built without PostgreSQL", name);
#endif
		return d;
	}
	ck_assert_int_eq(sqlite3_open_v2(name, &d->lite, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(d->lite, 30000);
	return d;
}

static void close_db(db *d)
{
	if (!d)
		return;
	sqlite3_close(d->lite);
#ifdef SAGA_HAVE_POSTGRESQL
	PQfinish(d->pg);
#endif
	free(d);
}

#ifdef SAGA_HAVE_POSTGRESQL
/* Runs sql with n parameters on PostgreSQL; a connection lost (the server
 * restarted) is made again, for up to 60 s. */
static PGresult *pg_run(db *d, const char *sql, int n, const arg *args)
{
	char text[2048], vals[8][24];
	const char *v[8];
	size_t o = 0;
	int next = 0;
	ck_assert_int_le(n, 8);
	for (const char *p = sql; *p; p++) {
		ck_assert_uint_lt(o + 8, sizeof text);
		if (*p != '?') {
			text[o++] = *p;
			continue;
		}
		text[o++] = '$';
		if (p[1] < '0' || p[1] > '9')
			o += (size_t)snprintf(text + o, sizeof text - o, "%d", ++next);
	}
	text[o] = '\0';
	for (int i = 0; i < n; i++) {
		snprintf(vals[i], sizeof vals[i], "%lld", (long long)args[i].i);
		v[i] = args[i].s ? args[i].s : vals[i];
	}
	for (int tries = 0;; tries++) {
		PGresult *r = PQexecParams(d->pg, text, n, NULL, v, NULL, NULL, 0);
		ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
			return r;
		/* Lost: the connection is down, the server said it is going
		 * (57P01..3) or the error was libpq's own (no SQLSTATE). */
		const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
		bool lost = PQstatus(d->pg) == CONNECTION_BAD || !state ||
		            strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0;
		ck_assert_msg(lost && tries < 600, "%s: %s", text, PQerrorMessage(d->pg));
		PQclear(r);
		nap_ms(100);
		PQreset(d->pg);
	}
}
#endif

/* The highest parameter a statement names (?N), or its count of bare ?. */
static int param_count(const char *sql)
{
	int n = 0, bare = 0;
	for (const char *p = sql; (p = strchr(p, '?')) != NULL; p++) {
		if (p[1] >= '1' && p[1] <= '9') {
			int k = (int)strtol(p + 1, NULL, 10);
			n = k > n ? k : n;
		} else {
			bare++;
		}
	}
	return n > bare ? n : bare;
}

/* Runs sql with n parameters; fails the test on error. Its rows are read
 * with rows_next and the rows_* readers, then freed by rows_close. */
static rows *query(db *d, const char *sql, int n, const arg *args)
{
	rows *r = calloc(1, sizeof *r);
	ck_assert_ptr_nonnull(r);
	r->d = d;
#ifdef SAGA_HAVE_POSTGRESQL
	if (d->pg) {
		r->res = pg_run(d, sql, n, args);
		r->row = -1;
		return r;
	}
#endif
	int rc = sqlite3_prepare_v2(d->lite, sql, -1, &r->st, NULL);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(d->lite));
	for (int i = 0; i < n; i++)
		rc = args[i].s ? sqlite3_bind_text(r->st, i + 1, args[i].s, -1, SQLITE_TRANSIENT)
		               : sqlite3_bind_int64(r->st, i + 1, args[i].i);
	ck_assert_int_eq(rc, SQLITE_OK);
	return r;
}

static bool rows_next(rows *r)
{
#ifdef SAGA_HAVE_POSTGRESQL
	if (r->res)
		return ++r->row < PQntuples(r->res);
#endif
	int rc = sqlite3_step(r->st);
	ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sqlite3_sql(r->st),
	              sqlite3_errmsg(r->d->lite));
	return rc == SQLITE_ROW;
}

static bool rows_null(rows *r, int col)
{
#ifdef SAGA_HAVE_POSTGRESQL
	if (r->res)
		return PQgetisnull(r->res, r->row, col);
#endif
	return sqlite3_column_type(r->st, col) == SQLITE_NULL;
}

static int64_t rows_int(rows *r, int col)
{
#ifdef SAGA_HAVE_POSTGRESQL
	if (r->res)
		return strtoll(PQgetvalue(r->res, r->row, col), NULL, 10);
#endif
	return sqlite3_column_int64(r->st, col);
}

/* The text of a column, NULL for NULL; valid until the next row. */
static const char *rows_text(rows *r, int col)
{
	if (rows_null(r, col))
		return NULL;
#ifdef SAGA_HAVE_POSTGRESQL
	if (r->res)
		return PQgetvalue(r->res, r->row, col);
#endif
	return (const char *)sqlite3_column_text(r->st, col);
}

static void rows_close(rows *r)
{
	sqlite3_finalize(r->st);
#ifdef SAGA_HAVE_POSTGRESQL
	PQclear(r->res);
#endif
	free(r);
}

/* The first column of the first row of a query with up to two integer
 * parameters; `dflt` when there is no row or it is NULL. */
static int64_t query_int(db *d, int64_t dflt, const char *sql, int64_t a, int64_t b)
{
	rows *r = query(d, sql, param_count(sql), (arg[]){ I(a), I(b) });
	int64_t v = rows_next(r) && !rows_null(r, 0) ? rows_int(r, 0) : dflt;
	rows_close(r);
	return v;
}

/* Runs statements without parameters (several, on SQLite). */
static void exec_sql(db *d, const char *sql)
{
#ifdef SAGA_HAVE_POSTGRESQL
	if (d->pg) {
		PQclear(pg_run(d, sql, 0, NULL));
		return;
	}
#endif
	char *err = NULL;
	int rc = sqlite3_exec(d->lite, sql, NULL, NULL, &err);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
	sqlite3_free(err);
}

/* ------------------------------------------------------------------------ */
/* The history checker                                                      */
/* ------------------------------------------------------------------------ */

typedef struct check_report {
	int instances;
	int events;
	int violations;
	char first[512]; /* the first violation, "" when none */
} check_report;

static void violation(check_report *r, const char *fmt, ...)
{
	if (r->violations++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->first, sizeof r->first, fmt, ap);
		va_end(ap);
	}
}

/* Every instance's history, in seq order: the fence never goes back (so no
 * event of an old owner comes after one of a newer owner), and each step
 * and phase has at most one final outcome (an attempt ending OK or FAIL) and
 * no attempt after it, until an OPERATOR event opens a new series. */
static check_report check_history(db *store)
{
	check_report r = { 0, 0, 0, "" };
	rows *st = query(store,
	                 "SELECT instance, seq, type, step, phase, outcome, fence"
	                 " FROM history ORDER BY instance, seq",
	                 0, NULL);
	int64_t cur = -1, last_fence = 0;
	bool final_seen[NSTEPS][2];
	while (rows_next(st)) {
		int64_t inst = rows_int(st, 0), seq = rows_int(st, 1);
		int type = (int)rows_int(st, 2), step = (int)rows_int(st, 3);
		int phase = (int)rows_int(st, 4), outcome = (int)rows_int(st, 5);
		int64_t fence = rows_int(st, 6);
		r.events++;
		if (inst != cur) {
			cur = inst;
			last_fence = 0;
			memset(final_seen, 0, sizeof final_seen);
			r.instances++;
		}
		if (fence < last_fence)
			violation(&r, "instance %lld seq %lld: fence %lld after fence %lld",
			          (long long)inst, (long long)seq, (long long)fence,
			          (long long)last_fence);
		if (fence > last_fence)
			last_fence = fence;
		if (type == EV_OPERATOR) {
			memset(final_seen, 0, sizeof final_seen);
			continue;
		}
		if (type != EV_ATTEMPT_START && type != EV_ATTEMPT_END)
			continue;
		if (step < 0 || step >= NSTEPS || phase < 0 || phase > 1) {
			violation(&r, "instance %lld seq %lld: attempt of step %d phase %d",
			          (long long)inst, (long long)seq, step, phase);
			continue;
		}
		if (final_seen[step][phase])
			violation(&r,
			          "instance %lld seq %lld: %s of step %d phase %d after its final "
			          "outcome",
			          (long long)inst, (long long)seq,
			          type == EV_ATTEMPT_START ? "attempt" : "outcome", step, phase);
		if (type == EV_ATTEMPT_END &&
		    (outcome == SAGA_OUTCOME_OK || outcome == SAGA_OUTCOME_FAIL))
			final_seen[step][phase] = true;
	}
	rows_close(st);
	return r;
}

static void assert_history_ok(db *store)
{
	check_report r = check_history(store);
	printf("history: %d instances, %d events, %d violations\n", r.instances, r.events,
	       r.violations);
	ck_assert_msg(r.violations == 0, "%d history violations; first: %s", r.violations, r.first);
	ck_assert_int_gt(r.events, 0);
}

/* ------------------------------------------------------------------------ */
/* Ledger checks                                                            */
/* ------------------------------------------------------------------------ */

/* Pairs of finished callbacks of one instance whose [enter, exit] intersect
 * (ledger seqs: every row is its own transaction, so seq order is time
 * order). A callback whose process was killed has no exit and is left out. */
static int64_t overlaps(db *ledger)
{
	return query_int(
	        ledger, 0,
	        "WITH c AS (SELECT en.uid AS uid, en.seq AS e, ex.seq AS x FROM calls en"
	        " JOIN calls ex ON ex.kind = 1 AND ex.enter_seq = en.seq WHERE en.kind = 0)"
	        " SELECT count(*) FROM c a JOIN c b ON a.uid = b.uid AND a.e < b.e"
	        " AND b.e < a.x",
	        0, 0);
}

/* A pause of a worker (SIGSTOP to SIGCONT), in wall-clock ms. */
typedef struct pause_span {
	pid_t pid;
	int64_t from, to;
} pause_span;

/* Whether a call of pid over [in, out] ms met a pause of its process: the
 * pause came while it was inside, or ended at most `margin` ms before it
 * began (its process checked its lease before the pause, and called once
 * continued). */
static bool pause_touched(const pause_span *p, int np, unsigned margin, pid_t pid, int64_t in,
                          int64_t out)
{
	for (int i = 0; i < np; i++)
		if (p[i].pid == pid && p[i].from <= out && p[i].to + (int64_t)margin >= in)
			return true;
	return false;
}

/* Overlapping callbacks of one instance (see overlaps) that no pause
 * explains: once a pause outlasted the lease, the next owner calls the
 * participant while the paused process may be inside, or may call it as it
 * is continued (the fenced guard refuses the older fence). Without pauses,
 * every overlap counts. */
static int64_t unexplained_overlaps(db *ledger, const pause_span *p, int np, unsigned margin)
{
	rows *st = query(ledger,
	                 "WITH c AS (SELECT en.uid AS uid, en.pid AS pid, en.seq AS e, ex.seq AS x,"
	                 " en.at_ms AS e_ms, ex.at_ms AS x_ms, en.step AS step, en.phase AS phase,"
	                 " en.fence AS fence FROM calls en JOIN calls ex"
	                 " ON ex.kind = 1 AND ex.enter_seq = en.seq WHERE en.kind = 0)"
	                 " SELECT a.pid, a.e_ms, a.x_ms, a.fence, b.pid, b.e_ms, b.x_ms, b.fence,"
	                 " a.uid, a.step, a.phase FROM c a JOIN c b ON a.uid = b.uid"
	                 " AND a.e < b.e AND b.e < a.x",
	                 0, NULL);
	int64_t n = 0;
	while (rows_next(st)) {
		pid_t pa = (pid_t)rows_int(st, 0), pb = (pid_t)rows_int(st, 4);
		int64_t a_in = rows_int(st, 1), a_out = rows_int(st, 2);
		int64_t b_in = rows_int(st, 5), b_out = rows_int(st, 6);
		if (pause_touched(p, np, margin, pa, a_in, a_out) ||
		    pause_touched(p, np, margin, pb, b_in, b_out))
			continue;
		if (n++ < 5)
			printf("overlap: %s %s/%lld: pid %d fence %lld in %lld..%lld ms,"
			       " pid %d fence %lld in %lld..%lld ms\n",
			       rows_text(st, 8), rows_text(st, 9), (long long)rows_int(st, 10),
			       (int)pa, (long long)rows_int(st, 3), (long long)a_in,
			       (long long)a_out, (int)pb, (long long)rows_int(st, 7),
			       (long long)b_in, (long long)b_out);
	}
	rows_close(st);
	return n;
}

static int64_t effect(db *ledger, const char *uid, const char *step, const char *phase)
{
	char key[128];
	snprintf(key, sizeof key, "%s/%s/%s", uid, step, phase);
	rows *st = query(ledger, "SELECT n FROM effects WHERE key = ?", 1, (arg[]){ S(key) });
	int64_t n = rows_next(st) ? rows_int(st, 0) : 0;
	rows_close(st);
	return n;
}

/* Every instance of the store ended as its input says (k % 3 == 0: the pivot
 * fails and it is compensated), with each effect applied as the contract
 * says: a completed saga's four actions once each and no compensation; a
 * compensated saga's two compensatable actions (both ran before the pivot
 * failed) undone once each, its pivot and retriable step never applied. No
 * key anywhere took effect twice. */
static check_report check_effects(db *store, db *ledger)
{
	check_report r = { 0, 0, 0, "" };
	int64_t twice = query_int(ledger, 0, "SELECT count(*) FROM effects WHERE n <> 1", 0, 0);
	if (twice)
		violation(&r, "%lld keys took effect more than once", (long long)twice);
	rows *st = query(store, "SELECT uid, business_key, state FROM instances", 0, NULL);
	while (rows_next(st)) {
		const char *uid = rows_text(st, 0);
		const char *bkey = rows_text(st, 1);
		int state = (int)rows_int(st, 2);
		int wid = -1, k = -1;
		r.instances++;
		if (!bkey || sscanf(bkey, "w%d-%d", &wid, &k) != 2) {
			violation(&r, "%s: business key %s", uid, bkey ? bkey : "(null)");
			continue;
		}
		bool fails = k % 3 == 0;
		if (state != (fails ? SAGA_COMPENSATED : SAGA_COMPLETED))
			violation(&r, "%s (%s) ended in state %d", bkey, uid, state);
		for (int s = 0; s < NSTEPS; s++) {
			bool compensatable = s < 2;
			int64_t want_action = !fails || compensatable;
			int64_t want_comp = fails && compensatable;
			int64_t a = effect(ledger, uid, step_names[s], "action");
			int64_t c = effect(ledger, uid, step_names[s], "compensation");
			r.events += (int)(a + c);
			if (a != want_action || c != want_comp)
				violation(
				        &r,
				        "%s step %s: action applied %lld times, compensation %lld "
				        "(want %lld, %lld)",
				        bkey, step_names[s], (long long)a, (long long)c,
				        (long long)want_action, (long long)want_comp);
		}
	}
	rows_close(st);
	return r;
}

static void assert_effects_ok(db *store, db *ledger, int instances)
{
	check_report r = check_effects(store, ledger);
	printf("ledger: %d instances, %d effects, %d violations\n", r.instances, r.events,
	       r.violations);
	ck_assert_msg(r.violations == 0, "%d ledger violations; first: %s", r.violations, r.first);
	ck_assert_int_eq(r.instances, instances);
}

/* ------------------------------------------------------------------------ */
/* The checker catches doctored histories                                   */
/* ------------------------------------------------------------------------ */

/* Runs one statement on the store with ?1 = inst and ?2 = seq. */
static void doctor(db *store, const char *sql, int64_t inst, int64_t seq)
{
	rows *st = query(store, sql, 2, (arg[]){ I(inst), I(seq) });
	ck_assert(!rows_next(st));
	rows_close(st);
}

START_TEST(checker_rejects_doctored_histories)
{
	worker_args w = { .id = 0, .sagas = 6, .threads = 2, .until_final = 1 };
	expect_clean_exit(spawn(&w), 60000, "worker");
	db *store = open_db(store_path);
	assert_history_ok(store);

	/* One instance that completed; its first final action outcome. */
	int64_t inst =
	        query_int(store, 0, "SELECT id FROM instances WHERE state = 3 LIMIT 1", 0, 0);
	ck_assert_int_gt(inst, 0);
	int64_t end_seq = query_int(store, 0,
	                            "SELECT min(seq) FROM history WHERE instance = ?1 AND type = 3"
	                            " AND outcome = 1",
	                            inst, 0);
	ck_assert_int_gt(end_seq, 0);
	exec_sql(store, "CREATE TABLE intact AS SELECT * FROM history");

	/* An event of a newer owner, then the old fence again. */
	doctor(store,
	       "UPDATE history SET fence = fence + 1"
	       " WHERE instance = ?1 AND seq = ?2",
	       inst, end_seq);
	check_report r = check_history(store);
	ck_assert_int_ge(r.violations, 1); /* each later event of the old fence */
	ck_assert_msg(strstr(r.first, "fence") != NULL, "%s", r.first);

	/* A second final outcome of the same step and phase. */
	exec_sql(store, "DELETE FROM history; INSERT INTO history SELECT * FROM intact");
	assert_history_ok(store);
	doctor(store,
	       "INSERT INTO history(instance, seq, at, type, state, step, phase,"
	       " attempt, outcome, detail, fence) SELECT instance, seq + 1000, at,"
	       " type, state, step, phase, attempt, outcome, detail, fence"
	       " FROM history WHERE instance = ?1 AND seq = ?2",
	       inst, end_seq);
	r = check_history(store);
	ck_assert_int_eq(r.violations, 1);
	ck_assert_msg(strstr(r.first, "after its final outcome") != NULL, "%s", r.first);

	/* The same, after an operator command: a new series, accepted. */
	doctor(store,
	       "INSERT INTO history(instance, seq, at, type, state, step, phase,"
	       " attempt, outcome, detail, fence) SELECT instance, seq + 999, at, 7,"
	       " state, -1, 0, 0, 0, 'retry', fence FROM history"
	       " WHERE instance = ?1 AND seq = ?2",
	       inst, end_seq);
	assert_history_ok(store);

	/* An attempt started again after the final outcome. */
	exec_sql(store, "DELETE FROM history; INSERT INTO history SELECT * FROM intact");
	doctor(store,
	       "INSERT INTO history(instance, seq, at, type, state, step, phase,"
	       " attempt, outcome, detail, fence) SELECT instance, seq + 1000, at, 2,"
	       " state, step, phase, attempt + 1, 0, '', fence FROM history"
	       " WHERE instance = ?1 AND seq = ?2",
	       inst, end_seq);
	r = check_history(store);
	ck_assert_int_eq(r.violations, 1);
	ck_assert_msg(strstr(r.first, "attempt of step") != NULL, "%s", r.first);
	close_db(store);

	/* The ledger checks catch a duplicate effect, a missing compensation
	 * and an overlap. */
	db *ledger = open_db(ledger_path);
	store = open_db(store_path);
	assert_effects_ok(store, ledger, 6);
	ck_assert_int_eq(overlaps(ledger), 0);
	exec_sql(ledger, "UPDATE effects SET n = 2 WHERE key LIKE '%/reserve/action'");
	r = check_effects(store, ledger);
	ck_assert_int_gt(r.violations, 1);
	ck_assert_msg(strstr(r.first, "more than once") != NULL, "%s", r.first);
	exec_sql(ledger, "UPDATE effects SET n = 1");
	exec_sql(ledger, "DELETE FROM effects WHERE key LIKE '%/charge/compensation'");
	r = check_effects(store, ledger);
	ck_assert_int_eq(r.violations, 2); /* w0-0 and w0-3 were compensated */
	ck_assert_msg(strstr(r.first, "charge") != NULL, "%s", r.first);
	/* The first callback's exit moved after its instance's next callback. */
	exec_sql(ledger, "UPDATE calls SET seq = (SELECT max(seq) + 1 FROM calls)"
	                 " WHERE seq = (SELECT min(seq) FROM calls WHERE kind = 1)");
	ck_assert_int_ge(overlaps(ledger), 1);
	/* A pause explains it only when its process was the one inside. */
	pid_t worker = (pid_t)query_int(ledger, 0, "SELECT min(pid) FROM calls", 0, 0);
	pause_span elsewhere = { worker + 1, 0, INT64_MAX }, here = { worker, 0, INT64_MAX };
	ck_assert_int_ge(unexplained_overlaps(ledger, NULL, 0, 0), 1);
	ck_assert_int_ge(unexplained_overlaps(ledger, &elsewhere, 1, 0), 1);
	ck_assert_int_eq(unexplained_overlaps(ledger, &here, 1, 0), 0);
	close_db(store);
	close_db(ledger);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Processes registering one definition on a fresh store at once            */
/* ------------------------------------------------------------------------ */

static saga_step_result noop(saga_step_ctx *ctx, void *user)
{
	(void)ctx;
	(void)user;
	return SAGA_STEP_OK;
}

/* In a forked child: opens the store, says it is ready, waits at the gate,
 * registers. Exits 0, or 100 + the error's magnitude. */
static void register_at_gate(int ready, int gate)
{
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = store_path;
	o.deferred_start = 1;
	saga_engine *e = NULL;
	saga_definition *def = NULL;
	saga_step_spec spec = { "only", SAGA_STEP_COMPENSATABLE, noop, noop, NULL };
	int rc = saga_engine_open(&e, &o, NULL, 0);
	if (rc == SAGA_OK)
		rc = saga_definition_new(&def, "order", 1);
	if (rc == SAGA_OK)
		rc = saga_definition_add_step(def, &spec);
	char byte = 1;
	if (write(ready, &byte, 1) != 1)
		_exit(99);
	while (read(gate, &byte, 1) == -1 && errno == EINTR)
		;
	if (rc == SAGA_OK)
		rc = saga_engine_register(e, def);
	if (rc != SAGA_OK)
		fprintf(stderr, "pid %d: register: %s: %s\n", (int)getpid(), saga_strerror(rc),
		        saga_engine_errmsg(e));
	saga_definition_free(def);
	saga_engine_close(e);
	_exit(rc == SAGA_OK ? 0 : 100 - rc);
}

/* Any number of processes may open one store; each registering what it
 * runs must succeed, also all at the same moment on a fresh store (this
 * failed every round while store_put_definition read the stored snapshot
 * and inserted it in two autocommit statements: the losers got
 * SAGA_EEXISTS, "UNIQUE constraint failed"). */
START_TEST(concurrent_first_registration)
{
	enum { PROCS = 6, ROUNDS = 25 };
	if (sqlite_only("each round removes the store's files"))
		return;
	int failed_rounds = 0;
	for (int round = 0; round < ROUNDS; round++) {
		char path[sizeof store_path + 16];
		const char *suffix[] = { "", "-wal", "-shm", "-lock" };
		for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
			snprintf(path, sizeof path, "%s%s", store_path, suffix[i]);
			unlink(path);
		}
		int ready[2], gate[2];
		ck_assert_int_eq(pipe(ready), 0);
		ck_assert_int_eq(pipe(gate), 0);
		pid_t pids[PROCS];
		for (int i = 0; i < PROCS; i++) {
			pids[i] = fork();
			ck_assert_int_ge(pids[i], 0);
			if (pids[i] == 0) {
				close(ready[0]);
				close(gate[1]);
				register_at_gate(ready[1], gate[0]);
			}
		}
		close(ready[1]);
		close(gate[0]);
		char byte;
		for (int i = 0; i < PROCS; i++)
			ck_assert_int_eq(read(ready[0], &byte, 1), 1);
		close(gate[1]); /* all registers start now */
		close(ready[0]);
		int failed = 0;
		for (int i = 0; i < PROCS; i++) {
			int status = wait_for(pids[i], 0, 60000, "register");
			ck_assert_msg(WIFEXITED(status), "pid %d: status %#x", (int)pids[i],
			              status);
			failed += WEXITSTATUS(status) != 0;
		}
		failed_rounds += failed > 0;
	}
	printf("%d of %d rounds had a process whose registration failed\n", failed_rounds, ROUNDS);
	ck_assert_int_eq(failed_rounds, 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Kill test                                                                */
/* ------------------------------------------------------------------------ */

enum { KILL_WORKERS = 4, MAX_ORPHANS = 4096 };

typedef struct orphan {
	int64_t id, fence, kill_ms, due_ms, claim_delay_ms;
} orphan;

/* Stops the victim (so what it owns cannot change while it is read), notes
 * the unfinished instances its live epoch owns, and kills it. */
static int snapshot_and_kill(db *store, pid_t pid, orphan *out, int room, int64_t *kill_ms)
{
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	int status = wait_for(pid, WUNTRACED, 30000, "stop");
	ck_assert_msg(WIFSTOPPED(status), "pid %d ended before its kill: %#x", (int)pid, status);
	rows *st = query(store,
	                 "SELECT i.id, i.fence, i.due_at FROM instances i"
	                 " JOIN owners o ON i.owner = o.epoch"
	                 " WHERE o.pid = ?1 AND o.state = 0 AND i.state < 3",
	                 1, (arg[]){ I(pid) });
	int n = 0;
	while (n < room && rows_next(st)) {
		out[n].id = rows_int(st, 0);
		out[n].fence = rows_int(st, 1);
		out[n].due_ms = rows_int(st, 2);
		n++;
	}
	rows_close(st);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	status = wait_for(pid, 0, 30000, "kill");
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	*kill_ms = wall_ms();
	for (int i = 0; i < n; i++)
		out[i].kill_ms = *kill_ms;
	return n;
}

/* Waits until every orphan is claimed (its fence grew) and records how long
 * after it was both orphaned and due. */
static void await_takeover(db *store, orphan *o, int n, long limit_ms)
{
	for (int i = 0; i < n; i++) {
		int64_t from = o[i].due_ms > o[i].kill_ms ? o[i].due_ms : o[i].kill_ms;
		for (;;) {
			int64_t now = wall_ms();
			int64_t fence = query_int(
			        store, 0, "SELECT fence FROM instances WHERE id = ?1", o[i].id, 0);
			if (fence > o[i].fence) {
				o[i].claim_delay_ms = now > from ? now - from : 0;
				break;
			}
			ck_assert_msg(
			        now - from < limit_ms,
			        "instance %lld (fence %lld) not taken over %ld ms after its owner "
			        "was killed",
			        (long long)o[i].id, (long long)o[i].fence, limit_ms);
			nap_ms(2);
		}
	}
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Restarts the PostgreSQL server of tests/pg-run.sh as a crash would:
 * pg_ctl restart -m immediate (no shutdown checkpoint, every connection
 * cut), as the server's user. */
static void restart_server(void)
{
	const char *bin = getenv("SAGA_TEST_PGBIN"), *data = getenv("SAGA_TEST_PGDATA");
	const char *user = getenv("SAGA_TEST_PGUSER");
	ck_assert_msg(bin && data, "SAGA_TEST_PGBIN, SAGA_TEST_PGDATA: run through pg-run.sh");
	char pg_ctl[PATH_MAX], log[PATH_MAX];
	snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", bin);
	snprintf(log, sizeof log, "%s/../log", data);
	pid_t p = fork();
	ck_assert_int_ge(p, 0);
	if (p == 0) {
		const char *argv[] = { "runuser", "-u", user,        "--", pg_ctl, "-D",
			               data,      "-l", log,         "-w", "-t",   "60",
			               "restart", "-m", "immediate", NULL };
		const char *const *a = user && *user ? argv : argv + 4;
		execvp(a[0], (char *const *)a);
		_exit(127);
	}
	expect_clean_exit(p, 90000, "pg_ctl restart -m immediate");
}

/* The store, once a worker made it (its history table exists). */
static db *await_store(void)
{
	int64_t until = wall_ms() + 30000;
	for (;;) {
		ck_assert_msg(wall_ms() < until, "no store made");
		if (is_pg_name(store_path) || access(store_path, F_OK) == 0) {
			db *d = open_db(store_path);
			if (query_int(d, 0,
			              is_pg_name(store_path) ? "SELECT count(*) FROM pg_tables "
			                                       "WHERE tablename = 'history'"
			                                     : "SELECT count(*) FROM sqlite_master "
			                                       "WHERE name = 'history'",
			              0, 0) > 0)
				return d;
			close_db(d);
		}
		nap_ms(20);
	}
}

/* Four workers on one store, a seeded schedule of SIGKILLs (each victim
 * restarted); on PostgreSQL also SIGSTOPs of 0.5 to 2 leases and, a quarter of the way in,
 * the server restarted with pg_ctl restart -m immediate. One host (SQLite):
 * each orphan is claimed within a poll, the kernel saying at once that its
 * owner died. Many hosts (PostgreSQL): within its owner's lease, plus a
 * poll. */
START_TEST(kill_restart_takeover)
{
	const unsigned lease = 3000, margin = 1500;
	bool pg = is_pg_name(store_path);
	long seed = env_long("MP_SEED", 1), kills = env_long("MP_KILLS", 12);
	long sagas = env_long("MP_SAGAS", 150), slack = env_long("MP_SLACK_MS", 1000);
	long pauses = env_long("MP_PAUSES", pg ? 4 : 0);
	uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)seed;
	printf("kill test on %s: seed %ld, %ld kills, %ld pauses, %d workers x %ld sagas, "
	       "lease %u ms\n",
	       pg ? "PostgreSQL" : "SQLite", seed, kills, pauses, KILL_WORKERS, sagas, lease);

	worker_args w[KILL_WORKERS];
	pid_t pid[KILL_WORKERS];
	for (int i = 0; i < KILL_WORKERS; i++) {
		w[i] = (worker_args){ .id = i,
			              .sagas = (int)sagas,
			              .threads = 3,
			              .lease = lease,
			              .margin = margin,
			              .pace_ms = 60,
			              .step_ms = 80 };
		pid[i] = spawn(&w[i]);
	}
	db *store = await_store();

	static orphan orphans[MAX_ORPHANS];
	static pause_span paused[64];
	int norphans = 0, npaused = 0, nkills = 0;
	int64_t worst = 0;
	for (long k = 0; k < kills + pauses; k++) {
		nap_ms(200 + (unsigned)(rng_next(&rng) % 800));
		int v = (int)(rng_next(&rng) % KILL_WORKERS);
		if (pg && k == (kills + pauses) / 4) {
			int64_t t0 = wall_ms();
			restart_server();
			printf("server restarted (-m immediate) in %lld ms\n",
			       (long long)(wall_ms() - t0));
		}
		/* Pauses and kills interleaved, in seeded order. */
		bool pause = npaused < pauses && npaused < 64 &&
		             (nkills >= kills ||
		              (long)(rng_next(&rng) % (uint64_t)(kills + pauses)) < pauses);
		if (pause) {
			unsigned ms = lease / 2 + (unsigned)(rng_next(&rng) % (lease * 3 / 2));
			ck_assert_int_eq(kill(pid[v], SIGSTOP), 0);
			paused[npaused] = (pause_span){ pid[v], wall_ms(), 0 };
			nap_ms(ms);
			ck_assert_int_eq(kill(pid[v], SIGCONT), 0);
			paused[npaused].to = wall_ms();
			printf("pause %d: %lld..%lld ms\n", npaused,
			       (long long)paused[npaused].from, (long long)paused[npaused].to);
			printf("pause %d: worker %d (pid %d) stopped for %u ms\n", npaused, v,
			       (int)pid[v], ms);
			npaused++;
			continue;
		}
		int64_t kill_ms = 0;
		nkills++;
		int n = snapshot_and_kill(store, pid[v], orphans + norphans, MAX_ORPHANS - norphans,
		                          &kill_ms);
		/* A broken liveness check would leave them until the lease lapses
		 * (on one host), or forever: the limit here only keeps the test
		 * from hanging. */
		await_takeover(store, orphans + norphans, n, 4L * lease);
		int64_t kill_worst = 0;
		for (int i = norphans; i < norphans + n; i++)
			if (orphans[i].claim_delay_ms > kill_worst)
				kill_worst = orphans[i].claim_delay_ms;
		printf("kill %ld: worker %d (pid %d), %d orphans, claimed within %lld ms\n", k, v,
		       (int)pid[v], n, (long long)kill_worst);
		if (kill_worst > worst)
			worst = kill_worst;
		norphans += n;
		nap_ms((unsigned)(rng_next(&rng) % 300));
		pid[v] = spawn(&w[v]);
	}
	/* One host: the kernel's word (the owner's lock byte) is at once. */
	int64_t bound = pg ? (int64_t)lease + SAGA_POLL_MS + slack : SAGA_POLL_MS + slack;
	printf("%d orphans in all; the slowest claimed %lld ms after its owner died "
	       "(bound: %s%u ms poll + %ld ms slack)\n",
	       norphans, (long long)worst, pg ? "lease + " : "", SAGA_POLL_MS, slack);
	ck_assert_int_gt(norphans, 0);
	if (!pg)
		ck_assert_msg(worst <= bound, "an orphan waited %lld ms for its takeover",
		              (long long)worst);

	for (int i = 0; i < KILL_WORKERS; i++)
		ck_assert_int_eq(kill(pid[i], SIGTERM), 0);
	for (int i = 0; i < KILL_WORKERS; i++)
		expect_clean_exit(pid[i], 60000, "stop worker");

	/* A clean run starts whatever a killed worker had not, and ends all. */
	worker_args last = { .id = 0,
		             .ids = KILL_WORKERS,
		             .sagas = (int)sagas,
		             .threads = 4,
		             .lease = lease,
		             .margin = margin,
		             .until_final = 1 };
	expect_clean_exit(spawn(&last), 120000, "final worker");

	db *ledger = open_db(ledger_path);
	assert_effects_ok(store, ledger, KILL_WORKERS * (int)sagas);
	ck_assert_int_eq(unexplained_overlaps(ledger, paused, npaused, margin), 0);
	assert_history_ok(store);

	/* From the history: each orphan's first event under a newer fence came
	 * within the bound of its owner's death (or of its due time); on one
	 * host, within one lease whatever the poll. */
	int64_t worst_at = 0;
	for (int i = 0; i < norphans; i++) {
		int64_t at =
		        query_int(store, INT64_MAX,
		                  "SELECT min(at) FROM history WHERE instance = ?1 AND fence > ?2",
		                  orphans[i].id, orphans[i].fence);
		int64_t from = orphans[i].due_ms > orphans[i].kill_ms ? orphans[i].due_ms
		                                                      : orphans[i].kill_ms;
		ck_assert_msg(at != INT64_MAX, "instance %lld: no event of a newer owner",
		              (long long)orphans[i].id);
		if (at - from > worst_at)
			worst_at = at - from;
		ck_assert_msg(at - from <= (pg ? bound : (int64_t)lease),
		              "instance %lld: first event of a newer owner %lld ms after the kill",
		              (long long)orphans[i].id, (long long)(at - from));
	}
	printf("history: the slowest orphan's first event of a newer owner came %lld ms after "
	       "its owner died\n",
	       (long long)worst_at);
	printf("ledger: %lld callbacks, %lld effects, %lld overlaps (all of paused calls)\n",
	       (long long)query_int(ledger, 0, "SELECT count(*) FROM calls WHERE kind = 0", 0, 0),
	       (long long)query_int(ledger, 0, "SELECT sum(n) FROM effects", 0, 0),
	       (long long)overlaps(ledger));
	close_db(ledger);
	close_db(store);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Zombie test                                                              */
/* ------------------------------------------------------------------------ */

typedef struct stopped_call {
	int64_t seq, at_ms, fence;
	char uid[64];
} stopped_call;

/* The paused process's open call: its last enter row without an exit. */
static stopped_call stopped_call_of(db *ledger, pid_t pid)
{
	stopped_call c = { 0, 0, 0, "" };
	rows *st = query(ledger,
	                 "SELECT seq, at_ms, fence, uid FROM calls en"
	                 " WHERE kind = 0 AND pid = ?1 AND step = 'charge'"
	                 " AND phase = 0 AND NOT EXISTS (SELECT 1 FROM calls ex"
	                 " WHERE ex.kind = 1 AND ex.enter_seq = en.seq)"
	                 " ORDER BY seq DESC LIMIT 1",
	                 1, (arg[]){ I(pid) });
	ck_assert(rows_next(st));
	c.seq = rows_int(st, 0);
	c.at_ms = rows_int(st, 1);
	c.fence = rows_int(st, 2);
	snprintf(c.uid, sizeof c.uid, "%s", rows_text(st, 3));
	rows_close(st);
	return c;
}

static int64_t call_verdict(db *ledger, int64_t enter_seq)
{
	return query_int(ledger, -100,
	                 "SELECT verdict FROM calls WHERE kind = 1 AND enter_seq = ?1", enter_seq,
	                 0);
}

static int64_t instance_of_uid(db *store, const char *uid)
{
	rows *st = query(store, "SELECT id FROM instances WHERE uid = ?", 1, (arg[]){ S(uid) });
	ck_assert(rows_next(st));
	int64_t id = rows_int(st, 0);
	rows_close(st);
	return id;
}

/* Starts a peer worker (2 threads, peer_sagas sagas of its own), then the
 * sleeper (worker 0, 4 sagas if it has threads, else 3), which stops itself
 * in its first charge action; returns the sleeper once it is stopped. */
static pid_t start_sleeper(unsigned lease, unsigned margin, int peer_sagas, int threads,
                           pid_t *peer)
{
	worker_args p = {
		.id = 1, .sagas = peer_sagas, .threads = 2, .lease = lease, .margin = margin
	};
	worker_args z = { .id = 0,
		          .sagas = threads ? 4 : 3,
		          .threads = threads,
		          .lease = lease,
		          .margin = margin,
		          .until_final = 1,
		          .stop = "charge:action" };
	*peer = spawn(&p);
	pid_t pid = spawn(&z);
	int status = wait_for(pid, WUNTRACED, 60000, "self-stop");
	ck_assert_msg(WIFSTOPPED(status), "the worker ended instead of stopping: %#x", status);
	return pid;
}

/* A pause well under the lease margin: the paused process keeps its
 * instances, nobody else calls their participants meanwhile. */
START_TEST(zombie_pause_under_margin)
{
	const unsigned lease = 3000, margin = 2000, pause = 300;
	pid_t p = 0;
	pid_t z = start_sleeper(lease, margin, 4, 2, &p);
	nap_ms(pause);
	ck_assert_int_eq(kill(z, SIGCONT), 0);
	int64_t cont_ms = wall_ms();

	db *ledger = open_db(ledger_path);
	stopped_call c = stopped_call_of(ledger, z);
	int64_t paused = cont_ms - c.at_ms;
	expect_clean_exit(z, 60000, "paused worker");
	ck_assert_int_eq(kill(p, SIGTERM), 0);
	expect_clean_exit(p, 60000, "peer");

	printf("paused %lld ms inside a callback (margin %u ms)\n", (long long)paused, margin);
	db *store = open_db(store_path);
	assert_effects_ok(store, ledger, 8);
	assert_history_ok(store);
	if (paused >= (int64_t)margin) {
		/* The machine was too slow for the premise: nothing to conclude. */
		printf("pause reached the margin; the no-overlap check is skipped\n");
	} else {
		ck_assert_int_eq(overlaps(ledger), 0);
		ck_assert_int_eq(call_verdict(ledger, c.seq), SAGA_GUARD_PROCEED);
		/* Nobody took the instance over: one fence all along. */
		ck_assert_int_eq(
		        query_int(store, -1,
		                  "SELECT count(DISTINCT fence) FROM history WHERE instance = ?1",
		                  instance_of_uid(store, c.uid), 0),
		        1);
	}
	close_db(store);
	close_db(ledger);
}
END_TEST

/* A pause past the lease. The paused worker is caller-driven (threads 0) so
 * that no store transaction of its own is open while it is stopped: a
 * stopped process holding SQLite's one write lock would stall every other
 * process until it is continued. */
START_TEST(zombie_pause_past_lease)
{
	const unsigned lease = 1000, margin = 500;
	pid_t p = 0;
	pid_t z = start_sleeper(lease, margin, 0, 0, &p);

	db *ledger = open_db(ledger_path);
	db *store = open_db(store_path);
	stopped_call c = stopped_call_of(ledger, z);
	int64_t id = instance_of_uid(store, c.uid);
	int64_t old_epoch =
	        query_int(store, 0, "SELECT min(epoch) FROM owners WHERE pid = ?1", z, 0);

	/* The peer takes the instance over once the lease lapses, calls the
	 * same participant under a newer fence, and ends the saga. */
	int64_t until = wall_ms() + 30000;
	int64_t taken_seq = 0;
	while (!taken_seq || query_int(store, -1, "SELECT state FROM instances WHERE id = ?1", id,
	                               0) < SAGA_COMPLETED) {
		ck_assert_msg(wall_ms() < until, "instance %lld not taken over and ended",
		              (long long)id);
		rows *st = query(ledger,
		                 "SELECT en.seq FROM calls en JOIN calls ex"
		                 " ON ex.kind = 1 AND ex.enter_seq = en.seq"
		                 " WHERE en.kind = 0 AND en.uid = ? AND"
		                 " en.step = 'charge' AND en.phase = 0"
		                 " AND en.fence > ? ORDER BY en.seq LIMIT 1",
		                 2, (arg[]){ S(c.uid), I(c.fence) });
		if (rows_next(st))
			taken_seq = rows_int(st, 0);
		rows_close(st);
		nap_ms(10);
	}
	int64_t taken_ms =
	        query_int(ledger, 0, "SELECT at_ms FROM calls WHERE seq = ?1", taken_seq, 0);
	ck_assert_int_eq(call_verdict(ledger, taken_seq), SAGA_GUARD_PROCEED);
	printf("paused callback (fence %lld) called again under a newer fence %lld ms later "
	       "(lease %u ms)\n",
	       (long long)c.fence, (long long)(taken_ms - c.at_ms), lease);
	ck_assert_int_le(taken_ms - c.at_ms,
	                 (int64_t)lease + SAGA_POLL_MS + env_long("MP_SLACK_MS", 1000));
	/* Not before the lease lapsed: the paused callback was invoked (after its
	 * ATTEMPT_START) with at least the margin of lease left. */
	int64_t start_at = query_int(store, 0,
	                             "SELECT max(at) FROM history WHERE instance = ?1 AND type = 2"
	                             " AND step = 1 AND phase = 0 AND fence = ?2",
	                             id, c.fence);
	int64_t newer_at = query_int(
	        store, 0, "SELECT min(at) FROM history WHERE instance = ?1 AND fence > ?2", id,
	        c.fence);
	ck_assert_int_gt(start_at, 0);
	ck_assert_msg(newer_at >= start_at + (int64_t)margin,
	              "taken over %lld ms after the paused attempt started, inside the margin",
	              (long long)(newer_at - start_at));
	int64_t last_seq_before =
	        query_int(store, 0, "SELECT max(seq) FROM history WHERE instance = ?1", id, 0);

	/* Continued, the zombie finishes its callback: the guard refuses its
	 * older fence, and the engine discards its answer. */
	ck_assert_int_eq(kill(z, SIGCONT), 0);
	expect_clean_exit(z, 60000, "continued worker");
	ck_assert_int_eq(kill(p, SIGTERM), 0);
	expect_clean_exit(p, 60000, "peer");

	ck_assert_int_eq(call_verdict(ledger, c.seq), SAGA_GUARD_STALE);
	ck_assert_int_eq(effect(ledger, c.uid, "charge", "action"), 1);
	/* The callbacks overlapped (the pause passed the margin)... */
	ck_assert_int_ge(overlaps(ledger), 1);
	/* ...but the store holds nothing of the zombie's after the takeover:
	 * the ended instance's history did not grow, its old epoch is dead and
	 * owns nothing, and the process went on under a new epoch. */
	ck_assert_int_eq(
	        query_int(store, 0, "SELECT max(seq) FROM history WHERE instance = ?1", id, 0),
	        last_seq_before);
	ck_assert_int_eq(
	        query_int(store, -1, "SELECT state FROM owners WHERE epoch = ?1", old_epoch, 0), 1);
	ck_assert_int_eq(query_int(store, -1, "SELECT count(*) FROM instances WHERE owner = ?1",
	                           old_epoch, 0),
	                 0);
	printf("the paused process registered %lld times in all\n",
	       (long long)query_int(store, 0, "SELECT count(*) FROM owners WHERE pid = ?1", z, 0));
	assert_effects_ok(store, ledger, 3);
	assert_history_ok(store);
	close_db(store);
	close_db(ledger);
}
END_TEST

/* A pause past the lease of a process whose workers have attempts handed
 * to them (one worker thread, 8 sagas, steps of 100 ms: the thread's list
 * holds the round's other attempts while it is stopped inside one).
 * Continued, the process must begin none of them: its lease lapsed and a
 * peer owns their instances, under newer fences. PostgreSQL only: on SQLite
 * the stopped driver may hold the one write lock, and the peer waits. */
START_TEST(zombie_workers_begin_nothing_stale)
{
	const unsigned lease = 1000, margin = 500;
	if (!is_pg_name(store_path)) {
		printf("skipped on SQLite: a stopped driver may hold the write lock\n");
		return;
	}
	worker_args pw = { .id = 1, .sagas = 0, .threads = 2, .lease = lease, .margin = margin };
	worker_args zw = { .id = 0,
		           .sagas = 8,
		           .threads = 1,
		           .lease = lease,
		           .margin = margin,
		           .step_ms = 100,
		           .until_final = 1,
		           .stop = "charge:action" };
	pid_t p = spawn(&pw);
	pid_t z = spawn(&zw);
	int status = wait_for(z, WUNTRACED, 60000, "self-stop");
	ck_assert_msg(WIFSTOPPED(status), "the worker ended instead of stopping: %#x", status);
	/* Past the lease, and long enough for the peer to take everything. */
	nap_ms(4 * lease);
	int64_t cont_ms = wall_ms();
	ck_assert_int_eq(kill(z, SIGCONT), 0);
	expect_clean_exit(z, 60000, "continued worker");
	ck_assert_int_eq(kill(p, SIGTERM), 0);
	expect_clean_exit(p, 60000, "peer");

	db *ledger = open_db(ledger_path);
	db *store = open_db(store_path);
	/* Calls the continued process began under a fence older than one its
	 * instance had already been called with by then. */
	int64_t stale = query_int(ledger, -1,
	                          "SELECT count(*) FROM calls en WHERE en.kind = 0"
	                          " AND en.pid = ?1 AND en.at_ms >= ?2 AND EXISTS (SELECT 1"
	                          " FROM calls nw WHERE nw.kind = 0 AND nw.uid = en.uid"
	                          " AND nw.seq < en.seq AND nw.fence > en.fence)",
	                          z, cont_ms);
	printf("the continued process began %lld callbacks, %lld under a stale fence\n",
	       (long long)query_int(ledger, -1,
	                            "SELECT count(*) FROM calls WHERE kind = 0 AND pid = ?1"
	                            " AND at_ms >= ?2",
	                            z, cont_ms),
	       (long long)stale);
	assert_effects_ok(store, ledger, 8);
	assert_history_ok(store);
	ck_assert_int_eq(stale, 0);
	close_db(store);
	close_db(ledger);
}
END_TEST

static TCase *add_case(Suite *s, const char *name, double timeout_s)
{
	TCase *tc = tcase_create(name);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *multiproc_suite(void)
{
	Suite *s = suite_create("multiproc");
	tcase_add_test(add_case(s, "checker", 90), checker_rejects_doctored_histories);
	tcase_add_test(add_case(s, "register", 120), concurrent_first_registration);
	tcase_add_test(add_case(s, "kill", 240), kill_restart_takeover);
	TCase *tc = add_case(s, "zombie", 120);
	tcase_add_test(tc, zombie_pause_under_margin);
	tcase_add_test(tc, zombie_pause_past_lease);
	tcase_add_test(add_case(s, "zombie-workers", 120), zombie_workers_begin_nothing_stale);
	return s;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	return run_suite(multiproc_suite());
}
