//! Tells the library whether it is compiled with optimizations, as `cfg(gradlift_unoptimized)`.
//!
//! Cargo gives a build script the opt-level of the package being built (`OPT_LEVEL`, after the
//! profile overrides of the crate that depends on gradlift), which no `cfg` exposes to the code
//! itself. The JIT's defaults use it: compiled kernels run at the same speed however gradlift
//! was built, but the Rust helpers they can call (the batched math functions) are 10-50× slower
//! unoptimized, so an unoptimized gradlift keeps that math inside the compiled code.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(gradlift_unoptimized)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level == "0") {
        println!("cargo::rustc-cfg=gradlift_unoptimized");
    }
}
