#!/bin/sh
# Integration tests of the `ecommerce` binary (examples/ecommerce): runs with
# each kind of failure injected, a crash at each named point followed by
# `recover`, the refused bad orders, a duplicate order key, cancellation,
# several processes at once on one data directory (runs, and status,
# report, check, recover and cancel while they go on). Every case uses a
# fresh data directory.
#
#   tests/test-ecommerce.sh PATH/TO/ecommerce
#
# SPDX-License-Identifier: MIT
set -eu

B=${1:?usage: test-ecommerce.sh PATH/TO/ecommerce}
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test-ecommerce.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
# Failure injection from the environment would change every case.
unset ECOMMERCE_FAIL ECOMMERCE_TRANSIENT ECOMMERCE_LATENCY ECOMMERCE_TIMEOUT \
      ECOMMERCE_CRASH ECOMMERCE_FAULT_SEED ECOMMERCE_POLICIES 2>/dev/null || true

CASES=0
fail() {
	echo "FAIL: $*" >&2
	for f in "$TMP/out" "$TMP/err"; do
		if [ -s "$f" ]; then
			echo "---- $(basename "$f"):" >&2
			tail -n 40 "$f" >&2
		fi
	done
	exit 1
}

say() {
	echo "== $*"
	CASES=$((CASES + 1))
}

# A fresh, seeded data directory.
fresh() {
	d=$(mktemp -d "$TMP/data.XXXXXX")
	"$B" --data "$d" seed --products 30 --customers 12 --seed 7 >"$TMP/out" 2>"$TMP/err" ||
		fail "seed in $d"
	echo "$d"
}

# expect CODE CMD...: runs CMD with stdout/stderr in $TMP/out and $TMP/err
# and fails unless it exits with CODE.
expect() {
	want=$1
	shift
	set +e
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	[ "$rc" -eq "$want" ] || fail "exit $rc (wanted $want): $*"
	sanitizer_clean
}

# Under -Db_sanitize, a report on stderr fails the case whatever the exit code.
sanitizer_clean() {
	if grep -q -e 'runtime error:' -e 'Sanitizer' "$TMP/err"; then
		fail "sanitizer report"
	fi
}

# Everything a command could have written: the report, and with the sqlite3
# shell the row count of every table of every file (guard records too).
snapshot() {
	"$B" --data "$1" --json report || echo "report failed: $?"
	ls "$1"
	if command -v sqlite3 >/dev/null 2>&1; then
		for f in "$1"/*.db; do
			for t in $(sqlite3 "$f" "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"); do
				echo "$(basename "$f") $t $(sqlite3 "$f" "SELECT count(*) FROM \"$t\"")"
			done
		done
	fi
}

# Every file of a directory, with its content's hash.
tree_sum() {
	(cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do
		echo "$f $(sha256sum <"$f")"
	done)
}

# The first number on the report line that starts with $2 ("orders:", "sagas:").
report_count() {
	"$B" --data "$1" report | sed -n "s/^$2 *\([0-9][0-9]*\).*/\1/p"
}

# ---------------------------------------------------------------------------
# 1. Runs with each kind of failure injected end in a clean check.
# ---------------------------------------------------------------------------
for spec in \
	"--fail payment=0.2,inventory=0.1,order=0.05,shipping=0.1" \
	"--transient *=0.2" \
	"--latency *=3" \
	"--timeout payment=1100:0.1,shipping=1100:0.1" \
	"--fail *=0.1 --transient *=0.1 --latency payment=2"
do
	say "run with $spec: recover, then a clean check"
	d=$(fresh)
	# shellcheck disable=SC2086  # the spec is split on purpose
	expect 0 "$B" --data "$d" run --orders 40 --concurrency 4 --seed 3 $spec
	grep -q "^outcomes: .*STUCK 0, unfinished 0" "$TMP/out" || fail "run left sagas: $spec"
	expect 0 "$B" --data "$d" recover
	expect 0 "$B" --data "$d" check
	grep -q "^consistent: 40 sagas" "$TMP/out" || fail "check did not see 40 sagas"
done

say "failure injection from the environment (ECOMMERCE_TRANSIENT, ECOMMERCE_FAIL)"
d=$(fresh)
expect 0 env ECOMMERCE_TRANSIENT='*=0.2' ECOMMERCE_FAIL='payment=0.2' \
	"$B" --data "$d" run --orders 20 --concurrency 4
grep -q "transient" "$TMP/out" || fail "no transient failure was injected from the environment"
expect 0 "$B" --data "$d" check

say "run --json gives the figures"
d=$(fresh)
expect 0 "$B" --data "$d" --json run --orders 10 --concurrency 2
for k in '"orders_per_second"' '"p50"' '"p99"' '"COMPLETED"'; do
	grep -q "$k" "$TMP/out" || fail "run --json has no $k"
done

