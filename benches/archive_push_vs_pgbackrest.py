#!/usr/bin/env python3
"""End-to-end benchmark: archive-push of 64 real 16 MiB WAL segments, cairn vs pgBackRest,
measured in the same run on the same files.

Both tools use zstd level 3 and encryption (cairn: AES-256-GCM, pgBackRest: aes-256-cbc),
both push synchronously one segment per process, as archive_command does. Prints per-segment
wall time, the ratio (pgBackRest time / cairn time: > 1 means cairn is faster), repository
sizes and each tool's peak RSS. Run as root after `cargo build --release --bins` and
`scripts/install-test-deps.sh` (it needs PostgreSQL 15 and pgbackrest from Debian).

It also measures the floor of a synchronous push on the same segments: the zstd CLI at the
same level on all cores (-T0) reading the segment and writing the result, then fsync of the
file and its directory.

Usage: benches/archive_push_vs_pgbackrest.py [--segments 64] [--keep]
"""
import argparse, os, pwd, resource, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGBIN = "/usr/lib/postgresql/15/bin"
PG = pwd.getpwnam("postgres")


def as_pg(cmd, **kw):
    """Run cmd as postgres; returns CompletedProcess (raises on failure)."""
    return subprocess.run(["runuser", "-u", "postgres", "--"] + cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd, env=None):
    """Run cmd as postgres; return (seconds, peak RSS KiB, CPU seconds user + system) of the
    child."""
    def drop():
        os.setgid(PG.pw_gid)
        os.setuid(PG.pw_uid)
    # setuid in the child rather than runuser, so neither tool pays for PAM in the timing.
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=drop, cwd=PG.pw_dir if os.path.isdir(PG.pw_dir) else "/")
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}: {p.stderr.read().decode()}")
    return dt, ru.ru_maxrss, ru.ru_utime + ru.ru_stime


