#!/usr/bin/env bash
# natter's development cluster on one machine, in the background:
#
#   natsconf/cluster/cluster.sh start    # or: go tool task cluster
#   natsconf/cluster/cluster.sh status   #     go tool task cluster:status
#   natsconf/cluster/cluster.sh stop     #     go tool task cluster:stop
#
# start builds nats-server, edge and handlers once into natter-data/cluster/bin,
# makes up the NATS passwords (users edge and handlers, and the routes) at the
# first start into natter-data/cluster/secrets.env (mode 600), and runs
#   - three NATS nodes clustered with JetStream (natsconf/cluster/n1..n3.conf:
#     clients 127.0.0.1:4222-4224, routes 6222-6224 with authentication,
#     monitoring 8222-8224, stores natter-data/cluster/n1..n3);
#   - two copies of every handler (handlers all -replicas 3), each given the
#     three nodes;
#   - two edges with development identity (-dev, ?user=): 127.0.0.1:8081 on
#     node 1 and 127.0.0.1:8082 on node 2;
# waiting until each is ready (nodes: /healthz, JetStream included; edges:
# /readyz: handlers answer). Logs: natter-data/cluster/logs/ (the previous start's in
# *.prev.log). The PIDs it started are in
# natter-data/cluster/pids, and stop ends exactly those (SIGTERM, then SIGKILL
# after 20 s), edges first, nodes last. Data stays in natter-data/cluster
# (delete the directory to start afresh; the passwords go with it).
#
# NATTER_* variables of the calling shell are not passed on: the processes
# get only what this script sets. Development only: identities are unchecked.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DIR=natter-data/cluster
BIN=$ROOT/$DIR/bin
LOGS=$DIR/logs
PIDS=$DIR/pids
SECRETS=$DIR/secrets.env
NODES=(n1 n2 n3)
CLIENT_PORTS=(4222 4223 4224)
ROUTE_PORTS=(6222 6223 6224)
MONITOR_PORTS=(8222 8223 8224)
EDGE_ADDRS=(127.0.0.1:8081 127.0.0.1:8082)
EDGE_NODES=(0 1) # edge i connects to node EDGE_NODES[i] only
READY_TIMEOUT=${READY_TIMEOUT:-60}

for v in $(compgen -e); do
	case $v in NATTER_*) unset "$v" ;; esac
done

log() { printf 'cluster: %s\n' "$*"; }
die() {
	printf 'cluster: %s\n' "$*" >&2
	exit 1
}

# alive PID BINARY: PID is running and is BINARY (not a recycled PID).
alive() {
	local args
	args=$(ps -ww -p "$1" -o args= 2>/dev/null) || return 1
	[[ $args == "$2"* ]]
}

# running: how many recorded processes are alive.
running() {
	local n=0 name pid bin
	[[ -f $PIDS ]] || {
		echo 0
		return
	}
	while read -r name pid bin; do
		if alive "$pid" "$bin"; then n=$((n + 1)); fi
	done <"$PIDS"
	echo "$n"
}

# launch NAME BINARY ARGS...: start in the background, in a session of its
# own (setsid, which execs: $! is the process itself), and record the PID.
launch() {
	local name=$1 bin=$2
	shift 2
	if [[ -f $LOGS/$name.log ]]; then mv "$LOGS/$name.log" "$LOGS/$name.prev.log"; fi
	if command -v setsid >/dev/null; then
		setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	else
		nohup "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	fi
	echo "$name $! $bin" >>"$PIDS"
}

# wait_http NAME PID BINARY URL: poll URL until it answers 2xx, failing if
# the process exits or READY_TIMEOUT passes.
wait_http() {
	local name=$1 pid=$2 bin=$3 url=$4 deadline=$((SECONDS + READY_TIMEOUT))
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		alive "$pid" "$bin" || die "$name exited; see $LOGS/$name.log"
		((SECONDS < deadline)) || die "$name not ready after ${READY_TIMEOUT}s ($url); see $LOGS/$name.log"
		sleep 0.2
	done
}

