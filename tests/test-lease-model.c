/* An exhaustive model check of the ownership protocol: owners with leases,
 * claims with fences, reaping, and the callbacks run under a lease.
 *
 * The model is a few bytes of state for 3 processes and 2 saga instances;
 * a breadth-first search applies every enabled action to every reachable
 * state and checks the invariants on every transition. It uses no libsaga
 * code: it states the protocol the SQLite store implements, one function per
 * statement, so that a change of the protocol can be tried here first.
 *
 * The store, as the SQL keeps it:
 *   owners(epoch, state live|dead|retired, lease_until): own[epoch - 1].
 *     register_owner inserts max(epoch) + 1 with lease_until = now + TTL,
 *     and the process locks its byte in the sidecar lock file.
 *   instances(owner, fence, done): in[]. owner 0 is the pool.
 * A process keeps in memory its epoch and, per instance it loaded, its phase
 * and fence_seen. Its view of its own lease is the lease_until it wrote in
 * its last successful renew (own[].lease, which a reap does not change).
 *
 * Every write transaction of a process (owner E) starts with the renew
 *     UPDATE owners SET lease_until = now + TTL
 *      WHERE epoch = E AND state = live AND lease_until > now      renew()
 * 0 rows = LOST: the process drops everything it holds in memory, releases
 * its lock byte and registers again under a new epoch (never revives E).
 * After a successful renew the transaction does one of:
 *   claim    UPDATE instances SET owner = E, fence = fence + 1
 *             WHERE id = I AND owner = 0 AND NOT done, then the
 *            write-ahead start of its attempt, fenced (below)    A_CLAIM
 *   finish   UPDATE instances SET done, owner = 0
 *             WHERE id = I AND owner = E AND fence = F_seen      A_FINISH
 *   reap     owners live with lease_until <= now, or whose process is gone
 *            (its lock byte is free), become dead; their instances go to
 *            the pool                                             A_REAP
 *   retire   clean close, once its callbacks returned: instances
 *            owner = E -> 0, state retired; the process ends     A_RETIRE
 *   nothing  the heartbeat                                        A_HEARTBEAT
 * A fenced write that changes 0 rows rolls the whole transaction back (the
 * renew with it) and the process drops that instance.
 *
 * A callback (A_INVOKE) starts only after its start committed and only if
 * lease_until - now >= MARGIN in the process's view. When it returns, its
 * effect reaches the participant, then the process records the answer
 * (both A_FINISH). The participant remembers the highest fence it accepted
 * per instance and refuses a lower one. A process runs at most one callback
 * per instance: one left over from a lost epoch returns before the next.
 *
 * Environment actions: a process may start and register (A_START), crash
 * (A_CRASH: its callbacks die with it, the kernel frees its lock byte), and
 * the clock may tick (A_TICK). A pause (SIGSTOP) needs no action of its own:
 * a process that takes no step while the clock ticks is paused, and every
 * interleaving is explored.
 *
 * Two modes. Free: anything may happen while the clock ticks. Bounded: a
 * process inside a callback never goes MARGIN ticks without a successful
 * renew (its pauses, and its stalls on a busy store, stay under the margin).
 *
 * Invariants, checked on every transition:
 *   1. a lapsed lease is never renewed: once an epoch had lease_until <= now
 *      or state != live, a renew of it never commits (V_RENEWED_LAPSED);
 *   2. store state is exclusive whatever the clocks do: every committed
 *      fenced write is by the owner the store records at that moment
 *      (V_NOT_OWNER), and per instance the fence of committed writes never
 *      goes back (V_FENCE_BACK);
 *   3. no two claims can both commit: a committed write comes from the
 *      latest claim of its instance (V_STALE_CLAIM, a ghost claim counter);
 *   4. callbacks: in bounded mode no two callbacks of one instance overlap
 *      (V_OVERLAP; in free mode they do, and the test says so). In both
 *      modes the participant never lets the effect of an older claim land
 *      after a newer one (V_OLDER_LANDED), and never refuses the effect of
 *      the claim that currently owns the instance (V_CURRENT_REFUSED);
 *   5. progress: from every reachable state where some process can still
 *      renew, a state with every instance done is reachable (V_NO_PROGRESS),
 *      checked on the whole graph once the search is over.
 *
 * Crashes, pauses and clock ticks are unbounded; what bounds the search is
 * the number of registrations (model.epochs: every start or re-registration
 * takes one, and a LOST process with none left exits). The state space stays
 * finite because times are kept relative to now (lease_until - now, 0 once
 * lapsed), owners nothing refers to are dropped and the epochs renumbered in
 * order, fences (and the ghost claim counters) are renumbered per instance by
 * rank, and the processes, then the two instances, are sorted. The protocol
 * compares only for equality and order, so none of this changes what can
 * happen.
 *
 * Each broken variant (the enum below) must make the search find the
 * violation it exists for; the correct protocol must find none. Set
 * LEASE_MODEL_TRACE=1 for the shortest path to each first violation (process
 * and instance numbers are positions in the sorted state the action applies
 * to).
 * SPDX-License-Identifier: MIT */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NPROC = 3, NINST = 2, NOWN = 12 };

