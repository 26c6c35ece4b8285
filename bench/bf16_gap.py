"""Does bf16 cost accuracy on this machine? Issue 13's accuracy measurement in one command:
optarch's training in fp32 and in bf16 + channels_last, and PyTorch's (the same torch) in fp32
and with bf16 autocast + channels_last, on the CI learning check's recipe (ResNet-20, a seeded
10,000-image CIFAR-10 subset, 5 epochs, the 10,000 test images), over several seeds, one thread a
run, then each bf16 arm against its fp32 seed by seed: mean difference and 95 % t interval.

    source scripts/env.sh
    python bench/bf16_gap.py --data ../shared/data                # 6 seeds, 4 arms, all cores
    python bench/bf16_gap.py --summarize --out target/bf16-gap    # the tables again, no runs

Meant for a CPU with bfloat16 instructions (AMX or AVX-512-BF16), where a run takes minutes;
elsewhere libtorch emulates bf16 about 7x slower than fp32 (a bf16 run takes ~50 minutes), so it
stops there unless --force. Each run's result is kept in --out (optarch's run folder, PyTorch's
JSON line); running the command again skips what is done and resumes optarch's unfinished runs,
so an interrupted measurement loses nothing. The summary is printed and written to
OUT/summary.md and OUT/summary.json.
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Each arm: (name, how it runs, its fp32 reference arm).
ARMS = {
    "optarch-fp32": ("optarch", ["--precision", "fp32", "--channels-last", "off"], None),
    "optarch-bf16": ("optarch", ["--precision", "bf16", "--channels-last", "on"], "optarch-fp32"),
    "torch-fp32": ("torch", ["--precision", "fp32"], None),
    "torch-autocast": ("torch", ["--precision", "autocast", "--channels-last"], "torch-fp32"),
    "torch-sim": ("torch", ["--precision", "sim"], "torch-fp32"),
}
DEFAULT_ARMS = "optarch-fp32,optarch-bf16,torch-fp32,torch-autocast"

# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t95(df):
    return T95[df - 1] if df <= len(T95) else 1.96


def cpu_has_bf16():
    """Whether the CPU reports AMX-BF16 or AVX-512-BF16 (None where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        return None
    return "amx_bf16" in flags or "avx512_bf16" in flags


# ---------------------------------------------------------------------------------------------
# Runs.


def run_dir(out, arm, seed):
    return os.path.join(out, f"{arm}-s{seed}")


def result(out, arm, seed):
    """(test accuracy %, last epoch's mean training loss) of a finished run, or None."""
    base = run_dir(out, arm, seed)
    try:
        if ARMS[arm][0] == "optarch":
            with open(os.path.join(base, "summary.json")) as f:
                s = json.load(f)
            if s.get("status") != "done" or s.get("final_test_acc") is None:
                return None
            with open(os.path.join(base, "metrics.jsonl")) as f:
                last = [json.loads(line) for line in f if line.strip()][-1]
            return 100.0 * s["final_test_acc"], last["train_loss"]
        with open(base + ".json") as f:
            r = json.load(f)
        return 100.0 * r["test_accuracy"], r["final_train_loss"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def command(a, arm, seed):
    kind, flags, _ = ARMS[arm]
    base = run_dir(a.out, arm, seed)
    if kind == "optarch":
        if os.path.exists(os.path.join(base, "state.json")):
            return [a.optarch, "train", "--resume", base, "--threads", "1"], None
        shutil.rmtree(base, ignore_errors=True)  # started but never saved a state: start again
        cmd = [a.optarch, "train", "--spec", os.path.join(ROOT, "specs/gradient_descent.yaml"),
               "--data", a.data, "--no-download", "--epochs", str(a.epochs), "--seed", str(seed),
               "--train-subset", str(a.train_subset), "--val", "0", "--device", "cpu",
               "--threads", "1", "--test-at-end", "-o", base] + flags
        if a.test_subset:
            cmd += ["--test-subset", str(a.test_subset)]
        return cmd, None
    cmd = [sys.executable, os.path.join(HERE, "bf16_accuracy.py"), "--data", a.data,
           "--seed", str(seed), "--epochs", str(a.epochs), "--train-subset", str(a.train_subset),
           "--threads", "1"] + flags
    if a.test_subset:
        cmd += ["--test-subset", str(a.test_subset)]
    return cmd, base + ".json"


LIVE, LIVE_LOCK = set(), threading.Lock()


def run_one(a, arm, seed):
    """Runs one arm at one seed; its output and errors go to OUT/ARM-sSEED.log."""
    cmd, json_out = command(a, arm, seed)
    log = run_dir(a.out, arm, seed) + ".log"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.time()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, env=env, text=True)
        except OSError as e:
            return f"could not start {cmd[0]}: {e}", 0.0
        with LIVE_LOCK:
            LIVE.add(p)
        stdout, _ = p.communicate()
        with LIVE_LOCK:
            LIVE.discard(p)
        f.write(stdout)
    if p.returncode != 0:
        return f"failed (exit {p.returncode}; see {log})", time.time() - start
    if json_out:
        line = [ln for ln in stdout.splitlines() if ln.startswith("{")][-1:]
        if not line:
            return f"printed no result (see {log})", time.time() - start
        tmp = json_out + ".tmp"
        with open(tmp, "w") as f:
            f.write(line[0] + "\n")
        os.replace(tmp, json_out)  # a result is whole or absent
    return None, time.time() - start


def run_all(a, arms, seeds):
    """Runs what is not done yet, --jobs at a time; returns what failed."""
    todo = [(arm, s) for s in seeds for arm in arms if result(a.out, arm, s) is None]
    done = len(arms) * len(seeds) - len(todo)
    print(f"{len(todo)} runs to do ({done} already done in {a.out}), {a.jobs} at a time, "
          "1 thread each", file=sys.stderr, flush=True)
    failures = []
    with cf.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = {pool.submit(run_one, a, arm, s): (arm, s) for arm, s in todo}
        pending, n = set(futures), 0
        try:
            while pending:
                # A timed wait, so that a signal reaches this (the main) thread meanwhile.
                finished, pending = cf.wait(pending, timeout=1, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    arm, s = futures[fut]
                    err, secs = fut.result()
                    r = result(a.out, arm, s)
                    what = err or (f"{r[0]:.2f} %" if r else "finished without a result")
                    n += 1
                    print(f"[{n}/{len(todo)}] {arm} seed {s}: {what} ({secs / 60:.1f} min)",
                          file=sys.stderr, flush=True)
                    if err or not r:
                        failures.append(f"{arm} seed {s}: {what}")
        except KeyboardInterrupt:
            # Stopped (Ctrl-C, SIGTERM): the runs in flight stop too (optarch at its last
            # finished epoch, which the next invocation resumes); nothing finished is touched.
            for fut in pending:
                fut.cancel()
            with LIVE_LOCK:
                for p in LIVE:
                    p.terminate()
            raise
    return failures


# ---------------------------------------------------------------------------------------------
# Summary.


def paired(xs, ys):
    """Mean of ys - xs, its standard deviation and 95 % t interval (None for fewer than 2)."""
    d = [y - x for x, y in zip(xs, ys)]
    m = statistics.mean(d)
    if len(d) < 2:
        return {"n": len(d), "diffs": d, "mean": m, "sd": None, "ci95": None}
    sd = statistics.stdev(d)
    h = t95(len(d) - 1) * sd / len(d) ** 0.5
    return {"n": len(d), "diffs": d, "mean": m, "sd": sd, "ci95": [m - h, m + h]}


def fmt(v, digits=2):
    return f"{v:+.{digits}f}".replace("-", "\u2212")


def summarize(out, arms, seeds):
    res = {arm: {s: result(out, arm, s) for s in seeds} for arm in arms}
    report, lines = {"comparisons": []}, []
    for arm in arms:
        ref = ARMS[arm][2]
        if ref is None or ref not in arms:
            continue
        both = [s for s in seeds if res[arm][s] and res[ref][s]]
        if not both:
            lines.append(f"{arm} against {ref}: no seed has both results yet\n")
            continue
        acc = paired([res[ref][s][0] for s in both], [res[arm][s][0] for s in both])
        loss = paired([res[ref][s][1] for s in both], [res[arm][s][1] for s in both])
        report["comparisons"].append({
            "arm": arm, "reference": ref, "seeds": both,
            "reference_acc": [res[ref][s][0] for s in both],
            "acc": [res[arm][s][0] for s in both], "acc_diff": acc, "train_loss_diff": loss})
        lines.append(f"**{arm} against {ref}** (test accuracy, %):\n")
        lines.append("| seed | " + " | ".join(map(str, both)) + " | mean |")
        lines.append("|---|" + "---|" * (len(both) + 1))
        for name, vals in ((ref, [res[ref][s][0] for s in both]),
                           (arm, [res[arm][s][0] for s in both])):
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals)
                         + f" | {statistics.mean(vals):.2f} |")
        tail = ""
        if acc["ci95"]:
            tail = (f" (sd {acc['sd']:.2f}, 95 % t interval "
                    f"[{fmt(acc['ci95'][0])}, {fmt(acc['ci95'][1])}])")
        lines.append("| difference | " + " | ".join(fmt(v) for v in acc["diffs"])
                     + f" | **{fmt(acc['mean'])}**{tail} |\n")
        loss_ci = (f", 95 % [{fmt(loss['ci95'][0], 3)}, {fmt(loss['ci95'][1], 3)}]"
                   if loss["ci95"] else "")
        lines.append(f"Last epoch's training loss: {fmt(loss['mean'], 3)}{loss_ci} against "
                     f"{ref}.\n")
    missing = [f"{arm} seed {s}" for arm in arms for s in seeds if res[arm][s] is None]
    if missing:
        lines.append("Not done yet: " + ", ".join(missing) + ".\n")
    report["missing"] = missing
    text = "\n".join(lines)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(text)


