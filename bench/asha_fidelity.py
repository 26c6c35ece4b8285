"""Kendall's tau between ASHA's ranking and the full-budget ranking of the same candidates.

    python3 bench/asha_fidelity.py ASHA_DIR FULL_DIR

ASHA_DIR: a search under ASHA; FULL_DIR: the same candidates, each trained to the full budget
(`scheduler: none`). ASHA's ranking is the driver's: highest rung reached, then the validation
score there. The full-budget ranking is by validation accuracy at the last epoch. Also prints the
compute ratio (epochs ASHA trained / epochs the full budget took). Standard library only.
"""
import sqlite3
import sys


def rows(d, sql):
    c = sqlite3.connect(f"file:{d}/search.db?mode=ro", uri=True)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def scores(d):
    """candidate name -> [(epochs, score)] over its search trials."""
    out = {}
    for name, epoch, score in rows(d, """
        SELECT c.name, e.epoch + 1, COALESCE(e.val_acc, e.test_acc)
        FROM epochs e JOIN trials t ON t.id = e.trial JOIN candidates c ON c.id = t.candidate
        WHERE t.phase = 'search'"""):
        out.setdefault(name, []).append((epoch, score))
    return out


def epochs(d):
    return rows(d, "SELECT SUM(epochs_done) FROM trials WHERE phase = 'search'")[0][0] or 0


def kendall_tau_b(x, y):
    n = len(x)
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx == dy:
                conc += 1
            else:
                disc += 1
    den = ((conc + disc + tx) * (conc + disc + ty)) ** 0.5
    return (conc - disc) / den if den else float("nan")


def main():
    asha_dir, full_dir = sys.argv[1:3]
    a, f = scores(asha_dir), scores(full_dir)
    common = sorted(set(a) & set(f))
    # ASHA: (epochs reached, score at that point); full: score at the last epoch.
    asha_key = {n: max(a[n]) for n in common}
    full_key = {n: max(f[n])[1] for n in common}
    x = [asha_key[n][0] * 10 + asha_key[n][1] for n in common]
    y = [full_key[n] for n in common]
    tau = kendall_tau_b(x, y)
    ea, ef = epochs(asha_dir), epochs(full_dir)
    print(f"{'candidate':<26} {'ASHA epochs':>11} {'ASHA score':>10} {'full score':>10}")
    for n in sorted(common, key=lambda n: -full_key[n]):
        print(f"{n:<26} {asha_key[n][0]:>11} {100 * asha_key[n][1]:>9.2f}% {100 * full_key[n]:>9.2f}%")
    print(f"candidates {len(common)}  Kendall tau-b {tau:.3f}  "
          f"compute {ea} / {ef} epochs = {ea / ef:.3f}")


if __name__ == "__main__":
    main()