/* On the hot path: ck_assert would report its position on every call. */
#define require(cond)                                     \
	do {                                              \
		if (!(cond))                              \
			ck_abort_msg("model: %s", #cond); \
	} while (0)

/* Broken variants of the protocol; they combine. */
enum {
	RENEW_NO_LEASE = 1 << 0, /* renew without lease_until > now */
	RENEW_ANY = 1 << 1,      /* renew WHERE epoch = E, nothing else */
	WRITE_NO_OWNER = 1 << 2, /* fenced write without owner = E */
	WRITE_NO_FENCE = 1 << 3, /* fenced write without fence = F_seen */
	CLAIM_NO_BUMP = 1 << 4,  /* claim without fence = fence + 1 */
	REAP_LIVE = 1 << 5,      /* reap every other live owner, lapsed or not */
	NO_MARGIN = 1 << 6,      /* invoke without the margin check */
	GUARD_NONE = 1 << 7,     /* participant accepts every fence */
	GUARD_EPOCH = 1 << 8,    /* participant keyed on the epoch, not the fence */
	RETIRE_KEEPS = 1 << 9,   /* retire without handing its instances back */
};

enum {
	V_RENEWED_LAPSED = 1 << 0,
	V_NOT_OWNER = 1 << 1,
	V_FENCE_BACK = 1 << 2,
	V_STALE_CLAIM = 1 << 3,
	V_OVERLAP = 1 << 4,
	V_OLDER_LANDED = 1 << 5,
	V_CURRENT_REFUSED = 1 << 6,
	V_NO_PROGRESS = 1 << 7,
	NVIOL = 8,
};
static const char *const viol_name[NVIOL] = { "lapsed lease renewed",  "write by a non-owner",
	                                      "fence went back",       "write from a stale claim",
	                                      "callbacks overlap",     "older effect landed",
	                                      "current owner refused", "no path to all done" };

enum { O_LIVE, O_DEAD, O_RETIRED };
enum { PH_NONE, PH_STARTED, PH_CALLING };
enum { CB_NONE, CB_RUNNING };

struct owner {
	uint8_t state;
	uint8_t lease;  /* lease_until - now, 0 once lapsed */
	uint8_t locked; /* its process holds its lock byte */
	uint8_t lapsed; /* ghost: was lapsed or not live in some state */
};

struct inst {
	uint8_t owner, fence, done;
	uint8_t gen;         /* ghost: counts claims */
	uint8_t last_fence;  /* ghost: fence of the last committed write */
	uint8_t landed_gen;  /* ghost: newest claim whose effect landed */
	uint8_t guard_fence; /* participant: highest fence accepted */
	uint8_t guard_epoch; /* participant (GUARD_EPOCH): highest epoch accepted */
};

struct callback {
	uint8_t state, fence, gen, epoch;
};

struct proc {
	uint8_t alive, epoch;
	uint8_t since; /* bounded mode: ticks since its last renew or invoke */
	uint8_t phase[NINST], fence[NINST], gen[NINST];
	struct callback cb[NINST];
};

struct state {
	struct owner own[NOWN];
	uint8_t nown;
	uint8_t nreg; /* registrations so far, at most model.epochs */
	struct inst in[NINST];
	struct proc p[NPROC];
};

enum {
	A_START,
	A_CRASH,
	A_HEARTBEAT,
	A_REAP,
	A_RETIRE,
	A_CLAIM,
	A_INVOKE,
	A_FINISH,
	A_TICK,
	NACTION
};
static const char *const action_name[NACTION] = { "start", "crash",  "heartbeat", "reap", "retire",
	                                          "claim", "invoke", "finish",    "tick" };

struct action {
	uint8_t kind, proc, inst;
};

struct model {
	unsigned variant;
	bool bounded;
	uint8_t ttl, margin;
	uint8_t epochs; /* registrations allowed in a run */
};

/* ---- the protocol ---- */

/* register_owner: a new epoch, max + 1, never one used before. */
static bool enroll(const struct model *m, struct state *s, struct proc *p)
{
	if (s->nreg == m->epochs)
		return false;
	require(s->nown < NOWN);
	s->nreg++;
	s->own[s->nown] = (struct owner){ O_LIVE, m->ttl, 1, 0 };
	p->epoch = ++s->nown;
	p->since = 0;
	return true;
}

/* LOST: the process drops what it holds and registers again; the lock byte
 * of the old epoch is released. Callbacks already running go on, their
 * answers will be discarded. */
static void lose(const struct model *m, struct state *s, struct proc *p)
{
	s->own[p->epoch - 1].locked = 0;
	memset(p->phase, PH_NONE, sizeof p->phase);
	if (!enroll(m, s, p))
		memset(p, 0, sizeof *p); /* out of epochs: the process exits */
}

/* The conditional renew that opens every write transaction. */
static bool renew(const struct model *m, struct state *s, struct proc *p, unsigned *v)
{
	struct owner *o = &s->own[p->epoch - 1];
	bool any = m->variant & RENEW_ANY;
	bool ok = (o->state == O_LIVE || any) &&
	          (o->lease > 0 || any || (m->variant & RENEW_NO_LEASE));
	if (!ok)
		return false;
	if (o->lapsed)
		*v |= V_RENEWED_LAPSED;
	o->lease = m->ttl;
	p->since = 0;
	return true;
}

/* UPDATE instances ... WHERE id = I AND owner = E AND fence = F_seen */
static bool fenced_write(const struct model *m, struct inst *in, const struct proc *p, int i,
                         unsigned *v)
{
	if ((in->owner != p->epoch && !(m->variant & WRITE_NO_OWNER)) ||
	    (in->fence != p->fence[i] && !(m->variant & WRITE_NO_FENCE)))
		return false;
	if (in->owner != p->epoch)
		*v |= V_NOT_OWNER;
	if (p->fence[i] < in->last_fence)
		*v |= V_FENCE_BACK;
	if (p->gen[i] != in->gen)
		*v |= V_STALE_CLAIM;
	in->last_fence = p->fence[i];
	return true;
}

static bool reapable(const struct model *m, const struct owner *o, bool self)
{
	return !self && o->state == O_LIVE &&
	       (o->lease == 0 || !o->locked || (m->variant & REAP_LIVE));
}

/* The body of a transaction after its renew; false when it changed nothing
 * it could (a fenced write of 0 rows, a claim of nothing). */
static bool tx_body(const struct model *m, struct state *s, struct proc *p, struct action a,
                    unsigned *v)
{
	struct inst *in = &s->in[a.inst];
	switch (a.kind) {
	case A_HEARTBEAT:
		return true;
	case A_REAP:
		for (int k = 0; k < s->nown; k++)
			if (reapable(m, &s->own[k], k + 1 == p->epoch))
				s->own[k].state = O_DEAD;
		for (int i = 0; i < NINST; i++)
			if (s->in[i].owner && s->own[s->in[i].owner - 1].state == O_DEAD)
				s->in[i].owner = 0;
		return true;
	case A_RETIRE:
		for (int i = 0; i < NINST && !(m->variant & RETIRE_KEEPS); i++)
			if (s->in[i].owner == p->epoch)
				s->in[i].owner = 0;
		s->own[p->epoch - 1].state = O_RETIRED;
		s->own[p->epoch - 1].locked = 0;
		memset(p, 0, sizeof *p);
		return true;
	case A_CLAIM:
		if (in->owner != 0 || in->done)
			return false;
		in->owner = p->epoch;
		in->fence += !(m->variant & CLAIM_NO_BUMP);
		in->gen++;
		p->phase[a.inst] = PH_STARTED;
		p->fence[a.inst] = in->fence;
		p->gen[a.inst] = in->gen;
		return fenced_write(m, in, p, a.inst, v); /* the write-ahead start */
	case A_FINISH:
		if (!fenced_write(m, in, p, a.inst, v))
			return false;
		p->phase[a.inst] = PH_NONE;
		in->done = 1;
		in->owner = 0;
		return true;
	}
	return false;
}

/* The participant receives a callback's effect. */
static void effect(const struct model *m, struct inst *in, struct callback *cb, unsigned *v)
{
	bool accept = (m->variant & GUARD_NONE)    ? true
	              : (m->variant & GUARD_EPOCH) ? cb->epoch >= in->guard_epoch
	                                           : cb->fence >= in->guard_fence;
	if (accept) {
		if (cb->gen < in->landed_gen)
			*v |= V_OLDER_LANDED;
		if (cb->gen > in->landed_gen)
			in->landed_gen = cb->gen;
		if (m->variant & GUARD_EPOCH)
			in->guard_epoch = cb->epoch;
		else if (!(m->variant & GUARD_NONE))
			in->guard_fence = cb->fence;
	} else if (cb->gen == in->gen && in->owner != 0) {
		*v |= V_CURRENT_REFUSED;
	}
}

static bool tick(const struct model *m, struct state *s)
{
	for (int j = 0; j < NPROC; j++) {
		struct proc *p = &s->p[j];
		bool calling = false;
		for (int i = 0; i < NINST; i++)
			calling |= p->cb[i].state != CB_NONE;
		if (m->bounded && calling && p->since + 1 >= m->margin)
			return false; /* it resumes, or renews, before MARGIN ticks pass */
		if (m->bounded && calling)
			p->since++;
	}
	for (int k = 0; k < s->nown; k++) /* dead ones too: their process's view */
		if (s->own[k].lease)
			s->own[k].lease--;
	return true;
}

/* Applies a to s into *t; false when a is not enabled in s. */
static bool apply(const struct model *m, const struct state *s, struct action a, struct state *t,
                  unsigned *v)
{
	*t = *s;
	if (a.kind == A_TICK)
		return tick(m, t);
	struct proc *p = &t->p[a.proc];
	struct callback *cb = &p->cb[a.inst];
	switch (a.kind) {
	case A_START:
		if (p->alive)
			return false;
		p->alive = 1;
		return enroll(m, t, p);
	case A_CRASH:
		if (!p->alive)
			return false;
		t->own[p->epoch - 1].locked = 0;
		memset(p, 0, sizeof *p);
		return true;
	case A_INVOKE:
		if (!p->alive || p->phase[a.inst] != PH_STARTED || cb->state != CB_NONE ||
		    (t->own[p->epoch - 1].lease < m->margin && !(m->variant & NO_MARGIN)))
			return false;
		for (int j = 0; j < NPROC; j++)
			if (t->p[j].cb[a.inst].state != CB_NONE)
				*v |= V_OVERLAP;
		*cb = (struct callback){ CB_RUNNING, p->fence[a.inst], p->gen[a.inst], p->epoch };
		p->phase[a.inst] = PH_CALLING;
		p->since = 0;
		return true;
	case A_FINISH:
		if (!p->alive || cb->state != CB_RUNNING)
			return false;
		effect(m, &t->in[a.inst], cb, v);
		*cb = (struct callback){ 0 };
		if (p->phase[a.inst] != PH_CALLING)
			return true; /* the answer of a dropped instance is discarded */
		break;
	}

	/* A write transaction. */
	if (!p->alive)
		return false;
	if (a.kind == A_RETIRE)
		for (int i = 0; i < NINST; i++)
			if (p->cb[i].state != CB_NONE)
				return false; /* clean close waits for callbacks, records answers */
	if (a.kind == A_REAP) {
		bool any = false;
		for (int k = 0; k < t->nown; k++)
			any |= reapable(m, &t->own[k], k + 1 == p->epoch);
		if (!any)
			return false; /* the same as a heartbeat */
	}
	unsigned tv = 0;
	struct state before = *t;
	bool lost = !renew(m, t, p, &tv);
	if (!lost && tx_body(m, t, p, a, &tv)) {
		*v |= tv;
		return true;
	}
	if (!lost && a.kind == A_CLAIM)
		return false;
	*t = before; /* rolled back */
	p = &t->p[a.proc];
	if (lost)
		lose(m, t, p);
	else
		p->phase[a.inst] = PH_NONE; /* ownership lost: drop the instance */
	return true;
}

/* ---- canonical form: relative times, renumbered epochs and fences ---- */

static void renumber(uint8_t *const *refs, int n)
{
	uint8_t rank[32] = { 0 };
	for (int k = 0; k < n; k++) {
		require(*refs[k] < sizeof rank);
		rank[*refs[k]] = 1;
	}
	for (int x = 0, r = 0; x < (int)sizeof rank; x++)
		if (rank[x])
			rank[x] = (uint8_t)r++;
	for (int k = 0; k < n; k++)
		*refs[k] = rank[*refs[k]];
}

static int cmp_proc(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct proc));
}

