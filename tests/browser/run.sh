#!/usr/bin/env bash
# Browser tests of the widget, the lesson pages and LTI launches from an LMS page.
# Usage: tests/browser/run.sh PATH/TO/tutor [FILE PATTERN]
#   FILE PATTERN: only the scenarios of FILE (widget.test.mjs or lti.test.mjs) whose names match
#   the regular expression PATTERN (tests/browser.rs runs each scenario as a test of its own).
# Installs Debian's chromium when missing and the npm packages pinned in package-lock.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/tutor" >&2
  exit 2
fi
tutor_bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
if [ ! -x "$tutor_bin" ]; then
  echo "error: $1 is not an executable tutor binary" >&2
  exit 2
fi

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

cd "$here"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi

mkdir -p "$repo/target/screenshots"
if [ $# -ge 3 ]; then
  TUTOR_BIN="$tutor_bin" TUTOR_LESSONS="$repo/lessons" \
    node --test --test-reporter=tap --test-name-pattern="$3" "$2"
else
  TUTOR_BIN="$tutor_bin" TUTOR_LESSONS="$repo/lessons" node --test widget.test.mjs lti.test.mjs
fi
