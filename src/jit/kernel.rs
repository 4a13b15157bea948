//! The compiled kernel: owns the JIT code, checks every buffer, and calls the code.
//!
//! Its `unsafe` code calls the compiled functions and frees their memory. The safety argument
//! is local: [`Kernel::call`] checks the count, dtype and length of every buffer and the
//! workspace before the first call into compiled code, the compiled code only touches the
//! memory the plan gave it (the caller's buffers, the workspace and the constant blob, all of
//! the checked sizes), and the JIT memory is freed only in `Drop`. A loop step (`jit::loops`)
//! runs its body kernel on the same memory, through [`Kernel::exec_body`], whose caller
//! vouches for the buffers instead of checking them.
//!
//! Parallel groups: a chunk function runs a range of chunks; [`Kernel::call`] runs the chunks
//! on the calling thread and the kernel team's helpers (`team`), each claiming the next chunk
//! from a shared counter, and waits for all of them before the next step. Chunks write disjoint
//! memory (the plan guarantees it), so the ranges may run concurrently; chunk boundaries are
//! fixed at compile time, so the result does not depend on the number of threads.
//!
//! Threads: a call runs on the calling thread, which shares its chunks and (through
//! `gemm::set_threads`) its GEMM calls' row blocks with up to `threads − 1` helpers of the
//! process-wide team (`team`). The count is the kernel's (`JitConfig::kernel_threads`), by
//! default the current rayon pool's size (one per core unless the application sizes it). The
//! helpers are not rayon's workers: those park as soon as they run out of work, and waking a
//! parked thread costs tens of microseconds per fork, several times per call; the team's
//! helpers spin between forks and park after a millisecond without work. One call uses the
//! team at a time; a kernel called on several threads at once runs the others' work on their
//! own threads. A count of 1 never touches the team.
//!
//! Deliberately absent: any code generation (see `lower`), and any allocation in
//! [`Kernel::call`] except inside GEMM calls (the crate behind large matmuls allocates its
//! packing memory per call; see `gemm`) and the team's start (the first threaded call starts
//! its helper threads). [`Kernel::call_with_comm`] neither: collectives stage their operands
//! in the workspace (`collective`); the communicator may allocate ([`crate::comm::ThreadComm`]
//! grows its slots on first use, and its `split` hands out a new `Rc` per collective over
//! groups). `tests/alloc.rs` counts them.
#![allow(unsafe_code)]

use super::buf::{Buf, BufMut, Workspace};
pub(super) use super::check::Checker;
use super::collective::CommCtx;
use super::donate::Donated;
use super::loops::LoopRun;
use super::plan::PostCopy;
use super::{CallError, Line};
use crate::comm::{Communicator, SingleProcess};
use crate::ir::{DType, TensorType};
use crate::tensor::{Data, Tensor};
use cranelift_jit::JITModule;
use std::collections::HashMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

/// A compiled function: `(inputs, outputs, workspace, constants)` (see `lower` for the ABI).
pub(super) type KernelFn =
    unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, *const u8);

/// A compiled chunk function: `(inputs, outputs, workspace, constants, lo, hi)` runs chunks
/// `lo..hi` (`lo < hi`).
pub(super) type ChunkFn =
    unsafe extern "C" fn(*const *const u8, *const *mut u8, *mut u8, *const u8, i64, i64);

/// One step of a kernel.
#[derive(Clone, Copy)]
pub(super) enum Step {
    /// Call once.
    Serial(KernelFn),
    /// Run chunks `0..count`, possibly on several threads.
    Chunks {
        /// The chunk function.
        f: ChunkFn,
        /// Number of chunks.
        count: usize,
    },
    /// Run loop `l` of the kernel (see `jit::loops`).
    Loop(u32),
}

/// The raw arguments of one kernel call, shared by the threads running its chunks.
#[derive(Clone, Copy)]
pub(super) struct Args {
    /// Input buffer addresses, in input order.
    pub ins: *const *const u8,
    /// Output buffer addresses, in output order.
    pub outs: *const *mut u8,
    /// The workspace base.
    pub ws: *mut u8,
    /// The constant blob's base.
    pub consts: *const u8,
}

// SAFETY: `Args` is only shared while `Kernel::call` waits for every thread using it (inside
// `team::run`, which returns only after every helper has left the job). The pointed-to buffers outlive the call, the inputs and constants are only
// read, and concurrent chunks write disjoint parts of the outputs and the workspace (see the
// plan's parallel chunks).
unsafe impl Send for Args {}
// SAFETY: as above; the struct itself is never mutated.
unsafe impl Sync for Args {}

