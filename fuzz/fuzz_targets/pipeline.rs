//! cargo-fuzz target: parse → grad → optimize → compile → call on arbitrary bytes, comparing
//! the JIT with the interpreter (see `tests/it/fuzz_check.rs`, shared with the normal suite).
#![no_main]

#[path = "../../tests/it/fuzz_check.rs"]
mod fuzz_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_check::pipeline(data));
