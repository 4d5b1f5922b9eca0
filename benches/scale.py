#!/usr/bin/env python3
"""Scale benchmark: cairn's reads on a synthetic year-old repository.

For each size it generates a repository with `cairn-bench-scale generate` (real object
formats through cairn-repo's writers, tiny objects), then times, each in its own process
with its peak RSS (wait4):

  info, restore --dry-run (latest), expire --dry-run, verify --set <newest backup>,
  `info` right after 100 more segments are archived (`cairn-bench-scale append`: that
  info writes the next WAL index), and a backup's start (`cairn-bench-scale chunk-index`: the chunk-index load a backup
  does before it asks PostgreSQL for anything).

    cargo build --release -p cairn-cli -p cairn-bench-scale
    benches/scale.py --sizes 10000,100000          # ~10 min, ~3 GB of small files in --work
    benches/scale.py --sizes 1000000 --keep        # the 1M run: ~1 h, ~10 GB

Prints a markdown table (benches/README.md has the figures) and writes JSON to --json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


GNU_TIME = "/usr/bin/time"


def run(cmd, env, out_path=None):
    """Run cmd; return (seconds, peak RSS MiB, exit code, stdout text); CPU seconds in run.cpu.

    A child's ru_maxrss counts the memory of the process it was forked from (Linux keeps the
    high-water mark across exec), and this script grows to hundreds of MiB at 1M segments:
    so the peak RSS comes from GNU time (Debian package `time`), whose own small process
    forks the command, when it is installed."""
    with open(out_path or os.devnull, "w") as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss_file:
        wrapped = cmd
        if os.access(GNU_TIME, os.X_OK):
            wrapped = [GNU_TIME, "-f", "%M", "-o", rss_file.name] + cmd
        start = time.monotonic()
        p = subprocess.Popen(wrapped, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.monotonic() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        errtext = err.read().decode(errors="replace")
        rss = usage.ru_maxrss / 1024.0
        if wrapped is not cmd:
            lines = rss_file.read().split()
            if lines and lines[-1].isdigit():
                rss = int(lines[-1]) / 1024.0
    text = open(out_path).read() if out_path else ""
    run.cpu = usage.ru_utime + usage.ru_stime
    if p.returncode != 0:
        print(f"  ! {' '.join(cmd)} exited {p.returncode}: {errtext.strip()[-500:]}", file=sys.stderr)
    return secs, rss, p.returncode, text


def config(dirpath, s3):
    repo = f'path = "{dirpath}/repo"'
    extra = ""
    if s3:
        repo = f'url = "s3://{s3["bucket"]}/scale-{os.path.basename(dirpath)}"'
        extra = (
            "[repo.s3]\n"
            f'endpoint = "{s3["endpoint"]}"\nregion = "us-east-1"\n'
            'access-key-id = "testing"\nsecret-access-key = "testing"\nallow-http = true\n'
        )
    text = f"""[repo]
{repo}
cipher-pass = "scale-bench"
{extra}
[archive]
spool-path = "{dirpath}/spool"

[retention]
full = 20

