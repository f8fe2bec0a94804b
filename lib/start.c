/* Creating instances: checking the requests, inserting the rows in the open
 * transaction, and handing the new instances to the driver, committed alone
 * (saga_start, saga_start_batch) or with a round (saga_run_due_start).
 * SPDX-License-Identifier: MIT */
#include "engine_int.h"

#include <string.h>
#include <sys/random.h>

/* A 128-bit id in hex: 48 bits of the creation time in ms, then 80 random
 * bits. Unique across stores, so a participant never sees the same
 * idempotency key from two instances; time-ordered, so the store's uid index
 * grows at its end instead of touching a random page per new instance. */
static void make_uid(saga_engine *e, char out[SAGA_UID_LEN + 1])
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		uint64_t x = saga_random_next(&e->rng) ^ seed_from_system();
		uint64_t y = saga_random_next(&e->rng);
		memcpy(b, &x, 8);
		memcpy(b + 8, &y, 8);
	}
	uint64_t ms = now_wall(e);
	for (int i = 5; i >= 0; i--) {
		b[i] = (unsigned char)(ms & 0xff);
		ms >>= 8;
	}
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[SAGA_UID_LEN] = '\0';
}

/* The in-memory copy of a row just inserted, so that it need not be read
 * back; NULL when memory is short (it is then loaded from the store). */
static inst *fresh_inst(saga_engine *e, const saga_row *r, const reg_def *rd)
{
	inst *in = saga_calloc(&e->alloc, 1, sizeof(*in));
	if (!in)
		return NULL;
	in->row = *r;
	in->rd = rd;
	in->row.context = saga_strdup(&e->alloc, r->context);
	if (!in->row.context || !(in->context = cJSON_Parse(r->context)) ||
	    !cJSON_IsObject(in->context)) {
		free_inst(e, in);
		return NULL;
	}
	return in;
}

/* A start being made: its row (in tmp.row) and its input's text. */
typedef struct pending_start {
	inst tmp;
	char *text;
} pending_start;

/* Makes the row of a start in ps (owned by this process, in the open
 * transaction), or, with look_up, finds the instance of its business key:
 * *found, *id. */
static int start_prepare(saga_engine *e, const saga_start_request *q, pending_start *ps,
                         int64_t *id, bool *found, uint64_t start_at, bool look_up)
{
	*found = false;
	ps->text = NULL;
	const reg_def *rd = find_def(e, q->definition, 0);
	if (!rd)
		return set_err(e, SAGA_ENOTFOUND, "definition '%s' is not registered",
		               q->definition);
	/* Looked up in the transaction that inserts: another process may be
	 * starting the same key. */
	int rc = ensure_txn(e);
	if (rc)
		return rc;
	if (q->business_key && look_up) {
		rc = e->st->find_bkey(e->store, id, q->business_key);
		if (rc == SAGA_OK) {
			*found = true;
			return SAGA_OK;
		}
		if (rc != SAGA_ENOTFOUND)
			return store_err(e, rc);
	}
	char *text = q->input ? cJSON_PrintUnformatted(q->input) : NULL;
	if (q->input && !text)
		return set_err(e, SAGA_ENOMEM, "out of memory");
	ps->text = text;
	uint64_t now = now_wall(e);
	memset(&ps->tmp, 0, sizeof(ps->tmp));
	saga_row *r = &ps->tmp.row;
	ps->tmp.rd = rd;
	make_uid(e, r->uid);
	saga_fmt(r->def_name, sizeof(r->def_name), "%s", rd->def->name);
	r->def_version = rd->def->version;
	if (q->business_key) {
		r->has_bkey = true;
		saga_fmt(r->bkey, sizeof(r->bkey), "%s", q->business_key);
	}
	uint64_t begin = start_at > now ? start_at : now;
	r->state = begin > now ? SAGA_WAITING : SAGA_RUNNING;
	r->phase = SAGA_PHASE_ACTION;
	r->due_at = begin;
	r->deadline_at = rd->def->deadline_ms ? time_add(begin, rd->def->deadline_ms) : 0;
	r->created_at = r->updated_at = now;
	r->context = text ? text : (char *)"{}";
	/* This process runs what it starts. The row is written with the seq
	 * after its CREATED row's, which is written next (it needs the id). */
	r->owner = e->st->epoch(e->store);
	r->fence = 1;
	r->next_seq = 2;
	return ensure_txn(e);
}

