/* The conformance suite of the store interface (lib/store.h): what every
 * backend must do, checked only through its `const store_ops *`, never the
 * store_* functions. Two handles opened on one store act as two owners in
 * one process; leases lapse in real time (a short lease, a sleep past it).
 *
 * Usage: test-store-conformance [BACKEND]
 *   BACKEND names an entry of `backends` below (default: the first). A
 *   backend that cannot run here (its server is not configured) exits 77,
 *   which meson counts as skipped.
 * test-store-conformance --mutant NAME
 *   runs the suite on a deliberately broken variant of the SQLite backend
 *   and succeeds only when every test that should catch it fails: a test
 *   that cannot fail proves nothing.
 *
 * A new backend adds one line to `backends`: its ops table, how to make a
 * fresh empty store (a temporary file for SQLite; for a server, a URI from
 * the environment and a new schema or database), how to remove it, and
 * whether an owner whose handle closed without retiring is known dead at
 * once (SQLite's kernel lock on one host) or only when its lease lapses.
 * SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* CLOCK_BOOTTIME */
#include "test-common.h"

#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the backends ---- */

typedef struct backend {
	const char *name;
	const store_ops *ops;
	/* Can it run here? NULL = always. */
	bool (*available)(void);
	/* Writes the name (path or URI) of a fresh, empty store to uri. */
	void (*fresh)(char *uri, size_t size);
	/* Removes what fresh made. */
	void (*drop)(const char *uri);
	/* An owner whose handle closed without retiring is reaped at once
	 * (not only once its lease lapses). */
	bool closed_is_dead;
} backend;

static char sqlite_dir[256];

static void sqlite_fresh(char *uri, size_t size)
{
	tmpdir_make(sqlite_dir, sizeof(sqlite_dir));
	snprintf(uri, size, "%s/store.db", sqlite_dir);
}

static void sqlite_drop(const char *uri)
{
	(void)uri;
	tmpdir_remove(sqlite_dir);
}

#ifdef SAGA_HAVE_POSTGRESQL
/* A fresh database on the server of SAGA_TEST_PG (tests/pg-run.sh starts
 * one), given to the backend as its conninfo. */
static bool pg_available(void)
{
	const char *server = getenv("SAGA_TEST_PG");
	return server && *server;
}

static char pg_store[512];

static void pg_fresh(char *out, size_t size)
{
	pg_db_fresh(pg_store, sizeof(pg_store));
	ck_assert_int_lt(snprintf(out, size, "%s", pg_store + strlen("postgresql:")), (int)size);
}

static void pg_drop(const char *conninfo)
{
	(void)conninfo;
	pg_db_drop(pg_store);
}
#endif

static const backend backends[] = {
	{ "sqlite", &store_sqlite_ops, NULL, sqlite_fresh, sqlite_drop, true },
#ifdef SAGA_HAVE_POSTGRESQL
	/* An owner is dead only once its lease lapses: a closed session is
	 * not a death the store can see on another host. */
	{ "postgresql", &store_pg_ops, pg_available, pg_fresh, pg_drop, false },
#endif
};

/* The backend under test, its table, and the fixture's store. */
static const backend *be;
static const store_ops *ops;
static char uri[512];

/* The handles a test opened and has not closed: a failing test leaves
 * them to the teardown (without fork, the test's process goes on). */
static saga_store *handles[8];

static void setup(void)
{
	be->fresh(uri, sizeof(uri));
}

static void teardown(void)
{
	for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
		if (handles[i])
			ops->close(handles[i]);
		handles[i] = NULL;
	}
	be->drop(uri);
}

/* ---- helpers ---- */

/* The fixture's store as test_store_exec names it. */
static const char *store_name(void)
{
#ifdef SAGA_HAVE_POSTGRESQL
	if (ops == &store_pg_ops)
		return pg_store;
#endif
	return uri;
}

#define DEF  "d"
#define LONG 600000u /* ms: a lease that never lapses during a test */
#define SHORT \
	500u                     /* ms: one that lapses while the test sleeps, and outlasts
                                  * a slow machine's pause between two rounds */
#define T0      1700000000000ull /* a wall-clock time (ms) for due times */
#define BUSY_MS 10000u

/* Fails the test with the store's message unless `call` gives SAGA_OK. */
#define OK(s, call)                                                                     \
	do {                                                                            \
		int rc_ = (call);                                                       \
		ck_assert_msg(rc_ == SAGA_OK, "%s: %s (%s)", #call, saga_strerror(rc_), \
		              ops->errmsg(s));                                          \
	} while (0)

static saga_store *open_store(void)
{
	saga_store *s = NULL;
	char err[512] = "";
	int rc = ops->open(&s, uri, SAGA_DURABILITY_NORMAL, BUSY_MS, &saga_default_alloc, err,
	                   sizeof(err));
	ck_assert_msg(rc == SAGA_OK && s, "open %s: %s (%s)", uri, saga_strerror(rc), err);
	size_t i = 0;
	while (i < sizeof(handles) / sizeof(handles[0]) - 1 && handles[i])
		i++;
	ck_assert_ptr_null(handles[i]);
	handles[i] = s;
	return s;
}

static void close_store(saga_store *s)
{
	for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++)
		if (handles[i] == s)
			handles[i] = NULL;
	ops->close(s);
}

/* Registers s as a new owner serving (DEF, 1); returns its epoch. */
static int64_t new_owner(saga_store *s, uint64_t lease_ms)
{
	OK(s, ops->register_owner(s, lease_ms));
	int64_t e = ops->epoch(s);
	ck_assert_int_gt(e, 0);
	OK(s, ops->serve(s, DEF, 1));
	return e;
}

static void nap_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleeps past a lease of `ms` renewed before the call, whatever the
 * scheduler does: a sleep is never shorter than asked. */
static void outlive(unsigned ms)
{
	nap_ms(ms + 50);
}

/* A row of definition (name, version) in `state`, due at `due`, held by
 * `owner` (0 = the pool) under `fence`. */
static saga_row make_row(const char *name, int version, int state, uint64_t due, int64_t owner,
                         int64_t fence)
{
	static unsigned long n;
	saga_row r;
	memset(&r, 0, sizeof(r));
	snprintf(r.uid, sizeof(r.uid), "%032lx", ++n);
	snprintf(r.def_name, sizeof(r.def_name), "%s", name);
	r.def_version = version;
	r.state = state;
	r.phase = SAGA_PHASE_ACTION;
	r.due_at = due;
	r.created_at = r.updated_at = T0;
	r.owner = owner;
	r.fence = fence;
	r.next_seq = 1;
	r.context = (char *)"{}";
	return r;
}

/* Inserts a row in a transaction of its own; returns its id. */
static int64_t put_row(saga_store *s, saga_row r)
{
	OK(s, ops->begin(s));
	OK(s, ops->insert(s, &r));
	OK(s, ops->commit(s));
	ck_assert_int_gt(r.id, 0);
	return r.id;
}

/* An instance as the store holds it (context not loaded). */
static saga_row get_row(saga_store *s, int64_t id)
{
	saga_row r;
	OK(s, ops->load(s, &r, id, NULL));
	ck_assert_int_eq(r.id, id);
	return r;
}

/* The context of an instance as stored, in buf (the copy the backend
 * allocates is freed at once: a failing test leaks nothing). */
static const char *context_of(saga_store *s, int64_t id, char *buf, size_t size)
{
	saga_row r;
	OK(s, ops->load(s, &r, id, &saga_default_alloc));
	saga_fmt(buf, size, "%s", r.context ? r.context : "(none)");
	free(r.context);
	return buf;
}

/* A definition's snapshot as stored, in buf. */
static const char *snapshot_of(saga_store *s, const char *name, int version, char *buf, size_t size)
{
	char *snap = NULL;
	OK(s, ops->get_definition(s, &snap, name, version, &saga_default_alloc));
	saga_fmt(buf, size, "%s", snap);
	free(snap);
	return buf;
}

/* Updates a row in a transaction of its own: SAGA_OK, or the refusal (the
 * transaction rolled back). A backend may refuse a fenced write when it is
 * made or, when it sends writes in a batch, at the commit: either counts. */
static int try_update(saga_store *s, saga_row *r)
{
	OK(s, ops->begin(s));
	int rc = ops->update(s, r);
	if (rc == SAGA_OK)
		rc = ops->commit(s);
	else
		ops->rollback(s);
	return rc;
}

/* The ids a claim or a scan reports. */
typedef struct ids {
	int64_t v[512];
	int n;
} ids;

static int add_id(int64_t id, void *user)
{
	ids *l = user;
	if (l->n < (int)(sizeof(l->v) / sizeof(l->v[0])))
		l->v[l->n++] = id;
	return 0;
}

static bool has_id(const ids *l, int64_t id)
{
	for (int i = 0; i < l->n; i++)
		if (l->v[i] == id)
			return true;
	return false;
}

/* Reaps and claims (up to `limit`, due by `now`) in one transaction. */
static ids claim(saga_store *s, uint64_t now, int limit)
{
	ids l = { .n = 0 };
	int64_t reaped = 0;
	int live = 0;
	OK(s, ops->begin(s));
	OK(s, ops->reap(s, &reaped, &live));
	OK(s, ops->claim(s, now, limit, add_id, &l));
	OK(s, ops->commit(s));
	return l;
}

/* ---- owners and leases ---- */

/* Every registration gives an epoch never given before: again on the same
 * handle, on another, after a retirement, after a reaped lapse, after every
 * handle closed. */
START_TEST(epochs_are_never_reused)
{
	int64_t seen[16];
	int n = 0;
	saga_store *a = open_store(), *b = open_store();
	seen[n++] = new_owner(a, LONG);
	seen[n++] = new_owner(a, LONG);
	seen[n++] = new_owner(b, LONG);
	OK(a, ops->retire(a));
	ck_assert_int_eq(ops->epoch(a), 0);
	seen[n++] = new_owner(a, SHORT);
	outlive(SHORT);
	int64_t reaped = 0;
	int live = 0;
	OK(b, ops->reap(b, &reaped, &live));
	ck_assert_int_eq(reaped, 1);
	seen[n++] = new_owner(a, LONG);
	OK(a, ops->retire(a));
	OK(b, ops->retire(b));
	close_store(a);
	close_store(b);
	saga_store *c = open_store();
	seen[n++] = new_owner(c, LONG);
	close_store(c);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			ck_assert_msg(seen[i] != seen[j], "epoch %lld given twice (#%d and #%d)",
			              (long long)seen[i], i, j);
}
END_TEST

/* begin renews the lease: rounds every quarter lease keep an owner alive
 * for three leases, and a peer does not reap it. A round held up by more
 * than half a lease (a loaded machine) starts the run again, so that only
 * a missing renewal fails it. */
START_TEST(begin_renews_the_lease)
{
	enum { L = 1000, ROUNDS = 12 };
	saga_store *a = open_store(), *b = open_store();
	new_owner(b, LONG);
	for (int run = 0;; run++) {
		ck_assert_msg(run < 5, "the machine stalled in every run");
		new_owner(a, L);
		uint64_t last = mono_ms();
		bool late = false;
		int i;
		for (i = 0; i < ROUNDS && !late; i++) {
			nap_ms(L / 4);
			int rc = ops->begin(a);
			uint64_t now = mono_ms();
			late = now - last > L / 2;
			last = now;
			if (rc != SAGA_OK) {
				ck_assert_msg(late, "round %d: begin: %s (%s)", i,
				              saga_strerror(rc), ops->errmsg(a));
				break;
			}
			uint64_t left = ops->lease_left(a);
			OK(a, ops->commit(a));
			ck_assert_uint_le(left, L);
		}
		if (late)
			continue;
		int64_t reaped = -1;
		int live = -1;
		OK(b, ops->reap(b, &reaped, &live));
		if (mono_ms() - last > L / 2)
			continue;
		ck_assert_int_eq(reaped, 0);
		ck_assert_int_eq(live, 1);
		break;
	}
	close_store(a);
	close_store(b);
}
END_TEST

