#!/usr/bin/env bash
# CI smoke run of the load tool: builds it, starts nats-server and the gateway on free loopback ports
# (bench/with-gateway.sh) and runs every scenario tiny. Fails when the tool reports an error (failed connects,
# protocol errors, timeouts, and with --strict lost events or closed fast clients). No figure is asserted:
# these are benchmark numbers, recorded in bench/README.md, not tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
cargo build -q -p telegraphy-bench --bin telegraphy-bench
if [ -z "${TELEGRAPHY_GATEWAY_BIN:-}" ]; then
  cargo build -q --bin telegraphy-gateway
  export TELEGRAPHY_GATEWAY_BIN=$ROOT/target/debug/telegraphy-gateway
fi
export BENCH=$ROOT/target/debug/telegraphy-bench
# rpc and publish: lift the per-connection RPC and client publish budgets (defaults 5/s and 10/s) for the bench.
export TELEGRAPHY_RPC__REQUESTS_PER_SECOND=1000 TELEGRAPHY_RPC__REQUEST_BURST=1000
export TELEGRAPHY_CLIENT_PUBLISH__REQUESTS_PER_SECOND=1000 TELEGRAPHY_CLIENT_PUBLISH__REQUEST_BURST=1000

bench/with-gateway.sh bash -c '
  set -euo pipefail
  run() { echo "+ telegraphy-bench $*"; "$BENCH" "$@" --timeout 60 --output table; }
  run idle --connections 10,20 --settle 0 --workers 2
  run idle --connections 10 --patterns per-object --settle 0
  run idle --presence --presence-channels 3 --connections 10 --settle 0 --hold 1 --requests 2
  run fanout --connections 20 --rate 50 --duration 2 --drain 5 --strict
  run fanout --connections 20 --patterns per-object --rate 50 --duration 2 --drain 5 --strict
  run fanout --connections 20 --rate 20 --duration 1 --drain 5 --find-max --max-steps 2 --strict
  run fanout --connections 21 --filter-groups 4 --rate 50 --duration 2 --drain 5 --strict
  run fanout --connections 20 --sse --rate 50 --duration 2 --drain 5 --strict
  run connect --connections 40 --concurrency 8 --workers 2
  run slow --connections 20 --rate 50 --duration 2 --drain 5 --strict
  run publish --publishers 2 --subscribers 10 --rate 20 --duration 2 --drain 5 --strict
  RPC_WORKER=echo BENCH_BIN=$BENCH bench/with-rpc-workers.sh "$BENCH" rpc --connections 2 --requests 20 --timeout 60 --output table
'
echo "bench smoke: ok"
