/* Bringing stored instances back into memory: the recovery scan of the
 * unfinished ones, the timer scan of the due ones, the ready queue, loading
 * and checking a row, and the quarantine of damaged rows. Also unloading,
 * and reloading the instances of a failed transaction.
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void free_inst(saga_engine *e, inst *in)
{
	if (!in)
		return;
	if (in->has_permit)
		saga_breaker_record(in->breaker, &in->permit, SAGA_CALL_IGNORED);
	cJSON_Delete(in->context);
	cJSON_Delete(in->puts);
	saga_free(&e->alloc, in->row.context);
	saga_free(&e->alloc, in);
}

/* A loaded instance by id, or by uid when uid is not NULL; NULL if none. */
inst *find_loaded(saga_engine *e, int64_t id, const char *uid)
{
	for (size_t i = 0; i < e->nloaded; i++) {
		inst *in = e->loaded[i];
		if (uid ? strcmp(in->row.uid, uid) == 0 : in->row.id == id)
			return in;
	}
	return NULL;
}

/* Queues an instance to be loaded. When the queue cannot grow, the
 * instance is left to the next scan of the unfinished instances (the
 * store holds it), so a full queue only delays it; no caller fails for
 * that, so the engine's message is left alone. */
int push_ready(saga_engine *e, int64_t id)
{
	if (e->ready_len == e->ready_cap) {
		size_t cap = e->ready_cap ? e->ready_cap * 2 : 256;
		int64_t *q = saga_malloc(&e->alloc, cap * sizeof(*q));
		if (!q) {
			e->active_scanned = false;
			return SAGA_ENOMEM;
		}
		for (size_t i = 0; i < e->ready_len; i++)
			q[i] = e->ready[(e->ready_head + i) % e->ready_cap];
		saga_free(&e->alloc, e->ready);
		e->ready = q;
		e->ready_cap = cap;
		e->ready_head = 0;
	}
	e->ready[(e->ready_head + e->ready_len) % e->ready_cap] = id;
	e->ready_len++;
	return SAGA_OK;
}

static int64_t pop_ready(saga_engine *e)
{
	int64_t id = e->ready[e->ready_head];
	e->ready_head = (e->ready_head + 1) % e->ready_cap;
	e->ready_len--;
	return id;
}

/* A stored row the engine could have written: the step in range for its
 * phase and state, counters in range. A damaged store must give
 * SAGA_ECORRUPT, never an out-of-bounds step. */
static bool row_consistent(const saga_row *r, const saga_definition *d)
{
	int n = (int)d->nsteps;
	if (r->fwd_started < 0 || r->fwd_started > n || r->attempt > UINT32_MAX / 2 ||
	    r->def_version < 1)
		return false;
	if (r->inflight || r->pending)
		return r->step >= 0 && r->step < n && !(r->inflight && r->pending);
	if (r->phase == SAGA_PHASE_COMPENSATION)
		return r->step >= -1 && r->step < n && r->step < r->fwd_started;
	return r->step >= 0 && r->step <= n;
}

/* Parses a stored context. A parse failure is ENOMEM when the text is
 * well-formed JSON (cJSON ran out of memory), ECORRUPT otherwise. */
int parse_context(saga_engine *e, cJSON **out, const char *text, int64_t id)
{
	*out = cJSON_Parse(text);
	if (*out && cJSON_IsObject(*out))
		return SAGA_OK;
	bool valid = false;
	int rc = SAGA_OK;
	if (!*out && (rc = e->st->json_valid(e->store, text, &valid)))
		return store_err(e, rc);
	if (!*out && valid)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	cJSON_Delete(*out);
	*out = NULL;
	return set_err(e, SAGA_ECORRUPT, "instance %lld: stored context is not a JSON object",
	               (long long)id);
}

/* Checks a loaded row (in in->row) and parses its context. *out is in, or
 * NULL (and 0 returned) when its definition is not registered; in is
 * freed unless it is given back in *out. */