def du(path):
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dp, f))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                    help="where the cairn binaries are (default target/release; target/profiling for perf)")
    args = ap.parse_args()
    load0 = f"{os.getloadavg()[0]:.2f}"
    work = tempfile.mkdtemp(prefix="cairn-bench-")
    os.chown(work, PG.pw_uid, PG.pw_gid)
    os.chmod(work, 0o755)
    d = lambda *p: os.path.join(work, *p)
    for sub in ["bin", "wal", "run", "cairn-repo", "cairn-spool", "pgbr-repo", "pgbr-log", "pgbr-spool"]:
        os.makedirs(d(sub))
        os.chown(d(sub), PG.pw_uid, PG.pw_gid)
    for b in ["cairn", "cairn-archive-push", "cairn-archive-get"]:
        shutil.copy(os.path.join(args.bin_dir, b), d("bin", b))
    port = 54400 + os.getpid() % 500
    try:
        as_pg([f"{PGBIN}/initdb", "-D", d("pgdata"), "-A", "trust", "-E", "UTF8", "--no-locale"])
        with open(d("pgdata", "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = ''\nport = {port}\nunix_socket_directories = '{d('run')}'\n"
                    f"archive_mode = on\narchive_command = 'cp %p {d('wal')}/%f'\nmax_wal_size = '4GB'\n")
        as_pg([f"{PGBIN}/pg_ctl", "-D", d("pgdata"), "-l", d("pg.log"), "-w", "start"])
        psql = ["psql", "-X", "-q", "-At", "-h", d("run"), "-p", str(port), "-d", "postgres", "-c"]
        # Realistic WAL: a pgbench-like mix of inserts and updates, not empty switches.
        as_pg(psql + ["CREATE TABLE w (id bigserial primary key, a int, b text)"])
        target = args.segments + 2
        while len([f for f in os.listdir(d("wal")) if len(f) == 24]) < target:
            as_pg(psql + ["INSERT INTO w (a, b) SELECT g, md5(random()::text) || repeat('x', (random()*200)::int) "
                          "FROM generate_series(1, 60000) g; UPDATE w SET a = a + 1 WHERE id % 7 = 0"])
            time.sleep(0.2)
        segs = sorted(f for f in os.listdir(d("wal")) if len(f) == 24)[: args.segments]

        # cairn
        with open(d("cairn.toml"), "w") as f:
            f.write(f"[repo]\npath = \"{d('cairn-repo')}\"\ncipher-pass = \"bench passphrase\"\ncompress-level = 3\n"
                    f"[archive]\nspool-path = \"{d('cairn-spool')}\"\n"
                    f"[stanza.main]\npg-data = \"{d('pgdata')}\"\npg-host = \"{d('run')}\"\npg-port = {port}\n")
        os.chown(d("cairn.toml"), PG.pw_uid, PG.pw_gid)
        env = dict(os.environ, CAIRN_CONFIG=d("cairn.toml"))
        as_pg([d("bin", "cairn"), "stanza-create"], env=env)
        # pgBackRest
        with open(d("pgbackrest.conf"), "w") as f:
            f.write(f"[global]\nrepo1-path={d('pgbr-repo')}\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench passphrase\n"
                    f"compress-type=zst\ncompress-level=3\nlog-path={d('pgbr-log')}\nspool-path={d('pgbr-spool')}\n"
                    f"lock-path={d('pgbr-spool')}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n"
                    f"[main]\npg1-path={d('pgdata')}\npg1-socket-path={d('run')}\npg1-port={port}\n")
        os.chown(d("pgbackrest.conf"), PG.pw_uid, PG.pw_gid)
        pgbr = ["pgbackrest", f"--config={d('pgbackrest.conf')}", "--stanza=main"]
        as_pg(pgbr + ["stanza-create"])

        # The tools take turns segment by segment (cairn, pgBackRest, floor), so load from
        # elsewhere on the machine falls on all three alike.
        # CPU time (user + system, from wait4) is kept beside wall time: on a machine busy with
        # other work, wall time mostly measures the wait for a core, CPU time does not.
        results = {k: ([], 0) for k in ["cairn", "pgbackrest", "floor", "cairn-get", "pgbackrest-get"]}
        cpu = {k: [] for k in results}

        def record(name, t, m, c):
            times, rss = results[name]
            times.append(t)
            results[name] = (times, max(rss, m))
            cpu[name].append(c)

        # The floor of a synchronous push on this machine: read the segment, zstd at the same
        # level on all cores (the zstd CLI, -T0), write the result, fsync it and its directory
        # (what makes a new file durable). One process per segment, as archive_command runs.
        os.makedirs(d("floor"))
        os.chown(d("floor"), PG.pw_uid, PG.pw_gid)

        def floor(s):
            out = d("floor", s + ".zst")
            t0 = time.perf_counter()
            _, m, c = timed(["zstd", "-q", "-3", "-T0", "-f", d("wal", s), "-o", out])
            for path in [out, d("floor")]:
                fd = os.open(path, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            return time.perf_counter() - t0, m, c

        for s in segs:
            record("cairn", *timed([d("bin", "cairn-archive-push"), d("wal", s)], env=env))
            record("pgbackrest", *timed(pgbr + ["archive-push", d("wal", s)], env=env))
            record("floor", *floor(s))
        # archive-get of the same segments, as recovery runs it.
        os.makedirs(d("get"))
        os.chown(d("get"), PG.pw_uid, PG.pw_gid)
        for s in segs:
            record("cairn-get", *timed([d("bin", "cairn-archive-get"), s, d("get", s)], env=env))
            os.unlink(d("get", s))
            record("pgbackrest-get", *timed(pgbr + ["archive-get", s, d("get", s)], env=env))
            os.unlink(d("get", s))
        # cairn with [archive] async = true: PostgreSQL's view, one call per segment in order,
        # while the background worker pushes ahead (process-max 2).
        for sub in ["async-repo", "async-spool", "async-wal/pg_wal/archive_status"]:
            os.makedirs(d(sub), exist_ok=True)
        for s in segs:
            shutil.copy(d("wal", s), d("async-wal/pg_wal", s))
            open(d("async-wal/pg_wal/archive_status", s + ".ready"), "w").close()
        subprocess.run(["chown", "-R", "postgres:postgres", d("async-repo"), d("async-spool"), d("async-wal")], check=True)
        with open(d("cairn-async.toml"), "w") as f:
            f.write(f"[repo]\npath = \"{d('async-repo')}\"\ncipher-pass = \"bench passphrase\"\ncompress-level = 3\n"
                    f"[archive]\nasync = true\nprocess-max = 2\nspool-path = \"{d('async-spool')}\"\n"
                    f"[stanza.main]\npg-data = \"{d('pgdata')}\"\npg-host = \"{d('run')}\"\npg-port = {port}\n")
        os.chown(d("cairn-async.toml"), PG.pw_uid, PG.pw_gid)
        aenv = dict(os.environ, CAIRN_CONFIG=d("cairn-async.toml"))
        as_pg([d("bin", "cairn"), "stanza-create"], env=aenv)
        t0 = time.perf_counter()
        for s in segs:
            timed([d("bin", "cairn-archive-push"), d("async-wal/pg_wal", s)], env=aenv)
            os.rename(d("async-wal/pg_wal/archive_status", s + ".ready"), d("async-wal/pg_wal/archive_status", s + ".done"))
        results["cairn-async"] = ((time.perf_counter() - t0) / len(segs), 0)
        repo_sizes = {"cairn": du(d("cairn-repo")), "pgbackrest": du(d("pgbr-repo", "archive"))}
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", d("pgdata"), "-m", "immediate", "stop"],
                       capture_output=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    c_t, c_rss = results["cairn"]
    p_t, p_rss = results["pgbackrest"]
    c_mean, p_mean = sum(c_t) / len(c_t), sum(p_t) / len(p_t)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    mean = lambda xs: sum(xs) / len(xs)
    print(f"load average before / after: {load0} / {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    print(f"segments: {len(c_t)} x 16 MiB (real WAL from an insert/update workload)")
    print(f"cairn-archive-push:     {c_mean*1000:8.1f} ms/segment  peak RSS {c_rss/1024:6.1f} MiB  repo {repo_sizes['cairn']/2**20:7.1f} MiB")
    print(f"pgbackrest archive-push:{p_mean*1000:8.1f} ms/segment  peak RSS {p_rss/1024:6.1f} MiB  repo {repo_sizes['pgbackrest']/2**20:7.1f} MiB")
    print(f"push ratio (pgbackrest time / cairn time): {p_mean / c_mean:.2f}x (medians {med(p_t) / med(c_t):.2f}x)")
    f_t = results["floor"][0]
    f_mean = sum(f_t) / len(f_t)
    print(f"push floor (zstd -3 -T0, write, fsync file + dir): {f_mean*1000:8.1f} ms/segment")
    print(f"cairn push / floor: {c_mean / f_mean:.2f}x (medians {med(c_t) / med(f_t):.2f}x)")
    a_mean = results["cairn-async"][0]
    print(f"cairn-archive-push async (process-max 2): {a_mean*1000:8.1f} ms/segment as PostgreSQL sees it")
    print(f"async push ratio (pgbackrest sync time / cairn async time): {p_mean / a_mean:.2f}x")
    cg_t, cg_rss = results["cairn-get"]
    pg_t, pg_rss = results["pgbackrest-get"]
    cg, pgm = sum(cg_t) / len(cg_t), sum(pg_t) / len(pg_t)
    print(f"cairn-archive-get:      {cg*1000:8.1f} ms/segment  peak RSS {cg_rss/1024:6.1f} MiB")
    print(f"pgbackrest archive-get: {pgm*1000:8.1f} ms/segment  peak RSS {pg_rss/1024:6.1f} MiB")
    print(f"get ratio (pgbackrest time / cairn time): {pgm / cg:.2f}x (medians {med(pg_t) / med(cg_t):.2f}x)")
    for name in ["cairn", "pgbackrest", "floor", "cairn-get", "pgbackrest-get"]:
        print(f"CPU (user + system) {name:15s}: {mean(cpu[name])*1000:8.1f} ms/segment")
    print(f"CPU ratios: push pgbackrest / cairn {mean(cpu['pgbackrest']) / mean(cpu['cairn']):.2f}x, "
          f"get pgbackrest / cairn {mean(cpu['pgbackrest-get']) / mean(cpu['cairn-get']):.2f}x, "
          f"cairn push / floor {mean(cpu['cairn']) / mean(cpu['floor']):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