/* A lapsed lease is never renewed: begin gives SAGA_EFENCED, leaves no
 * transaction open, and keeps giving it, before and after a peer reaps the
 * owner and takes its instance. */
START_TEST(lapsed_lease_is_never_renewed)
{
	saga_store *a = open_store(), *b = open_store();
	new_owner(a, SHORT);
	int64_t id = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ops->epoch(a), 1));
	outlive(SHORT);
	ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
	ck_assert_int_eq(ops->lease_left(a), 0);
	ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
	/* The refused begin left nothing open: a peer writes at once. */
	int64_t eb = new_owner(b, LONG);
	ids got = claim(b, T0, 10);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], id);
	ck_assert_int_eq(get_row(b, id).owner, eb);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
		nap_ms(SHORT / 4);
	}
	ck_assert_int_eq(ops->lease_left(a), 0);
	close_store(a);
	close_store(b);
}
END_TEST

/* A renewal counts only once its transaction commits: a round rolled back
 * leaves the lease as the last commit made it (the store's row was not
 * renewed either), so that no callback starts on a lease nobody holds. */
START_TEST(rolled_back_renewal_does_not_count)
{
	saga_store *a = open_store();
	new_owner(a, SHORT);
	nap_ms(300);
	OK(a, ops->begin(a));
	ops->rollback(a);
	/* The registration's lease, 300 ms older: never more than 200 left. */
	ck_assert_uint_le(ops->lease_left(a), SHORT - 300);
	uint64_t t0 = mono_ms();
	OK(a, ops->begin(a));
	OK(a, ops->commit(a));
	uint64_t left = ops->lease_left(a);
	if (mono_ms() - t0 < 100) /* else the machine stalled: nothing to tell */
		ck_assert_uint_gt(left, SHORT - 200);
	close_store(a);
}
END_TEST

/* Reaping: an owner whose lease lapsed is marked dead and its unfinished
 * instances go to the pool (their fence unchanged until claimed); a live
 * owner, and ended instances, are left alone. */
START_TEST(reap_returns_a_lapsed_owners_instances)
{
	saga_store *a = open_store(), *b = open_store(), *c = open_store();
	int64_t ea = new_owner(a, SHORT), ec = new_owner(c, LONG);
	int64_t run = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 3));
	int64_t wait = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 5, ea, 1));
	int64_t comp = put_row(a, make_row(DEF, 1, SAGA_COMPENSATING, 0, ea, 2));
	int64_t held = put_row(c, make_row(DEF, 1, SAGA_RUNNING, 0, ec, 1));
	outlive(SHORT);
	new_owner(b, LONG);
	int64_t reaped = 0;
	int live = 0;
	OK(b, ops->reap(b, &reaped, &live));
	ck_assert_int_eq(reaped, 1);
	ck_assert_int_eq(live, 1);
	int64_t ids_[] = { run, wait, comp };
	int64_t fences[] = { 3, 1, 2 };
	for (int i = 0; i < 3; i++) {
		saga_row r = get_row(b, ids_[i]);
		ck_assert_int_eq(r.owner, 0);
		ck_assert_int_eq(r.fence, fences[i]);
	}
	ck_assert_int_eq(get_row(b, held).owner, ec);
	/* Once dead, always dead: neither reaped again nor renewed. */
	OK(b, ops->reap(b, &reaped, &live));
	ck_assert_int_eq(reaped, 0);
	ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
	close_store(a);
	close_store(b);
	close_store(c);
}
END_TEST

/* An owner whose handle closed without retiring: reaped at once where the
 * backend can tell a closed handle (kernel locks on one host), and in any
 * case once its lease lapsed. */
START_TEST(closed_owner_is_reaped)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, be->closed_is_dead ? LONG : SHORT);
	int64_t id = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	new_owner(b, LONG);
	close_store(a);
	if (!be->closed_is_dead)
		outlive(SHORT);
	ids got = claim(b, T0, 10);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], id);
	close_store(b);
}
END_TEST

/* Retiring hands everything unfinished back at once: a peer claims it
 * without reaping, and a retired owner is not a dead one. */
START_TEST(retire_hands_back_at_once)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	int64_t run = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	int64_t wait = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 - 1, ea, 1));
	int64_t later = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 1000, ea, 1));
	saga_row stale = get_row(a, run);
	OK(a, ops->retire(a));
	ck_assert_int_eq(ops->epoch(a), 0);
	ck_assert_int_eq(get_row(b, later).owner, 0);
	ids got = { .n = 0 };
	int64_t reaped = -1;
	int live = -1;
	OK(b, ops->begin(b));
	OK(b, ops->claim(b, T0, 10, add_id, &got));
	OK(b, ops->reap(b, &reaped, &live));
	OK(b, ops->commit(b));
	ck_assert_int_eq(got.n, 2);
	ck_assert(has_id(&got, run) && has_id(&got, wait));
	ck_assert_int_eq(reaped, 0);
	ck_assert_int_eq(live, 0);
	ck_assert_int_eq(get_row(b, run).owner, eb);
	ck_assert_int_eq(get_row(b, run).fence, 2);
	/* What the retired owner still holds in memory is refused. */
	stale.step = 7;
	ck_assert_int_eq(try_update(a, &stale), SAGA_EFENCED);
	ck_assert_int_eq(get_row(b, run).step, 0);
	close_store(a);
	close_store(b);
}
END_TEST

/* ---- fenced writes ---- */

/* What fencing is for: owner A's lease lapsed, B reaped it and claimed
 * its instance; A, registered anew, writes the row it had loaded: refused
 * with SAGA_EFENCED, and the store keeps B's row exactly. */
START_TEST(fenced_update_after_peer_claim)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, SHORT);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	r.context = (char *)"{\"by\":\"a\"}";
	int64_t id = put_row(a, r);
	saga_row mine = get_row(a, id);
	outlive(SHORT);
	int64_t eb = new_owner(b, LONG);
	ids got = claim(b, T0, 10);
	ck_assert_int_eq(got.n, 1);
	saga_row theirs = get_row(b, id);
	ck_assert_int_eq(theirs.owner, eb);
	ck_assert_int_eq(theirs.fence, 2);

	ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
	int64_t ea2 = new_owner(a, LONG);
	ck_assert_int_ne(ea2, ea);
	/* Every kind of change: progress only, and state and due time too. */
	for (int kind = 0; kind < 2; kind++) {
		saga_row w = mine;
		w.step = 3;
		w.attempt = 9;
		w.updated_at = T0 + 77;
		saga_fmt(w.error, sizeof(w.error), "zombie");
		w.context = (char *)"{\"by\":\"zombie\"}";
		if (kind == 1) {
			w.state = SAGA_COMPLETED;
			w.due_at = T0 + 5;
		}
		ck_assert_int_eq(try_update(a, &w), SAGA_EFENCED);
	}
	char buf[64];
	ck_assert_str_eq(context_of(b, id, buf, sizeof(buf)), "{\"by\":\"a\"}");
	saga_row now = get_row(b, id);
	ck_assert_int_eq(now.owner, eb);
	ck_assert_int_eq(now.fence, 2);
	ck_assert_int_eq(now.state, SAGA_RUNNING);
	ck_assert_int_eq(now.step, 0);
	ck_assert_int_eq(now.attempt, 0);
	ck_assert_uint_eq(now.updated_at, T0);
	ck_assert_str_eq(now.error, "");
	/* The new owner writes it. */
	theirs.step = 1;
	OK(b, try_update(b, &theirs));
	ck_assert_int_eq(get_row(a, id).step, 1);
	close_store(a);
	close_store(b);
}
END_TEST

/* A write with a fence other than the store's (same owner) is refused:
 * an older or a newer number, and a row kept across the instance ending
 * and being taken again (the fence grew). */
START_TEST(stale_fence_refused)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	int64_t id = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 4));
	saga_row r = get_row(a, id);
	int64_t wrong[] = { 3, 5, 0 };
	for (int i = 0; i < 3; i++) {
		saga_row w = r;
		w.fence = wrong[i];
		w.step = 2;
		ck_assert_int_eq(try_update(a, &w), SAGA_EFENCED);
		ck_assert_int_eq(get_row(a, id).step, 0);
	}
	/* STUCK, it belongs to nobody; taken again, its fence grows. */
	saga_row stuck = r;
	stuck.state = SAGA_STUCK;
	OK(a, try_update(a, &stuck));
	bool claimed = false;
	OK(a, ops->begin(a));
	OK(a, ops->claim_one(a, id, &claimed));
	OK(a, ops->commit(a));
	ck_assert(claimed);
	saga_row now = get_row(a, id);
	ck_assert_int_eq(now.owner, ea);
	ck_assert_int_eq(now.fence, 5);
	stuck.step = 2;
	ck_assert_int_eq(try_update(a, &stuck), SAGA_EFENCED);
	ck_assert_int_eq(get_row(a, id).step, 0);
	now.step = 2;
	OK(a, try_update(a, &now));
	ck_assert_int_eq(get_row(a, id).step, 2);
	close_store(a);
}
END_TEST

/* Ended instances belong to nobody: whatever owner the write names. */
START_TEST(ended_instances_have_no_owner)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	int ends[] = { SAGA_COMPLETED, SAGA_COMPENSATED, SAGA_STUCK };
	for (int i = 0; i < 3; i++) {
		int64_t id = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
		saga_row r = get_row(a, id);
		r.state = ends[i];
		OK(a, try_update(a, &r));
		saga_row now = get_row(a, id);
		ck_assert_int_eq(now.state, ends[i]);
		ck_assert_int_eq(now.owner, 0);
		ck_assert_int_eq(now.fence, 1);
	}
	close_store(a);
}
END_TEST

/* ---- claims ---- */

/* A claim takes only what is due by `now`, unowned, unfinished, of a
 * definition (name and version) the claimer serves; each one's fence grows
 * by one. */
START_TEST(claim_takes_only_due_unowned_served)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	int64_t run = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, 0, 0));
	int64_t comp = put_row(a, make_row(DEF, 1, SAGA_COMPENSATING, T0 - 9, 0, 6));
	int64_t due = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0, 0, 2));
	int64_t not_yet = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 1, 0, 0));
	int64_t unscheduled = put_row(a, make_row(DEF, 1, SAGA_WAITING, 0, 0, 0));
	int64_t other_version = put_row(a, make_row(DEF, 2, SAGA_RUNNING, 0, 0, 0));
	int64_t other_name = put_row(a, make_row("e", 1, SAGA_RUNNING, 0, 0, 0));
	int64_t owned = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	int64_t done = put_row(a, make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1));
	int64_t stuck = put_row(a, make_row(DEF, 1, SAGA_STUCK, 0, 0, 1));

	ids got = claim(b, T0, 100);
	ck_assert_int_eq(got.n, 3);
	ck_assert(has_id(&got, run) && has_id(&got, comp) && has_id(&got, due));
	int64_t fences[] = { 1, 7, 3 };
	int64_t taken[] = { run, comp, due };
	for (int i = 0; i < 3; i++) {
		saga_row r = get_row(b, taken[i]);
		ck_assert_int_eq(r.owner, eb);
		ck_assert_int_eq(r.fence, fences[i]);
	}
	int64_t left[] = { not_yet, unscheduled, other_version, other_name, done, stuck };
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(get_row(b, left[i]).owner, 0);
	ck_assert_int_eq(get_row(b, owned).owner, ea);
	ck_assert_int_eq(get_row(b, owned).fence, 1);
	/* Nothing left for anyone, until its time comes. */
	ck_assert_int_eq(claim(b, T0, 100).n, 0);
	ck_assert_int_eq(claim(a, T0, 100).n, 0);
	got = claim(a, T0 + 1, 100);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], not_yet);
	/* Serving another definition opens it. */
	OK(b, ops->serve(b, "e", 1));
	got = claim(b, T0, 100);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], other_name);
	close_store(a);
	close_store(b);
}
END_TEST

