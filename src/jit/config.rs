//! The JIT's options ([`JitConfig`]) and their defaults.

use std::num::NonZeroUsize;

/// Options for [`compile_with`](super::compile_with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitConfig {
    /// Run Cranelift's IR verifier on every function (costs 25-50% of compile time). Default:
    /// on in debug builds of gradlift's own workspace (its tests), off in crates that use it.
    pub verifier: bool,
    /// The most graph nodes one Cranelift function gets; larger graphs are split into several
    /// functions, which bounds register-allocation time (superlinear in a function's size).
    /// Default 500 (on graphs of small fused groups, 10-20% less compile time than 2000, and
    /// a call per function costs nanoseconds). 0 is treated as 1.
    pub max_ops_per_function: usize,
    /// The most threads that compile a kernel's functions (building and compiling its
    /// Cranelift IR), on the rayon pool the compile runs in (rayon's global pool unless the
    /// application sets one up): 0 (the default) means every thread of the pool, a larger
    /// count is capped at the pool's size, and 1 compiles on the calling thread without
    /// touching the pool. Only graphs split into several functions
    /// ([`JitConfig::max_ops_per_function`]) use more than one. The compiled code is the same
    /// for every count. (The threads a kernel *runs* on are [`JitConfig::kernel_threads`].)
    pub threads: usize,
    /// The most threads one [`Kernel::call`](super::Kernel::call) uses, for the chunks of large loops and inside
    /// GEMM calls: the calling thread and helpers that stay awake between a call's forks (see
    /// the kernel's "Threads"). `None` (the default) uses as many threads as the rayon pool
    /// the call runs in has (rayon's global pool: one per core unless the application sizes
    /// it, e.g. with `RAYON_NUM_THREADS`), `Some(1)` keeps every call on the calling thread,
    /// and a larger count is capped at that pool's size. The results are bitwise the same for
    /// every count (see the module docs, "Threads and determinism"). The count is fixed per
    /// kernel; compile twice for two counts. The helpers spin for a millisecond after each
    /// piece of work, so several processes on one machine (MPI ranks, say) should share the
    /// cores out: ranks × threads ≤ cores (the MLP demo uses one thread per rank).
    pub kernel_threads: Option<NonZeroUsize>,
    /// Bitwise agreement with the interpreter: every transcendental calls the same scalar
    /// libm function as the interpreter (lane by lane in vector loops), and reductions
    /// accumulate in the interpreter's order (no reassociation; reductions across chunks are
    /// then not split between threads). Default off: see the module docs for the tolerance.
    pub exact_math: bool,
    /// Loops over at least this many elements are cut into chunks that run on several
    /// threads (at least 2 × 8192 elements are needed in any case). `usize::MAX` cuts no
    /// loop (GEMM calls still use [`JitConfig::kernel_threads`]; set that to 1 for a
    /// single-threaded kernel). Results do not depend on the number of threads, but the
    /// cut into chunks (decided by this setting) does fix the order of reassociated reductions.
    /// Default 16384: a 64×256 activation is two chunks, each the rows one thread's block
    /// of the GEMM before it wrote (the chunks and the GEMM's row blocks are claimed in the
    /// same order), so the elementwise work after a product runs on both threads and mostly
    /// reads what its own core just wrote.
    pub parallel_min_elements: usize,
    /// The most workspace (scratch memory for intermediate values) a kernel may need; a graph
    /// needing more fails with [`JitError::TooLarge`](super::JitError::TooLarge) naming both sizes. Default 4 GiB.
    pub max_workspace_bytes: usize,
    /// Checked mode (NaN provenance): the kernel stops after the first node that produces a
    /// non-finite value from finite operands, and [`Kernel::call`](super::Kernel::call) returns
    /// [`CallError::NonFinite`](super::CallError::NonFinite) with the report (see [`crate::finite`]). Every node is its own
    /// group and function (no fusion, every view copied), every value keeps its own memory,
    /// and no loop is split between threads, so after each node the kernel (in Rust) can read
    /// the node's output and operands; this costs speed and memory and is meant for debugging.
    /// Default off.
    pub check_finite: bool,
    /// In vector loops of at least 1024 elements, compute the math functions (all but `pow`,
    /// `tan`, `erf` and `atan2`) in chunks through batched helpers compiled for the host's
    /// widest vectors (AVX-512 or AVX2), instead of Cranelift's 128-bit vectors: 2-3× faster
    /// on a transcendental-heavy loop. The values are bitwise those of the in-loop polynomials,
    /// except that an argument needing the libm fallback gets libm alone instead of sending
    /// its whole chunk to libm (see the module docs). Used only on x86-64 hosts with AVX2
    /// and FMA. Default on, except in a crate that uses gradlift without optimizing it
    /// ([`DEPENDENCY_UNOPTIMIZED`]): unoptimized, the helpers are slower than the in-loop code.
    pub batch_math: bool,
    /// Donated buffers: `(input name, output name)` pairs, each an output of the same type
    /// that replaces its input (parameters updated by an optimizer step). The caller passes
    /// one buffer for both, holding the input when the call starts and the output when it
    /// returns (see [`Kernel::call`](super::Kernel::call)). The output is written straight over the input when
    /// every read of the input comes first (or reads the element being written, just before
    /// writing it); otherwise the kernel copies the input into its workspace first
    /// ([`KernelStats::donated_copied`](super::KernelStats::donated_copied)). Either way the results equal an undonated call's.
    /// Default none; set with [`JitConfig::donating`].
    pub donate: Vec<(String, String)>,
    /// The most workspace the kernel may use: the compiler recomputes forward values in the
    /// backward part instead of storing them (checkpoint segments, [`crate::opt::remat`]) until
    /// the memory plan's peak fits, with the least recomputed work it finds, and fails with
    /// [`JitError::OverBudget`](super::JitError::OverBudget) naming the smallest feasible budget if nothing fits.
    /// Recomputation is exact: the results are bitwise those without a budget;
    /// [`KernelStats::nodes_recomputed`](super::KernelStats::nodes_recomputed) says what it cost. Only graphs differentiated in
    /// this process have a backward part to trade (see [`crate::opt::remat`]). Default none;
    /// set with [`JitConfig::with_memory_budget`].
    pub memory_budget_bytes: Option<u64>,
}