impl Args {
    /// Runs chunks `lo..hi` of `f`.
    ///
    /// # Safety
    /// The caller upholds the safety contract of `Kernel::call` (checked buffers, this
    /// kernel's workspace) and `lo < hi <= count` of `f`'s group.
    unsafe fn chunks(self, f: ChunkFn, lo: usize, hi: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            f(
                self.ins,
                self.outs,
                self.ws,
                self.consts,
                lo as i64,
                hi as i64,
            )
        }
    }
}

/// Owns a JIT module and frees its code memory when dropped (a plain `JITModule` drop leaks
/// its pages on purpose).
pub(super) struct ModuleOwner(ManuallyDrop<JITModule>);

impl ModuleOwner {
    pub(super) fn new(m: JITModule) -> ModuleOwner {
        ModuleOwner(ManuallyDrop::new(m))
    }

    pub(super) fn module(&mut self) -> &mut JITModule {
        &mut self.0
    }
}

impl Drop for ModuleOwner {
    fn drop(&mut self) {
        // SAFETY: the module is taken exactly once (here), and `drop` has exclusive access, so
        // no function of the module is running. Function pointers into it live only in the
        // `Kernel` that owns this value and are dropped with it, never called again.
        unsafe { ManuallyDrop::take(&mut self.0).free_memory() }
    }
}

/// Counters from compiling one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelStats {
    /// Nodes that got code (in a fused loop or on their own).
    pub nodes_compiled: u64,
    /// Nodes skipped because no output depends on them.
    pub nodes_dead: u64,
    /// Elementwise nodes whose value never left registers (fused into their consumers).
    pub nodes_fused: u64,
    /// `reshape`/`broadcast`/`transpose`/`slice` nodes read through strides, without a copy.
    pub views: u64,
    /// Loop nests (groups) the nodes were clustered into.
    pub groups: u64,
    /// Groups whose chunks may run on several threads.
    pub groups_parallel: u64,
    /// Workspace values placed in the range of a value that was already dead.
    pub buffers_reused: u64,
    /// Workspace values written over a dying operand (in place).
    pub buffers_in_place: u64,
    /// Cranelift functions the graph was split into.
    pub functions: u64,
    /// Matmul nodes computed by calls of the tuned GEMM (the rest use a loop nest).
    pub matmuls_gemm: u64,
    /// GEMM calls that also compute the sum their product is added to (an epilogue, see
    /// `jit::plan::epilogue`), instead of a separate pass.
    pub gemm_epilogues: u64,
    /// Donated outputs computed straight over their inputs (see `JitConfig::donate`).
    pub donated_in_place: u64,
    /// Donated inputs the kernel copies into its workspace first, because some reader of the
    /// input runs after the output's first write.
    pub donated_copied: u64,
    /// Copies of forward nodes the memory budget recomputes in the backward part
    /// (`JitConfig::memory_budget_bytes`; 0 without a budget).
    pub nodes_recomputed: u64,
    /// Their floating-point work (see [`crate::opt::remat::RematStats`]).
    pub flops_recomputed: u64,
    /// Wall-clock compile time.
    pub compile_time: std::time::Duration,
}

impl fmt::Display for KernelStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes_compiled={} nodes_dead={} nodes_fused={} views={} groups={} \
             groups_parallel={} buffers_reused={} buffers_in_place={} functions={} \
             matmuls_gemm={} gemm_epilogues={} donated_in_place={} donated_copied={} nodes_recomputed={} \
             flops_recomputed={} compile_time={:?}",
            self.nodes_compiled,
            self.nodes_dead,
            self.nodes_fused,
            self.views,
            self.groups,
            self.groups_parallel,
            self.buffers_reused,
            self.buffers_in_place,
            self.functions,
            self.matmuls_gemm,
            self.gemm_epilogues,
            self.donated_in_place,
            self.donated_copied,
            self.nodes_recomputed,
            self.flops_recomputed,
            self.compile_time
        )
    }
}