static int take_row(saga_engine *e, inst **out, inst *in)
{
	*out = NULL;
	in->rd = find_def(e, in->row.def_name, in->row.def_version);
	if (!in->rd) {
		log_inst(e, SAGA_LOG_WARN, "definition.unregistered", in, -1, 0, 0, 0,
		         "definition '%s' version %d is not registered", in->row.def_name,
		         in->row.def_version);
		free_inst(e, in);
		return SAGA_OK;
	}
	if (!row_consistent(&in->row, in->rd->def)) {
		int64_t bad = in->row.id;
		free_inst(e, in);
		return set_err(e, SAGA_ECORRUPT, "instance %lld: its stored state is inconsistent",
		               (long long)bad);
	}
	int rc = parse_context(e, &in->context, in->row.context, in->row.id);
	if (rc) {
		free_inst(e, in);
		return rc;
	}
	*out = in;
	return SAGA_OK;
}

/* Loads an instance row into memory. SAGA_ENOTFOUND when the id is unknown;
 * *out is NULL (and 0 returned) when its definition is not registered. */
int load_inst(saga_engine *e, inst **out, int64_t id, const char *uid)
{
	*out = NULL;
	inst *in = saga_calloc(&e->alloc, 1, sizeof(*in));
	if (!in)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	int rc = uid ? e->st->load_uid(e->store, &in->row, uid, &e->alloc)
	             : e->st->load(e->store, &in->row, id, &e->alloc);
	if (rc) {
		saga_free(&e->alloc, in->row.context);
		saga_free(&e->alloc, in);
		if (rc == SAGA_ENOTFOUND)
			return set_err(e, rc, "no such instance");
		return store_err(e, rc);
	}
	return take_row(e, out, in);
}

static int queue_id(int64_t id, void *user)
{
	saga_engine *e = user;
	return push_ready(e, id) ? 1 : 0;
}

static bool quarantined(saga_engine *e, int64_t id)
{
	for (size_t i = 0; i < e->nquarantine; i++)
		if (e->quarantine[i] == id)
			return true;
	return false;
}

static int quarantine_add(saga_engine *e, int64_t id)
{
	int64_t *q = saga_realloc(&e->alloc, e->quarantine, (e->nquarantine + 1) * sizeof(*q));
	if (!q)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	q[e->nquarantine++] = id;
	e->quarantine = q;
	return SAGA_OK;
}

/* Work that other processes made, or left: looked for every SAGA_POLL_MS,
 * and at once when another connection has committed (PRAGMA
 * data_version) or a command was written here. Owners that are gone are
 * reaped (their instances go back to the pool), unowned due instances are
 * claimed up to the room in memory, and the commands for this owner's
 * instances are read. Also the heartbeat: the lease is renewed (by a
 * transaction) once a third of it has passed. */
int look_outside(saga_engine *e)
{
	uint64_t now = saga_sys_mono_ms(NULL);
	bool changed = false;
	int rc = owner_ready(e);
	if (rc)
		return rc;
	rc = e->st->changed(e->store, &changed);
	if (rc)
		return store_err(e, rc);
	if (renew_due(e) && (rc = ensure_txn(e))) /* committed with the round */
		return rc;
	bool poll = now >= e->next_poll;
	bool timers = e->next_timer == 0 || e->next_timer <= now_wall(e);
	bool cmds = changed || poll || e->look_now;
	if (!cmds && !timers)
		return SAGA_OK;
	e->look_now = false;
	if (poll) {
		e->next_poll = now + SAGA_POLL_MS;
		int64_t reaped = 0;
		int live = 0;
		if ((rc = e->st->reap(e->store, &reaped, &live)))
			return store_err(e, rc);
		if (reaped)
			log_at(e, SAGA_LOG_INFO, "owners.reaped",
			       "%lld owner(s) gone: their unfinished instances are back in the "
			       "pool",
			       (long long)reaped);
		e->peers = live;
	}
	size_t busy = e->nloaded + e->ready_len;
	if (busy < e->max_in_flight) {
		uint64_t nd = 0, wall = now_wall(e);
		if ((rc = e->st->next_due_pool(e->store, &nd)))
			return store_err(e, rc);
		if (nd && nd <= wall) {
			int room = (int)(e->max_in_flight - busy);
			if ((rc = ensure_txn(e)))
				return rc;
			if ((rc = e->st->claim(e->store, wall, room, queue_id, e)))
				return store_err(e, rc);
		} else if (nd && (e->next_timer == 0 || nd < e->next_timer)) {
			e->next_timer = nd;
		}
	}
	/* Commands come from another process's commit, or from this one. */
	return cmds ? take_commands(e) : SAGA_OK;
}

