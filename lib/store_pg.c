/* The PostgreSQL store backend (being built: opening gives SAGA_ESTORE).
 * SPDX-License-Identifier: MIT */
#include "store.h"

static int pg_open(saga_store **out, const char *uri, saga_durability durability, uint32_t busy_ms,
                   const saga_alloc *alloc, char *err, size_t err_size)
{
	*out = NULL;
	saga_fmt(err, err_size, "store: the PostgreSQL backend is not finished yet");
	return SAGA_ESTORE;
}

static void pg_close(saga_store *s)
{
}

static const char *pg_errmsg(const saga_store *s)
{
	return "";
}

const store_ops store_pg_ops = {
	.version = STORE_OPS_VERSION,
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.errmsg = pg_errmsg,
};
