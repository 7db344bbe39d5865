#!/usr/bin/env bash
# The docker-compose topology as plain processes on loopback: a 3-node NATS JetStream cluster
# (deploy/nats/nats-N.conf), 3 gateways gw-1..gw-3 (deploy/gateway/cluster.toml: history R3) and, when nginx
# is installed, the load balancer (deploy/nginx.conf). No containers, no root needed.
#
#   deploy/local-cluster.sh start     start everything; returns once every gateway's /readyz is 200 and the
#                                     history stream has its 3 replicas (bounded: LOCAL_CLUSTER_TIMEOUT)
#   deploy/local-cluster.sh stop      SIGTERM (gateways drain), then SIGKILL what is left; no process remains
#   deploy/local-cluster.sh status    one line per process; exit 0 when all run and are ready
#   deploy/local-cluster.sh env       shell assignments for scripts: eval "$(deploy/local-cluster.sh env)"
#   deploy/local-cluster.sh nginx-conf DIR P1 P2 P3 LB   print deploy/nginx.conf rewritten for loopback
#   deploy/local-cluster.sh token ARGS...   mint a connect token with gw-1's settings, e.g.
#                                     token --user alice --allow 'chat.>'
#   deploy/local-cluster.sh nats-url USER [N]   the 3 NATS URLs (node N first) with USER's credentials
#                                     (admin, gateway, django, publisher: deploy/nats/auth.conf), e.g. for
#                                     TELEGRAPHY_NATS_URL of a Django app: nats-url django
#
# Environment (all optional):
#   LOCAL_CLUSTER_DIR        run dir: pids, logs, generated configs, NATS stores (default deploy/.run)
#   NATS_SERVER_BIN          nats-server >= 2.11 (default .tools/venv/bin/nats-server)
#   TELEGRAPHY_GATEWAY_BIN   gateway binary (default target/debug/telegraphy-gateway)
#   LOCAL_CLUSTER_NATS_PORTS, LOCAL_CLUSTER_ROUTE_PORTS, LOCAL_CLUSTER_MONITOR_PORTS, LOCAL_CLUSTER_GATEWAY_PORTS,
#   LOCAL_CLUSTER_ADMIN_PORTS  three comma-separated ports each (default: free ports chosen by the OS); the
#                            admin ports are the gateways' internal listener (http.admin_bind: /metrics, /api/v1)
#   LOCAL_CLUSTER_LB         auto (default: if nginx is found) | 1 | 0;  LOCAL_CLUSTER_LB_PORT (default free)
#   LOCAL_CLUSTER_DEMO_PORT  where the LB sends "/" (default 8000: `manage.py runserver`)
#   LOCAL_CLUSTER_TIMEOUT    seconds `start` waits for readiness (default 40)
#   TELEGRAPHY_AUTH__SECRET  shared secret (default: a random one, kept in the run dir with mode 600)
#   NATS_ADMIN_PASSWORD, NATS_GATEWAY_PASSWORD, NATS_DJANGO_PASSWORD, NATS_PUBLISHER_PASSWORD
#                            the NATS users' passwords (default: random ones, in the run dir with mode 600)
#   Any other TELEGRAPHY_<SECTION>__<KEY> reaches all three gateways (e.g. TELEGRAPHY_AUTH__ANONYMOUS_ALLOW).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
RUN=${LOCAL_CLUSTER_DIR:-$DEPLOY/.run}
NATS_SERVER_BIN=${NATS_SERVER_BIN:-$ROOT/.tools/venv/bin/nats-server}
GATEWAY_BIN=${TELEGRAPHY_GATEWAY_BIN:-$ROOT/target/debug/telegraphy-gateway}
GATEWAY_CONFIG=$DEPLOY/gateway/cluster.toml
TIMEOUT=${LOCAL_CLUSTER_TIMEOUT:-40}
NODES=(1 2 3)
NATS_USERS=(admin gateway django publisher)  # deploy/nats/auth.conf

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*" >&2; }

# --- processes -------------------------------------------------------------------------------------------
# Each started process is recorded as "<pid> <start time>" in $RUN/<name>.pid; the start time (field 22 of
# /proc/PID/stat) makes sure a recycled pid is never signalled.

