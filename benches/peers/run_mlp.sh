#!/usr/bin/env bash
# The MLP step (batch 64, 784 -> 256 -> 10, f32, loss + parameter gradients) in gradlift
# (criterion bench `mlp`: jit_t1, jit_t2, the hand-written direct_t1/_t2, and the products
# alone on one thread, gemms_t1), JAX, PyTorch and torch.compile, on 1 and 2 threads, one
# after the other in one run.
# Needs: pip install jax torch numpy. Usage: benches/peers/run_mlp.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-2000}
cargo bench --bench mlp -- --warm-up-time 1 --measurement-time 5 \
    'mlp_step/(jit_t1|jit_t2|direct_t1|direct_t2|gemms_t1|gemms_t2)$' 2>&1 | grep -E '^mlp_step|time:'
for t in 1 2; do
    cpus=$([ "$t" = 1 ] && echo 0 || echo 0,1)
    taskset -c "$cpus" python3 benches/peers/mlp_step.py --threads "$t" --runs "$runs" 2>/dev/null
done
