#!/usr/bin/env bash
# ingest.sh -- `make bench`'s ingest figures (after bench/run.sh), in one run on a stack of
# their own (every service, release build in build/bench, var in build/bench/var-ingest):
#   - the ceilings: PostgreSQL doing the projection's write set alone in batches of
#     BENCH_PG_BATCH (bench_pg, bench/pg_ceiling.c), before and after the load (the mean
#     is the ceiling: this VM's speed drifts), and JetStream storing the same events through
#     spbus's batches of async publishes (bench_js, bench/js_ceiling.c);
#   - ingest's throughput end to end (bench/ingest.mjs): BENCH_CAMERAS cameras posting
#     batches of BENCH_BATCH for BENCH_INGEST_S s through the gateway, counting the
#     SlotStatusChanged a NATS subscriber receives;
#   - the latency at a steady BENCH_RATE events/s from each POST to its SlotStatusChanged;
#   - the peak RSS (VmHWM) of every service.
# Bars (issue "Device ingest and the status projection"): throughput >= 0.5 of the
# PostgreSQL ceiling; p50 <= 5 ms, p99 <= 25 ms; every service under 100 MiB.
# Writes bench/results/<date>-ingest.json, <date>-ingest.md and latest-ingest.md.
#
# environment: BENCH_CAMERAS (16), BENCH_BATCH (100), BENCH_INGEST_S (30), BENCH_RATE (2000),
#   BENCH_RATE_BATCH (10), BENCH_LATENCY_S (20), BENCH_PG_BATCH (256, the projection's
#   fetch), BENCH_CEILING_S (10), BENCH_NOTE, BENCH_SKIP_BUILD=1, BENCH_BUILD (build/bench),
#   SP_BENCH_INGEST_NATS_PORT (14232), _PG_PORT (55452), _REDIS_PORT (56399),
#   _HTTP_PORT (18082, the gateway), _EDGE_PORT (18072, nginx).
# The stack's admin ports are tools/dev/stack.sh's fixed 9100-9105.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BENCH_BUILD:-build/bench}
VAR=$ROOT/$BUILD/var-ingest
RESULTS=$ROOT/bench/results
CAMERAS=${BENCH_CAMERAS:-16}
BATCH=${BENCH_BATCH:-100}
PG_BATCH=${BENCH_PG_BATCH:-256}
CEILING_S=${BENCH_CEILING_S:-10}
NATS_PORT=${SP_BENCH_INGEST_NATS_PORT:-14232}
PG_PORT=${SP_BENCH_INGEST_PG_PORT:-55452}
REDIS_PORT=${SP_BENCH_INGEST_REDIS_PORT:-56399}
HTTP_PORT=${SP_BENCH_INGEST_HTTP_PORT:-18082}
EDGE_PORT=${SP_BENCH_INGEST_EDGE_PORT:-18072}
SERVICES=(gateway auth tenancy catalog ingest projection)
declare -A ADMIN_PORT=([gateway]=9100 [auth]=9101 [tenancy]=9102 [catalog]=9103
                       [ingest]=9104 [projection]=9105)

say() { printf 'bench-ingest: %s\n' "$*"; }
die() { printf 'bench-ingest: %s\n' "$*" >&2; exit 1; }

tools/dev/deps.sh
{ [ -d node_modules ] && [ ! package-lock.json -nt node_modules ]; } || npm ci --no-audit --no-fund

# ---- release build: every service, spctl and the ceilings ----------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  say "BENCH_SKIP_BUILD=1: using the binaries already in $BUILD"
else
  say "building $BUILD (RelWithDebInfo)"
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_TESTS=OFF -DSP_BENCH=ON >/dev/null
  cmake --build "$BUILD" --target "${SERVICES[@]}" spctl bench_js bench_pg -j "${BENCH_JOBS:-2}" >/dev/null
fi
for b in "${SERVICES[@]}" spctl bench_js bench_pg; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is not built"
done

