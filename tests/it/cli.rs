#[test]
fn where_is_bin() { eprintln!("BIN={}", env!("CARGO_BIN_EXE_gradlift")); }