# ---------------------------------------------------------------------------
# 2. A crash at each named point, then recover: a clean check.
# ---------------------------------------------------------------------------
# The saga never calls payment_refund_amount (partial refunds) nor
# shipping_cancel (its pivot is never compensated), so their points are
# never reached: the run must then finish normally, and stay consistent.
unreached="payment.refund_amount.before payment.refund_amount.after shipping.cancel.before shipping.cancel.after"
points=$("$B" --data "$TMP/none" run --crash list 2>&1 | sed -n 's/^  *//p' || true)
# The list comes from ecom_crash_points(); the binary prints it on a bad point.
[ -n "$points" ] || fail "could not read the crash point list"
for p in $points; do
	say "crash at $p, recover, check"
	d=$(fresh)
	set +e
	"$B" --data "$d" run --orders 30 --concurrency 4 --seed 5 --fail shipping=0.3 \
		--crash "$p" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	sanitizer_clean
	case " $unreached " in
	*" $p "*)
		[ "$rc" -eq 0 ] || fail "$p is not on the saga's path, yet the run exited $rc"
		;;
	*)
		[ "$rc" -eq 137 ] || fail "the run did not die by SIGKILL at $p (exit $rc)"
		;;
	esac
	expect 0 "$B" --data "$d" recover --timeout 60
	expect 0 "$B" --data "$d" check
done

# ---------------------------------------------------------------------------
# 2b. A crash just after a service's COMMIT, then a replay that would be
#     refused by every injected permanent failure: a key already recorded
#     answers as recorded, whatever is injected, so nothing durable is left
#     uncompensated (a charge on a FAILED order, a reservation held, an
#     order PENDING).
# ---------------------------------------------------------------------------
for p in $points; do
	case "$p" in *.after) ;; *) continue ;; esac
	case " $unreached " in *" $p "*) continue ;; esac
	say "crash at $p, replay under permanent failures (rate 1.0), check"
	d=$(fresh)
	set +e
	"$B" --data "$d" run --orders 12 --concurrency 4 --seed 11 --fail shipping=0.5 \
		--crash "$p" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	sanitizer_clean
	[ "$rc" -eq 137 ] || fail "the run did not die by SIGKILL at $p (exit $rc)"
	expect 0 env ECOMMERCE_FAIL='*=1.0' "$B" --data "$d" recover --timeout 60
	expect 0 "$B" --data "$d" check
done

# ---------------------------------------------------------------------------
# 3. Bad orders are refused with exit 2 and nothing written.
# ---------------------------------------------------------------------------
say "bad orders on a fresh directory write nothing, not even the saga store"
d=$(fresh)
before=$(snapshot "$d")
expect 2 "$B" --data "$d" order --customer NOBODY --item SKU-0001:1
after=$(snapshot "$d")
[ "$before" = "$after" ] || fail "a refused order wrote something"
[ ! -e "$d/saga.db" ] || fail "a refused order created the saga store"

d=$(fresh)
expect 0 "$B" --data "$d" order --customer CUST-0001 --item SKU-0001:1 --key good-1
before=$(snapshot "$d")
bad() {
	what=$1
	shift
	say "refused: $what"
	expect 2 "$B" --data "$d" order "$@"
	[ -s "$TMP/err" ] || fail "no message for: $what"
	sed 's/^/   /' "$TMP/err"
	after=$(snapshot "$d")
	[ "$before" = "$after" ] || fail "refused order ($what) wrote something"
}
bad "no customer" --item SKU-0001:1
bad "unknown customer" --customer CUST-9999 --item SKU-0001:1
bad "no items" --customer CUST-0001
bad "unknown product" --customer CUST-0001 --item SKU-9999:1
bad "negative quantity" --customer CUST-0001 --item SKU-0001:-2
bad "zero quantity" --customer CUST-0001 --item SKU-0001:0
bad "malformed item" --customer CUST-0001 --item SKU-0001
bad "empty address" --customer CUST-0001 --item SKU-0001:1 --address ""
bad "unknown payment method" --customer CUST-0001 --item SKU-0001:1 --payment BITCOIN
bad "unknown shipping method" --customer CUST-0001 --item SKU-0001:1 --shipping CARRIER_PIGEON
bad "zero amount (total 0)" --customer CUST-0001 --item SKU-0001:1 --total 0
bad "zero amount (unit price 0)" --customer CUST-0001 --item SKU-0001:1@0
bad "huge amount (total)" --customer CUST-0001 --item SKU-0001:1 --total 9999999999999
bad "huge amount (unit price)" --customer CUST-0001 --item SKU-0001:1@9223372036854775807
bad "huge amount (quantity overflowing the total)" --customer CUST-0001 --item SKU-0001:9223372036854775807
bad "total different from the items" --customer CUST-0001 --item SKU-0001:1 --total 1
bad "bulk quantity 1000" --customer CUST-0001 --item SKU-0001:1000
bad "more than 50 lines" --customer CUST-0001 $(i=0; while [ $i -lt 51 ]; do printf ' --item SKU-0001:1'; i=$((i + 1)); done)
bad "empty key" --customer CUST-0001 --item SKU-0001:1 --key ""

