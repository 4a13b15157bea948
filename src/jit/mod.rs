//! The Cranelift backend: compiles a whole graph (forward and adjoint alike — an adjoint is just
//! more graph) into native code. The only module that names `cranelift_*`.
//!
//! ```
//! use gradlift::{DType, GraphBuilder, jit};
//! let b = GraphBuilder::new("seed");
//! let x1 = b.input("x1", DType::F64, &[]);
//! let x2 = b.input("x2", DType::F64, &[]);
//! let y = x1 * x1 + x2;
//! let d = b.grad(y, &[x1, x2]).unwrap();
//! let outs = [y.id(), d[0].id(), d[1].id()];
//! let g = b.into_graph(&outs).unwrap();
//! let k = jit::compile(&g).unwrap();
//! let out = k.run(&[3.0.into(), 4.0.into()]).unwrap();
//! assert_eq!(out[0].scalar_value(), Some(13.0));
//! assert_eq!(out[1].scalar_value(), Some(6.0));
//! assert_eq!(out[2].scalar_value(), Some(1.0));
//! ```
//!
//! # Calling a kernel
//! [`Kernel::run`] takes and returns [`crate::Tensor`]s. The allocation-free path is
//! [`Kernel::call`] (slices, by position), [`Kernel::call_iter`] (any iterators of buffers)
//! and [`Kernel::call_named`] (by name, in any order; [`Kernel::input_index`] resolves a name
//! once for the positional calls). Scalars go by value (`0.5f32.into()`) or by reference
//! (`(&mut loss).into()` for a scalar output). Every call checks the count, dtype and length of
//! every buffer before any code runs, and errors name the buffer. A graph with collective ops
//! (`all_reduce_sum`, ...) runs as one rank of a [`crate::comm::Communicator`] through
//! [`Kernel::call_with_comm`] and [`Kernel::call_iter_with_comm`], which allocate nothing
//! either (the communicator may); the other calls use one rank
//! ([`crate::comm::SingleProcess`]).
//!
//! Donated buffers ([`JitConfig::donate`]) pair an input with an output of the same type that
//! replaces it, as an optimizer step replaces its parameters: the caller passes one buffer,
//! among the outputs, and the kernel reads the input from it and leaves the output in it.
//! The output is written straight over the input when the plan reads every element of the
//! input before writing it (a loop nest that reads it only at the element it stores, before
//! the store, or any earlier nest); otherwise the kernel copies the input into its workspace
//! before the code runs ([`KernelStats::donated_copied`]). The results are those of an
//! undonated call, bit for bit.
//!
//! # Pipeline
//! 1. [`crate::ir::verify`] the graph.
//! 2. `plan`: liveness; views (`reshape`, `broadcast`, `transpose`, `slice` are strides over
//!    their operand's memory, not copies, and a `concat` read by elementwise loops is read
//!    piece by piece from its operands); fusion of nodes into groups, each one loop nest
//!    (elementwise chains and trees with broadcast operands, and the reductions consuming
//!    them, forward and adjoint alike); a home for every stored value (caller buffers,
//!    workspace ranges reused by liveness and in place where legal, constants); chunks for
//!    threads; and the split into functions of at most [`JitConfig::max_ops_per_function`]
//!    nodes. See the `plan` module docs for the rules.
//! 3. `lower`: each function becomes Cranelift IR: per group one loop nest whose body is
//!    emitted by the ops' `ops::rules(op).lower` rules, on `F32X4`/`F64X2` vectors (unrolled,
//!    with a partial-vector tail) when the group has one float dtype, with vectorized
//!    transcendentals from `vmath`. Scalar (rank-0) code calls `extern "C"` libm wrappers
//!    (`libm`) registered by name. A `matmul` above a small size calls a tuned GEMM (`gemm`,
//!    an `extern "C"` wrapper registered the same way) once per batch matrix, reading its
//!    operands through their views' strides, so a transposed operand (the adjoint's `Aᵀ·Ḡ`,
//!    `Ḡ·Bᵀ`) is never copied. A `cumsum` is a serial loop along its axis per row, in the
//!    interpreter's order.
//! 4. The functions are compiled (side by side on rayon's pool when there are several, up to
//!    [`JitConfig::threads`]; the code is the same for every count), linked into one
//!    `JITModule` in plan order, and wrapped in a [`Kernel`] that calls them in sequence, running the
//!    chunks of parallel groups on the kernel's threads. Functions never call each other, so there
//!    are no cross-function relocations.
//!
//! Loops (`scan`): before step 2, the body of each distinct loop is compiled once, by this
//! same pipeline, into a kernel of its own (nested loops recursively: the recursion is as deep
//! as the nesting, and compile time does not depend on trip counts). In the outer plan the
//! nodes of one loop's result group are one step with no code: the kernel runs the body
//! kernel once per step, in Rust, between its compiled functions, with the carries in two
//! alternating buffers and the xs and ys read and written as rows at the step's offset (see
//! the `loops` module). The loop's scratch memory (the carry buffers, the body's workspace)
//! is a block of the outer workspace, so [`Kernel::workspace_bytes`] counts it and a call
//! allocates nothing. The loop itself is sequential; its body's parallel loops and GEMM calls
//! use the kernel's threads as everywhere else, and bitwise agreement with the interpreter
//! holds for loops as for any other op (the body is compiled with the same options).
//!
//! # Memory layout
//! Inputs are read from the caller's buffers and computed outputs are written straight into
//! the caller's output buffers. Values that stay in registers (fused) have no memory. Every
//! other value lives in the [`Workspace`] (64-byte aligned, caller-owned, reusable): byte
//! offsets are fixed at compile time by a linear scan over the groups that reuses the range
//! of a value after its last reader, and lets an elementwise result overwrite an operand
//! that dies in its loop and is read only at the same index (values under 64 bytes take
//! 8-byte-aligned ranges, larger ones 64-byte-aligned ranges). [`Kernel::workspace_bytes`] is
//! the exact peak, plus the ranges reserved past it for donated inputs copied before the code
//! runs (`donate`) and for the operands the collectives stage (`collective`). Constants whose
//! elements are all bitwise equal become immediates; other constants live in a 64-byte aligned
//! blob owned by the kernel. Outputs that are inputs or constants are copied by
//! [`Kernel::call`] after the code ran. Nodes no output depends on get no code.
//!
//! # Kernel ABI
//! Each serial function is `extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8,
//! ws: *mut u8, consts: *const u8)`: a table of the input buffer addresses (input order), a
//! table of the output buffer addresses (output order), the workspace base and the constant
//! blob base. The address table holds one more slot after the outputs: the call's
//! communicator context, which collective nodes pass to their `extern "C"` trampoline
//! (`collective`). A chunk function takes two more arguments, `lo: i64, hi: i64`, and runs chunks
//! `lo..hi` of one parallel group. [`Kernel::call`] runs the functions in order after checking
//! every buffer. Bool elements are bytes holding 0 or 1; the code never writes anything else
//! into bool memory.
//!
//! # Threads and determinism
//! A call uses up to [`JitConfig::kernel_threads`] threads (default: one per core): the
//! calling thread and helper threads that stay awake between the call's forks. It uses them
//! in two places, and in both the outputs are bitwise the same for every
//! thread count, 1 included:
//! - Fused loops over at least [`JitConfig::parallel_min_elements`] elements (and at least
//!   2 × 8192) are cut at compile time into chunks of about 8192 elements along their
//!   outermost dimension; [`Kernel::call`] runs them on those threads, which claim
//!   chunks one at a time from a shared counter (with one thread, the calling thread runs
//!   them in order). A reduction across chunks writes one partial result per chunk, folded in
//!   chunk order afterwards. Chunk boundaries and folding order depend only on the shapes
//!   and `parallel_min_elements`, never on the thread count.
//! - GEMM calls (below) split their output rows (or tiles) between the threads; each output
//!   element is still summed by one accumulator over the same `k` blocks in the same order,
//!   so the split changes which thread computes an element, not its bits (the `gemm`
//!   module's tests check this on the MLP's products and on shapes crossing the GEMM's block
//!   sizes).
//!
//! Smaller loops (and every scalar kernel) stay on the calling thread. Changing
//! `parallel_min_elements` (not the thread count) changes the chunks, and with them the order
//! of reassociated reductions.
//!
//! # Agreement with the interpreter
//! With [`JitConfig::exact_math`], results equal [`crate::interp::run`] bit for bit, up to NaN
//! payloads: the same operation order, the same dtype, no `fma` in op rules, reductions
//! accumulated in the interpreter's order, and every transcendental calls the same Rust
//! method (lane by lane in vector loops). The tests check every op, random graphs (including
//! long shapes, vector tails, unrolled and threaded loops) and gradient graphs bitwise.
//!
//! By default three things differ, and nothing else (ops without a transcendental and without
//! a reduction stay bitwise: vector add, sub, mul, div, sqrt, compare, select, max, min are
//! IEEE-exact per lane):
//! - Transcendentals in vector loops use `vmath` polynomials (scalar code keeps libm). Their
//!   largest error against Rust's `f32`/`f64` methods, measured over every 2^7-th f32 bit
//!   pattern, every 2^40-th f64 bit pattern, dense samples of the usual ranges and all
//!   special values (`tests/it/simd.rs`, release build, this machine with FMA):
//!
//!   | function | f32 ULP | f64 ULP |
//!   |----------|---------|---------|
//!   | exp      | 1       | 1       |
//!   | expm1    | 2       | 2       |
//!   | log      | 1       | 1       |
//!   | log1p    | 1       | 1       |
//!   | sin      | 1       | 1       |
//!   | cos      | 1       | 1       |
//!   | tanh     | 4       | 4       |
//!   | sigmoid  | 3       | 4       |
//!
//!   ±0, ±inf, NaN, overflow and underflow come out as libm gives them (NaN payloads aside);
//!   arguments a polynomial cannot handle (subnormal `exp` results and `log` arguments, the
//!   last ULPs before `exp` overflow, `sin`/`cos` beyond 2^20) make their chunk rerun with
//!   libm on every lane. `pow`, `tan`, `erf` and `atan2` always use libm (lane by lane), so
//!   they equal the interpreter bitwise in every mode.
//!
//!   In vector loops of at least 1024 elements, every other function runs in chunks
//!   through batched helpers compiled by rustc for the host's widest vectors (AVX-512 or
//!   AVX2, see [`JitConfig::batch_math`]), including calls on other calls' results
//!   (`log1p(exp(x))`, up to 4 deep). They execute the same algorithms operation for
//!   operation, so their values are bitwise the in-loop ones (a test compares every bit),
//!   with one difference: an argument that needs libm gets libm alone, instead of sending
//!   its whole chunk to libm.
//! - Reductions whose innermost loop dimension is reduced are reassociated, in an order
//!   fixed by the shapes (and `parallel_min_elements`) alone: element `i` of an innermost
//!   loop (counted from the loop's start, or its parallel chunk's) accumulates into partial
//!   `i mod 8` for `f64` or `i mod 16` for `f32` (four vector slots of 2 or 4 lanes), in
//!   element order; the slots are folded pairwise ((0+1)+(2+3)), then the lanes pairwise,
//!   then chunks in chunk order. A sum of `n` terms is within `n·ε·Σ|xᵢ|` of the
//!   interpreter's (ε = `f32::EPSILON` or `f64::EPSILON`), usually much closer to the exact
//!   sum; `reduce_max`/`reduce_min` (native max/min instructions, NaN lanes tracked apart, so
//!   any NaN still gives NaN) may differ only in the sign of a zero result. Reductions along a
//!   kept innermost dimension (column sums) stay bitwise.
//! - A `matmul` with `m·k·n > 256` (and both operands in memory) calls a tuned GEMM, which
//!   tiles the sum over `k` and uses `fma` and SIMD partial sums: each element is within
//!   `k·ε·Σ|a||b|` of the interpreter's (the sum of both orders' worst-case rounding). It is
//!   deterministic all the same: the tiling is fixed by the shapes and strides, whatever the
//!   thread count. Smaller products use a loop nest in the interpreter's order.
//!
//! Per op the tolerance is therefore: bitwise; within the table's ULP bound; or within the
//! summation (or GEMM) bound. A graph's outputs can amplify these per-op differences by its
//! condition number (for example `sin(exp(x))` near a zero of `sin`); use `exact_math` when bitwise
//! reproducibility of the interpreter matters.
//!
//! Deliberately absent: graph optimization (run [`crate::opt`] first), recomputation of
//! values read by several groups (they are stored once), vectors wider than 128 bits in
//! compiled code (Cranelift's x86-64 limit; only the batched transcendentals, which are Rust,
//! use wider ones).

