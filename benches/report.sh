#!/usr/bin/env bash
# Regenerates every figure of BENCHMARKS.md, in order, on this machine:
#   1. criterion micro-benchmarks over the 2,116-lesson scale catalog (cargo bench);
#   2. the load test (benches/load.sh: wrk on /v1/chat, 1,000 streams, RSS, start-up), words
#      alone, and the semantic model's cost (benches/semantic.sh: index, /v1/chat with and
#      without it, question-vector latency) over the first 100 lessons;
#   3. the quality evaluation (SQuAD 2.0 dev, SciFact), when the data is beside the checkout in
#      ../shared/eval;
#   4. the side-by-side with the Python peer (../shared/peer/compare.sh), when it is there.
# The cost of sharing state between replicas has its own script, benches/replicas.sh (about
# 8 minutes; it starts PostgreSQL, Redis and HAProxy).
# usage: bash benches/report.sh > /tmp/report.md      (takes about 10 minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "## Machine"
echo
echo "$(nproc) cores ($(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')), $(free -g | awk '/Mem:/ {print $2}') GiB; $(rustc --version)"
echo
echo "## Micro-benchmarks (criterion)"
echo
echo '```'
cargo bench --bench core 2>/dev/null | grep -E "^[a-z].*|time:|^retrieval over" | grep -v -E "^(Benchmarking|Found|Warning)"
echo '```'
echo
echo "## Load test"
echo
bash benches/load.sh
echo
echo "## The semantic model's cost"
echo
bash benches/semantic.sh
echo
echo "## Quality"
echo
if [ -d ../shared/eval/squad2-dev ] && [ -d ../shared/eval/scifact ]; then
  cargo build --release -q --example eval
  echo '```'
  ./target/release/examples/eval squad ../shared/eval/squad2-dev
  ./target/release/examples/eval scifact ../shared/eval/scifact
  echo '```'
else
  echo "(the evaluation data, SQuAD 2.0 dev and SciFact, is not beside the checkout: skipped)"
fi
if [ -x ../shared/peer/compare.sh ]; then
  echo
  echo "## Side by side with the Python peer"
  echo
  echo '```'
  bash ../shared/peer/compare.sh target/release/tutor
  echo '```'
fi
