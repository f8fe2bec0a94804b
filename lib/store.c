/* Choosing a store backend by the name the caller gives (saga_options.path).
 * SPDX-License-Identifier: MIT */
#include "store.h"

#include <string.h>

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int store_for_name(const store_ops **ops, const char **target, const char *name, char *err,
                   size_t err_size)
{
	bool uri = has_prefix(name, "postgresql://") || has_prefix(name, "postgres://");
	if (uri || has_prefix(name, "postgresql:")) {
#ifdef SAGA_HAVE_POSTGRESQL
		*ops = &store_pg_ops;
		*target = uri ? name : name + strlen("postgresql:");
		return SAGA_OK;
#else
		/* The name is not repeated: a conninfo may hold a password. */
		saga_fmt(err, err_size,
		         "store: the path names a PostgreSQL store, and libsaga was built without "
		         "PostgreSQL support");
		return SAGA_EINVAL;
#endif
	}
	*ops = &store_sqlite_ops;
	*target = has_prefix(name, "sqlite:") ? name + strlen("sqlite:") : name;
	return SAGA_OK;
}
