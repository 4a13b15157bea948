//! The one integration-test binary: each module covers one area.

mod cli;
mod jit;
mod props;
mod random;
mod scale;
mod simd;
mod text;
mod worked_example;
