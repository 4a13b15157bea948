#!/usr/bin/env python3
"""Markdown tables from relay.py session logs: per eval, function and size, each tool's median
`evaluate` time (ms) and gradlift's compile time (build + optimize + compile, ms)."""
import json, statistics, sys, os
out = os.environ.get("GB_OUT", "out")
tools = ["gradlift", "manual", "jax"]
evals = sys.argv[1:] or ["lse", "llsq", "gmm", "kmeans", "ode", "lstm", "det"]
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
for ev in evals:
    data = {t: load(t, ev) for t in tools}
    keys = list(data["gradlift"].keys()) or list(data["manual"].keys())
    print(f"\n### {ev}\n")
    nd = nodes(ev)
    print("| function | size | gradlift median ms | gradlift compile ms | graph nodes (built → optimized) | manual median ms | jax median ms | gradlift / best peer |")
    print("|---|---|---|---|---|---|---|---|")
    for k in keys:
        g = data["gradlift"].get(k)
        row = [k[0], k[1]]
        if g and g[3] and g[2]:
            row += [fmt(g[0]), fmt(g[1])]
        elif g:
            row += ["invalid" if g[3] else "failed", "—"]
        else:
            row += ["—", "—"]
        row.append(nd.get(k, "—"))
        peers = []
        for t in ("manual", "jax"):
            p = data[t].get(k)
            if p and p[3] and p[2]:
                row.append(fmt(p[0])); peers.append(p[0])
            elif p:
                row.append("invalid" if p[3] else "failed")
            else:
                row.append("—")
        ratio = "—"
        if g and g[0] is not None and g[2] and peers:
            ratio = f"{g[0] / min(peers):.2f}"
        row.append(ratio)
        print("| " + " | ".join(row) + " |")
