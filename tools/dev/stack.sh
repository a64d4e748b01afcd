#!/usr/bin/env bash
# stack.sh -- the local SmartPark stack of `make run`: a private PostgreSQL, NATS with
# JetStream and Redis on loopback under var/, secrets, migrations, the first admin, then
# every service that is built, the gateway last, and nginx in front of it as the public
# HTTP listener (deploy/nginx/edge.conf.template). Ctrl-C / SIGTERM stops everything it
# started. A second run reuses var/ (data and secrets).
#
# usage: tools/dev/stack.sh BUILD_DIR
# environment: SP_VAR_DIR, SP_NATS_PORT (4222), SP_PG_PORT (55432), SP_REDIS_PORT (56379),
#   SP_HTTP_PORT (8080, nginx), SP_GATEWAY_PORT (8081, the gateway behind it),
#   SP_ADMIN_PASSWORD (admin-change-me), SP_NATS_SUBSCRIBER_USER /
#   _PASSWORD, SP_NATS_CAMERA_USER / _PASSWORD, SP_NATS_GOMAXPROCS (nats-server's
#   GOMAXPROCS: 1 on hosts of up to 4 CPUs, else Go's default).
set -euo pipefail

# ---- settings ----------------------------------------------------------------------------
if [ $# -ne 1 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  echo "usage: tools/dev/stack.sh BUILD_DIR   (what 'make run' calls)" >&2
  [ $# -eq 1 ] && exit 0 || exit 1
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "$ROOT" && cd "$1" && pwd)
SPCTL=$BUILD/spctl

NATS_PORT=${SP_NATS_PORT:-4222}
PG_PORT=${SP_PG_PORT:-55432}
REDIS_PORT=${SP_REDIS_PORT:-56379}
HTTP_PORT=${SP_HTTP_PORT:-8080}
GATEWAY_PORT=${SP_GATEWAY_PORT:-8081}
ADMIN_EMAIL=admin@smartpark.local
ADMIN_PASSWORD=${SP_ADMIN_PASSWORD:-admin-change-me}

# Services in start order (the gateway last) and their admin ports; a binary that is not
# built is skipped.
SERVICES=(auth tenancy catalog ingest projection gateway)
declare -A ADMIN_PORT=([gateway]=9100 [auth]=9101 [tenancy]=9102 [catalog]=9103
                       [ingest]=9104 [projection]=9105)

NATS_URL=nats://127.0.0.1:$NATS_PORT

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# ---- cleanup: everything we started, newest first ----------------------------------------
PIDS=()      # background processes, in start order
NAMES=()
PG_STARTED=0
STOPPING=0

stop_all() {
  local rc=$1 i pid deadline
  [ "$STOPPING" = 1 ] && return
  STOPPING=1
  set +e
  trap '' INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    kill -0 "$pid" 2>/dev/null || continue
    say "stopping ${NAMES[$i]} (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "${NAMES[$i]} did not stop in 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  if [ "$PG_STARTED" = 1 ]; then
    say "stopping postgresql"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1
  fi
  exit "$rc"
}
trap 'stop_all $?' EXIT
trap 'echo; stop_all 0' INT TERM

# ---- helpers -----------------------------------------------------------------------------
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_tcp() { # name port pid
  local deadline=$((SECONDS + 30))
  until port_taken "$2"; do
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then die "$1 exited during start"; fi
    [ $SECONDS -ge $deadline ] && die "$1 did not answer on 127.0.0.1:$2 within 30 s"
    sleep 0.1
  done
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_bg() { # name logfile command...
  local name=$1 log=$2
  shift 2
  # own session: Ctrl-C reaches only this script, which stops everything in order
  setsid "$@" >>"$log" 2>&1 </dev/null &
  PIDS+=($!)
  NAMES+=("$name")
}

# ---- checks before starting anything -----------------------------------------------------
[ -x "$SPCTL" ] || die "$SPCTL is missing: build first (make build)"
for p in "NATS:$NATS_PORT:SP_NATS_PORT" "PostgreSQL:$PG_PORT:SP_PG_PORT" "Redis:$REDIS_PORT:SP_REDIS_PORT"; do
  IFS=: read -r what port var <<<"$p"
  port_taken "$port" && die "port $port ($what) is already taken: stop what uses it or set $var"
done
for svc in "${SERVICES[@]}"; do
  [ -x "$BUILD/$svc" ] || continue
  port_taken "${ADMIN_PORT[$svc]}" && die "port ${ADMIN_PORT[$svc]} ($svc admin) is already taken"
  if [ "$svc" = gateway ] && port_taken "$HTTP_PORT"; then
    die "port $HTTP_PORT (public HTTP) is already taken: set SP_HTTP_PORT"
  fi
  if [ "$svc" = gateway ] && port_taken "$GATEWAY_PORT"; then
    die "port $GATEWAY_PORT (gateway behind nginx) is already taken: set SP_GATEWAY_PORT"
  fi
done
command -v nats-server >/dev/null || die "nats-server is not installed (make deps)"
command -v redis-server >/dev/null || die "redis-server is not installed (make deps)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is not installed (make deps)"
PGBIN=$(pg_config --bindir 2>/dev/null || true)
[ -x "$PGBIN/initdb" ] || PGBIN=/usr/lib/postgresql/15/bin
[ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found (make deps)"

# ---- var/ ----------------------------------------------------------------------------------
VAR=${SP_VAR_DIR:-$ROOT/var}
mkdir -p "$VAR/log" "$VAR/nats" "$VAR/redis"
VAR=$(cd "$VAR" && pwd)
LOG=$VAR/log

# ---- secrets -----------------------------------------------------------------------------
# Made on the first start (and any missing key added later), before any server: the
# PostgreSQL superuser's and each service role's password, Redis's, NATS's, the JWT key.
"$SPCTL" gen-secrets "$VAR/secrets.env"
set -a
# shellcheck disable=SC1091
source "$VAR/secrets.env"
set +a
# the superuser's URL, for migrations and the first admin only; each service has its own
DB_URL=postgresql://sp:$SP_PG_PASSWORD@127.0.0.1:$PG_PORT/smartpark
REDIS_URL=redis://:$SP_REDIS_PASSWORD@127.0.0.1:$REDIS_PORT

# ---- PostgreSQL ------------------------------------------------------------------------------
# Root must run it as postgres, which must be able to traverse every parent of var/;
# otherwise (a checkout under /root) the cluster lives in a private dir under /var/tmp.
PGDATA=$VAR/pg
PGLOG=$LOG/postgres.log
if [ "$(id -u)" -eq 0 ]; then
  if ! runuser -u postgres -- test -x "$VAR" 2>/dev/null; then
    # keyed by the var/ path (the repository's unless SP_VAR_DIR), so two stacks never share
    PGHOME=/var/tmp/smartpark-pg-$(printf '%s' "$VAR" | sha256sum | cut -c1-12)
    mkdir -p "$PGHOME"
    chown postgres: "$PGHOME"
    chmod 0700 "$PGHOME"
    PGDATA=$PGHOME/data
    PGLOG=$PGHOME/postgres.log
    ln -sfn "$PGLOG" "$LOG/postgres.log"
    say "postgres cannot reach $VAR: PostgreSQL data is in $PGDATA"
  fi
  mkdir -p "$PGDATA"
  chown postgres: "$PGDATA"
  touch "$PGLOG"
  chown postgres: "$PGLOG"
fi
mkdir -p "$PGDATA"
chmod 0700 "$PGDATA"
# the Unix socket path must stay under 108 bytes; we connect over TCP anyway
PGSOCK=$PGDATA
if [ ${#PGSOCK} -gt 80 ]; then
  PGSOCK=/tmp/smartpark-pgsock-$(printf '%s' "$PGDATA" | sha256sum | cut -c1-12)
  mkdir -p "$PGSOCK"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$PGSOCK"
  chmod 0700 "$PGSOCK"
fi
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  say "initdb $PGDATA"
  # no trust: every connection, over TCP or the socket, needs its role's password
  pwfile=$(mktemp)
  printf '%s\n' "$SP_PG_PASSWORD" >"$pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U sp --auth=scram-sha-256 --pwfile="$pwfile" -E UTF8 \
    >>"$PGLOG" 2>&1 || { rm -f "$pwfile"; die "initdb failed: see $PGLOG"; }
  rm -f "$pwfile"
fi
say "starting postgresql on 127.0.0.1:$PG_PORT"
# never piped: the server would inherit the pipe and pg_ctl would hang
PG_STARTED=1
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 \
  -o "-p $PG_PORT -k $PGSOCK -c listen_addresses=127.0.0.1" start >/dev/null 2>&1 ||
  die "postgresql did not start: see $PGLOG"
export PGPASSWORD=$SP_PG_PASSWORD
PSQL=("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U sp -X -q -v ON_ERROR_STOP=1)
if grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$PGDATA/pg_hba.conf" 2>/dev/null; then
  # a var/ from before passwords: give the superuser its password, then require it
  "${PSQL[@]}" -d postgres -c "ALTER ROLE sp PASSWORD '$SP_PG_PASSWORD'" >/dev/null
  as_pg sed -i -E 's/^([^#]*[[:space:]])trust([[:space:]]|$)/\1scram-sha-256\2/' "$PGDATA/pg_hba.conf"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" reload >/dev/null
  say "PostgreSQL now requires passwords (pg_hba.conf: trust replaced by scram-sha-256)"
fi
if [ "$("${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'smartpark'")" != 1 ]; then
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE smartpark" >/dev/null
  say "created database smartpark"
fi

# ---- NATS and Redis --------------------------------------------------------------------------
"$SPCTL" nats-config --listen "127.0.0.1:$NATS_PORT" --store "$VAR/nats" --out "$VAR/nats.conf"
# On a small host that nats-server shares with every service, PostgreSQL and Redis, one Go
# processor spares it the wake-ups of Go's idle threads: per request through the gateway
# its CPU fell from 25 to 19 us and its context switches by half (bench/results,
# 2026-12-02). A larger host keeps Go's default (one processor per CPU).
NATS_PROCS=${SP_NATS_GOMAXPROCS:-}
[ -z "$NATS_PROCS" ] && [ "$(nproc)" -le 4 ] && NATS_PROCS=1
say "starting nats-server on 127.0.0.1:$NATS_PORT${NATS_PROCS:+ (GOMAXPROCS=$NATS_PROCS)}"
if [ -n "$NATS_PROCS" ]; then
  start_bg nats "$LOG/nats.log" env GOMAXPROCS="$NATS_PROCS" nats-server -c "$VAR/nats.conf"
else
  start_bg nats "$LOG/nats.log" nats-server -c "$VAR/nats.conf"
fi
wait_tcp nats "$NATS_PORT" "${PIDS[-1]}"

say "starting redis on 127.0.0.1:$REDIS_PORT"
# the password in a file of our own (0600), not on a command line every user can read
(umask 077 && printf 'requirepass %s\n' "$SP_REDIS_PASSWORD" >"$VAR/redis.conf")
start_bg redis "$LOG/redis.log" redis-server "$VAR/redis.conf" --bind 127.0.0.1 \
  --port "$REDIS_PORT" --dir "$VAR/redis" --daemonize no --protected-mode yes
wait_tcp redis "$REDIS_PORT" "${PIDS[-1]}"
deadline=$((SECONDS + 30))
until [ "$(REDISCLI_AUTH=$SP_REDIS_PASSWORD redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
  [ $SECONDS -ge $deadline ] && die "redis did not answer PING within 30 s: see $LOG/redis.log"
  sleep 0.1
done

# ---- migrations and the first admin --------------------------------------------------------
SP_MIGRATIONS_DIR=$ROOT/migrations SP_DATABASE_URL=$DB_URL SP_NATS_URL=$NATS_URL \
  SP_NATS_USER=spctl SP_NATS_PASSWORD=$SP_NATS_SPCTL_PASSWORD "$SPCTL" migrate
SP_DATABASE_URL=$DB_URL SP_ADMIN_PASSWORD=$ADMIN_PASSWORD \
  "$SPCTL" create-admin --email "$ADMIN_EMAIL"

# ---- services --------------------------------------------------------------------------------
ALL_PASSWORDS=(SP_NATS_GATEWAY_PASSWORD SP_NATS_AUTH_PASSWORD SP_NATS_TENANCY_PASSWORD
               SP_NATS_CATALOG_PASSWORD SP_NATS_INGEST_PASSWORD SP_NATS_PROJECTION_PASSWORD
               SP_NATS_SPCTL_PASSWORD SP_PG_PASSWORD SP_PG_AUTH_PASSWORD SP_PG_TENANCY_PASSWORD
               SP_PG_CATALOG_PASSWORD SP_PG_INGEST_PASSWORD SP_PG_PROJECTION_PASSWORD
               SP_REDIS_PASSWORD SP_ADMIN_PASSWORD PGPASSWORD SP_JWT_SECRET SP_MASTER_KEY)
STARTED=()
for svc in "${SERVICES[@]}"; do
  if [ ! -x "$BUILD/$svc" ]; then
    say "skipping $svc: $BUILD/$svc is not built"
    continue
  fi
  SVC=${svc^^}
  pass_var=SP_NATS_${SVC}_PASSWORD
  admin=${ADMIN_PORT[$svc]}
  # each service sees only its own passwords, in its URLs; a service with a schema
  # connects as its own role (spctl migrate made it the owner of that schema only)
  unset_others=()
  for v in "${ALL_PASSWORDS[@]}"; do unset_others+=(-u "$v"); done
  extra=()
  # behind nginx, which passes the client's address in X-Forwarded-For
  [ "$svc" = gateway ] && extra+=("SP_HTTP_ADDR=127.0.0.1:$GATEWAY_PORT" "SP_TRUSTED_PROXIES=127.0.0.1")
  # the keys only to the processes that use them: tokens (auth signs, the gateway checks),
  # the API keys' sealed secrets (catalog seals, ingest opens)
  case $svc in
    auth | gateway) extra+=("SP_JWT_SECRET=$SP_JWT_SECRET") ;;
    catalog | ingest) extra+=("SP_MASTER_KEY=$SP_MASTER_KEY") ;;
  esac
  pg_var=SP_PG_${SVC}_PASSWORD
  if [ -n "${!pg_var:-}" ]; then
    extra+=("SP_DATABASE_URL=postgresql://sp_$svc:${!pg_var}@127.0.0.1:$PG_PORT/smartpark")
  fi
  say "starting $svc (admin 127.0.0.1:$admin)"
  start_bg "$svc" "$LOG/$svc.log" env "${unset_others[@]}" \
    SP_NATS_URL="$NATS_URL" SP_NATS_USER="$svc" SP_NATS_PASSWORD="${!pass_var}" \
    SP_REDIS_URL="$REDIS_URL" \
    SP_ADMIN_ADDR="127.0.0.1:$admin" "${extra[@]}" "$BUILD/$svc"
  pid=${PIDS[-1]}
  deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      kill -0 "$pid" 2>/dev/null && why="not ready within 30 s" || why="exited"
      printf 'stack: %s %s; last lines of %s:\n' "$svc" "$why" "$LOG/$svc.log" >&2
      tail -n 20 "$LOG/$svc.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  STARTED+=("$svc")
done

# ---- the public listener: nginx in front of the gateway ------------------------------------------
if [ -x "$BUILD/gateway" ]; then
  EDGE=$VAR/edge
  SP_EDGE_ADDR=127.0.0.1:$HTTP_PORT SP_EDGE_UPSTREAM=127.0.0.1:$GATEWAY_PORT SP_EDGE_DIR=$EDGE \
    "$SPCTL" edge-config "$ROOT/deploy/nginx/edge.conf.template" "$VAR/edge.conf"
  # as root, the workers too run as root: they write the temporary files under var/
  edge_user=()
  [ "$(id -u)" -eq 0 ] && edge_user=(-g "user root;")
  say "starting nginx on 127.0.0.1:$HTTP_PORT (the gateway behind it on 127.0.0.1:$GATEWAY_PORT)"
  start_bg edge "$LOG/edge.log" "$NGINX" -e stderr -p "$EDGE" -c "$VAR/edge.conf" "${edge_user[@]}"
  pid=${PIDS[-1]}
  deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/healthz" || true)" = 200 ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      printf 'stack: nginx did not answer on 127.0.0.1:%s; last lines of %s:\n' "$HTTP_PORT" "$LOG/edge.log" >&2
      tail -n 20 "$LOG/edge.log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
fi

# ---- demo data (api.md, "Local stack defaults"), once, unless SP_DEMO=0 -----------------------------
DEMO_FILE=$VAR/demo.env
demo_line=""
if [ "${SP_DEMO:-1}" != 0 ] && [[ " ${STARTED[*]} " == *" catalog "* ]] && [[ " ${STARTED[*]} " == *" tenancy "* ]]; then
  if [ ! -s "$DEMO_FILE" ]; then
    say "seeding the demo data (SP_DEMO=0 skips it)"
    SP_NATS_URL="$NATS_URL" SP_NATS_USER=spctl SP_NATS_PASSWORD=$SP_NATS_SPCTL_PASSWORD \
      "$SPCTL" demo-seed --out "$DEMO_FILE" || die "the demo seed failed"
  fi
  # shellcheck disable=SC1090
  demo_line=$(. "$DEMO_FILE" && printf '  demo         lot %s (Demo Mall, P1, 40 slots), client %s\n               camera CAM-DEMO-01, X-API-Key %s' \
    "$SP_DEMO_LOT_ID" "$SP_DEMO_CLIENT_ID" "$SP_DEMO_API_KEY")
  # the demo camera, driven by the simulator: a car arrives or leaves every second or so
  if [[ " ${STARTED[*]} " == *" ingest "* ]] && [ -x "$BUILD/gateway" ]; then
    demo_lot=$(. "$DEMO_FILE" && echo "$SP_DEMO_LOT_ID")
    demo_key=$(. "$DEMO_FILE" && echo "$SP_DEMO_API_KEY")
    say "starting camsim on the demo lot (log $LOG/camsim.log)"
    start_bg camsim "$LOG/camsim.log" env SP_NATS_URL="$NATS_URL" SP_NATS_USER=spctl \
      SP_NATS_PASSWORD="$SP_NATS_SPCTL_PASSWORD" SP_CAMSIM_API_KEY="$demo_key" \
      SP_CAMSIM_URL="http://127.0.0.1:$HTTP_PORT" \
      "$SPCTL" camsim --lot "$demo_lot" --camera CAM-DEMO-01 --rate "${SP_CAMSIM_RATE:-1}"
    demo_line+=$'\n               animated by spctl camsim (SP_CAMSIM_RATE changes a second, default 1)'
  fi
fi

# ---- summary -----------------------------------------------------------------------------------
sub_user=${SP_NATS_SUBSCRIBER_USER:-subscriber}
cam_user=${SP_NATS_CAMERA_USER:-camera}
pw_note() { # variable default
  if [ -n "${!1:-}" ]; then echo "(from $1)"; else echo "$2"; fi
}
gw=""
[ -x "$BUILD/gateway" ] || gw="   (gateway not built)"
cat <<EOF

SmartPark is running (Ctrl-C stops everything)
  API          http://127.0.0.1:$HTTP_PORT/v1$gw
  docs         http://127.0.0.1:$HTTP_PORT/docs (OpenAPI: /v1/openapi.json)
  health       http://127.0.0.1:$HTTP_PORT/healthz, /readyz on each admin port (gateway 9100 .. projection 9105)
  edge         nginx on :$HTTP_PORT in front of the gateway on 127.0.0.1:$GATEWAY_PORT
  services     ${STARTED[*]:-none built}
  NATS         $NATS_URL (JetStream)
               integrations: $sub_user / $(pw_note SP_NATS_SUBSCRIBER_PASSWORD subscriber)
               cameras:      $cam_user / $(pw_note SP_NATS_CAMERA_PASSWORD camera)
  PostgreSQL   postgresql://sp@127.0.0.1:$PG_PORT/smartpark (password SP_PG_PASSWORD; each
               service as its own role sp_<service>; data: $PGDATA)
  Redis        redis://127.0.0.1:$REDIS_PORT (password SP_REDIS_PASSWORD)
  admin        $ADMIN_EMAIL / $(pw_note SP_ADMIN_PASSWORD admin-change-me)   (set on first start)
  secrets      $VAR/secrets.env
  logs         $LOG/
EOF
[ -n "$demo_line" ] && printf '%s\n' "$demo_line"
echo

# ---- wait: Ctrl-C / SIGTERM runs the trap; a process that dies stops the stack -------------------
while true; do
  set +e
  wait -n "${PIDS[@]}"
  rc=$?
  set -e
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      printf 'stack: %s exited (status %s); last lines of its log:\n' "${NAMES[$i]}" "$rc" >&2
      tail -n 20 "$LOG/${NAMES[$i]}.log" >&2 || true
      exit 1
    fi
  done
done
