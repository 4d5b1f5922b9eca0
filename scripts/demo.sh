#!/usr/bin/env bash
# cairn demo: a throwaway PostgreSQL 15 cluster archiving into a local encrypted cairn
# repository. Builds cairn, creates the cluster under $CAIRN_DEMO_DIR, runs `cairn
# stanza-create`, `cairn check` and `cairn backup`, writes some data, and shows `cairn info`
# and a restore plan. Run as root (PostgreSQL itself runs as the `postgres` user) or as a
# user that can run PostgreSQL. `scripts/demo.sh stop` stops the cluster.
#
# Environment (README.md lists the same):
#   CAIRN_DEMO_DIR    everything the demo makes, emptied at each start (/tmp/cairn-demo)
#   CAIRN_DEMO_PORT   the cluster's port, on its Unix socket only (54329)
#   PGBIN             PostgreSQL's initdb, pg_ctl, postgres (/usr/lib/postgresql/15/bin)
#   CARGO_TARGET_DIR  where cargo puts the build, as for cargo itself (target)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${CAIRN_DEMO_DIR:-/tmp/cairn-demo}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${CAIRN_DEMO_PORT:-54329}

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
    [ -d "$DEMO/pgdata" ] && as_pg "$PGBIN/pg_ctl" -D "$DEMO/pgdata" -m fast stop || true
    exit 0
fi

if [ ! -x "$PGBIN/postgres" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "demo: installing PostgreSQL 15 from Debian"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 >/dev/null
    else
        echo "demo: PostgreSQL 15 is missing: apt-get install postgresql-15 (or set PGBIN)" >&2
        exit 1
    fi
fi

echo "demo: building cairn (release)"
(cd "$REPO" && cargo build --release --bins -q)
BUILT=${CARGO_TARGET_DIR:-target}
case "$BUILT" in /*) ;; *) BUILT=$REPO/$BUILT ;; esac   # cargo resolves it from $REPO
BUILT=$BUILT/release

# Fresh demo directory, readable by postgres even when the checkout is under /root.
if [ -d "$DEMO/pgdata" ]; then as_pg "$PGBIN/pg_ctl" -D "$DEMO/pgdata" -m fast stop >/dev/null 2>&1 || true; fi
rm -rf "$DEMO"
mkdir -p "$DEMO/bin" "$DEMO/repo" "$DEMO/spool" "$DEMO/run"
cp "$BUILT/cairn" "$BUILT/cairn-archive-push" "$BUILT/cairn-archive-get" "$DEMO/bin/"
cat >"$DEMO/cairn.toml" <<TOML
[repo]
path = "$DEMO/repo"
cipher-pass = "demo passphrase, change me"

[archive]
spool-path = "$DEMO/spool"

[stanza.main]
pg-data = "$DEMO/pgdata"
pg-host = "$DEMO/run"
pg-port = $PORT
TOML
chmod 600 "$DEMO/cairn.toml"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$DEMO"

echo "demo: initdb + start PostgreSQL on port $PORT with archive_command = cairn-archive-push"
as_pg "$PGBIN/initdb" -D "$DEMO/pgdata" -A trust -E UTF8 --no-locale >/dev/null
cat >>"$DEMO/pgdata/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DEMO/run'
wal_level = replica
archive_mode = on
archive_command = 'CAIRN_CONFIG=$DEMO/cairn.toml $DEMO/bin/cairn-archive-push %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$DEMO/pgdata" -l "$DEMO/postgres.log" -w start >/dev/null

cairn() { as_pg env CAIRN_CONFIG="$DEMO/cairn.toml" "$DEMO/bin/cairn" "$@"; }
echo "\$ cairn stanza-create"; cairn stanza-create
echo "\$ cairn check"; cairn check
echo "\$ cairn backup"; cairn backup
TARGET=$(date -u +"%Y-%m-%d %H:%M:%S.%6N+00")   # after the backup, before the writes below
echo "demo: writing data and switching WAL a few times"
as_pg psql -X -q -h "$DEMO/run" -p "$PORT" -d postgres -c "CREATE TABLE demo(id serial, v text)"
for i in 1 2 3; do
    as_pg psql -X -q -h "$DEMO/run" -p "$PORT" -d postgres -c \
        "INSERT INTO demo(v) SELECT md5(g::text) FROM generate_series(1,20000) g; SELECT pg_switch_wal();" >/dev/null
done
as_pg psql -X -q -h "$DEMO/run" -p "$PORT" -d postgres -c "SELECT pg_create_restore_point('demo-point'); SELECT pg_switch_wal();" >/dev/null
cairn check >/dev/null
echo "\$ cairn info"; cairn info
echo "\$ cairn restore --pg-data $DEMO/restore --target-time '$TARGET' --dry-run"
cairn restore --pg-data "$DEMO/restore" --target-time "$TARGET" --dry-run
echo
echo "demo: the cluster keeps running in $DEMO (config $DEMO/cairn.toml); stop it with: scripts/demo.sh stop"
