#!/usr/bin/env bash
# The semantic model's cost (all-MiniLM-L6-v2, installed by tests/model/fetch.sh when missing),
# on 127.0.0.1, over the first SEM_LESSONS lessons of the scale catalog:
#   - `tutor index` from scratch (every passage and unit embedded) and warm (nothing to embed);
#   - start-up with a built index (until /readyz is 200), RSS at idle;
#   - POST /v1/chat, extractive, wrk -t2 -cCONNS: the usual request mix (questions repeat, so
#     their vectors are kept) and a mix where every message is new (each question embedded),
#     with and without the model (TUTOR_SEMANTIC=off);
#   - the question-vector stage's latency as the tutor measured it (tutor_question_vector_seconds,
#     batch waiting included), read from /metrics.
#   bash benches/semantic.sh        (SEM_LESSONS=100 RUNS=3 DURATION=10s CONNS=64)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$HERE/benches/lib.sh"
bench_setup
SEM_LESSONS="${SEM_LESSONS:-100}"
cd "$HERE"
bash tests/model/fetch.sh >/dev/null
cargo build --release -q --bin tutor --example gen-catalog
TUTOR="${TUTOR_BIN:-$HERE/target/release/tutor}"
if [ ! -d "$CATALOG" ]; then
  "$HERE/target/release/examples/gen-catalog" "$LESSONS_N" "$CATALOG" >/dev/null
fi
# The first SEM_LESSONS lessons with their questions files (their `related` lessons beyond these
# are reported and ignored, so `tutor index` exits 1; what it indexed is all there).
mkdir -p "$WORK/lessons"
for f in $(ls "$CATALOG" | grep '\.md$' | sort | head -n "$SEM_LESSONS"); do
  cp "$CATALOG/$f" "$WORK/lessons/"
  q="${f%.md}.questions.toml"; [ -f "$CATALOG/$q" ] && cp "$CATALOG/$q" "$WORK/lessons/"
done
LESSON=$(request_mix "$WORK/lessons" "$WORK/chat.lua" "$WORK/stream-question")
# Every message new: the same questions with a running number.
python3 - "$WORK/chat.lua" "$WORK/fresh.lua" <<'PY'
import sys
src = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(src.replace(
    "b[(i % #b) + 1])",
    "(string.gsub(b[(i % #b) + 1], '\"message\": \"', '\"message\": \"(' .. i .. ') ')))"))
PY

t0=$(now); TUTOR_SEMANTIC=local "$TUTOR" --lessons "$WORK/lessons" --index "$WORK/index" index >"$WORK/index.out" 2>&1 || true; INDEX_COLD=$(ms_since "$t0")
t0=$(now); TUTOR_SEMANTIC=local "$TUTOR" --lessons "$WORK/lessons" --index "$WORK/index" index >/dev/null 2>&1 || true; INDEX_WARM=$(ms_since "$t0")
PASSAGES=$(grep -o '([0-9]* passages)' "$WORK/index.out" | tr -dc 0-9)
TEXTS=$(python3 -c "import sys,struct; d=open(sys.argv[1],'rb').read(); n=struct.unpack_from('<I',d,10)[0]; print(struct.unpack_from('<Q',d,14+n+4)[0])" "$(ls -d "$WORK"/index/v*/ | tail -1)tutor-vectors.bin")

measure() {  # SEMANTIC LUA -> "rps p50 p99 non2xx rss_idle rss_peak startup q_p50 q_p99"
  local port pid startup idle runs
  port=$(free_port)
  env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u TUTOR_MODEL TUTOR_SEMANTIC="$1" \
    "$TUTOR" --lessons "$WORK/lessons" --index "$WORK/index" serve --addr "127.0.0.1:$port" 2>"$WORK/serve.log" &
  pid=$!; PIDS+=("$pid")
  startup=$(wait_ready "$port")
  sleep 1
  idle=$(rss_mb "$pid" VmRSS)
  wrk -t2 -c"$CONNS" -d2s -s "$2" "http://127.0.0.1:$port" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$2" "http://127.0.0.1:$port" >"$WORK/wrk-$r.txt"
  done
  for r in $(seq 1 "$RUNS"); do parse "$WORK/wrk-$r.txt"; done >"$WORK/runs.txt"
  local quant
  quant=$(curl -s "http://127.0.0.1:$port/metrics" | python3 -c '
import sys
b = [(float(l.split("le=\"")[1].split("\"")[0].replace("+Inf", "inf")), float(l.split()[-1]))
     for l in sys.stdin if l.startswith("tutor_question_vector_seconds_bucket")]
if not b or b[-1][1] == 0: print("- -"); sys.exit()
t = b[-1][1]
q = lambda p: next(f"<= {le * 1000:g} ms" for le, c in b if c >= p * t)
print(q(0.5).replace(" ", "_"), q(0.99).replace(" ", "_"))')
  echo "$(cut -d' ' -f1 "$WORK/runs.txt" | median) $(cut -d' ' -f2 "$WORK/runs.txt" | median) $(cut -d' ' -f3 "$WORK/runs.txt" | median) $(awk '{s += $4} END {print s}' "$WORK/runs.txt") $idle $(rss_mb "$pid" VmHWM) $startup $quant"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

row() {  # LABEL RESULT
  read -r rps p50 p99 bad idle peak startup qp50 qp99 <<<"$2"
  echo "| $1 | $rps | $p50 / $p99 ms | $bad | $idle → $peak MB | $startup ms | ${qp50//_/ } / ${qp99//_/ } |"
}

echo "| catalog | $SEM_LESSONS lessons, $PASSAGES passages, $TEXTS texts embedded (passages and their units) |"
echo "|---|---|"
echo "| \`tutor index\` from scratch | $INDEX_COLD ms |"
echo "| \`tutor index\` again, nothing changed | $INDEX_WARM ms |"
echo
echo "| /v1/chat, extractive, wrk -c$CONNS | req/s | p50 / p99 | non-2xx | RSS idle → peak | start-up | question vector p50 / p99 |"
echo "|---|---|---|---|---|---|---|"
row "words alone, usual mix" "$(measure off "$WORK/chat.lua")"
row "with meaning, usual mix (vectors kept)" "$(measure local "$WORK/chat.lua")"
row "words alone, every message new" "$(measure off "$WORK/fresh.lua")"
row "with meaning, every message new" "$(measure local "$WORK/fresh.lua")"
