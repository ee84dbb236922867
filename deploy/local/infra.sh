#!/usr/bin/env bash
# Local Kafka (KRaft, single node) and PostgreSQL without containers, for `make run`, tests and CI.
#
#   infra.sh up | down | status | env
#   infra.sh kafka start|stop|restart|kill   (kill: SIGKILL, as a crash leaves it)
#   infra.sh pg start|stop|restart|kill      (kill: immediate shutdown, as a crash leaves it)
#
# State (data, logs, pids, ports) lives in ${OPSAT_LOCAL_DIR:-<repo>/.local}; the Kafka jars are fetched
# once into ${OPSAT_CACHE_DIR:-~/.cache/opsat}. Ports are picked on the first start and then kept, so
# the env lines and the broker's advertised address stay valid across restarts.
# Needs: Java 17+, Maven (first run only), the PostgreSQL server binaries, python3, util-linux.
set -euo pipefail

KAFKA_VERSION=4.1.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=$(realpath -m "${OPSAT_LOCAL_DIR:-$HERE/../../.local}")
LOGS=$STATE/logs
RUN=$STATE/run
KAFKA_DIR=$STATE/kafka
PG_DIR=$STATE/pg
PG_LOG=$LOGS/postgres.log
# As root the cluster runs as user postgres, which cannot enter a repo under a private home (/root):
# then the cluster lives in a scratch folder of its own, named after the state dir, and logs/ links to its log.
if ((EUID == 0)) && id -u postgres >/dev/null 2>&1; then
  mkdir -p "$STATE"
  if ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    PG_DIR=/var/tmp/opsat-pg-$(printf %s "$STATE" | md5sum | cut -c1-12)
    PG_LOG=$PG_DIR/postgres.log
  fi
fi
PG_DATA=$PG_DIR/data
JARS=${OPSAT_CACHE_DIR:-$HOME/.cache/opsat}/kafka-$KAFKA_VERSION
KAFKA_HEAP=${OPSAT_KAFKA_HEAP:-512m}
START_TIMEOUT=${OPSAT_INFRA_TIMEOUT:-90}
STOP_TIMEOUT=30
KAFKA_JAVA=(java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml"
  -Dkafka.logs.dir="$LOGS" -cp "$JARS/*")

