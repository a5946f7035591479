#!/usr/bin/env bash
# Where the CPU of one /v1/chat answer through a model goes: the stand-in model
# (examples/stand-in.rs) answers, wrk loads the tutor as in benches/model-ab.sh, and
# `perf record` samples the tutor's threads; prints CPU µs per request by stage and leaves the
# folded stacks (one line per stack, the input of any flame graph tool) in OUT.
#
#   bash benches/profile.sh [TUTOR_BIN]      (DURATION=10s CONNS=64 OUT=target/profile)
#
# perf comes from Debian's linux-perf (installed when missing). Stages are told apart by the
# functions on each sampled stack, first rule first (see STAGES below).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benches/lib.sh
. "$HERE/benches/lib.sh"
bench_setup
command -v perf >/dev/null || { apt-get install -y -qq linux-perf >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }; }
OUT="${OUT:-$HERE/target/profile}"
mkdir -p "$OUT"

cd "$HERE"
catalog_and_stand_in "$HERE"
TUTOR="${1:-$HERE/target/release/tutor}"
request_mix "$CATALOG" "$WORK/chat.lua" "$WORK/question" >/dev/null
"$TUTOR" --lessons "$CATALOG" --index "$WORK/index" index >/dev/null
serve_with_stand_in "$TUTOR" "$WORK/index" "$WORK/serve.log"

# First the CPU per request without the profiler, then the samples (perf slows the tutor).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
T0=$(ticks "$PID")
wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/chat.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk.txt"
T1=$(ticks "$PID")
read -r RPS P50 P99 BAD < <(parse "$WORK/wrk.txt")
SECONDS_RUN="${DURATION%s}"
US=$(python3 -c "import sys; t, r, s = (float(a) for a in sys.argv[1:]); print(round(t / 100 / (r * s) * 1e6))" "$((T1 - T0))" "$RPS" "$SECONDS_RUN")
echo "load: $RPS req/s, p50 $P50 ms, p99 $P99 ms, non-2xx $BAD; tutor CPU $US µs per request"

perf record -q -F 499 --call-graph dwarf,32768 -p "$PID" -o "$WORK/perf.data" -- sleep 8 >/dev/null 2>&1 &
PERF=$!
wrk -t2 -c"$CONNS" -d8s -s "$WORK/chat.lua" "http://127.0.0.1:$PORT" >/dev/null
wait "$PERF" || true
perf script -i "$WORK/perf.data" -F ip,sym --no-inline 2>/dev/null >"$WORK/stacks.txt"

python3 - "$WORK/stacks.txt" "$US" "$OUT/folded.txt" <<'PY'
import collections, re, sys
path, us, folded_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
# (stage, pattern): a sample belongs to the first stage any of its frames matches.
STAGES = [
    ("prompt (minijinja)", r"tutor::prompts|minijinja"),
    ("verification and citation filter", r"tutor::chat::(release|verify|check|citations)"),
    ("model request: build and serialise", r"async_openai.*(build_request|serde)|OpenAiModel::body|serde_json::ser.*\n?.*async_openai"),
    ("model response: parse", r"serde_json::de|reqwest::async_impl::response"),
    ("upstream exchange (reqwest, hyper client)", r"reqwest|hyper::client|hyper_util::client|async_openai|ChatModel"),
    ("retrieval and gate (Tantivy, stemming)", r"tutor::retrieve|tantivy|frostem"),
    ("planning (language, reading, quiz)", r"tutor::chat::Tutor::plan|tutor::language|tutor::conversation|tutor::quiz"),
    ("telemetry and request log", r"metrics|tutor::telemetry|tracing|conversation_log"),
    ("HTTP in and out (hyper server, axum, tower-http, socket writes)", r"hyper::proto|axum|tower|tutor::http|serde_json"),
    ("runtime and kernel scheduling (tokio, epoll, futex)", r"."),
]
samples, cur = [], None
for line in open(path):
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
        continue
    parts = line.strip().split(None, 1)
    cur = (cur or []) + [parts[1] if len(parts) > 1 else "?"]
if cur:
    samples.append(cur)
counts = collections.Counter()
folded = collections.Counter()
for frames in samples:
    for stage, pattern in STAGES:
        if any(re.search(pattern, f) for f in frames):
            counts[stage] += 1
            break
    folded[";".join(re.sub(r"[; ]", "_", f) for f in reversed(frames))] += 1
with open(folded_path, "w") as out:
    for stack, n in folded.most_common():
        out.write(f"{stack} {n}\n")
total = sum(counts.values()) or 1
print(f"| stage | share of the tutor's CPU | µs per request |")
print("|---|---|---|")
for stage, _ in STAGES:
    n = counts[stage]
    print(f"| {stage} | {n / total * 100:.1f}% | {n / total * us:.0f} |")
print(f"| all ({total} samples) | 100% | {us:.0f} |")
PY
echo "folded stacks: $OUT/folded.txt"