say "usage errors exit 2"
expect 2 "$B" --data "$d" frobnicate
expect 2 "$B" --data "$d" run --orders 5 --fail wallet=0.1
expect 2 "$B" --data "$d" run --orders 5 --fail payment=2
expect 2 "$B" --data "$d" run --orders 5 --crash payment.nothing.after
expect 2 "$B" --data "$d" run --concurrency 0
expect 2 "$B" --data "$d" status
expect 2 "$B" --data "$d" status no-such-order
expect 2 "$B" --data "$d" status --key no-such-order
expect 2 "$B" --data "$d" status --id 999
expect 2 "$B" --data "$d" seed
expect 2 "$B" --data "$TMP/never-seeded" order --customer CUST-0001 --item SKU-0001:1
[ ! -e "$TMP/never-seeded" ] || fail "an order on a missing directory created it"
after=$(snapshot "$d")
[ "$before" = "$after" ] || fail "a usage error wrote something"

# ---------------------------------------------------------------------------
# 4. The same order key three times gives one order.
# ---------------------------------------------------------------------------
say "duplicate order key three times: one order, one saga"
d=$(fresh)
for i in 1 2 3; do
	expect 0 "$B" --data "$d" order --customer CUST-0002 --item SKU-0003:1 --key dup-key
	grep -q "^order: *1 CONFIRMED" "$TMP/out" || fail "attempt $i did not answer order 1"
done
[ "$(report_count "$d" orders:)" = 1 ] || fail "$(report_count "$d" orders:) orders for one key"
[ "$(report_count "$d" sagas:)" = 1 ] || fail "$(report_count "$d" sagas:) sagas for one key"
expect 0 "$B" --data "$d" check

# ---------------------------------------------------------------------------
# 5. Cancellation, status, business failure.
# ---------------------------------------------------------------------------
say "cancel a parked order: compensated, order CANCELLED"
d=$(fresh)
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0001:1 --key parked \
	--transient payment=1 --wait 0
grep -q "WAITING" "$TMP/out" || fail "the order did not park"
expect 1 "$B" --data "$d" check
grep -q "^violation saga-unfinished" "$TMP/out" || fail "check did not name the unfinished saga"
expect 0 "$B" --data "$d" cancel --key parked
grep -q "COMPENSATED (cancel)" "$TMP/out" || fail "cancel did not compensate"
grep -q "CANCELLED" "$TMP/out" || fail "the order is not CANCELLED"
expect 0 "$B" --data "$d" status --key parked
grep -q "compensation" "$TMP/out" || fail "status shows no compensation in the history"

say "graph: the definition and the cancelled order's path, in each format"
expect 0 "$B" --data "$d" graph --format mermaid
grep -q '^flowchart LR$' "$TMP/out" || fail "graph --format mermaid is no flowchart"
grep -q 'breaker: payment' "$TMP/out" || fail "the definition's graph lacks its policies"
expect 0 "$B" --data "$d" --json graph --key parked
grep -q '"state":[[:space:]]*"COMPENSATED"' "$TMP/out" || fail "graph --json: not COMPENSATED"
grep -q '"operator":[[:space:]]*\["cancel"\]' "$TMP/out" || fail "graph: the cancel is not marked"
expect 0 "$B" --data "$d" graph --key parked
if command -v dot >/dev/null 2>&1; then
	dot -Tsvg -o /dev/null "$TMP/out" 2>"$TMP/err" || fail "dot refused the order's graph"
	[ ! -s "$TMP/err" ] || fail "dot warned about the order's graph"
fi
expect 2 "$B" --data "$d" graph --format png
expect 2 "$B" --data "$d" graph --key no-such-order

say "cancel past the pivot is refused (exit 1); recover finishes the order"
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key past-pivot \
	--transient notification=1 --wait 0
expect 1 "$B" --data "$d" cancel --key past-pivot
grep -q "pivot" "$TMP/err" || fail "no message about the pivot"
expect 0 "$B" --data "$d" recover
expect 0 "$B" --data "$d" status --key past-pivot
grep -q "COMPLETED" "$TMP/out" || fail "recover did not complete the order"
expect 1 "$B" --data "$d" cancel past-pivot
grep -q "already ended" "$TMP/err" || fail "cancelling a completed order"

say "a business failure (credit limit) exits 1 and rolls back"
expect 1 "$B" --data "$d" order --customer CUST-0012 --item SKU-0004:9 --key too-dear
grep -q "FAILED" "$TMP/out" || fail "the order is not FAILED"
expect 0 "$B" --data "$d" check
expect 0 "$B" --data "$d" --json check
grep -q '"consistent":[[:space:]]*true' "$TMP/out" || fail "check --json"

