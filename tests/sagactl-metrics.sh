#!/bin/sh
# sagactl metrics on a store made by real runs (sagactl-fixture: COMPLETED,
# COMPENSATED and STUCK instances): the store gauges on stdout, accepted by
# `promtool check metrics` (when installed), with the counts the store
# holds; OpenMetrics ending with # EOF; a node_exporter textfile written
# whole (no temporary file left); bad input's exit codes; the store unchanged.
#   tests/sagactl-metrics.sh SAGACTL FIXTURE
# SPDX-License-Identifier: MIT
set -eu
SAGACTL=$1
FIXTURE=$2
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sagactl-metrics.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
S=$TMP/store.db
fail() { echo "FAIL: $*"; exit 1; }

"$FIXTURE" make "$S" >/dev/null || fail "fixture"
cp "$S" "$S.before"

"$SAGACTL" --store "$S" metrics >"$TMP/m" || fail "sagactl metrics"
if command -v promtool >/dev/null 2>&1; then
	promtool check metrics <"$TMP/m" || fail "promtool check metrics"
fi
# The fixture's counts (sagactl count agrees) against the gauges.
"$SAGACTL" --store "$S" count >"$TMP/count" || fail "sagactl count"
for st in COMPLETED COMPENSATED STUCK; do
	want=$(sed -n "s/^$st  *\([0-9][0-9]*\)\$/\1/p" "$TMP/count")
	lower=$(echo "$st" | tr 'A-Z' 'a-z')
	got=$(sed -n "s/^saga_store_instances_by_state{state=\"$lower\"} \([0-9]*\)\$/\1/p" "$TMP/m")
	[ -n "$want" ] && [ "$got" = "$want" ] || fail "$st: $got in the metrics, $want counted"
done
stuck=$(sed -n 's/^saga_store_stuck_instances{definition="order",version="1",reason="[a-z_]*"} \([0-9]*\)$/\1/p' \
	"$TMP/m" | awk '{ n += $1 } END { print n + 0 }')
[ "$stuck" = "$(sed -n 's/^STUCK  *\([0-9]*\)$/\1/p' "$TMP/count")" ] || fail "stuck gauge: $stuck"
grep -q '^saga_store_overdue_instances 0$' "$TMP/m" || fail "overdue"
if grep -q '^saga_attempts_total' "$TMP/m"; then fail "process metrics from sagactl"; fi
echo "ok: the store gauges"

"$SAGACTL" --store "$S" metrics --format openmetrics >"$TMP/om" || fail "openmetrics"
[ "$(tail -n 1 "$TMP/om")" = "# EOF" ] || fail "OpenMetrics without # EOF last"
grep -q '^# UNIT saga_store_oldest_due_age_seconds seconds$' "$TMP/om" || fail "no UNIT"
echo "ok: OpenMetrics"

mkdir "$TMP/textfile"
"$SAGACTL" --store "$S" metrics --textfile "$TMP/textfile" || fail "--textfile"
cmp -s "$TMP/textfile/saga.prom" "$TMP/m" || fail "the textfile differs from stdout"
[ "$(ls "$TMP/textfile")" = saga.prom ] || fail "left: $(ls "$TMP/textfile")"
echo "ok: the textfile"

set +e
"$SAGACTL" --store "$S" metrics --format json >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q "prometheus or openmetrics" "$TMP/err" || fail "bad --format"
"$SAGACTL" --store "$S" metrics --textfile "$TMP/nowhere/x" >/dev/null 2>"$TMP/err"
[ $? = 1 ] || fail "a textfile directory that does not exist"
"$SAGACTL" --store "$TMP/none.db" metrics >/dev/null 2>&1
[ $? = 3 ] || fail "a store that does not exist"
set -e
cmp -s "$S" "$S.before" || fail "the store changed"
echo "ok: bad input, the store unchanged"