# wait_log NAME PID BINARY TEXT: wait until the log holds TEXT; fails
# (status 1) if the process exits first.
wait_log() {
	local name=$1 pid=$2 bin=$3 text=$4 deadline=$((SECONDS + READY_TIMEOUT))
	until grep -q "$text" "$LOGS/$name.log"; do
		alive "$pid" "$bin" || return 1
		((SECONDS < deadline)) || die "$name not ready after ${READY_TIMEOUT}s; see $LOGS/$name.log"
		sleep 0.2
	done
}

# forget_last: drop the last line of the PID file (a process that exited).
forget_last() {
	local lines=()
	mapfile -t lines <"$PIDS"
	printf '%s\n' "${lines[@]:0:${#lines[@]}-1}" >"$PIDS"
}

# wait_streams NAME PID BINARY PORT: wait until every JetStream stream the
# node holds has a leader. After a restart /healthz is ok once the meta
# leader is known, while the streams still elect theirs; a stream request in
# between goes unanswered until the handler's start deadline.
wait_streams() {
	local name=$1 pid=$2 bin=$3 port=$4 deadline=$((SECONDS + READY_TIMEOUT)) jsz streams leaders
	while :; do
		jsz=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/jsz?accounts=true&streams=true" 2>/dev/null || true)
		streams=$(grep -c '"raft_group": *"S-' <<<"$jsz" || true)
		leaders=$(grep -A1 '"raft_group": *"S-' <<<"$jsz" | grep -c '"leader": *"[^"]' || true)
		[[ -n $jsz && $streams -eq $leaders ]] && return
		alive "$pid" "$bin" || die "$name exited; see $LOGS/$name.log"
		((SECONDS < deadline)) || die "$name: streams without a leader after ${READY_TIMEOUT}s; see $LOGS/$name.log"
		sleep 0.2
	done
}

password() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }

start() {
	command -v curl >/dev/null || die "needs curl"
	if [[ $(running) -gt 0 ]]; then
		status
		die "already running: go tool task cluster:stop first"
	fi
	mkdir -p "$BIN" "$LOGS"
	rm -f "$PIDS"
	# A failed start stops what it started.
	trap 'rc=$?; if ((rc != 0)); then log "start failed: stopping what was started"; stop; fi' EXIT

	log "building nats-server, edge and handlers into $DIR/bin"
	go build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
	go build -o "$BIN/edge" ./edge
	go build -o "$BIN/handlers" ./handlers

	if [[ ! -f $SECRETS ]]; then
		log "making up passwords into $SECRETS"
		(
			umask 077
			{
				echo "NATTER_EDGE_PASSWORD=$(password)"
				echo "NATTER_HANDLERS_PASSWORD=$(password)"
				echo "NATTER_ROUTE_PASSWORD=$(password)"
			} >"$SECRETS"
		)
	fi
	local edge_pw handlers_pw route_pw
	edge_pw=$(sed -n 's/^NATTER_EDGE_PASSWORD=//p' "$SECRETS")
	handlers_pw=$(sed -n 's/^NATTER_HANDLERS_PASSWORD=//p' "$SECRETS")
	route_pw=$(sed -n 's/^NATTER_ROUTE_PASSWORD=//p' "$SECRETS")
	[[ -n $edge_pw && -n $handlers_pw && -n $route_pw ]] || die "$SECRETS lacks a password"

	local i routes=()
	for i in 0 1 2; do
		routes+=("nats-route://route:$route_pw@127.0.0.1:${ROUTE_PORTS[i]}")
	done
	local route_list
	route_list="[$(
		IFS=,
		echo "${routes[*]}"
	)]"

	for i in 0 1 2; do
		mkdir -p "$DIR/${NODES[i]}"
		NATTER_EDGE_PASSWORD=$edge_pw NATTER_HANDLERS_PASSWORD=$handlers_pw \
			NATTER_ROUTE_PASSWORD=$route_pw NATTER_ROUTES=$route_list \
			launch "${NODES[i]}" "$BIN/nats-server" -c "natsconf/cluster/${NODES[i]}.conf"
	done
	local name pid bin
	i=0
	while read -r name pid bin; do
		wait_http "$name" "$pid" "$bin" "http://127.0.0.1:${MONITOR_PORTS[i]}/healthz"
		wait_streams "$name" "$pid" "$bin" "${MONITOR_PORTS[i]}"
		log "$name ready: nats://127.0.0.1:${CLIENT_PORTS[i]} (monitoring http://127.0.0.1:${MONITOR_PORTS[i]})"
		i=$((i + 1))
	done <"$PIDS"

	# Handlers: every node in the URL list (nats.go picks one at random and
	# moves to another when it fails). The password goes through the
	# environment twin of -nats, not the command line.
	local handlers_url="" edge_url port
	for port in "${CLIENT_PORTS[@]}"; do
		handlers_url+="${handlers_url:+,}nats://handlers:$handlers_pw@127.0.0.1:$port"
	done
	# A handler that exits while starting is started again (3 tries): right
	# after the nodes (re)start, a JetStream request can go unanswered while
	# the streams settle; handlers try again for up to 2 minutes, then exit.
	local try
	for name in h1 h2; do
		for try in 1 2 3; do
			NATTER_NATS=$handlers_url launch "$name" "$BIN/handlers" all -replicas 3
			read -r _ pid bin < <(tail -n 1 "$PIDS")
			if wait_log "$name" "$pid" "$bin" "handlers running"; then
				break
			fi
			forget_last
			((try < 3)) || die "$name exited; see $LOGS/$name.log"
			log "$name exited while starting ($(tail -n 1 "$LOGS/$name.log")): starting it again"
		done
		log "$name ready: handlers all -replicas 3"
	done

	for i in 0 1; do
		name=e$((i + 1))
		edge_url="nats://edge:$edge_pw@127.0.0.1:${CLIENT_PORTS[${EDGE_NODES[i]}]}"
		NATTER_NATS=$edge_url launch "$name" "$BIN/edge" -dev -addr "${EDGE_ADDRS[i]}"
		read -r _ pid bin < <(tail -n 1 "$PIDS")
		wait_http "$name" "$pid" "$bin" "http://${EDGE_ADDRS[i]}/readyz"
		log "$name ready: ws://${EDGE_ADDRS[i]}/ws?user=alice  demo http://${EDGE_ADDRS[i]}/  (NATS node ${NODES[${EDGE_NODES[i]}]})"
	done
	trap - EXIT
	log "running; logs in $LOGS/, PIDs in $PIDS; stop with: go tool task cluster:stop"
}