mod batch;
mod budget;
mod buf;
mod check;
mod collective;
mod config;
mod donate;
mod error;
mod gemm;
mod kernel;
mod layout;
mod libm;
mod loops;
mod lower;
mod plan;
mod recompute;
mod team;
mod vmath;

pub use buf::{Buf, BufMut, Workspace};
pub use config::{DEFAULT_MAX_WORKSPACE_BYTES, DEPENDENCY_UNOPTIMIZED, JitConfig};
pub use error::{CallError, JitError};
pub use kernel::{Kernel, KernelStats};

use crate::ir::Graph;
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{Signature, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{CodegenError, Context};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, ModuleError, ModuleReloc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// 64 bytes, 64-byte aligned: the unit of workspace and constant memory.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Compiles `g` with the default [`JitConfig`]: the kernel computes `g.outputs()` from
/// `g.inputs()`.
///
/// # Errors
/// See [`compile_with`].
pub fn compile(g: &Graph) -> Result<Kernel, JitError> {
    compile_with(g, &JitConfig::default())
}

/// Compiles `g` with `cfg`.
///
/// # Errors
/// [`JitError::InvalidGraph`] if the graph fails verification, [`JitError::TooLarge`] if its
/// memory cannot be addressed, [`JitError::OverBudget`] if no plan fits
/// [`JitConfig::memory_budget_bytes`], and the Cranelift variants if code generation fails
/// (bugs or an unsupported host).
pub fn compile_with(g: &Graph, cfg: &JitConfig) -> Result<Kernel, JitError> {
    let started = std::time::Instant::now();
    // Verification is a safety requirement, not a courtesy: the plan computes buffer sizes and
    // offsets from the stored node types, so they must be the types the shape rules infer.
    crate::ir::verify(g).map_err(JitError::InvalidGraph)?;
    let chosen = budget::choose(g, cfg)?;
    let (g, bodies) = (&*chosen.graph, &chosen.bodies);
    let (plan, donated, stage) = plan_graph(g, cfg, &chosen.body_ws, chosen.choice)?;
    let isa = host_isa(cfg.verifier)?;
    let mut owner = kernel::ModuleOwner::new(JITModule::new(jit_builder(&isa)));
    let module = owner.module();
    let imports = declare_imports(module, &isa)?;
    let sigs = [
        lower::kernel_signature(isa.pointer_type(), isa.default_call_conv()),
        lower::chunk_signature(isa.pointer_type(), isa.default_call_conv()),
    ];
    let ids = declare_functions(module, &plan, &sigs)?;
    let job = Job {
        env: lower::Env {
            g,
            plan: &plan,
            imports: &imports,
            target: isa.frontend_config(),
            opts: lower::Opts {
                exact: cfg.exact_math,
                fma: isa
                    .isa_flags()
                    .iter()
                    .any(|f| f.name == "has_fma" && f.as_bool() == Some(true)),
                batch: cfg.batch_math && batch::available(),
            },
        },
        isa: &isa,
        sigs: &sigs,
        ids: &ids,
    };
    job.define_all(module, compile_threads(cfg, &ids))?;
    module.finalize_definitions().map_err(JitError::module)?;
    let (steps, loops) = steps(g, module, &ids, &plan, bodies);
    let mut parts = parts(g, cfg, plan, donated, (steps, loops), started);
    parts.stage = stage;
    parts.stats.nodes_recomputed = chosen.stats.nodes_recomputed;
    parts.stats.flops_recomputed = chosen.stats.flops_recomputed;
    Ok(Kernel::new(parts, owner))
}

/// Does the JIT's once-per-process set-up now, so that no later [`compile_with`] pays for
/// it: builds the host ISA (CPU feature detection and Cranelift's flags, cached for the
/// process), starts rayon's pool if `cfg` compiles on more than one thread
/// ([`JitConfig::threads`]), and compiles and runs a small kernel (an `[8, 8]` matmul, `tanh`
/// and a sum, in `f64`), which pages in the compiler's code and initializes the GEMM's
/// CPU and cache detection. Returns the time it took. Calling it is optional: without it, the
/// first compile (and the first GEMM call) does the same work.
///
/// ```
/// use gradlift::jit::{self, JitConfig};
/// let took = jit::warm_up(&JitConfig::default()).unwrap();
/// assert!(took.as_secs() < 60);
/// ```
///
/// # Errors
/// As [`compile_with`] and [`Kernel::call`] (a bug or an unsupported host).
pub fn warm_up(cfg: &JitConfig) -> Result<std::time::Duration, crate::Error> {
    let started = std::time::Instant::now();
    host_isa(cfg.verifier)?;
    if cfg.threads != 1 {
        rayon::current_num_threads();
    }
    let b = crate::GraphBuilder::new("warm_up");
    let x = b.input("x", crate::DType::F64, &[8, 8]);
    let y = x.matmul(x).tanh().sum();
    let g = b.finish(&[("y", y)])?;
    let cfg = JitConfig {
        donate: Vec::new(),
        memory_budget_bytes: None,
        ..cfg.clone()
    };
    let k = compile_with(&g, &cfg)?;
    let xs: Vec<f64> = (0..64).map(|i| f64::from(i) / 64.0).collect();
    let mut y = 0.0f64;
    k.call(
        &[Buf::F64(&xs)],
        &mut [BufMut::from(&mut y)],
        &mut k.workspace(),
    )?;
    Ok(started.elapsed())
}

/// The plan of verified graph `g`, how it runs its donated pairs and where its collectives'
/// staging region is, within the workspace limit of `cfg`.
fn plan_graph(
    g: &Graph,
    cfg: &JitConfig,
    body_ws: &plan::BodySizes,
    (keep_backward_apart, max_snapshots): (bool, Option<usize>),
) -> Result<(plan::Plan, Vec<donate::Donated>, Option<usize>), JitError> {
    let donated = donate::resolve(g, &cfg.donate)?;
    let mut plan = plan::plan_donating(
        g,
        &plan::PlanConfig {
            max_ops_per_function: cfg.max_ops_per_function,
            parallel_min_elements: cfg.parallel_min_elements,
            exact: cfg.exact_math,
            checked: cfg.check_finite,
            keep_backward_apart,
            max_snapshots,
        },
        body_ws,
        &donated,
    )?;
    let donated = donate::decide(g, &mut plan, &donated, cfg.exact_math, cfg.check_finite)?;
    let stage = collective::reserve_stage(g, &mut plan.ws_bytes)?;
    if plan.ws_bytes > cfg.max_workspace_bytes {
        return Err(JitError::TooLarge {
            what: format!(
                "the kernel needs {} bytes of workspace, more than the limit of {} bytes \
                 (JitConfig::max_workspace_bytes)",
                plan.ws_bytes, cfg.max_workspace_bytes
            ),
        });
    }
    Ok((plan, donated, stage))
}

/// A JIT builder for `isa` that resolves the helpers' symbols.
fn jit_builder(isa: &OwnedTargetIsa) -> JITBuilder {
    let mut jb = JITBuilder::with_isa(isa.clone(), cranelift_module::default_libcall_names());
    for (_, _, name, ptr) in libm::symbols().chain(batch::symbols()) {
        jb.symbol(name, ptr);
    }
    for (_, name, ptr) in gemm::symbols() {
        jb.symbol(name, ptr);
    }
    let (name, ptr) = collective::symbol();
    jb.symbol(name, ptr);
    jb
}

/// Declares the helpers as imports of `module`.
fn declare_imports(
    module: &mut JITModule,
    isa: &OwnedTargetIsa,
) -> Result<lower::Imports, JitError> {
    let (ptr, cc) = (isa.pointer_type(), isa.default_call_conv());
    let math =
        libm::symbols().map(|(f, d, name, _)| ((f, d), name, lower::math_signature(f, d, cc)));
    let batched =
        batch::symbols().map(|(f, d, name, _)| ((f, d), name, lower::batch_signature(ptr, cc)));
    let gemms = gemm::symbols()
        .into_iter()
        .map(|(d, name, _)| (d, name, lower::gemm_signature(ptr, cc)));
    let all_reduce =
        std::iter::once(((), collective::SYMBOL, lower::collective_signature(ptr, cc)));
    Ok(lower::Imports {
        math: declare(module, math)?,
        batch: declare(module, batched)?,
        gemm: declare(module, gemms)?,
        all_reduce: declare(module, all_reduce)?[&()],
    })
}

/// Declares each `(key, symbol, signature)` as an import of `module`: key → function index.
fn declare<K: Eq + std::hash::Hash>(
    module: &mut JITModule,
    imports: impl Iterator<Item = (K, &'static str, Signature)>,
) -> Result<HashMap<K, u32>, JitError> {
    let mut ids = HashMap::new();
    for (key, name, sig) in imports {
        let id = module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(JitError::module)?;
        ids.insert(key, id.as_u32());
    }
    Ok(ids)
}

/// Declares the plan's functions (serial: `sigs[0]`, chunk functions: `sigs[1]`; a loop has
/// none).
fn declare_functions(
    module: &mut JITModule,
    plan: &plan::Plan,
    sigs: &[Signature; 2],
) -> Result<Vec<Option<FuncId>>, JitError> {
    let mut ids = Vec::with_capacity(plan.funcs.len());
    for (i, f) in plan.funcs.iter().enumerate() {
        if matches!(f, plan::Func::Loop(_)) {
            ids.push(None);
            continue;
        }
        let sig = &sigs[usize::from(matches!(f, plan::Func::Chunks(_)))];
        let id = module
            .declare_function(&format!("f{i}"), Linkage::Local, sig)
            .map_err(JitError::module)?;
        ids.push(Some(id));
    }
    Ok(ids)
}

/// The kernel's steps: the finalized functions of the plan and its loops, in order.
fn steps(
    g: &Graph,
    module: &JITModule,
    ids: &[Option<FuncId>],
    plan: &plan::Plan,
    bodies: &loops::Bodies,
) -> (Vec<kernel::Step>, Vec<loops::LoopRun>) {
    let mut runs = Vec::new();
    let steps = ids
        .iter()
        .zip(&plan.funcs)
        .map(|(&id, f)| {
            let p = || module.get_finalized_function(id.expect("functions have ids"));
            match f {
                plan::Func::Serial(_) => kernel::Step::Serial(serial_fn(p())),
                plan::Func::Chunks(gi) => {
                    let plan::Group::Fused(fused) = &plan.groups[*gi as usize] else {
                        unreachable!("chunk functions run fused groups")
                    };
                    kernel::Step::Chunks {
                        f: chunk_fn(p()),
                        count: fused.chunks.count,
                    }
                }
                plan::Func::Loop(gi) => {
                    let plan::Group::Loop(l) = &plan.groups[*gi as usize] else {
                        unreachable!("loop steps run loop groups")
                    };
                    runs.push(loops::LoopRun::new(g, plan, l, bodies));
                    kernel::Step::Loop(runs.len() as u32 - 1)
                }
            }
        })
        .collect();
    (steps, runs)
}

/// True if `g` has a matmul large enough for the GEMM to use threads (if it calls the GEMM).
fn has_threaded_matmul(g: &Graph) -> bool {
    g.nodes().iter().any(|node| {
        node.op == crate::ir::Op::Matmul && {
            let (x, y) = (g.ty(node.inputs[0]), &node.ty);
            let (m, n) = (y.shape[y.rank() - 2], y.shape[y.rank() - 1]);
            gemm::may_use_threads(m, x.shape[x.rank() - 1], n)
        }
    })
}

/// The parts of the kernel: its steps, constants, signature and counters.
fn parts(
    g: &Graph,
    cfg: &JitConfig,
    plan: plan::Plan,
    donated: Vec<donate::Donated>,
    (steps, loops): (Vec<kernel::Step>, Vec<loops::LoopRun>),
    started: std::time::Instant,
) -> kernel::Parts {
    let mut consts = vec![Line([0; 64]); plan.consts.len().div_ceil(64)];
    for (line, chunk) in consts.iter_mut().zip(plan.consts.chunks(64)) {
        line.0[..chunk.len()].copy_from_slice(chunk);
    }
    let inputs = g.inputs();
    let check = cfg.check_finite.then(|| {
        Box::new(kernel::Checker {
            graph: g.clone(),
            locs: plan.locs.clone(),
            // Checked plans have one single-node group per function.
            steps: plan
                .funcs
                .iter()
                .map(|f| match f {
                    plan::Func::Serial(items) => match items.as_slice() {
                        [plan::Item::Run(gi)] => plan.groups[*gi as usize].first_node(),
                        _ => unreachable!("checked plans run one group per function"),
                    },
                    plan::Func::Loop(gi) => plan.groups[*gi as usize].first_node(),
                    plan::Func::Chunks(_) => unreachable!("checked plans are serial"),
                })
                .collect(),
            live: crate::finite::live_nodes(g),
        })
    });
    let st = &plan.stats;
    let donated_in_place = donated.iter().filter(|d| d.copy.is_none()).count() as u64;
    let donated_copied = donated.len() as u64 - donated_in_place;
    kernel::Parts {
        check,
        donated,
        steps,
        loops,
        consts,
        inputs: inputs.iter().map(|&i| g.ty(i).clone()).collect(),
        outputs: g.outputs().iter().map(|&o| g.ty(o).clone()).collect(),
        input_names: inputs.iter().map(|&i| g.value_name(i)).collect(),
        output_names: g.outputs().iter().map(|&o| g.value_name(o)).collect(),
        ws_bytes: plan.ws_bytes,
        threads: cfg.kernel_threads,
        gemm_threads: st.matmuls_gemm > 0 && has_threaded_matmul(g),
        collectives: collective::descriptors(g),
        stage: None,
        stats: KernelStats {
            donated_in_place,
            donated_copied,
            nodes_compiled: st.nodes_compiled,
            nodes_dead: st.nodes_dead,
            nodes_fused: st.nodes_fused,
            views: st.views,
            groups: st.groups,
            groups_parallel: st.groups_parallel,
            buffers_reused: st.buffers_reused,
            buffers_in_place: st.buffers_in_place,
            functions: (plan.funcs.iter())
                .filter(|f| !matches!(f, plan::Func::Loop(_)))
                .count() as u64,
            matmuls_gemm: st.matmuls_gemm,
            gemm_epilogues: st.gemm_epilogues,
            nodes_recomputed: 0,
            flops_recomputed: 0,
            compile_time: started.elapsed(),
        },
        post: plan.post,
    }
}

/// Turns the address of a finalized serial function into a function pointer.
#[allow(unsafe_code)]
fn serial_fn(p: *const u8) -> kernel::KernelFn {
    // SAFETY: `compile_with` passes the address of a finalized function defined with
    // `kernel_signature` (four pointer arguments, no results) in the host's default calling
    // convention, which is `extern "C"` for these argument types; function and data pointers
    // have the same size on every host Cranelift supports.
    unsafe { std::mem::transmute::<*const u8, kernel::KernelFn>(p) }
}

/// Turns the address of a finalized chunk function into a function pointer.
#[allow(unsafe_code)]
fn chunk_fn(p: *const u8) -> kernel::ChunkFn {
    // SAFETY: as `serial_fn`, for a function defined with `chunk_signature` (four pointers
    // and two i64 arguments, no results).
    unsafe { std::mem::transmute::<*const u8, kernel::ChunkFn>(p) }
}

/// Everything a worker needs to build and compile one function.
struct Job<'a> {
    env: lower::Env<'a>,
    isa: &'a OwnedTargetIsa,
    sigs: &'a [Signature; 2],
    /// Per plan function: its id (`None` for a loop, which has no code).
    ids: &'a [Option<FuncId>],
}

/// One function's machine code, or why Cranelift could not compile it.
type CompileResult = Result<Compiled, Box<ModuleError>>;

/// Machine code of one function, ready for `define_function_bytes`.
struct Compiled {
    code: Vec<u8>,
    align: u64,
    relocs: Vec<ModuleReloc>,
}

impl Job<'_> {
    /// Builds function `i` into `ctx.func`.
    fn build(&self, i: usize, ctx: &mut Context, fctx: &mut FunctionBuilderContext) {
        let (sig, body) = match &self.env.plan.funcs[i] {
            plan::Func::Serial(items) => (&self.sigs[0], lower::Body::Serial(items)),
            plan::Func::Chunks(g) => (&self.sigs[1], lower::Body::Chunks(*g)),
            plan::Func::Loop(_) => unreachable!("loops have no code"),
        };
        ctx.func.signature = sig.clone();
        ctx.func.name = UserFuncName::user(0, self.id(i).as_u32());
        lower::build_function(&mut ctx.func, fctx, &self.env, body);
    }

    /// The number of nodes function `i` computes: a proxy for its compile time.
    fn size(&self, i: usize) -> usize {
        let plan = self.env.plan;
        let group = |gi: u32| match &plan.groups[gi as usize] {
            plan::Group::Fused(f) => f.members.len(),
            _ => 1,
        };
        match &plan.funcs[i] {
            plan::Func::Serial(items) => items
                .iter()
                .map(|it| match *it {
                    plan::Item::Run(gi) => group(gi),
                    plan::Item::Combine(_) => 1,
                })
                .sum(),
            plan::Func::Chunks(gi) => group(*gi),
            plan::Func::Loop(_) => 0,
        }
    }

    /// The id of function `i`, which has code.
    fn id(&self, i: usize) -> FuncId {
        self.ids[i].expect("plan invariant: only loops have no code")
    }

    /// Builds, compiles and defines every function in `module`, on up to `threads` threads.
    ///
    /// With more than one thread, the functions are built and compiled by the calling thread
    /// and `threads - 1` rayon tasks, each claiming the next function from a shared counter,
    /// largest first (so that no thread is left with a large one at the end), and defined in
    /// `module` in plan order once all are compiled. The calling thread works rather than
    /// waits: on a loaded machine the pool's threads may start late, and then it compiles
    /// more of the functions itself. Each function's machine code depends
    /// only on its own IR, never on the thread that compiled it or on the order, and the
    /// module lays the functions out in the same order either way, so the kernel is the
    /// same for every thread count.
    fn define_all(&self, module: &mut JITModule, threads: usize) -> Result<(), JitError> {
        if threads == 1 {
            let mut fctx = FunctionBuilderContext::new();
            let mut ctx = module.make_context();
            for (i, &id) in self.ids.iter().enumerate() {
                let Some(id) = id else { continue };
                module.clear_context(&mut ctx);
                self.build(i, &mut ctx, &mut fctx);
                module
                    .define_function(id, &mut ctx)
                    .map_err(|source| JitError::Codegen {
                        function: i,
                        source: Box::new(source),
                    })?;
            }
            return Ok(());
        }
        let slots: Vec<Mutex<Option<CompileResult>>> =
            self.ids.iter().map(|_| Mutex::new(None)).collect();
        let mut order: Vec<usize> = (0..self.ids.len())
            .filter(|&i| self.ids[i].is_some())
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.size(i)));
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let work = || {
            let mut fctx = FunctionBuilderContext::new();
            let mut ctx = Context::new();
            loop {
                let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                ctx.clear();
                self.build(i, &mut ctx, &mut fctx);
                let r = self.compile(i, &mut ctx);
                failed.fetch_or(r.is_err(), Ordering::Relaxed);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            }
        };
        rayon::in_place_scope(|s| {
            for _ in 1..threads {
                s.spawn(|_| work());
            }
            work();
        });
        for (i, slot) in slots.into_iter().enumerate() {
            let Some(id) = self.ids[i] else { continue };
            // After a failure the tasks stop claiming functions, so some slots stay empty; the
            // failure's own slot holds its error, which this loop reaches and returns.
            match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(c)) => module
                    .define_function_bytes(id, c.align, &c.code, &c.relocs)
                    .map_err(JitError::module)?,
                Some(Err(source)) => {
                    return Err(JitError::Codegen {
                        function: i,
                        source,
                    });
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Compiles the function in `ctx` to machine code (what `JITModule::define_function` does,
    /// minus the linking, so it can run off the module's thread).
    fn compile(&self, i: usize, ctx: &mut Context) -> Result<Compiled, Box<ModuleError>> {
        ctx.compile(&**self.isa, &mut ControlPlane::default())
            .map_err(|e| Box::new(ModuleError::Compilation(e.inner)))?;
        let code = ctx.compiled_code().expect("compiled just above");
        let align = u64::from(code.buffer.alignment);
        let bytes = code.code_buffer().to_vec();
        let relocs = code
            .buffer
            .relocs()
            .iter()
            .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, self.id(i)))
            .collect();
        Ok(Compiled {
            code: bytes,
            align,
            relocs,
        })
    }
}