/* A claim takes at most `limit`, earliest due first. */
START_TEST(claim_respects_limit)
{
	saga_store *a = open_store();
	new_owner(a, LONG);
	int64_t late = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 - 1, 0, 0));
	int64_t early = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 - 100, 0, 0));
	ids got = claim(a, T0, 1);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], early);
	got = claim(a, T0, 1);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.v[0], late);
	close_store(a);
}
END_TEST

/* Two owners claiming from one pool at once, in real threads, each on its
 * own handle: no instance goes to both, none is lost. */
#define POOL 300

typedef struct claimer {
	saga_store *s;
	int64_t epoch;
	ids got;
	int rc;
	char err[256];
} claimer;

static void *claim_loop(void *arg)
{
	claimer *c = arg;
	ids round;
	for (;;) {
		round.n = 0;
		int64_t reaped = 0;
		int live = 0;
		if ((c->rc = ops->begin(c->s)) || (c->rc = ops->reap(c->s, &reaped, &live)) ||
		    (c->rc = ops->claim(c->s, T0, 7, add_id, &round)) ||
		    (c->rc = ops->commit(c->s))) {
			snprintf(c->err, sizeof(c->err), "%s", ops->errmsg(c->s));
			ops->rollback(c->s);
			return NULL;
		}
		if (round.n == 0)
			return NULL;
		for (int i = 0; i < round.n; i++)
			add_id(round.v[i], &c->got);
	}
}

START_TEST(claims_never_overlap)
{
	saga_store *a = open_store();
	int64_t first = 0;
	OK(a, ops->begin(a));
	for (int i = 0; i < POOL; i++) {
		saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, 0, 0);
		OK(a, ops->insert(a, &r));
		if (i == 0)
			first = r.id;
	}
	OK(a, ops->commit(a));
	close_store(a);
	claimer c[2];
	pthread_t t[2];
	memset(c, 0, sizeof(c));
	for (int k = 0; k < 2; k++) {
		c[k].s = open_store();
		c[k].epoch = new_owner(c[k].s, LONG);
	}
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(pthread_create(&t[k], NULL, claim_loop, &c[k]), 0);
	for (int k = 0; k < 2; k++)
		pthread_join(t[k], NULL);
	for (int k = 0; k < 2; k++)
		ck_assert_msg(c[k].rc == SAGA_OK, "claimer %d: %s (%s)", k, saga_strerror(c[k].rc),
		              c[k].err);
	ck_assert_int_eq(c[0].got.n + c[1].got.n, POOL);
	for (int64_t id = first; id < first + POOL; id++) {
		bool in0 = has_id(&c[0].got, id), in1 = has_id(&c[1].got, id);
		ck_assert_msg(in0 != in1, "instance %lld claimed by %s", (long long)id,
		              in0 ? "both" : "neither");
		saga_row r = get_row(c[0].s, id);
		ck_assert_int_eq(r.owner, c[in0 ? 0 : 1].epoch);
		ck_assert_int_eq(r.fence, 1);
	}
	for (int k = 0; k < 2; k++)
		close_store(c[k].s);
}
END_TEST

/* A claim of an instance whose attempt was interrupted (its start
 * recorded, its outcome not) counts a recovery, as does claim_one; the
 * crash-loop limit rests on it. claim_one takes an unowned instance that is
 * unfinished or STUCK, and nothing else. */
START_TEST(claims_count_recoveries)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, 0, 3);
	r.inflight = true;
	r.recoveries = 2;
	int64_t cut = put_row(a, r);
	r = make_row(DEF, 1, SAGA_RUNNING, 0, 0, 3);
	r.recoveries = 2;
	int64_t clean = put_row(a, r);
	r = make_row(DEF, 1, SAGA_STUCK, 0, 0, 4);
	r.inflight = true;
	int64_t stuck = put_row(a, r);
	int64_t done = put_row(a, make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1));
	int64_t theirs = put_row(b, make_row(DEF, 1, SAGA_RUNNING, 0, eb, 1));

	ids got = claim(a, T0, 10);
	ck_assert_int_eq(got.n, 2);
	ck_assert_int_eq(get_row(a, cut).recoveries, 3);
	ck_assert_int_eq(get_row(a, cut).fence, 4);
	ck_assert_int_eq(get_row(a, clean).recoveries, 2);

	bool claimed[3] = { false, true, true };
	int64_t one[] = { stuck, done, theirs };
	OK(a, ops->begin(a));
	for (int i = 0; i < 3; i++)
		OK(a, ops->claim_one(a, one[i], &claimed[i]));
	OK(a, ops->commit(a));
	ck_assert(claimed[0] && !claimed[1] && !claimed[2]);
	saga_row now = get_row(a, stuck);
	ck_assert_int_eq(now.owner, ea);
	ck_assert_int_eq(now.fence, 5);
	ck_assert_int_eq(now.recoveries, 1);
	ck_assert_int_eq(get_row(a, done).owner, 0);
	ck_assert_int_eq(get_row(a, done).fence, 1);
	ck_assert_int_eq(get_row(a, theirs).owner, eb);
	ck_assert_int_eq(get_row(a, theirs).fence, 1);
	close_store(a);
	close_store(b);
}
END_TEST

/* The scans that bring instances into memory see only this owner's:
 * running and compensating ones, and parked ones due by `now` (earliest
 * first, at most `limit`). */
START_TEST(scans_see_only_own)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	int64_t run = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	int64_t comp = put_row(a, make_row(DEF, 1, SAGA_COMPENSATING, 0, ea, 1));
	int64_t later = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 5, ea, 1));
	int64_t due = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 - 1, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, 0, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1));
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, 0, 0));
	int64_t brun = put_row(b, make_row(DEF, 1, SAGA_RUNNING, 0, eb, 1));
	int64_t bdue = put_row(b, make_row(DEF, 1, SAGA_WAITING, T0 - 1, eb, 1));

	ids l = { .n = 0 };
	OK(a, ops->scan_active(a, add_id, &l));
	ck_assert_int_eq(l.n, 2);
	ck_assert(has_id(&l, run) && has_id(&l, comp));
	l.n = 0;
	OK(a, ops->scan_due(a, T0, 10, add_id, &l));
	ck_assert_int_eq(l.n, 1);
	ck_assert_int_eq(l.v[0], due);
	l.n = 0;
	OK(a, ops->scan_due(a, T0 + 5, 10, add_id, &l));
	ck_assert_int_eq(l.n, 2);
	ck_assert(has_id(&l, due) && has_id(&l, later));
	l.n = 0;
	OK(a, ops->scan_due(a, T0 + 5, 1, add_id, &l));
	ck_assert_int_eq(l.n, 1);
	ck_assert_int_eq(l.v[0], due);
	l.n = 0;
	OK(b, ops->scan_active(b, add_id, &l));
	OK(b, ops->scan_due(b, T0 + 5, 10, add_id, &l));
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.v[0], brun);
	ck_assert_int_eq(l.v[1], bdue);
	close_store(a);
	close_store(b);
}
END_TEST

/* ---- rows and history ---- */

/* A row comes back as written, owner and fence included; an update by its
 * owner changes what it says and neither owner nor fence. */
START_TEST(row_round_trip)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_row r = make_row(DEF, 1, SAGA_WAITING, T0 + 3, ea, 7);
	r.has_bkey = true;
	saga_fmt(r.bkey, sizeof(r.bkey), "order-42");
	r.step = 2;
	r.phase = SAGA_PHASE_COMPENSATION;
	r.attempt = 5;
	r.inflight = true;
	r.pending = true;
	r.pivot_done = true;
	r.reason = SAGA_REASON_FAILURE;
	r.fwd_started = 3;
	r.comp_done_any = true;
	r.deadline_at = T0 + 50;
	r.attempt_deadline = T0 + 20;
	r.step_since = T0 - 5;
	r.prev_delay = 250;
	r.next_seq = 12;
	r.recoveries = 3;
	saga_fmt(r.error, sizeof(r.error), "boom");
	r.context = (char *)"{\"k\":[1,2]}";
	int64_t id = put_row(a, r);
	saga_row back = get_row(a, id), by_uid;
	char buf[64];
	ck_assert_str_eq(context_of(a, id, buf, sizeof(buf)), "{\"k\":[1,2]}");
	OK(a, ops->load_uid(a, &by_uid, r.uid, NULL));
	ck_assert_int_eq(by_uid.id, id);
	int64_t found = 0;
	OK(a, ops->find_bkey(a, &found, "order-42"));
	ck_assert_int_eq(found, id);
	ck_assert_str_eq(back.uid, r.uid);
	ck_assert_str_eq(back.def_name, DEF);
	ck_assert_int_eq(back.def_version, 1);
	ck_assert(back.has_bkey);
	ck_assert_str_eq(back.bkey, "order-42");
	ck_assert_int_eq(back.state, SAGA_WAITING);
	ck_assert_int_eq(back.phase, SAGA_PHASE_COMPENSATION);
	ck_assert_int_eq(back.step, 2);
	ck_assert_uint_eq(back.attempt, 5);
	ck_assert(back.inflight && back.pending && back.pivot_done && back.comp_done_any);
	ck_assert_int_eq(back.reason, SAGA_REASON_FAILURE);
	ck_assert_int_eq(back.fwd_started, 3);
	ck_assert_uint_eq(back.due_at, T0 + 3);
	ck_assert_uint_eq(back.deadline_at, T0 + 50);
	ck_assert_uint_eq(back.attempt_deadline, T0 + 20);
	ck_assert_uint_eq(back.step_since, T0 - 5);
	ck_assert_uint_eq(back.prev_delay, 250);
	ck_assert_uint_eq(back.created_at, T0);
	ck_assert_uint_eq(back.updated_at, T0);
	ck_assert_int_eq(back.owner, ea);
	ck_assert_int_eq(back.fence, 7);
	ck_assert_int_eq(back.next_seq, 12);
	ck_assert_int_eq(back.recoveries, 3);
	ck_assert_str_eq(back.error, "boom");
	back.context = (char *)"{\"k\":3}";
	back.state = SAGA_RUNNING;
	back.due_at = 0;
	back.next_seq = 15;
	back.recoveries = 0;
	/* The widest values each column holds. */
	back.deadline_at = (uint64_t)INT64_MAX;
	back.attempt = INT32_MAX;
	back.prev_delay = (uint64_t)1 << 40;
	OK(a, try_update(a, &back));
	saga_row again = get_row(a, id);
	ck_assert_int_eq(again.state, SAGA_RUNNING);
	ck_assert_uint_eq(again.due_at, 0);
	ck_assert_uint_eq(again.deadline_at, (uint64_t)INT64_MAX);
	ck_assert_uint_eq(again.attempt, INT32_MAX);
	ck_assert_uint_eq(again.prev_delay, (uint64_t)1 << 40);
	ck_assert_int_eq(again.next_seq, 15);
	ck_assert_int_eq(again.recoveries, 0);
	ck_assert_int_eq(again.owner, ea);
	ck_assert_int_eq(again.fence, 7);
	ck_assert_str_eq(context_of(a, id, buf, sizeof(buf)), "{\"k\":3}");
	saga_row none;
	ck_assert_int_eq(ops->load(a, &none, id + 1000, NULL), SAGA_ENOTFOUND);
	close_store(a);
}
END_TEST

