//! The compiled kernel: owns the JIT code, checks every buffer, and calls the code.
//!
//! This is the one file with `unsafe` code: calling the compiled functions and freeing their
//! memory. The safety argument is local: [`Kernel::call`] checks the count, dtype and length of
//! every buffer and the workspace before the first call into compiled code, the compiled code
//! only touches the memory the plan gave it (the caller's buffers, the workspace and the
//! constant blob, all of the checked sizes), and the JIT memory is freed only in `Drop`.
//!
//! Parallel groups: a chunk function runs a range of chunks; [`Kernel::call`] runs the chunks
//! in a `rayon::scope` whose tasks each claim the next chunk from a shared counter, and waits
//! for all of them before the next step. Chunks write disjoint
//! memory (the plan guarantees it), so the ranges may run concurrently; chunk boundaries are
//! fixed at compile time, so the result does not depend on the number of threads.
//!
//! Deliberately absent: any code generation (see `lower`), any allocation in [`Kernel::call`]
//! for kernels without parallel groups, except inside GEMM calls (the crate behind large
//! matmuls allocates its packing memory per call; see `gemm`).
#![allow(unsafe_code)]

use super::plan::{Loc, PostCopy};
use super::{CallError, Line};
use crate::finite::{self, NonFinite};
use crate::ir::{DType, Graph, NodeId, TensorType};
use crate::tensor::{Data, Tensor};
use cranelift_jit::JITModule;
use std::fmt;
use std::mem::ManuallyDrop;
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
}

/// The raw arguments of one kernel call, shared by the threads running its chunks.
#[derive(Clone, Copy)]
struct Args {
    ins: *const *const u8,
    outs: *const *mut u8,
    ws: *mut u8,
    consts: *const u8,
}

// SAFETY: `Args` is only shared while `Kernel::call` waits for every thread using it (inside a
// rayon scope). The pointed-to buffers outlive the call, the inputs and constants are only
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

/// A read-only element buffer passed to [`Kernel::call`].
#[derive(Clone, Copy, Debug)]
pub enum Buf<'a> {
    /// `f32` elements.
    F32(&'a [f32]),
    /// `f64` elements.
    F64(&'a [f64]),
    /// `bool` elements (one byte each).
    Bool(&'a [bool]),
}

/// A writable element buffer passed to [`Kernel::call`].
#[derive(Debug)]
pub enum BufMut<'a> {
    /// `f32` elements.
    F32(&'a mut [f32]),
    /// `f64` elements.
    F64(&'a mut [f64]),
    /// `bool` elements (one byte each; the kernel only ever writes `false`/`true`).
    Bool(&'a mut [bool]),
}

impl Buf<'_> {
    /// The element dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Buf::F32(_) => DType::F32,
            Buf::F64(_) => DType::F64,
            Buf::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
            Buf::Bool(v) => v.len(),
        }
    }

    /// True if the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64 (bool as 0/1).
    fn get(&self, i: usize) -> f64 {
        match self {
            Buf::F32(v) => f64::from(v[i]),
            Buf::F64(v) => v[i],
            Buf::Bool(v) => f64::from(u8::from(v[i])),
        }
    }

    fn addr(&self) -> usize {
        match self {
            Buf::F32(v) => v.as_ptr() as usize,
            Buf::F64(v) => v.as_ptr() as usize,
            Buf::Bool(v) => v.as_ptr() as usize,
        }
    }
}

impl BufMut<'_> {
    /// The element dtype.
    pub fn dtype(&self) -> DType {
        match self {
            BufMut::F32(_) => DType::F32,
            BufMut::F64(_) => DType::F64,
            BufMut::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            BufMut::F32(v) => v.len(),
            BufMut::F64(v) => v.len(),
            BufMut::Bool(v) => v.len(),
        }
    }

    /// True if the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64 (bool as 0/1).
    fn get(&self, i: usize) -> f64 {
        match self {
            BufMut::F32(v) => f64::from(v[i]),
            BufMut::F64(v) => v[i],
            BufMut::Bool(v) => f64::from(u8::from(v[i])),
        }
    }

    fn addr(&mut self) -> usize {
        match self {
            BufMut::F32(v) => v.as_mut_ptr() as usize,
            BufMut::F64(v) => v.as_mut_ptr() as usize,
            BufMut::Bool(v) => v.as_mut_ptr() as usize,
        }
    }

    /// Copies `src` (of the same dtype and length, checked by the caller) into this buffer.
    fn copy_from(&mut self, src: Buf<'_>) {
        match (self, src) {
            (BufMut::F32(d), Buf::F32(s)) => d.copy_from_slice(s),
            (BufMut::F64(d), Buf::F64(s)) => d.copy_from_slice(s),
            (BufMut::Bool(d), Buf::Bool(s)) => d.copy_from_slice(s),
            _ => unreachable!("dtypes checked before the copy"),
        }
    }
}

