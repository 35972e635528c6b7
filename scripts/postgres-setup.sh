#!/usr/bin/env bash
# Starts the throwaway PostgreSQL cluster the hub's store tests run against
# (Debian's postgresql 15 binaries, `initdb` + `pg_ctl`, as the `postgres`
# user). The cluster lives in /var/tmp/outpost-pg, listens on 127.0.0.1 only
# at a fixed high port (OUTPOST_PG_PORT, default 55432) and trusts loopback
# connections: it holds nothing but test databases, each created and dropped
# by the test that uses it.
#
# Installs Debian's `postgresql` first when its binaries are missing (as root;
# the package's own cluster service is kept from starting while installing, and
# stopped and disabled under systemd: the tests want only this cluster).
# Idempotent: a cluster already answering is left alone; a data directory from
# an earlier run is reused. Prints the URL the tests read on stdout (the tests
# default to the same URL; export OUTPOST_TEST_POSTGRES to point them
# elsewhere); exits non-zero with a message otherwise. Stop it with
#   su postgres -c '/usr/lib/postgresql/15/bin/pg_ctl -D /var/tmp/outpost-pg/data stop'
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

export DEBIAN_FRONTEND=noninteractive

port=${OUTPOST_PG_PORT:-55432}
root=${OUTPOST_PG_DIR:-/var/tmp/outpost-pg}
data=$root/data
url="postgres://postgres@127.0.0.1:$port/postgres"

die() {
  echo "postgres-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "postgres-setup: $*" >&2; }

# The newest installed server's binaries (Debian keeps them per major version).
server_bin() {
  if [ -n "${OUTPOST_PG_BIN:-}" ]; then
    echo "$OUTPOST_PG_BIN"
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_postgresql() {
  [ "$(id -u)" = 0 ] || die "PostgreSQL is missing and installing it needs root (Debian: apt-get install postgresql)"
  hold_lock postgres-setup
  [ -n "$(server_bin)" ] && return
  note "installing postgresql ..."
  apt_install postgresql
  disable_service postgresql
}

[ -n "$(server_bin)" ] || install_postgresql
bin=$(server_bin)
[ -x "$bin/initdb" ] || die "no PostgreSQL server binaries at $bin"

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if ready; then
  echo "$url"
  exit 0
fi

# One start at a time (test runs may begin side by side); the later one finds it running.
mkdir -p "$root"
exec 9>"$root.lock"
flock -w 120 9 || die "another postgres-setup.sh held $root.lock for 2 minutes"
if ready; then
  echo "$url"
  exit 0
fi

[ "$(id -u)" = 0 ] && chown postgres: "$root"
if [ ! -s "$data/PG_VERSION" ]; then
  note "creating a cluster in $data ..."
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-instructions \
    >"$root/initdb.log" 2>&1 || {
    tail -n 20 "$root/initdb.log" >&2
    die "initdb failed (log: $root/initdb.log)"
  }
  # Loopback only: the cluster trusts whoever connects.
  cat >"$data/pg_hba.conf" <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
EOF
fi

# Tests run in parallel, each with its own database and a few connections.
as_owner "$bin/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $root -c max_connections=300 -c fsync=off" \
  >/dev/null || {
  tail -n 20 "$root/server.log" >&2
  die "pg_ctl start failed (log: $root/server.log)"
}
ready || die "the cluster started but does not answer on 127.0.0.1:$port"
note "ok (PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port)"
echo "$url"
