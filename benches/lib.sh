#!/usr/bin/env bash
# Shell helpers shared by the load scripts (sourced, not run): ports, timing, wrk output, the
# request mix over the scale catalog, and the stand-in OpenAI-compatible model.

# The settings and scratch space every load script shares (RUNS, DURATION, CONNS, LESSONS_N,
# the cached scale CATALOG, a WORK folder removed on exit, and PIDS killed on exit), a high open-
# file limit, and wrk (installed when missing). Call once, after `set -euo pipefail`.
bench_setup() {
  CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tutor-bench"
  RUNS="${RUNS:-3}"
  DURATION="${DURATION:-10s}"
  CONNS="${CONNS:-64}"
  LESSONS_N="${LESSONS_N:-2116}"
  # The catalog is built from the SQuAD articles of the evaluation data beside the checkout, or
  # from lessons/ without them (see benches/support/catalog.rs); each is cached apart.
  local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -d "$root/../shared/eval/squad2-dev/lessons" ]; then
    CATALOG="$CACHE/catalog-$LESSONS_N"
  else
    CATALOG="$CACHE/catalog-$LESSONS_N-from-lessons"
  fi
  # The scale figures measure the words-alone path (embedding the 2,116-lesson catalog's 27,150
  # passages and their units would take most of an hour); benches/semantic.sh measures the
  # model's cost. TUTOR_SEMANTIC=local measures these scripts with it.
  export TUTOR_SEMANTIC="${TUTOR_SEMANTIC:-off}"
  WORK="$(mktemp -d)"
  PIDS=()
  trap bench_cleanup EXIT
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
}

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
ms_since() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$(now)"; }
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

wait_ready() {  # PORT -> ms until /readyz is 200
  local t0 i; t0=$(now)
  for i in $(seq 1 2000); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ] && break
    sleep 0.005
  done
  ms_since "$t0"
}

parse() {  # wrk output FILE -> rps p50_ms p99_ms non2xx
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
       /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /Requests\/sec:/ { rps = $2 }
       /Non-2xx or 3xx responses:/ { bad = $5 } END { printf "%s %.2f %.2f %d\n", rps, p50, p99, bad }' "$1"
}

# A 2 s warm-up, then RUNS wrk runs of DURATION with the script LUA against PORT, parsed one line
# each (see parse) into WORK/NAME-runs.txt.
wrk_runs() {  # PORT LUA NAME
  local r
  wrk -t2 -c"$CONNS" -d2s -s "$2" "http://127.0.0.1:$1" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$2" "http://127.0.0.1:$1" >"$WORK/$3-$r.txt"
  done
  for r in $(seq 1 "$RUNS"); do parse "$WORK/$3-$r.txt"; done >"$WORK/$3-runs.txt"
}
column_median() { cut -d' ' -f"$2" "$1" | median; }  # RUNS_FILE COLUMN
column_all() { cut -d' ' -f"$2" "$1" | tr '\n' ' '; }  # RUNS_FILE COLUMN
non2xx_total() { awk '{s += $4} END {print s}' "$1"; }  # RUNS_FILE

# The request mix: questions built from words of the catalog's 8th lesson, plus its golden
# questions. Writes the wrk script to LUA and one question to QUESTION; prints the lesson id.
request_mix() {  # CATALOG LUA QUESTION
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, re, sys
cat, lua, sq = sys.argv[1:4]
lesson = sorted(f for f in os.listdir(cat) if f.endswith(".md"))[7][:-3]
body = open(os.path.join(cat, lesson + ".md")).read().split("---", 2)[-1]
words = re.findall(r"[A-Za-z]{6,}", body)
qs = [f"What about {words[i]} and {words[i+1]}?" for i in range(0, 40, 2)]
qs += [l.split('"')[1] for l in open(os.path.join(cat, lesson + ".questions.toml")) if l.startswith("q =")]
bodies = [json.dumps({"lesson_id": lesson, "message": q}) for q in qs]
open(lua, "w").write("local b = {" + ",".join("[[" + b + "]]" for b in bodies) + "}\nlocal i = 0\n"
    "request = function() i = i + 1; return wrk.format('POST', '/v1/chat', "
    "{['Content-Type']='application/json'}, b[(i % #b) + 1]) end\n")
open(sq, "w").write(qs[1])
print(lesson)
PY
}

