#!/usr/bin/env bash
# A/B load test of POST /v1/chat (JSON) through a fast stand-in model (examples/stand-in.rs, which
# answers from passage [1] in other words, so every answer is verified and shown): two tutor
# binaries (before and after a change), taking turns on the same catalog, model and wrk load, so
# the machine's drift over the run falls on both alike.
#
#   bash benches/model-ab.sh OLD_TUTOR NEW_TUTOR     (RUNS=3 DURATION=10s CONNS=64 LESSONS_N=2116)
#
# QUIZ=1 gives the loaded lesson a quiz (five items on other points of the lesson than the
# questions asked), so the new binary's quiz integrity checks run on every ordinary question; a
# binary that predates quizzes ignores the file.
#
# Prints per binary the median of RUNS runs (req/s, p50, p99, non-2xx) and the new/old ratio.
# wrk, both tutors and the stand-in model share this machine's cores.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$HERE/benches/lib.sh"
[ $# -eq 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OLD="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
NEW="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
bench_setup

cd "$HERE"
catalog_and_stand_in "$HERE"
LESSON=$(request_mix "$CATALOG" "$WORK/chat.lua" "$WORK/question")
if [ "${QUIZ:-0}" = 1 ]; then
  cp -r "$CATALOG" "$WORK/catalog" && CATALOG="$WORK/catalog"
  python3 - "$CATALOG" "$LESSON" <<'PY'
import os, re, sys
cat, lesson = sys.argv[1:3]
body = open(os.path.join(cat, lesson + ".md")).read().split("---", 2)[-1]
sections = re.findall(r"^## (.+)\n+(.+)", body, re.M)
slug = lambda t: re.sub(r"[^a-z0-9]+", "-", t.lower().replace("'", "")).strip("-")
out = ['quiz_integrity = "hint"']
for i, (title, text) in enumerate(sections[-5:]):
    words = re.findall(r"[A-Za-z]{5,}", text)
    out += ["", "[[items]]", f'id = "item-{i}"',
            f'question = "Which point does the section on {title.strip()} make about {words[0].lower()}?"',
            f'answer = "{" ".join(words[1:4])}"', f'section = "{slug(title)}"']
open(os.path.join(cat, lesson + ".quiz.toml"), "w").write("\n".join(out) + "\n")
PY
fi

for name in old new; do
  bin=$OLD; [ "$name" = new ] && bin=$NEW
  "$bin" --lessons "$CATALOG" --index "$WORK/index-$name" index >/dev/null
done

for r in $(seq 1 "$RUNS"); do
  for name in old new; do
    bin=$OLD; [ "$name" = new ] && bin=$NEW
    serve_with_stand_in "$bin" "$WORK/index-$name" "$WORK/serve-$name.log"
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/chat.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk.txt"
    parse "$WORK/wrk.txt" >>"$WORK/runs-$name.txt"
    # One answer of each, to show what the load was answered with.
    curl -s "http://127.0.0.1:$PORT/v1/chat" -H 'content-type: application/json' \
      -d "{\"lesson_id\": \"$LESSON\", \"message\": \"$(cat "$WORK/question")\"}" >"$WORK/answer-$name.json"
    kill "$PID"; wait "$PID" 2>/dev/null || true
  done
done

column() { cut -d' ' -f"$2" "$WORK/runs-$1.txt" | median; }
runs_table "old=old ($OLD)" "new=new ($NEW)"
python3 -c "import sys; print(f'new/old req/s: {float(sys.argv[2]) / float(sys.argv[1]):.3f}')" "$(column old 1)" "$(column new 1)"
for name in old new; do echo "$name answers: $(head -c 300 "$WORK/answer-$name.json")"; done
