#!/usr/bin/env python3
"""Per-process cost of a search trial outside its epochs: spawned (`optarch trial`) against
forked by the trial server (`optarch trial-server`), alternating, one process at a time.

Usage: python3 bench/trial_start.py SEARCH_DIR [TRIAL_ID] [REPEATS]

SEARCH_DIR is a finished search (for example runs/bench-quick after
`optarch search specs/search/quick.yaml --out runs/bench-quick`); it is copied to a temporary
directory, and trial TRIAL_ID (default 3, a 1-epoch trial of the quick search) is reset and
trained again REPEATS times (default 4) each way. Printed per run: the wall time from the
request to the process's exit, the seconds of its epochs (from the store), and the difference,
which is the process's own cost (start, set-up, exit).
"""
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

EXE = os.environ.get("OPTARCH", os.path.join(os.path.dirname(__file__), "..", "target", "release", "optarch"))


def main():
    src = sys.argv[1]
    trial = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    tmp = tempfile.mkdtemp(prefix="trial-start-")
    d = os.path.join(tmp, "search")
    shutil.copytree(src, d)
    db = os.path.join(d, "search.db")

    def reset():
        c = sqlite3.connect(db)
        run = c.execute("select dir from trials where id=?", (trial,)).fetchone()[0]
        c.execute("delete from epochs where trial=?", (trial,))
        c.execute(
            "update trials set status='running', epochs_done=0, rung=0, budget=1, "
            "train_seconds=0 where id=?",
            (trial,),
        )
        c.commit()
        c.close()
        run = os.path.join(d, run)
        shutil.rmtree(run, ignore_errors=True)
        os.makedirs(run)
        return run

    def epoch_seconds():
        c = sqlite3.connect(db)
        s = c.execute("select sum(seconds) from epochs where trial=?", (trial,)).fetchone()[0]
        c.close()
        return s

    args = [EXE, "--threads", "1", "--device", "cpu"]
    server = subprocess.Popen(
        args + ["trial-server", "--dir", d], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout.readline().strip() == "ready"
    own = {"spawn": [], "fork": []}
    for _ in range(repeats):
        run = reset()
        t = time.time()
        with open(os.path.join(run, "log.txt"), "a") as log:
            code = subprocess.run(args + ["trial", "--dir", d, "--id", str(trial)], stdout=log, stderr=log).returncode
        wall = time.time() - t
        assert code == 0, code
        own["spawn"].append(wall - epoch_seconds())
        print(f"spawn: wall {wall:.3f} s, epochs {epoch_seconds():.3f} s, own {own['spawn'][-1]:.3f} s", flush=True)
        run = reset()
        t = time.time()
        server.stdin.write(f"run {trial} {run.encode().hex()}\n")
        server.stdin.flush()
        while True:
            line = server.stdout.readline().strip()
            if line.startswith("ended"):
                break
        wall = time.time() - t
        assert line.endswith("exit 0"), line
        own["fork"].append(wall - epoch_seconds())
        print(f"fork:  wall {wall:.3f} s, epochs {epoch_seconds():.3f} s, own {own['fork'][-1]:.3f} s", flush=True)
    server.stdin.close()
    server.wait()
    for k, v in own.items():
        print(f"{k}: median own cost {statistics.median(v):.3f} s over {len(v)} runs")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
