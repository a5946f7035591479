#!/usr/bin/env bash
# Runs tests/python/openai_client.py (the official openai package, from PyPI) against the tutor
# binary given as the first argument, on a free port of 127.0.0.1 with the embedded answerer;
# further arguments name the checks to run (default: all).
# The package is installed into target/py-openai when missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tutor_bin="$1"
venv="$repo/target/py-openai"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'openai==3.57.0'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
index="$(mktemp -d)"
env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u TUTOR_MODEL \
  "$tutor_bin" --lessons "$repo/lessons" --index "$index" --prompts "$repo/prompts" serve --addr "127.0.0.1:$port" 2>"$index/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$index"' EXIT
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
  sleep 0.05
done
"$venv/bin/python" "$here/openai_client.py" "http://127.0.0.1:$port" "${@:2}"
