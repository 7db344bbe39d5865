#!/usr/bin/env bash
# Runs a command against a fresh nats-server (JetStream, temp store) and telegraphy-gateway on free loopback
# ports, then stops both. The command gets BENCH_URL, BENCH_NATS, BENCH_GATEWAY_PID, BENCH_NATS_PID,
# BENCH_NATS_MONITOR (nats-server's HTTP monitoring address; all read by telegraphy-bench) and
# TELEGRAPHY_AUTH__SECRET (the gateway's secret, needed to mint tokens).
#
#   bench/with-gateway.sh target/release/telegraphy-bench fanout --connections 1000
#
# Environment:
#   TELEGRAPHY_GATEWAY_BIN  gateway binary (default target/release/telegraphy-gateway)
#   NATS_SERVER_BIN         nats-server >= 2.11 (default .tools/venv/bin/nats-server)
#   TELEGRAPHY_*            any gateway setting (e.g. TELEGRAPHY_HISTORY__ENABLED=false,
#                           TELEGRAPHY_AUTH__SINGLE_USE=false); this script sets NATS__URL and HTTP__BIND, and
#                           LIMITS__MAX_CONNECTIONS=19000 unless given (the default 10000 is below the 15k run)
#   GATEWAY_WRAP            command prefix for the gateway, e.g. "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
#                           (BENCH_GATEWAY_PID is then the wrapper's pid: right for valgrind, which runs the program
#                           in its own process; for heaptrack, find the gateway with pgrep -P)
#   BENCH_BARE              1: also start `telegraphy-bench bare-server` (the baseline forwarder, BENCH_BARE_BIN or
#                           target/release/telegraphy-bench) on the same nats-server; exports BENCH_BARE_URL and
#                           BENCH_BARE_PID (run `fanout --url "$BENCH_BARE_URL" --gateway-pid "$BENCH_BARE_PID"`)
#   BENCH_LOGS              directory to keep nats.log and gateway.log in (default: a temp dir, removed)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NATS_SERVER_BIN=${NATS_SERVER_BIN:-$ROOT/.tools/venv/bin/nats-server}
GATEWAY_BIN=${TELEGRAPHY_GATEWAY_BIN:-$ROOT/target/release/telegraphy-gateway}
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
[ -x "$NATS_SERVER_BIN" ] || { echo "$0: nats-server not found at $NATS_SERVER_BIN (set NATS_SERVER_BIN)" >&2; exit 2; }
[ -x "$GATEWAY_BIN" ] || { echo "$0: gateway not found at $GATEWAY_BIN (cargo build --release --bin telegraphy-gateway)" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
logs=${BENCH_LOGS:-$tmp}
mkdir -p "$logs"
nats_pid=
gateway_pid=
bare_pid=
cleanup() {
  local status=$?
  set +e
  # SIGTERM to the gateway's process group (the gateway and any GATEWAY_WRAP around it): it drains, bounded by
  # its shutdown_timeout; then nats-server stops.
  if [ -n "$bare_pid" ]; then
    kill -TERM "$bare_pid" 2>/dev/null
    wait "$bare_pid" 2>/dev/null
  fi
  if [ -n "$gateway_pid" ]; then
    kill -TERM -- "-$gateway_pid" 2>/dev/null
    wait "$gateway_pid" 2>/dev/null
  fi
  if [ -n "$nats_pid" ]; then
    kill -TERM "$nats_pid" 2>/dev/null
    wait "$nats_pid" 2>/dev/null
  fi
  if [ "$status" -ne 0 ] && [ -f "$logs/gateway.log" ]; then
    echo "--- last lines of the gateway log ---" >&2
    tail -n 20 "$logs/gateway.log" >&2
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most $3 seconds) for a line matching the extended regex $2 in file $1; prints the match.
wait_for() {
  local file=$1 regex=$2 limit=$3 i
  for ((i = 0; i < limit * 20; i++)); do
    if grep -oE "$regex" "$file" 2>/dev/null | head -n 1 | grep .; then
      return 0
    fi
    sleep 0.05
  done
  echo "$0: timed out waiting for /$regex/ in $file" >&2
  tail -n 20 "$file" >&2
  return 1
}

"$NATS_SERVER_BIN" -a 127.0.0.1 -p -1 -m -1 -js -sd "$tmp/jetstream" >"$logs/nats.log" 2>&1 &
nats_pid=$!
nats_addr=$(wait_for "$logs/nats.log" 'client connections on 127\.0\.0\.1:[0-9]+' 10 | grep -oE '[0-9.]+:[0-9]+$')
nats_monitor=$(wait_for "$logs/nats.log" 'http monitor on 127\.0\.0\.1:[0-9]+' 10 | grep -oE '[0-9.]+:[0-9]+$')

export TELEGRAPHY_AUTH__SECRET=${TELEGRAPHY_AUTH__SECRET:-bench-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')}
export TELEGRAPHY_NATS__URL=nats://$nats_addr
export TELEGRAPHY_HTTP__BIND=127.0.0.1:0
export TELEGRAPHY_LIMITS__MAX_CONNECTIONS=${TELEGRAPHY_LIMITS__MAX_CONNECTIONS:-19000}
# Every load client connects from 127.0.0.1: lift the per-address budget of connections waiting for `connect`
# (issue 20, default 32) and size the node's to the load. Builds from before issue 20 reject these settings: run
# them with BENCH_PRE_ISSUE_20=1.
if [ "${BENCH_PRE_ISSUE_20:-0}" != 1 ]; then
  export TELEGRAPHY_LIMITS__MAX_PENDING_CONNECTIONS_PER_IP=${TELEGRAPHY_LIMITS__MAX_PENDING_CONNECTIONS_PER_IP:-0}
  export TELEGRAPHY_LIMITS__MAX_PENDING_CONNECTIONS=${TELEGRAPHY_LIMITS__MAX_PENDING_CONNECTIONS:-5000}
fi
# shellcheck disable=SC2086 # GATEWAY_WRAP is a command prefix
# setsid: the gateway leads its own process group, so cleanup also reaches a process under GATEWAY_WRAP.
setsid ${GATEWAY_WRAP:-} "$GATEWAY_BIN" >"$logs/gateway.log" 2>&1 &
gateway_pid=$!
gateway_addr=$(wait_for "$logs/gateway.log" 'listening on http://[0-9.]+:[0-9]+' 60 | sed 's|.*http://||')

export BENCH_URL=ws://$gateway_addr/ws
export BENCH_NATS=$TELEGRAPHY_NATS__URL
export BENCH_GATEWAY_PID=$gateway_pid
export BENCH_NATS_PID=$nats_pid
export BENCH_NATS_MONITOR=$nats_monitor
if [ "${BENCH_BARE:-}" = 1 ]; then
  # setsid like the gateway: with the kernel's autogroup scheduling (sched_autogroup_enabled) each session gets
  # a fair share of the CPU, so both servers must be in a session of their own, not in the load client's.
  setsid "${BENCH_BARE_BIN:-$ROOT/target/release/telegraphy-bench}" bare-server --nats "$BENCH_NATS" >"$logs/bare.log" 2>&1 &
  bare_pid=$!
  BENCH_BARE_URL=$(wait_for "$logs/bare.log" 'ws://[0-9.]+:[0-9]+/ws' 30)
  export BENCH_BARE_URL BENCH_BARE_PID=$bare_pid
fi
"$@"