/// Source of kernel identities (a workspace remembers the kernel that made it).
static NEXT_KERNEL_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled graph: native code computing the graph's outputs from its inputs.
///
/// Cheap to share between threads (`Send + Sync`): give each thread its own [`Workspace`].
/// Dropping the kernel frees its code.
pub struct Kernel {
    steps: Vec<Step>,
    /// The loops that [`Step::Loop`] steps run.
    loops: Vec<LoopRun>,
    consts: Vec<Line>,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
    /// `(dtype, element count)` of each input, then of each output (what `call` checks).
    sig: Vec<(DType, usize)>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    ws_bytes: usize,
    post: Vec<PostCopy>,
    /// Donated pairs.
    donated: Vec<Donated>,
    /// Per input: the output it is donated to.
    donor: Vec<Option<usize>>,
    /// Input and output positions by name (see `find`).
    in_index: HashMap<String, usize>,
    out_index: HashMap<String, usize>,
    stats: KernelStats,
    /// Checked mode only.
    check: Option<Box<Checker>>,
    /// `JitConfig::kernel_threads` (`None`: every thread of the current pool).
    threads: Option<NonZeroUsize>,
    /// Whether any step can use more than one thread (chunks, or GEMM calls above the crate's
    /// threading threshold, here or in a loop's body): calls of other kernels never touch the
    /// pool, which would cost a hop to a pool thread and back for nothing.
    parallel: bool,
    /// The collective nodes (see `collective`); if any moves data, the call stays on the
    /// caller's thread.
    collectives: Vec<super::collective::Desc>,
    /// The workspace offset of the collectives' staging region (`collective::reserve_stage`).
    stage: Option<usize>,
    id: u64,
    /// Held only for its `Drop` (frees the code). Declared last, so it is dropped last.
    #[allow(dead_code)]
    module: ModuleOwner,
}

