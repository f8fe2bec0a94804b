/* A round's instance updates and history rows on PostgreSQL, gathered into
 * one statement each: every parameter of the statement is a text array
 * holding one value per row (unnest() turns them back into rows on the
 * server). The server then parses, plans and executes two statements a
 * round instead of one per row, and the round's pipeline carries a few
 * messages instead of a few hundred.
 *
 * Order is kept where it can be seen: the gathered rows are queued (updates
 * first, then history) before any other statement is, and before every
 * Sync, so a read in the transaction sees them and a statement queued after
 * them runs after them. Between the two kinds the order may change, which
 * nothing observes: a history row needs its instance owned by the writer or
 * ended and unowned, and an update keeps an instance either way. An
 * instance updated twice in a round flushes the first update before the
 * second is gathered (one UPDATE changes a row once).
 * SPDX-License-Identifier: MIT */
#include "store_pg_int.h"

#include <stdlib.h>
#include <string.h>

/* A batch is queued once it holds this many rows or bytes. */
#define BATCH_ROWS  512
#define BATCH_BYTES (4u << 20)

static int grow(saga_store *s, struct pg_col *c, size_t more)
{
	if (c->len + more + 2 <= c->cap)
		return SAGA_OK;
	size_t cap = c->cap ? c->cap : 256;
	while (cap < c->len + more + 2)
		cap *= 2;
	char *b = saga_realloc(&s->alloc, c->buf, cap);
	if (!b)
		return pg_refuse(s, SAGA_ENOMEM, "store: out of memory gathering a round's writes");
	c->buf = b;
	c->cap = cap;
	return SAGA_OK;
}

/* Appends one value to a column's array literal: a number as it is, a text
 * in double quotes with its quotes and backslashes escaped, SQL's NULL as
 * NULL. */
static int put_value(saga_store *s, struct pg_col *c, const char *v, bool text)
{
	size_t n = v ? strlen(v) : 4;
	size_t need = 1 + (text && v ? 2 * n + 2 : n);
	int rc = grow(s, c, need);
	if (rc)
		return rc;
	char sep = c->len ? ',' : '{';
	c->buf[c->len++] = sep;
	if (!v) {
		memcpy(c->buf + c->len, "NULL", 4);
		c->len += 4;
		return SAGA_OK;
	}
	if (!text) {
		memcpy(c->buf + c->len, v, n);
		c->len += n;
		return SAGA_OK;
	}
	c->buf[c->len++] = '"';
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			c->buf[c->len++] = '\\';
		c->buf[c->len++] = *p;
	}
	c->buf[c->len++] = '"';
	return SAGA_OK;
}

/* Makes room for `need` ids in *v (its capacity in *cap), doubling. */
static int grow_ids(saga_store *s, int64_t **v, size_t *cap, size_t need)
{
	if (need <= *cap)
		return SAGA_OK;
	size_t n = *cap ? 2 * *cap : 64;
	while (n < need)
		n *= 2;
	int64_t *w = saga_realloc(&s->alloc, *v, n * sizeof(*w));
	if (!w)
		return pg_refuse(s, SAGA_ENOMEM, "store: out of memory gathering a round's writes");
	*v = w;
	*cap = n;
	return SAGA_OK;
}

static int cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Notes the instances of an update batch about to be queued: this
 * transaction writes them fenced (sorted at the next history batch). */
static int note_written(saga_store *s, const pg_batch *b)
{
	size_t need = s->nwritten + (size_t)b->rows;
	int rc = grow_ids(s, &s->written, &s->written_cap, need);
	if (rc)
		return rc;
	memcpy(s->written + s->nwritten, b->ids, (size_t)b->rows * sizeof(*b->ids));
	s->nwritten = need;
	return SAGA_OK;
}

/* The history batch's last column: for each row, whether its instance has
 * a fenced update queued in this transaction. Such a row needs no owner
 * check of its own: the transaction commits only if that update changed
 * its row, which held the writer as owner (or ended, when anyone may write
 * its history), and keeps it locked to the commit. */
static int put_written_flags(saga_store *s, const pg_batch *b, struct pg_col *flags)
{
	if (s->nwritten > 1)
		qsort(s->written, s->nwritten, sizeof(*s->written), cmp_id);
	flags->len = 0;
	int rc = SAGA_OK;
	for (int i = 0; i < b->rows && rc == SAGA_OK; i++) {
		bool w = s->nwritten &&
		         bsearch(&b->ids[i], s->written, s->nwritten, sizeof(*s->written), cmp_id);
		rc = put_value(s, flags, w ? "t" : "f", false);
	}
	return rc;
}