#define SWAP(a, b)                        \
	do {                              \
		__typeof__(a) tmp_ = (a); \
		(a) = (b);                \
		(b) = tmp_;               \
	} while (0)

static void swap_instances(struct state *s)
{
	SWAP(s->in[0], s->in[1]);
	for (int j = 0; j < NPROC; j++) {
		struct proc *p = &s->p[j];
		SWAP(p->phase[0], p->phase[1]);
		SWAP(p->fence[0], p->fence[1]);
		SWAP(p->gen[0], p->gen[1]);
		SWAP(p->cb[0], p->cb[1]);
	}
}

static void canonical(const struct model *m, struct state *s)
{
	for (int k = 0; k < s->nown; k++) {
		struct owner *o = &s->own[k];
		if (o->state != O_LIVE)
			*o = (struct owner){ o->state, o->state == O_DEAD ? o->lease : 0, 0, 1 };
		else if (o->lease == 0)
			o->lapsed = 1;
	}
	uint8_t *eref[NPROC + NINST * (NPROC + 1)], *fref[NINST][2 * NPROC + 3],
	        *gref[NINST][2 * NPROC + 2];
	int ne = 0, nf[NINST] = { 0 }, ng[NINST] = { 0 };
	for (int i = 0; i < NINST; i++) {
		struct inst *in = &s->in[i];
		eref[ne++] = &in->owner;
		fref[i][nf[i]++] = &in->fence;
		fref[i][nf[i]++] = &in->last_fence;
		fref[i][nf[i]++] = &in->guard_fence;
		gref[i][ng[i]++] = &in->gen;
		gref[i][ng[i]++] = &in->landed_gen;
	}
	for (int j = 0; j < NPROC; j++) {
		struct proc *p = &s->p[j];
		eref[ne++] = &p->epoch;
		for (int i = 0; i < NINST; i++) {
			if (p->phase[i] == PH_NONE)
				p->fence[i] = p->gen[i] = 0;
			else {
				fref[i][nf[i]++] = &p->fence[i];
				gref[i][ng[i]++] = &p->gen[i];
			}
			if (!(m->variant & GUARD_EPOCH))
				p->cb[i].epoch = 0; /* only that participant reads it */
			if (p->cb[i].state != CB_NONE) {
				eref[ne++] = &p->cb[i].epoch;
				fref[i][nf[i]++] = &p->cb[i].fence;
				gref[i][ng[i]++] = &p->cb[i].gen;
			}
		}
	}
	/* Drop the owners nothing refers to, keeping epoch order: a live one
	 * whose process is gone can only be reaped, which changes nothing. */
	uint8_t map[NOWN + 1] = { 0 }, used[NOWN + 1] = { 0 };
	for (int k = 0; k < ne; k++)
		used[*eref[k]] = 1;
	for (int i = 0; i < NINST; i++)
		used[s->in[i].guard_epoch] = 1;
	int n = 0;
	for (int k = 0; k < s->nown; k++)
		if (used[k + 1]) {
			s->own[n] = s->own[k];
			map[k + 1] = (uint8_t)++n;
		}
	for (int k = n; k < NOWN; k++)
		s->own[k] = (struct owner){ 0 };
	s->nown = (uint8_t)n;
	for (int k = 0; k < ne; k++)
		*eref[k] = map[*eref[k]];
	for (int i = 0; i < NINST; i++) {
		s->in[i].guard_epoch = map[s->in[i].guard_epoch];
		renumber(fref[i], nf[i]);
		renumber(gref[i], ng[i]);
	}
	/* Processes are interchangeable, and so are the two instances: the
	 * least of the orderings stands for all. */
	struct state swapped = *s;
	swap_instances(&swapped);
	qsort(s->p, NPROC, sizeof s->p[0], cmp_proc);
	qsort(swapped.p, NPROC, sizeof s->p[0], cmp_proc);
	if (memcmp(&swapped, s, sizeof *s) < 0)
		*s = swapped;
}

