//! The one integration-test binary: each module covers one area.

mod cli;
mod forward;
mod jit;
mod props;
mod random;
mod scale;
mod text;
mod worked_example;