[stanza.main]
pg-data = "{dirpath}/pgdata"
"""
    path = os.path.join(dirpath, "bench.toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="WAL segment counts, comma separated")
    ap.add_argument("--backups", type=int, default=1000)
    ap.add_argument("--packs", type=int, default=50000)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--work", default="/tmp/cairn-scale")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gen-dir", default="/dev/shm/cairn-scale",
                    help="generate here (tmpfs: no fsync cost), then copy to --work; '' to generate in place")
    ap.add_argument("--keep", action="store_true", help="keep the repositories (and reuse kept ones)")
    ap.add_argument("--s3-endpoint", help="a running S3 server (moto): generate there instead")
    ap.add_argument("--s3-bucket", default="cairn-scale")
    ap.add_argument("--only", help="comma separated steps to time (info,restore,expire,verify,start,start-no-snapshot,info-after-append)")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args()

    bins = os.path.abspath(a.bin_dir)
    cairn = os.path.join(bins, "cairn")
    gen = os.path.join(bins, "cairn-bench-scale")
    s3 = {"endpoint": a.s3_endpoint, "bucket": a.s3_bucket} if a.s3_endpoint else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["CAIRN_STANZA"] = "main"
    os.makedirs(a.work, exist_ok=True)
    steps = (a.only or "info,restore,expire,verify,start,start-no-snapshot,info-after-append").split(",")
    results = []
    for n in [int(s) for s in a.sizes.split(",")]:
        d = os.path.join(a.work, f"{'s3-' if s3 else ''}seg{n}")
        reuse = a.keep and os.path.exists(os.path.join(d, "generated.json"))
        if not reuse:
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        cfg = config(d, s3)
        if reuse:
            generated = json.load(open(os.path.join(d, "generated.json")))
        else:
            print(f"== {n} segments: generating", file=sys.stderr)
            gd = d
            if a.gen_dir and not s3:
                # fsync is free on tmpfs; the repository is then copied to --work's disk.
                gd = os.path.join(a.gen_dir, f"seg{n}")
                shutil.rmtree(gd, ignore_errors=True)
                os.makedirs(gd)
            gcfg = config(gd, s3)
            secs, rss, rc, text = run(
                [gen, "generate", "--config", gcfg, "--segments", str(n),
                 "--backups", str(a.backups), "--packs", str(a.packs)],
                env, os.path.join(d, "generated.json"))
            if rc != 0:
                sys.exit(1)
            generated = json.loads(text)
            generated["generate_rss_mib"] = rss
            if gd != d:
                t = time.monotonic()
                subprocess.run(["cp", "-a", os.path.join(gd, "repo"), os.path.join(d, "repo")], check=True)
                subprocess.run(["sync"], check=True)
                shutil.rmtree(gd, ignore_errors=True)
                generated["copy_seconds"] = time.monotonic() - t
        if not s3:
            du = subprocess.run(["du", "-sm", os.path.join(d, "repo")], capture_output=True, text=True)
            files = subprocess.run(f"find {d}/repo -type f | wc -l", shell=True, capture_output=True, text=True)
            packs = subprocess.run(f"ls {d}/repo/stanza/main/pack-index | wc -l", shell=True, capture_output=True, text=True)
            generated["repo_mib"] = int(du.stdout.split()[0]) if du.returncode == 0 else None
            generated["repo_files"] = int(files.stdout.strip() or 0)
            generated["packs_listed"] = int(packs.stdout.strip() or 0)
        print(f"== {n} segments: {json.dumps(generated)}", file=sys.stderr)

        secs, rss, rc, text = run([cairn, "--config", cfg, "info", "--output", "json"], env,
                                  os.path.join(d, "info.json"))
        info = json.loads(text)
        stanza = info["stanzas"][0] if "stanzas" in info else info[0]
        newest = stanza["backups"][-1]["label"]
        commands = {
            "info": [cairn, "--config", cfg, "info"],
            "restore": [cairn, "--config", cfg, "restore", "--pg-data", os.path.join(d, "restore-to"), "--dry-run"],
            "expire": [cairn, "--config", cfg, "expire", "--dry-run"],
            "verify": [cairn, "--config", cfg, "verify", "--set", newest, "--progress", "never"],
            "start": [gen, "chunk-index", "--config", cfg],
            "start-no-snapshot": [gen, "chunk-index", "--config", cfg, "--no-snapshot"],
            # 100 segments archived since the index: this info writes the next index.
            "info-after-append": [cairn, "--config", cfg, "info"],
        }
        before = {"info-after-append": [gen, "append", "--config", cfg, "--segments", "100"]}
        row = {"segments": n, "generated": generated, "steps": {}}
        for step in steps:
            times, rsss, cpus, out = [], [], [], ""
            for r in range(a.repeat):
                if step in before:
                    if run(before[step], env)[2] != 0:
                        sys.exit(1)
                outp = os.path.join(d, f"{step}.out")
                secs, rss, rc, out = run(commands[step], env, outp)
                times.append(secs if rc == 0 else None)
                rsss.append(rss)
                cpus.append(run.cpu)
            ok = [t for t in times if t is not None]
            row["steps"][step] = {
                "seconds": times,
                "median": sorted(ok)[len(ok) // 2] if ok else None,
                "rss_mib": max(rsss),
                "cpu_seconds": cpus,
                "output_tail": out.strip().splitlines()[-3:] if out else [],
            }
            med = row["steps"][step]["median"]
            print(f"   {step:8} {['%.2f' % t if t else 'fail' for t in times]} s, CPU {['%.2f' % c for c in cpus]} s, peak RSS {max(rsss):.0f} MiB",
                  file=sys.stderr)
        results.append(row)
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)

    names = {"info": "`info`", "restore": "`restore --dry-run`", "expire": "`expire --dry-run`",
             "verify": "`verify --set` (newest)", "start": "backup start (chunk index, snapshot)",
             "start-no-snapshot": "backup start, every pack index read",
             "info-after-append": "`info` after 100 new segments (writes the next index)"}
    print("\n| step | " + " | ".join(f"{r['segments']:,} segments" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for step in steps:
        cells = []
        for r in results:
            s = r["steps"][step]
            med = "fail" if s["median"] is None else f"{s['median']:.2f} s"
            cpu = sorted(s["cpu_seconds"])[len(s["cpu_seconds"]) // 2]
            cells.append(f"{med} (CPU {cpu:.2f} s), {s['rss_mib']:.0f} MiB")
        print(f"| {names[step]} | " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
