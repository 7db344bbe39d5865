#!/usr/bin/env bash
# Tests of deploy/: static checks of what cannot run here (Docker, Compose, Kubernetes; tests/lint.py), then
# the loopback cluster (local-cluster.sh: 3 NATS with the users of nats/auth.conf + 3 gateways + nginx) with
# real clients (tests/cluster_test.py): each NATS user's permissions, the Django package as user django, a
# kill -9 of a NATS node, and a stop that must leave no process behind. Bounded (about a minute).
# Ends with the line "deploy: N passed, M failed[, K skipped]"; exit 1 when something failed.
#
# Needs: the gateway binary (TELEGRAPHY_GATEWAY_BIN, default target/debug/telegraphy-gateway), nats-server
# (NATS_SERVER_BIN), the venv python with PyYAML, websockets, nats-py; optional tools are skipped when missing
# (nginx, docker-compose, shellcheck, hadolint, kubernetes-validate, kubectl).
set -uo pipefail
DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
PYTHON=${DEPLOY_TEST_PYTHON:-$ROOT/.tools/venv/bin/python}
export NATS_SERVER_BIN=${NATS_SERVER_BIN:-$ROOT/.tools/venv/bin/nats-server}
export TELEGRAPHY_GATEWAY_BIN=${TELEGRAPHY_GATEWAY_BIN:-$ROOT/target/debug/telegraphy-gateway}
# The venv's tools (hadolint, kubernetes-validate) first.
PATH=$(dirname "$PYTHON"):$PATH

passed=0 failed=0 skipped=0
RESULTS=$(mktemp)
LOCAL_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/telegraphy-deploy-test.XXXXXX")
export LOCAL_CLUSTER_DIR

cleanup() {
  if [ -f "$LOCAL_CLUSTER_DIR/cluster.env" ]; then "$DEPLOY/local-cluster.sh" stop >/dev/null 2>&1; fi
  rm -f "$RESULTS"
  if [ "$failed" -eq 0 ]; then rm -rf "$LOCAL_CLUSTER_DIR"; else echo "# logs kept in $LOCAL_CLUSTER_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# record: counts the TAP-like lines ("ok - ", "not ok - ", "skip - ") a step printed.
record() {
  local line
  while IFS= read -r line; do
    echo "$line"
    case $line in
      "ok - "*) passed=$((passed + 1)) ;;
      "not ok - "*) failed=$((failed + 1)) ;;
      "skip - "*) skipped=$((skipped + 1)) ;;
    esac
  done < "$RESULTS"
}

# step NAME CMD...: one check from a command's exit status (its output shown when it fails).
step() {
  local name=$1; shift
  local out
  if out=$(timeout 120 "$@" 2>&1); then
    echo "ok - $name" > "$RESULTS"
  else
    { echo "not ok - $name"; printf '%s\n' "$out" | tail -n 25 | sed 's/^/#   /'; } > "$RESULTS"
  fi
  record
}

# checks CMD...: a command that prints TAP-like lines itself.
checks() {
  timeout 240 "$@" > "$RESULTS" 2>&1
  local status=$?
  record
  if [ $status -ne 0 ] && ! grep -q '^not ok - ' "$RESULTS"; then
    echo "not ok - $* (exit $status)"
    failed=$((failed + 1))
  fi
}

# leftovers PID...: the processes of these process groups (local-cluster.sh starts each service in its own)
# that still run.
leftovers() {
  "$PYTHON" - "$@" <<'PY'
import os, sys
groups = set(sys.argv[1:])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    fields = stat.rsplit(")", 1)[1].split()
    if fields[2] in groups and fields[0] != "Z":
        print(pid, open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:120])
PY
}

echo "# deploy: static checks"
for bin in "$PYTHON" "$TELEGRAPHY_GATEWAY_BIN" "$NATS_SERVER_BIN"; do
  [ -x "$bin" ] || { echo "not ok - $bin is missing (scripts/bootstrap, cargo build --bin telegraphy-gateway)"; failed=$((failed + 1)); }
done
if [ $failed -eq 0 ]; then
  checks "$PYTHON" "$DEPLOY/tests/lint.py"

  echo "# deploy: loopback cluster ($LOCAL_CLUSTER_DIR)"
  step "local-cluster.sh start: 3 NATS + 3 gateways + LB ready within 40 s" "$DEPLOY/local-cluster.sh" start
  if grep -q '^ok' "$RESULTS"; then
    step "local-cluster.sh status reports everything up" "$DEPLOY/local-cluster.sh" status
    pids=$("$DEPLOY/local-cluster.sh" env | sed -n 's/^[A-Z0-9_]*_PID=//p' | tr '\n' ' ')
    checks "$PYTHON" "$DEPLOY/tests/cluster_test.py"
    step "local-cluster.sh stop" "$DEPLOY/local-cluster.sh" stop
    # shellcheck disable=SC2086 # one pid per word
    left=$(leftovers $pids)
    if [ -z "$pids" ]; then
      echo "not ok - no process left after stop: no pids recorded"; failed=$((failed + 1))
    elif [ -n "$left" ]; then
      echo "not ok - no process left after stop:"; printf '#   %s\n' "$left"; failed=$((failed + 1))
    else
      echo "ok - no process left after stop ($(echo "$pids" | wc -w) process groups checked)"; passed=$((passed + 1))
    fi
  fi
fi

echo
summary="deploy: $passed passed, $failed failed"
[ $skipped -gt 0 ] && summary+=", $skipped skipped"
echo "$summary"
[ $failed -eq 0 ]
