"""One MLP training step's loss and parameter gradients in JAX, PyTorch and torch.compile.

The same step as `benches/mlp.rs`: batch 64, 784 -> 256 (ReLU) -> 10, softmax cross-entropy
(mean over the batch), f32; the gradients of W1, b1, W2, b2. Prints one line per framework:
`<name> threads=<n> median_us=<m>` (median of `--runs` timed calls after warm-up; JAX results
are waited for with `block_until_ready`, inside the timed region).

Run one thread count per process (the frameworks fix their pools at start):
    taskset -c 0   python3 mlp_step.py --threads 1
    taskset -c 0,1 python3 mlp_step.py --threads 2
`run_mlp.sh` runs both and gradlift's criterion bench in one go.
"""

import argparse
import os
import statistics
import sys
import time

B, D, H, C = 64, 784, 256, 10


def data(np):
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (B, D)).astype(np.float32)
    y = np.zeros((B, C), np.float32)
    y[np.arange(B), rng.integers(0, C, B)] = 1
    w1 = (rng.standard_normal((D, H)) * (2 / D) ** 0.5).astype(np.float32)
    w2 = (rng.standard_normal((H, C)) * (2 / H) ** 0.5).astype(np.float32)
    return x, y, [w1, np.zeros(H, np.float32), w2, np.zeros(C, np.float32)]


def timed(f, runs, warmup=50):
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def run_jax(threads, runs):
    import jax
    import jax.numpy as jnp
    import numpy as np

    x, y, params = data(np)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = [jnp.asarray(p) for p in params]

    def loss(ps, x, y):
        w1, b1, w2, b2 = ps
        h = jax.nn.relu(x @ w1 + b1)
        z = h @ w2 + b2
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(z), axis=1))

    step = jax.jit(jax.value_and_grad(loss))
    return timed(lambda: jax.block_until_ready(step(params, x, y)), runs)


def run_torch(threads, runs, compiled):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    x, y, params = data(np)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    params = [torch.from_numpy(p).requires_grad_() for p in params]

    def loss_fn(x, y, w1, b1, w2, b2):
        h = torch.relu(x @ w1 + b1)
        z = h @ w2 + b2
        return -(y * torch.log_softmax(z, dim=1)).sum(dim=1).mean()

    # torch.compile compiles the forward; AOTAutograd compiles its backward with it.
    f = torch.compile(loss_fn) if compiled else loss_fn

    def step():
        loss = f(x, y, *params)
        return loss, torch.autograd.grad(loss, params)

    return timed(step, runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--only", default="jax,torch,torch.compile")
    a = ap.parse_args()
    for name in a.only.split(","):
        if name == "jax":
            us = run_jax(a.threads, a.runs)
        elif name == "torch":
            us = run_torch(a.threads, a.runs, False)
        else:
            us = run_torch(a.threads, a.runs, True)
        print(f"{name} threads={a.threads} median_us={us:.1f}", flush=True)


if __name__ == "__main__":
    n = next((sys.argv[i + 1] for i, v in enumerate(sys.argv) if v == "--threads"), "1")
    if n == "1":
        # XLA's CPU client: one intra-op thread.
        os.environ.setdefault(
            "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    main()