/* What load_many gave: each row once, with its context. */
typedef struct many {
	saga_row row[8];
	char ctx[8][32];
	int n, stop_after;
} many;

static int keep_many(saga_row *r, void *user)
{
	many *m = user;
	ck_assert_msg(m->n < 8, "load_many gave more rows than it was asked for");
	ck_assert_ptr_nonnull(r->context);
	m->row[m->n] = *r;
	saga_fmt(m->ctx[m->n], sizeof(m->ctx[0]), "%s", r->context);
	m->row[m->n].context = NULL;
	saga_free(&saga_default_alloc, r->context); /* the callee's */
	return ++m->n == m->stop_after;
}

static const saga_row *many_row(const many *m, int64_t id, const char **ctx)
{
	for (int i = 0; i < m->n; i++)
		if (m->row[i].id == id) {
			for (int j = i + 1; j < m->n; j++)
				ck_assert_msg(m->row[j].id != id, "row %lld given twice",
				              (long long)id);
			*ctx = m->ctx[i];
			return &m->row[i];
		}
	return NULL;
}

/* load_many: the rows of the ids asked for, as load() reads them, each
 * once, in any order; an unknown id is absent; fn's nonzero stops; inside
 * a transaction it sees the transaction's own writes. */
START_TEST(load_many_reads_a_set)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_store *b = open_store();
	int64_t eb = new_owner(b, LONG);
	int64_t id[4];
	for (int i = 0; i < 4; i++) {
		saga_row r = make_row(DEF, 1 + i, i == 3 ? SAGA_COMPLETED : SAGA_RUNNING, 0,
		                      i == 3   ? 0
		                      : i == 2 ? eb
		                               : ea,
		                      3 + i);
		r.step = i % 2;
		char ctx[16];
		saga_fmt(ctx, sizeof(ctx), "{\"n\":%d}", i);
		r.context = ctx;
		id[i] = put_row(a, r);
	}
	int64_t ask[6] = { id[3], id[0] + 1000, id[1], id[2], id[0], id[3] + 2000 };
	many m = { .n = 0 };
	OK(a, ops->load_many(a, ask, 6, keep_many, &m, &saga_default_alloc));
	ck_assert_int_eq(m.n, 4);
	for (int i = 0; i < 4; i++) {
		const char *ctx = NULL;
		const saga_row *got = many_row(&m, id[i], &ctx);
		ck_assert_msg(got, "row %d (id %lld) missing", i, (long long)id[i]);
		saga_row one = get_row(a, id[i]);
		ck_assert_str_eq(got->uid, one.uid);
		ck_assert_int_eq(got->def_version, 1 + i);
		ck_assert_int_eq(got->state, one.state);
		ck_assert_int_eq(got->step, i % 2);
		ck_assert_int_eq(got->owner, one.owner);
		ck_assert_int_eq(got->fence, 3 + i);
		ck_assert_int_eq(got->stored_state, one.state);
		char want[16];
		saga_fmt(want, sizeof(want), "{\"n\":%d}", i);
		ck_assert_str_eq(ctx, want);
	}
	ck_assert_int_eq(many_row(&m, id[0], &(const char *){ NULL })->owner, ea);
	ck_assert_int_eq(many_row(&m, id[2], &(const char *){ NULL })->owner, eb);

	/* Nothing asked, nothing given; fn's nonzero stops. */
	m = (many){ .n = 0 };
	OK(a, ops->load_many(a, ask, 0, keep_many, &m, &saga_default_alloc));
	ck_assert_int_eq(m.n, 0);
	m = (many){ .n = 0, .stop_after = 1 };
	OK(a, ops->load_many(a, id, 3, keep_many, &m, &saga_default_alloc));
	ck_assert_int_eq(m.n, 1);

	/* In a transaction: its own write, not yet committed. */
	saga_row r = get_row(a, id[1]);
	r.step = 1 - r.step;
	r.context = (char *)"{\"n\":9}";
	OK(a, ops->begin(a));
	OK(a, ops->update(a, &r));
	m = (many){ .n = 0 };
	OK(a, ops->load_many(a, &id[1], 1, keep_many, &m, &saga_default_alloc));
	ck_assert_int_eq(m.n, 1);
	ck_assert_int_eq(m.row[0].step, r.step);
	ck_assert_str_eq(m.ctx[0], "{\"n\":9}");
	OK(a, ops->commit(a));
	close_store(b);
	close_store(a);
}
END_TEST

/* insert_many: rows in a transaction, each given its own id, written as
 * insert() writes them; a business key already taken gives id 0 and no
 * row; refused outside a transaction. */
START_TEST(insert_many_sets_ids)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_row rows[3];
	for (int i = 0; i < 3; i++) {
		rows[i] = make_row(DEF, 1, SAGA_RUNNING, T0 + (uint64_t)i, ea, 1);
		rows[i].next_seq = 2 + i;
		rows[i].context = (char *)(i == 1 ? "{\"q\":\"a\\\"b\"}" : "{}");
	}
	ck_assert_int_eq(ops->insert_many(a, rows, 3), SAGA_EINVAL); /* no transaction */
	OK(a, ops->begin(a));
	OK(a, ops->insert_many(a, rows, 3));
	/* Seen in the transaction that wrote them. */
	many m = { .n = 0 };
	int64_t got[3] = { rows[0].id, rows[1].id, rows[2].id };
	OK(a, ops->load_many(a, got, 3, keep_many, &m, &saga_default_alloc));
	ck_assert_int_eq(m.n, 3);
	OK(a, ops->commit(a));
	ck_assert(rows[0].id > 0 && rows[1].id > 0 && rows[2].id > 0);
	ck_assert(rows[0].id != rows[1].id && rows[1].id != rows[2].id && rows[0].id != rows[2].id);
	char buf[64];
	for (int i = 0; i < 3; i++) {
		saga_row back = get_row(a, rows[i].id);
		ck_assert_str_eq(back.uid, rows[i].uid);
		ck_assert_int_eq(back.next_seq, 2 + i);
		ck_assert_uint_eq(back.due_at, T0 + (uint64_t)i);
		ck_assert_int_eq(back.owner, ea);
		ck_assert_str_eq(context_of(a, rows[i].id, buf, sizeof(buf)), rows[i].context);
	}
	/* Business keys: a key taken by a committed instance, or by an earlier
	 * row of the same call, gets id 0 and no row; the others are
	 * inserted, and the transaction commits them. */
	saga_row held = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	held.has_bkey = true;
	saga_fmt(held.bkey, sizeof(held.bkey), "k-held");
	int64_t held_id = put_row(a, held);
	const char *keys[] = { "k-1", "k-held", NULL, "k-1", "k-2" };
	saga_row keyed[5];
	for (int i = 0; i < 5; i++) {
		keyed[i] = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
		keyed[i].has_bkey = keys[i] != NULL;
		if (keys[i])
			saga_fmt(keyed[i].bkey, sizeof(keyed[i].bkey), "%s", keys[i]);
	}
	OK(a, ops->begin(a));
	OK(a, ops->insert_many(a, keyed, 5));
	ck_assert_int_gt(keyed[0].id, 0);
	ck_assert_int_eq(keyed[1].id, 0);
	ck_assert_int_gt(keyed[2].id, 0);
	ck_assert_int_eq(keyed[3].id, 0);
	ck_assert_int_gt(keyed[4].id, 0);
	OK(a, ops->commit(a));
	int64_t found = 0;
	OK(a, ops->find_bkey(a, &found, "k-1"));
	ck_assert_int_eq(found, keyed[0].id);
	ck_assert_str_eq(get_row(a, found).uid, keyed[0].uid);
	OK(a, ops->find_bkey(a, &found, "k-held"));
	ck_assert_int_eq(found, held_id);
	OK(a, ops->find_bkey(a, &found, "k-2"));
	ck_assert_int_eq(found, keyed[4].id);
	saga_row none;
	ck_assert_int_eq(ops->load_uid(a, &none, keyed[1].uid, NULL), SAGA_ENOTFOUND);
	ck_assert_int_eq(ops->load_uid(a, &none, keyed[3].uid, NULL), SAGA_ENOTFOUND);
	ck_assert_int_eq(ops->insert_many(a, keyed, 1), SAGA_EINVAL); /* no transaction */
	close_store(a);
}
END_TEST

typedef struct events {
	saga_event ev[8];
	char detail[8][1100];
	char name[8][16];
	int n;
} events;

static int keep_event(const saga_event *e, void *user)
{
	events *l = user;
	if (l->n < 8) {
		l->ev[l->n] = *e;
		saga_fmt(l->detail[l->n], sizeof(l->detail[0]), "%s", e->detail);
		saga_fmt(l->name[l->n], sizeof(l->name[0]), "%s",
		         e->step_name ? e->step_name : "-");
		l->n++;
	}
	return 0;
}

static saga_hist make_hist(int64_t id, int64_t seq, int64_t fence, int type, const char *detail)
{
	saga_hist h;
	memset(&h, 0, sizeof(h));
	h.instance = id;
	h.seq = seq;
	h.fence = fence;
	h.at = T0 + (uint64_t)seq;
	h.type = type;
	h.state = SAGA_RUNNING;
	h.step = (int)seq - 2;
	h.phase = SAGA_PHASE_ACTION;
	h.attempt = (uint32_t)seq;
	h.outcome = type == SAGA_EVENT_ATTEMPT_END ? SAGA_OUTCOME_OK : SAGA_OUTCOME_NONE;
	h.detail = detail;
	return h;
}

/* History: seq counts per instance, and every row keeps the fence it was
 * written under (saga_event.fence), with the rest of the row. */
START_TEST(history_round_trip)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	int64_t x = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	int64_t y = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	char big[1001];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	OK(a, ops->begin(a));
	saga_hist hx[] = { make_hist(x, 1, 1, SAGA_EVENT_CREATED, "key"),
		           make_hist(x, 2, 1, SAGA_EVENT_ATTEMPT_START, ""),
		           make_hist(x, 3, 2, SAGA_EVENT_ATTEMPT_END, big) };
	saga_hist hy[] = { make_hist(y, 1, 5, SAGA_EVENT_CREATED, ""),
		           make_hist(y, 2, 6, SAGA_EVENT_STATE, "y") };
	for (int i = 0; i < 3; i++)
		OK(a, ops->add_history(a, &hx[i]));
	for (int i = 0; i < 2; i++)
		OK(a, ops->add_history(a, &hy[i]));
	/* A writer's history goes with a write of its instance (its next seq). */
	saga_row rx = get_row(a, x), ry = get_row(a, y);
	rx.next_seq = 4;
	ry.next_seq = 3;
	OK(a, ops->update(a, &rx));
	OK(a, ops->update(a, &ry));
	/* The open transaction reads its own rows. */
	int outcome = -1;
	OK(a, ops->last_outcome(a, x, 1, SAGA_PHASE_ACTION, &outcome));
	ck_assert_int_eq(outcome, SAGA_OUTCOME_OK);
	OK(a, ops->commit(a));

	const char *const names[] = { "zero", "one" };
	events l = { .n = 0 };
	OK(a, ops->history(a, x, keep_event, &l, names, 2));
	ck_assert_int_eq(l.n, 3);
	for (int i = 0; i < 3; i++) {
		const saga_event *e = &l.ev[i];
		ck_assert_int_eq(e->instance, x);
		ck_assert_int_eq(e->seq, hx[i].seq);
		ck_assert_int_eq(e->fence, hx[i].fence);
		ck_assert_uint_eq(e->at_ms, hx[i].at);
		ck_assert_int_eq(e->type, hx[i].type);
		ck_assert_int_eq(e->state, hx[i].state);
		ck_assert_int_eq(e->step, hx[i].step);
		ck_assert_int_eq(e->phase, hx[i].phase);
		ck_assert_uint_eq(e->attempt, hx[i].attempt);
		ck_assert_int_eq(e->outcome, hx[i].outcome);
		ck_assert_str_eq(l.detail[i], hx[i].detail);
	}
	ck_assert_str_eq(l.name[0], "-");
	ck_assert_str_eq(l.name[1], "zero");
	ck_assert_str_eq(l.name[2], "one");
	l.n = 0;
	OK(a, ops->history(a, y, keep_event, &l, NULL, 0));
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.ev[0].seq, 1);
	ck_assert_int_eq(l.ev[0].fence, 5);
	ck_assert_int_eq(l.ev[1].seq, 2);
	ck_assert_int_eq(l.ev[1].fence, 6);

	/* A rolled-back transaction leaves no history; a seq taken twice
	 * for one instance does not commit. */
	OK(a, ops->begin(a));
	saga_hist h4 = make_hist(x, 4, 2, SAGA_EVENT_STATE, "");
	OK(a, ops->add_history(a, &h4));
	ops->rollback(a);
	OK(a, ops->begin(a));
	saga_hist again = make_hist(x, 3, 2, SAGA_EVENT_STATE, "again");
	int rc = ops->add_history(a, &again);
	if (rc == SAGA_OK)
		rc = ops->commit(a);
	if (rc != SAGA_OK)
		ops->rollback(a);
	ck_assert_int_ne(rc, SAGA_OK);
	l.n = 0;
	OK(a, ops->history(a, x, keep_event, &l, NULL, 0));
	ck_assert_int_eq(l.n, 3);
	ck_assert_str_eq(l.detail[2], big);
	close_store(a);
}
END_TEST

