#!/usr/bin/env python3
"""End-to-end benchmark: full backup, incremental backup, restore and PITR, cairn vs pgBackRest,
measured in the same run on the same cluster.

One PostgreSQL 15 cluster; its archive_command pushes every segment to both repositories
(cairn-archive-push, then pgbackrest archive-push; it fails if either fails), so both tools
back up and recover the very same data and WAL, and both backups wait for the same archiver.
Data: `pgbench -i -s SCALE` plus RANDOM_MIB MiB of incompressible rows (pgcrypto
gen_random_bytes). Phases, each tool in turn (cairn first; --first pgbackrest swaps), with a
CHECKPOINT and an idle archiver before each timed backup so neither pays for the other's dirty
buffers or WAL:

  full backup -> pgbench -T 20 -c 2 -> incr backup -> restore of the latest backup with
  target immediate + promote -> pgbench until >= PITR_SEGMENTS segments past the incr
  backups -> note a target time -> a few seconds more pgbench -> restore to that time with
  promote, start on another port, time until pg_is_in_recovery() is false.

Restores are repeated (--repeat, order alternating) and reported as medians; backups run once
per tool, so run the script with --first pgbackrest as well to see the order effect. Before
every timed step the script syncs (no writeback of the previous step lands in the next);
--drop-caches also drops the page cache there and between a restore and its start.

Both tools: zstd level 3, encryption (cairn AES-256-GCM, pgBackRest aes-256-cbc), pgBackRest
with process-max=2 start-fast=y. Every restored cluster is checked against the source
(pgbench sums and counts, a digest of the random table) at the point it restores, and the two
tools against each other; a mismatch fails the run. Prints wall times, ratios (pgBackRest time
/ cairn time: > 1 means cairn is faster), repository sizes after each phase and peak RSS
(largest single process, from wait4, and the sampled sum over the tool's process tree).

Run as root after `cargo build --release --bins` and `scripts/install-test-deps.sh`
(PostgreSQL 15 with pgbench and pgcrypto, pgbackrest, from Debian).

Usage: benches/backup_restore_vs_pgbackrest.py [--scale 50] [--random-mib 200]
       [--pitr-segments 64] [--first cairn|pgbackrest] [--repeat 3] [--drop-caches] [--async]
       [--bin-dir target/release] [--keep]
"""
import argparse, json, os, pwd, shutil, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGBIN = "/usr/lib/postgresql/15/bin"
PG = pwd.getpwnam("postgres")
PASS = "bench passphrase"


def drop():
    os.setgid(PG.pw_gid)
    os.setuid(PG.pw_uid)


def pg_cwd():
    return PG.pw_dir if os.path.isdir(PG.pw_dir) else "/"


def as_pg(cmd, check=True, **kw):
    """Run cmd as postgres (setuid in the child); returns CompletedProcess."""
    p = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=drop, cwd=pg_cwd(), **kw)
    if check and p.returncode != 0:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr}{p.stdout}")
    return p


def tree_rss_kib(root):
    """Sum of VmRSS over root and its descendants (scans /proc: no children files here)."""
    kids, rss = {}, {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            with open(f"/proc/{e}/statm") as f:
                rss[int(e)] = int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
            kids.setdefault(ppid, []).append(int(e))
        except (OSError, ValueError, IndexError):
            pass
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(kids.get(p, []))
    return total


def machine_cpu():
    """(busy, idle) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / hz, idle / hz


class Step:
    """One timed command: wall seconds, wait4 peak RSS (largest process), sampled tree RSS,
    the tool's own CPU (user, system; its waited-for children included) and the busy CPU of
    the whole machine meanwhile (the tool, PostgreSQL's processes serving it, the kernel)."""

    def __init__(self, cmd, secs, rc, stderr, maxrss, treerss, user=0.0, sys_=0.0, busy=0.0):
        self.cmd, self.secs, self.rc, self.stderr = cmd, secs, rc, stderr
        self.maxrss, self.treerss = maxrss, treerss
        self.user, self.sys, self.busy = user, sys_, busy

    @property
    def ok(self):
        return self.rc == 0


def timed(cmd, env=None):
    """Run cmd as postgres; never raises on a failing command (the caller records it)."""
    # setuid in the child rather than runuser, so neither tool pays for PAM in the timing.
    t0 = time.perf_counter()
    busy0, _ = machine_cpu()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=drop, cwd=pg_cwd())
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tree_rss_kib(p.pid))
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out = {}
    readers = [threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read()), daemon=True)
               for k, s in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    for r in readers:
        r.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    err = (out.get("err") or b"").decode(errors="replace") + (out.get("out") or b"").decode(errors="replace")
    busy = machine_cpu()[0] - busy0
    return Step(cmd, dt, p.returncode, err, ru.ru_maxrss, max(peak[0], ru.ru_maxrss),
                ru.ru_utime, ru.ru_stime, busy)