// SAFETY: `Kernel` is `Send` already except for the `JITModule` (which is `Send` but not `Sync`).
// The module is only ever touched in `Drop`, through `&mut`. Everything reachable through
// `&Kernel` is immutable: finalized machine code, the constant blob and the metadata. Each call
// writes only to the caller's exclusive output buffers and its `&mut Workspace`, so concurrent
// calls share no mutable state.
unsafe impl Sync for Kernel {}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("inputs", &self.input_names)
            .field("outputs", &self.output_names)
            .field("workspace_bytes", &self.ws_bytes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What the compiler hands to [`Kernel::new`].
pub(super) struct Parts {
    pub check: Option<Box<Checker>>,
    pub donated: Vec<Donated>,
    pub steps: Vec<Step>,
    pub loops: Vec<LoopRun>,
    pub consts: Vec<Line>,
    pub inputs: Vec<TensorType>,
    pub outputs: Vec<TensorType>,
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    pub ws_bytes: usize,
    pub post: Vec<PostCopy>,
    pub stats: KernelStats,
    pub threads: Option<NonZeroUsize>,
    /// Whether a GEMM call may be large enough to use threads.
    pub gemm_threads: bool,
    /// The collective nodes (see `collective`).
    pub collectives: Vec<super::collective::Desc>,
    /// The workspace offset of the collectives' staging region.
    pub stage: Option<usize>,
}

impl Kernel {
    pub(super) fn new(p: Parts, module: ModuleOwner) -> Kernel {
        let sig = p
            .inputs
            .iter()
            .chain(&p.outputs)
            .map(|t| (t.dtype, t.numel()))
            .collect();
        let mut donor = vec![None; p.inputs.len()];
        for d in &p.donated {
            donor[d.input] = Some(d.output);
        }
        let index = |names: &[String]| {
            let mut m = HashMap::with_capacity(names.len());
            for (k, n) in names.iter().enumerate() {
                m.entry(n.clone()).or_insert(k);
            }
            m
        };
        let parallel = p.gemm_threads
            || p.steps.iter().any(|s| matches!(s, Step::Chunks { .. }))
            || p.loops.iter().flat_map(LoopRun::bodies).any(|b| b.parallel);
        Kernel {
            threads: p.threads,
            parallel,
            collectives: p.collectives,
            stage: p.stage,
            in_index: index(&p.input_names),
            out_index: index(&p.output_names),
            donated: p.donated,
            donor,
            sig,
            steps: p.steps,
            loops: p.loops,
            consts: p.consts,
            inputs: p.inputs,
            outputs: p.outputs,
            input_names: p.input_names,
            output_names: p.output_names,
            ws_bytes: p.ws_bytes,
            post: p.post,
            stats: p.stats,
            check: p.check,
            id: NEXT_KERNEL_ID.fetch_add(1, Ordering::Relaxed),
            module,
        }
    }

    /// The types of the inputs, in [`crate::Graph::inputs`] order.
    pub fn input_types(&self) -> &[TensorType] {
        &self.inputs
    }

    /// The types of the outputs, in [`crate::Graph::outputs`] order.
    pub fn output_types(&self) -> &[TensorType] {
        &self.outputs
    }

    /// The input names.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// The output names ([`crate::Graph::value_name`]).
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Bytes of scratch memory one call needs.
    pub fn workspace_bytes(&self) -> usize {
        self.ws_bytes
    }

    /// Number of compiled functions the graph was split into (not counting its loops'
    /// bodies, which are kernels of their own).
    pub fn function_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| !matches!(s, Step::Loop(_)))
            .count()
    }

    /// The number of threads a call may use (`JitConfig::kernel_threads`; `None`: every
    /// thread of the rayon pool the call runs in, one per core by default).
    pub fn threads(&self) -> Option<NonZeroUsize> {
        self.threads
    }

    /// What the compiler did.
    pub fn stats(&self) -> &KernelStats {
        &self.stats
    }

    /// A fresh workspace for this kernel.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            kernel: self.id,
            mem: vec![Line([0; 64]); self.ws_bytes.div_ceil(size_of::<Line>()).max(1)],
            // Inputs, outputs, then the call's communicator context (`collective`).
            ptrs: vec![0; self.inputs.len() + self.outputs.len() + 1],
            scalars: vec![0; self.inputs.len()],
        }
    }

    /// The position of the input named `name` (for [`Kernel::call`]: look it up once).
    ///
    /// # Errors
    /// [`CallError::UnknownInput`] if no input has that name.
    pub fn input_index(&self, name: &str) -> Result<usize, CallError> {
        find(&self.input_names, &self.in_index, name)
            .ok_or_else(|| CallError::UnknownInput { name: name.into() })
    }

    /// The position of the output named `name`.
    ///
    /// # Errors
    /// [`CallError::UnknownOutput`] if no output has that name.
    pub fn output_index(&self, name: &str) -> Result<usize, CallError> {
        find(&self.output_names, &self.out_index, name)
            .ok_or_else(|| CallError::UnknownOutput { name: name.into() })
    }

    /// The donated pairs `(input position, output position)` (see `JitConfig::donate`).
    pub fn donations(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.donated.iter().map(|d| (d.input, d.output))
    }

    /// Runs the kernel on host tensors (every input, donated ones included), allocating the
    /// outputs and a workspace.
    ///
    /// # Errors
    /// [`CallError`] if the number or the types of the inputs are wrong.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CallError> {
        if inputs.len() != self.inputs.len() {
            return Err(CallError::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
            });
        }
        for (k, (t, ty)) in inputs.iter().zip(&self.inputs).enumerate() {
            if t.ty() != *ty {
                return Err(CallError::InputType {
                    index: k,
                    name: self.input_names[k].clone(),
                    expected: ty.clone(),
                    got: t.ty(),
                });
            }
        }
        let mut outs: Vec<Tensor> = self.outputs.iter().map(|t| Tensor::splat(t, 0.0)).collect();
        for d in &self.donated {
            outs[d.output] = inputs[d.input].clone();
        }
        let ins = inputs
            .iter()
            .zip(&self.donor)
            .filter(|(_, d)| d.is_none())
            .map(|(t, _)| Buf::from(t));
        let mut ws = self.workspace();
        self.call_iter(ins, outs.iter_mut().map(BufMut::from), &mut ws)?;
        Ok(outs)
    }

    /// Runs the kernel on caller buffers without allocating: `inputs` in input order,
    /// `outputs` in output order (overwritten), `ws` from [`Kernel::workspace`].
    ///
    /// A donated input (`JitConfig::donate`) is left out of `inputs`: its buffer is the
    /// output's, holding the input when the call starts and the output when it returns.
    ///
    /// # Errors
    /// [`CallError`] (before any code runs) if a count, a dtype or a length is wrong, or if the
    /// workspace belongs to another kernel; in checked mode, [`CallError::NonFinite`] after the
    /// first node that produced a non-finite value from finite operands.
    pub fn call(
        &self,
        inputs: &[Buf<'_>],
        outputs: &mut [BufMut<'_>],
        ws: &mut Workspace,
    ) -> Result<(), CallError> {
        self.call_comm(inputs, outputs, ws, &SingleProcess)
    }

    /// [`Kernel::call`] over `comm`.
    pub(super) fn call_comm(
        &self,
        inputs: &[Buf<'_>],
        outputs: &mut [BufMut<'_>],
        ws: &mut Workspace,
        comm: &dyn Communicator,
    ) -> Result<(), CallError> {
        let expected = self.inputs.len() - self.donated.len();
        if inputs.len() != expected {
            return Err(CallError::InputCount {
                expected,
                got: inputs.len(),
            });
        }
        if outputs.len() != self.outputs.len() {
            return Err(CallError::OutputCount {
                expected: self.outputs.len(),
                got: outputs.len(),
            });
        }
        self.check_workspace(ws)?;
        if self.donated.is_empty() {
            for (k, b) in inputs.iter().enumerate() {
                self.bind_input(ws, k, b)?;
            }
        } else {
            let given = (0..self.inputs.len()).filter(|&k| self.donor[k].is_none());
            for (k, b) in given.zip(inputs) {
                self.bind_input(ws, k, b)?;
            }
        }
        for (k, b) in outputs.iter_mut().enumerate() {
            self.bind_output(ws, k, b)?;
        }
        self.exec(ws, comm)
    }

    /// [`Kernel::call`] taking any iterators of buffers, so a training loop can pass
    /// `params.iter_mut().map(BufMut::from)` without building an array. Allocates nothing.
    ///
    /// # Errors
    /// As [`Kernel::call`]; a buffer of the wrong type is reported before a wrong count.
    pub fn call_iter<'a>(
        &self,
        inputs: impl IntoIterator<Item = Buf<'a>>,
        outputs: impl IntoIterator<Item = BufMut<'a>>,
        ws: &mut Workspace,
    ) -> Result<(), CallError> {
        self.call_iter_comm(inputs, outputs, ws, &SingleProcess)
    }

    /// [`Kernel::call_iter`] over `comm`.
    pub(super) fn call_iter_comm<'a>(
        &self,
        inputs: impl IntoIterator<Item = Buf<'a>>,
        outputs: impl IntoIterator<Item = BufMut<'a>>,
        ws: &mut Workspace,
        comm: &dyn Communicator,
    ) -> Result<(), CallError> {
        self.check_workspace(ws)?;
        let n_in = self.inputs.len();
        let (mut k, mut got) = (0, 0);
        for b in inputs {
            while k < n_in && self.donor[k].is_some() {
                k += 1;
            }
            if k < n_in {
                self.bind_input(ws, k, &b)?;
                k += 1;
            }
            got += 1;
        }
        let expected = n_in - self.donated.len();
        if got != expected {
            return Err(CallError::InputCount { expected, got });
        }
        let mut got = 0;
        for mut b in outputs {
            if got < self.outputs.len() {
                self.bind_output(ws, got, &mut b)?;
            }
            got += 1;
        }
        if got != self.outputs.len() {
            return Err(CallError::OutputCount {
                expected: self.outputs.len(),
                got,
            });
        }
        self.exec(ws, comm)
    }

    /// [`Kernel::call`] with buffers by name, in any order: every input (but donated ones)
    /// and every output once. A donated buffer goes among the outputs, under the input's or
    /// the output's name. Names are looked up in hash maps; nothing is allocated.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, jit};
    /// let b = GraphBuilder::new("step");
    /// let w = b.input("w", DType::F64, &[2]);
    /// let lr = b.input("lr", DType::F64, &[]);
    /// let loss = (w * w).sum();
    /// let g = b.grad(loss, &[w]).unwrap()[0];
    /// let graph = b.finish(&[("loss", loss), ("w_next", w - lr * g)]).unwrap();
    /// let cfg = jit::JitConfig::default().donating(&[("w", "w_next")]);
    /// let k = jit::compile_with(&graph, &cfg).unwrap();
    /// let (mut w, mut loss, mut ws) = (vec![1.0, 2.0], 0.0, k.workspace());
    /// for _ in 0..2 {
    ///     k.call_named(
    ///         &[("lr", 0.25.into())],
    ///         &mut [("w", (&mut w).into()), ("loss", (&mut loss).into())],
    ///         &mut ws,
    ///     )
    ///     .unwrap();
    /// }
    /// assert_eq!((loss, w), (1.25, vec![0.25, 0.5]));
    /// ```
    ///
    /// # Errors
    /// As [`Kernel::call`], and [`CallError::UnknownInput`], [`CallError::UnknownOutput`],
    /// [`CallError::DuplicateBuffer`], [`CallError::MissingInput`],
    /// [`CallError::MissingOutput`], [`CallError::DonatedInput`] naming the buffer.
    pub fn call_named(
        &self,
        inputs: &[(&str, Buf<'_>)],
        outputs: &mut [(&str, BufMut<'_>)],
        ws: &mut Workspace,
    ) -> Result<(), CallError> {
        self.check_workspace(ws)?;
        let n_in = self.inputs.len();
        ws.ptrs.fill(0);
        for (name, b) in inputs {
            let k = self.input_index(name)?;
            if let Some(o) = self.donor[k] {
                return Err(CallError::DonatedInput {
                    input: (*name).into(),
                    output: self.output_names[o].clone(),
                });
            }
            if ws.ptrs[k] != 0 {
                return Err(CallError::DuplicateBuffer {
                    name: (*name).into(),
                });
            }
            self.bind_input(ws, k, b)?;
        }
        for (name, b) in outputs.iter_mut() {
            let o = match find(&self.output_names, &self.out_index, name) {
                Some(o) => o,
                None => find(&self.input_names, &self.in_index, name)
                    .and_then(|k| self.donor[k])
                    .ok_or_else(|| CallError::UnknownOutput {
                        name: (*name).into(),
                    })?,
            };
            if ws.ptrs[n_in + o] != 0 {
                return Err(CallError::DuplicateBuffer {
                    name: (*name).into(),
                });
            }
            self.bind_output(ws, o, b)?;
        }
        // Unbound slots are still 0 (bound ones hold non-null addresses).
        if let Some(k) = (0..n_in).find(|&k| ws.ptrs[k] == 0 && self.donor[k].is_none()) {
            return Err(CallError::MissingInput {
                name: self.input_names[k].clone(),
            });
        }
        if let Some(o) = (0..self.outputs.len()).find(|&o| ws.ptrs[n_in + o] == 0) {
            return Err(CallError::MissingOutput {
                name: self.output_names[o].clone(),
            });
        }
        self.exec(ws, &SingleProcess)
    }

    /// Checks input buffer `b` against input `k` and records its address (a scalar by value
    /// is stored in the workspace).
    #[inline(always)]
    fn bind_input(&self, ws: &mut Workspace, k: usize, b: &Buf<'_>) -> Result<(), CallError> {
        let (dtype, len, at) = b.parts();
        if (dtype, len) != self.sig[k] {
            return Err(self.input_error(k, b));
        }
        ws.ptrs[k] = match at {
            Ok(addr) => addr,
            Err(bits) => {
                ws.scalars[k] = bits;
                std::ptr::from_ref(&ws.scalars[k]) as usize
            }
        };
        Ok(())
    }

    /// The error for a wrong input buffer (out of line: the call path stays small).
    #[cold]
    #[inline(never)]
    fn input_error(&self, k: usize, b: &Buf<'_>) -> CallError {
        CallError::InputBuffer {
            index: k,
            name: self.input_names[k].clone(),
            expected: self.inputs[k].clone(),
            dtype: b.dtype(),
            len: b.len(),
        }
    }

    /// The error for a wrong output buffer.
    #[cold]
    #[inline(never)]
    fn output_error(&self, k: usize, b: &BufMut<'_>) -> CallError {
        CallError::OutputBuffer {
            index: k,
            name: self.output_names[k].clone(),
            expected: self.outputs[k].clone(),
            dtype: b.dtype(),
            len: b.len(),
        }
    }

    /// Checks output buffer `b` against output `k` and records its address.
    #[inline(always)]
    fn bind_output(
        &self,
        ws: &mut Workspace,
        k: usize,
        b: &mut BufMut<'_>,
    ) -> Result<(), CallError> {
        let n_in = self.inputs.len();
        let (dtype, len, addr) = b.parts();
        if (dtype, len) != self.sig[n_in + k] {
            return Err(self.output_error(k, b));
        }
        ws.ptrs[n_in + k] = addr;
        Ok(())
    }

    /// The threads this call uses: the configured count, at most the current pool's size (a
    /// larger count would only cut the GEMM's work into more pieces than there are workers).
    /// Kernels that cannot use threads, and a count of 1, do not touch the pool (asking rayon
    /// for its size would start the global pool).
    fn call_threads(&self) -> usize {
        match self.threads {
            Some(n) if n.get() == 1 => 1,
            _ if !self.parallel => 1,
            Some(n) => n.get().min(rayon::current_num_threads()),
            None => rayon::current_num_threads(),
        }
    }

    fn check_workspace(&self, ws: &Workspace) -> Result<(), CallError> {
        if ws.kernel != self.id
            || ws.bytes() < self.ws_bytes
            || ws.ptrs.len() != self.sig.len() + 1
            || ws.scalars.len() != self.inputs.len()
        {
            return Err(CallError::ForeignWorkspace);
        }
        Ok(())
    }

    /// Runs the code on the buffers bound in `ws.ptrs`: every input but the donated ones and
    /// every output, each checked (`bind_input`, `bind_output`) for the current call, whose
    /// caller holds their borrows until this returns.
    fn exec(&self, ws: &mut Workspace, comm: &dyn Communicator) -> Result<(), CallError> {
        let n_in = self.inputs.len();
        let base = ws.mem.as_mut_ptr().cast::<u8>();
        for d in &self.donated {
            let src = ws.ptrs[n_in + d.output];
            ws.ptrs[d.input] = match d.copy {
                None => src,
                Some(off) => {
                    let bytes = self.sig[d.input].1 * self.sig[d.input].0.size_bytes();
                    // SAFETY: the planner reserved `off..off + bytes` of the workspace for
                    // this copy alone (`ws` holds at least `ws_bytes`, checked), and `src` is
                    // the checked output buffer of the same type, so both ranges are valid
                    // and distinct.
                    unsafe {
                        let dst = base.add(off);
                        std::ptr::copy_nonoverlapping(src as *const u8, dst, bytes);
                        dst as usize
                    }
                }
            };
        }
        let stage = match self.stage {
            // SAFETY: the planner reserved `off..` (the staging region's bytes) of the
            // workspace for the collectives alone, within `ws_bytes` (`ws` holds at least
            // that, checked); `off` is a multiple of 64 from the 64-byte aligned base.
            Some(off) => unsafe { base.add(off) },
            None => std::ptr::null_mut(),
        };
        let ctx = CommCtx::new(comm, &self.collectives, stage);
        let slot = self.sig.len();
        ws.ptrs[slot] = std::ptr::from_ref(&ctx) as usize;
        self.run_steps(ws, self.call_threads())?;
        ws.ptrs[slot] = 0;
        ctx.finish()?;
        // SAFETY: the callers checked every buffer in `ws.ptrs` (a donated input's slot holds
        // its output's buffer or its workspace copy, set above).
        unsafe { self.post_copies(ws.ptrs.as_ptr()) };
        Ok(())
    }

    /// The copies after the code ran: outputs that are inputs or constants.
    ///
    /// # Safety
    /// `ptrs` holds the address of one buffer per input, then per output, each valid for the
    /// input's or output's type, the output buffers writable and not in use elsewhere.
    unsafe fn post_copies(&self, ptrs: *const usize) {
        let n_in = self.inputs.len();
        for p in &self.post {
            let (out, src) = match p {
                // SAFETY: `ptrs` has a slot per input (caller's contract).
                PostCopy::Input { out, input } => (*out, unsafe { *ptrs.add(*input) } as *const u8),
                PostCopy::Const { out, value } => (
                    *out,
                    match value.data() {
                        Data::F32(v) => v.as_ptr().cast::<u8>(),
                        Data::F64(v) => v.as_ptr().cast::<u8>(),
                        Data::Bool(v) => v.as_ptr().cast::<u8>(),
                        Data::I32(v) => v.as_ptr().cast::<u8>(),
                    },
                ),
            };
            let (dtype, numel) = self.sig[n_in + out];
            // SAFETY: the source is an input buffer (or a donated input's workspace copy) or a
            // constant of the output's type, the destination the output buffer (caller's
            // contract); `copy` allows the one overlap possible, an output donated from the
            // very input it returns (the same buffer).
            unsafe {
                std::ptr::copy(
                    src,
                    *ptrs.add(n_in + out) as *mut u8,
                    numel * dtype.size_bytes(),
                );
            }
        }
    }

    /// The one compiled function of a kernel that is nothing else (one serial step, no copies
    /// after it): a loop calls it directly at each step, with [`Kernel::consts_ptr`].
    pub(super) fn single_fn(&self) -> Option<KernelFn> {
        match self.steps.as_slice() {
            [Step::Serial(f)] if self.post.is_empty() => Some(*f),
            _ => None,
        }
    }

    /// The constant blob's base.
    pub(super) fn consts_ptr(&self) -> *const u8 {
        self.consts.as_ptr().cast::<u8>()
    }

    /// Runs the code as a loop body (`jit::loops`): on the buffers whose addresses `ptrs` holds
    /// (inputs, then outputs) and workspace `mem`, on up to `threads` threads, without checks.
    ///
    /// # Safety
    /// `ptrs` holds one address per input, then per output, each of a buffer of that input's or
    /// output's type (aligned for its dtype), the outputs writable, distinct from each other
    /// and from the inputs, and used by nothing else during the call; `mem` points to
    /// [`Kernel::workspace_bytes`] bytes, 64-byte aligned, used by nothing else. The kernel
    /// was compiled without donated buffers and without checked mode.
    pub(super) unsafe fn exec_body(&self, ptrs: *const usize, mem: *mut u8, threads: usize) {
        let args = Args {
            ins: ptrs.cast::<*const u8>(),
            // SAFETY: the table holds the inputs' addresses, then the outputs'.
            outs: unsafe { ptrs.add(self.inputs.len()) }.cast::<*mut u8>(),
            ws: mem,
            consts: self.consts.as_ptr().cast::<u8>(),
        };
        for &step in &self.steps {
            // SAFETY: the caller's contract is `run_step`'s (what `Kernel::call` checks).
            unsafe { self.run_step(step, args, threads) };
        }
        // SAFETY: as above.
        unsafe { self.post_copies(ptrs) };
    }

    /// Runs one step of the kernel.
    ///
    /// # Safety
    /// `args` holds one buffer per input and output, each of the planned dtype and element
    /// count (a donated input is its output's buffer or its workspace copy), the outputs
    /// exclusively this call's, and a workspace of at least `ws_bytes` bytes, 64-byte
    /// aligned, exclusively this call's.
    unsafe fn run_step(&self, step: Step, args: Args, threads: usize) {
        // Every arm: the compiled code reads and writes only within these buffers, the
        // workspace and the constant blob (offsets planned from the same types), writes only
        // 0/1 into bool memory, writes a donated output over its input only after (or at the
        // element of) every read of it (`donate`), and `self` keeps the code mapped for the
        // duration of the call. Chunk ranges are non-empty and within `count`.
        match step {
            // SAFETY: as above.
            Step::Serial(f) => unsafe { f(args.ins, args.outs, args.ws, args.consts) },
            // SAFETY: as above.
            Step::Chunks { f, count } => unsafe { run_chunks(args, f, count, threads) },
            // SAFETY: as above; a loop reads and writes the homes its plan gave it and its
            // scratch block of the workspace.
            Step::Loop(l) => unsafe { self.loops[l as usize].run(args, threads) },
        }
    }

    /// Runs the steps in order on up to `threads` threads (the GEMM calls on this thread
    /// take the count from here), checking each node in checked mode.
    fn run_steps(&self, ws: &mut Workspace, threads: usize) -> Result<(), CallError> {
        let n_in = self.inputs.len();
        super::gemm::set_threads(threads);
        for (i, &step) in self.steps.iter().enumerate() {
            // Derived for each step: checked mode reads the workspace in between.
            let args = Args {
                ins: ws.ptrs.as_ptr().cast::<*const u8>(),
                outs: ws.ptrs[n_in..].as_ptr().cast::<*mut u8>(),
                ws: ws.mem.as_mut_ptr().cast::<u8>(),
                consts: self.consts.as_ptr().cast::<u8>(),
            };
            // SAFETY: the callers checked that the address table holds one buffer per input
            // and output, each of the planned dtype and element count (a donated input is its
            // output's buffer or its workspace copy), and that `ws` was made by this kernel
            // (so it has `ws_bytes` of 64-byte aligned memory and one address slot per
            // buffer). The output buffers are exclusively borrowed for this call.
            unsafe { self.run_step(step, args, threads) };
            if let Some(c) = &self.check
                && let Some(r) = c.inspect(i, &ws.ptrs, (&ws.mem, &self.consts))
            {
                return Err(CallError::NonFinite(Box::new(r)));
            }
        }
        Ok(())
    }
}

/// The position of `name` in `names` (the first, if repeated): a scan of a few names is faster
/// than hashing, the map keeps many names linear.
fn find(names: &[String], map: &HashMap<String, usize>, name: &str) -> Option<usize> {
    if names.len() <= 16 {
        names.iter().position(|n| n == name)
    } else {
        map.get(name).copied()
    }
}

/// Runs chunks `0..count` of `f` on up to `threads` threads: all on the calling thread for
/// one thread, else on the kernel's team (`team::run`): the calling thread and up to
/// `threads - 1` helpers claim chunks one at a time from a shared counter, so a helper that
/// joins late or shares its core with another process just runs fewer chunks. Which thread
/// runs a chunk does not change the result (each chunk writes its own part of the outputs,
/// or its own partial results, folded in chunk order afterwards).
///
/// # Safety
/// As [`Args::chunks`].
unsafe fn run_chunks(args: Args, f: ChunkFn, count: usize, threads: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.min(count);
    if threads <= 1 {
        // SAFETY: forwarded from the caller; 0 < count.
        unsafe { args.chunks(f, 0, count) };
        return;
    }
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= count {
                break;
            }
            // SAFETY: forwarded from the caller; `b < count`, and every chunk is claimed by
            // exactly one thread, so concurrent chunks are distinct (disjoint memory, see
            // `Args`).
            unsafe { args.chunks(f, b, b + 1) };
        }
    };
    super::team::run(threads, &work);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn kernels_workspaces_and_errors_cross_threads() {
        send_sync::<Kernel>();
        send_sync::<Workspace>();
        send_sync::<super::super::JitError>();
        send_sync::<CallError>();
    }

    #[test]
    fn buffers_report_dtype_and_length() {
        let t = Tensor::new(vec![2], Data::Bool(vec![true, false]));
        let b = Buf::from(&t);
        assert_eq!((b.dtype(), b.len()), (DType::Bool, 2));
        let mut v = [0f32; 3];
        let m = BufMut::F32(&mut v);
        assert_eq!((m.dtype(), m.len(), m.is_empty()), (DType::F32, 3, false));
    }
}