def stop_on_sigterm(*_):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--data", default=os.environ.get("OPTARCH_DATA", "../shared/data"),
                    help="folder holding cifar-10-binary.tar.gz or cifar-10-batches-bin "
                         "(default: $OPTARCH_DATA, else ../shared/data)")
    ap.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 (default 6)")
    ap.add_argument("--arms", default=DEFAULT_ARMS,
                    help=f"comma-separated, of {', '.join(ARMS)} (default {DEFAULT_ARMS})")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="runs at a time, one thread each (default: the number of CPUs)")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bf16-gap"),
                    help="where results are kept (default target/bf16-gap)")
    ap.add_argument("--optarch", help="the optarch binary (default: build target/release/optarch)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs a run (default 5, the recipe's)")
    ap.add_argument("--train-subset", type=int, default=10000, metavar="N",
                    help="training images a run (default 10000, the recipe's)")
    ap.add_argument("--test-subset", type=int, default=0, metavar="N",
                    help="test on the first N test images only (default: all)")
    ap.add_argument("--summarize", action="store_true", help="print the summary of --out; run nothing")
    ap.add_argument("--force", action="store_true",
                    help="run even where the CPU has no bfloat16 instructions")
    a = ap.parse_args()
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    unknown = [x for x in arms if x not in ARMS]
    if unknown or not arms:
        ap.error(f"unknown arm {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    for ref in [ARMS[x][2] for x in arms]:
        if ref and ref not in arms:  # a bf16 arm is measured against its fp32
            arms.append(ref)
    if a.seeds < 1 or a.jobs < 1:
        ap.error("--seeds and --jobs must be at least 1")
    seeds = list(range(a.seeds))
    os.makedirs(a.out, exist_ok=True)
    if a.summarize:
        summarize(a.out, arms, seeds)
        return
    if cpu_has_bf16() is False and not a.force and any("bf16" in x or "autocast" in x for x in arms):
        sys.exit("this CPU has no bfloat16 instructions (AMX or AVX-512-BF16): libtorch emulates "
                 "bf16 here, about 7x slower than fp32, so a bf16 run takes about 50 minutes "
                 "instead of 5. Run this on a CPU that has them, or pass --force.")
    a.data = os.path.abspath(a.data)
    if any(ARMS[x][0] == "optarch" for x in arms) and not a.optarch:
        print("building target/release/optarch", file=sys.stderr, flush=True)
        b = subprocess.run(["cargo", "build", "-q", "--release", "-p", "optarch-search",
                            "--bin", "optarch"], cwd=ROOT)
        if b.returncode != 0:
            sys.exit("cargo build failed: run `source scripts/env.sh` first (it installs libtorch)")
        a.optarch = os.path.join(ROOT, "target", "release", "optarch")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        failures = run_all(a, arms, seeds)
    except KeyboardInterrupt:
        sys.exit("stopped: run the same command again to resume")
    summarize(a.out, arms, seeds)
    if failures:
        sys.exit(f"{len(failures)} run(s) failed: " + "; ".join(failures)
                 + ". Run the command again to retry them.")


if __name__ == "__main__":
    main()
