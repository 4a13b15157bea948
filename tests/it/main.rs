//! The one integration-test binary: each module covers one area.

mod budget;
mod call;
mod check_finite;
mod checkpoint;
mod cli;
mod collectives;
mod concat;
mod differential;
mod float_ops;
mod forward;
mod fuzz_check;
mod gradbench;
mod hostile;
mod indexing;
mod jit;
mod loops;
mod loops_jit;
mod mlp;
mod props;
mod random;
mod random_loops;
mod scale;
mod simd;
mod text;
mod threads;
mod worked_example;