/* Has the round instances to process (answers to record, or ones between
 * attempts)? */
static bool will_write(saga_engine *e)
{
	for (size_t i = 0; i < e->nloaded; i++) {
		const inst *in = e->loaded[i];
		if ((in->stage == STAGE_RESULT || in->stage == STAGE_PROCESS) && !in->lost)
			return true;
	}
	return false;
}

/* The batch being loaded: the ids fill() took from the queue (in id
 * order, once each), and which of them a row came for. */
struct batch {
	saga_engine *e;
	int64_t *ids;
	bool *seen; /* a row came for ids[i] */
	size_t n;
	int rc; /* an error that stopped it */
};

/* Adds an instance to memory, keeping fill()'s rules: a damaged row is
 * quarantined (and the others go on), one owned by another owner or of a
 * definition not registered here is skipped. */
static int admit(saga_engine *e, int64_t id, inst *in, int rc)
{
	if (rc == SAGA_ENOTFOUND)
		return SAGA_OK;
	if (rc == SAGA_ECORRUPT) {
		/* One damaged row must not hold up the others. */
		log_at(e, SAGA_LOG_ERROR, "instance.corrupt", "%s; the instance is skipped",
		       saga_engine_errmsg(e));
		if ((rc = quarantine_add(e, id)))
			return rc;
		e->new_corrupt = id;
		return SAGA_OK;
	}
	if (rc)
		return rc;
	if (in && in->row.owner != e->st->epoch(e->store)) {
		free_inst(e, in); /* not this process's (any more) */
		return SAGA_OK;
	}
	if (!in)
		return SAGA_OK;
	in->stage = STAGE_PROCESS;
	e->loaded[e->nloaded++] = in;
	return SAGA_OK;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int batch_row(saga_row *r, void *user)
{
	struct batch *b = user;
	saga_engine *e = b->e;
	const int64_t *at = bsearch(&r->id, b->ids, b->n, sizeof(*b->ids), cmp_id);
	size_t i = at ? (size_t)(at - b->ids) : b->n;
	inst *in = i < b->n && !b->seen[i] ? saga_calloc(&e->alloc, 1, sizeof(*in)) : NULL;
	if (!in) {
		saga_free(&e->alloc, r->context);
		if (i == b->n || b->seen[i])
			return 0; /* not asked for, or given twice: a store's mistake, ignored */
		b->rc = set_err(e, SAGA_ENOMEM, "out of memory");
		return 1;
	}
	b->seen[i] = true;
	in->row = *r;
	int rc = take_row(e, &in, in);
	return (b->rc = admit(e, r->id, in, rc)) != SAGA_OK;
}

/* Takes up to the room in memory from the ready queue and loads them with
 * one store call. An id the batch did not give is loaded alone, which
 * tells a missing row (skipped) from a damaged one (quarantined). */
static int load_batch(saga_engine *e)
{
	size_t room = e->max_in_flight - e->nloaded;
	size_t cap = room < e->ready_len ? room : e->ready_len;
	struct batch b = { .e = e };
	b.ids = saga_malloc(&e->alloc, cap * (sizeof(*b.ids) + sizeof(*b.seen)));
	if (!b.ids)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	b.seen = (bool *)(b.ids + cap);
	while (b.n < cap && e->ready_len) {
		int64_t id = pop_ready(e);
		if (!find_loaded(e, id, NULL) && !quarantined(e, id))
			b.ids[b.n++] = id;
	}
	/* In id order, once each: a row is found by its id. */
	qsort(b.ids, b.n, sizeof(*b.ids), cmp_id);
	size_t kept = 0;
	for (size_t i = 0; i < b.n; i++)
		if (kept == 0 || b.ids[kept - 1] != b.ids[i])
			b.ids[kept++] = b.ids[i];
	b.n = kept;
	memset(b.seen, 0, b.n * sizeof(*b.seen));
	int rc = b.n ? e->st->load_many(e->store, b.ids, b.n, batch_row, &b, &e->alloc) : SAGA_OK;
	if (rc)
		rc = store_err(e, rc);
	else
		rc = b.rc;
	for (size_t i = 0; i < b.n && rc == SAGA_OK; i++) {
		if (b.seen[i])
			continue;
		inst *in = NULL;
		int got = load_inst(e, &in, b.ids[i], NULL);
		rc = admit(e, b.ids[i], in, got);
	}
	if (rc) /* what was taken and not loaded waits in the queue again */
		for (size_t i = 0; i < b.n; i++)
			if (!find_loaded(e, b.ids[i], NULL) && !quarantined(e, b.ids[i]))
				push_ready(e, b.ids[i]);
	saga_free(&e->alloc, b.ids);
	return rc;
}

/* Brings due instances into memory, up to max_in_flight. */
int fill(saga_engine *e)
{
	/* A round that will write opens its transaction first, so that what
	 * it reads (another process's commands above all) is what it writes
	 * against: no command committed after the look can miss an instance
	 * this round ends. */
	int rc = SAGA_OK;
	if (will_write(e) && (rc = ensure_txn(e)))
		return rc;
	rc = look_outside(e);
	if (rc)
		return rc;
	if (!e->active_scanned) {
		e->active_scanned = true;
		if ((rc = e->st->scan_active(e->store, queue_id, e)))
			return store_err(e, rc);
		if (!e->active_scanned) /* the queue could not take them all */
			return set_err(e, SAGA_ENOMEM, "out of memory");
	}
	uint64_t now = now_wall(e);
	if (e->ready_len == 0 && e->nloaded < e->max_in_flight &&
	    (e->next_timer == 0 || e->next_timer <= now)) {
		size_t before = e->ready_len;
		size_t want = e->max_in_flight - e->nloaded + e->nquarantine;
		int room = want < INT_MAX ? (int)want : INT_MAX;
		if ((rc = e->st->scan_due(e->store, now, room, queue_id, e)))
			return store_err(e, rc);
		if (e->ready_len - before < (size_t)room) {
			uint64_t nd = 0;
			if ((rc = e->st->next_due(e->store, &nd)))
				return store_err(e, rc);
			/* Later parks lower next_timer; UINT64_MAX means none stored. */
			e->next_timer = nd ? (nd > now ? nd : now + 1) : UINT64_MAX;
		}
	}
	while (e->ready_len && e->nloaded < e->max_in_flight)
		if ((rc = load_batch(e)))
			return rc;
	return SAGA_OK;
}

void unload(saga_engine *e, size_t i)
{
	free_inst(e, e->loaded[i]);
	e->loaded[i] = e->loaded[--e->nloaded];
}

/* After a failed transaction: the instances it changed are reloaded from the
 * store, which still holds their last committed state. */
void discard_round(saga_engine *e)
{
	abort_txn(e);
	e->look_now = true; /* commands carried out in it wait in the store again */
	for (size_t i = e->nloaded; i-- > 0;) {
		inst *in = e->loaded[i];
		if (!in->uncommitted && in->stage != STAGE_RESULT)
			continue;
		int64_t id = in->row.id;
		unload(e, i);
		push_ready(e, id);
	}
}

/* The healthy instances ran; a damaged one found on the way is reported
 * (once: it is skipped from then on). */
int report_corrupt(saga_engine *e, int rc)
{
	if (rc == SAGA_OK && e->new_corrupt)
		rc = set_err(
		        e, SAGA_ECORRUPT,
		        "instance %lld is damaged in the store and was skipped; the others ran",
		        (long long)e->new_corrupt);
	e->new_corrupt = 0;
	return rc;
}

bool nothing_due(saga_engine *e)
{
	return e->nloaded == 0 && e->ready_len == 0 && e->active_scanned &&
	       (e->next_timer == UINT64_MAX || e->next_timer > now_wall(e));
}