/* A business key names one instance: a second insert with it is refused
 * with SAGA_EEXISTS and leaves the first alone. */
START_TEST(business_key_is_unique)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	r.has_bkey = true;
	saga_fmt(r.bkey, sizeof(r.bkey), "k");
	int64_t id = put_row(a, r);
	saga_row dup = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	dup.has_bkey = true;
	saga_fmt(dup.bkey, sizeof(dup.bkey), "k");
	OK(a, ops->begin(a));
	int rc = ops->insert(a, &dup);
	if (rc == SAGA_OK)
		rc = ops->commit(a);
	else
		ops->rollback(a);
	ck_assert_int_eq(rc, SAGA_EEXISTS);
	int64_t found = 0;
	OK(a, ops->find_bkey(a, &found, "k"));
	ck_assert_int_eq(found, id);
	ck_assert_int_eq(ops->find_bkey(a, &found, "other"), SAGA_ENOTFOUND);
	close_store(a);
}
END_TEST

/* A definition's snapshot is kept once: the same again is fine, another
 * under the same (name, version) is SAGA_ECONFLICT; every handle reads it. */
START_TEST(definitions_kept_once)
{
	saga_store *a = open_store(), *b = open_store();
	OK(a, ops->begin(a));
	OK(a, ops->put_definition(a, DEF, 1, "[\"one\"]"));
	OK(a, ops->commit(a));
	OK(b, ops->begin(b));
	OK(b, ops->put_definition(b, DEF, 1, "[\"one\"]"));
	ck_assert_int_eq(ops->put_definition(b, DEF, 1, "[\"two\"]"), SAGA_ECONFLICT);
	OK(b, ops->put_definition(b, DEF, 2, "[\"two\"]"));
	OK(b, ops->commit(b));
	char buf[32], *snap = NULL;
	ck_assert_str_eq(snapshot_of(a, DEF, 1, buf, sizeof(buf)), "[\"one\"]");
	ck_assert_str_eq(snapshot_of(a, DEF, 2, buf, sizeof(buf)), "[\"two\"]");
	ck_assert_int_eq(ops->get_definition(a, &snap, "e", 1, &saga_default_alloc),
	                 SAGA_ENOTFOUND);
	bool valid = false;
	OK(a, ops->json_valid(a, "{\"a\":[1]}", &valid));
	ck_assert(valid);
	OK(a, ops->json_valid(a, "{\"a\":", &valid));
	ck_assert(!valid);
	close_store(a);
	close_store(b);
}
END_TEST

static int add_row_id(const saga_row *r, void *user)
{
	return add_id(r->id, user);
}

static ids page(saga_store *s, int state, const char *name, int version, uint64_t from, uint64_t to,
                int64_t after, int limit)
{
	store_filter f = { state, name, version, from, to, 0, 0 };
	ids l = { .n = 0 };
	OK(s, ops->page(s, &f, after, limit, add_row_id, &l));
	return l;
}

/* Listings (any owner's instances, in id order, filtered, paged by id),
 * pending async steps, and counts by state. */
START_TEST(listings_and_counts)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	int64_t x = put_row(a, r);
	r = make_row(DEF, 1, SAGA_WAITING, 0, eb, 1);
	r.pending = true;
	r.created_at = r.updated_at = T0 + 10;
	int64_t y = put_row(b, r);
	r = make_row(DEF, 2, SAGA_COMPLETED, 0, 0, 1);
	r.created_at = r.updated_at = T0 + 20;
	int64_t z = put_row(a, r);
	r = make_row("e", 1, SAGA_STUCK, 0, 0, 1);
	r.created_at = r.updated_at = T0 + 30;
	int64_t w = put_row(a, r);

	ids l = page(a, -1, NULL, 0, 0, 0, 0, 10);
	ck_assert_int_eq(l.n, 4);
	ck_assert(l.v[0] == x && l.v[1] == y && l.v[2] == z && l.v[3] == w);
	l = page(a, -1, NULL, 0, 0, 0, 0, 2);
	ck_assert(l.n == 2 && l.v[0] == x && l.v[1] == y);
	l = page(a, -1, NULL, 0, 0, 0, y, 10);
	ck_assert(l.n == 2 && l.v[0] == z && l.v[1] == w);
	l = page(a, SAGA_COMPLETED, NULL, 0, 0, 0, 0, 10);
	ck_assert(l.n == 1 && l.v[0] == z);
	l = page(a, SAGA_WAITING, NULL, 0, 0, 0, 0, 10);
	ck_assert(l.n == 1 && l.v[0] == y);
	l = page(a, -1, DEF, 2, 0, 0, 0, 10);
	ck_assert(l.n == 1 && l.v[0] == z);
	l = page(a, -1, DEF, 0, 0, 0, 0, 10);
	ck_assert_int_eq(l.n, 3);
	l = page(a, -1, NULL, 0, T0 + 10, T0 + 30, 0, 10);
	ck_assert(l.n == 2 && l.v[0] == y && l.v[1] == z);

	l.n = 0;
	OK(a, ops->pending(a, 0, 10, add_row_id, &l));
	ck_assert(l.n == 1 && l.v[0] == y);
	int64_t counts[SAGA_STATE_COUNT];
	OK(a, ops->counts(a, counts));
	int64_t want[SAGA_STATE_COUNT] = { 1, 1, 0, 1, 0, 1 };
	for (int i = 0; i < SAGA_STATE_COUNT; i++)
		ck_assert_int_eq(counts[i], want[i]);
	close_store(a);
	close_store(b);
}
END_TEST

/* What an operator reads: owners (live ones, or all), with the definitions
 * each serves and the unfinished instances it holds; the stored
 * definitions; counts per definition, version and state. */
typedef struct owner_seen {
	int64_t epoch[8];
	int state[8];
	char served[8][64];
	int64_t instances[8];
	bool leased[8];
	int n;
} owner_seen;

static int see_owner(const store_owner *o, void *user)
{
	owner_seen *l = user;
	if (l->n < 8) {
		l->epoch[l->n] = o->epoch;
		l->state[l->n] = o->state;
		saga_fmt(l->served[l->n], sizeof(l->served[0]), "%s", o->served);
		l->instances[l->n] = o->instances;
		l->leased[l->n] = o->lease_left > 0 && o->pid > 0 && o->host != NULL;
		l->n++;
	}
	return 0;
}

static int see_def(const char *name, int version, const char *snapshot, void *user)
{
	char *out = user;
	size_t len = strlen(out);
	saga_fmt(out + len, 256 - len, "%s@%d=%s;", name, version, snapshot);
	return 0;
}

static int see_count(const char *name, int version, int state, int64_t n, void *user)
{
	char *out = user;
	size_t len = strlen(out);
	saga_fmt(out + len, 256 - len, "%s@%d/%d:%lld;", name, version, state, (long long)n);
	return 0;
}

START_TEST(operator_reads)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	OK(a, ops->put_definition(a, DEF, 1, "{\"s\":1}"));
	OK(a, ops->put_definition(a, DEF, 2, "{\"s\":2}"));
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, T0, ea, 1));
	put_row(a, make_row(DEF, 2, SAGA_STUCK, 0, 0, 1));
	put_row(a, make_row(DEF, 2, SAGA_STUCK, 0, 0, 1));
	OK(b, ops->retire(b));

	owner_seen l = { .n = 0 };
	OK(a, ops->owners(a, false, see_owner, &l));
	ck_assert_int_eq(l.n, 1);
	ck_assert(l.epoch[0] == ea && l.state[0] == 0 && l.leased[0]);
	ck_assert_str_eq(l.served[0], DEF "@1");
	ck_assert_int_eq(l.instances[0], 2);
	l.n = 0;
	OK(a, ops->owners(a, true, see_owner, &l));
	ck_assert_int_eq(l.n, 2);
	ck_assert(l.epoch[1] == eb && l.state[1] == 2 && !l.leased[1]);
	ck_assert_str_eq(l.served[1], "");

	char out[256] = "";
	OK(a, ops->definitions(a, see_def, out));
	ck_assert_str_eq(out, DEF "@1={\"s\":1};" DEF "@2={\"s\":2};");
	out[0] = '\0';
	OK(a, ops->def_counts(a, see_count, out));
	ck_assert_str_eq(out, DEF "@1/0:1;" DEF "@1/1:1;" DEF "@2/5:2;");
	close_store(a);
	close_store(b);
}
END_TEST

/* The store gauges: STUCK instances by reason; the WAITING ones due, and
 * overdue, with the earliest due time. */
START_TEST(gauge_reads)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	for (int i = 0; i < 3; i++) {
		saga_row r = make_row(DEF, 2, SAGA_STUCK, 0, 0, 1);
		r.reason = i < 2 ? SAGA_REASON_FAILURE : SAGA_REASON_CRASH_LOOP;
		put_row(a, r);
	}
	put_row(a, make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 100, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 300, 0, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 900, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, T0, ea, 1));

	char out[256] = "";
	OK(a, ops->stuck_counts(a, see_count, out));
	ck_assert_str_eq(out, DEF "@2/1:2;" DEF "@2/4:1;");
	int64_t overdue = -1;
	uint64_t oldest = 1;
	/* Due by T0 + 500: two, one of them by T0 + 200. */
	OK(a, ops->overdue(a, T0 + 500, T0 + 200, &overdue, &oldest));
	ck_assert_int_eq(overdue, 1);
	ck_assert_uint_eq(oldest, T0 + 100);
	OK(a, ops->overdue(a, T0 + 50, T0, &overdue, &oldest));
	ck_assert_int_eq(overdue, 0);
	ck_assert_uint_eq(oldest, 0);
	close_store(a);
}
END_TEST

static int count_event(const saga_event *e, void *user)
{
	(void)e;
	(*(int *)user)++;
	return 0;
}

/* Purging takes instances that reached `state` before `before`, with
 * their history, in batches; nothing else. */