# ---------------------------------------------------------------------------
# 6. status and cancel name exactly one order: --id N or --key K.
# ---------------------------------------------------------------------------
say "a number names no order by itself: cancel 2 is refused, --key 2 and --id 2 are not"
d=$(fresh)
park() {
	expect 1 "$B" --data "$d" order --customer "$1" --item SKU-0001:1 --key "$2" \
		--transient payment=1 --wait 0
	grep -q "WAITING" "$TMP/out" || fail "order $2 did not park"
}
park CUST-0001 first    # order 1
park CUST-0002 other    # order 2, key "other"
park CUST-0003 2        # order 3, key "2"
before=$(tree_sum "$d")
for cmd in status cancel; do
	for arg in 2 " 2" +2 -2; do
		expect 2 "$B" --data "$d" $cmd "$arg"
		grep -q -e "--id" "$TMP/err" || fail "$cmd \"$arg\": the message does not say --id/--key"
	done
	expect 2 "$B" --data "$d" $cmd --id 2 --key 2
	expect 2 "$B" --data "$d" $cmd --id " 2"
	expect 2 "$B" --data "$d" $cmd --id +2
	expect 2 "$B" --data "$d" $cmd --id 0
	expect 2 "$B" --data "$d" $cmd --id 99
	expect 2 "$B" --data "$d" $cmd --key 99
	expect 2 "$B" --data "$d" $cmd --key ""
done
[ "$before" = "$(tree_sum "$d")" ] || fail "a refused status/cancel wrote something"
expect 0 "$B" --data "$d" status --key 2
grep -q "^order: *3 PENDING" "$TMP/out" || fail "status --key 2 is not order 3"
expect 0 "$B" --data "$d" status --id 2
grep -q "key other" "$TMP/out" || fail "status --id 2 is not the order of key other"
expect 0 "$B" --data "$d" status --id 1
grep -q "key first" "$TMP/out" || fail "status --id 1 is not the order of key first"
expect 0 "$B" --data "$d" cancel --key 2
grep -q "^order: *3 CANCELLED" "$TMP/out" || fail "cancel --key 2 did not cancel order 3"
# The other parked orders may have gone on meanwhile (their retries were due):
# cancelled they are not.
expect 0 "$B" --data "$d" status --id 2
grep -q "key other" "$TMP/out" || fail "status --id 2 is not the order of key other"
if grep -q "CANCELLED" "$TMP/out"; then fail "cancel --key 2 cancelled order 2"; fi
expect 0 "$B" --data "$d" recover
expect 0 "$B" --data "$d" check

# ---------------------------------------------------------------------------
# 7. Every exit-2 path leaves every file byte-identical (and creates none,
#    not even the saga store): arguments, the policy file, the order and
#    its ids are all checked before anything is opened for writing. No value
#    is cut to fit a buffer: too long, signed or blank is refused.
# ---------------------------------------------------------------------------
printf '{"defaults": {"timeout_ms": "soon"}}\n' >"$TMP/bad-policy.json"
{ cat "$SRC/examples/ecommerce/policies.json"; printf '\000{"garbage": 1}\n'; } \
	>"$TMP/nul-policy.json"
{ cat "$SRC/examples/ecommerce/policies.json"; printf '\n[]\n'; } >"$TMP/trailing-policy.json"
zeros=$(printf '%062d' 0)
long_qty="SKU-0001:${zeros}1xyz"   # cut to 64 bytes, it read as quantity 1
refused() {
	what=$1
	shift
	set +e
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	sanitizer_clean
	[ "$rc" -eq 2 ] || fail "$what: exit $rc (wanted 2): $*"
	[ -s "$TMP/err" ] || fail "$what: no message"
	[ "$before" = "$(tree_sum "$d")" ] || fail "$what: exit 2, yet the directory changed: $*"
}
exit2_cases() {
	refused "status of an unknown key" "$B" --data "$d" status --key nope
	refused "status of an unknown id" "$B" --data "$d" status --id 77
	refused "cancel of an unknown key" "$B" --data "$d" cancel --key nope
	refused "cancel of an unknown id" "$B" --data "$d" cancel --id 77
	for pol in bad-policy nul-policy trailing-policy missing-policy; do
		P="$TMP/$pol.json"
		refused "order, $pol" "$B" --data "$d" --policies "$P" order --customer CUST-0001 \
			--item SKU-0002:1
		refused "run, $pol" "$B" --data "$d" --policies "$P" run --orders 2
		refused "recover, $pol" "$B" --data "$d" --policies "$P" recover
		refused "cancel, $pol" "$B" --data "$d" --policies "$P" cancel --key p1
		refused "order, $pol from the environment" env ECOMMERCE_POLICIES="$P" \
			"$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1
	done
	refused "an --item longer than a buffer" "$B" --data "$d" order --customer CUST-0001 \
		--item "$long_qty"
	refused "a price with a sign" "$B" --data "$d" order --customer CUST-0001 \
		--item "SKU-0001:1@+100"
	refused "a quantity with a blank" "$B" --data "$d" order --customer CUST-0001 \
		--item "SKU-0001: 1"
	refused "a total with a blank" "$B" --data "$d" order --customer CUST-0001 \
		--item SKU-0001:1 --total " 100"
	refused "a long payment method" "$B" --data "$d" order --customer CUST-0001 \
		--item SKU-0001:1 --payment "credit-card$(printf '%070d' 0)"
	refused "--seed with a blank and a sign" "$B" --data "$d" run --orders 2 --seed " -1"
	refused "--seed in hex" "$B" --data "$d" run --orders 2 --seed 0x10
	refused "--orders with a blank" "$B" --data "$d" run --orders " 2"
	refused "--orders with a sign" "$B" --data "$d" run --orders +2
	refused "--wait with a sign" "$B" --data "$d" order --customer CUST-0001 \
		--item SKU-0001:1 --wait -0
	refused "ECOMMERCE_FAULT_SEED signed" env ECOMMERCE_FAULT_SEED=" -1" \
		"$B" --data "$d" run --orders 2
	refused "a rate with a sign" "$B" --data "$d" run --orders 2 --fail payment=+1
	refused "a rate in hex" "$B" --data "$d" run --orders 2 --fail payment=0x1p-1
	refused "a latency with a sign" "$B" --data "$d" run --orders 2 --latency payment=+5
	refused "--timeout with a sign" "$B" --data "$d" recover --timeout +5
	refused "cancel --wait with a sign" "$B" --data "$d" cancel --key p1 --wait +5
	refused "status --wait (cancel's option)" "$B" --data "$d" status --key p1 --wait 5
	refused "an unknown order" "$B" --data "$d" order --customer NOBODY --item SKU-0001:1
	refused "a key too long" "$B" --data "$d" status --key "$(printf '%0300d' 0)"
	refused "--data too long" "$B" --data "$d/$(printf '%04100d' 0)" report
	refused "--policies empty" "$B" --data "$d" --policies "" recover
}
say "exit 2 on a seeded directory with no saga store: nothing written, no saga.db"
d=$(fresh)
before=$(tree_sum "$d")
exit2_cases
[ ! -e "$d/saga.db" ] || fail "an exit-2 path created the saga store"