proc_start_time() { # pid -> start time, or nothing
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }   # fields after "(comm) "; field 3 (state) is now the first
  # shellcheck disable=SC2086
  set -- $stat
  [ "$1" = Z ] && return 0  # exited, not yet reaped: gone for our purposes
  echo "${20}"
}

# alive NAME: succeeds when the recorded process still runs.
alive() {
  local f=$RUN/$1.pid pid start
  [ -f "$f" ] || return 1
  read -r pid start < "$f" || return 1
  [ -n "$pid" ] && [ "$(proc_start_time "$pid")" = "$start" ]
}

pid_of() { local pid _; read -r pid _ < "$RUN/$1.pid"; echo "$pid"; }

# group_members PGID: live (non-zombie) processes of a process group, e.g. nginx's workers. A pid is not
# reused while it names a process group that still has members, so these are ours.
group_members() {
  local pgid=$1 f stat
  for f in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null < "$f" || continue
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat  # state ppid pgrp ...
    [ "$3" = "$pgid" ] && [ "$1" != Z ] && echo "${f//[^0-9]/}"
  done
  return 0
}

# running NAME: the process, or anything left in its process group, still runs.
running() {
  alive "$1" && return 0
  [ -f "$RUN/$1.pid" ] || return 1
  [ -n "$(group_members "$(pid_of "$1")")" ]
}

# launch NAME CMD...: runs CMD (an executable, or a function that execs one) in the background in its own
# process group (job control on), output to $RUN/NAME.log, and records its pid (= the group id).
launch() {
  local name=$1; shift
  set -m
  if declare -F "$1" >/dev/null; then
    ( "$@" ) < /dev/null >> "$RUN/$name.log" 2>&1 &
  else
    ( exec "$@" ) < /dev/null >> "$RUN/$name.log" 2>&1 &
  fi
  local pid=$!
  set +m
  record "$name" "$pid"
}

record() { # NAME PID
  local name=$1 pid=$2 start=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do  # the /proc entry exists from the fork on; bounded anyway
    start=$(proc_start_time "$pid")
    [ -n "$start" ] && break
    sleep 0.01
  done
  [ -n "$start" ] || die "$name exited at once; see $RUN/$name.log"
  echo "$pid $start" > "$RUN/$name.pid"
}

# signal_and_wait SECONDS SIGNAL NAME...: sends SIGNAL to the named processes (SIGKILL: to their whole process
# groups), then waits, polling /proc since they are not our children, until they and their groups are gone
# or SECONDS pass.
signal_and_wait() {
  local seconds=$1 sig=$2; shift 2
  local name deadline
  for name in "$@"; do
    running "$name" || continue
    if [ "$sig" = KILL ]; then
      kill -KILL -- "-$(pid_of "$name")" 2>/dev/null || true
    elif alive "$name"; then
      kill "-$sig" "$(pid_of "$name")" 2>/dev/null || true
    fi
  done
  deadline=$((SECONDS + seconds))
  for name in "$@"; do
    while running "$name" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  done
}

all_names() {
  local i
  for i in "${NODES[@]}"; do echo "gw-$i"; done
  [ -f "$RUN/lb.pid" ] && echo lb
  for i in "${NODES[@]}"; do echo "nats-$i"; done
}

any_running() {
  local name
  for name in $(all_names); do running "$name" && return 0; done
  return 1
}

# --- ports and settings ----------------------------------------------------------------------------------

# random_hex: 32 random bytes as 64 hex characters (what `openssl rand -hex 32` prints).
random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# write_nats_passwords: $RUN/nats-passwords (mode 600), one NATS_<USER>_PASSWORD=... line per user of
# deploy/nats/auth.conf, from the environment or random. They go into nats:// URLs: URL-safe characters only.
write_nats_passwords() {
  local user var value
  (umask 077; : > "$RUN/nats-passwords")
  for user in "${NATS_USERS[@]}"; do
    var=NATS_${user^^}_PASSWORD
    value=${!var:-$(random_hex)}
    [[ $value =~ ^[A-Za-z0-9._~-]+$ ]] || die "$var: use URL-safe characters only (openssl rand -hex 32)"
    echo "$var=$value" >> "$RUN/nats-passwords"
  done
}

