/* sagactl metrics: the store gauges (saga_admin_metrics_write) on stdout,
 * or into a node_exporter textfile (written beside it, then renamed over
 * it, so the collector never reads half a file).
 * SPDX-License-Identifier: MIT */
#include "sagactl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int to_file(const char *data, size_t len, void *user)
{
	return fwrite(data, 1, len, user) == len ? 0 : -1;
}

int cmd_metrics(saga_admin *a, const cli *c)
{
	opt opts[] = { { "--format", true, NULL },
		       { "--textfile", true, NULL },
		       { NULL, false, NULL } };
	int code = no_operands(c, opts);
	if (code)
		return code;
	saga_metrics_format fmt = SAGA_METRICS_PROMETHEUS;
	const char *f = opt_val(opts, "--format");
	if (f && strcmp(f, "openmetrics") == 0)
		fmt = SAGA_METRICS_OPENMETRICS;
	else if (f && strcmp(f, "prometheus") != 0)
		return fail(EXIT_USAGE, "metrics: --format is prometheus or openmetrics, not '%s'",
		            f);
	const char *dir = opt_val(opts, "--textfile");
	if (!dir) {
		int rc = saga_admin_metrics_write(a, fmt, to_file, stdout);
		if (rc)
			return admin_fail(a, rc, "metrics");
		return fflush(stdout) == 0 ? EXIT_OK : fail(EXIT_FAIL, "metrics: cannot write");
	}
	char path[4096], tmp[4200];
	if ((size_t)snprintf(path, sizeof(path), "%s/saga.prom", dir) >= sizeof(path))
		return fail(EXIT_USAGE, "metrics: --textfile: the directory name is too long");
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	FILE *out = fopen(tmp, "w");
	if (!out)
		return fail(EXIT_FAIL, "metrics: %s: %s", tmp, strerror(errno));
	int rc = saga_admin_metrics_write(a, fmt, to_file, out);
	int closed = fclose(out);
	if (rc) {
		unlink(tmp);
		return admin_fail(a, rc, "metrics");
	}
	if (closed != 0 || rename(tmp, path) != 0) {
		int err = errno;
		unlink(tmp);
		return fail(EXIT_FAIL, "metrics: %s: %s", path, strerror(err));
	}
	return EXIT_OK;
}