START_TEST(purge_takes_old_ended_instances)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	int64_t old = put_row(a, make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1));
	saga_row r = make_row(DEF, 1, SAGA_COMPLETED, 0, 0, 1);
	r.updated_at = T0 + 100;
	int64_t young = put_row(a, r);
	int64_t other = put_row(a, make_row(DEF, 1, SAGA_COMPENSATED, 0, 0, 1));
	int64_t live = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	OK(a, ops->begin(a));
	saga_hist h = make_hist(old, 1, 1, SAGA_EVENT_CREATED, "");
	OK(a, ops->add_history(a, &h));
	h = make_hist(live, 1, 1, SAGA_EVENT_CREATED, "");
	OK(a, ops->add_history(a, &h));
	saga_row ro = get_row(a, old), rl = get_row(a, live);
	ro.next_seq = rl.next_seq = 2;
	OK(a, ops->update(a, &ro)); /* ended and nobody's: a note in its history */
	OK(a, ops->update(a, &rl));
	OK(a, ops->commit(a));

	int64_t purged = -1;
	OK(a, ops->begin(a));
	OK(a, ops->purge_batch(a, SAGA_COMPLETED, T0 + 50, &purged));
	OK(a, ops->commit(a));
	ck_assert_int_eq(purged, 1);
	saga_row gone;
	ck_assert_int_eq(ops->load(a, &gone, old, NULL), SAGA_ENOTFOUND);
	int n = 0;
	OK(a, ops->history(a, old, count_event, &n, NULL, 0));
	ck_assert_int_eq(n, 0);
	OK(a, ops->history(a, live, count_event, &n, NULL, 0));
	ck_assert_int_eq(n, 1);
	get_row(a, young);
	get_row(a, other);
	OK(a, ops->begin(a));
	OK(a, ops->purge_batch(a, SAGA_COMPLETED, T0 + 50, &purged));
	OK(a, ops->commit(a));
	ck_assert_int_eq(purged, 0);
	close_store(a);
}
END_TEST

/* ---- commands ---- */

typedef struct cmds {
	store_command c[8];
	char out[8][64];
	int n;
} cmds;

static int keep_cmd(const store_command *c, void *user)
{
	cmds *l = user;
	if (l->n < 8) {
		l->c[l->n] = *c;
		saga_fmt(l->out[l->n], sizeof(l->out[0]), "%s", c->output ? c->output : "(null)");
		l->c[l->n].output = NULL;
		l->n++;
	}
	return 0;
}

static cmds list_cmds(saga_store *s)
{
	cmds l = { .n = 0 };
	OK(s, ops->begin(s));
	OK(s, ops->commands(s, keep_cmd, &l));
	OK(s, ops->commit(s));
	return l;
}

static void put_cmd(saga_store *s, int64_t instance, int verb, const char *output)
{
	store_command c = { 0, instance, verb, 2, SAGA_PHASE_COMPENSATION, 3, output, T0 + verb };
	OK(s, ops->begin(s));
	OK(s, ops->put_command(s, &c));
	OK(s, ops->commit(s));
}

/* Commands: any process puts them; an owner lists those of the instances
 * it holds, in the order they were put, and deletes what it carried out;
 * any handle counts those of one (instance, verb, step, phase); they
 * follow the instance to its next owner. */
START_TEST(commands_put_list_delete)
{
	saga_store *a = open_store(), *b = open_store(), *c = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	new_owner(c, LONG);
	int64_t x = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	int64_t z = put_row(b, make_row(DEF, 1, SAGA_RUNNING, 0, eb, 1));
	int64_t pool = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 9, 0, 0));
	put_cmd(c, x, 1, "{\"out\":1}");
	put_cmd(c, z, 2, NULL);
	put_cmd(c, pool, 3, NULL);
	put_cmd(b, x, 4, NULL);

	cmds l = list_cmds(a);
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.c[0].instance, x);
	ck_assert_int_eq(l.c[0].verb, 1);
	ck_assert_int_eq(l.c[0].step, 2);
	ck_assert_int_eq(l.c[0].phase, SAGA_PHASE_COMPENSATION);
	ck_assert_int_eq(l.c[0].result, 3);
	ck_assert_uint_eq(l.c[0].requested_at, T0 + 1);
	ck_assert_str_eq(l.out[0], "{\"out\":1}");
	ck_assert_int_eq(l.c[1].instance, x);
	ck_assert_int_eq(l.c[1].verb, 4);
	ck_assert_str_eq(l.out[1], "(null)");
	ck_assert_int_lt(l.c[0].id, l.c[1].id);
	cmds lb = list_cmds(b);
	ck_assert_int_eq(lb.n, 1);
	ck_assert_int_eq(lb.c[0].instance, z);
	ck_assert_int_eq(list_cmds(c).n, 0);

	OK(a, ops->begin(a));
	OK(a, ops->delete_command(a, l.c[0].id));
	OK(a, ops->commit(a));
	l = list_cmds(a);
	ck_assert_int_eq(l.n, 1);
	ck_assert_int_eq(l.c[0].verb, 4);
	/* Counted by instance, verb, step and phase, whoever holds it. */
	store_command q = { 0, x, 4, 2, SAGA_PHASE_COMPENSATION, 0, NULL, 0 };
	int64_t n = -1;
	OK(c, ops->count_commands(c, &q, &n));
	ck_assert_int_eq(n, 1);
	put_cmd(b, x, 4, NULL);
	OK(c, ops->count_commands(c, &q, &n));
	ck_assert_int_eq(n, 2);
	q.verb = 1;
	OK(c, ops->count_commands(c, &q, &n));
	ck_assert_int_eq(n, 0);
	q.verb = 4;
	q.phase = SAGA_PHASE_ACTION;
	OK(c, ops->count_commands(c, &q, &n));
	ck_assert_int_eq(n, 0);

	/* The instance changes hands: its command goes with it. */
	OK(a, ops->retire(a));
	ids got = claim(c, T0, 10);
	ck_assert_int_eq(got.n, 1);
	l = list_cmds(c);
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.c[0].instance, x);
	ck_assert_int_eq(l.c[0].verb, 4);
	ck_assert_int_eq(l.c[1].instance, x);
	close_store(a);
	close_store(b);
	close_store(c);
}
END_TEST

/* ---- wake-ups ---- */

/* changed() says yes after another handle's commit, and no after only this
 * handle's own (the first call says yes). */
START_TEST(changed_sees_peers_not_self)
{
	saga_store *a = open_store(), *b = open_store();
	bool ch = false;
	OK(a, ops->changed(a, &ch));
	ck_assert(ch);
	OK(a, ops->changed(a, &ch));
	ck_assert(!ch);
	int64_t ea = new_owner(a, LONG);
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	OK(a, ops->changed(a, &ch));
	ck_assert(!ch);
	int64_t eb = new_owner(b, LONG);
	OK(a, ops->changed(a, &ch));
	ck_assert(ch);
	OK(a, ops->changed(a, &ch));
	ck_assert(!ch);
	put_row(b, make_row(DEF, 1, SAGA_RUNNING, 0, eb, 1));
	OK(a, ops->changed(a, &ch));
	ck_assert(ch);
	/* A transaction of a peer's that rolls back changes nothing. */
	OK(b, ops->begin(b));
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, eb, 1);
	OK(b, ops->insert(b, &r));
	ops->rollback(b);
	OK(a, ops->changed(a, &ch));
	ck_assert(!ch);
	close_store(a);
	close_store(b);
}
END_TEST

/* next_due: the earliest due time of this owner's parked instances and of
 * the pool's it could claim; next_due_pool: of the pool's only. 0 = none. */
START_TEST(next_due_own_and_pool)
{
	saga_store *a = open_store(), *b = open_store();
	int64_t ea = new_owner(a, LONG), eb = new_owner(b, LONG);
	uint64_t due = 1, pool = 1;
	OK(a, ops->next_due(a, &due));
	OK(a, ops->next_due_pool(a, &pool));
	ck_assert_uint_eq(due, 0);
	ck_assert_uint_eq(pool, 0);
	/* Never counted: a peer's, an unserved definition's, an unscheduled
	 * one, an ended one, a running one of this owner's. */
	put_row(b, make_row(DEF, 1, SAGA_WAITING, T0 + 1, eb, 1));
	put_row(a, make_row(DEF, 2, SAGA_WAITING, T0 + 2, 0, 0));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, 0, 0, 0));
	put_row(a, make_row(DEF, 1, SAGA_COMPLETED, T0 + 3, 0, 1));
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, T0 + 4, ea, 1));
	OK(a, ops->next_due(a, &due));
	OK(a, ops->next_due_pool(a, &pool));
	ck_assert_uint_eq(due, 0);
	ck_assert_uint_eq(pool, 0);

	int64_t mine = put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 50, ea, 1));
	put_row(a, make_row(DEF, 1, SAGA_WAITING, T0 + 70, 0, 0));
	OK(a, ops->next_due(a, &due));
	OK(a, ops->next_due_pool(a, &pool));
	ck_assert_uint_eq(due, T0 + 50);
	ck_assert_uint_eq(pool, T0 + 70);
	saga_row r = get_row(a, mine);
	r.due_at = T0 + 90;
	OK(a, try_update(a, &r));
	OK(a, ops->next_due(a, &due));
	ck_assert_uint_eq(due, T0 + 70);
	/* A running instance in the pool is due now: a time that is not 0 and
	 * not later than any other. */
	put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, 0, 0));
	OK(a, ops->next_due(a, &due));
	OK(a, ops->next_due_pool(a, &pool));
	ck_assert_uint_gt(pool, 0);
	ck_assert_uint_le(pool, T0);
	ck_assert_uint_eq(due, pool);
	close_store(a);
	close_store(b);
}
END_TEST

/* ---- who may write: the writer's own ownership, not the row's ---- */

/* Two live owners, a and b; a holds one running instance (its id). */
static int64_t held_by_a(saga_store **a, saga_store **b)
{
	*a = open_store();
	*b = open_store();
	int64_t ea = new_owner(*a, LONG);
	new_owner(*b, LONG);
	return put_row(*a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
}

/* update() checks the writer, not only the row it loaded: a handle that
 * does not own an instance cannot write it by reading the row first. Every
 * instance write carries the writer's own owner check ("... AND owner = E",
 * E the writer's epoch), as the claim does. */
START_TEST(update_by_non_owner_refused)
{
	saga_store *a, *b;
	int64_t id = held_by_a(&a, &b);
	saga_row r = get_row(b, id);
	r.step = 5;
	ck_assert_int_eq(try_update(b, &r), SAGA_EFENCED);
	ck_assert_int_eq(get_row(a, id).step, 0);
	close_store(a);
	close_store(b);
}
END_TEST

/* History is fenced too: a handle that does not own an instance cannot
 * commit a row of its history (else the owner's next row would take the
 * same seq, from its row's next_seq, and its commits fail with
 * SAGA_EEXISTS round after round). */
START_TEST(history_by_non_owner_refused)
{
	saga_store *a, *b;
	int64_t id = held_by_a(&a, &b);
	saga_row r = get_row(b, id);
	OK(b, ops->begin(b));
	saga_hist h = make_hist(id, r.next_seq, r.fence, SAGA_EVENT_STATE, "not mine");
	int rc = ops->add_history(b, &h);
	if (rc == SAGA_OK)
		rc = ops->commit(b);
	else
		ops->rollback(b);
	ck_assert_msg(rc != SAGA_OK, "a non-owner's history row was committed");
	/* The owner writes its own next row. */
	saga_row mine = get_row(a, id);
	OK(a, ops->begin(a));
	h = make_hist(id, mine.next_seq, mine.fence, SAGA_EVENT_STATE, "mine");
	OK(a, ops->add_history(a, &h));
	mine.next_seq++;
	OK(a, ops->update(a, &mine));
	OK(a, ops->commit(a));
	close_store(a);
	close_store(b);
}
END_TEST

/* Once a fenced write is refused, the transaction can only roll back:
 * commit gives SAGA_EFENCED and none of its other writes land (here a
 * history row of another instance). A backend that sends a round's writes
 * in one batch (the PostgreSQL pipeline) learns of the refusal only at the
 * commit: every backend says the same. */
START_TEST(refused_write_fails_the_commit)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	int64_t x = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 2));
	int64_t y = put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1));
	saga_row stale = get_row(a, x);
	stale.fence = 1;
	OK(a, ops->begin(a));
	saga_hist h = make_hist(y, 1, 1, SAGA_EVENT_CREATED, "");
	OK(a, ops->add_history(a, &h));
	int rc = ops->update(a, &stale);
	int crc = ops->commit(a);
	if (crc != SAGA_OK)
		ops->rollback(a);
	ck_assert(rc == SAGA_EFENCED || crc == SAGA_EFENCED);
	ck_assert_int_eq(crc, SAGA_EFENCED);
	int n = 0;
	OK(a, ops->history(a, y, count_event, &n, NULL, 0));
	ck_assert_int_eq(n, 0);
	close_store(a);
}
END_TEST

