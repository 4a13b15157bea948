//! The one integration-test binary: each module covers one area.

mod cli;
mod jit;
mod scale;
mod text;
