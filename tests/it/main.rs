//! The one integration-test binary: each module covers one area.

mod check_finite;
mod cli;
mod concat;
mod differential;
mod forward;
mod fuzz_check;
mod gradbench;
mod hostile;
mod jit;
mod mlp;
mod props;
mod random;
mod scale;
mod simd;
mod text;
mod worked_example;
