#!/usr/bin/env bash
# sagactl end to end: every command on a store made by real runs
# (sagactl-fixture: COMPLETED, COMPENSATED and STUCK instances), in text and
# JSON (parsed with jq); every write verb records its actor and reason;
# bad input gives its exit code and a clear message and leaves the store
# byte-identical; a verb on an instance a live engine owns is queued and
# applied by that engine (sagactl-fixture serve), and --wait runs out while
# that engine is stopped (SIGSTOP); graph's DOT goes through Graphviz when
# it is installed.
# Usage: test-sagactl.sh SAGACTL FIXTURE
set -uo pipefail
SAGACTL=$1
FIXTURE=$2
command -v jq >/dev/null || { echo "jq is needed (Debian package jq)"; exit 77; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed"; exit 77; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/sagactl-test-XXXXXX")
serve_pid=
cleanup() {
	[ -n "$serve_pid" ] && kill -CONT "$serve_pid" 2>/dev/null && kill "$serve_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
S=$dir/store.db
failures=0

ctl() { "$SAGACTL" --store "$S" "$@"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# expect CODE PATTERN -- ARGS...: sagactl exits CODE and its stderr matches
# PATTERN (an extended regexp; "" = anything).
expect() {
	local code=$1 pattern=$2
	shift 3
	"$SAGACTL" "$@" >"$dir/out" 2>"$dir/err"
	local got=$?
	if [ "$got" != "$code" ]; then
		fail "sagactl $* exited $got, not $code: $(cat "$dir/err")"
	elif [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$dir/err"; then
		fail "sagactl $*: message '$(cat "$dir/err")' does not match '$pattern'"
	else
		ok "sagactl $* -> $code"
	fi
}

# check DESCRIPTION JQ-EXPR ARGS...: the JSON output of sagactl ARGS makes
# the jq expression true.
check() {
	local what=$1 expr=$2
	shift 2
	if ! ctl "$@" >"$dir/json" 2>"$dir/err"; then
		fail "$what: sagactl $* failed: $(cat "$dir/err")"
	elif [ "$(jq -e "$expr" <"$dir/json" 2>&1)" != true ]; then
		fail "$what: '$expr' is not true of $(head -c 2000 "$dir/json")"
	else
		ok "$what"
	fi
}

# same_store FILE: FILE is byte-identical to its copy FILE.before.
same_store() {
	if cmp -s "$1" "$1.before"; then ok "$1 unchanged"; else fail "$1 changed"; fi
}

"$FIXTURE" make "$S" || { echo "fixture failed"; exit 1; }

echo "== reading, text and JSON"
ctl count >"$dir/out" && grep -Eq '^STUCK +3$' "$dir/out" && grep -Eq '^COMPLETED +3$' "$dir/out" &&
	ok "count (text)" || fail "count (text): $(cat "$dir/out")"
check "count (json)" '.format == 1 and ([.counts[] | select(.state == "STUCK") | .count] == [3])' \
	--output json count
check "count by definition" \
	'[.counts[] | select(.definition == "order" and .version == 1 and .state == "STUCK")][0].count == 3' \
	--output json count --group-by definition
ctl list >"$dir/out" && head -1 "$dir/out" | grep -q '^ID  *STATE  *DEFINITION' &&
	[ "$(wc -l <"$dir/out")" = 8 ] && ok "list (text)" || fail "list (text): $(cat "$dir/out")"
check "list (json)" '.format == 1 and (.instances | length) == 7 and .next_after == null' \
	--output json list
check "list --state" '[.instances[].business_key] == ["stuck-comp-1","stuck-comp-2","stuck-ship-1"]' \
	--output json list --state STUCK
check "list --key" '(.instances | length) == 2' --output json list --key stuck-comp
check "list --error" '[.instances[].business_key] == ["stuck-ship-1"]' --output json list --error carrier
check "list --owner 0" '(.instances | length) == 7' --output json list --owner 0
check "list --definition N@V" '(.instances | length) == 7' --output json list --definition order@1
check "list --definition N@2" '(.instances | length) == 0' --output json list --definition order@2
check "list --since" '(.instances | length) == 7' --output json list --since 1h
check "list --until" '(.instances | length) == 0' --output json list --until 1h
check "list --limit (keyset)" '[.instances[].id] == [1,2] and .next_after == 2' \
	--output json list --limit 2
check "list --after" '[.instances[].id] == [3,4,5,6,7]' --output json list --after 2
ctl --output jsonl list >"$dir/out" && [ "$(wc -l <"$dir/out")" = 7 ] &&
	[ "$(jq -s 'all(.format == 1 and .kind == "instance")' <"$dir/out")" = true ] &&
	ok "list (jsonl)" || fail "list (jsonl): $(cat "$dir/out")"
check "show by key" '.instance.id == 5 and .instance.state == "STUCK" and
	.instance.step_name == "reserve" and .instance.phase == "compensation" and
	.instance.error == "warehouse unreachable" and .instance.owner == 0' --output json show stuck-comp-1
uid=$(ctl --output json show 5 | jq -r .instance.uid)
check "show by uid" '.instance.business_key == "stuck-comp-1"' --output json show "$uid"
check "show --context" '.context.decline == true and .context.comp_fails == true' \
	--output json show 5 --context
ctl show 5 >"$dir/out" && grep -q '^state *STUCK' "$dir/out" && grep -q '^verbs .*retry' "$dir/out" &&
	ok "show (text)" || fail "show (text): $(cat "$dir/out")"
check "history (json)" '.events[0].type == "created" and .events[-1].state == "STUCK" and
	([.events[].seq] | . == sort)' --output json history 5
ctl --output jsonl history 5 >"$dir/out" &&
	[ "$(jq -s 'length > 5 and all(.kind == "event")' <"$dir/out")" = true ] &&
	ok "history (jsonl)" || fail "history (jsonl)"
ctl history 5 >"$dir/out" && grep -q 'attempt-end .*RETRY  warehouse unreachable' "$dir/out" &&
	ok "history (text)" || fail "history (text): $(cat "$dir/out")"
ctl stuck >"$dir/out" && grep -q 'stuck-ship-1 .*carrier down' "$dir/out" &&
	grep -q 'compensation failed.*retry, skip, resume' "$dir/out" && ok "stuck (text)" || fail "stuck (text): $(cat "$dir/out")"
check "stuck (json)" '(.instances | length) == 3 and all(.instances[]; .cause != "" and
	(.verbs | test("retry")))' --output json stuck
check "stuck: resume offered for a failed compensation, not a failed forward step" \
	'[.instances[] | .verbs | test("resume")] == [true, true, false]' --output json stuck
check "definitions" '.definitions[0].definition == "order" and
	(.definitions[0].snapshot.steps | map(.kind)) == ["compensatable","pivot","retriable"] and
	.definitions[0].instances.STUCK == 3 and .definitions[0].served == false' --output json definitions
ctl definitions >"$dir/out" && grep -q 'reserve:compensatable charge:pivot ship:retriable' "$dir/out" &&
	ok "definitions (text)" || fail "definitions (text)"
check "owners --all" '(.owners | length) >= 1 and all(.owners[]; .state == "retired")' \
	--output json owners --all
ctl owners >"$dir/out" && grep -q 'no live owner' "$dir/out" && ok "owners (text)" || fail "owners"
check "check (json)" '.problems == 0 and .instances == 7' --output json check
expect 0 "" -- --store "$S" check
for c in list count show history stuck definitions owners graph metrics check retry skip resume cancel purge batch; do
	"$SAGACTL" "$c" --help >"$dir/out" 2>&1 && grep -q "^sagactl $c" "$dir/out" ||
		fail "$c --help"
done
ok "every command's --help"

echo "== graph, from the store alone"
ctl graph order >"$dir/out" && head -1 "$dir/out" | grep -q '^digraph' && ok "graph (dot)" ||
	fail "graph: $(head -3 "$dir/out")"
if command -v dot >/dev/null; then
	dot -Tsvg "$dir/out" >/dev/null && ok "dot -Tsvg takes the definition" || fail "dot refused it"
	ctl graph --instance stuck-comp-1 | dot -Tsvg >/dev/null &&
		ok "dot -Tsvg takes a STUCK instance's path" || fail "dot refused the path"
fi
ctl graph --instance 5 --format mermaid | head -1 | grep -q '^flowchart LR' &&
	ok "graph (mermaid)" || fail "graph (mermaid)"
[ "$(ctl graph --instance stuck-comp-1 --format json | jq '.format_version == 1 and .instance != null')" = true ] &&
	ok "graph (json)" || fail "graph (json)"
expect 3 "no definition nope" -- --store "$S" graph nope
expect 3 "no definition order@2" -- --store "$S" graph order@2
expect 2 "--format is dot, mermaid or json" -- --store "$S" graph order --format svg
expect 2 "a definition .* or --instance" -- --store "$S" graph

echo "== check catches a damaged store"
for damage in "UPDATE instances SET owner = 99 WHERE id = 1|has ended \\(COMPLETED\\) but owner 99" \
	"DELETE FROM history WHERE instance = 2 AND seq = 1|does not begin with CREATED" \
	"UPDATE instances SET state = 5 WHERE id = 3|is STUCK but its history last recorded COMPLETED" \
	"DELETE FROM definitions|definition order@1 is not in the store"; do
	cp "$S" "$dir/bad.db"
	sqlite3 "$dir/bad.db" "${damage%%|*}"
	"$SAGACTL" --store "$dir/bad.db" check >"$dir/out" 2>&1
	code=$?
	if [ "$code" = 1 ] && grep -Eq "${damage##*|}" "$dir/out"; then
		ok "check finds: ${damage##*|}"
	else
		fail "check on '${damage%%|*}' exited $code: $(cat "$dir/out")"
	fi
	rm -f "$dir/bad.db" "$dir/bad.db-lock"
done

echo "== bad input: exit codes, messages, the store unchanged"
cp "$S" "$S.before"
expect 3 "no instance 999" -- --store "$S" show 999
expect 3 "no instance with uid or key 'nokey'" -- --store "$S" history nokey
expect 4 "instance 1 is not STUCK \\(COMPLETED\\)" -- --store "$S" retry 1 --reason x
expect 4 "has ended \\(STUCK\\)" -- --store "$S" cancel stuck-ship-1 --reason x
expect 4 "instance 4 is not STUCK \\(COMPENSATED\\)" -- --store "$S" skip declined-1 --reason x
expect 2 "--reason is required" -- --store "$S" retry 5
expect 2 "--reason is required" -- --store "$S" purge --older-than 1d
expect 2 "unknown option '--bogus'" -- --store "$S" list --bogus
expect 2 "not a state" -- --store "$S" list --state NOPE
expect 2 "unknown filter 'colour'" -- --store "$S" batch retry --filter colour=red --reason x --dry-run
expect 2 "--dry-run .* or --yes" -- --store "$S" batch retry --filter state=STUCK --reason x
expect 2 "unknown command 'frobnicate'" -- --store "$S" frobnicate
expect 2 "no store" -- list
expect 0 "" -- --store "$S" batch retry --filter state=STUCK,key=stuck-comp --reason x --dry-run
grep -q "retry: 2 instances match" "$dir/out" && grep -q "would retry 5" "$dir/out" &&
	ok "batch --dry-run lists" || fail "batch --dry-run: $(cat "$dir/out")"
same_store "$S"
printf 'not a store, only text long enough to be taken for one at first sight %.0s' $(seq 20) \
	>"$dir/text.db"
cp "$dir/text.db" "$dir/text.db.before"
expect 6 "not a SQLite database|not a libsaga store|damaged" -- --store "$dir/text.db" list
same_store "$dir/text.db"
sqlite3 "$dir/other.db" "CREATE TABLE t(x); INSERT INTO t VALUES (1);"
cp "$dir/other.db" "$dir/other.db.before"
expect 6 "is not a libsaga store" -- --store "$dir/other.db" count
same_store "$dir/other.db"
cp "$S" "$dir/newer.db"
sqlite3 "$dir/newer.db" "PRAGMA user_version = 99"
cp "$dir/newer.db" "$dir/newer.db.before"
expect 6 "schema version 99 is newer than this libsaga" -- --store "$dir/newer.db" stuck
same_store "$dir/newer.db"
expect 3 "No such file" -- --store "$dir/missing.db" list
[ ! -e "$dir/missing.db" ] && ok "no store made for a missing path" || fail "a store was made"

echo "== writes record the actor and the reason"
expect 0 "" -- --store "$S" retry stuck-comp-1 --reason "warehouse back" --actor alice
grep -q "retry 5: applied" "$dir/out" || fail "retry: $(cat "$dir/out")"
check "retry recorded" '[.events[] | select(.type == "operator")][-1] |
	(.request.actor == "alice" and .request.reason == "warehouse back" and
	(.detail | startswith("operator: retry")))' --output json history 5
check "retried: back in the pool, due" '.instance.state == "COMPENSATING" and .instance.owner == 0
	and .instance.due != null' --output json show 5
expect 0 "" -- --store "$S" batch resume --filter key=stuck-comp-2 --reason "card fixed" --actor bob --yes
grep -q "1 done, 0 failed" "$dir/out" || fail "batch --yes: $(cat "$dir/out")"
check "resume recorded (batch)" '[.events[] | select(.type == "operator")][-1].request |
	(.actor == "bob" and .reason == "card fixed")' --output json history 6
check "skip (json)" '.result.status == "applied" and .result.actor == "dave"' \
	--output json skip stuck-ship-1 --reason "shipped by hand" --actor dave
check "skip recorded" '[.events[] | select(.type == "operator")][-1] |
	(.request.actor == "dave" and (.detail | startswith("operator: skip")))' --output json history 7
check "nothing STUCK now" '(.instances | length) == 0' --output json stuck
check "check after the writes" '.problems == 0' --output json check

echo "== an engine runs what was retried; a verb on its own instance goes through it"
coproc SERVE { exec "$FIXTURE" serve "$S"; }
serve_pid=$SERVE_PID
read -r -t 20 ready live <&"${SERVE[0]}" || fail "the engine did not start"
[ "$ready" = ready ] || fail "engine: $ready"
for id in 5 6 7; do
	timeout 30 "$SAGACTL" --store "$S" history "$id" --follow --interval 50ms >"$dir/out" ||
		fail "history --follow $id"
done
grep -q "compensated\|completed" "$dir/out" && ok "history --follow ends with the instance" ||
	fail "history --follow: $(cat "$dir/out")"
check "the engine ran them" '[.instances[] | select(.id >= 5 and .id <= 7) | .state] ==
	["COMPENSATED","COMPENSATED","COMPLETED"]' --output json list
check "owners: the live engine" '[.owners[] | select(.state == "live")] | length == 1 and
	.[0].serves == "order@1" and .[0].instances == 1' --output json owners
check "live-1 is the engine's" ".instance.owner > 0 and .instance.pending == true" --output json show "$live"
kill -STOP "$serve_pid"
expect 5 "not applied yet" -- --store "$S" cancel live-1 --reason "customer asked" --actor carol --wait 300ms
check "queued, not applied while its owner is stopped" \
	'[.events[] | select(.type == "operator")] | length == 0' --output json history "$live"
kill -CONT "$serve_pid"
timeout 30 "$SAGACTL" --store "$S" history "$live" --follow --interval 50ms >/dev/null ||
	fail "live-1 did not end"
check "the owner applied the cancel" '([.events[] | select(.type == "operator")][0].request |
	.actor == "carol" and .reason == "customer asked") and .events[-1].state == "COMPENSATED"' \
	--output json history "$live"
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null
serve_pid=

echo "== purge"
expect 0 "" -- --store "$S" purge --older-than 0s --state completed --reason "retention" --actor erin
grep -q "purged 4 instances" "$dir/out" || fail "purge: $(cat "$dir/out")"
check "purged" '[.counts[] | select(.state == "COMPLETED") | .count] == [0]' --output json count
# both states: the four COMPENSATED instances
check "purge (json)" '.purged == 4 and .actor == "erin"' --output json purge --older-than 0s \
	--reason "retention" --actor erin
check "check after purge" '.problems == 0' --output json check

echo "$failures failures"
[ "$failures" = 0 ]