/* After the insert: the CREATED row, and the answers. */
static int start_finish(saga_engine *e, const saga_start_request *q, pending_start *ps, int64_t *id,
                        int *created, inst **fresh)
{
	saga_row *r = &ps->tmp.row;
	r->next_seq = 1;
	int rc = record(e, &ps->tmp, SAGA_EVENT_CREATED, -1, 0, 0, SAGA_OUTCOME_NONE,
	                q->business_key ? q->business_key : "");
	if (rc == SAGA_OK) {
		*id = r->id;
		*created = 1;
		e->txn_started++;
		if (fresh)
			*fresh = fresh_inst(e, r, ps->tmp.rd);
	}
	return rc;
}

/* Inserts one instance in the open transaction; *id is the existing
 * instance's when the business key is taken. With fresh, *fresh may receive
 * the new instance ready to run. An instance with a start_at in the future
 * is written WAITING until then (a scheduled start). */
static int start_one(saga_engine *e, const saga_start_request *q, int64_t *id, int *created,
                     inst **fresh, uint64_t start_at)
{
	*created = 0;
	pending_start ps;
	bool found = false;
	int rc = start_prepare(e, q, &ps, id, &found, start_at, true);
	if (rc || found) {
		cJSON_free(ps.text);
		return rc;
	}
	rc = e->st->insert(e->store, &ps.tmp.row);
	/* Another process started the key since it was looked up (on
	 * PostgreSQL the insert waits for that one's commit): its instance is
	 * the one. */
	if (rc == SAGA_EEXISTS && q->business_key &&
	    e->st->find_bkey(e->store, id, q->business_key) == SAGA_OK)
		rc = SAGA_OK;
	else if (rc)
		rc = store_err(e, rc);
	else
		rc = start_finish(e, q, &ps, id, created, fresh);
	cJSON_free(ps.text);
	return rc;
}

static int check_request(saga_engine *e, const saga_start_request *q)
{
	if (!q->definition)
		return set_err(e, SAGA_EINVAL, "a definition name is needed");
	const char *bk = q->business_key;
	if (bk && (!*bk || strlen(bk) > SAGA_KEY_MAX))
		return set_err(e, SAGA_EINVAL, "business key must be 1 to %d bytes", SAGA_KEY_MAX);
	if (q->input && !cJSON_IsObject(q->input))
		return set_err(e, SAGA_EINVAL, "input must be a JSON object");
	return SAGA_OK;
}

/* Checks the requests and zeroes the answers; called with the mutex. */
int starts_check(saga_engine *e, start_set *ss)
{
	for (size_t i = 0; i < ss->n; i++) {
		ss->ids[i] = 0;
		if (ss->created)
			ss->created[i] = 0;
	}
	int rc = SAGA_OK;
	for (size_t i = 0; i < ss->n && rc == SAGA_OK; i++) {
		rc = check_request(e, &ss->reqs[i]);
		/* Refused here, not in the transaction, where it would also fail
		 * the starts of other threads that share the commit. */
		if (rc == SAGA_OK && !find_def(e, ss->reqs[i].definition, 0))
			rc = set_err(e, SAGA_ENOTFOUND, "definition '%s' is not registered",
			             ss->reqs[i].definition);
	}
	if (rc == SAGA_OK && e->stopping)
		rc = set_err(e, SAGA_ECLOSED, "engine is closing");
	return rc;
}

/* ss's requests, inserted with one store call (on PostgreSQL one round
 * trip, not two each): a business key already taken, by another instance
 * or by an earlier request of the batch, gets no row, and its request the
 * instance that holds the key. */