say "exit 2 on a directory with sagas (one parked): nothing written"
d=$(fresh)
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key p1 \
	--transient payment=1 --wait 0
before=$(tree_sum "$d")
exit2_cases

say "exit 2 on a directory missing a service file: nothing created"
d=$(fresh)
rm "$d/payment.db"
before=$(tree_sum "$d")
refused "order" "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1
grep -q "payment.db is missing" "$TMP/err" || fail "the missing file is not named"
refused "run" "$B" --data "$d" run --orders 2
refused "recover" "$B" --data "$d" recover
refused "check" "$B" --data "$d" check
refused "report" "$B" --data "$d" report
refused "status" "$B" --data "$d" status --key x

say "seed --seed ' -1' is refused before the directory is made"
expect 2 "$B" --data "$TMP/seed-signed" seed --seed " -1"
[ ! -e "$TMP/seed-signed" ] || fail "a refused seed created its directory"
expect 2 "$B" --data "$TMP/seed-signed" seed --products " 5"
[ ! -e "$TMP/seed-signed" ] || fail "a refused seed created its directory"

# ---------------------------------------------------------------------------
# 8. Smaller: messages, concurrent seeds, check's leftovers.
# ---------------------------------------------------------------------------
say "--data '' names the program once"
expect 2 "$B" --data ''
grep -q "^ecommerce: --data needs a directory" "$TMP/err" || fail "no message for --data ''"
if grep -q "ecommerce: ecommerce:" "$TMP/err"; then fail "the prefix is printed twice"; fi
expect 2 "$B" --data
if grep -q "ecommerce: ecommerce:" "$TMP/err"; then fail "the prefix is printed twice"; fi

say "two seeds at once on one directory: one seeds (0), the other is refused (2)"
for i in 1 2 3 4 5; do
	sd="$TMP/seed-race-$i"
	"$B" --data "$sd" seed --products 400 --customers 400 >"$TMP/s1.out" 2>"$TMP/s1.err" &
	p1=$!
	"$B" --data "$sd" seed --products 400 --customers 400 >"$TMP/s2.out" 2>"$TMP/s2.err" &
	p2=$!
	set +e
	wait "$p1"; r1=$?
	wait "$p2"; r2=$?
	set -e
	case "$r1$r2" in
	02|20) ;;
	*) cat "$TMP/s1.err" "$TMP/s2.err" >"$TMP/err"; fail "seeds racing exited $r1 and $r2" ;;
	esac
	expect 0 "$B" --data "$sd" check
done

