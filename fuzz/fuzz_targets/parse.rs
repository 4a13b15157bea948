//! cargo-fuzz target: the `.gir` reader and printer on arbitrary bytes (see
//! `tests/it/fuzz_check.rs`, shared with the normal test suite).
#![no_main]

#[path = "../../tests/it/fuzz_check.rs"]
mod fuzz_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_check::parse_roundtrip(data));
