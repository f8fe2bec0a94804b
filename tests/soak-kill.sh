#!/bin/sh
# Random-kill soak test: `ecommerce run` is killed with SIGKILL at random
# moments, `ecommerce recover` runs in between (with every new forward step
# failed for good, so each replay of a step that committed before the kill
# is tested against an injected failure), and at the end `ecommerce
# check` must be clean with no saga unfinished. Reproducible by seed.
#
#   tests/soak-kill.sh PATH/TO/ecommerce [KILLS] [SEED]
#
# CI runs a bounded number of kills; run more by hand with a larger KILLS.
# SPDX-License-Identifier: MIT
set -eu

B=${1:?usage: soak-kill.sh PATH/TO/ecommerce [KILLS] [SEED]}
KILLS=${2:-${SOAK_KILLS:-30}}
SEED=${3:-${SOAK_SEED:-1}}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/soak-kill.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
unset ECOMMERCE_FAIL ECOMMERCE_TRANSIENT ECOMMERCE_LATENCY ECOMMERCE_TIMEOUT \
      ECOMMERCE_CRASH ECOMMERCE_FAULT_SEED ECOMMERCE_POLICIES 2>/dev/null || true
D="$TMP/data"

fail() {
	echo "FAIL: $*" >&2
	for f in "$TMP/out" "$TMP/err"; do
		[ -s "$f" ] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }
	done
	exit 1
}

"$B" --data "$D" seed --products 40 --customers 20 --seed "$SEED" >"$TMP/out" 2>"$TMP/err" ||
	fail "seed"

# A small linear congruential generator, so the kill moments follow SEED.
rng=$SEED
next() {
	rng=$(( (rng * 1103515245 + 12345) % 2147483648 ))
	echo $(( rng % $1 ))
}

killed=0
finished=0
i=0
while [ "$i" -lt "$KILLS" ]; do
	i=$((i + 1))
	# Latency and transient failures keep sagas in every state when the
	# kill lands: mid-step, waiting on a retry, compensating. Permanent
	# failures are injected in every service that may fail for good.
	"$B" --data "$D" run --orders 400 --concurrency 8 --seed "$((SEED * 1000 + i))" \
		--latency '*=3' --transient payment=0.2 --fail '*=0.1' \
		>"$TMP/out" 2>"$TMP/err" &
	pid=$!
	ms=$(( 20 + $(next 400) ))
	sleep "$(printf '0.%03d' "$ms")"
	if kill -9 "$pid" 2>/dev/null; then
		killed=$((killed + 1))
	fi
	set +e
	{ wait "$pid"; } 2>/dev/null
	rc=$?
	set -e
	case "$rc" in
	137) ;;
	0|1) finished=$((finished + 1)) ;; # the run ended before the kill
	*) fail "run $i exited $rc" ;;
	esac
	# The recovery replays, under permanent failures for every new key: a
	# step whose effect committed just before the kill must answer as
	# recorded (and be compensated or completed), never as a failure.
	ECOMMERCE_FAIL='*=1.0' "$B" --data "$D" recover --timeout 60 >"$TMP/out" 2>"$TMP/err" ||
		fail "recover after kill $i"
done

"$B" --data "$D" check >"$TMP/out" 2>"$TMP/err" || fail "check after $KILLS kills"
"$B" --data "$D" --json report >"$TMP/report.json" 2>"$TMP/err" || fail "report"
echo "soak: $KILLS runs, $killed killed with SIGKILL mid-run, $finished finished first;" \
     "check clean; report: $(tr -d '\n' < "$TMP/report.json" | cut -c1-300)"