say "a service file that cannot be opened is named, with the cause"
d=$(fresh)
rm "$d/shipping.db"
mkdir "$d/shipping.db"
expect 1 "$B" --data "$d" report
grep -q "shipping.db: cannot open: unable to open" "$TMP/err" || fail "the file or cause is not named"

say "check leaves no -wal or -shm beside the service files"
d=$(fresh)
expect 0 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1
expect 0 "$B" --data "$d" check
left=$(ls "$d" | grep -e '-wal$' -e '-shm$' || true)
[ -z "$left" ] || fail "check left: $left"

# ---------------------------------------------------------------------------
# 9. recover cross-checks the services against the store.
# ---------------------------------------------------------------------------
say "recover with the saga store deleted under an order in flight: exit 1"
d=$(fresh)
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key lost \
	--transient payment=1 --wait 0
rm -f "$d/saga.db" "$d/saga.db-wal" "$d/saga.db-shm"
expect 1 "$B" --data "$d" recover
grep -q "no saga" "$TMP/err" || fail "recover does not say what is wrong"
[ ! -e "$d/saga.db" ] || fail "recover created a saga store"

say "recover with the saga store replaced by an empty one: exit 1"
d=$(fresh)
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key lost \
	--transient payment=1 --wait 0
d2=$(fresh)
expect 0 "$B" --data "$d2" recover   # nothing in flight, no store: 0, and none made
[ ! -e "$d2/saga.db" ] || fail "recover created a saga store"
expect 0 "$B" --data "$d2" order --customer CUST-0002 --item SKU-0003:1 --key x
rm -f "$d/saga.db" "$d/saga.db-wal" "$d/saga.db-shm"
cp "$d2/saga.db" "$d/saga.db"
expect 1 "$B" --data "$d" --json recover
grep -q '"services_consistent":[[:space:]]*false' "$TMP/out" || fail "recover --json"

say "recover with the saga store cut to 0 bytes under an order in flight: exit 1"
d=$(fresh)
expect 1 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key cut \
	--transient payment=1 --wait 0
rm -f "$d/saga.db-wal" "$d/saga.db-shm"
: >"$d/saga.db"
# Refused as damage by the store, or opened as empty and caught by the
# cross-check: never "resumed 0 sagas" and 0.
expect 1 "$B" --data "$d" recover
[ -s "$TMP/err" ] || fail "recover said nothing"

# ---------------------------------------------------------------------------
# 10. Several processes on one data directory: runs at once, and status,
#     report, check, recover and cancel while they go on.
# ---------------------------------------------------------------------------
# waitfor SECONDS CMD...: runs CMD (output in $TMP/out) every 0.1 s until it
# exits 0; fails after SECONDS.
waitfor() {
	limit=$(($1 * 10))
	shift
	n=0
	until "$@" >"$TMP/out" 2>"$TMP/err"; do
		n=$((n + 1))
		[ "$n" -lt "$limit" ] || fail "waited too long for: $*"
		sleep 0.1
	done
}

# Only saga-unfinished (sagas in flight) may be named by a check while runs
# go on: any other violation is one the runs did not make.
check_during() {
	set +e
	"$B" --data "$1" check >"$TMP/out" 2>"$TMP/err"
	rc=$?
	set -e
	sanitizer_clean
	case "$rc" in
	0) grep -q "^consistent: " "$TMP/out" || fail "check during the runs said nothing" ;;
	1) ;;
	*) fail "check during the runs exited $rc" ;;
	esac
	if grep '^violation ' "$TMP/out" | grep -v '^violation saga-unfinished: ' >"$TMP/bad"; then
		cat "$TMP/bad" >>"$TMP/err"
		fail "check during the runs named a violation other than an unfinished saga"
	fi
}

# waited PID NAME WANT: waits for the background process PID, whose output
# went to $TMP/NAME.out and .err (copied to $TMP/out and err), and fails
# unless it exited WANT.
waited() {
	set +e
	wait "$1"
	rc=$?
	set -e
	cp "$TMP/$2.out" "$TMP/out"
	cp "$TMP/$2.err" "$TMP/err"
	sanitizer_clean
	[ "$rc" -eq "$3" ] || fail "$2 exited $rc (wanted $3)"
}

say "three runs at once on one directory; report, status, check and recover during them"
d=$(fresh)
pids=""
for i in 1 2 3; do
	"$B" --data "$d" run --orders 40 --concurrency 4 --seed "$i" --latency '*=2' \
		--fail '*=0.05' --transient payment=0.1 >"$TMP/run$i.out" 2>"$TMP/run$i.err" &
	pids="$pids $!"
done
waitfor 30 "$B" --data "$d" status --id 1
during=0
for k in 1 2 3 4 5 6 7 8; do
	alive=0
	for p in $pids; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
	[ "$alive" -ge 2 ] || break
	during=$((during + 1))
	expect 0 "$B" --data "$d" report
	grep -q "^sagas: " "$TMP/out" || fail "report during the runs"
	expect 0 "$B" --data "$d" status --id 1
	grep -q "^saga: " "$TMP/out" || fail "status during the runs"
	check_during "$d"
	expect 0 "$B" --data "$d" recover --timeout 60
	sleep 0.1