stop() {
	if [[ ! -f $PIDS ]]; then
		log "nothing recorded in $PIDS: nothing to stop"
		return
	fi
	# Reverse order: edges (bye to clients), handlers, then the nodes.
	local lines=() line name pid bin
	mapfile -t lines <"$PIDS"
	for ((j = ${#lines[@]} - 1; j >= 0; j--)); do
		read -r name pid bin <<<"${lines[j]}"
		if ! alive "$pid" "$bin"; then
			log "$name ($pid) not running"
			continue
		fi
		kill -TERM "$pid"
		local deadline=$((SECONDS + 20))
		while alive "$pid" "$bin" && ((SECONDS < deadline)); do sleep 0.1; done
		if alive "$pid" "$bin"; then
			log "$name ($pid) still running after 20s: SIGKILL"
			kill -KILL "$pid" || true
		else
			log "$name ($pid) stopped"
		fi
	done
	rm -f "$PIDS"
}

status() {
	if [[ ! -f $PIDS ]]; then
		log "not running (no $PIDS)"
		return
	fi
	local name pid bin state
	while read -r name pid bin; do
		if alive "$pid" "$bin"; then state=running; else state=gone; fi
		printf '%-3s %-8s %-8s %s\n' "$name" "$pid" "$state" "$(basename "$bin")"
	done <"$PIDS"
	for i in 0 1 2; do
		printf '%s /healthz: %s\n' "${NODES[i]}" "$(curl -sS --max-time 2 "http://127.0.0.1:${MONITOR_PORTS[i]}/healthz" 2>&1 || true)"
	done
	for i in 0 1; do
		printf 'e%d /healthz: %s\n' $((i + 1)) "$(curl -sS --max-time 2 "http://${EDGE_ADDRS[i]}/healthz" 2>&1 || true)"
	done
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
