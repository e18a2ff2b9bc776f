#!/bin/sh
# install-heroku-cli.sh: install Heroku's own CLI (npm package `heroku`, an
# exact version) under bin/heroku-cli/<version>, for the test that drives it
# against the Heroku stand-in (test/herokustub). Nothing is installed
# globally; Node.js (20 or newer) and npm must be on PATH.
#
#   HEROKU_CLI="$(hack/install-heroku-cli.sh)"
#
# Idempotent. Progress goes to stderr; stdout carries only the path of the
# CLI's executable.
set -eu

HEROKU_CLI_VERSION="${HEROKU_CLI_VERSION:-11.10.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/bin/heroku-cli/$HEROKU_CLI_VERSION"
exe="$dir/node_modules/.bin/heroku"
log() { echo "install-heroku-cli: $*" >&2; }

if [ -x "$exe" ] && [ -f "$dir/.complete" ]; then
	log "reusing $dir"
	echo "$exe"
	exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm is not on PATH"; exit 1; }
mkdir -p "$dir"
rm -f "$dir/.complete"
[ -f "$dir/package.json" ] || echo '{"private":true}' >"$dir/package.json"
log "installing heroku@$HEROKU_CLI_VERSION into $dir"
# --ignore-scripts: the CLI's postinstall only sets up autocomplete and
# update checks, which the test turns off.
(cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --save-exact "heroku@$HEROKU_CLI_VERSION" >&2)
[ -x "$exe" ] || { log "npm did not install $exe"; exit 1; }
touch "$dir/.complete"
echo "$exe"
