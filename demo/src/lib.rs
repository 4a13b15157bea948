//! gradlift's demos (not library API). The examples are the programs: `mlp` (the README's first
//! command) trains an MLP with one compiled kernel per step, and `demo` walks through the
//! pipeline. [`mlp`] holds the MLP demo's parts, which gradlift's own tests and benchmarks
//! also use.

pub mod mlp;