impl<'a> From<&'a [f32]> for Buf<'a> {
    fn from(v: &'a [f32]) -> Buf<'a> {
        Buf::F32(v)
    }
}

impl<'a> From<&'a [f64]> for Buf<'a> {
    fn from(v: &'a [f64]) -> Buf<'a> {
        Buf::F64(v)
    }
}

impl<'a> From<&'a [bool]> for Buf<'a> {
    fn from(v: &'a [bool]) -> Buf<'a> {
        Buf::Bool(v)
    }
}

impl<'a> From<&'a mut [f32]> for BufMut<'a> {
    fn from(v: &'a mut [f32]) -> BufMut<'a> {
        BufMut::F32(v)
    }
}

impl<'a> From<&'a mut [f64]> for BufMut<'a> {
    fn from(v: &'a mut [f64]) -> BufMut<'a> {
        BufMut::F64(v)
    }
}

impl<'a> From<&'a mut [bool]> for BufMut<'a> {
    fn from(v: &'a mut [bool]) -> BufMut<'a> {
        BufMut::Bool(v)
    }
}

impl<'a> From<&'a Tensor> for Buf<'a> {
    fn from(t: &'a Tensor) -> Buf<'a> {
        match t.data() {
            Data::F32(v) => Buf::F32(v),
            Data::F64(v) => Buf::F64(v),
            Data::Bool(v) => Buf::Bool(v),
        }
    }
}

impl<'a> From<&'a mut Tensor> for BufMut<'a> {
    fn from(t: &'a mut Tensor) -> BufMut<'a> {
        match t.data_mut() {
            Data::F32(v) => BufMut::F32(v),
            Data::F64(v) => BufMut::F64(v),
            Data::Bool(v) => BufMut::Bool(v),
        }
    }
}

/// Caller-owned scratch memory for one [`Kernel`]: the values of the graph that are neither
/// inputs nor outputs, plus the buffer-address tables. 64-byte aligned. Reuse it across calls
/// (so [`Kernel::call`] allocates nothing itself; only the GEMM behind large matmuls
/// allocates packing memory); use one per thread.
pub struct Workspace {
    kernel: u64,
    mem: Vec<Line>,
    /// Input addresses, then output addresses (written by each call).
    ptrs: Vec<usize>,
}

impl fmt::Debug for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workspace")
            .field("kernel", &self.kernel)
            .field("bytes", &(self.mem.len() * size_of::<Line>()))
            .finish()
    }
}