def settle(drop_caches):
    """Before a timed step: no pending writeback of the previous one; optionally a cold cache."""
    os.sync()
    if drop_caches:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def du(path):
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dp, f)).st_size
            except OSError:
                pass
    return total


def seg_no(name):
    """Segment number (timeline ignored) of a 24-character WAL file name, 16 MiB segments."""
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=50, help="pgbench -i scale (default 50)")
    ap.add_argument("--random-mib", type=int, default=200, help="MiB of incompressible rows (default 200)")
    ap.add_argument("--pitr-segments", type=int, default=64, help="WAL segments the PITR must replay (default 64)")
    ap.add_argument("--first", choices=["cairn", "pgbackrest"], default="cairn",
                    help="which tool runs first in every phase (default cairn)")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the page cache before every timed step and between a restore and its start")
    ap.add_argument("--repeat", type=int, default=3, help="restore rounds per tool, order alternating (default 3)")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                    help="where cairn, cairn-archive-push and cairn-archive-get are (default target/release)")
    ap.add_argument("--async", dest="async_", action="store_true",
                    help="asynchronous archiving for both tools: cairn [archive] async = true (push through "
                         "the spool, archive-get prefetch), pgBackRest archive-async=y (same queue size, 128MiB)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    order = ["cairn", "pgbackrest"] if args.first == "cairn" else ["pgbackrest", "cairn"]
    step = 1 if args.first == "cairn" else -1
    work = tempfile.mkdtemp(prefix="cairn-bench-br-")
    os.chown(work, PG.pw_uid, PG.pw_gid)
    os.chmod(work, 0o755)
    d = lambda *p: os.path.join(work, *p)
    for sub in ["bin", "run", "cairn-repo", "cairn-spool", "pgbr-repo", "pgbr-log", "pgbr-spool"]:
        os.makedirs(d(sub))
        os.chown(d(sub), PG.pw_uid, PG.pw_gid)
    for b in ["cairn", "cairn-archive-push", "cairn-archive-get"]:
        shutil.copy(os.path.join(args.bin_dir, b), d("bin", b))
    port = 54400 + os.getpid() % 500
    ports = {"cairn": port + 1, "pgbackrest": port + 2}
    running = [d("pgdata")]
    failures = []       # (phase, tool, Step or message)
    mismatches = []
    times = {}          # (phase, tool) -> [Step, per round]
    extra = {}          # (phase, tool) -> [seconds from start to promoted, per round]
    sizes = []          # (phase, cairn bytes, pgbackrest bytes)
    notes = []
    replayed = {}       # tool -> segments the PITR replayed
    totals = {}         # (phase, tool) -> [restore + start to promoted, per round]

    def psql_at(sql, p=port, db="postgres", host=None):
        return as_pg(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host or d("run"), "-p", str(p),
                      "-d", db, "-c", sql]).stdout.strip()

    def wait_archived(timeout=600):
        """No .ready file left and no archive failure; returns the archiver's last segment."""
        t0 = time.time()
        while True:
            ready = [f for f in os.listdir(d("pgdata", "pg_wal", "archive_status")) if f.endswith(".ready")]
            failed = psql_at("SELECT failed_count || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver")
            if failed.split()[0] != "0":
                tail = open(d("pg.log")).read()[-3000:]
                raise SystemExit(f"archive_command failed ({failed}); server log tail:\n{tail}")
            if not ready:
                return psql_at("SELECT last_archived_wal FROM pg_stat_archiver")
            if time.time() - t0 > timeout:
                raise SystemExit(f"archiving did not catch up in {timeout} s: {len(ready)} ready")
            time.sleep(0.2)

    def quiesce():
        psql_at("CHECKPOINT")
        wait_archived()

    def record_sizes(phase):
        sizes.append((phase, du(d("cairn-repo")), du(d("pgbr-repo"))))

    def checksums(p, host=None):
        q = ("SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT count(*) FROM pgbench_accounts)"
             " || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches)"
             " || ' ' || (SELECT count(*) FROM pgbench_history) || ' ' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
             " || ' ' || (SELECT count(*) || ':' || md5(string_agg(md5(b), '' ORDER BY id)) FROM rnd)")
        return psql_at(q, p=p, host=host)

    def current_seg():
        return psql_at("SELECT pg_walfile_name(pg_current_wal_lsn())")

    def start_restored(tool, pgdata, timeout=1800):
        """Start a restored cluster on its own port (archiving off: both must not write to the
        shared repositories), wait until it has left recovery; returns seconds from start."""
        os.makedirs(d("run-" + tool), exist_ok=True)
        os.chown(d("run-" + tool), PG.pw_uid, PG.pw_gid)
        t0 = time.perf_counter()
        as_pg([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", d(f"{tool}-restored.log"), "-t", str(timeout), "-w",
               "-o", f"-p {ports[tool]} -c unix_socket_directories='{d('run-' + tool)}' -c archive_mode=off "
                     f"-c listen_addresses=''", "start"], check=False)
        running.append(pgdata)
        while True:
            p = subprocess.run(["psql", "-X", "-At", "-h", d("run-" + tool), "-p", str(ports[tool]), "-d", "postgres",
                                "-c", "SELECT pg_is_in_recovery()"], capture_output=True, text=True,
                               preexec_fn=drop, cwd=pg_cwd())
            if p.returncode == 0 and p.stdout.strip() == "f":
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout or not os.path.exists(os.path.join(pgdata, "postmaster.pid")):
                log = open(d(f"{tool}-restored.log")).read()[-3000:]
                raise RuntimeError(f"{tool}: restored cluster did not finish recovery; log tail:\n{log}")
            time.sleep(0.05)

    def redo_segments(log):
        """Segments replayed, from the server log's 'redo starts at' and 'redo done at'."""
        lsn = lambda t: int(t.split("/")[0], 16) << 32 | int(t.split("/")[1], 16)
        start = done = None
        for line in open(log):
            if "redo starts at " in line:
                start, done = lsn(line.split("redo starts at ")[1].split()[0]), None
            elif "redo done at " in line:
                done = lsn(line.split("redo done at ")[1].split()[0])
        return (done >> 24) - (start >> 24) + 1 if start is not None and done is not None else None

    def stop_cluster(pgdata):
        subprocess.run([f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "fast", "-w", "stop"], capture_output=True,
                       preexec_fn=drop, cwd=pg_cwd())
        if pgdata in running:
            running.remove(pgdata)

    def verify(phase, tool, pgdata, expected):
        got = checksums(ports[tool], host=d("run-" + tool))
        stop_cluster(pgdata)
        if got != expected:
            mismatches.append(f"{phase}: {tool} restored {got!r}, source had {expected!r}")
        return got

    try:
        # --- the cluster and the two repositories
        as_pg([f"{PGBIN}/initdb", "-D", d("pgdata"), "-A", "trust", "-E", "UTF8", "--no-locale"])
        with open(d("cairn.toml"), "w") as f:
            f.write(f"[repo]\npath = \"{d('cairn-repo')}\"\ncipher-pass = \"{PASS}\"\ncompress-level = 3\n"
                    f"[archive]\nspool-path = \"{d('cairn-spool')}\"\nasync = {'true' if args.async_ else 'false'}\n"
                    f"[stanza.main]\npg-data = \"{d('pgdata')}\"\npg-host = \"{d('run')}\"\npg-port = {port}\n")
        with open(d("pgbackrest.conf"), "w") as f:
            f.write(f"[global]\nrepo1-path={d('pgbr-repo')}\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={PASS}\n"
                    f"repo1-retention-full=10\ncompress-type=zst\ncompress-level=3\nprocess-max=2\nstart-fast=y\n"
                    f"log-path={d('pgbr-log')}\nspool-path={d('pgbr-spool')}\nlock-path={d('pgbr-spool')}\n"
                    f"log-level-console=warn\nlog-level-file=off\n"
                    f"archive-async={'y' if args.async_ else 'n'}\narchive-get-queue-max=128MiB\n"
                    f"[main]\npg1-path={d('pgdata')}\npg1-socket-path={d('run')}\npg1-port={port}\n")
        for f in ["cairn.toml", "pgbackrest.conf"]:
            os.chown(d(f), PG.pw_uid, PG.pw_gid)
            os.chmod(d(f), 0o600)
        env = dict(os.environ, CAIRN_CONFIG=d("cairn.toml"))
        cairn = [d("bin", "cairn")]
        pgbr = ["pgbackrest", f"--config={d('pgbackrest.conf')}", "--stanza=main"]
        # One archiver pushes each segment to both repositories; either failing fails the push.
        archive_command = (f"CAIRN_CONFIG={d('cairn.toml')} {d('bin', 'cairn-archive-push')} %p && "
                           f"pgbackrest --config={d('pgbackrest.conf')} --stanza=main archive-push %p")
        with open(d("pgdata", "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = ''\nport = {port}\nunix_socket_directories = '{d('run')}'\n"
                    f"archive_mode = on\narchive_command = '{archive_command}'\n"
                    f"max_wal_size = '8GB'\ncheckpoint_timeout = '30min'\nshared_buffers = '256MB'\n")
        as_pg([f"{PGBIN}/pg_ctl", "-D", d("pgdata"), "-l", d("pg.log"), "-w", "start"])
        as_pg(cairn + ["stanza-create"], env=env)
        as_pg(pgbr + ["stanza-create"])

        # --- data: pgbench tables + incompressible rows (1 KiB of random bytes each)
        t0 = time.perf_counter()
        as_pg([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(args.scale), "-h", d("run"), "-p", str(port), "postgres"])
        psql_at("CREATE EXTENSION pgcrypto; CREATE TABLE rnd (id int PRIMARY KEY, b bytea); "
                "ALTER TABLE rnd ALTER COLUMN b SET STORAGE EXTERNAL")
        rows = args.random_mib * 1024
        for lo in range(0, rows, 51200):
            psql_at(f"INSERT INTO rnd SELECT g, gen_random_bytes(1024) FROM generate_series({lo + 1}, {min(rows, lo + 51200)}) g")
        psql_at("VACUUM ANALYZE")
        quiesce()
        db_size = int(psql_at("SELECT sum(pg_database_size(datname)) FROM pg_database"))
        print(f"data loaded in {time.perf_counter() - t0:.0f} s: cluster {db_size / 2**20:.0f} MiB "
              f"(pgbench scale {args.scale}, {args.random_mib} MiB random)", flush=True)
        record_sizes("after data load (WAL only)")

        def backup(phase, tool, cmd, extra_env=None):
            quiesce()
            settle(args.drop_caches)
            s = timed(cmd, env=extra_env)
            times[(phase, tool)] = [s]
            if not s.ok:
                failures.append((phase, tool, s))
            print(f"{phase:>8} {tool:<10} {s.secs:8.1f} s  rc {s.rc}  CPU: tool user {s.user:.1f} s, "
                  f"system {s.sys:.1f} s; machine busy {s.busy:.1f} s", flush=True)
            return s.ok

        ok = {"cairn": True, "pgbackrest": True}
        backup_cmd = {"cairn": lambda t: (cairn + ["backup", "--type", t], env),
                      "pgbackrest": lambda t: (pgbr + ["backup", f"--type={t}"], None)}
        for tool in order:
            ok[tool] &= backup("full", tool, *backup_cmd[tool]("full"))
        wait_archived()
        record_sizes("after full backups")

        as_pg([f"{PGBIN}/pgbench", "-T", "20", "-c", "2", "-j", "2", "-h", d("run"), "-p", str(port), "postgres"])
        quiesce()
        after_bench = checksums(port)
        for tool in order:
            if ok[tool]:
                ok[tool] &= backup("incr", tool, *backup_cmd[tool]("incr"))
        wait_archived()
        record_sizes("after incr backups")
        incr_end_seg = current_seg()

        # --- restore the latest (incr) backup, recover to consistency, promote
        restore_cmd = {
            "cairn": lambda D, t: (cairn + ["restore", "--pg-data", D] + t["cairn"] + ["--target-action", "promote"], env),
            "pgbackrest": lambda D, t: (pgbr + ["restore", f"--pg1-path={D}"] + t["pgbackrest"]
                                        + ["--target-action=promote"], None)}
        restored = {}

        def restore_rounds(phase, target_args, expected):
            """--repeat rounds, the order alternating; each: sync, restore (timed), start, wait
            until promoted (timed), compare with the source, stop, remove."""
            broken = {t for t in order if not ok[t]}      # no backup to restore, or failed before
            for r in range(args.repeat):
                for tool in (order if r % 2 == 0 else order[::-1]):
                    if tool in broken:
                        continue
                    D = d(f"{phase}-{tool}")
                    os.makedirs(D, mode=0o700)
                    os.chown(D, PG.pw_uid, PG.pw_gid)
                    settle(args.drop_caches)
                    s = timed(*restore_cmd[tool](D, target_args))
                    times.setdefault((phase, tool), []).append(s)
                    line = f"{phase:>8} {tool:<10} restore {s.secs:6.1f} s  rc {s.rc}"
                    if not s.ok:
                        print(line, flush=True)
                        failures.append((phase + " restore", tool, s))
                        broken.add(tool)
                        shutil.rmtree(D, ignore_errors=True)
                        continue
                    try:
                        settle(args.drop_caches)
                        secs = start_restored(tool, D)
                        extra.setdefault((phase, tool), []).append(secs)
                        totals.setdefault((phase, tool), []).append(s.secs + secs)
                        if phase == "pitr":
                            replayed[tool] = redo_segments(d(f"{tool}-restored.log"))
                        print(f"{line}, start to promoted {secs:6.1f} s", flush=True)
                        restored[(phase, tool)] = verify(phase, tool, D, expected)
                    except RuntimeError as e:
                        failures.append((phase + " recovery", tool, str(e)))
                        broken.add(tool)
                        stop_cluster(D)
                    shutil.rmtree(D, ignore_errors=True)
            a, b = restored.get((phase, "cairn")), restored.get((phase, "pgbackrest"))
            if a is not None and b is not None and a != b:
                mismatches.append(f"{phase}: cairn restored {a!r}, pgBackRest {b!r}")

        restore_rounds("restore", {"cairn": ["--target", "immediate"], "pgbackrest": ["--type=immediate"]},
                       after_bench)

        # --- WAL for the PITR: pgbench until >= N segments past the incr backups
        # synchronous_commit off for this workload only: the volume of WAL is what matters here,
        # and waiting on fsync per commit would make 64 segments take a quarter of an hour.
        fast = dict(os.environ, PGOPTIONS="-c synchronous_commit=off")
        t0 = time.perf_counter()
        while seg_no(current_seg()) - seg_no(incr_end_seg) < args.pitr_segments:
            as_pg([f"{PGBIN}/pgbench", "-T", "5", "-c", "2", "-j", "2", "-h", d("run"), "-p", str(port), "postgres"],
                  env=fast)
        bench_secs = time.perf_counter() - t0
        at_target = checksums(port)     # no commit between these sums and the target time
        target = psql_at("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
        target_seg = current_seg()
        time.sleep(0.01)
        as_pg([f"{PGBIN}/pgbench", "-T", "3", "-c", "2", "-j", "2", "-h", d("run"), "-p", str(port), "postgres"],
              env=fast)
        psql_at("SELECT pg_switch_wal()")
        wait_archived()
        replay_segs = seg_no(target_seg) - seg_no(incr_end_seg) + 1
        print(f"PITR: {bench_secs:.0f} s of pgbench, target {target} in {target_seg}, "
              f">= {replay_segs} segments after the incr backups", flush=True)
        record_sizes("after PITR WAL archived")

        restore_rounds("pitr", {"cairn": ["--target-time", target],
                                "pgbackrest": ["--type=time", f"--target={target}"]}, at_target)
        info = json.loads(as_pg(cairn + ["info", "--output", "json"], env=env).stdout)
        cbk = info["stanzas"][0]["backups"]
        notes.append("cairn backups: " + ", ".join(f"{b['label']} ({b['type']}, repo_added "
                                                   f"{b['repo_added'] / 2**20:.1f} MiB)" for b in cbk))
        pinfo = json.loads(as_pg(pgbr + ["info", "--output=json"]).stdout)
        notes.append("pgBackRest backups: " + ", ".join(
            f"{b['label']} ({b['type']}, repo {b['info']['repository']['delta'] / 2**20:.1f} MiB)"
            for b in pinfo[0]["backup"]))
    finally:
        for pgdata in reversed(running):
            subprocess.run([f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"], capture_output=True,
                           preexec_fn=drop, cwd=pg_cwd())
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")

    # --- report
    med = statistics.median
    print()
    print(f"data: pgbench scale {args.scale} + {args.random_mib} MiB random rows = {db_size / 2**20:.0f} MiB cluster; "
          f"PITR target {target}, segments replayed: cairn {replayed.get('cairn')}, "
          f"pgBackRest {replayed.get('pgbackrest')} (each from its own incr backup)")
    print(f"archiving: {'async for both (cairn prefetch, pgBackRest archive-async)' if args.async_ else 'synchronous'}")
    print(f"{args.first} ran first; restores: median of {args.repeat} rounds, order alternating (range in brackets); "
          f"page cache {'dropped' if args.drop_caches else 'kept'} before each timed step")
    print(f"{'phase':<34}{'cairn s':>15}{'pgBackRest s':>17}{'ratio':>8}   peak RSS MiB cairn / pgBackRest"
          f" (largest process; process tree)")
    rows = [("full backup", "full", "cmd"), ("incr backup", "incr", "cmd"),
            ("restore latest (command)", "restore", "cmd"),
            ("restore latest, start to promoted", "restore", "extra"),
            ("PITR restore (command)", "pitr", "cmd"),
            ("PITR recovery, start to promoted", "pitr", "extra"),
            ("PITR total", "pitr", "total")]
    for label, phase, kind in rows:
        vals, rss = {}, {}
        for tool in ["cairn", "pgbackrest"]:
            steps = [s for s in times.get((phase, tool), []) if s.ok]
            ready = extra.get((phase, tool), [])
            if kind == "cmd" and steps:
                vals[tool] = [s.secs for s in steps]
                rss[tool] = f"{max(s.maxrss for s in steps) / 1024:.0f}; {max(s.treerss for s in steps) / 1024:.0f}"
            elif kind == "extra" and ready:
                vals[tool] = ready
            elif kind == "total" and totals.get((phase, tool)):
                vals[tool] = totals[(phase, tool)]
        c, p = vals.get("cairn"), vals.get("pgbackrest")

        def fmt(v):
            if not v:
                return "FAILED"
            return f"{med(v):.1f}" + (f" [{min(v):.1f}-{max(v):.1f}]" if len(v) > 1 else "")
        ratio = f"{med(p) / med(c):7.2f}x" if c and p else f"{'-':>8}"
        r = f"   {rss.get('cairn', '-')} / {rss.get('pgbackrest', '-')}" if rss else ""
        print(f"{label:<34}{fmt(c):>15}{fmt(p):>17}{ratio}{r}")
    print()
    print(f"{'repository size, MiB':<34}{'cairn':>15}{'pgBackRest':>17}")
    for phase, c, p in sizes:
        print(f"{phase:<34}{c / 2**20:15.1f}{p / 2**20:17.1f}")
    for n in notes:
        print(n)
    if failures:
        print("\nFAILURES:")
        for phase, tool, s in failures:
            if isinstance(s, Step):
                print(f"  {phase} / {tool}: exit {s.rc}: {' '.join(s.cmd)}\n    {s.stderr.strip()}")
            else:
                print(f"  {phase} / {tool}: {s}")
    if mismatches:
        print("\nDATA MISMATCH:")
        for m in mismatches:
            print("  " + m)
    elif not failures:
        print("verified: every restored cluster matches the source at its point, and cairn matches pgBackRest")
    return 1 if failures or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
