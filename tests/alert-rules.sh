#!/bin/sh
# The alert rules of docs/operations.md ("Alert rules"): the YAML block after
# the marker line is checked with `promtool check rules`, and with
# `promtool test rules` on series where each alert must fire, and only when
# it must (a stuck instance at once, overdue for 5 minutes, a breaker open
# for 10 minutes, store errors, the exporter gone). A variant whose `for` is
# dropped must fail the tests: they can tell. Skipped (77) without promtool.
#
#   tests/alert-rules.sh PATH/TO/docs/operations.md
#
# SPDX-License-Identifier: MIT
set -eu

DOC=${1:?usage: alert-rules.sh PATH/TO/operations.md}
command -v promtool >/dev/null 2>&1 || { echo "promtool is not installed: skipped"; exit 77; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/alert-rules.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

awk '/<!-- checked by tests\/alert-rules.sh -->/ { on = 1; next }
     on == 1 && /^```yaml$/ { on = 2; next }
     on == 2 && /^```$/ { exit }
     on == 2 { print }' "$DOC" >"$TMP/rules.yml"
grep -q "alert: SagaStuck" "$TMP/rules.yml" || { echo "FAIL: no rules found in $DOC"; exit 1; }

promtool check rules "$TMP/rules.yml"

cat >"$TMP/test.yml" <<'YAML'
rule_files:
  - rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'saga_store_stuck_instances{definition="order",version="1",reason="failure"}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'saga_store_overdue_instances'
        values: '0 0 3 3 3 3 3 3 3 3 3 3 3 3 3'
      - series: 'saga_breaker_state{breaker="payment",state="OPEN"}'
        values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1 1'
      - series: 'saga_store_errors_total{code="io"}'
        values: '0 0 0 0 0 0 0 0 0 0 0 0 0 0 0'
      - series: 'saga_store_errors_total{code="busy"}'
        values: '0 5 10 15 20 25 30 35 40 45 50 55 60 65 70'
    alert_rule_test:
      - eval_time: 1m
        alertname: SagaStuck
        exp_alerts: []
      - eval_time: 2m
        alertname: SagaStuck
        exp_alerts:
          - exp_labels: {severity: page, definition: order, version: "1", reason: failure}
            exp_annotations:
              summary: "1 STUCK order instance(s) (failure)"
              description: "An operator must retry, skip or resume them (docs/operations.md, STUCK instances)."
      - eval_time: 6m
        alertname: SagaOverdue
        exp_alerts: []
      - eval_time: 7m
        alertname: SagaOverdue
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations:
              summary: "3 saga instance(s) overdue for 5 minutes: no engine picks them up"
      - eval_time: 11m
        alertname: SagaBreakerOpen
        exp_alerts: []
      - eval_time: 12m
        alertname: SagaBreakerOpen
        exp_alerts:
          - exp_labels: {severity: ticket, breaker: payment}
            exp_annotations:
              summary: "Circuit breaker payment open for 10 minutes"
      - eval_time: 10m
        alertname: SagaStoreErrors
        exp_alerts: []
      - eval_time: 10m
        alertname: SagaStoreGaugesAbsent
        exp_alerts: []
  - interval: 1m
    input_series:
      - series: 'saga_store_errors_total{code="full"}'
        values: '0 0 1 1 1'
    alert_rule_test:
      - eval_time: 3m
        alertname: SagaStoreErrors
        exp_alerts:
          - exp_labels: {severity: ticket, code: full}
            exp_annotations:
              summary: "libsaga store errors (full) in the last 10 minutes"
      - eval_time: 9m
        alertname: SagaStoreGaugesAbsent
        exp_alerts: []
      - eval_time: 10m
        alertname: SagaStoreGaugesAbsent
        exp_alerts:
          - exp_labels: {severity: ticket}
            exp_annotations:
              summary: "No process exports the saga store gauges: the alerts above cannot fire"
YAML
(cd "$TMP" && promtool test rules test.yml)

# The tests can fail: without its `for`, SagaOverdue fires too early.
awk '/alert: SagaOverdue/ { skip = 1 } skip && /for: 5m/ { skip = 0; next } { print }' \
	"$TMP/rules.yml" >"$TMP/broken.yml"
! cmp -s "$TMP/rules.yml" "$TMP/broken.yml" || { echo "FAIL: the variant is the same"; exit 1; }
mv "$TMP/broken.yml" "$TMP/rules.yml"
if (cd "$TMP" && promtool test rules test.yml >/dev/null 2>&1); then
	echo "FAIL: the rule tests pass a SagaOverdue without its 'for'"
	exit 1
fi
echo "ok: alert rules checked and tested"
