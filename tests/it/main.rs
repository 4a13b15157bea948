//! The one integration-test binary: each module covers one area.

mod cli;
mod gen;
mod jit;
mod props;
mod scale;
mod text;
mod worked_example;