impl Workspace {
    /// Size of the scratch memory in bytes.
    pub fn bytes(&self) -> usize {
        self.mem.len() * size_of::<Line>()
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
    /// Wall-clock compile time.
    pub compile_time: std::time::Duration,
}

impl fmt::Display for KernelStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes_compiled={} nodes_dead={} nodes_fused={} views={} groups={} \
             groups_parallel={} buffers_reused={} buffers_in_place={} functions={} \
             matmuls_gemm={} compile_time={:?}",
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
    consts: Vec<Line>,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
    /// `(dtype, element count)` of each input, then of each output (what `call` checks).
    sig: Vec<(DType, usize)>,
    input_names: Vec<String>,
    output_names: Vec<String>,
    ws_bytes: usize,
    post: Vec<PostCopy>,
    stats: KernelStats,
    /// Checked mode only.
    check: Option<Box<Checker>>,
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

/// Checked mode (`JitConfig::check_finite`): what the kernel needs to inspect each node after
/// its function ran. The plan gave every value its own memory and every node its own function.
pub(super) struct Checker {
    /// The compiled graph.
    pub graph: Graph,
    /// The home of every value.
    pub locs: Vec<Loc>,
    /// The node computed by each function, in call order.
    pub steps: Vec<NodeId>,
    /// The nodes some output depends on.
    pub live: Vec<bool>,
}

impl Checker {
    /// Element `i` of the value of `id`, read from its home (safe: every home is a checked
    /// buffer, the workspace or the constant blob, and the planned offsets are in range).
    fn value(
        &self,
        id: NodeId,
        i: usize,
        io: (&[Buf<'_>], &[BufMut<'_>]),
        mem: (&[Line], &[Line]),
    ) -> f64 {
        let dtype = self.graph.ty(id).dtype;
        let read = |lines: &[Line], off: usize| -> f64 {
            let size = dtype.size_bytes();
            let at = off + i * size;
            // Elements are naturally aligned and lines are 64 bytes, so no element straddles two.
            let line = &lines[at / 64].0;
            let b = &line[at % 64..at % 64 + size];
            match dtype {
                DType::F32 => f64::from(f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                DType::F64 => f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                DType::Bool => f64::from(b[0]),
            }
        };
        match self.locs[id.index()] {
            Loc::Input(k) => io.0[k].get(i),
            Loc::Output(k) => io.1[k].get(i),
            Loc::Ws(off) => read(mem.0, off),
            Loc::Const(off) => read(mem.1, off),
            Loc::Splat(bits) => match dtype {
                DType::F32 => f64::from(f32::from_bits(bits as u32)),
                DType::F64 => f64::from_bits(bits),
                DType::Bool => bits as f64,
            },
            Loc::Unused => unreachable!("plan invariant: operands of a step have a home"),
        }
    }

    /// Looks for a culprit element in the node computed by function `f`.
    fn inspect(
        &self,
        f: usize,
        io: (&[Buf<'_>], &[BufMut<'_>]),
        mem: (&[Line], &[Line]),
    ) -> Option<NonFinite> {
        let id = *self.steps.get(f)?;
        if !self.live[id.index()] {
            return None;
        }
        let inputs = &self.graph.node(id).inputs;
        finite::find_culprit(&self.graph, id, &|e| self.value(id, e, io, mem), &|k, e| {
            self.value(inputs[k], e, io, mem)
        })
    }
}

/// What the compiler hands to [`Kernel::new`].
pub(super) struct Parts {
    pub check: Option<Box<Checker>>,
    pub steps: Vec<Step>,
    pub consts: Vec<Line>,
    pub inputs: Vec<TensorType>,
    pub outputs: Vec<TensorType>,
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    pub ws_bytes: usize,
    pub post: Vec<PostCopy>,
    pub stats: KernelStats,
}

impl Kernel {
    pub(super) fn new(p: Parts, module: ModuleOwner) -> Kernel {
        let sig = p
            .inputs
            .iter()
            .chain(&p.outputs)
            .map(|t| (t.dtype, t.numel()))
            .collect();
        Kernel {
            sig,
            steps: p.steps,
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

    /// Number of compiled functions the graph was split into.
    pub fn function_count(&self) -> usize {
        self.steps.len()
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
            ptrs: vec![0; self.inputs.len() + self.outputs.len()],
        }
    }

    /// Runs the kernel on host tensors, allocating the outputs and a workspace.
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
        let ins: Vec<Buf<'_>> = inputs.iter().map(Buf::from).collect();
        let mut bufs: Vec<BufMut<'_>> = outs.iter_mut().map(BufMut::from).collect();
        let mut ws = self.workspace();
        self.call(&ins, &mut bufs, &mut ws)?;
        drop(bufs);
        Ok(outs)
    }