/// How many threads compile the functions: [`JitConfig::threads`] capped at the rayon pool's
/// size and at the number of functions with code. A single function, or a count of 1, never
/// touches the pool (asking rayon its size starts its global pool).
fn compile_threads(cfg: &JitConfig, ids: &[Option<FuncId>]) -> usize {
    let functions = ids.iter().flatten().count();
    if cfg.threads == 1 || functions <= 1 {
        return 1;
    }
    let pool = rayon::current_num_threads();
    let wanted = if cfg.threads == 0 {
        pool
    } else {
        cfg.threads.min(pool)
    };
    wanted.min(functions).max(1)
}

/// The host ISA with our flags, built once per verifier setting (CPU detection is not free).
fn host_isa(verifier: bool) -> Result<OwnedTargetIsa, JitError> {
    static CACHE: Mutex<[Option<OwnedTargetIsa>; 2]> = Mutex::new([None, None]);
    let slot = usize::from(verifier);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(isa) = &cache[slot] {
        return Ok(isa.clone());
    }
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("enable_verifier", if verifier { "true" } else { "false" }),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
    ] {
        flags
            .set(k, v)
            .map_err(|e| JitError::Settings(Box::new(e)))?;
    }
    let builder =
        cranelift_native::builder().map_err(|e| JitError::UnsupportedHost(e.to_string()))?;
    let isa = builder
        .finish(settings::Flags::new(flags))
        .map_err(|e: CodegenError| JitError::module(ModuleError::Compilation(e)))?;
    cache[slot] = Some(isa.clone());
    Ok(isa)
}