done
[ "$during" -ge 1 ] || fail "the runs ended before anything could be asked during them"
echo "   asked $during times while two or three runs went on"
i=0
for p in $pids; do
	i=$((i + 1))
	waited "$p" "run$i" 0
	grep -q "^outcomes: .*STUCK 0, unfinished 0" "$TMP/out" || fail "run $i left sagas"
done
expect 0 "$B" --data "$d" recover
expect 0 "$B" --data "$d" check
grep -q "^consistent: 120 sagas" "$TMP/out" || fail "check did not see 120 sagas"

say "two runs started at once on a directory with no saga store yet"
for i in 1 2 3; do
	d=$(fresh)
	"$B" --data "$d" run --orders 10 --concurrency 2 --seed 1 >"$TMP/r1.out" 2>"$TMP/r1.err" &
	p1=$!
	"$B" --data "$d" run --orders 10 --concurrency 2 --seed 2 >"$TMP/r2.out" 2>"$TMP/r2.err" &
	p2=$!
	waited "$p1" r1 0
	waited "$p2" r2 0
	expect 0 "$B" --data "$d" check
	grep -q "^consistent: 20 sagas" "$TMP/out" || fail "check did not see 20 sagas"
done

say "one order key from three processes at once: one order, one saga"
d=$(fresh)
for i in 1 2 3; do
	"$B" --data "$d" order --customer CUST-0002 --item SKU-0003:1 --key same \
		>"$TMP/same$i.out" 2>"$TMP/same$i.err" &
	eval "same_$i=\$!"
done
for i in 1 2 3; do
	eval "waited \$same_$i same$i 0"
	grep -q "^order: *1 CONFIRMED" "$TMP/out" || fail "process $i did not answer order 1"
done
[ "$(report_count "$d" orders:)" = 1 ] || fail "$(report_count "$d" orders:) orders for one key"
[ "$(report_count "$d" sagas:)" = 1 ] || fail "$(report_count "$d" sagas:) sagas for one key"
expect 0 "$B" --data "$d" check

# A cancel from another process: the order's owner is busy in its payment
# step (each call sleeps 1.5 s, past the step's 1 s timeout, so the step
# retries and the order stays before its pivot for seconds). The cancel is
# written for the owner, which carries it out between two attempts.
# in_payment KEY: the order of KEY has started its payment step.
in_payment() {
	"$B" --data "$d" status --key "$1" >"$TMP/st" 2>/dev/null &&
		grep -q "attempt-start .*charge_payment/action" "$TMP/st"
}

say "cancel from another process reaches the process running the order (order)"
d=$(fresh)
"$B" --data "$d" order --customer CUST-0001 --item SKU-0001:1 --key remote \
	--timeout payment=1500 --wait 60 >"$TMP/owner.out" 2>"$TMP/owner.err" &
owner=$!
waitfor 30 in_payment remote
expect 0 "$B" --data "$d" cancel --key remote --wait 0
grep -q "^cancel of order remote requested; the process running the order carries it out" \
	"$TMP/out" || fail "cancel --wait 0 of an order run elsewhere does not say it was requested"
grep -q "^saga: .* RUNNING" "$TMP/out" || fail "the cancel claims more than a request"
waited "$owner" owner 1 # rolled back
grep -q "COMPENSATED (cancel)" "$TMP/out" || fail "the process running the order did not cancel it"
grep -q "CANCELLED" "$TMP/out" || fail "the order is not CANCELLED"
expect 0 "$B" --data "$d" status --key remote
grep -q "^cancel:  carried out (COMPENSATED)" "$TMP/out" || fail "status does not show the cancel"
expect 0 "$B" --data "$d" check

say "cancel from another process reaches the process running the order (run)"
d=$(fresh)
"$B" --data "$d" run --orders 1 --concurrency 1 --timeout payment=1500 \
	>"$TMP/owner.out" 2>"$TMP/owner.err" &
owner=$!
waitfor 30 "$B" --data "$d" status --id 1
key=$(sed -n 's/^saga: .*key \(run-[0-9a-f]*-[0-9]*\).*/\1/p' "$TMP/out")
[ -n "$key" ] || fail "no key in the status of order 1"
waitfor 30 in_payment "$key"
expect 0 "$B" --data "$d" cancel --id 1
grep -q "^order 1 cancelled by the process running it" "$TMP/out" ||
	fail "cancel of an order run elsewhere did not wait for its outcome"
grep -q "COMPENSATED (cancel)" "$TMP/out" || fail "cancel: not COMPENSATED (cancel)"
waited "$owner" owner 0
grep -q "cancel 1)" "$TMP/out" || fail "the run did not see its order cancelled"
expect 0 "$B" --data "$d" check

