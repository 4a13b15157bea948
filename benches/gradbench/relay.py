#!/usr/bin/env python3
"""Minimal GradBench intermediary: relays eval <-> tool JSON lines, logs the session (JSONL,
like `gradbench run -o`), prints one summary line per evaluate: function, description, valid,
median evaluate ms, compile ms (sum of build/optimize/compile timings, if any), runs."""
import json, subprocess, sys, time, statistics, argparse, os

ap = argparse.ArgumentParser()
ap.add_argument("--eval", required=True)
ap.add_argument("--tool", required=True)
ap.add_argument("--log", required=True)
a = ap.parse_args()
root = os.environ.get("GRADBENCH_ROOT", ".")
ev = subprocess.Popen(a.eval, shell=True, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
tl = subprocess.Popen(a.tool, shell=True, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
t0 = time.time()
log = open(a.log, "w")
pending = {}
ok = True
while True:
    line = ev.stdout.readline()
    if not line:
        break
    msg = json.loads(line)
    log.write(json.dumps({"elapsed": time.time() - t0, "message": msg}) + "\n")
    tl.stdin.write(line); tl.stdin.flush()
    rline = tl.stdout.readline()
    if not rline:
        print("tool died", file=sys.stderr); ok = False; break
    resp = json.loads(rline)
    log.write(json.dumps({"elapsed": time.time() - t0, "response": resp}) + "\n"); log.flush()
    ev.stdin.write(rline); ev.stdin.flush()
    if msg.get("kind") == "evaluate":
        pending[msg["id"]] = (msg, resp)
    if msg.get("kind") == "define" and not resp.get("success"):
        print("define failed:", resp.get("error")); ok = False
    if msg.get("kind") == "analysis":
        m, r = pending.pop(msg["of"])
        ts = r.get("timings", [])
        evs = [t["nanoseconds"] / 1e6 for t in ts if t["name"] == "evaluate"]
        comp = sum(t["nanoseconds"] for t in ts if t["name"] in ("build", "optimize", "compile", "compile_jit")) / 1e6
        med = statistics.median(evs) if evs else float("nan")
        valid = msg.get("valid")
        ok = ok and bool(valid) and r.get("success", False)
        print(f"{m['function']:10s} {m.get('description','')!s:22s} valid={valid} success={r.get('success')} "
              f"median_ms={med:.4f} compile_ms={comp:.2f} runs={len(evs)}"
              + ("" if valid else f" error={str(msg.get('error') or r.get('error'))[:300]}"), flush=True)
for p in (ev, tl):
    try:
        p.stdin.close()
    except Exception:
        pass
ev.wait(); tl.wait()
print("ALL VALID" if ok else "NOT ALL VALID", flush=True)
