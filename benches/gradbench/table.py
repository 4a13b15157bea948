#!/usr/bin/env python3
"""Markdown tables from relay.py session logs: per eval, function and size, each tool's median
`evaluate` time (ms) and gradlift's compile time (build + optimize + compile, ms), the ratio of
gradlift's median to the fastest peer's and to the faster of the two AD frameworks (jax,
pytorch). `--counts` prints instead one line per eval: rows, rows where gradlift is no slower
than `manual` and than the faster framework, rows compiled in at most 50 ms."""
import json, statistics, sys, os
out = os.environ.get("GB_OUT", "out")
tools = ["gradlift", "manual", "jax", "pytorch"]
frameworks = ("jax", "pytorch")
counts = "--counts" in sys.argv
evals = [a for a in sys.argv[1:] if a != "--counts"] or ["lse", "llsq", "gmm", "kmeans", "ode", "lstm", "det"]
def load(tool, ev):
    p = f"{out}/{tool}_{ev}.jsonl"
    if not os.path.exists(p):
        return {}
    msgs, resps, valid = {}, {}, {}
    for line in open(p):
        x = json.loads(line)
        if "message" in x:
            m = x["message"]
            if m.get("kind") == "evaluate":
                msgs[m["id"]] = m
            if m.get("kind") == "analysis":
                valid[m["of"]] = m.get("valid")
        else:
            resps[x["response"]["id"]] = x["response"]
    res = {}
    for i, m in msgs.items():
        r = resps.get(i, {})
        ts = r.get("timings", [])
        evs = [t["nanoseconds"] / 1e6 for t in ts if t["name"] == "evaluate"]
        comp = sum(t["nanoseconds"] for t in ts if t["name"] in ("build", "optimize", "compile")) / 1e6
        res[(m["function"], str(m.get("description", "")))] = (
            statistics.median(evs) if evs else None, comp, valid.get(i), r.get("success"), len(evs))
    return res
import re
def nodes(ev):
    """(function, description) -> 'built → optimized' from gradlift's --verbose lines."""
    p = f"{out}/gradlift_{ev}.txt"
    res, last = {}, None
    if not os.path.exists(p):
        return res
    for line in open(p):
        m = re.search(r"(\d+) nodes built, (\d+) after optimization", line)
        if m:
            last = f"{int(m.group(1)):,} → {int(m.group(2)):,}"
            continue
        parts = line.split()
        if last and len(parts) > 2 and "valid=" in line:
            desc = parts[1]
            res[(parts[0], desc)] = last
            last = None
    return res
def fmt(v):
    if v is None: return "—"
    if v >= 100: return f"{v:.0f}"
    if v >= 1: return f"{v:.2f}"
    if v >= 0.01: return f"{v:.3f}"
    return f"{v:.4f}"
def ok(p):
    return p is not None and p[3] and p[2] and p[0] is not None
def ratio(g, peers):
    if not (ok(g) and peers):
        return "—"
    r = g[0] / min(peers)
    return f"{r:.2f}" if r >= 0.01 else f"{r:.1e}"
if counts:
    print("| eval | rows | ≤ `manual` | ≤ fastest of `jax`, `pytorch` | compile ≤ 50 ms |")
    print("|---|---|---|---|---|")
for ev in evals:
    data = {t: load(t, ev) for t in tools}
    keys = list(data["gradlift"].keys()) or list(data["manual"].keys())
    if counts:
        n = len(keys)
        cm = [k for k in keys if ok(data["manual"].get(k))]
        cf = [k for k in keys if any(ok(data[t].get(k)) for t in frameworks)]
        g = data["gradlift"]
        le_m = sum(1 for k in cm if ok(g.get(k)) and g[k][0] <= data["manual"][k][0])
        le_f = sum(1 for k in cf if ok(g.get(k)) and g[k][0] <= min(
            data[t][k][0] for t in frameworks if ok(data[t].get(k))))
        comp = sum(1 for k in keys if ok(g.get(k)) and g[k][1] <= 50)
        fm = f"{le_m} / {len(cm)}" if cm else "no `manual` eval"
        ff = f"{le_f} / {len(cf)}" if cf else "no framework eval"
        print(f"| {ev} | {n} | {fm} | {ff} | {comp} |")
        continue
    print(f"\n### {ev}\n")
    nd = nodes(ev)
    print("| function | size | gradlift median ms | gradlift compile ms | graph nodes (built → optimized) | manual median ms | jax median ms | pytorch median ms | gradlift / best peer | gradlift / best of jax, pytorch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in keys:
        g = data["gradlift"].get(k)
        row = [k[0], k[1]]
        if ok(g):
            row += [fmt(g[0]), fmt(g[1])]
        elif g:
            row += ["invalid" if g[3] else "failed", "—"]
        else:
            row += ["—", "—"]
        row.append(nd.get(k, "—"))
        peers, fws = [], []
        for t in ("manual",) + frameworks:
            p = data[t].get(k)
            if ok(p):
                row.append(fmt(p[0])); peers.append(p[0])
                if t in frameworks:
                    fws.append(p[0])
            elif p:
                row.append("invalid" if p[3] else "failed")
            else:
                row.append("—")
        row += [ratio(g, peers), ratio(g, fws)]
        print("| " + " | ".join(row) + " |")
