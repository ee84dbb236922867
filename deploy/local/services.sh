#!/usr/bin/env bash
# Start the opsat services locally against deploy/local/infra.sh's Kafka and PostgreSQL.
#
#   services.sh up [SERVICE...]     create each service's database, migrate, start API + worker
#   services.sh down [SERVICE...]   stop them
#   services.sh status [SERVICE...]
#
# Service N in the list gets API port 8000+10*N and worker port 8001+10*N (intake: 8000/8001),
# (sla: 8010/8011, feedback: 8020/8021, risk: 8030/8031, appraisal: 8040/8041) unless OPSAT_BASE_PORT says otherwise. Logs: .local/logs/<service>-{api,worker}.log.
# With feedback, a local SMTP sink (aiosmtpd) on port OPSAT_BASE_PORT+25 catches the survey emails into
# .local/mail (a Maildir), and feedback sends to it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STATE=$(realpath -m "${OPSAT_LOCAL_DIR:-$ROOT/.local}")
LOGS=$STATE/logs
RUN=$STATE/run
VENV=${VENV:-$ROOT/.venv}
BASE_PORT=${OPSAT_BASE_PORT:-8000}

die() { echo "services.sh: error: $*" >&2; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

load_infra() {
  [[ -s $STATE/env ]] || die "Kafka and PostgreSQL are not set up; run: deploy/local/infra.sh up"
  # shellcheck disable=SC1091
  source "$STATE/env"
  PG_URL=${OPSAT_DATABASE_ADMIN_URL%/postgres}
}

# The local stack's own dev-mode signing key and tenancy, made once per checkout (never a key from the source).
auth_env() {
  local file=$STATE/auth.env
  if [[ ! -s $file ]]; then
    (umask 077; {
      echo "export OPSAT_ENVIRONMENT=dev OPSAT_AUTH_MODE=dev"
      echo "export OPSAT_AUTH_DEV_KEY=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
      echo "export OPSAT_PROVIDER_ORGANISATIONS='[\"ops\"]'"
      echo "export OPSAT_SERVICE_ACCOUNTS='{\"monitoring\": [\"*\"]}'"
    } >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  # shellcheck disable=SC1090
  source "$file"
}

service_env() {  # $1 service, $2 index
  export OPSAT_DATABASE_URL="${PG_URL/postgresql:/postgresql+asyncpg:}/opsat_$1"
  export OPSAT_KAFKA_BOOTSTRAP OPSAT_HTTP_HOST=127.0.0.1
  export OPSAT_HTTP_PORT=$((BASE_PORT + 10 * $2)) OPSAT_WORKER_PORT=$((BASE_PORT + 10 * $2 + 1))
  export OPSAT_LOG_JSON=${OPSAT_LOG_JSON:-true}
  export OPSAT_HTTP_WORKERS=${OPSAT_HTTP_WORKERS:-0}  # one uvicorn process per core
  # One worker per service here: a stable member id lets a restarted worker take its partitions back at once.
  export OPSAT_KAFKA_GROUP_INSTANCE_ID=${OPSAT_KAFKA_GROUP_INSTANCE_ID:-$1-worker-0}
  # Business services whose outages monitoring reports to the SLA monitor (name -> availability target %).
  export OPSAT_BUSINESS_SERVICES=${OPSAT_BUSINESS_SERVICES:-'{"mail": 99.9, "erp": 99.9, "vpn": 99.5, "wifi": 99.5, "portal": 99.5}'}
}

start() {  # $1 service, $2 role (api|worker), $3 port
  local pidfile=$RUN/$1-$2.pid
  if alive "$pidfile"; then return 0; fi
  port_in_use "$3" && die "port $3 is taken (by another program); set OPSAT_BASE_PORT to move the services"
  setsid nohup "$VENV/bin/opsat-$1" "$2" >>"$LOGS/$1-$2.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

wait_ready() {  # $1 url, $2 log
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  tail -n 20 "$2" >&2 || true
  die "$1 did not become ready; log: $2"
}

SMTP_PORT=$((BASE_PORT + 25))

# The survey emails go to a local sink: aiosmtpd writing every message it receives into a Maildir.
mail_sink() {
  local pidfile=$RUN/smtp-sink.pid
  mkdir -p "$STATE/mail/cur" "$STATE/mail/new" "$STATE/mail/tmp"  # a Maildir
  if ! alive "$pidfile"; then
    port_in_use "$SMTP_PORT" && die "port $SMTP_PORT is taken (by another program); set OPSAT_BASE_PORT"
    setsid nohup "$VENV/bin/python" -m aiosmtpd -n -u -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox \
      "$STATE/mail" >>"$LOGS/smtp-sink.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  export OPSAT_SMTP_HOST=127.0.0.1 OPSAT_SMTP_PORT=$SMTP_PORT
  export OPSAT_ANSWER_BASE_URL=${OPSAT_ANSWER_BASE_URL:-http://127.0.0.1:$((BASE_PORT + 20))/survey}
}

up() {
  load_infra
  mkdir -p "$LOGS" "$RUN"
  auth_env
  local i=0
  for svc in "$@"; do
    [[ $svc == feedback ]] && mail_sink
    service_env "$svc" "$i"
    "$VENV/bin/python" - "$PG_URL" "opsat_$svc" <<'PY'
import asyncio, sys, asyncpg
async def main(url, name):
    conn = await asyncpg.connect(url + "/postgres")
    if not await conn.fetchval("select 1 from pg_database where datname = $1", name):
        await conn.execute(f'create database "{name}"')
    await conn.close()
asyncio.run(main(*sys.argv[1:]))
PY
    "$VENV/bin/opsat-$svc" migrate >>"$LOGS/$svc-migrate.log" 2>&1 || { tail -n 20 "$LOGS/$svc-migrate.log" >&2; die "migrating $svc failed"; }
    start "$svc" api "$OPSAT_HTTP_PORT"
    start "$svc" worker "$OPSAT_WORKER_PORT"
    wait_ready "http://127.0.0.1:$OPSAT_HTTP_PORT/readyz" "$LOGS/$svc-api.log"
    wait_ready "http://127.0.0.1:$OPSAT_WORKER_PORT/readyz" "$LOGS/$svc-worker.log"
    echo "$svc  API     http://127.0.0.1:$OPSAT_HTTP_PORT   (docs: /docs, events: /api/v1/events/asyncapi.json)"
    echo "$svc  worker  http://127.0.0.1:$OPSAT_WORKER_PORT   (/healthz /readyz /metrics)"
    i=$((i + 1))
  done
  echo "Kafka       $OPSAT_KAFKA_BOOTSTRAP   (topic: opsat.<service>.events; tail: $VENV/bin/opsat-tail --from-beginning)"
  echo "PostgreSQL  $PG_URL   (one database per service: opsat_<service>)"
  echo "Tokens      . $STATE/auth.env; $VENV/bin/opsat-token --sub alice --org acme   (the key: $STATE/auth.env)"
  if alive "$RUN/smtp-sink.pid"; then
    echo "Mail sink   smtp://127.0.0.1:$SMTP_PORT   (caught emails, one file each: ls $STATE/mail/new;"
    echo "            read them: $VENV/bin/python -c \"import mailbox, email.header as h; [print(m['To'], h.make_header(h.decode_header(m['Subject'])), m.get_payload(decode=True).decode(), sep='\\n') for m in mailbox.Maildir('$STATE/mail')]\")"
  fi
  echo "Logs        $LOGS      Stop: make stop"
}

down() {
  for svc in "$@"; do
    for role in api worker; do
      local pidfile=$RUN/$svc-$role.pid
      if alive "$pidfile"; then
        kill -TERM "$(cat "$pidfile")"
        for _ in $(seq 1 50); do alive "$pidfile" || break; sleep 0.2; done
        # started with setsid: the group holds uvicorn's worker processes too
        alive "$pidfile" && kill -KILL -- "-$(cat "$pidfile")"
      fi
      rm -f "$pidfile"
    done
    if [[ $svc == feedback ]] && alive "$RUN/smtp-sink.pid"; then
      kill -TERM "$(cat "$RUN/smtp-sink.pid")"; rm -f "$RUN/smtp-sink.pid"
    fi
  done
}

status() {
  for svc in "$@"; do
    for role in api worker; do
      if alive "$RUN/$svc-$role.pid"; then echo "$svc $role: running (pid $(cat "$RUN/$svc-$role.pid"))"
      else echo "$svc $role: stopped"; fi
    done
  done
}

cmd=${1:-}; shift || true
[[ $# -gt 0 ]] || set -- intake sla feedback risk appraisal
case $cmd in
  up) up "$@" ;;
  down) down "$@" ;;
  status) status "$@" ;;
  *) echo "usage: services.sh up|down|status [SERVICE...]" >&2; exit 2 ;;
esac