if command -v sqlite3 >/dev/null 2>&1; then
say "a run stopped past its lease (SIGSTOP): recover takes its orders over; continued, it ends"
# The lease is 10 s: `recover` waits for the stopped run's orders, takes
# them over once the lease has lapsed and finishes them. The run, continued,
# finds its lease lapsed and must still see each of its orders end (those
# finished elsewhere included) instead of waiting for them until --wait
# says nothing ends (exit 1).
d=$(fresh)
"$B" --data "$d" run --orders 60 --concurrency 4 --seed 1 --latency '*=5' --wait 30 \
	>"$TMP/stopped.out" 2>"$TMP/stopped.err" &
p1=$!
waitfor 30 "$B" --data "$d" status --id 2
# A process stopped inside a write transaction holds SQLite's one write
# lock: no other process writes until it goes on (SQLite has one writer;
# the lease cannot help). So the run is stopped between two transactions,
# of the saga store and of every service (a participant's file locked by
# the stopped run would hold up the steps recover runs): stopped, and
# continued again while any of them cannot be written.
writable() {
	for f in "$d"/*.db; do
		sqlite3 -cmd ".timeout 200" "$f" "BEGIN IMMEDIATE; ROLLBACK;" \
			>/dev/null 2>&1 || return 1
	done
}
tries=0
while :; do
	kill -STOP "$p1"
	writable && break
	kill -CONT "$p1"
	tries=$((tries + 1))
	[ "$tries" -lt 50 ] || fail "the run never paused outside a write transaction"
	sleep 0.0$((tries % 7 + 1))
done
"$B" --data "$d" recover --timeout 60 >"$TMP/peer.out" 2>"$TMP/peer.err" &
p2=$!
waited "$p2" peer 0
grep -q "^resumed [1-9]" "$TMP/out" || fail "recover found nothing of the stopped run"
kill -CONT "$p1"
waited "$p1" stopped 0
grep -q "^orders: *60 of 60 finished" "$TMP/out" || fail "the stopped run lost track of its orders"
grep -q "lease .* lapsed" "$TMP/err" || fail "the stopped run did not lose its lease"
expect 0 "$B" --data "$d" check
expect 0 "$B" --data "$d" report
grep -q "^owners: *[1-9]" "$TMP/out" || fail "no saga changed process"
fi

if command -v flock >/dev/null 2>&1; then
	say "a store held by an older libsaga (its exclusive lock on saga.db-lock): exit 1, named"
	d=$(fresh)
	expect 0 "$B" --data "$d" order --customer CUST-0001 --item SKU-0002:1 --key old
	# The holder is the sleep itself: its descriptor, its lock; gone when killed.
	(exec 9>>"$d/saga.db-lock" && flock -x 9 && exec sleep 30) &
	holder=$!
	waitfor 10 sh -c "! flock -n -s '$d/saga.db-lock' true"
	expect 1 "$B" --data "$d" status --key old
	grep -q "cannot be shared now: .*older libsaga" "$TMP/err" ||
		fail "the message does not name an older libsaga"
	if grep -q "one ecommerce command at a time" "$TMP/err"; then fail "the old message"; fi
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	expect 0 "$B" --data "$d" status --key old
fi

say "run --metrics: the counters of the run, and the store's gauges (report --metrics)"
d=$(fresh)
expect 0 "$B" --data "$d" run --orders 40 --concurrency 4 --seed 3 --fail payment=0.25 --metrics
m="$TMP/metrics"
cp "$TMP/out" "$m"
# The first number of the sample line that begins with $1.
sample() {
	grep -F "$1" "$m" | grep -F -- "$2" | sed -n 's/.* \([0-9][0-9.]*\)$/\1/p' | head -n 1
}
[ "$(sample 'saga_instances_started_total{definition="order"' '')" = 40 ] ||
	fail "started: $(sample 'saga_instances_started_total{' '')"
ok=$(sample 'saga_instances_ended_total{definition="order"' 'state="completed"')
comp=$(sample 'saga_instances_ended_total{definition="order"' 'state="compensated",reason="failure"')
[ $((ok + comp)) -eq 40 ] || fail "ended: $ok completed + $comp compensated"
[ "$comp" -gt 0 ] || fail "no failure injected"
[ "$(sample 'saga_store_instances{definition="order"' 'state="completed"')" = "$ok" ] ||
	fail "the store's count differs from the run's"
if command -v promtool >/dev/null 2>&1; then
	promtool check metrics <"$m" >"$TMP/out" 2>"$TMP/err" || fail "promtool check metrics"
fi
expect 0 "$B" --data "$d" report --metrics
grep -q "^saga_store_instances{definition=\"order\",version=\"1\",state=\"completed\"} $ok\$" \
	"$TMP/out" || fail "report --metrics"
if grep -q "^saga_attempts_total" "$TMP/out"; then fail "report --metrics has process metrics"; fi

echo "ok: $CASES cases"