/* ---- the search ---- */

struct search {
	struct state *st; /* every state found, in breadth-first order */
	uint32_t *parent;
	struct action *act; /* the action that reached it */
	uint32_t n, cap;
	uint32_t *slot; /* open addressing: state index + 1, 0 = empty */
	uint32_t nslot;
	uint32_t *edge, *first; /* successors of state k: edge[first[k] .. first[k+1]) */
	uint64_t nedge, edgecap, ntrans;
	unsigned found; /* violation bits */
	uint32_t witness[NVIOL];
	struct action witness_act[NVIOL];
};

static uint64_t hash(const struct state *s)
{
	const unsigned char *b = (const unsigned char *)s;
	uint64_t h = 1469598103934665603u;
	for (size_t k = 0; k < sizeof *s; k++)
		h = (h ^ b[k]) * 1099511628211u;
	return h;
}

static void *grow(void *p, size_t n, size_t size)
{
	void *q = realloc(p, n * size);
	require(q != NULL);
	return q;
}

/* The index of s, added when new. */
static uint32_t intern(struct search *x, const struct state *s, uint32_t parent, struct action a)
{
	if (2 * (uint64_t)x->n >= x->nslot) {
		free(x->slot);
		x->nslot = x->nslot ? 2 * x->nslot : 1u << 16;
		x->slot = calloc(x->nslot, sizeof *x->slot);
		require(x->slot != NULL);
		for (uint32_t k = 0; k < x->n; k++) {
			uint32_t h = (uint32_t)hash(&x->st[k]) & (x->nslot - 1);
			while (x->slot[h])
				h = (h + 1) & (x->nslot - 1);
			x->slot[h] = k + 1;
		}
	}
	uint32_t h = (uint32_t)hash(s) & (x->nslot - 1);
	for (; x->slot[h]; h = (h + 1) & (x->nslot - 1))
		if (memcmp(&x->st[x->slot[h] - 1], s, sizeof *s) == 0)
			return x->slot[h] - 1;
	if (x->n == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 1u << 16;
		x->st = grow(x->st, x->cap, sizeof *x->st);
		x->parent = grow(x->parent, x->cap, sizeof *x->parent);
		x->act = grow(x->act, x->cap, sizeof *x->act);
		x->first = grow(x->first, x->cap + 1, sizeof *x->first);
	}
	x->st[x->n] = *s;
	x->parent[x->n] = parent;
	x->act[x->n] = a;
	x->slot[h] = x->n + 1;
	return x->n++;
}

