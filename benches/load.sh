#!/usr/bin/env bash
# Load test of `tutor serve` on 127.0.0.1 over the 2,116-lesson scale catalog.
#
#   bash benches/load.sh            (RUNS=3 DURATION=10s CONNS=64 STREAMS=1000 LESSONS_N=2116)
#
# Measures, and prints as a Markdown table:
#   - index build from scratch and warm refresh (the `tutor index` command, wall clock);
#   - start-up with a built index (until /readyz is 200) and RSS at idle;
#   - POST /v1/chat with the extractive answerer: wrk -t2 -cCONNS, req/s, p50, p99 (median of RUNS);
#   - the same for the quiz and hint mix (quiz me, graded replies on a first and a last try, hints);
#   - peak RSS under that load;
#   - STREAMS concurrent streaming answers through the stand-in model (examples/stand-in.rs) paced
#     like a slow one, 50 chunks 20 ms apart (about 1 s): errors, which backend answered, time to
#     first event, RSS.
# MODEL_TLS=h2 (or h1) has the stand-in serve HTTPS with the test certificate, offering HTTP/2 and
# HTTP/1.1 (or HTTP/1.1 only), as a hosted provider does; the tutor trusts the test CA.
# TUTOR_BIN=PATH measures another build of the tutor (an A/B of two binaries, run in turns).
# Everything runs on this machine's cores together (wrk, tutor and the stand-in model share them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$HERE/benches/lib.sh"
bench_setup
STREAMS="${STREAMS:-1000}"

cd "$HERE"
cargo build --release -q --bin tutor --example gen-catalog --example stream-load --example stand-in
TUTOR="${TUTOR_BIN:-$HERE/target/release/tutor}"
if [ ! -d "$CATALOG" ]; then
  "$HERE/target/release/examples/gen-catalog" "$LESSONS_N" "$CATALOG" >/dev/null
fi

# --- index -------------------------------------------------------------------------------------
t0=$(now); "$TUTOR" --lessons "$CATALOG" --index "$WORK/index" index >/dev/null; INDEX_COLD=$(ms_since "$t0")
t0=$(now); "$TUTOR" --lessons "$CATALOG" --index "$WORK/index" index >/dev/null; INDEX_WARM=$(ms_since "$t0")

# --- the request mix: questions built from words of the 8th lesson, plus its golden questions ---
LESSON=$(request_mix "$CATALOG" "$WORK/chat.lua" "$WORK/stream-question")

# --- extractive ----------------------------------------------------------------------------------
PORT=$(free_port)
t0=$(now)
env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u TUTOR_MODEL "$TUTOR" --lessons "$CATALOG" --index "$WORK/index" serve --addr "127.0.0.1:$PORT" 2>"$WORK/serve.log" &
PID=$!; PIDS+=("$PID")
STARTUP=$(wait_ready "$PORT")
sleep 1
RSS_IDLE=$(rss_mb "$PID" VmRSS)
wrk_runs "$PORT" "$WORK/chat.lua" chat
RPS=$(column_median "$WORK/chat-runs.txt" 1); RPS_ALL=$(column_all "$WORK/chat-runs.txt" 1)
P50=$(column_median "$WORK/chat-runs.txt" 2)
P99=$(column_median "$WORK/chat-runs.txt" 3); P99_ALL=$(column_all "$WORK/chat-runs.txt" 3)
NON2XX=$(non2xx_total "$WORK/chat-runs.txt")
RSS_LOAD=$(rss_mb "$PID" VmHWM)
# The quiz and hint mix on the same server.
QUIZ_ITEMS=$(quiz_mix "$PORT" "$LESSON" "$WORK/quiz.lua")
wrk_runs "$PORT" "$WORK/quiz.lua" quiz
QUIZ_RPS=$(column_median "$WORK/quiz-runs.txt" 1); QUIZ_RPS_ALL=$(column_all "$WORK/quiz-runs.txt" 1)
QUIZ_P50=$(column_median "$WORK/quiz-runs.txt" 2)
QUIZ_P99=$(column_median "$WORK/quiz-runs.txt" 3)
QUIZ_NON2XX=$(non2xx_total "$WORK/quiz-runs.txt")
kill "$PID"; wait "$PID" 2>/dev/null || true

# --- streams through the paced stand-in model -------------------------------------------------------------
start_stand_in "$HERE" 20 50
TRUST=()
if [ -n "${MODEL_TLS:-}" ]; then TRUST=(TUTOR_MODEL_CA_FILE="$HERE/tests/it/tls/ca.pem"); fi
PORT=$(free_port)
env OPENAI_BASE_URL="$SCHEME://127.0.0.1:$UP/v1" OPENAI_API_KEY=test TUTOR_MODEL=stand-in \
  "${TRUST[@]}" "$TUTOR" --lessons "$CATALOG" --index "$WORK/index" serve --addr "127.0.0.1:$PORT" 2>"$WORK/serve-stream.log" &
PID=$!; PIDS+=("$PID")
wait_ready "$PORT" >/dev/null
sleep 1
STREAM_IDLE=$(rss_mb "$PID" VmRSS)
STREAM_RESULT=$("$HERE/target/release/examples/stream-load" "http://127.0.0.1:$PORT" "$LESSON" "$(cat "$WORK/stream-question")" "$STREAMS")
STREAM_PEAK=$(rss_mb "$PID" VmHWM)
kill "$PID"; wait "$PID" 2>/dev/null || true
field() { python3 -c "import json,sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print(json.dumps(v) if isinstance(v, dict) else v)" "$STREAM_RESULT" "$1"; }

cat <<EOF
| what | figure |
|---|---|
| catalog | $LESSONS_N lessons ($CATALOG) |
| \`tutor index\` from scratch (process wall clock) | $INDEX_COLD ms |
| \`tutor index\` with nothing changed | $INDEX_WARM ms |
| start-up with a built index (until /readyz is 200) | $STARTUP ms |
| RSS at idle | $RSS_IDLE MB |
| /v1/chat extractive, wrk -t2 -c$CONNS -d$DURATION, median of $RUNS | $RPS req/s (runs: $RPS_ALL) |
| latency p50 / p99 | $P50 ms / $P99 ms (p99 runs: $P99_ALL) |
| non-2xx responses | $NON2XX |
| peak RSS under load | $RSS_LOAD MB |
| quiz and hints mix ($QUIZ_ITEMS items: quiz me, first and last tries graded, hints), median of $RUNS | $QUIZ_RPS req/s (runs: $QUIZ_RPS_ALL), p50 $QUIZ_P50 ms, p99 $QUIZ_P99 ms, non-2xx $QUIZ_NON2XX |
| streams held at once through the paced stand-in model (50 chunks over ~1 s) | $(field streams), errors $(field errors) |
| their answers, by backend (the stand-in's, when checked and kept) | $(field backends) |
| time to first event p50 / p99 | $(field first_event_p50_ms) ms / $(field first_event_p99_ms) ms |
| whole stream p50 / p99 | $(field total_p50_ms) ms / $(field total_p99_ms) ms |
| RSS idle → peak with the streams | $STREAM_IDLE MB → $STREAM_PEAK MB |
EOF