STACK_PID=""
cleanup() {
  set +e
  if [ -n "$STACK_PID" ] && kill -0 "$STACK_PID" 2>/dev/null; then
    say "stopping the stack"
    kill -TERM "$STACK_PID"; wait "$STACK_PID" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for svc in "${SERVICES[@]}"; do
  port_taken "${ADMIN_PORT[$svc]}" && die "admin port ${ADMIN_PORT[$svc]} is taken (a stack running?): stop it first"
done
free_from() {
  local p=$1
  while port_taken "$p" || ss -tanH "sport = :$p" 2>/dev/null | grep -q .; do p=$((p + 1)); done
  echo "$p"
}
NATS_PORT=$(free_from "$NATS_PORT")
PG_PORT=$(free_from "$PG_PORT")
REDIS_PORT=$(free_from "$REDIS_PORT")
HTTP_PORT=$(free_from "$HTTP_PORT")
EDGE_PORT=$(free_from "$EDGE_PORT")

# ---- the stack (the demo data gives the client and establishment; camsim drives its lot at
# one change a second, as on make run) --------------------------------------------------------
mkdir -p "$VAR"
say "starting the stack (log: $VAR/stack.log)"
SP_VAR_DIR=$VAR SP_NATS_PORT=$NATS_PORT SP_PG_PORT=$PG_PORT SP_REDIS_PORT=$REDIS_PORT \
  SP_HTTP_PORT=$EDGE_PORT SP_GATEWAY_PORT=$HTTP_PORT setsid tools/dev/stack.sh "$BUILD" >"$VAR/stack.log" 2>&1 </dev/null &
STACK_PID=$!
deadline=$((SECONDS + 180))
until grep -q 'SmartPark is running' "$VAR/stack.log" 2>/dev/null; do
  kill -0 "$STACK_PID" 2>/dev/null || { tail -n 30 "$VAR/stack.log" >&2; die "the stack did not start"; }
  [ $SECONDS -ge $deadline ] && die "the stack did not start within 180 s: see $VAR/stack.log"
  sleep 0.5
done
set -a
# shellcheck disable=SC1091
. "$VAR/secrets.env"
# shellcheck disable=SC1091
. "$VAR/demo.env"
set +a
NATS_URL=nats://127.0.0.1:$NATS_PORT
DB_URL=postgresql://sp:$SP_PG_PASSWORD@127.0.0.1:$PG_PORT/smartpark

pid_on_port() { ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2; }
declare -A PID
for svc in "${SERVICES[@]}"; do PID[$svc]=$(pid_on_port "${ADMIN_PORT[$svc]}"); done

# ---- the run ---------------------------------------------------------------------------------
pg_ceiling() {
  say "PostgreSQL ceiling ($1): the projection's write set alone, batches of $PG_BATCH, ${CEILING_S} s"
  "$BUILD/bench_pg" "$DB_URL" "$CAMERAS" "$BATCH" "$PG_BATCH" "$CEILING_S" | tee "$VAR/pg-$1.json"
}
pg_ceiling before
say "JetStream ceiling: $CAMERAS threads publishing batches of $BATCH, ${CEILING_S} s"
"$BUILD/bench_js" "$NATS_URL" spctl "$SP_NATS_SPCTL_PASSWORD" "$CAMERAS" "$BATCH" "$CEILING_S" |
  tee "$VAR/js.json"

say "cameras: throughput, then latency at a steady rate"
SP_BASE_URL=http://127.0.0.1:$HTTP_PORT SP_NATS_URL=$NATS_URL SP_NATS_USER=spctl \
  SP_NATS_PASSWORD=$SP_NATS_SPCTL_PASSWORD SP_ADMIN_EMAIL=admin@smartpark.local \
  SP_ADMIN_PASSWORD=${SP_ADMIN_PASSWORD:-admin-change-me} \
  SP_ESTABLISHMENT_ID=$SP_DEMO_ESTABLISHMENT_ID SP_CLIENT_ID=$SP_DEMO_CLIENT_ID \
  SP_PROTO_DIR=$ROOT/proto BENCH_CAMERAS=$CAMERAS BENCH_BATCH=$BATCH \
  node bench/ingest.mjs >"$VAR/cameras.json"
pg_ceiling after

for svc in "${SERVICES[@]}"; do
  curl -s "http://127.0.0.1:${ADMIN_PORT[$svc]}/metrics" >"$VAR/$svc-metrics.txt" || true
  awk '/^VmHWM/ {print $2}' "/proc/${PID[$svc]}/status" >"$VAR/$svc-hwm.txt" 2>/dev/null || echo 0 >"$VAR/$svc-hwm.txt"
done

# ---- results ---------------------------------------------------------------------------------
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
python3 - "$VAR" "$RESULTS" "$STAMP" "${BENCH_NOTE:-}" "${SERVICES[*]}" <<'EOF'
import json, os, platform, sys
var, out, stamp, note, services = sys.argv[1:]
load = lambda n: json.load(open(os.path.join(var, n)))
pg = [load('pg-before.json'), load('pg-after.json')]
js = load('js.json')
cams = load('cameras.json')
tp, lat = cams['throughput'], cams['latency']
pg_ceiling = sum(p['events_per_s'] for p in pg) / 2
rss = {s: round(int(open(os.path.join(var, f'{s}-hwm.txt')).read().strip() or 0) / 1024, 1)
       for s in services.split()}
ratio = round(tp['events_per_s'] / pg_ceiling, 3)
bars = {
    'throughput': {'ratio_to_pg_ceiling': ratio, 'min': 0.5, 'met': ratio >= 0.5},
    'latency': {'p50_ms': lat['p50_ms'], 'p99_ms': lat['p99_ms'], 'max_p50_ms': 5,
                'max_p99_ms': 25, 'met': lat['p50_ms'] <= 5 and lat['p99_ms'] <= 25
                and lat['lost'] == 0},
    'rss': {'max_mib': 100, 'met': all(v < 100 for v in rss.values())},
}
res = {'date': stamp, 'host': platform.node(), 'cpus': os.cpu_count(), 'note': note,
       'throughput': tp, 'latency': lat, 'pg_ceiling': pg, 'js_ceiling': js,
       'pg_ceiling_events_per_s': pg_ceiling,
       'ratio_to_js_ceiling': round(tp['events_per_s'] / js['events_per_s'], 3),
       'peak_rss_mib': rss, 'bars': bars}
with open(os.path.join(out, f'{stamp}-ingest.json'), 'w') as f:
    json.dump(res, f, indent=2)
    f.write('\n')
met = lambda b: 'met' if b['met'] else '**NOT met**'
md = [f'# Ingest benchmark {stamp}', '',
      f'{res["cpus"]} CPUs ({res["host"]}), one run on its own stack (bench/ingest.sh).', '']
if note:
    md += [f'What changed: {note}', '']
md += ['| figure | events/s | ratio |', '|---|---:|---:|',
       f'| ingest end to end: {tp["cameras"]} cameras, batches of {tp["batch"]}, {tp["seconds"]} s, '
       f'changes received on the bus | {tp["events_per_s"]} | {ratio} of PostgreSQL |',
       f'| the cameras\' POSTs accepted (202) | {tp["post_rate"]} | |',
       f'| PostgreSQL ceiling: the write set alone, batches of {pg[0]["batch"]} (before / after) | '
       f'{pg_ceiling:.0f} ({pg[0]["events_per_s"]} / {pg[1]["events_per_s"]}) | 1 |',
       f'| JetStream ceiling: the same events through spbus, {tp["cameras"]} threads | '
       f'{js["events_per_s"]} | {res["ratio_to_js_ceiling"]} (ingest / it) |', '',
       f'Latency at {lat["rate"]} events/s (batches of {lat["batch"]}, {lat["seconds"]} s, '
       f'{lat["measured"]} events measured, {lat["lost"]} lost), POST to SlotStatusChanged at '
       f'a NATS subscriber: p50 {lat["p50_ms"]} ms, p90 {lat["p90_ms"]} ms, p99 '
       f'{lat["p99_ms"]} ms, max {lat["max_ms"]} ms; of it, the POST\'s own answer (202): p50 '
       f'{lat["post_p50_ms"]} ms, p99 {lat["post_p99_ms"]} ms, and from the POST to the '
       f'projection\'s transaction (the change\'s recordedAt): p50 {lat["applied_p50_ms"]} ms, '
       f'p99 {lat["applied_p99_ms"]} ms.', '',
       'Peak RSS (MiB): ' + ', '.join(f'{k} {v}' for k, v in rss.items()) + '.', '',
       f'Bars: throughput >= 0.5 of the PostgreSQL ceiling: {met(bars["throughput"])}; '
       f'p50 <= 5 ms and p99 <= 25 ms: {met(bars["latency"])}; every service under 100 MiB: '
       f'{met(bars["rss"])}. After the load the projection caught up in '
       f'{tp["caught_up_after_s"]} s; {tp["refused_batches"]} batches were refused.']
text = '\n'.join(md) + '\n'
for name in (f'{stamp}-ingest.md', 'latest-ingest.md'):
    with open(os.path.join(out, name), 'w') as f:
        f.write(text)
print(text)
EOF
say "results: bench/results/$STAMP-ingest.json, bench/results/$STAMP-ingest.md, bench/results/latest-ingest.md"