log() { echo "infra.sh: $*" >&2; }
die() { echo "infra.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "'$1' not found; install it: $2"; }
usage() { sed -n '4,6s/^# */usage: /p' "$0" >&2; exit 2; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
log_tail() { [[ -f $1 ]] && tail -n 15 "$1" | sed 's/^/    /' >&2 || true; }

# One infra.sh at a time per state dir: two concurrent `up`s must not format or start things twice.
lock() {
  mkdir -p "$LOGS" "$RUN"
  exec 9>"$RUN/lock"
  flock -n 9 || { log "waiting for another infra.sh ($RUN/lock)"; flock -w 600 9 || die "lock $RUN/lock still held after 600s"; }
}

env_lines() {
  echo "export OPSAT_DATABASE_ADMIN_URL=postgresql://opsat@127.0.0.1:$PG_PORT/postgres"
  echo "export OPSAT_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
}

load_ports() {
  if [[ ! -s $RUN/ports ]]; then
    need python3 "apt-get install python3"
    # Ports below the ephemeral range: a client that keeps reconnecting while a server is down could
    # otherwise be given that port as its own source port (a self-connection) and block the restart.
    python3 - >"$RUN/ports.tmp" <<'EOF'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
while len(ports) < 3:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", random.randrange(20000, low) if low > 21000 else 0))
        except OSError:
            continue
        if s.getsockname()[1] not in ports:
            ports.append(s.getsockname()[1])
for name, port in zip(["KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "PG_PORT"], ports):
    print(f"{name}={port}")
EOF
    mv "$RUN/ports.tmp" "$RUN/ports"
  fi
  source "$RUN/ports"
  env_lines >"$STATE/env"
}

# ---------------------------------------------------------------------------------------------- Kafka

kafka_jars() {
  [[ -f $JARS/.complete ]] && return 0
  need mvn "apt-get install maven"
  rm -rf "$JARS"  # left over from an interrupted fetch (the marker is written last)
  mkdir -p "$(dirname "$JARS")"
  local tmp
  tmp=$(mktemp -d "$JARS.tmp.XXXXXX")
  log "fetching Kafka $KAFKA_VERSION jars into $JARS"
  mvn -q -B -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$LOGS/maven.log" 2>&1 ||
    { rm -rf "$tmp"; log_tail "$LOGS/maven.log"; die "Maven could not fetch the Kafka jars; see $LOGS/maven.log"; }
  touch "$tmp/.complete"
  chmod 755 "$tmp"  # mktemp made it private; the cache may be shared
  mv -T "$tmp" "$JARS" 2>/dev/null || rm -rf "$tmp"  # another checkout sharing the cache got there first
}

# The broker's pid, only if the pid file names a live broker (not a stale pid reused by another process).
kafka_pid() {
  local pid
  pid=$(cat "$RUN/kafka.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

# Ready = a Metadata request lists our broker, i.e. it is registered, unfenced and serving clients.
kafka_ready() {
  python3 - "$KAFKA_PORT" <<'EOF'
import socket, struct, sys
client = b"opsat-infra"
# Metadata v4: api key 3, correlation id 7, all topics (-1), no auto-creation.
body = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", -1, 0)
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        data = b""
        while len(data) < 16:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit(1)
            data += chunk
except OSError:
    sys.exit(1)
_, correlation_id, _, brokers = struct.unpack(">iiii", data[:16])
sys.exit(0 if correlation_id == 7 and brokers > 0 else 1)
EOF
}

kafka_launch() {
  kafka_pid >/dev/null && return 0
  mkdir -p "$KAFKA_DIR"
  need java "apt-get install openjdk-17-jre-headless"
  need python3 "apt-get install python3"
  kafka_jars
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$KAFKA_DIR/data|g" "$HERE/kafka/server.properties.template" >"$KAFKA_DIR/server.properties"
  # Format once. A formatted data dir keeps its own cluster id (meta.properties), whatever created it;
  # anything else there (an interrupted format, another node id) is replaced by a fresh cluster.
  if ! grep -qx 'node.id=1' "$KAFKA_DIR/data/meta.properties" 2>/dev/null; then
    rm -rf "$KAFKA_DIR/data"
    local cluster_id
    cluster_id=$("${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid)
    log "formatting Kafka storage (cluster id $cluster_id)"
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" \
      >>"$LOGS/kafka.log" 2>&1 || { log_tail "$LOGS/kafka.log"; die "Kafka storage format failed; see $LOGS/kafka.log"; }
  fi
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    ! port_in_use "$port" || die "port $port (Kafka) is used by another process; stop it, or delete $RUN/ports to pick new ports"
  done
  log "starting Kafka on 127.0.0.1:$KAFKA_PORT (log $LOGS/kafka.log)"
  # setsid: own session, so the broker outlives the calling shell and ignores its Ctrl-C.
  # 9>&-: the broker must not inherit, and so hold, our lock.
  setsid "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" </dev/null >>"$LOGS/kafka.log" 2>&1 9>&- &
  echo $! >"$RUN/kafka.pid"
}

kafka_wait() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until kafka_ready; do
    kafka_pid >/dev/null || { log_tail "$LOGS/kafka.log"; die "Kafka exited during start-up; see $LOGS/kafka.log"; }
    ((SECONDS < deadline)) || { log_tail "$LOGS/kafka.log"; die "Kafka not ready after ${START_TIMEOUT}s; see $LOGS/kafka.log"; }
    sleep 0.2
  done
}

kafka_start() { kafka_launch; kafka_wait; }

kafka_kill() {
  local pid
  if pid=$(kafka_pid); then
    log "killing Kafka (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    while kafka_pid >/dev/null; do sleep 0.1; done
  fi
  rm -f "$RUN/kafka.pid"
}

kafka_stop() {
  local pid deadline=$((SECONDS + STOP_TIMEOUT))
  if pid=$(kafka_pid); then
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kafka_pid >/dev/null; do
      if ((SECONDS >= deadline)); then
        log "Kafka still running after ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      sleep 0.1
    done
  fi
  rm -f "$RUN/kafka.pid"
}

# ------------------------------------------------------------------------------------------ PostgreSQL

# As root, initdb and postgres must run as the postgres user (they refuse root); otherwise as ourselves.
as_pg() { if ((EUID == 0)); then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

# An existing cluster needs the major version that created it; a new one gets the highest installed.
pg_bin() {
  local version
  version=$(cat "$PG_DATA/PG_VERSION" 2>/dev/null || ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
  PG_BIN=${OPSAT_PG_BIN:-/usr/lib/postgresql/$version/bin}
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] ||
    die "PostgreSQL ${version:-server} binaries not found in $PG_BIN; install them: apt-get install postgresql"
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_init() {
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  mkdir -p "$PG_DIR" "$LOGS"
  touch "$PG_LOG"
  [[ $PG_LOG == "$LOGS/postgres.log" ]] || ln -sfn "$PG_LOG" "$LOGS/postgres.log"
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || {
      log "creating the system user postgres"
      useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
    }
    chown postgres: "$PG_DIR" "$PG_LOG"
    as_pg test -w "$PG_DIR" ||
      die "user postgres cannot reach $PG_DIR (a parent folder is private?); set OPSAT_LOCAL_DIR elsewhere"
  fi
  rm -rf "$PG_DATA"  # left over from an interrupted initdb (PG_VERSION is written early, but not first)
  log "initialising PostgreSQL in $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U opsat --auth=trust -E UTF8 --no-locale -N >"$LOGS/initdb.log" 2>&1 ||
    { log_tail "$LOGS/initdb.log"; die "initdb failed; see $LOGS/initdb.log"; }
}

pg_start() {
  pg_bin
  pg_running && return 0
  pg_init
  ! port_in_use "$PG_PORT" || die "port $PG_PORT (PostgreSQL) is used by another process; stop it, or delete $RUN/ports to pick new ports"
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log $LOGS/postgres.log)"
  # TCP only: no Unix socket to clash with a system cluster, and no socket path length limit.
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" \
    start >/dev/null 9>&- || { log_tail "$LOGS/postgres.log"; die "PostgreSQL did not start; see $LOGS/postgres.log"; }
}

pg_stop() {  # $1: shutdown mode, fast unless told (immediate = no checkpoint, crash recovery on start)
  local mode=${1:-fast}
  [[ -f $PG_DATA/PG_VERSION ]] || return 0
  pg_bin
  pg_running || return 0
  log "stopping PostgreSQL ($mode)"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w stop >/dev/null
}

# ---------------------------------------------------------------------------------------------- main

status() {
  [[ -s $RUN/ports ]] || { echo "not set up yet (run: $0 up)"; return 3; }
  source "$RUN/ports"
  local pid rc=0
  if pid=$(kafka_pid); then
    echo "kafka:      running at 127.0.0.1:$KAFKA_PORT (pid $pid)"
  else
    echo "kafka:      stopped (port 127.0.0.1:$KAFKA_PORT)"; rc=3
  fi
  if [[ -f $PG_DATA/PG_VERSION ]] && pg_bin && pg_running; then
    echo "postgresql: running at 127.0.0.1:$PG_PORT (data $PG_DATA)"
  else
    echo "postgresql: stopped (port 127.0.0.1:$PG_PORT)"; rc=3
  fi
  echo "logs:       $LOGS"
  return $rc
}

case "${1:-}/${2:-}" in
  up/)
    lock; load_ports
    kafka_launch  # the broker boots while PostgreSQL starts
    pg_start
    kafka_wait
    log "up: Kafka 127.0.0.1:$KAFKA_PORT, PostgreSQL 127.0.0.1:$PG_PORT, logs $LOGS"
    ;;
  down/) lock; kafka_stop; pg_stop ;;
  status/) status ;;
  env/)
    [[ -s $RUN/ports ]] || die "not set up yet (run: $0 up)"
    source "$RUN/ports"; env_lines
    ;;
  kafka/start) lock; load_ports; kafka_start ;;
  kafka/stop) lock; kafka_stop ;;
  kafka/restart) lock; load_ports; kafka_stop; kafka_start ;;
  kafka/kill) lock; kafka_kill ;;
  pg/start) lock; load_ports; pg_start ;;
  pg/stop) lock; pg_stop ;;
  pg/restart) lock; load_ports; pg_stop; pg_start ;;
  pg/kill) lock; pg_stop immediate ;;
  *) usage ;;
esac
