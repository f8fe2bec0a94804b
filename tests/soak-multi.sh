#!/bin/sh
# Random-kill soak with several processes on one data directory: three
# `ecommerce run` processes share the directory; at seeded random moments
# one of them is killed with SIGKILL and a new one started in its place, so
# the others take over its sagas (within a poll: the kernel says the
# process is gone) while they run their own. At the end the survivors are
# killed too, `ecommerce recover` finishes what is left (with every new
# forward step failed for good, so each replay of a step that committed
# before a kill is tested against an injected failure) and `ecommerce
# check` must be clean with no saga unfinished. Reproducible by seed (the
# kill schedule; thread timing is not).
#
#   tests/soak-multi.sh PATH/TO/ecommerce [KILLS] [SEED]
#
# CI runs a bounded number of kills; run more by hand with a larger KILLS.
# SPDX-License-Identifier: MIT
set -eu

B=${1:?usage: soak-multi.sh PATH/TO/ecommerce [KILLS] [SEED]}
KILLS=${2:-${SOAK_KILLS:-40}}
SEED=${3:-${SOAK_SEED:-1}}
PROCS=3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/soak-multi.XXXXXX")
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
unset ECOMMERCE_FAIL ECOMMERCE_TRANSIENT ECOMMERCE_LATENCY ECOMMERCE_TIMEOUT \
      ECOMMERCE_CRASH ECOMMERCE_FAULT_SEED ECOMMERCE_POLICIES 2>/dev/null || true
D="$TMP/data"

fail() {
	echo "FAIL: $* (seed $SEED, kills $KILLS)" >&2
	for f in "$TMP"/*.out "$TMP"/*.err; do
		[ -s "$f" ] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }
	done
	exit 1
}

"$B" --data "$D" seed --products 40 --customers 20 --seed "$SEED" >"$TMP/seed.out" \
	2>"$TMP/seed.err" || fail "seed"

# A small linear congruential generator, so the schedule follows SEED.
rng=$SEED
next() {
	rng=$(( (rng * 1103515245 + 12345) % 2147483648 ))
	echo $(( rng % $1 ))
}

started=0
# start SLOT: a new run in slot SLOT (its pid in pid_SLOT). Latency and
# transient failures keep sagas in every state when a kill lands: mid-step,
# waiting on a retry, compensating; permanent failures in every service
# that may fail for good.
start() {
	started=$((started + 1))
	"$B" --data "$D" run --orders 300 --concurrency 4 --seed "$((SEED * 1000 + started))" \
		--latency '*=3' --transient payment=0.2 --fail '*=0.1' \
		>"$TMP/run$1.out" 2>"$TMP/run$1.err" &
	eval "pid_$1=$!"
	PIDS="$PIDS $!"
}

# reap SLOT: waits for the run of SLOT, which must have been killed (137)
# or have ended by itself (0; 1 when one of its orders ended STUCK, which
# the check at the end then names).
killed=0
finished=0
unclean=0
reap() {
	eval "p=\$pid_$1"
	set +e
	{ wait "$p"; } 2>/dev/null
	rc=$?
	set -e
	case "$rc" in
	137) killed=$((killed + 1)) ;;
	0) finished=$((finished + 1)) ;;
	1) finished=$((finished + 1)); unclean=$((unclean + 1)) ;;
	*) fail "a run exited $rc" ;;
	esac
	if grep -q -e 'runtime error:' -e 'Sanitizer' "$TMP/run$1.err"; then
		fail "sanitizer report"
	fi
}

s=1
while [ "$s" -le "$PROCS" ]; do start "$s"; s=$((s + 1)); done

i=0
while [ "$i" -lt "$KILLS" ]; do
	i=$((i + 1))
	ms=$(( 50 + $(next 500) ))
	sleep "$(printf '0.%03d' "$ms")"
	slot=$(( $(next "$PROCS") + 1 ))
	eval "p=\$pid_$slot"
	kill -9 "$p" 2>/dev/null || true
	reap "$slot"
	start "$slot"
done

# The survivors die too: their sagas are left to recover.
s=1
while [ "$s" -le "$PROCS" ]; do
	eval "p=\$pid_$s"
	kill -9 "$p" 2>/dev/null || true
	reap "$s"
	s=$((s + 1))
done
PIDS=""

ECOMMERCE_FAIL='*=1.0' "$B" --data "$D" recover --timeout 60 >"$TMP/recover.out" \
	2>"$TMP/recover.err" || fail "recover after the kills"
"$B" --data "$D" check >"$TMP/check.out" 2>"$TMP/check.err" || fail "check after $KILLS kills"
"$B" --data "$D" --json report >"$TMP/report.json" 2>"$TMP/report.err" || fail "report"
"$B" --data "$D" report >"$TMP/report.out" 2>"$TMP/report.err" || fail "report"
# The live runs took over the killed runs' sagas, not only recover at the
# end: more sagas changed process than recover found unfinished.
moved=$(sed -n 's/^owners: *\([0-9][0-9]*\) saga.*/\1/p' "$TMP/report.out")
resumed=$(sed -n 's/^resumed \([0-9][0-9]*\) saga.*/\1/p' "$TMP/recover.out")
[ -n "$moved" ] && [ -n "$resumed" ] || fail "no takeover count in the report or recover"
[ "$moved" -gt "$resumed" ] ||
	fail "$moved sagas changed process, recover found $resumed: the live runs took none over"
echo "soak-multi: $PROCS runs at once, $KILLS kills: $killed killed with SIGKILL mid-run," \
     "$finished finished first ($unclean of them with a STUCK order); recover: $(tail -n 1 "$TMP/recover.out"); $(cat "$TMP/check.out"); $(tail -n 1 "$TMP/report.out");" \
     "report: $(tr -d '\n\t ' < "$TMP/report.json" | cut -c1-200)"
