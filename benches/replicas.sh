#!/usr/bin/env bash
# What sharing state costs: POST /v1/chat through the stand-in model (examples/stand-in.rs) on
# the scale catalog, in three set-ups taking turns on the same machine and load:
#
#   one-sqlite  one replica, conversation log in SQLite, rate limits per process
#   one-redis   the same replica, rate limits counted in Redis (the GCRA script)
#   *-many      the same two, every request from another client address (X-Forwarded-For), so
#               every request is a caller of its own: no cells are taken ahead, each one asks Redis
#   two-lb      two replicas behind HAProxy (deploy/haproxy.cfg), log in PostgreSQL, limits and
#               recent answers in Redis
#
#   bash benches/replicas.sh            (RUNS=3 DURATION=10s CONNS=64 LESSONS_N=2116)
#
# Prints the median of RUNS runs per set-up, and for two-lb the log rows PostgreSQL received
# per second and the records dropped. Every limit is set far above the load, so each request
# pays for a bucket update without being refused. PostgreSQL, Redis and HAProxy come from
# Debian's packages (installed when missing) and run on free loopback ports in a temporary
# folder; on a 2-core machine everything shares the same cores, so the point is overhead.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$HERE/benches/lib.sh"
bench_setup

PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
missing=()
[ -x "$PGBIN/postgres" ] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cd "$HERE"
catalog_and_stand_in "$HERE"
TUTOR="$HERE/target/release/tutor"
request_mix "$CATALOG" "$WORK/chat.lua" "$WORK/question" >/dev/null
sed "s/{\['Content-Type'\]='application\/json'}/{['Content-Type']='application\/json', ['X-Forwarded-For']='10.'..math.random(0,255)..'.'..math.random(0,255)..'.'..math.random(0,255)}/" \
  "$WORK/chat.lua" >"$WORK/chat-many.lua"
grep -q X-Forwarded-For "$WORK/chat-many.lua"

# PostgreSQL and Redis of our own.
chmod 755 "$WORK"
PGDATA="$WORK/pg"; mkdir -p "$PGDATA"
[ "$(id -u)" = 0 ] && chown postgres: "$PGDATA"
PGPORT=$(free_port)
as_pg "$PGBIN/initdb" -U tutor -A trust --no-sync -E UTF8 -D "$PGDATA" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/postgres.log" -w \
  -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; bench_cleanup' EXIT
PG_URL="postgres://tutor@127.0.0.1:$PGPORT/postgres"
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 &
PIDS+=("$!")

"$TUTOR" --lessons "$CATALOG" --index "$WORK/index" index >/dev/null

config() {  # NAME LOG REDIS(yes|no) -> path of a tutor.toml
  local file="$WORK/$1.toml"
  {
    echo "index_read_only = true"
    echo "log = \"$2\""
    [ "$3" = yes ] && echo "redis_url = \"redis://127.0.0.1:$REDIS_PORT/\""
    echo "[limits]"
    echo "per_minute = 1000000000"
    echo "burst = 1000000"
    echo "client_ip_header = \"x-forwarded-for\""
  } >"$file"
  echo "$file"
}

start_replica() {  # CONFIG -> sets PORT (pid appended to PIDS and REPLICAS)
  PORT=$(free_port)
  OPENAI_BASE_URL="http://127.0.0.1:$UP/v1" OPENAI_API_KEY=test TUTOR_MODEL=stand-in \
    "$TUTOR" --config "$1" --lessons "$CATALOG" --index "$WORK/index" serve --addr "127.0.0.1:$PORT" \
    >/dev/null 2>>"$WORK/serve.log" &
  PIDS+=("$!"); REPLICAS+=("$!")
  wait_ready "$PORT" >/dev/null
}

rows() { psql -At -h 127.0.0.1 -p "$PGPORT" -U tutor postgres -c "SELECT count(*) FROM answers" 2>/dev/null || echo 0; }
dropped() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^tutor_log_writes_dropped_total/ {s += $2} END {print s + 0}'; }

run_wrk() {  # NAME PORT [LUA]
  local lua="${3:-$WORK/chat.lua}"
  wrk -t2 -c"$CONNS" -d2s -s "$lua" "http://127.0.0.1:$2" >/dev/null  # warm-up
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$lua" "http://127.0.0.1:$2" >"$WORK/wrk.txt"
  parse "$WORK/wrk.txt" >>"$WORK/runs-$1.txt"
}

stop_replicas() {
  local p
  for p in "${REPLICAS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  REPLICAS=()
}

for _ in $(seq 1 "$RUNS"); do
  REPLICAS=()
  start_replica "$(config one-sqlite "$WORK/log.sqlite" no)"
  run_wrk one-sqlite "$PORT"; run_wrk one-sqlite-many "$PORT" "$WORK/chat-many.lua"; stop_replicas

  start_replica "$(config one-redis "$WORK/log.sqlite" yes)"
  run_wrk one-redis "$PORT"; run_wrk one-redis-many "$PORT" "$WORK/chat-many.lua"; stop_replicas

  cfg=$(config two-lb "$PG_URL" yes)
  start_replica "$cfg"; a=$PORT
  start_replica "$cfg"; b=$PORT
  LB=$(free_port)
  TUTOR_LB_BIND="127.0.0.1:$LB" TUTOR_REPLICA_A="127.0.0.1:$a" TUTOR_REPLICA_B="127.0.0.1:$b" \
    haproxy -f "$HERE/deploy/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 </dev/null &
  HA=$!; PIDS+=("$HA")
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$LB/readyz")" = 200 ] && break; sleep 0.1
  done
  sleep 2  # both replicas up in HAProxy (rise 2, inter 1 s)
  before=$(rows); t0=$(now)
  run_wrk two-lb "$LB"
  sleep 1  # the writers' last batches
  after=$(rows); elapsed=$(ms_since "$t0")
  echo "$(( (after - before) * 1000 / elapsed )) $(( $(dropped "$a") + $(dropped "$b") ))" >>"$WORK/log-two-lb.txt"
  kill "$HA"; wait "$HA" 2>/dev/null || true
  stop_replicas
done

runs_table one-sqlite one-redis one-sqlite-many one-redis-many two-lb
echo
echo "two-lb: log rows written to PostgreSQL per second (runs): $(cut -d' ' -f1 "$WORK/log-two-lb.txt" | tr '\n' ' '); records dropped: $(awk '{s += $2} END {print s}' "$WORK/log-two-lb.txt")"