static int starts_insert_many(saga_engine *e, start_set *ss, size_t room, pending_start *ps,
                              saga_row *rows)
{
	int rc = SAGA_OK;
	size_t m = 0;
	for (; m < ss->n && rc == SAGA_OK; m++) {
		bool found = false;
		rc = start_prepare(e, &ss->reqs[m], &ps[m], &ss->ids[m], &found, 0, false);
	}
	for (size_t k = 0; k < m && rc == SAGA_OK; k++)
		rows[k] = ps[k].tmp.row;
	if (rc == SAGA_OK && (rc = e->st->insert_many(e->store, rows, m)))
		rc = store_err(e, rc);
	for (size_t i = 0; i < m && rc == SAGA_OK; i++) {
		const char *key = ss->reqs[i].business_key;
		if (!rows[i].id) {
			/* Taken: the holder's id (seen in this transaction). */
			if (!key)
				rc = set_err(e, SAGA_ESTORE, "the store gave a new instance no id");
			else if (e->st->find_bkey(e->store, &ss->ids[i], key) != SAGA_OK)
				rc = set_err(e, SAGA_EEXISTS,
				             "business key '%s' is taken, and its instance was not "
				             "found",
				             key);
			continue;
		}
		int made = 0;
		ps[i].tmp.row = rows[i];
		rc = start_finish(e, &ss->reqs[i], &ps[i], &ss->ids[i], &made,
		                  ss->fresh && i < room ? &ss->fresh[i].in : NULL);
		if (rc == SAGA_OK && ss->created)
			ss->created[i] = made;
	}
	for (size_t k = 0; k < m; k++)
		cJSON_free(ps[k].text);
	return rc;
}

/* Inserts the instances in the open transaction. With room in memory and
 * nothing queued before them, new instances go straight to the driver
 * instead of being read back: their copies wait in ss->fresh. More than
 * one go in one store call; when memory for that is short, each goes
 * alone. */
int starts_insert(saga_engine *e, start_set *ss)
{
	size_t room = e->ready_len == 0 && e->nloaded < e->max_in_flight
	                      ? e->max_in_flight - e->nloaded
	                      : 0;
	ss->fresh = room && ss->n ? saga_calloc(&e->alloc, ss->n, sizeof(*ss->fresh)) : NULL;
	size_t m = ss->n;
	pending_start *ps = m > 1 ? saga_malloc(&e->alloc, m * sizeof(*ps)) : NULL;
	saga_row *rows = ps ? saga_malloc(&e->alloc, m * sizeof(*rows)) : NULL;
	int rc = rows ? starts_insert_many(e, ss, room, ps, rows) : SAGA_OK;
	for (size_t i = 0; !rows && i < ss->n && rc == SAGA_OK; i++) {
		int made = 0;
		rc = start_one(e, &ss->reqs[i], &ss->ids[i], &made,
		               ss->fresh && i < room ? &ss->fresh[i].in : NULL, 0);
		if (rc == SAGA_OK && ss->created)
			ss->created[i] = made;
	}
	saga_free(&e->alloc, rows);
	saga_free(&e->alloc, ps);
	return rc;
}

/* Moves the fresh copies into memory as instances to process. */
void starts_to_driver(saga_engine *e, start_set *ss)
{
	for (size_t i = 0; ss->fresh && i < ss->n; i++) {
		struct fresh_slot *f = &ss->fresh[i];
		if (f->in && e->nloaded < e->max_in_flight) {
			f->in->stage = STAGE_PROCESS;
			f->in->uncommitted = true; /* reloaded if the commit fails */
			e->loaded[e->nloaded++] = f->in;
			f->in = NULL;
			f->moved = true;
		}
	}
}

/* After the commit (rc == 0) or its failure: the instances left out of
 * memory are queued, or every answer is zeroed; the copies are freed. */
void starts_end(saga_engine *e, start_set *ss, int rc)
{
	for (size_t i = 0; i < ss->n; i++) {
		if (rc) {
			ss->ids[i] = 0;
			if (ss->created)
				ss->created[i] = 0;
		} else if (!(ss->fresh && ss->fresh[i].moved)) {
			push_ready(e, ss->ids[i]); /* durable now: a full queue only delays it */
		}
	}
	for (size_t i = 0; ss->fresh && i < ss->n; i++)
		free_inst(e, ss->fresh[i].in);
	saga_free(&e->alloc, ss->fresh);
	ss->fresh = NULL;
}