/* Texts a store must keep byte for byte wherever it writes them (a backend
 * that gathers a round's writes into arrays must quote them): quotes,
 * backslashes, the array syntax's commas and braces, NULL spelled out,
 * spaces at the ends, an empty text and non-ASCII bytes. */
/* The store holds the owner as dead (a peer reaped it) while the handle's
 * own count of its lease still runs: the round's renewal is refused, at
 * begin or, by a backend that sends it with the round's writes, at the
 * commit, and nothing of the round commits; from then on begin refuses at
 * once. */
START_TEST(renewal_refused_by_the_store_commits_nothing)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
	r.id = put_row(a, r);
	char sql[128];
	saga_fmt(sql, sizeof(sql), "UPDATE owners SET state = 1 WHERE epoch = %lld", (long long)ea);
	test_store_exec(store_name(), sql);
	int rc = ops->begin(a);
	if (rc == SAGA_OK) {
		r.next_seq = 9;
		saga_hist h = make_hist(r.id, 1, 1, SAGA_EVENT_STATE, "after the lapse");
		if ((rc = ops->update(a, &r)) == SAGA_OK &&
		    (rc = ops->add_history(a, &h)) == SAGA_OK)
			rc = ops->commit(a);
		if (rc != SAGA_OK)
			ops->rollback(a);
	}
	ck_assert_int_eq(rc, SAGA_EFENCED);
	ck_assert_msg(strstr(ops->errmsg(a), "lease"), "message: %s", ops->errmsg(a));
	ck_assert_int_eq(get_row(a, r.id).next_seq, 1);
	events l = { .n = 0 };
	OK(a, ops->history(a, r.id, keep_event, &l, NULL, 0));
	ck_assert_int_eq(l.n, 0);
	ck_assert_int_eq(ops->lease_left(a), 0);
	ck_assert_int_eq(ops->begin(a), SAGA_EFENCED);
	close_store(a);
}
END_TEST

static const char *const awkward[] = {
	"{\"q\":\"a\\\"b\\\\c\"}",  "NULL", "a,b}", "{\"x\":\"{1,2}\"}", " two  ", "", "\"", "\\",
	"caf\xc3\xa9 \xe2\x82\xac", "{}",
};
#define NAWKWARD (sizeof(awkward) / sizeof(awkward[0]))
#define NROUND   700 /* more instances than a backend may gather at once */

/* One round writes many instances and their history in one transaction:
 * every row lands as written (awkward texts included), one instance
 * written twice keeps its second write, a read in the transaction sees
 * the writes made so far, and after the commit every row and every
 * history row is there exactly once. */
START_TEST(a_round_of_many_writes)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	static saga_row rows[NROUND];
	static char ctx[NROUND][64];
	/* The starts carry awkward texts too, and every third a business key
	 * (one of them the text NULL, which is not SQL's NULL). */
	for (int i = 0; i < NROUND; i++) {
		rows[i] = make_row(DEF, 1, SAGA_RUNNING, 0, ea, 1);
		rows[i].context = (char *)awkward[(i + 1) % NAWKWARD];
		saga_fmt(rows[i].error, sizeof(rows[i].error), "%s", awkward[(i + 2) % NAWKWARD]);
		rows[i].has_bkey = i % 3 == 0 || i == 1;
		if (i == 1)
			saga_fmt(rows[i].bkey, sizeof(rows[i].bkey), "NULL");
		else if (rows[i].has_bkey)
			saga_fmt(rows[i].bkey, sizeof(rows[i].bkey), "%s#%d", awkward[i % NAWKWARD],
			         i);
	}
	OK(a, ops->begin(a));
	OK(a, ops->insert_many(a, rows, NROUND));
	OK(a, ops->commit(a));
	for (int i = 0; i < NROUND; i++) {
		char buf[64];
		saga_row back = get_row(a, rows[i].id);
		ck_assert_str_eq(back.uid, rows[i].uid);
		ck_assert_str_eq(back.error, rows[i].error);
		ck_assert_str_eq(context_of(a, rows[i].id, buf, sizeof(buf)), rows[i].context);
		ck_assert_int_eq(back.has_bkey, rows[i].has_bkey);
		if (rows[i].has_bkey)
			ck_assert_str_eq(back.bkey, rows[i].bkey);
	}

	OK(a, ops->begin(a));
	for (int i = 0; i < NROUND; i++) {
		saga_row *r = &rows[i];
		saga_fmt(ctx[i], sizeof(ctx[i]), "%s", awkward[i % NAWKWARD]);
		r->context = ctx[i];
		saga_fmt(r->error, sizeof(r->error), "%s", awkward[(i + 3) % NAWKWARD]);
		r->step = i % 5;
		r->attempt = (uint32_t)i;
		r->next_seq = 3;
		OK(a, ops->update(a, r));
		saga_hist h1 =
		        make_hist(r->id, 1, 1, SAGA_EVENT_CREATED, awkward[(i + 5) % NAWKWARD]);
		saga_hist h2 = make_hist(r->id, 2, 1, SAGA_EVENT_ATTEMPT_START,
		                         awkward[(i + 7) % NAWKWARD]);
		OK(a, ops->add_history(a, &h1));
		OK(a, ops->add_history(a, &h2));
		if (i == NROUND / 2) {
			/* Read in the transaction: the first row's write is seen. */
			saga_row first = get_row(a, rows[0].id);
			ck_assert_int_eq(first.next_seq, 3);
			ck_assert_str_eq(first.error, rows[0].error);
		}
	}
	/* The last instance again, in the same round: its second write wins. */
	saga_row *last = &rows[NROUND - 1];
	last->step = 4;
	last->next_seq = 4;
	saga_fmt(ctx[NROUND - 1], sizeof(ctx[0]), "{\"second\":\"wr,\\\"ite\"}");
	OK(a, ops->update(a, last));
	saga_hist h3 = make_hist(last->id, 3, 1, SAGA_EVENT_STATE, "second");
	OK(a, ops->add_history(a, &h3));
	OK(a, ops->commit(a));

	char buf[64];
	for (int i = 0; i < NROUND; i++) {
		saga_row back = get_row(a, rows[i].id);
		ck_assert_int_eq(back.step, rows[i].step);
		ck_assert_uint_eq(back.attempt, rows[i].attempt);
		ck_assert_int_eq(back.next_seq, rows[i].next_seq);
		ck_assert_int_eq(back.owner, ea);
		ck_assert_str_eq(back.error, rows[i].error);
		ck_assert_str_eq(context_of(a, rows[i].id, buf, sizeof(buf)), ctx[i]);
		events l = { .n = 0 };
		OK(a, ops->history(a, rows[i].id, keep_event, &l, NULL, 0));
		ck_assert_int_eq(l.n, i == NROUND - 1 ? 3 : 2);
		ck_assert_int_eq(l.ev[0].seq, 1);
		ck_assert_int_eq(l.ev[1].seq, 2);
		ck_assert_str_eq(l.detail[0], awkward[(i + 5) % NAWKWARD]);
		ck_assert_str_eq(l.detail[1], awkward[(i + 7) % NAWKWARD]);
		ck_assert_int_eq(l.ev[1].type, SAGA_EVENT_ATTEMPT_START);
		ck_assert_uint_eq(l.ev[1].at_ms, T0 + 2);
	}
	close_store(a);
}
END_TEST

/* One refused write among many in a round refuses the whole round: the
 * commit gives SAGA_EFENCED and no row or history row of it lands, the
 * refused one in the middle of the others. */
START_TEST(one_refused_write_among_many)
{
	saga_store *a = open_store();
	int64_t ea = new_owner(a, LONG);
	saga_row rows[20];
	for (int i = 0; i < 20; i++)
		rows[i] = get_row(a, put_row(a, make_row(DEF, 1, SAGA_RUNNING, 0, ea, 2)));
	OK(a, ops->begin(a));
	int rc = SAGA_OK;
	for (int i = 0; i < 20 && rc == SAGA_OK; i++) {
		saga_row w = rows[i];
		w.step = 3;
		if (i == 11)
			w.fence = 1; /* stale */
		rc = ops->update(a, &w);
		saga_hist h = make_hist(w.id, 1, 2, SAGA_EVENT_STATE, "");
		if (rc == SAGA_OK)
			rc = ops->add_history(a, &h);
	}
	int crc = rc == SAGA_OK ? ops->commit(a) : rc;
	if (crc != SAGA_OK)
		ops->rollback(a);
	ck_assert_int_eq(crc, SAGA_EFENCED);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(get_row(a, rows[i].id).step, 0);
		int n = 0;
		OK(a, ops->history(a, rows[i].id, count_event, &n, NULL, 0));
		ck_assert_int_eq(n, 0);
	}
	close_store(a);
}
END_TEST

/* A handle with no owner registered (never, or since it retired) cannot
 * serve definitions or claim (else claims by nobody would grow fences and
 * count recoveries, pushing an instance to STUCK for crash loops while no
 * one runs it): serve and claim refuse, and nothing changes. */
START_TEST(no_claim_without_owner)
{
	saga_store *a = open_store(), *x = open_store();
	new_owner(a, LONG);
	saga_row r = make_row(DEF, 1, SAGA_RUNNING, 0, 0, 3);
	r.inflight = true;
	int64_t id = put_row(a, r);
	ck_assert_int_eq(ops->epoch(x), 0);
	int src = ops->serve(x, DEF, 1);
	ids got = { .n = 0 };
	int rc = ops->begin(x);
	if (rc == SAGA_OK) {
		rc = ops->claim(x, T0, 10, add_id, &got);
		if (rc == SAGA_OK)
			rc = ops->commit(x);
		else
			ops->rollback(x);
	}
	saga_row now = get_row(a, id);
	ck_assert_msg(got.n == 0,
	              "an unregistered handle claimed %d instance(s) (serve: %s, claim: %s)", got.n,
	              saga_strerror(src), saga_strerror(rc));
	ck_assert_int_eq(now.fence, 3);
	ck_assert_int_eq(now.recoveries, 0);
	close_store(a);
	close_store(x);
}
END_TEST

/* ---- mutants: broken variants of the SQLite backend ---- */

static store_ops mutant_ops;