# The quiz and hint mix for the lesson LESSON of a tutor serving on PORT: "quiz me" (with items
# already asked), replies graded on a first try (not yet right: a hint and the question again)
# and on a last one (the answer quoted), and hints on the lesson's own questions. Writes the wrk
# script to LUA.
quiz_mix() {  # PORT LESSON LUA
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, urllib.request
port, lesson, lua = sys.argv[1:4]
def chat(body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))
asked, items = [], []
for _ in range(8):
    reply = chat({"lesson_id": lesson, "mode": "quiz", "quiz_asked": asked})
    item = reply.get("quiz")
    if not item or item["item_id"] in asked:
        break
    asked.append(item["item_id"])
    items.append(item)
bodies = []
for n, item in enumerate(items):
    bodies.append({"lesson_id": lesson, "mode": "quiz", "quiz_asked": asked[:n]})
    for attempt in (1, 2):
        bodies.append({"lesson_id": lesson, "mode": "quiz", "quiz_item": item["item_id"],
                       "message": "a bigger budget and more servers", "quiz_attempt": attempt})
    bodies.append({"lesson_id": lesson, "mode": "hint", "message": item["question"]})
open(lua, "w").write("local b = {" + ",".join("[[" + json.dumps(b) + "]]" for b in bodies) + "}\nlocal i = 0\n"
    "request = function() i = i + 1; return wrk.format('POST', '/v1/chat', "
    "{['Content-Type']='application/json'}, b[(i % #b) + 1]) end\n")
print(len(items))
PY
}

# Starts the stand-in model (examples/stand-in.rs, built) with ARGS (`DELAY_MS CHUNKS` to pace
# it) and waits for it; sets UP to its port and SCHEME to http, or https with MODEL_TLS=h2|h1.
start_stand_in() {  # HERE [ARGS...]
  local here=$1 _; shift
  UP=$(free_port)
  SCHEME=http
  if [ -n "${MODEL_TLS:-}" ]; then SCHEME=https; fi
  STAND_IN_TLS="${MODEL_TLS:-}" "$here/target/release/examples/stand-in" "$UP" "$@" >/dev/null 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 200); do curl -sk -o /dev/null "$SCHEME://127.0.0.1:$UP/v1/models" && break; sleep 0.05; done
}

# Builds the release binaries and the scale catalog (cached), starts the stand-in model
# (examples/stand-in.rs) and waits for it; sets UP to its port. Call from the checkout.
catalog_and_stand_in() {  # HERE
  cargo build --release -q --bin tutor --example gen-catalog --example stand-in
  if [ ! -d "$CATALOG" ]; then
    "$1/target/release/examples/gen-catalog" "$LESSONS_N" "$CATALOG" >/dev/null
  fi
  MODEL_TLS='' start_stand_in "$1"
}

# Starts TUTOR on a free port, answering through the stand-in model (UP) from INDEX, waits until
# it is ready and warms it up with 2 s of the request mix (WORK/chat.lua); sets PORT and PID.
serve_with_stand_in() {  # TUTOR INDEX LOG
  PORT=$(free_port)
  OPENAI_BASE_URL="http://127.0.0.1:$UP/v1" OPENAI_API_KEY=test TUTOR_MODEL=stand-in \
    "$1" --lessons "$CATALOG" --index "$2" serve --addr "127.0.0.1:$PORT" 2>"$3" &
  PID=$!; PIDS+=("$PID")
  wait_ready "$PORT" >/dev/null
  wrk -t2 -c"$CONNS" -d2s -s "$WORK/chat.lua" "http://127.0.0.1:$PORT" >/dev/null
}

# The table of the runs each set-up wrote to WORK/runs-NAME.txt (one `parse` line per run):
# the header, then per set-up the median req/s (and every run's), p50, p99, and the summed
# non-2xx. Each argument is NAME or NAME=LABEL.
runs_table() {
  local arg name label f
  echo "| /v1/chat through the stand-in model, wrk -t2 -c$CONNS -d$DURATION, median of $RUNS | req/s (runs) | p50 ms | p99 ms | non-2xx |"
  echo "|---|---|---|---|---|"
  for arg in "$@"; do
    name="${arg%%=*}"; label="${arg#*=}"; f="$WORK/runs-$name.txt"
    echo "| $label | $(cut -d' ' -f1 "$f" | median) ($(cut -d' ' -f1 "$f" | tr '\n' ' ')) | $(cut -d' ' -f2 "$f" | median) | $(cut -d' ' -f3 "$f" | median) | $(awk '{s += $4} END {print s}' "$f") |"
  done
}
