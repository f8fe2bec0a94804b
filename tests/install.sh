#!/bin/sh
# Installs libsaga into a temporary prefix and builds a program against the
# installed copy the way a user would: once with pkg-config on the command
# line, once as a meson project with dependency('libsaga'). Each program uses
# cJSON through the public header (a context) and runs a saga to its end;
# then the installed sagactl reads that store.
# Usage: install.sh SOURCE_ROOT
# Exit 77 (skipped) when a tool it needs is missing.
set -eu
src=$1
for tool in meson ninja pkg-config cc; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "skipped: $tool not found"
		exit 77
	fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# A plain build of the library alone (no tests, whatever the outer build's
# sanitizers), installed under the temporary prefix.
meson setup "$tmp/build" "$src" --prefix="$prefix" --libdir=lib -Dtests=false \
	-Dbuildtype=release >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
meson install -C "$tmp/build" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
test -f "$prefix/include/saga.h"
test -f "$prefix/lib/pkgconfig/libsaga.pc"

mkdir "$tmp/app"
cat > "$tmp/app/app.c" <<'EOF'
/* Links only what `pkg-config --libs libsaga` gives: saga.h puts cJSON in the
 * API, so cJSON must come with it. */
#include <saga.h>
#include <cjson/cJSON.h>
#include <stdio.h>

static saga_step_result step(saga_step_ctx *ctx, void *user)
{
	(void)user;
	saga_step_put(ctx, "done", cJSON_CreateTrue());
	return SAGA_STEP_OK;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	saga_options o = SAGA_OPTIONS_INIT;
	o.path = argv[1];
	saga_engine *e;
	char err[256];
	if (saga_engine_open(&e, &o, err, sizeof err) != SAGA_OK) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	saga_definition *d;
	saga_step_spec spec = { "only", SAGA_STEP_COMPENSATABLE, step, step, NULL };
	int64_t id = 0;
	int rc = saga_definition_new(&d, "app", 1);
	if (rc == SAGA_OK)
		rc = saga_definition_add_step(d, &spec);
	if (rc == SAGA_OK)
		rc = saga_engine_register(e, d);
	saga_definition_free(d);
	cJSON *input = cJSON_CreateObject();
	if (rc == SAGA_OK)
		rc = saga_start(e, &id, NULL, "app", NULL, input);
	cJSON_Delete(input);
	if (rc == SAGA_OK)
		rc = saga_run_until_idle(e);
	saga_instance_info info;
	if (rc == SAGA_OK)
		rc = saga_get(e, &info, id);
	cJSON *ctx = NULL;
	if (rc == SAGA_OK)
		rc = saga_get_context(e, &ctx, id);
	int ok = rc == SAGA_OK && info.state == SAGA_COMPLETED &&
	         cJSON_IsTrue(cJSON_GetObjectItem(ctx, "done"));
	cJSON_Delete(ctx);
	if (!ok)
		fprintf(stderr, "saga did not complete: %s\n", rc ? saga_engine_errmsg(e) : "");
	saga_engine_close(e);
	printf("libsaga %s: %s\n", saga_version(), ok ? "COMPLETED" : "failed");
	return ok ? 0 : 1;
}
EOF

PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH

# 1. pkg-config on the command line, as docs/getting-started.md shows.
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/app/app-pc" "$tmp/app/app.c" $(pkg-config --cflags --libs libsaga)
LD_LIBRARY_PATH=$prefix/lib "$tmp/app/app-pc" "$tmp/app/pc.db"

# 2. A meson project of the user's own.
cat > "$tmp/app/meson.build" <<'EOF'
project('app', 'c', default_options : ['c_std=c11', 'werror=true'])
executable('app', 'app.c', dependencies : dependency('libsaga'))
EOF
meson setup "$tmp/app/build" "$tmp/app" >"$tmp/app-setup.log" 2>&1 ||
	{ cat "$tmp/app-setup.log"; exit 1; }
ninja -C "$tmp/app/build" >"$tmp/app-build.log" 2>&1 || { cat "$tmp/app-build.log"; exit 1; }
LD_LIBRARY_PATH=$prefix/lib "$tmp/app/build/app" "$tmp/app/meson.db"

# 3. sagactl is installed with the library and reads what the program wrote.
test -x "$prefix/bin/sagactl"
LD_LIBRARY_PATH=$prefix/lib "$prefix/bin/sagactl" --store "$tmp/app/pc.db" --output json count |
	grep -q '"state":"COMPLETED","count":1'