static uint64_t boot_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The last registrations: epoch, lease, and when it was registered (the
 * SQLite backend's lease clock). */
static struct reg {
	int64_t epoch;
	uint64_t lease_ms, at;
} regs[4];

static int rec_register(saga_store *s, uint64_t lease_ms)
{
	int rc = store_sqlite_ops.register_owner(s, lease_ms);
	if (rc == SAGA_OK) {
		memmove(&regs[1], &regs[0], sizeof(regs) - sizeof(regs[0]));
		regs[0].epoch = store_sqlite_ops.epoch(s);
		regs[0].lease_ms = lease_ms;
		regs[0].at = boot_ms();
	}
	return rc;
}

static const struct reg *reg_of(saga_store *s)
{
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		if (regs[i].epoch == store_sqlite_ops.epoch(s))
			return &regs[i];
	return &regs[sizeof(regs) / sizeof(regs[0]) - 1];
}

/* "revive": a lapsed lease is renewed anyway (the conditional renewal
 * lost its condition), as a dead owner is brought back. Its owner row is
 * rewritten behind the handle's back. */
static int revive_begin(saga_store *s)
{
	int rc = store_sqlite_ops.begin(s);
	if (rc != SAGA_EFENCED)
		return rc;
	sqlite3 *db = NULL;
	char sql[160];
	snprintf(sql, sizeof(sql),
	         "UPDATE owners SET state = 0, lease_until = %llu WHERE epoch = %lld",
	         (unsigned long long)(boot_ms() + reg_of(s)->lease_ms),
	         (long long)store_sqlite_ops.epoch(s));
	if (sqlite3_open(uri, &db) != SQLITE_OK || sqlite3_busy_timeout(db, BUSY_MS) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		rc = SAGA_ESTORE;
	sqlite3_close(db);
	return rc == SAGA_EFENCED ? store_sqlite_ops.begin(s) : rc;
}

/* "no-renewal": begin does not renew; as its owner sees it, the lease
 * lapses one lease after the registration. */
static int norenew_begin(saga_store *s)
{
	const struct reg *r = reg_of(s);
	if (r->epoch && boot_ms() >= r->at + r->lease_ms)
		return SAGA_EFENCED;
	return store_sqlite_ops.begin(s);
}

/* "greedy": a claim that also takes unowned instances regardless of their
 * definition and due time. */
static int greedy_row(const saga_row *r, void *user)
{
	ids *l = user;
	if (r->owner == 0)
		add_id(r->id, l);
	return 0;
}

static int greedy_claim(saga_store *s, uint64_t now, int limit, store_id_fn fn, void *user)
{
	int rc = store_sqlite_ops.claim(s, now, limit, fn, user);
	ids pool = { .n = 0 };
	store_filter f = { -1, NULL, 0, 0, 0, 0, 0 };
	if (rc == SAGA_OK)
		rc = store_sqlite_ops.page(s, &f, 0, 1000, greedy_row, &pool);
	for (int i = 0; i < pool.n && rc == SAGA_OK; i++) {
		bool claimed = false;
		rc = store_sqlite_ops.claim_one(s, pool.v[i], &claimed);
		if (rc == SAGA_OK && claimed)
			fn(pool.v[i], user);
	}
	return rc;
}

/* "ownerless-scan": the scan of running instances forgets the owner. */
static int ownerless_scan(saga_store *s, store_id_fn fn, void *user)
{
	ids all = { .n = 0 };
	int rc = SAGA_OK;
	for (int state = SAGA_RUNNING; state <= SAGA_COMPENSATING && rc == SAGA_OK; state += 2) {
		store_filter f = { state, NULL, 0, 0, 0, 0, 0 };
		rc = store_sqlite_ops.page(s, &f, 0, 1000, add_row_id, &all);
	}
	for (int i = 0; i < all.n && rc == SAGA_OK; i++)
		if (fn(all.v[i], user))
			break;
	return rc;
}

/* "no-reap": reaping finds nobody dead. */
static int noreap_reap(saga_store *s, int64_t *reaped, int *live)
{
	(void)s;
	*reaped = 0;
	*live = 0;
	return SAGA_OK;
}

/* "always-changed": every poll says something changed. */
static int always_changed(saga_store *s, bool *changed)
{
	int rc = store_sqlite_ops.changed(s, changed);
	*changed = true;
	return rc;
}

/* "fenceless-history": the history forgets the fence of each row. */
typedef struct relay {
	saga_event_fn fn;
	void *user;
} relay;

static int zero_fence(const saga_event *e, void *user)
{
	relay *r = user;
	saga_event copy = *e;
	copy.fence = 0;
	return r->fn(&copy, r->user);
}

static int fenceless_history(saga_store *s, int64_t id, saga_event_fn fn, void *user,
                             const char *const *names, size_t n)
{
	relay r = { fn, user };
	return store_sqlite_ops.history(s, id, zero_fence, &r, names, n);
}

/* "load-first": load_many gives only the row of the first id. */
static int first_load_many(saga_store *s, const int64_t *v, size_t n, store_load_fn fn, void *user,
                           const saga_alloc *a)
{
	return store_sqlite_ops.load_many(s, v, n ? 1 : 0, fn, user, a);
}

/* "insert-one": insert_many inserts the first row and gives the others
 * its id. */
static int one_insert_many(saga_store *s, saga_row *rows, size_t n)
{
	int rc = store_sqlite_ops.insert_many(s, rows, n ? 1 : 0);
	for (size_t i = 1; i < n && rc == SAGA_OK; i++)
		rows[i].id = rows[0].id;
	return rc;
}

typedef struct mutant {
	const char *name;
	void (*apply)(store_ops *o);
	const char *catches[4]; /* tests that must fail on it */
} mutant;

static void m_revive(store_ops *o)
{
	o->register_owner = rec_register;
	o->begin = revive_begin;
}
static void m_norenew(store_ops *o)
{
	o->register_owner = rec_register;
	o->begin = norenew_begin;
}
static void m_greedy(store_ops *o)
{
	o->claim = greedy_claim;
}
static void m_scan(store_ops *o)
{
	o->scan_active = ownerless_scan;
}
static void m_noreap(store_ops *o)
{
	o->reap = noreap_reap;
}
static void m_changed(store_ops *o)
{
	o->changed = always_changed;
}
static void m_history(store_ops *o)
{
	o->history = fenceless_history;
}

static void m_loadfirst(store_ops *o)
{
	o->load_many = first_load_many;
}

static void m_insertone(store_ops *o)
{
	o->insert_many = one_insert_many;
}

static const mutant mutants[] = {
	{ "revive",
	  m_revive,
	  { "lapsed_lease_is_never_renewed", "fenced_update_after_peer_claim" } },
	{ "no-renewal", m_norenew, { "begin_renews_the_lease" } },
	{ "greedy", m_greedy, { "claim_takes_only_due_unowned_served" } },
	{ "ownerless-scan", m_scan, { "scans_see_only_own" } },
	{ "no-reap",
	  m_noreap,
	  { "reap_returns_a_lapsed_owners_instances", "closed_owner_is_reaped",
	    "lapsed_lease_is_never_renewed" } },
	{ "always-changed", m_changed, { "changed_sees_peers_not_self" } },
	{ "fenceless-history", m_history, { "history_round_trip" } },
	{ "load-first", m_loadfirst, { "load_many_reads_a_set" } },
	{ "insert-one", m_insertone, { "insert_many_sets_ids" } },
};

/* ---- the suite ---- */

typedef struct test {
	const char *name;
	const TTest *const *fn;
	int timeout;
} test;

#define T(fn, timeout)            \
	{                         \
#fn, &fn, timeout \
	}

static const test tests[] = {
	T(epochs_are_never_reused, 30),
	T(begin_renews_the_lease, 60),
	T(lapsed_lease_is_never_renewed, 30),
	T(rolled_back_renewal_does_not_count, 30),
	T(renewal_refused_by_the_store_commits_nothing, 30),
	T(reap_returns_a_lapsed_owners_instances, 30),
	T(closed_owner_is_reaped, 30),
	T(retire_hands_back_at_once, 30),
	T(fenced_update_after_peer_claim, 30),
	T(stale_fence_refused, 30),
	T(ended_instances_have_no_owner, 30),
	T(claim_takes_only_due_unowned_served, 30),
	T(claim_respects_limit, 30),
	T(claims_never_overlap, 60),
	T(claims_count_recoveries, 30),
	T(scans_see_only_own, 30),
	T(row_round_trip, 30),
	T(load_many_reads_a_set, 30),
	T(insert_many_sets_ids, 30),
	T(business_key_is_unique, 30),
	T(history_round_trip, 30),
	T(definitions_kept_once, 30),
	T(listings_and_counts, 30),
	T(operator_reads, 30),
	T(gauge_reads, 30),
	T(purge_takes_old_ended_instances, 30),
	T(commands_put_list_delete, 30),
	T(changed_sees_peers_not_self, 30),
	T(next_due_own_and_pool, 30),
	T(update_by_non_owner_refused, 30),
	T(history_by_non_owner_refused, 30),
	T(refused_write_fails_the_commit, 30),
	T(a_round_of_many_writes, 60),
	T(one_refused_write_among_many, 30),
	T(no_claim_without_owner, 30),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* One test case per test, named after it: a run can pick any one. */
static Suite *make_suite(const test *list, size_t n)
{
	Suite *s = suite_create("store-conformance");
	for (size_t i = 0; i < n; i++) {
		TCase *tc = tcase_create(list[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, list[i].timeout);
		tcase_add_test(tc, *list[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

/* Runs the named tests of list, which must all fail: 0 when they do. Says
 * `what` and the failure of each. */
static int expect_failures(const test *list, size_t n, const char *const *names, size_t nnames,
                           const char *what)
{
	/* A failing test leaves its store behind: every store of this run is
	 * made in one directory, removed at the end. */
	const char *base = getenv("TMPDIR");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/saga-conformance-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(dir) || setenv("TMPDIR", dir, 1) != 0) {
		perror(dir);
		return EXIT_FAILURE;
	}
	int missed = 0;
	for (size_t i = 0; i < nnames && names[i]; i++) {
		SRunner *sr = srunner_create(make_suite(list, n));
		srunner_run(sr, NULL, names[i], CK_SILENT);
		if (srunner_ntests_run(sr) == 1 && srunner_ntests_failed(sr) == 1) {
			TestResult **r = srunner_failures(sr);
			printf("%s %s: %s\n", what, names[i], tr_msg(r[0]));
			free(r);
		} else {
			printf("NOT %s %s (%d run, %d failed)\n", what, names[i],
			       srunner_ntests_run(sr), srunner_ntests_failed(sr));
			missed++;
		}
		srunner_free(sr);
	}
	tmpdir_remove(dir);
	return missed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static const backend *find_backend(const char *name)
{
	for (size_t i = 0; i < COUNT(backends); i++)
		if (!name || strcmp(backends[i].name, name) == 0)
			return &backends[i];
	fprintf(stderr, "no backend named %s\n", name);
	exit(EXIT_FAILURE);
}

static void use_backend(const backend *b)
{
	if (b->available && !b->available()) {
		printf("backend %s is not configured here: skipped\n", b->name);
		exit(77);
	}
	be = b;
	ops = b->ops;
	if (ops->version != STORE_OPS_VERSION) {
		fprintf(stderr, "backend %s: ops version %u, this suite knows %d\n", b->name,
		        ops->version, STORE_OPS_VERSION);
		exit(EXIT_FAILURE);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--mutant") == 0) {
		for (size_t i = 0; i < COUNT(mutants); i++) {
			if (strcmp(mutants[i].name, argv[2]) != 0)
				continue;
			static backend mb;
			mb = backends[0];
			mutant_ops = store_sqlite_ops;
			mutants[i].apply(&mutant_ops);
			mb.ops = &mutant_ops;
			use_backend(&mb);
			return expect_failures(tests, COUNT(tests), mutants[i].catches,
			                       COUNT(mutants[i].catches), "caught by");
		}
		fprintf(stderr, "no mutant named %s\n", argv[2]);
		return EXIT_FAILURE;
	}
	use_backend(find_backend(argc >= 2 ? argv[1] : NULL));
	return run_suite(make_suite(tests, COUNT(tests)));
}
