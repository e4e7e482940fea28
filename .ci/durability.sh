#!/usr/bin/env bash
# Data durability, checks F1–F4 of the reliability guide (README, "Durability checks"):
#   F1 kill -9 crash loop on SQLite (synchronous NORMAL and FULL)
#   F2 the same on a private PostgreSQL cluster, then that cluster crashing under load
#   F3 concurrent writers and usage increments (also in the normal suite)
#   F4 every migration reverted and re-applied on both backends; SQLite on a full disk
# Usage: .ci/durability.sh          short variant, a few minutes (what .ci/run runs)
#        .ci/durability.sh --long   50 crash cycles each, kills up to 5 s in, 10 s outage, 60 s of writers
# Needs root (tmpfs mount; initdb runs as the postgres user), PostgreSQL's server binaries, and
# the shared PostgreSQL on 5432 for the migration check. A missing prerequisite fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

case "${1:-}" in
  "") long=false ;;
  --long) long=true ;;
  *) echo "usage: $0 [--long]" >&2; exit 2 ;;
esac

fail() { echo "durability: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (F4 mounts a tmpfs; F2 runs initdb as postgres)"
ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 \
  || fail "no initdb under /usr/lib/postgresql/*/bin (Debian package postgresql)"
id postgres > /dev/null 2>&1 || fail "no postgres OS user to run the private cluster"
command -v runuser > /dev/null || fail "runuser missing (util-linux)"
pg_url=${MORPHEUS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_isready -q -d "$pg_url" || fail "no PostgreSQL at $pg_url for the migration check (F4)"

if $long; then
  export DURABILITY_CYCLES=50 DURABILITY_PG_CYCLES=50 DURABILITY_KILL_MAX_MS=5000
  export DURABILITY_PG_OUTAGE_SECONDS=10 DURABILITY_F3_SECONDS=60
else
  export DURABILITY_CYCLES=5 DURABILITY_PG_CYCLES=3 DURABILITY_KILL_MAX_MS=2000
  export DURABILITY_PG_OUTAGE_SECONDS=3 DURABILITY_F3_SECONDS=10
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Runs a cargo test command, shows its output, and fails unless at least $1 tests passed and
# none was ignored: a filter that matches nothing must not pass for a green run.
expect_tests() {
  local at_least=$1
  shift
  "$@" 2>&1 | tee "$log" || fail "tests failed: $*"
  local passed
  passed=$(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' "$log")
  if [ "${passed:-0}" -lt "$at_least" ] || grep -qE '^test result:.* [1-9][0-9]* ignored' "$log"; then
    fail "expected at least $at_least tests to pass and none ignored: $*"
  fi
}

echo "=== F4 migrations: revert all and re-apply, SQLite and PostgreSQL"
MORPHEUS_TEST_DATABASE_URL=$pg_url expect_tests 2 \
  cargo test -p morpheus-storage --test storage migrations_redo

echo "=== F1, F2, F3 and F4 disk full (F1, F3 and F4 on SQLite; F2 on a cluster of its own)"
(
  unset MORPHEUS_TEST_DATABASE_URL
  expect_tests 7 cargo test --test api durability:: -- --include-ignored --test-threads=1 --nocapture
)