# nats_url USER: the three NATS nodes' client URLs with USER's credentials (own node first when N is given).
nats_url() {
  local user=$1 first=${2:-1} j urls="" password var=NATS_${1^^}_PASSWORD
  password=$(sed -n "s/^$var=//p" "$RUN/nats-passwords")
  [ -n "$password" ] || die "no NATS user $user (users: ${NATS_USERS[*]})"
  for j in "$first" $(printf '%s\n' "${NODES[@]}" | grep -vx "$first"); do
    local nats_port=NATS_${j}_PORT
    urls+="${urls:+,}nats://$user:$password@127.0.0.1:${!nats_port}"
  done
  echo "$urls"
}

# free_ports N: N distinct free loopback ports (held open together while choosing, so no duplicates).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# ports_from VAR DEFAULT...: the three ports in $VAR (comma-separated) or the defaults.
ports_from() {
  local var=$1; shift
  if [ -n "${!var:-}" ]; then
    local list=${!var}
    # shellcheck disable=SC2086
    set -- ${list//,/ }
    [ $# -eq 3 ] || die "$var must list 3 ports"
  fi
  echo "$1 $2 $3"
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

load_env() {
  [ -f "$RUN/cluster.env" ] || die "not started (no $RUN/cluster.env)"
  # shellcheck disable=SC1091
  . "$RUN/cluster.env"
}

# gateway_env N: the environment of gateway gw-N (NATS user "gateway", its own node first in the list).
gateway_env() {
  local i=$1 gw_port=GW_${1}_PORT port
  port=${!gw_port}
  echo "TELEGRAPHY_NODE__NAME=gw-$i"
  echo "TELEGRAPHY_HTTP__BIND=127.0.0.1:$port"
  local gw_admin=GW_${1}_ADMIN_PORT
  echo "TELEGRAPHY_HTTP__ADMIN_BIND=127.0.0.1:${!gw_admin}"
  echo "TELEGRAPHY_NATS__URL=$(nats_url gateway "$i")"
  echo "TELEGRAPHY_AUTH__SECRET=$(cat "$RUN/secret")"
}

# run_gateway N ARGS...: execs the gateway binary with gw-N's environment and deploy/gateway/cluster.toml
# (call it in a subshell). The secret goes through the environment, never a command line.
run_gateway() {
  local i=$1 kv; shift
  while IFS= read -r kv; do export "${kv?}"; done < <(gateway_env "$i")
  exec "$GATEWAY_BIN" --config "$GATEWAY_CONFIG" "$@"
}

# run_nats ARGS...: execs nats-server with the users' passwords in its environment (auth.conf reads them).
run_nats() {
  set -a
  # shellcheck disable=SC1091
  . "$RUN/nats-passwords"
  set +a
  exec "$NATS_SERVER_BIN" "$@"
}

# --- commands --------------------------------------------------------------------------------------------

# nats_pending / cluster_pending: print what is not ready yet (nothing = ready).
nats_pending() {
  local i v
  for i in "${NODES[@]}"; do
    v=NATS_${i}_MONITOR
    [ "$(http_code "${!v}/healthz")" = 200 ] || echo "nats-$i"
  done
}

cluster_pending() {
  local i v pending
  pending=$(nats_pending)
  for i in "${NODES[@]}"; do
    v=GW_${i}_URL
    [ "$(http_code "${!v}/readyz")" = 200 ] || pending+=" gw-$i"
  done
  if [ -z "$pending" ] && [ "${TELEGRAPHY_HISTORY__ENABLED:-true}" != false ]; then
    stream_replicas_current >/dev/null || pending+=" history-stream"
  fi
  if [ -z "$pending" ] && [ -n "${LB_URL:-}" ]; then
    [ "$(http_code "$LB_URL/lb-healthz")" = 200 ] || pending+=" lb"
  fi
  # shellcheck disable=SC2086 # unquoted on purpose: one line, single spaces
  echo $pending
}

# wait_until WHAT PENDING_FN: polls PENDING_FN until it prints nothing; fails (with the logs of what is
# pending) when a started process exits or when the start has taken LOCAL_CLUSTER_TIMEOUT seconds.
wait_until() {
  local what=$1 fn=$2 pending name
  while :; do
    for name in $(all_names); do
      [ -f "$RUN/$name.pid" ] || continue
      alive "$name" || { say "$name exited; see $RUN/$name.log"; tail -n 20 "$RUN/$name.log" >&2; exit 1; }
    done
    pending=$($fn)
    [ -z "$pending" ] && return 0
    if [ $SECONDS -ge "$START_DEADLINE" ]; then
      say "not ready after ${TIMEOUT}s ($what): $pending"
      for name in $pending; do
        if [ -f "$RUN/$name.log" ]; then echo "--- $name.log" >&2; tail -n 15 "$RUN/$name.log" >&2; fi
      done
      exit 1
    fi
    sleep 0.2
  done
}

# nginx_conf DIR GW1_PORT GW2_PORT GW3_PORT LB_PORT: deploy/nginx.conf for loopback: the gateways' and the
# demo's addresses, the listen port, and /tmp/ paths moved into DIR.
nginx_conf() {
  local dir=$1
  sed -e "s#gw-1:8080#127.0.0.1:$2#; s#gw-2:8080#127.0.0.1:$3#; s#gw-3:8080#127.0.0.1:$4#" \
      -e "s#demo:8000#127.0.0.1:${LOCAL_CLUSTER_DEMO_PORT:-8000}#" \
      -e "s#^\([[:space:]]*listen\) 8080;#\1 127.0.0.1:$5;#" \
      -e "s#/tmp/#$dir/#g" "$DEPLOY/nginx.conf"
}

start_failed() {
  local status=$?
  [ $status -eq 0 ] && return
  say "start failed; stopping what was started"
  cmd_stop >/dev/null 2>&1 || true
  exit $status
}

cmd_start() {
  [ -x "$NATS_SERVER_BIN" ] || die "nats-server not found at $NATS_SERVER_BIN (run scripts/bootstrap or set NATS_SERVER_BIN)"
  [ -x "$GATEWAY_BIN" ] || die "gateway not found at $GATEWAY_BIN (cargo build --bin telegraphy-gateway or set TELEGRAPHY_GATEWAY_BIN)"
  mkdir -p "$RUN"
  if any_running; then die "already running in $RUN (stop it first)"; fi
  rm -f "$RUN"/*.pid "$RUN"/*.log "$RUN/cluster.env"
  rm -rf "$RUN/nats-1" "$RUN/nats-2" "$RUN/nats-3" "$RUN/nginx"

  local lb=${LOCAL_CLUSTER_LB:-auto}
  if [ "$lb" = auto ]; then
    if command -v nginx >/dev/null 2>&1; then lb=1; else lb=0; fi
  fi
  [ "$lb" = 0 ] || command -v nginx >/dev/null 2>&1 || die "LOCAL_CLUSTER_LB=1 but nginx is not installed"

  local free
  read -r -a free <<< "$(free_ports 16)"
  local nats route monitor gw admin
  read -r -a nats <<< "$(ports_from LOCAL_CLUSTER_NATS_PORTS "${free[@]:0:3}")"
  read -r -a route <<< "$(ports_from LOCAL_CLUSTER_ROUTE_PORTS "${free[@]:3:3}")"
  read -r -a monitor <<< "$(ports_from LOCAL_CLUSTER_MONITOR_PORTS "${free[@]:6:3}")"
  read -r -a gw <<< "$(ports_from LOCAL_CLUSTER_GATEWAY_PORTS "${free[@]:9:3}")"
  local lb_port=${LOCAL_CLUSTER_LB_PORT:-${free[12]}}
  read -r -a admin <<< "$(ports_from LOCAL_CLUSTER_ADMIN_PORTS "${free[@]:13:3}")"

  (umask 077; if [ -n "${TELEGRAPHY_AUTH__SECRET:-}" ]; then printf '%s' "$TELEGRAPHY_AUTH__SECRET"; \
    else random_hex; fi > "$RUN/secret")
  write_nats_passwords

  {
    echo "LOCAL_CLUSTER_DIR=$(printf '%q' "$RUN")"
    echo "LOCAL_CLUSTER_SECRET_FILE=$(printf '%q' "$RUN/secret")"
    echo "LOCAL_CLUSTER_NATS_PASSWORDS=$(printf '%q' "$RUN/nats-passwords")"
    local i urls=""
    for i in "${NODES[@]}"; do
      echo "NATS_${i}_PORT=${nats[i-1]}"
      echo "NATS_${i}_ROUTE_PORT=${route[i-1]}"
      echo "NATS_${i}_MONITOR_PORT=${monitor[i-1]}"
      echo "NATS_${i}_URL=nats://127.0.0.1:${nats[i-1]}"
      echo "NATS_${i}_MONITOR=http://127.0.0.1:${monitor[i-1]}"
      echo "GW_${i}_PORT=${gw[i-1]}"
      echo "GW_${i}_URL=http://127.0.0.1:${gw[i-1]}"
      echo "GW_${i}_WS=ws://127.0.0.1:${gw[i-1]}/ws"
      echo "GW_${i}_ADMIN_PORT=${admin[i-1]}"
      echo "GW_${i}_ADMIN_URL=http://127.0.0.1:${admin[i-1]}"
      urls+="${urls:+,}nats://127.0.0.1:${nats[i-1]}"
    done
    echo "NATS_URLS=$urls"
    if [ "$lb" = 1 ]; then
      echo "LB_PORT=$lb_port"
      echo "LB_URL=http://127.0.0.1:$lb_port"
      echo "LB_WS=ws://127.0.0.1:$lb_port/ws"
    fi
  } > "$RUN/cluster.env"
  load_env

  START_DEADLINE=$((SECONDS + TIMEOUT))
  # From here on a failure (or Ctrl-C) stops whatever was started.
  trap start_failed EXIT
  trap 'exit 130' INT TERM

  # NATS: the deploy/nats files themselves, with the store dir rewritten, host/ports/routes as flags (flags win
  # over the file), auth.conf next to them as it is (includes are relative to the including file) and the
  # users' passwords in the environment.
  local routes="" i
  for i in "${NODES[@]}"; do routes+="${routes:+,}nats://127.0.0.1:${route[i-1]}"; done
  cp "$DEPLOY/nats/auth.conf" "$RUN/auth.conf"
  for i in "${NODES[@]}"; do
    mkdir -p "$RUN/nats-$i"
    sed "s#^\([[:space:]]*store_dir:\).*#\1 \"$RUN/nats-$i\"#" "$DEPLOY/nats/nats-$i.conf" > "$RUN/nats-$i.conf"
    launch "nats-$i" run_nats -c "$RUN/nats-$i.conf" -a 127.0.0.1 -p "${nats[i-1]}" \
      -m "${monitor[i-1]}" --cluster "nats://127.0.0.1:${route[i-1]}" --routes "$routes"
  done
  # A gateway creates the R3 history stream at start: let the JetStream cluster form first (as compose's
  # depends_on: service_healthy does), or the creation may time out and stall.
  wait_until "NATS cluster healthy" nats_pending
  for i in "${NODES[@]}"; do
    launch "gw-$i" run_gateway "$i"
  done
  if [ "$lb" = 1 ]; then
    mkdir -p "$RUN/nginx"
    nginx_conf "$RUN/nginx" "${gw[@]}" "$lb_port" > "$RUN/nginx.conf"
    # One -g only (nginx keeps the last). As root, the workers would run as "nobody", which cannot enter a
    # private run dir: keep them root here.
    local globals="daemon off;"
    [ "$(id -u)" = 0 ] && globals+=" user root;"
    nginx -t -q -p "$RUN/nginx" -c "$RUN/nginx.conf" -g "$globals" >> "$RUN/lb.log" 2>&1 \
      || die "nginx rejects the generated $RUN/nginx.conf; see $RUN/lb.log"
    launch lb nginx -p "$RUN/nginx" -c "$RUN/nginx.conf" -g "$globals"
  fi

  wait_until "gateways ready, history stream with all replicas current, load balancer" cluster_pending
  trap - EXIT INT TERM
  say "ready: gateways ${GW_1_URL} ${GW_2_URL} ${GW_3_URL}${LB_URL:+, load balancer $LB_URL}; run dir $RUN"
}

# stream_replicas_current: prints "<leader> <current>/<replicas>" of the history stream and succeeds when it
# has a leader and every peer is current. Only the leader knows its followers' state, so each node is asked
# and the answer of the node that leads counts.
stream_replicas_current() {
  local stream=${TELEGRAPHY_HISTORY__STREAM:-TELEGRAPHY} i v
  for i in "${NODES[@]}"; do
    v=NATS_${i}_MONITOR
    curl -s --max-time 2 "${!v}/jsz?streams=true&config=true" 2>/dev/null | python3 -c '
import json, sys
node, stream, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    jsz = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
for account in jsz.get("account_details") or []:
    for s in account.get("stream_detail") or []:
        cluster = s.get("cluster") or {}
        if s.get("name") != stream or cluster.get("leader") != node:
            continue
        peers = cluster.get("replicas") or []
        current = 1 + sum(1 for p in peers if p.get("current") and not p.get("offline"))
        replicas = s.get("config", {}).get("num_replicas", 1)
        print(node, "%d/%d" % (current, replicas))
        sys.exit(0 if replicas >= want and current >= replicas else 2)
sys.exit(1)
' "nats-$i" "$stream" "${TELEGRAPHY_HISTORY__REPLICAS:-3}" && return 0
    [ "${PIPESTATUS[1]}" = 2 ] && return 1  # the leader answered: not all current
  done
  return 1
}

cmd_stop() {
  [ -d "$RUN" ] || return 0
  local gws=() nats=() i
  for i in "${NODES[@]}"; do gws+=("gw-$i"); nats+=("nats-$i"); done
  # Gateways drain first (sockets closed with 1012, exit within shutdown_timeout = 10 s), then the LB and NATS.
  signal_and_wait 15 TERM "${gws[@]}"
  signal_and_wait 5 QUIT lb
  signal_and_wait 10 TERM "${nats[@]}"
  local left=()
  for i in $(all_names); do running "$i" && left+=("$i"); done
  if [ ${#left[@]} -gt 0 ]; then
    say "killing ${left[*]} (did not stop in time)"
    signal_and_wait 5 KILL "${left[@]}"
  fi
  for i in $(all_names); do running "$i" && die "$i (process group $(pid_of "$i")) is still running"; done
  rm -f "$RUN"/*.pid
  say "stopped (logs in $RUN)"
}

# status_line NAME ADDRESS CHECK_URL: one line of `status`; fails when the process is down or the check is not 200.
status_line() {
  local name=$1 address=$2 url=$3 code
  if ! alive "$name"; then printf '%-7s down\n' "$name"; return 1; fi
  code=200
  [ -z "$url" ] || code=$(http_code "$url")
  printf '%-7s pid %-7s %-26s %s %s\n' "$name" "$(pid_of "$name")" "$address" "${url##*/}" "$code"
  [ "$code" = 200 ]
}

cmd_status() {
  [ -f "$RUN/cluster.env" ] || { echo "not started ($RUN)"; return 3; }
  load_env
  local ok=0 i v
  for i in "${NODES[@]}"; do
    v=NATS_${i}_URL; local m=NATS_${i}_MONITOR
    status_line "nats-$i" "${!v}" "${!m}/healthz" || ok=1
  done
  for i in "${NODES[@]}"; do
    v=GW_${i}_URL
    status_line "gw-$i" "${!v}" "${!v}/readyz" || ok=1
  done
  if [ -n "${LB_URL:-}" ]; then status_line lb "$LB_URL" "$LB_URL/lb-healthz" || ok=1; fi
  echo "history stream (leader, current/replicas): $(stream_replicas_current || echo "not ready")"
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) load_env; cat "$RUN/cluster.env"
       for n in $(all_names); do alive "$n" && echo "$(echo "${n^^}" | tr - _)_PID=$(pid_of "$n")"; done; true ;;
  token) shift; load_env; ( run_gateway 1 token "$@" ) ;;
  nats-url) case $# in 2|3) ;; *) die "usage: nats-url USER [N]" ;; esac
            load_env; nats_url "$2" "${3:-1}" ;;
  nginx-conf) [ $# -eq 6 ] || die "usage: nginx-conf DIR GW1_PORT GW2_PORT GW3_PORT LB_PORT"
              shift; nginx_conf "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
