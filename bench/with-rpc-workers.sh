#!/usr/bin/env bash
# Runs a command with RPC workers serving `test.echo` on $BENCH_NATS (run it inside bench/with-gateway.sh), then
# stops them. The command gets BENCH_WORKER_PIDS (comma-separated; `telegraphy-bench rpc` reports their CPU).
#
#   bench/with-gateway.sh bench/with-rpc-workers.sh target/release/telegraphy-bench rpc --connections 16
#
# Environment:
#   RPC_WORKER   python (default): `manage.py telegraphy_worker --method test.echo --no-lifecycle` of
#                python/tests/rpcapp (DJANGO_SETTINGS_MODULE=tests.rpc_settings) on a fresh SQLite database
#                whose user 1 the handler loads for each request;
#                echo: `telegraphy-bench echo-worker` (raw NATS responder, the baseline: no Python, no database)
#   RPC_WORKERS  how many worker processes join the queue group (default 1)
#   RPC_WORKER_ARGS  extra arguments for each worker (e.g. "--concurrency 32" for the Python worker)
#   PYTHON       interpreter with Django and nats-py (default .tools/venv/bin/python); the worker's code is
#                python/ of this tree (PYTHONPATH)
#   BENCH_BIN    telegraphy-bench for RPC_WORKER=echo (default target/release/telegraphy-bench)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${BENCH_NATS:?run inside bench/with-gateway.sh (BENCH_NATS)}"
kind=${RPC_WORKER:-python}
count=${RPC_WORKERS:-1}
PYTHON=${PYTHON:-$ROOT/.tools/venv/bin/python}
tmp=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [ "$status" -ne 0 ]; then
    for log in "$tmp"/worker-*.log; do [ -f "$log" ] && { echo "--- $log ---" >&2; tail -n 20 "$log" >&2; }; done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case $kind in
  python)
    export DJANGO_SETTINGS_MODULE=tests.rpc_settings PYTHONPATH=$ROOT/python TEST_TELEGRAPHY_DB=$tmp/db.sqlite3 \
      TEST_TELEGRAPHY_PREFIX=telegraphy TEST_TELEGRAPHY_NATS_URL=$BENCH_NATS
    (cd "$ROOT/python" && "$PYTHON" -m django migrate --run-syncdb -v 0 &&
      "$PYTHON" -m django shell -v 0 -c "from django.contrib.auth.models import User; User.objects.create_user('bench')")
    ready='telegraphy worker ready'
    start() {
      # shellcheck disable=SC2086 # RPC_WORKER_ARGS is a list of arguments
      (cd "$ROOT/python" && exec setsid "$PYTHON" -m django telegraphy_worker --method test.echo --no-lifecycle \
        ${RPC_WORKER_ARGS:-} >"$1" 2>&1) &
    }
    ;;
  echo)
    BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/telegraphy-bench}
    ready='echo-worker ready'
    start() {
      # shellcheck disable=SC2086
      setsid "$BENCH_BIN" echo-worker --nats "$BENCH_NATS" ${RPC_WORKER_ARGS:-} >"$1" 2>&1 &
    }
    ;;
  *) echo "$0: RPC_WORKER must be python or echo" >&2; exit 2 ;;
esac

# setsid: each worker in a session of its own (autogroup scheduling, as for the gateway in with-gateway.sh).
for ((i = 0; i < count; i++)); do
  start "$tmp/worker-$i.log"
  pids+=("$!")
done
for ((i = 0; i < count; i++)); do
  for ((t = 0; t < 600; t++)); do
    grep -q "$ready" "$tmp/worker-$i.log" 2>/dev/null && break
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "$0: worker $i exited" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "$ready" "$tmp/worker-$i.log" || { echo "$0: worker $i not ready after 60 s" >&2; exit 1; }
done
BENCH_WORKER_PIDS=$(IFS=,; echo "${pids[*]}")
export BENCH_WORKER_PIDS
"$@"