static void add_edge(struct search *x, uint32_t to)
{
	if (x->nedge == x->edgecap) {
		x->edgecap = x->edgecap ? 2 * x->edgecap : 1u << 18;
		x->edge = grow(x->edge, x->edgecap, sizeof *x->edge);
	}
	x->edge[x->nedge++] = to;
}

static bool all_done(const struct state *s)
{
	for (int i = 0; i < NINST; i++)
		if (!s->in[i].done)
			return false;
	return true;
}

/* Some process can still renew its epoch. */
static bool someone_live(const struct state *s)
{
	for (int j = 0; j < NPROC; j++)
		if (s->p[j].alive && s->own[s->p[j].epoch - 1].state == O_LIVE &&
		    s->own[s->p[j].epoch - 1].lease > 0)
			return true;
	return false;
}

/* Invariant 5: which states reach one where every instance is done. */
static void check_progress(struct search *x)
{
	uint8_t *good = calloc(x->n, 1);
	require(good != NULL);
	for (uint32_t k = 0; k < x->n; k++)
		good[k] = all_done(&x->st[k]);
	for (bool changed = true; changed;) {
		changed = false;
		for (uint32_t k = x->n; k-- > 0;)
			for (uint32_t e = x->first[k]; !good[k] && e < x->first[k + 1]; e++)
				if (good[x->edge[e]])
					good[k] = changed = 1;
	}
	for (uint32_t k = 0; k < x->n; k++)
		if (!good[k] && someone_live(&x->st[k]) && !(x->found & V_NO_PROGRESS)) {
			x->found |= V_NO_PROGRESS;
			x->witness[7] = k; /* V_NO_PROGRESS */
			x->witness_act[7] = (struct action){ NACTION, 0, 0 };
		}
	free(good);
}