impl JitConfig {
    /// This configuration with `pairs` (input name, output name) donated (see
    /// [`JitConfig::donate`]).
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, jit};
    /// let b = GraphBuilder::new("sgd");
    /// let w = b.input("w", DType::F32, &[3]);
    /// let g = b.input("g", DType::F32, &[3]);
    /// let graph = b.finish(&[("w_next", w - 0.5 * g)]).unwrap();
    /// let cfg = jit::JitConfig::default().donating(&[("w", "w_next")]);
    /// let k = jit::compile_with(&graph, &cfg).unwrap();
    /// let mut ws = k.workspace();
    /// let mut w = [1.0f32, 2.0, 3.0];
    /// // Donated inputs are left out of `inputs`; their buffer is passed as the output's.
    /// k.call(&[(&[2.0f32, 2.0, 2.0][..]).into()], &mut [(&mut w[..]).into()], &mut ws)
    ///     .unwrap();
    /// assert_eq!(w, [0.0, 1.0, 2.0]);
    /// ```
    #[must_use]
    pub fn donating(mut self, pairs: &[(&str, &str)]) -> JitConfig {
        self.donate
            .extend(pairs.iter().map(|&(i, o)| (i.to_string(), o.to_string())));
        self
    }

    /// This configuration with a workspace budget of `bytes` (see
    /// [`JitConfig::memory_budget_bytes`]).
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, jit::{self, JitConfig, JitError}};
    /// let b = GraphBuilder::new("deep");
    /// let x = b.input("x", DType::F32, &[8, 16]);
    /// let w = b.input("w", DType::F32, &[16, 16]);
    /// let h = (0..8).fold(x, |h, _| h.matmul(w).tanh());
    /// let loss = (h * h).sum();
    /// let g = b.grad(loss, &[w]).unwrap();
    /// let graph = b.finish(&[("loss", loss), ("dw", g[0])]).unwrap();
    /// let full = jit::compile(&graph).unwrap().workspace_bytes() as u64;
    /// let k = jit::compile_with(&graph, &JitConfig::default().with_memory_budget(full / 2));
    /// assert!(k.unwrap().workspace_bytes() as u64 <= full / 2);
    /// let Err(JitError::OverBudget { minimum, .. }) =
    ///     jit::compile_with(&graph, &JitConfig::default().with_memory_budget(0))
    /// else {
    ///     panic!("a workspace of 0 bytes cannot hold 8 layers")
    /// };
    /// assert!(minimum <= full / 2);
    /// ```
    #[must_use]
    pub fn with_memory_budget(mut self, bytes: u64) -> JitConfig {
        self.memory_budget_bytes = Some(bytes);
        self
    }
}

/// True when gradlift is compiled without optimizations (opt-level 0, a debug build's
/// default) as a dependency of another crate, which is then likely unoptimized too, like the
/// `gemm` crate. Compiled kernels run at the same speed however gradlift was built, but the
/// Rust code they call (the batched math helpers, the GEMM) is 10-100× slower unoptimized, so
/// the JIT's defaults keep that work in compiled code instead: [`JitConfig::batch_math`] off,
/// and matrix products as the JIT's own loop nests. gradlift's own builds (its tests, debug or
/// not) always take the same paths as a release build, so every path stays tested. The cure
/// is the profile override the crate docs describe; this only softens the trap.
pub const DEPENDENCY_UNOPTIMIZED: bool =
    cfg!(gradlift_unoptimized) && option_env!("CARGO_PRIMARY_PACKAGE").is_none();

impl Default for JitConfig {
    fn default() -> JitConfig {
        JitConfig {
            verifier: cfg!(debug_assertions) && option_env!("CARGO_PRIMARY_PACKAGE").is_some(),
            max_ops_per_function: 500,
            threads: 0,
            kernel_threads: None,
            exact_math: false,
            parallel_min_elements: 1 << 14,
            max_workspace_bytes: DEFAULT_MAX_WORKSPACE_BYTES,
            check_finite: false,
            batch_math: !DEPENDENCY_UNOPTIMIZED,
            donate: Vec::new(),
            memory_budget_bytes: None,
        }
    }
}

/// The default of [`JitConfig::max_workspace_bytes`]: 4 GiB.
pub const DEFAULT_MAX_WORKSPACE_BYTES: usize = 4 << 30;
