#!/usr/bin/env python3
"""Compares two runs of one tool (say one thread against `--multithreaded`): for each eval,
the geometric mean and range of run B's median `evaluate` time over run A's, and the rows.

Usage: compare.py DIR_A DIR_B EVAL... [--rows EVAL]
Reads DIR/gradlift_EVAL.txt (the summaries `runall.sh` writes). Ratio = B / A, so below 1
means B is faster."""
import math
import re
import sys

LINE = re.compile(r"^(\S+)\s+(\S+)\s+valid=(\w+)\s+success=(\w+)\s+median_ms=([\d.e+-]+)")


def medians(path):
    rows = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m and m.group(3) == "True" and m.group(4) == "True":
                rows[(m.group(1), m.group(2))] = float(m.group(5))
    return rows


def main(argv):
    show = set()
    if "--rows" in argv:
        i = argv.index("--rows")
        show.add(argv[i + 1])
        del argv[i : i + 2]
    a_dir, b_dir, evals = argv[0], argv[1], argv[2:]
    print("| eval | evaluations | geometric mean ratio | range | largest input (A → B ms) |")
    print("|---|---|---|---|---|")
    for e in evals:
        a = medians(f"{a_dir}/gradlift_{e}.txt")
        b = medians(f"{b_dir}/gradlift_{e}.txt")
        keys = [k for k in a if k in b]
        if not keys:
            print(f"| {e} | 0 | – | – | – |")
            continue
        r = [b[k] / a[k] for k in keys]
        gm = math.exp(sum(math.log(x) for x in r) / len(r))
        big = [k for k in keys if k[1] == keys[-1][1]]
        largest = "; ".join(f"{f} {i}: {a[(f, i)]:.2f} → {b[(f, i)]:.2f}" for f, i in big)
        print(f"| {e} | {len(keys)} | {gm:.2f} | {min(r):.2f}–{max(r):.2f} | {largest} |")
    for e in sorted(show):
        a = medians(f"{a_dir}/gradlift_{e}.txt")
        b = medians(f"{b_dir}/gradlift_{e}.txt")
        print(f"\n| {e} | A (ms) | B (ms) | ratio |\n|---|---|---|---|")
        for k in (k for k in a if k in b):
            print(f"| {k[0]} {k[1]} | {a[k]:.2f} | {b[k]:.2f} | {b[k] / a[k]:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