static void print_action(struct action a)
{
	if (a.kind == A_TICK)
		printf(" tick;");
	else if (a.kind >= A_CLAIM)
		printf(" p%u %s i%u;", a.proc, action_name[a.kind], a.inst);
	else
		printf(" p%u %s;", a.proc, action_name[a.kind]);
}

static void print_path(const struct search *x, uint32_t k)
{
	if (k == 0)
		return;
	print_path(x, x->parent[k]);
	print_action(x->act[k]);
}

/* Explores every state, or stops once the violations in stop are found. */
static void explore(struct search *x, const struct model *m, bool progress, unsigned stop)
{
	memset(x, 0, sizeof *x);
	struct state init = { 0 };
	intern(x, &init, 0, (struct action){ 0 });
	for (uint32_t k = 0; k < x->n && (!stop || (x->found & stop) != stop); k++) {
		x->first[k] = (uint32_t)x->nedge;
		for (int kind = 0; kind < NACTION; kind++)
			for (int j = 0; j < (kind == A_TICK ? 1 : NPROC); j++)
				for (int i = 0; i < (kind >= A_CLAIM && kind < A_TICK ? NINST : 1);
				     i++) {
					struct action a = { (uint8_t)kind, (uint8_t)j, (uint8_t)i };
					struct state t;
					unsigned v = 0;
					if (!apply(m, &x->st[k], a, &t, &v))
						continue;
					canonical(m, &t);
					/* k may move when the arrays grow. */
					uint32_t to = intern(x, &t, k, a);
					x->ntrans++;
					if (progress)
						add_edge(x, to);
					for (int b = 0; b < NVIOL; b++)
						if ((v & ~x->found) & (1u << b)) {
							x->witness[b] = k;
							x->witness_act[b] = a;
						}
					x->found |= v;
				}
	}
	x->first[x->n] = (uint32_t)x->nedge;
	if (progress)
		check_progress(x);
}