    /// Runs the kernel on caller buffers without allocating: `inputs` in input order,
    /// `outputs` in output order (overwritten), `ws` from [`Kernel::workspace`].
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
        self.check(inputs, outputs, ws)?;
        let n_in = inputs.len();
        for (slot, b) in ws.ptrs.iter_mut().zip(inputs) {
            *slot = b.addr();
        }
        for (slot, b) in ws.ptrs[n_in..].iter_mut().zip(outputs.iter_mut()) {
            *slot = b.addr();
        }
        for (i, step) in self.steps.iter().enumerate() {
            // Derived for each step: checked mode reads the workspace in between.
            let args = Args {
                ins: ws.ptrs.as_ptr().cast::<*const u8>(),
                outs: ws.ptrs[n_in..].as_ptr().cast::<*mut u8>(),
                ws: ws.mem.as_mut_ptr().cast::<u8>(),
                consts: self.consts.as_ptr().cast::<u8>(),
            };
            // Both arms: `check` verified that there is one buffer per input and
            // output, each of the planned dtype and element count, and that `ws` was made by
            // this kernel (so it has `ws_bytes` of 64-byte aligned memory and one address slot
            // per buffer). The address tables hold exactly those buffers' addresses; the
            // output buffers are exclusively borrowed for this call; the compiled code reads
            // and writes only within these buffers, the workspace and the constant blob
            // (offsets planned from the same types), writes only 0/1 into bool memory, and
            // `self` keeps the code mapped for the duration of the call. Chunk ranges are
            // non-empty and within `count`.
            match *step {
                // SAFETY: as above.
                Step::Serial(f) => unsafe { f(args.ins, args.outs, args.ws, args.consts) },
                // SAFETY: as above.
                Step::Chunks { f, count } => unsafe { run_chunks(args, f, count) },
            }
            if let Some(c) = &self.check
                && let Some(r) = c.inspect(i, (inputs, outputs), (&ws.mem, &self.consts))
            {
                return Err(CallError::NonFinite(Box::new(r)));
            }
        }
        for p in &self.post {
            match p {
                PostCopy::Input { out, input } => outputs[*out].copy_from(inputs[*input]),
                PostCopy::Const { out, value } => outputs[*out].copy_from(Buf::from(&**value)),
            }
        }
        Ok(())
    }

    fn check(
        &self,
        inputs: &[Buf<'_>],
        outputs: &[BufMut<'_>],
        ws: &Workspace,
    ) -> Result<(), CallError> {
        if inputs.len() != self.inputs.len() {
            return Err(CallError::InputCount {
                expected: self.inputs.len(),
                got: inputs.len(),
            });
        }
        if outputs.len() != self.outputs.len() {
            return Err(CallError::OutputCount {
                expected: self.outputs.len(),
                got: outputs.len(),
            });
        }
        let n_in = self.inputs.len();
        for (k, (b, &want)) in inputs.iter().zip(&self.sig).enumerate() {
            if (b.dtype(), b.len()) != want {
                return Err(CallError::InputBuffer {
                    index: k,
                    name: self.input_names[k].clone(),
                    expected: self.inputs[k].clone(),
                    dtype: b.dtype(),
                    len: b.len(),
                });
            }
        }
        for (k, (b, &want)) in outputs.iter().zip(&self.sig[n_in..]).enumerate() {
            if (b.dtype(), b.len()) != want {
                return Err(CallError::OutputBuffer {
                    index: k,
                    name: self.output_names[k].clone(),
                    expected: self.outputs[k].clone(),
                    dtype: b.dtype(),
                    len: b.len(),
                });
            }
        }
        if ws.kernel != self.id || ws.bytes() < self.ws_bytes || ws.ptrs.len() != self.sig.len() {
            return Err(CallError::ForeignWorkspace);
        }
        Ok(())
    }
}

/// Runs chunks `0..count` of `f` in a `rayon::scope` (a caller outside the pool waits while
/// the pool runs it): the scope's thread and up to `threads - 1` spawned tasks claim chunks
/// one at a time from a shared counter, so a worker that wakes late or shares its core with
/// another process just runs fewer chunks. Which thread
/// runs a chunk does not change the result (each chunk writes its own part of the outputs,
/// or its own partial results, folded in chunk order afterwards).
///
/// # Safety
/// As [`Args::chunks`].
unsafe fn run_chunks(args: Args, f: ChunkFn, count: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = rayon::current_num_threads().min(count);
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
    rayon::scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| work());
        }
        work();
    });
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