/* Closes a column's array literal and names it as the next parameter. */
static void close_col(pg_params *p, struct pg_col *c)
{
	c->buf[c->len] = '}';
	c->buf[c->len + 1] = '\0';
	p_text(p, c->buf);
}

/* The batch's rows as one queued statement, its answer read at the next
 * Sync; the batch is empty after. */
static int queue_batch(saga_store *s, pg_batch *b, struct pg_col *extra)
{
	if (!b->rows)
		return SAGA_OK;
	pg_params p = { .n = 0 };
	for (int i = 0; i < b->ncols; i++)
		close_col(&p, &b->col[i]);
	if (extra)
		close_col(&p, extra);
	/* A refusal names the instance when the batch holds one row. */
	int rc = pg_queue_one(s, b->stmt, &p, K_FENCED, b->rows == 1 ? b->ids[0] : 0);
	pg_batch_clear(b);
	return rc;
}

/* The batch's rows as one statement whose rows are wanted, after whatever
 * is queued; the batch is empty after, and the caller PQclears *out. */
int pg_batch_query(saga_store *s, pg_batch *b, PGresult **out)
{
	*out = NULL;
	if (!b->rows)
		return SAGA_OK;
	pg_params p = { .n = 0 };
	for (int i = 0; i < b->ncols; i++)
		close_col(&p, &b->col[i]);
	int rc = pg_query(s, b->stmt, &p, out);
	pg_batch_clear(b);
	return rc;
}

int pg_flush(saga_store *s)
{
	int rc = SAGA_OK;
	if (s->upd.rows && (rc = note_written(s, &s->upd)) == SAGA_OK)
		rc = queue_batch(s, &s->upd, NULL);
	if (rc == SAGA_OK && s->hist.rows &&
	    (rc = put_written_flags(s, &s->hist, &s->written_flags)) == SAGA_OK)
		rc = queue_batch(s, &s->hist, &s->written_flags);
	return rc;
}

static size_t batch_bytes(const pg_batch *b)
{
	size_t n = 0;
	for (int i = 0; i < b->ncols; i++)
		n += b->col[i].len;
	return n;
}

static bool holds(const pg_batch *b, int64_t id)
{
	for (int i = 0; i < b->rows; i++)
		if (b->ids[i] == id)
			return true;
	return false;
}

/* Whether the batch holds as many rows or bytes as one statement takes. */
bool pg_batch_full(const pg_batch *b)
{
	return b->rows == BATCH_ROWS || batch_bytes(b) >= BATCH_BYTES;
}

/* Appends a row (about instance id) to the batch's columns. */
int pg_batch_put(saga_store *s, pg_batch *b, const pg_params *p, int64_t id)
{
	int rc = grow_ids(s, &b->ids, &b->ids_cap, (size_t)b->rows + 1);
	if (rc)
		return rc;
	/* A value that does not fit leaves the row out of every column. */
	size_t lens[PG_PARAMS_MAX];
	for (int i = 0; i < b->ncols; i++)
		lens[i] = b->col[i].len;
	for (int i = 0; i < b->ncols && rc == SAGA_OK; i++)
		rc = put_value(s, &b->col[i], p->v[i], b->types[i] == 't');
	if (rc) {
		for (int i = 0; i < b->ncols; i++)
			b->col[i].len = lens[i];
		return rc;
	}
	b->ids[b->rows++] = id;
	return SAGA_OK;
}

int pg_gather(saga_store *s, pg_batch *b, const pg_params *p, int64_t id)
{
	int rc = pg_usable(s);
	if (rc)
		return rc;
	if (((b->unique && holds(b, id)) || pg_batch_full(b)) && (rc = pg_flush(s)))
		return rc;
	if ((rc = pg_batch_put(s, b, p, id)))
		return rc;
	return s->in_txn ? SAGA_OK : pg_sync(s);
}

void pg_batch_init(pg_batch *b, int stmt, const char *types, bool unique)
{
	memset(b, 0, sizeof(*b));
	b->stmt = stmt;
	b->types = types;
	b->ncols = (int)strlen(types);
	b->unique = unique;
}

void pg_batch_clear(pg_batch *b)
{
	for (int i = 0; i < b->ncols; i++)
		b->col[i].len = 0;
	b->rows = 0;
}

void pg_batch_free(saga_store *s, pg_batch *b)
{
	for (int i = 0; i < b->ncols; i++)
		saga_free(&s->alloc, b->col[i].buf);
	saga_free(&s->alloc, b->ids);
	memset(b->col, 0, sizeof(b->col));
	b->ids = NULL;
	b->ids_cap = 0;
	pg_batch_clear(b);
}