static void release(struct search *x)
{
	free(x->st);
	free(x->parent);
	free(x->act);
	free(x->slot);
	free(x->edge);
	free(x->first);
}

/* Explores m: with exact, the whole state space, which must show exactly
 * the violations in want, progress included; else until those are found. */
static void expect(const char *name, struct model m, unsigned want, bool exact)
{
	struct search x;
	explore(&x, &m, exact, exact ? 0 : want);
	printf("lease-model %-34s %s TTL %u MARGIN %u: %u states, %llu transitions, found:", name,
	       m.bounded ? "bounded" : "free", m.ttl, m.margin, x.n, (unsigned long long)x.ntrans);
	for (int b = 0; b < NVIOL; b++)
		if (x.found & (1u << b))
			printf(" [%s]", viol_name[b]);
	printf("\n");
	if (getenv("LEASE_MODEL_TRACE"))
		for (int b = 0; b < NVIOL; b++)
			if (x.found & (1u << b)) {
				printf("  %s:", viol_name[b]);
				print_path(&x, x.witness[b]);
				if (x.witness_act[b].kind < NACTION)
					print_action(x.witness_act[b]);
				printf("%s\n", b == 7 ? " stuck" : "");
			}
	unsigned found = exact ? x.found : x.found & want;
	release(&x);
	ck_assert_msg(found == want, "%s: found violations %#x, expected %#x", name, found, want);
}