int saga_start_batch(saga_engine *e, int64_t *ids, int *created, const saga_start_request *reqs,
                     size_t n)
{
	if (!e || !ids || (!reqs && n))
		return bad_args(e, "start: ids and the requests are needed");
	start_set ss = { reqs, n, ids, created, NULL };
	pthread_mutex_lock(&e->mu);
	int rc = starts_check(e, &ss);
	if (rc == SAGA_OK && n && e->driver_running &&
	    !pthread_equal(pthread_self(), e->driver_tid)) {
		/* With workers, the starts join the driver's next commit (a
		 * listener on the driver thread commits its own). */
		struct start_wait w = { &ss, SAGA_OK, false, "", NULL };
		if (e->start_tail)
			e->start_tail->next = &w;
		else
			e->start_queue = &w;
		e->start_tail = &w;
		starts_queued(e);
		while (!w.done)
			pthread_cond_wait(&e->start_cv, &e->mu);
		if ((rc = w.rc) != SAGA_OK)
			set_err(e, rc, "%s", w.msg);
		pthread_mutex_unlock(&e->mu);
		return rc;
	}
	if (rc == SAGA_OK)
		rc = starts_insert(e, &ss);
	if ((rc = end_txn(e, rc)) == SAGA_OK)
		starts_to_driver(e, &ss);
	starts_end(e, &ss, rc);
	if (rc == SAGA_OK)
		work_arrived(e);
	unlock_and_deliver(e);
	return rc;
}

int saga_start(saga_engine *e, int64_t *out_id, int *created, const char *definition,
               const char *bkey, const cJSON *input)
{
	saga_start_request q = { definition, bkey, input };
	if (!out_id)
		return bad_args(e, "start: out_id is needed");
	return saga_start_batch(e, out_id, created, &q, 1);
}

/* Scheduled starts are parked instances: nothing for the driver to run
 * now, so the caller commits them itself, whatever the execution mode. */
static int start_later(saga_engine *e, start_set *ss, uint64_t start_at)
{
	pthread_mutex_lock(&e->mu);
	int rc = starts_check(e, ss);
	int made = 0;
	for (size_t i = 0; i < ss->n && rc == SAGA_OK; i++) {
		rc = start_one(e, &ss->reqs[i], &ss->ids[i], &made, NULL, start_at);
		if (rc == SAGA_OK && ss->created)
			ss->created[i] = made;
	}
	if ((rc = end_txn(e, rc)) == SAGA_OK) {
		if (e->next_timer == 0 || start_at < e->next_timer)
			e->next_timer = start_at;
		/* A new timer: whoever sleeps until the next one (the driver, a
		 * caller's poll loop) must look again. */
		work_arrived(e);
	} else {
		for (size_t i = 0; i < ss->n; i++) {
			ss->ids[i] = 0;
			if (ss->created)
				ss->created[i] = 0;
		}
	}
	unlock_and_deliver(e);
	return rc;
}

int saga_start_batch_at(saga_engine *e, int64_t *ids, int *created, const saga_start_request *reqs,
                        size_t n, uint64_t start_at)
{
	if (!e || !ids || (!reqs && n))
		return bad_args(e, "start: ids and the requests are needed");
	if (start_at <= now_wall(e))
		return saga_start_batch(e, ids, created, reqs, n);
	start_set ss = { reqs, n, ids, created, NULL };
	return start_later(e, &ss, start_at > TIME_END ? TIME_END : start_at);
}

int saga_start_at(saga_engine *e, int64_t *out_id, int *created, const char *definition,
                  const char *bkey, const cJSON *input, uint64_t start_at)
{
	saga_start_request q = { definition, bkey, input };
	if (!out_id)
		return bad_args(e, "start: out_id is needed");
	return saga_start_batch_at(e, out_id, created, &q, 1, start_at);
}