/* TTL 3, MARGIN 2, 3 processes, 2 instances, at most 3 (or 4) registrations. */
static const struct model free_model = { 0, false, 3, 2, 3 };
static const struct model bounded_model = { 0, true, 3, 2, 3 };
static const struct model bounded_model_4 = { 0, true, 3, 2, 4 };

static struct model with(struct model m, unsigned variant)
{
	m.variant = variant;
	return m;
}

START_TEST(correct_protocol)
{
	/* Without a bound on pauses two callbacks of one instance can overlap;
	 * nothing else goes wrong, and all can always finish. */
	expect("correct", free_model, V_OVERLAP, true);
	expect("correct", bounded_model, 0, true);
	expect("correct, 4 registrations", bounded_model_4, 0, true);
}
END_TEST

START_TEST(broken_renew)
{
	expect("renew without lease_until > now", with(free_model, RENEW_NO_LEASE),
	       V_RENEWED_LAPSED, false);
	expect("renew WHERE epoch = E", with(free_model, RENEW_ANY), V_RENEWED_LAPSED, false);
}
END_TEST

START_TEST(broken_fenced_write)
{
	/* Behind the renew, a zombie never reaches a fenced write: these run
	 * with the renew broken too. */
	expect("renew WHERE epoch = E, write without owner",
	       with(free_model, RENEW_ANY | WRITE_NO_OWNER), V_NOT_OWNER, false);
	expect("renew WHERE epoch = E, write WHERE id = I",
	       with(free_model, RENEW_ANY | WRITE_NO_OWNER | WRITE_NO_FENCE),
	       V_NOT_OWNER | V_FENCE_BACK | V_STALE_CLAIM, false);
	/* A write without the fence check goes unnoticed: the owner check
	 * suffices in this protocol (epochs are never revived, and a process's
	 * own claim replaces the fence it remembers), so the fence in the WHERE
	 * is a second line of defence that no single broken step exposes. */
	expect("write without fence", with(free_model, WRITE_NO_FENCE), V_OVERLAP, true);
}
END_TEST

START_TEST(broken_claim)
{
	expect("claim without fence + 1", with(free_model, CLAIM_NO_BUMP), V_OLDER_LANDED, false);
}
END_TEST

START_TEST(broken_retire)
{
	expect("retire keeping its instances", with(bounded_model, RETIRE_KEEPS), V_NO_PROGRESS,
	       true);
}
END_TEST

START_TEST(broken_callbacks)
{
	expect("reap ignoring the lease", with(bounded_model, REAP_LIVE), V_OVERLAP, false);
	expect("invoke without the margin", with(bounded_model, NO_MARGIN), V_OVERLAP, false);
	expect("participant without a guard", with(free_model, GUARD_NONE), V_OLDER_LANDED, false);
	expect("participant keyed on the epoch", with(free_model, GUARD_EPOCH), V_CURRENT_REFUSED,
	       false);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lease-model");
	TCase *tc = tcase_create("interleavings");
	tcase_set_timeout(tc, 60); /* a second or so alone, more on a busy machine */
	tcase_add_test(tc, correct_protocol);
	tcase_add_test(tc, broken_renew);
	tcase_add_test(tc, broken_fenced_write);
	tcase_add_test(tc, broken_claim);
	tcase_add_test(tc, broken_retire);
	tcase_add_test(tc, broken_callbacks);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
