//! Lowering: planned groups → the bodies of Cranelift functions.
//!
//! A fused group (see [`super::plan`]) becomes one loop nest over its collapsed dimensions.
//! The loop body walks the members in id order: operands come from registers (members
//! computed earlier in the same iteration) or are loaded from memory (leaves, at their
//! broadcast/view strides); elementwise members are emitted by their `ops::rules(op).lower`
//! rule against the [`ScalarEmit`] implementation below; a stored member is stored right
//! after it is computed; reductions fold the value into an accumulator.
//!
//! - Vectors: when the plan found one float dtype in the group, the innermost loop runs on
//!   `F32X4` / `F64X2` lanes, unrolled `U` times (4, 2 or 1 by body size), followed by single
//!   vectors and one partial vector for the tail (lane-wise loads and stores; the padding
//!   lanes repeat lane 0 and never reach memory). Bools are lane masks in registers and bytes
//!   in memory. Other groups (mixed f32/f64, or too short) run the same body on scalars.
//!   Transcendentals in vector bodies use [`super::vmath`] (libm on every lane for lanes out
//!   of its fast range, for `pow`, and with `exact_math`); scalar bodies call libm.
//! - Reductions: when the innermost loop dimension is reduced, each unroll slot keeps a
//!   vector accumulator; they are combined in a fixed tree order (slots pairwise, then lanes
//!   pairwise) when the innermost kept dimension advances, and added into memory if an outer
//!   dimension is reduced too. When the innermost dimension is kept, the output is updated in
//!   memory in the operand's row-major order, exactly as the interpreter does. With
//!   `exact_math`, accumulators are scalar and take the lanes in element order, so every
//!   reduction matches the interpreter bitwise.
//! - Blocks: a parallel group's function takes a block range; each block writes its rows of
//!   the outputs, or its own partial results for reductions across blocks, which a later
//!   `Combine` item folds in block order.
//! - `matmul`: a nest over the batch dimensions whose body calls the GEMM wrapper
//!   ([`super::gemm`]) with each operand's view strides (a transposed operand is a stride
//!   swap, never a copy); `exact_math`, small products, splat operands and row/column-broadcast
//!   views use a scalar `i, j` nest accumulating over `p` in the interpreter's order instead.
//! - A `concat` that the plan keeps in memory and realized views are loop nests of their own
//!   (scalar copies). A `concat` read in place costs nothing here: the plan already cut its
//!   readers' loops into boxes whose operands are plain views, and each box is a fused nest
//!   like any other (a box's innermost dimension need not be contiguous in the value it
//!   stores, so such stores go lane by lane).
//!
//! Function ABI: `extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8, ws: *mut u8,
//! consts: *const u8)` (serial functions) plus `lo: i64, hi: i64` (block functions): arrays
//! of the caller's buffer addresses in input/output order, the workspace base (64-byte
//! aligned) and the constant blob base (64-byte aligned).
//!
//! No SSA value lives longer than one group (buffer addresses are reloaded per group), which
//! keeps register allocation linear in the function size (the compile-time trap in the
//! Cranelift notes).

mod indexing;

use super::plan::{Fused, Group, Item, Loc, Plan, View};
use super::{batch, vmath};
use crate::ir::{Attrs, DType, Graph, NodeId, Op, strides};
use crate::ops::{self, Cmp, FBinary, FUnary, MathFn, SVal, ScalarEmit};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    AbiParam, ConstantData, Endianness, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder,
    MemFlagsData, Signature, StackSlot, StackSlotData, StackSlotKind, Type, UserExternalName,
    Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;

/// The module-level function index of each math wrapper (declared as imports).
pub(super) type MathIds = HashMap<(MathFn, DType), u32>;

/// The module-level function index of the GEMM wrapper of each float dtype.
pub(super) type GemmIds = HashMap<DType, u32>;

/// The signature of a GEMM wrapper (see [`super::gemm`]): pointer-sized integers only.
pub(super) fn gemm_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(ptr), super::gemm::ARITY));
    sig
}

/// Code-generation options.
#[derive(Clone, Copy, Debug)]
pub(super) struct Opts {
    /// Scalar libm for every transcendental and sequential reductions (bitwise agreement).
    pub exact: bool,
    /// The host has fused multiply-add.
    pub fma: bool,
    /// Long vector loops stage their `exp`/`expm1`/`tanh` calls through the batched helpers
    /// ([`super::batch`]; requires `fma`).
    pub batch: bool,
}

/// The signature of a batched helper (see [`super::batch`]): a pointer and a count.
pub(super) fn batch_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend([AbiParam::new(ptr), AbiParam::new(types::I64)]);
    sig
}

/// The signature of a serial function (see the module docs).
pub(super) fn kernel_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.extend([AbiParam::new(ptr); 4]);
    sig
}

/// The signature of a block function (see the module docs).
pub(super) fn block_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = kernel_signature(ptr, call_conv);
    sig.params.extend([AbiParam::new(types::I64); 2]);
    sig
}

/// The signature of the math wrapper `f` in `dtype`.
pub(super) fn math_signature(f: MathFn, dtype: DType, call_conv: CallConv) -> Signature {
    let ty = val_ty(dtype);
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(ty), f.arity()));
    sig.returns.push(AbiParam::new(ty));
    sig
}

/// What one function computes.
pub(super) enum Body<'a> {
    /// Serial items in order.
    Serial(&'a [Item]),
    /// Blocks `lo..hi` (the last two parameters) of this group.
    Blocks(u32),
}

/// Builds the body of `func` (whose signature matches `body`).
#[allow(clippy::too_many_arguments)]
pub(super) fn build_function(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    g: &Graph,
    plan: &Plan,
    body: Body<'_>,
    math: &MathIds,
    batch: &MathIds,
    gemm: &GemmIds,
    target: TargetFrontendConfig,
    opts: Opts,
) {
    let ptr = target.pointer_type();
    let call_conv = func.signature.call_conv;
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let mut lw = Lowerer {
        b,
        g,
        plan,
        inputs: p[0],
        outputs: p[1],
        ws: p[2],
        consts: p[3],
        ptr,
        call_conv,
        math,
        math_refs: HashMap::new(),
        batch,
        batch_refs: HashMap::new(),
        gemm,
        gemm_refs: HashMap::new(),
        vals: Vec::new(),
        opts,
        lanes: 1,
        vdt: DType::F64,
        bases: Vec::new(),
        blk: None,
        slow: false,
        bad: None,
        stage: Stage::Off,
        scratch: Vec::new(),
    };
    match body {
        Body::Serial(items) => {
            for &it in items {
                lw.bases.clear();
                match it {
                    Item::Run(gi) => lw.group(gi, None),
                    Item::Combine(gi) => lw.combine(gi),
                }
            }
        }
        Body::Blocks(gi) => lw.group(gi, Some((p[4], p[5]))),
    }
    lw.b.ins().return_(&[]);
    lw.b.finalize(target);
}

/// Scalar loads and stores never trap (the kernel checked every buffer) and are aligned to
/// their element size (Rust slices, the 64-byte aligned workspace and constant blob, and
/// planned offsets that are multiples of the element size).
fn mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Vector loads and stores never trap but may be unaligned.
fn vmem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// The SSA type of an element of `dtype` (bool is a byte holding 0 or 1).
fn val_ty(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::Bool => types::I8,
        DType::I32 => types::I32,
    }
}

/// The integer type of the same size, for bit-exact copies.
fn bits_ty(dtype: DType) -> Type {
    match dtype {
        DType::F32 | DType::I32 => types::I32,
        DType::F64 => types::I64,
        DType::Bool => types::I8,
    }
}

/// The 128-bit vector of float `dt`.
fn vec_ty(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32X4,
        _ => types::F64X2,
    }
}

/// The lane-mask vector of float `dt` (also the integer view of its vectors).
fn mask_ty(dt: DType) -> Type {
    match dt {
        DType::F32 => types::I32X4,
        _ => types::I64X2,
    }
}

/// Where an operand's elements come from.
#[derive(Clone, Copy)]
enum Src {
    /// Memory at `base + offset` bytes.
    Mem(Value, i64),
    /// Every element has these bits.
    Splat(u64),
}

impl Src {
    fn offset_by(self, bytes: i64) -> Src {
        match self {
            Src::Mem(b, o) => Src::Mem(b, o + bytes),
            s => s,
        }
    }
}

/// A loop bound.
#[derive(Clone, Copy)]
enum Bound {
    C(i64),
    V(Value),
}

/// An open loop (see [`Lowerer::loop_begin`]).
struct Loop {
    var: Variable,
    head: cranelift_codegen::ir::Block,
    i: Value,
}

/// Byte strides of a row-major (contiguous) tensor of `shape` with `size`-byte elements.
fn contiguous(shape: &[usize], size: usize) -> Vec<i64> {
    strides(shape).iter().map(|&s| (s * size) as i64).collect()
}

/// Merges contiguous dimensions of a copy (see `plan::collapse`).
fn collapse(dims: &[usize], acc: &mut [Vec<i64>]) -> Vec<usize> {
    let mut refs: Vec<&mut Vec<i64>> = acc.iter_mut().collect();
    super::plan::collapse(dims, &mut refs)
}

type NestBody<'a, 'f, 'g> = &'a mut dyn FnMut(&mut Lowerer<'f, 'g>, &[Value]);

struct Lowerer<'f, 'g> {
    b: FunctionBuilder<'f>,
    g: &'g Graph,
    plan: &'g Plan,
    inputs: Value,
    outputs: Value,
    ws: Value,
    consts: Value,
    ptr: Type,
    call_conv: CallConv,
    math: &'g MathIds,
    math_refs: HashMap<(MathFn, DType), FuncRef>,
    batch: &'g MathIds,
    batch_refs: HashMap<(MathFn, DType), FuncRef>,
    gemm: &'g GemmIds,
    gemm_refs: HashMap<DType, FuncRef>,
    /// The values behind the [`SVal`]s of the group being lowered.
    vals: Vec<(Value, DType)>,
    opts: Opts,
    /// Lanes of the values being emitted (1: scalar code).
    lanes: usize,
    /// The float dtype of vector code.
    vdt: DType,
    /// Buffer addresses loaded in the current group.
    bases: Vec<(Loc, Value)>,
    /// The block being emitted (block functions only).
    blk: Option<Value>,
    /// Emitting the slow pass: vector transcendentals call libm on every lane.
    slow: bool,
    /// The fast pass's mask of lanes its vector transcendentals could not compute, and
    /// whether any transcendental updated it.
    bad: Option<(Variable, bool)>,
    /// The pass of a staged chunk being emitted (see [`Lowerer::staged`]).
    stage: Stage,
    /// The scratch areas of staged chunks (`CHUNK` elements of 8 bytes each, at most
    /// [`MAX_SCRATCH`], shared by every staged group of the function).
    scratch: Vec<StackSlot>,
}

/// Bodies per iteration of a staged pass: 8 for groups of at most 32 members, 4 up to 48,
/// else 2 (the copies accumulate into the same reduction slot, in element order, so sums are
/// those of the loop without copies). Measured on the 1M-element chain (one thread, best of
/// 1000 calls): 2.34 ms with one body, 2.09 with two, 2.01 with four; after the batched
/// sigmoid, 1.93 with two, 1.81 with four, 1.76 with eight, no better with sixteen.
fn staged_copies(f: &Fused) -> usize {
    match f.members.len() {
        0..=32 => 8,
        33..=48 => 4,
        _ => 2,
    }
}

/// The most batched calls per staged chunk: their scratch areas take `MAX_SCRATCH · 8 KiB` of
/// the stack (128 KiB, well within any thread's stack); further calls stay in the loop.
const MAX_SCRATCH: usize = 16;

/// The most levels of batched calls in a staged chunk (a call whose argument depends on a
/// level-`k` result is at level `k + 1`): each level costs one more pass over the chunk, and
/// deeper calls stay in the loop.
const MAX_LEVELS: usize = 4;

/// Which pass of a staged chunk is being emitted (see [`Lowerer::staged`]).
enum Stage {
    /// An ordinary loop.
    Off,
    /// An argument pass: batched calls of the pass's level store their arguments, those of
    /// lower levels load their results; no stores, no reductions.
    Args(StageState),
    /// The last pass: batched calls load their results.
    Results(StageState),
}

/// A batched call of a staged chunk.
#[derive(Clone, Copy)]
struct Batched {
    f: MathFn,
    dt: DType,
    /// Its scratch area.
    area: usize,
    /// Its level: its argument is computed in argument pass `level`.
    level: usize,
}

/// The state of a staged chunk's passes.
#[derive(Default)]
struct StageState {
    /// The first element of the chunk (innermost index).
    start: Option<Value>,
    /// This iteration's byte offset into each scratch area.
    offset: Option<Value>,
    /// Which pass this is (argument passes count from 0; unused by the last pass).
    pass: usize,
    /// Calls made so far in this iteration of the body (the call's ordinal).
    calls: usize,
    /// Per call ordinal (decided in pass 0, the same in every pass): how it is batched, or
    /// `None` if it stays in the loop.
    batched: Vec<Option<Batched>>,
    /// The first pass whose values the member being emitted's operands are real in
    /// ([`NOT_STAGED`]: only the last pass's).
    input_ready: usize,
    /// The same for the member's result, raised by its calls.
    ready: usize,
    /// The member being emitted has made a call.
    called: bool,
    /// Argument stores not yet emitted: (area, address, value). The main loop of an
    /// argument pass emits them after every [`STORE_GROUP`] bodies, area by area, so the
    /// stores of one area are adjacent (they fill whole cache lines back to back; stores
    /// interleaved over several areas commit about one per cycle, which bounded the pass).
    pending: Vec<(usize, Value, Value)>,
    /// Keep stores pending after the body (the main loop flushes them).
    defer: bool,
}

/// Bodies whose argument stores are emitted together (4 vectors: one 64-byte line per area
/// for `f32`).
const STORE_GROUP: usize = 4;

/// `StageState::ready` of values that depend on a call left in the loop.
const NOT_STAGED: usize = usize::MAX;

/// A reduction's code-generation state.
struct RedCx {
    node: NodeId,
    op: Op,
    dt: DType,
    /// The output (or the partial results).
    target: Src,
    partial: bool,
    /// Output element strides in bytes over the loop dimensions.
    st: Vec<i64>,
    /// Register accumulation: the innermost kept dimension (`None`: every dimension is
    /// reduced). `None` for memory accumulation.
    register: Option<Option<usize>>,
    /// Register accumulators are also added into memory (an outer dimension is reduced).
    across: bool,
    vars: Vec<Variable>,
    /// Operand elements per output element.
    count: usize,
    numel_out: usize,
}

/// A fused group's code-generation state.
struct Cx<'p> {
    f: &'p Fused,
    /// Lanes (1: scalar).
    w: usize,
    /// Unroll factor.
    u: usize,
    leaf_src: Vec<Src>,
    leaf_of: HashMap<NodeId, usize>,
    store_src: Vec<Src>,
    store_of: HashMap<NodeId, usize>,
    red: Vec<RedCx>,
    red_of: HashMap<NodeId, usize>,
    /// Long innermost loops run in staged chunks (see [`Lowerer::staged`]).
    staged: bool,
}

/// Where in the innermost loop a body runs: element index `idx + extra` (`idx` absent: 0).
#[derive(Clone, Copy)]
struct Pos {
    idx: Option<Value>,
    extra: i64,
}

/// Byte offsets contributed by the outer loop indices, per access.
struct Outer {
    leaves: Vec<Option<Value>>,
    stores: Vec<Option<Value>>,
    reds: Vec<Option<Value>>,
}

impl<'f, 'g> Lowerer<'f, 'g> {
    // ---- memory ----------------------------------------------------------------------------

    /// The base address of a planned home (loaded once per group for caller buffers).
    fn loc_src(&mut self, loc: Loc) -> Src {
        match loc {
            Loc::Input(_) | Loc::Output(_) => {
                if let Some(&(_, v)) = self.bases.iter().find(|(l, _)| *l == loc) {
                    return Src::Mem(v, 0);
                }
                let (table, k) = match loc {
                    Loc::Input(k) => (self.inputs, k),
                    Loc::Output(k) => (self.outputs, k),
                    _ => unreachable!(),
                };
                let p = self.load_at(self.ptr, table, None, (k * 8) as i64);
                self.bases.push((loc, p));
                Src::Mem(p, 0)
            }
            Loc::Ws(off) => Src::Mem(self.ws, off as i64),
            Loc::Const(off) => Src::Mem(self.consts, off as i64),
            Loc::Splat(bits) => Src::Splat(bits),
            Loc::Unused => unreachable!("plan invariant: stored values have homes"),
        }
    }

    /// The memory of stored node or leaf `root`.
    fn root_src(&mut self, root: NodeId) -> Src {
        self.loc_src(self.plan.locs[root.index()])
    }

    /// How `x` is read: its view (a stored node, a leaf or a view).
    fn view(&self, x: NodeId) -> &'g View {
        self.plan.views[x.index()]
            .as_ref()
            .expect("plan invariant: values read from memory have views")
    }

    /// The start of a contiguous value or view (for `matmul` operands and node results).
    fn home(&mut self, id: NodeId) -> Src {
        let v = self.view(id);
        let size = self.g.ty(id).dtype.size_bytes() as i64;
        self.root_src(v.root).offset_by(v.offset * size)
    }

    /// `base + dyn_off + off` split into a value and an `Offset32` immediate.
    fn addr(&mut self, base: Value, dyn_off: Option<Value>, off: i64) -> (Value, i32) {
        let mut p = base;
        if let Some(d) = dyn_off {
            p = self.b.ins().iadd(p, d);
        }
        match i32::try_from(off) {
            Ok(o) => (p, o),
            Err(_) => {
                let c = self.b.ins().iconst(self.ptr, off);
                (self.b.ins().iadd(p, c), 0)
            }
        }
    }

    fn load_at(&mut self, ty: Type, base: Value, dyn_off: Option<Value>, off: i64) -> Value {
        let (p, o) = self.addr(base, dyn_off, off);
        self.b.ins().load(ty, mem(), p, o)
    }

    fn load(&mut self, src: Src, ty: Type, dyn_off: Option<Value>) -> Value {
        match src {
            Src::Mem(base, off) => self.load_at(ty, base, dyn_off, off),
            Src::Splat(bits) => self.constant(ty, bits),
        }
    }

    fn store(&mut self, dst: Src, v: Value, dyn_off: Option<Value>) {
        let Src::Mem(base, off) = dst else {
            unreachable!("plan invariant: computed values live in memory")
        };
        let (p, o) = self.addr(base, dyn_off, off);
        self.b.ins().store(mem(), v, p, o);
    }

    /// A constant of scalar type `ty` with the given bits.
    fn constant(&mut self, ty: Type, bits: u64) -> Value {
        match ty {
            types::F32 => self.b.ins().f32const(Ieee32::with_bits(bits as u32)),
            types::F64 => self.b.ins().f64const(Ieee64::with_bits(bits)),
            types::I8 => self.b.ins().iconst(ty, (bits & 0xff) as i64),
            types::I32 => self.b.ins().iconst(ty, (bits & 0xffff_ffff) as i64),
            _ => self.b.ins().iconst(ty, bits as i64),
        }
    }

    /// `Σ idx[k] * st[k]` (bytes), or `None` if every stride is zero.
    fn offset(&mut self, idx: &[Value], st: &[i64]) -> Option<Value> {
        let mut sum: Option<Value> = None;
        for (&i, &s) in idx.iter().zip(st) {
            if s == 0 {
                continue;
            }
            let t = if s == 1 {
                i
            } else {
                self.b.ins().imul_imm_s(i, s)
            };
            sum = Some(match sum {
                None => t,
                Some(a) => self.b.ins().iadd(a, t),
            });
        }
        sum
    }

    fn add_off(&mut self, a: Option<Value>, b: Option<Value>) -> Option<Value> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.b.ins().iadd(a, b)),
            (a, b) => a.or(b),
        }
    }

    /// `dyn + (pos.idx + pos.extra + lane)·st` bytes as (dynamic part, constant part).
    fn at(&mut self, outer: Option<Value>, pos: Pos, lane: i64, st: i64) -> (Option<Value>, i64) {
        let idx = match pos.idx {
            Some(i) if st != 0 => Some(self.b.ins().imul_imm_s(i, st)),
            _ => None,
        };
        (self.add_off(outer, idx), (pos.extra + lane) * st)
    }

    // ---- loops -----------------------------------------------------------------------------

    fn bound(&mut self, b: Bound) -> Value {
        match b {
            Bound::C(c) => self.b.ins().iconst(types::I64, c),
            Bound::V(v) => v,
        }
    }

    /// Opens `for i in lo..hi` (a do-while: the caller guarantees `lo < hi`).
    fn loop_begin(&mut self, lo: Bound) -> Loop {
        let var = self.b.declare_var(types::I64);
        let lo = self.bound(lo);
        self.b.def_var(var, lo);
        let head = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let i = self.b.use_var(var);
        Loop { var, head, i }
    }

    fn loop_end(&mut self, l: Loop, hi: Bound) {
        let next = self.b.ins().iadd_imm_s(l.i, 1);
        self.b.def_var(l.var, next);
        let more = match hi {
            Bound::C(c) => self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, c),
            Bound::V(v) => self.b.ins().icmp(IntCC::SignedLessThan, next, v),
        };
        let exit = self.b.create_block();
        self.b.ins().brif(more, l.head, &[], exit, &[]);
        self.b.seal_block(l.head);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    /// Emits a row-major loop nest over `dims` (all > 1 after collapsing; none means one
    /// straight-line execution) and calls `body` with the counters, outermost first.
    fn nest(&mut self, dims: &[usize], body: NestBody<'_, 'f, 'g>) {
        let mut idx = Vec::with_capacity(dims.len());
        self.nest_at(dims, &mut idx, body);
    }

    fn nest_at(&mut self, dims: &[usize], idx: &mut Vec<Value>, body: NestBody<'_, 'f, 'g>) {
        let Some((&d, rest)) = dims.split_first() else {
            body(self, idx);
            return;
        };
        let l = self.loop_begin(Bound::C(0));
        idx.push(l.i);
        self.nest_at(rest, idx, body);
        idx.pop();
        self.loop_end(l, Bound::C(d as i64));
    }

    // ---- groups ----------------------------------------------------------------------------

    fn group(&mut self, gi: u32, blocks: Option<(Value, Value)>) {
        self.vals.clear();
        match &self.plan.groups[gi as usize] {
            Group::Fused(f) => self.fused(f, blocks),
            Group::Single(id, None) => self.node(*id),
            Group::Single(id, Some(v)) => self.realize(*id, v),
        }
    }

    /// Copies view `v` into the home of `id`.
    fn realize(&mut self, id: NodeId, v: &View) {
        let ty = self.g.ty(id);
        let size = ty.dtype.size_bytes();
        let src = self.root_src(v.root).offset_by(v.offset * size as i64);
        let dst = self.home(id);
        let shape = ty.shape.clone();
        self.copy(
            ty.dtype,
            &shape,
            dst,
            contiguous(&shape, size),
            src,
            bytes_i(&v.strides, size),
        );
    }

    fn fused(&mut self, f: &'g Fused, blocks: Option<(Value, Value)>) {
        let g = self.g;
        let d = f.dims.len();
        let (w, vdt) = match f.vector {
            Some(dt) => (16 / dt.size_bytes(), dt),
            None => (1, DType::F64),
        };
        self.lanes = w;
        self.vdt = vdt;
        // Unrolling hides the latency of cheap bodies and of reduction accumulators; a body
        // with transcendentals has enough independent work already, and more copies of it
        // only spill.
        let u = match (w, f.math, f.members.len()) {
            (1, _, _) | (_, true, _) => 1,
            (_, false, 0..=16) => 4,
            _ => 2,
        };
        let mut cx = Cx {
            f,
            w,
            u,
            leaf_src: Vec::new(),
            leaf_of: HashMap::new(),
            store_src: Vec::new(),
            store_of: HashMap::new(),
            red: Vec::new(),
            red_of: HashMap::new(),
            staged: self.opts.batch && self.opts.fma && !self.opts.exact && w > 1 && f.math,
        };
        for (i, (x, a)) in f.leaves.iter().enumerate() {
            let s = self.root_src(a.root).offset_by(a.offset);
            cx.leaf_src.push(s);
            cx.leaf_of.insert(*x, i);
        }
        for (i, (m, a)) in f.stores.iter().enumerate() {
            let s = self.root_src(a.root).offset_by(a.offset);
            cx.store_src.push(s);
            cx.store_of.insert(*m, i);
        }
        for (i, r) in f.reductions.iter().enumerate() {
            let node = g.node(r.node);
            let dt = node.ty.dtype;
            let st = r.out.strides.clone();
            let register = if d == 0 || st[d - 1] == 0 {
                Some((0..d).rev().find(|&k| st[k] != 0))
            } else {
                None
            };
            let across = match register {
                Some(Some(k)) => (0..k).any(|j| st[j] == 0),
                _ => false,
            };
            let target = match r.partials {
                Some(off) => Src::Mem(self.ws, off as i64),
                None => self.root_src(r.node).offset_by(r.out.offset),
            };
            let vars = match register {
                Some(_) => {
                    let (n, ty) = if self.opts.exact || w == 1 {
                        (1, val_ty(dt))
                    } else {
                        (u, vec_ty(dt))
                    };
                    (0..n).map(|_| self.b.declare_var(ty)).collect()
                }
                None => Vec::new(),
            };
            let numel_out = node.ty.numel();
            cx.red.push(RedCx {
                node: r.node,
                op: node.op,
                dt,
                target,
                partial: r.partials.is_some(),
                st,
                register,
                across,
                vars,
                count: g.ty(node.inputs[0]).numel() / numel_out,
                numel_out,
            });
            cx.red_of.insert(r.node, i);
        }
        match blocks {
            None => self.block(&cx, None),
            Some((lo, hi)) => {
                let l = self.loop_begin(Bound::V(lo));
                self.block(&cx, Some(l.i));
                self.loop_end(l, Bound::V(hi));
            }
        }
        self.lanes = 1;
    }

    /// One block of a fused group (`blk` absent: the whole group, as one block). In vector
    /// code the fast pass uses the vector transcendentals; if any lane was outside their
    /// range, the block runs again with libm on every lane (no call inside the fast loops, so
    /// nothing there is spilled around calls). The plan keeps such groups from working in
    /// place, so the second pass reads the same operands.
    fn block(&mut self, cx: &Cx<'_>, blk: Option<Value>) {
        self.blk = blk;
        if self.lanes == 1 || self.opts.exact {
            self.block_pass(cx, blk);
            return;
        }
        let var = self.b.declare_var(mask_ty(self.vdt));
        let z = self.b.ins().iconst(mask_ty(self.vdt).lane_type(), 0);
        let z = self.b.ins().splat(mask_ty(self.vdt), z);
        self.b.def_var(var, z);
        self.bad = Some((var, false));
        self.block_pass(cx, blk);
        let Some((var, true)) = self.bad.take() else {
            return;
        };
        let m = self.b.use_var(var);
        let any = self.b.ins().vany_true(m);
        let slow = self.b.create_block();
        let done = self.b.create_block();
        self.b.set_cold_block(slow);
        self.b.ins().brif(any, slow, &[], done, &[]);
        self.b.seal_block(slow);
        self.b.switch_to_block(slow);
        self.slow = true;
        self.block_pass(cx, blk);
        self.slow = false;
        self.b.ins().jump(done, &[]);
        self.b.seal_block(done);
        self.b.switch_to_block(done);
    }

    fn block_pass(&mut self, cx: &Cx<'_>, blk: Option<Value>) {
        let f = cx.f;
        let d = f.dims.len();
        let bs = f.blocks.size as i64;
        let (row_lo, row_hi) = match blk {
            None => (
                Bound::C(0),
                Bound::C(f.dims.first().map_or(1, |&x| x as i64)),
            ),
            Some(b) => {
                let lo = self.b.ins().imul_imm_s(b, bs);
                let hi = self.b.ins().iadd_imm_s(lo, bs);
                let n = self.b.ins().iconst(types::I64, f.dims[0] as i64);
                let hi = self.b.ins().umin(hi, n);
                (Bound::V(lo), Bound::V(hi))
            }
        };
        // Per-block setup: memory accumulators filled with the identity, register
        // accumulators spanning every dimension initialized.
        for r in &cx.red {
            if r.register.is_none() || r.across {
                self.region(cx, r, blk, row_lo, row_hi, false);
            }
            if r.register == Some(None) {
                self.red_init(cx, r, blk, None);
            }
        }
        if d == 0 {
            let outer = self.outer(cx, &[]);
            let none = vec![None; f.leaves.len()];
            self.body(
                cx,
                Pos {
                    idx: None,
                    extra: 0,
                },
                1,
                0,
                &outer,
                &none,
            );
        } else if d == 1 {
            match blk {
                None => self.inner(cx, &[], Bound::C(0), f.dims[0]),
                Some(b) => {
                    let last = f.blocks.count - 1;
                    let last_len = f.dims[0] - last * f.blocks.size;
                    let Bound::V(start) = row_lo else {
                        unreachable!()
                    };
                    let is_last = self.b.ins().icmp_imm_s(IntCC::Equal, b, last as i64);
                    let (tail, full, join) = (
                        self.b.create_block(),
                        self.b.create_block(),
                        self.b.create_block(),
                    );
                    self.b.ins().brif(is_last, tail, &[], full, &[]);
                    self.b.seal_block(tail);
                    self.b.seal_block(full);
                    self.b.switch_to_block(full);
                    self.inner(cx, &[], Bound::V(start), f.blocks.size);
                    self.b.ins().jump(join, &[]);
                    self.b.switch_to_block(tail);
                    self.inner(cx, &[], Bound::V(start), last_len);
                    self.b.ins().jump(join, &[]);
                    self.b.seal_block(join);
                    self.b.switch_to_block(join);
                }
            }
        } else {
            let l = self.loop_begin(row_lo);
            let mut idx = vec![l.i];
            self.level(cx, blk, 1, &mut idx);
            self.loop_end(l, row_hi);
        }
        for r in &cx.red {
            if r.register == Some(None) {
                self.red_finish(cx, r, blk, &[]);
            }
            if (r.register.is_none() || r.across) && r.op == Op::ReduceMean && !r.partial {
                self.region(cx, r, blk, row_lo, row_hi, true);
            }
        }
    }

    /// Loop level `k >= 1` of a nest with at least two dimensions (`idx` holds the outer
    /// counters).
    fn level(&mut self, cx: &Cx<'_>, blk: Option<Value>, k: usize, idx: &mut Vec<Value>) {
        let f = cx.f;
        let d = f.dims.len();
        for r in &cx.red {
            if r.register == Some(Some(k - 1)) {
                self.red_init(cx, r, blk, Some(idx));
            }
        }
        if k == d - 1 {
            self.inner(cx, idx, Bound::C(0), f.dims[k]);
        } else {
            let l = self.loop_begin(Bound::C(0));
            idx.push(l.i);
            self.level(cx, blk, k + 1, idx);
            idx.pop();
            self.loop_end(l, Bound::C(f.dims[k] as i64));
        }
        for r in &cx.red {
            if r.register == Some(Some(k - 1)) {
                self.red_finish(cx, r, blk, idx);
            }
        }
    }

    /// Per-access byte offsets of the outer loop counters `idx`.
    fn outer(&mut self, cx: &Cx<'_>, idx: &[Value]) -> Outer {
        let f = cx.f;
        let leaves = f
            .leaves
            .iter()
            .map(|(_, a)| self.offset(idx, &a.strides))
            .collect();
        let stores = f
            .stores
            .iter()
            .map(|(_, a)| self.offset(idx, &a.strides))
            .collect();
        let blk = self.blk;
        let reds = cx
            .red
            .iter()
            .map(|r| {
                let o = self.offset(idx, &r.st);
                let (_, b) = self.red_target(r, blk);
                self.add_off(o, b)
            })
            .collect();
        Outer {
            leaves,
            stores,
            reds,
        }
    }

    /// The innermost loop: `len` elements from `start`.
    fn inner(&mut self, cx: &Cx<'_>, idx: &[Value], start: Bound, len: usize) {
        let outer = self.outer(cx, idx);
        let d = cx.f.dims.len();
        // Operands constant along the innermost dimension are loaded once.
        let mut hoisted: Vec<Option<SVal>> = vec![None; cx.f.leaves.len()];
        for (li, (_, a)) in cx.f.leaves.iter().enumerate() {
            if a.strides[d - 1] == 0 {
                let p = Pos {
                    idx: None,
                    extra: 0,
                };
                hoisted[li] = Some(self.load_leaf(cx, li, p, cx.w, &outer));
            }
        }
        let start_v = match start {
            Bound::C(0) => None,
            b => Some(self.bound(b)),
        };
        if cx.w == 1 {
            let l = self.loop_begin(Bound::C(0));
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, l.i),
                None => l.i,
            };
            self.body(
                cx,
                Pos {
                    idx: Some(i),
                    extra: 0,
                },
                1,
                0,
                &outer,
                &hoisted,
            );
            self.loop_end(l, Bound::C(len as i64));
            return;
        }
        if cx.staged && !self.slow && len >= batch::CHUNK {
            self.staged(cx, &outer, &hoisted, start_v, len);
        } else {
            self.vector_loops(cx, &outer, &hoisted, start_v, len, cx.u);
        }
    }

    /// The vector loops of an innermost loop: `len` elements from `start_v` (absent: 0),
    /// `copies` bodies per iteration (copy `j` accumulating into unroll slot `j mod cx.u`),
    /// then single vectors, then one partial vector.
    fn vector_loops(
        &mut self,
        cx: &Cx<'_>,
        outer: &Outer,
        hoisted: &[Option<SVal>],
        start_v: Option<Value>,
        len: usize,
        copies: usize,
    ) {
        let (w, u) = (cx.w, copies);
        let chunk = w * u;
        let main = len / chunk;
        let rest = (len % chunk) / w;
        let tail = len % w;
        if main > 0 {
            let l = self.loop_begin(Bound::C(0));
            let i = self.b.ins().imul_imm_s(l.i, chunk as i64);
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, i),
                None => i,
            };
            for j in 0..u {
                let p = Pos {
                    idx: Some(i),
                    extra: (j * w) as i64,
                };
                if let Stage::Args(st) = &mut self.stage {
                    st.defer = true;
                }
                self.body(cx, p, w, j % cx.u, outer, hoisted);
                if (j + 1) % STORE_GROUP == 0 || j + 1 == u {
                    self.flush_arg_stores();
                }
            }
            self.loop_end(l, Bound::C(main as i64));
        }
        let done = (main * chunk) as i64;
        if rest == 1 {
            let p = Pos {
                idx: start_v,
                extra: done,
            };
            self.body(cx, p, w, 0, outer, hoisted);
        } else if rest > 1 {
            let l = self.loop_begin(Bound::C(0));
            let i = self.b.ins().imul_imm_s(l.i, w as i64);
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, i),
                None => i,
            };
            let p = Pos {
                idx: Some(i),
                extra: done,
            };
            self.body(cx, p, w, 0, outer, hoisted);
            self.loop_end(l, Bound::C(rest as i64));
        }
        if tail > 0 {
            let p = Pos {
                idx: start_v,
                extra: (len - tail) as i64,
            };
            self.body(cx, p, tail, 0, outer, hoisted);
        }
    }

    /// A staged innermost loop of `len >= CHUNK` elements from `start_v` (absent: 0), in
    /// chunks of [`batch::CHUNK`]. Per chunk, argument pass `k` runs the body with every
    /// batched call of level `k` (a call is at level 0 if its argument depends on no call,
    /// else one above the deepest call it depends on, see [`MAX_LEVELS`]) storing its
    /// argument into its scratch area, the calls of lower levels loading their results, and
    /// nothing stored or reduced; after each argument pass the batched helpers compute that
    /// level's areas in place; the last pass runs the body with every batched call loading
    /// its result. The helpers compute bitwise what the in-loop code would (see
    /// [`super::batch`]), on wider vectors.
    fn staged(
        &mut self,
        cx: &Cx<'_>,
        outer: &Outer,
        hoisted: &[Option<SVal>],
        start_v: Option<Value>,
        len: usize,
    ) {
        let full = len / batch::CHUNK;
        let rest = len % batch::CHUNK;
        let l = self.loop_begin(Bound::C(0));
        let off = self.b.ins().imul_imm_s(l.i, batch::CHUNK as i64);
        let s = match start_v {
            Some(s) => self.b.ins().iadd(s, off),
            None => off,
        };
        self.staged_chunk(cx, outer, hoisted, s, batch::CHUNK);
        self.loop_end(l, Bound::C(full as i64));
        if rest > 0 {
            let done = (full * batch::CHUNK) as i64;
            let s = match start_v {
                Some(s) => self.b.ins().iadd_imm_s(s, done),
                None => self.b.ins().iconst(types::I64, done),
            };
            self.staged_chunk(cx, outer, hoisted, s, rest);
        }
    }

    /// All passes of one staged chunk of `len <= CHUNK` elements from `start`: an argument
    /// pass and the helper calls per level of batched calls, then the last pass.
    fn staged_chunk(
        &mut self,
        cx: &Cx<'_>,
        outer: &Outer,
        hoisted: &[Option<SVal>],
        start: Value,
        len: usize,
    ) {
        // Whole vectors: the padding lanes of a partial last vector repeat lane 0, so they
        // hold valid arguments too.
        let count = len.div_ceil(cx.w) * cx.w;
        let mut batched = Vec::new();
        let mut pass = 0;
        loop {
            self.stage = Stage::Args(StageState {
                start: Some(start),
                pass,
                batched: std::mem::take(&mut batched),
                ..StageState::default()
            });
            self.vector_loops(cx, outer, hoisted, Some(start), len, staged_copies(cx.f));
            let Stage::Args(st) = std::mem::replace(&mut self.stage, Stage::Off) else {
                unreachable!("an argument pass ends in its own stage")
            };
            batched = st.batched;
            for b in batched.iter().flatten().filter(|b| b.level == pass) {
                let r = self.batch_ref(b.f, b.dt);
                let p = self.b.ins().stack_addr(self.ptr, self.scratch[b.area], 0);
                let n = self.b.ins().iconst(types::I64, count as i64);
                self.b.ins().call(r, &[p, n]);
            }
            pass += 1;
            if batched.iter().flatten().all(|b| b.level < pass) {
                break;
            }
        }
        self.stage = Stage::Results(StageState {
            start: Some(start),
            batched,
            ..StageState::default()
        });
        self.vector_loops(cx, outer, hoisted, Some(start), len, staged_copies(cx.f));
        self.stage = Stage::Off;
    }

    /// Scratch area `k`.
    fn scratch_slot(&mut self, k: usize) -> StackSlot {
        while self.scratch.len() <= k {
            let bytes = (batch::CHUNK * 8) as u32;
            let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                bytes,
                6,
            ));
            self.scratch.push(slot);
        }
        self.scratch[k]
    }

    /// In a staged chunk, call `f` (on vector `x` of `dt`) as the current pass does it:
    /// `None` if the call is computed in the loop.
    fn staged_call(&mut self, f: MathFn, dt: DType, args: &[Value]) -> Option<Value> {
        let (last, st) = match &mut self.stage {
            Stage::Off => return None,
            Stage::Args(st) => (false, st),
            Stage::Results(st) => (true, st),
        };
        let k = st.calls;
        st.calls += 1;
        if !last && st.pass == 0 && st.batched.len() <= k {
            // Every iteration of the body makes the same calls, in every pass: the first body
            // of pass 0 decides each ordinal's level and area once. A member's second call may
            // depend on its first (the rule is opaque), so it stays in the loop.
            st.batched.resize(k + 1, None);
            let area = st.batched[..k].iter().flatten().count();
            let level = st.input_ready;
            let ok = batch::supported(f)
                && args.len() == 1
                && level < MAX_LEVELS
                && !st.called
                && area < MAX_SCRATCH;
            st.batched[k] = ok.then_some(Batched { f, dt, area, level });
        }
        st.called = true;
        let Some(b) = st.batched.get(k).copied().flatten() else {
            st.ready = NOT_STAGED;
            // The last pass computes it in the loop; argument passes need only the real
            // arguments of their own level, which cannot depend on it: any value will do.
            return if last { None } else { Some(args[0]) };
        };
        st.ready = st.ready.max(b.level + 1);
        let off = st.offset.expect("set by the body");
        let (area, first) = match (last, st.pass.cmp(&b.level)) {
            (false, std::cmp::Ordering::Equal) => (b.area, true),
            (false, std::cmp::Ordering::Less) => return Some(args[0]),
            _ => (b.area, false),
        };
        let slot = self.scratch_slot(area);
        let base = self.b.ins().stack_addr(self.ptr, slot, 0);
        let p = self.b.ins().iadd(base, off);
        if first {
            if let Stage::Args(st) = &mut self.stage {
                st.pending.push((area, p, args[0]));
            }
            Some(args[0])
        } else {
            let ty = self.b.func.dfg.value_type(args[0]);
            Some(self.b.ins().load(ty, vmem(), p, 0))
        }
    }

    /// Emits an argument pass's pending stores, area by area (see `StageState::pending`).
    fn flush_arg_stores(&mut self) {
        let Stage::Args(st) = &mut self.stage else {
            return;
        };
        st.defer = false;
        let mut pending = std::mem::take(&mut st.pending);
        pending.sort_by_key(|&(area, _, _)| area);
        for (_, p, v) in pending {
            self.b.ins().store(vmem(), v, p, 0);
        }
    }

    /// One iteration of the loop body on `lanes` valid lanes (of `cx.w`), accumulating into
    /// unroll slot `slot`.
    fn body(
        &mut self,
        cx: &Cx<'_>,
        pos: Pos,
        lanes: usize,
        slot: usize,
        outer: &Outer,
        hoisted: &[Option<SVal>],
    ) {
        let g = self.g;
        let mut loaded: Vec<Option<SVal>> = hoisted.to_vec();
        let mut regs: HashMap<NodeId, SVal> = HashMap::with_capacity(cx.f.members.len());
        let mut args: Vec<SVal> = Vec::with_capacity(3);
        // Staged chunk: this iteration's byte offset into the scratch areas; in the first
        // pass, the members whose value depends on a call's (not yet computed) result.
        let first_pass = matches!(self.stage, Stage::Args(_));
        // Staged chunk: the first pass each member's value is real in (absent: 0).
        let mut ready: HashMap<NodeId, usize> = HashMap::new();
        if let Stage::Args(StageState { start, .. }) | Stage::Results(StageState { start, .. }) =
            &self.stage
        {
            let start = start.expect("staged chunks have a start");
            let idx = pos.idx.expect("staged loops have a start");
            let size = self.vdt.size_bytes() as i64;
            let d = self.b.ins().isub(idx, start);
            let d = self.b.ins().imul_imm_s(d, size);
            let d = self.b.ins().iadd_imm_s(d, pos.extra * size);
            if let Stage::Args(st) | Stage::Results(st) = &mut self.stage {
                st.offset = Some(d);
                st.calls = 0;
            }
        }
        for &m in &cx.f.members {
            let node = g.node(m);
            args.clear();
            for x in &node.inputs {
                let v = match regs.get(x) {
                    Some(&v) => v,
                    None => {
                        let li = cx.leaf_of[x];
                        match loaded[li] {
                            Some(v) => v,
                            None => {
                                let v = self.load_leaf(cx, li, pos, lanes, outer);
                                loaded[li] = Some(v);
                                v
                            }
                        }
                    }
                };
                args.push(v);
            }
            if let Some(&ri) = cx.red_of.get(&m) {
                if !first_pass {
                    self.red_step(cx, ri, args[0], pos, lanes, slot, outer);
                }
                continue;
            }
            let lower = ops::rules(node.op)
                .lower
                .expect("plan invariant: fused non-reductions are elementwise");
            if let Stage::Args(st) | Stage::Results(st) = &mut self.stage {
                let r = node
                    .inputs
                    .iter()
                    .map(|x| ready.get(x).copied().unwrap_or(0));
                st.input_ready = r.max().unwrap_or(0);
                st.ready = st.input_ready;
                st.called = false;
            }
            let v = lower(self, node, &args);
            regs.insert(m, v);
            if let Stage::Args(st) | Stage::Results(st) = &self.stage
                && st.ready > 0
            {
                ready.insert(m, st.ready);
            }
            if first_pass {
                continue;
            }
            if let Some(&si) = cx.store_of.get(&m) {
                self.store_val(cx, si, v, pos, lanes, outer);
            }
        }
        if let Stage::Args(st) = &self.stage
            && !st.defer
        {
            self.flush_arg_stores();
        }
    }

    fn load_leaf(&mut self, cx: &Cx<'_>, li: usize, pos: Pos, lanes: usize, outer: &Outer) -> SVal {
        let (x, a) = &cx.f.leaves[li];
        let dt = self.g.ty(*x).dtype;
        let d = cx.f.dims.len();
        let st = if d == 0 { 0 } else { a.strides[d - 1] };
        let w = self.lanes;
        let v = match cx.leaf_src[li] {
            Src::Splat(bits) => {
                let s = self.constant(val_ty(dt), bits);
                self.widen(s, dt)
            }
            Src::Mem(base, off) => {
                let size = dt.size_bytes() as i64;
                if w == 1 || st == 0 {
                    let (dy, c) = self.at(outer.leaves[li], pos, 0, st);
                    let s = self.load_at(val_ty(dt), base, dy, off + c);
                    self.widen(s, dt)
                } else if st == size && dt.is_float() && lanes == w {
                    let (dy, c) = self.at(outer.leaves[li], pos, 0, st);
                    let (p, o) = self.addr(base, dy, off + c);
                    self.b.ins().load(vec_ty(dt), vmem(), p, o)
                } else {
                    let mut v = None;
                    for lane in 0..lanes {
                        let (dy, c) = self.at(outer.leaves[li], pos, lane as i64, st);
                        let s = self.load_at(val_ty(dt), base, dy, off + c);
                        let s = self.lane_value(s, dt);
                        v = Some(match v {
                            None => {
                                let t = self.lane_ty(dt);
                                self.b.ins().splat(t, s)
                            }
                            Some(v) => self.b.ins().insertlane(v, s, lane as u8),
                        });
                    }
                    v.expect("at least one lane")
                }
            }
        };
        self.sval(v, dt)
    }

    /// The vector type holding `dt` values in vector code.
    fn lane_ty(&self, dt: DType) -> Type {
        match dt {
            DType::Bool => mask_ty(self.vdt),
            d => vec_ty(d),
        }
    }

    /// A scalar element as a lane value (bool 0/1 → an all-zeros/all-ones integer lane).
    fn lane_value(&mut self, s: Value, dt: DType) -> Value {
        if dt != DType::Bool {
            return s;
        }
        let it = mask_ty(self.vdt).lane_type();
        let e = self.b.ins().uextend(it, s);
        self.b.ins().ineg(e)
    }

    /// A scalar element as a value of the current code (splat in vector code).
    fn widen(&mut self, s: Value, dt: DType) -> Value {
        if self.lanes == 1 {
            return s;
        }
        let l = self.lane_value(s, dt);
        let t = self.lane_ty(dt);
        self.b.ins().splat(t, l)
    }

    fn store_val(
        &mut self,
        cx: &Cx<'_>,
        si: usize,
        v: SVal,
        pos: Pos,
        lanes: usize,
        outer: &Outer,
    ) {
        let (m, a) = &cx.f.stores[si];
        let dt = self.g.ty(*m).dtype;
        let d = cx.f.dims.len();
        let st = if d == 0 { 0 } else { a.strides[d - 1] };
        let Src::Mem(base, off) = cx.store_src[si] else {
            unreachable!("plan invariant: stored values live in memory")
        };
        let v = self.val(v);
        if self.lanes == 1 {
            let (dy, c) = self.at(outer.stores[si], pos, 0, st);
            let (p, o) = self.addr(base, dy, off + c);
            self.b.ins().store(mem(), v, p, o);
        } else if dt.is_float() && lanes == self.lanes && st == dt.size_bytes() as i64 {
            let (dy, c) = self.at(outer.stores[si], pos, 0, st);
            let (p, o) = self.addr(base, dy, off + c);
            self.b.ins().store(vmem(), v, p, o);
        } else {
            for lane in 0..lanes {
                let e = self.b.ins().extractlane(v, lane as u8);
                let e = if dt == DType::Bool {
                    let one = self.b.ins().band_imm_u(e, 1);
                    self.b.ins().ireduce(types::I8, one)
                } else {
                    e
                };
                let (dy, c) = self.at(outer.stores[si], pos, lane as i64, st);
                let (p, o) = self.addr(base, dy, off + c);
                self.b.ins().store(mem(), e, p, o);
            }
        }
    }

    // ---- reductions ------------------------------------------------------------------------

    /// The identity of a reduction, as a scalar.
    fn identity(&mut self, r: &RedCx) -> Value {
        let x = match r.op {
            Op::ReduceMax => f64::NEG_INFINITY,
            Op::ReduceMin => f64::INFINITY,
            _ => 0.0,
        };
        self.float(r.dt, x)
    }

    /// `a ⊕ v` for reduction `r` (scalars or vectors).
    fn fold(&mut self, r: &RedCx, a: Value, v: Value) -> Value {
        match r.op {
            Op::ReduceMax => self.extreme(r.dt, a, v, FloatCC::GreaterThan),
            Op::ReduceMin => self.extreme(r.dt, a, v, FloatCC::LessThan),
            _ => self.b.ins().fadd(a, v),
        }
    }

    /// The target of reduction `r` for block `blk` (partial results are per block).
    fn red_target(&mut self, r: &RedCx, blk: Option<Value>) -> (Src, Option<Value>) {
        match (r.partial, blk) {
            (true, Some(b)) => {
                let per = (r.numel_out * r.dt.size_bytes()) as i64;
                let o = self.b.ins().imul_imm_s(b, per);
                (r.target, Some(o))
            }
            _ => (r.target, None),
        }
    }

    /// Fills (or, with `divide`, divides by the count) the part of reduction `r`'s target that
    /// block `blk` writes.
    fn region(
        &mut self,
        cx: &Cx<'_>,
        r: &RedCx,
        blk: Option<Value>,
        row_lo: Bound,
        row_hi: Bound,
        divide: bool,
    ) {
        let size = r.dt.size_bytes() as i64;
        let (target, blk_off) = self.red_target(r, blk);
        if cx.f.part {
            // One box of several (serial, see `plan::fused_nest`): the output elements it
            // writes are its kept dimensions, at the box's offset (in `target`).
            let kept: Vec<usize> = (0..cx.f.dims.len()).filter(|&k| r.st[k] != 0).collect();
            let dims: Vec<usize> = kept.iter().map(|&k| cx.f.dims[k]).collect();
            let st: Vec<i64> = kept.iter().map(|&k| r.st[k]).collect();
            self.nest(&dims, &mut |lw, idx| {
                let off = lw.offset(idx, &st);
                lw.region_element(r, target, off, divide);
            });
            return;
        }
        let (lo, hi) = if r.partial || blk.is_none() {
            (Bound::C(0), Bound::C(r.numel_out as i64))
        } else {
            // The block's rows of the output: `dims[0]` is kept, with element stride e0.
            let e0 = r.st[0] / size;
            let f = |lw: &mut Self, b: Bound| match b {
                Bound::V(v) => Bound::V(lw.b.ins().imul_imm_s(v, e0)),
                Bound::C(c) => Bound::C(c * e0),
            };
            (f(self, row_lo), f(self, row_hi))
        };
        let l = self.loop_begin(lo);
        let e = self.b.ins().imul_imm_s(l.i, size);
        let off = self.add_off(blk_off, Some(e));
        self.region_element(r, target, off, divide);
        self.loop_end(l, hi);
    }

    /// Writes the element of `r`'s output at `off` in `target`: the identity, or (`divide`)
    /// the element divided by the count (the end of a `reduce_mean`).
    fn region_element(&mut self, r: &RedCx, target: Src, off: Option<Value>, divide: bool) {
        let v = if divide {
            let x = self.load(target, val_ty(r.dt), off);
            let c = self.float(r.dt, r.count as f64);
            self.b.ins().fdiv(x, c)
        } else {
            self.identity(r)
        };
        self.store(target, v, off);
    }

    /// Initializes the accumulators of register reduction `r` (at the start of the loop level
    /// whose counters are `idx`, or of the block).
    fn red_init(&mut self, cx: &Cx<'_>, r: &RedCx, blk: Option<Value>, idx: Option<&[Value]>) {
        let _ = cx;
        if self.sequential() && r.across {
            // Sequential accumulation continues from the partial sum in memory.
            let (target, blk_off) = self.red_target(r, blk);
            let o = self.offset(idx.unwrap_or(&[]), &r.st);
            let o = self.add_off(blk_off, o);
            let v = self.load(target, val_ty(r.dt), o);
            self.b.def_var(r.vars[0], v);
            return;
        }
        let id = self.identity(r);
        let v = if r.vars.len() > 1 || (self.lanes > 1 && !self.opts.exact) {
            self.b.ins().splat(vec_ty(r.dt), id)
        } else {
            id
        };
        for &var in &r.vars {
            self.b.def_var(var, v);
        }
    }

    /// Folds the accumulators of register reduction `r` and writes the result.
    fn red_finish(&mut self, cx: &Cx<'_>, r: &RedCx, blk: Option<Value>, idx: &[Value]) {
        let _ = cx;
        let accs: Vec<Value> = r.vars.iter().map(|&v| self.b.use_var(v)).collect();
        // Slots pairwise, then lanes pairwise: a fixed order.
        let mut level = accs;
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len() / 2);
            for pair in level.chunks(2) {
                next.push(match pair {
                    [a, b] => self.fold(r, *a, *b),
                    [a] => *a,
                    _ => unreachable!(),
                });
            }
            level = next;
        }
        let mut v = level[0];
        let vt = self.b.func.dfg.value_type(v);
        if vt.is_vector() {
            let mut lanes: Vec<Value> = (0..vt.lane_count())
                .map(|l| self.b.ins().extractlane(v, l as u8))
                .collect();
            while lanes.len() > 1 {
                lanes = lanes.chunks(2).map(|p| self.fold(r, p[0], p[1])).collect();
            }
            v = lanes[0];
        }
        let (target, blk_off) = self.red_target(r, blk);
        let o = self.offset(idx, &r.st);
        let o = self.add_off(blk_off, o);
        if r.across && !self.sequential() {
            let m = self.load(target, val_ty(r.dt), o);
            v = self.fold(r, m, v);
        } else if !r.across && !r.partial && r.op == Op::ReduceMean {
            let c = self.float(r.dt, r.count as f64);
            v = self.b.ins().fdiv(v, c);
        }
        self.store(target, v, o);
    }

    /// Folds the operand value `x` of reduction `ri` at one body position.
    #[allow(clippy::too_many_arguments)]
    fn red_step(
        &mut self,
        cx: &Cx<'_>,
        ri: usize,
        x: SVal,
        pos: Pos,
        lanes: usize,
        slot: usize,
        outer: &Outer,
    ) {
        let r = &cx.red[ri];
        let v = self.val(x);
        let w = self.lanes;
        if r.register.is_some() {
            if self.sequential() {
                // One scalar accumulator, lanes in element order.
                let mut acc = self.b.use_var(r.vars[0]);
                for lane in 0..lanes {
                    let e = if w == 1 {
                        v
                    } else {
                        self.b.ins().extractlane(v, lane as u8)
                    };
                    acc = self.fold(r, acc, e);
                }
                self.b.def_var(r.vars[0], acc);
            } else {
                let mut v = v;
                if lanes < w {
                    // Padding lanes fold the identity.
                    let id = self.identity(r);
                    let idv = self.b.ins().splat(vec_ty(r.dt), id);
                    let mask = self.lane_mask(r.dt, lanes);
                    v = self.sel(mask, v, idv);
                }
                let acc = self.b.use_var(r.vars[slot]);
                let n = self.fold(r, acc, v);
                self.b.def_var(r.vars[slot], n);
            }
            return;
        }
        // Memory accumulation along a kept innermost dimension.
        let d = cx.f.dims.len();
        let st = r.st[d - 1];
        let Src::Mem(base, off) = r.target else {
            unreachable!("reduction outputs live in memory")
        };
        let outer_off = outer.reds[ri];
        let size = r.dt.size_bytes() as i64;
        if w > 1 && lanes == w && st == size {
            let (dy, c) = self.at(outer_off, pos, 0, st);
            let (p, o) = self.addr(base, dy, off + c);
            let m = self.b.ins().load(vec_ty(r.dt), vmem(), p, o);
            let n = self.fold(r, m, v);
            self.b.ins().store(vmem(), n, p, o);
        } else {
            for lane in 0..lanes {
                let e = if w == 1 {
                    v
                } else {
                    self.b.ins().extractlane(v, lane as u8)
                };
                let (dy, c) = self.at(outer_off, pos, lane as i64, st);
                let (p, o) = self.addr(base, dy, off + c);
                let m = self.b.ins().load(val_ty(r.dt), mem(), p, o);
                let n = self.fold(r, m, e);
                self.b.ins().store(mem(), n, p, o);
            }
        }
    }

    /// Register reductions accumulate one scalar, element by element (scalar code, or
    /// `exact_math`), which is the interpreter's order.
    fn sequential(&self) -> bool {
        self.lanes == 1 || self.opts.exact
    }

    /// A lane mask with the first `lanes` lanes set.
    fn lane_mask(&mut self, dt: DType, lanes: usize) -> Value {
        let mt = mask_ty(dt);
        let lane_bytes = 16 / mt.lane_count() as usize;
        let mut bytes = [0u8; 16];
        for b in bytes.iter_mut().take(lanes * lane_bytes) {
            *b = 0xff;
        }
        let c = self
            .b
            .func
            .dfg
            .constants
            .insert(ConstantData::from(&bytes[..]));
        self.b.ins().vconst(mt, c)
    }

    /// Folds the per-block partial results of parallel group `gi` in block order.
    fn combine(&mut self, gi: u32) {
        let Group::Fused(f) = &self.plan.groups[gi as usize] else {
            unreachable!("only fused groups have partial results")
        };
        self.lanes = 1;
        for red in &f.reductions {
            let Some(off) = red.partials else { continue };
            let node = self.g.node(red.node);
            let dt = node.ty.dtype;
            let numel_out = node.ty.numel();
            let r = RedCx {
                node: red.node,
                op: node.op,
                dt,
                target: Src::Mem(self.ws, off as i64),
                partial: true,
                st: Vec::new(),
                register: None,
                across: false,
                vars: Vec::new(),
                count: self.g.ty(node.inputs[0]).numel() / numel_out,
                numel_out,
            };
            let _ = r.node;
            let size = dt.size_bytes() as i64;
            let per = numel_out as i64 * size;
            let out = self.root_src(red.node);
            let ty = val_ty(dt);
            let l = self.loop_begin(Bound::C(0));
            let e = self.b.ins().imul_imm_s(l.i, size);
            let first = self.load(r.target, ty, Some(e));
            let acc = self.b.declare_var(ty);
            self.b.def_var(acc, first);
            let lb = self.loop_begin(Bound::C(1));
            let bo = self.b.ins().imul_imm_s(lb.i, per);
            let o = self.b.ins().iadd(bo, e);
            let x = self.load(r.target, ty, Some(o));
            let a = self.b.use_var(acc);
            let n = self.fold(&r, a, x);
            self.b.def_var(acc, n);
            self.loop_end(lb, Bound::C(f.blocks.count as i64));
            let mut v = self.b.use_var(acc);
            if r.op == Op::ReduceMean {
                let c = self.float(dt, r.count as f64);
                v = self.b.ins().fdiv(v, c);
            }
            self.store(out, v, Some(e));
            self.loop_end(l, Bound::C(numel_out as i64));
        }
    }

    // ---- single nodes ----------------------------------------------------------------------

    fn node(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        // Non-fused ops have no scalar rule: their loop structure is the JIT's business, so
        // this is the one place that dispatches on them.
        match node.op {
            Op::Matmul => self.matmul(id),
            Op::Concat => {
                let Attrs::Axis { axis } = node.attrs else {
                    unreachable!("verified concat has an axis")
                };
                let size = node.ty.dtype.size_bytes();
                let out = &node.ty.shape;
                let out_st = contiguous(out, size);
                let dst = self.home(id);
                let mut at = 0i64;
                for &x in &node.inputs {
                    let xs = g.ty(x).shape.clone();
                    let v = self.view(x);
                    let src = self.root_src(v.root).offset_by(v.offset * size as i64);
                    let src_st = bytes_i(&v.strides, size);
                    let d = dst.offset_by(at * out_st[axis]);
                    self.copy(node.ty.dtype, &xs, d, out_st.clone(), src, src_st);
                    at += xs[axis] as i64;
                }
            }
            Op::Gather => self.gather(id),
            Op::ScatterAdd => self.scatter_add(id),
            Op::Iota => self.iota(id),
            Op::Argmax => self.arg_extreme(id, true),
            Op::Argmin => self.arg_extreme(id, false),
            Op::RandomUniform => self.random_uniform(id),
            op => unreachable!("{op} is fused or a view"),
        }
    }

    /// A strided copy of raw element bits: `dst[i] = src[i]` over the row-major nest `dims`.
    fn copy(
        &mut self,
        dtype: DType,
        dims: &[usize],
        dst: Src,
        dst_st: Vec<i64>,
        src: Src,
        src_st: Vec<i64>,
    ) {
        let mut acc = [dst_st, src_st];
        let dims = collapse(dims, &mut acc);
        let ty = bits_ty(dtype);
        self.nest(&dims, &mut |lw, idx| {
            let so = lw.offset(idx, &acc[1]);
            let v = lw.load(src, ty, so);
            let d = lw.offset(idx, &acc[0]);
            lw.store(dst, v, d);
        });
    }

    /// `matmul`: a nest over the batch dimensions whose body is either one call of the GEMM
    /// wrapper (see [`super::gemm`]) or, with `exact_math` and for small products, splat
    /// operands and broadcast rows/columns ([`super::plan::gemm_path`]), an `i, j` nest
    /// accumulating over `p` in the interpreter's order. Both read each operand through its
    /// view's strides.
    fn matmul(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let dt = node.ty.dtype;
        let size = dt.size_bytes() as i64;
        let r = node.ty.rank();
        let (m, n) = (node.ty.shape[r - 2], node.ty.shape[r - 1]);
        let k = *g
            .ty(node.inputs[0])
            .shape
            .last()
            .expect("matmul operands have rank >= 2");
        let batch = &node.ty.shape[..r - 2];
        // Per operand: its memory, (row, column) byte strides, and byte strides over the
        // output's batch dimensions (right-aligned; broadcast axes get 0).
        let mut homes = [Src::Splat(0); 2];
        let mut mats = [(0i64, 0i64); 2];
        let mut batch_st: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        for (o, &x) in node.inputs.iter().enumerate() {
            let v = self.view(x);
            let (rs, cs) = super::plan::matrix_strides(g, x, v);
            mats[o] = (rs * size, cs * size);
            let shape = &g.ty(x).shape;
            let xr = shape.len();
            batch_st[o] = (0..batch.len())
                .map(|a| {
                    let back = batch.len() - a;
                    if back > xr - 2 || shape[xr - 2 - back] == 1 {
                        0
                    } else {
                        v.strides[xr - 2 - back] * size
                    }
                })
                .collect();
            homes[o] = self.root_src(v.root).offset_by(v.offset * size);
        }
        let [bx, by] = batch_st;
        // The output matrix of one batch entry is m·n contiguous elements.
        let ob: Vec<i64> = contiguous(batch, size as usize)
            .iter()
            .map(|s| s * (m * n) as i64)
            .collect();
        let dst = self.home(id);
        let [(xrs, xcs), (yrs, ycs)] = mats;
        let [sx, sy] = homes;
        if super::plan::gemm_path(g, &self.plan.locs, &self.plan.views, id, self.opts.exact) {
            let mut outer = [ob, bx, by];
            let outer_dims = collapse(batch, &mut outer);
            let f = self.gemm_ref(dt);
            self.nest(&outer_dims, &mut |lw, oi| {
                let mut ptrs = [dst, sx, sy].into_iter().zip(&outer).map(|(s, st)| {
                    let Src::Mem(base, off) = s else {
                        unreachable!("gemm_path checked that operands are in memory")
                    };
                    let d = lw.offset(oi, st);
                    let (p, o) = lw.addr(base, d, off);
                    lw.b.ins().iadd_imm_s(p, i64::from(o))
                });
                let (pd, px, py) = (
                    ptrs.next().expect("three pointers"),
                    ptrs.next().expect("three pointers"),
                    ptrs.next().expect("three pointers"),
                );
                let mut int = |c: i64| lw.b.ins().iconst(lw.ptr, c);
                // m, n, k, dst, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs (strides in elements).
                let args = [
                    int(m as i64),
                    int(n as i64),
                    int(k as i64),
                    pd,
                    px,
                    int(xrs / size),
                    int(xcs / size),
                    py,
                    int(yrs / size),
                    int(ycs / size),
                ];
                lw.b.ins().call(f, &args);
            });
            return;
        }
        // The loop nest: batch dims, then i, j; the inner loop over p.
        let mut dims = batch.to_vec();
        dims.extend([m, n]);
        let (mut ob, mut xb, mut yb) = (ob, bx, by);
        ob.extend([n as i64 * size, size]);
        xb.extend([xrs, 0]);
        yb.extend([0, ycs]);
        let mut outer = [ob, xb, yb];
        let outer_dims = collapse(&dims, &mut outer);
        let mut inner = [vec![xcs], vec![yrs]];
        let inner_dims = collapse(&[k], &mut inner);
        let ty = val_ty(dt);
        self.nest(&outer_dims, &mut |lw, oi| {
            let acc = lw.b.declare_var(ty);
            let z = lw.float(dt, 0.0);
            lw.b.def_var(acc, z);
            let xo = lw.offset(oi, &outer[1]);
            let yo = lw.offset(oi, &outer[2]);
            lw.nest(&inner_dims, &mut |lw, ii| {
                let xi = lw.offset(ii, &inner[0]);
                let yi = lw.offset(ii, &inner[1]);
                let (xoff, yoff) = (lw.add_off(xo, xi), lw.add_off(yo, yi));
                let a = lw.load(sx, ty, xoff);
                let b = lw.load(sy, ty, yoff);
                let p = lw.b.ins().fmul(a, b);
                let s = lw.b.use_var(acc);
                let s2 = lw.b.ins().fadd(s, p);
                lw.b.def_var(acc, s2);
            });
            let s = lw.b.use_var(acc);
            let off = lw.offset(oi, &outer[0]);
            lw.store(dst, s, off);
        });
    }

    // ---- scalar and vector helpers ---------------------------------------------------------

    /// A float constant of `dt` as a scalar.
    fn float(&mut self, dt: DType, x: f64) -> Value {
        match dt {
            DType::F32 => self.b.ins().f32const(x as f32),
            _ => self.b.ins().f64const(x),
        }
    }

    /// The NaN the interpreter produces (`f32::NAN` / `f64::NAN`), in the current code.
    fn nan(&mut self, dt: DType) -> Value {
        let s = match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        };
        self.widen(s, dt)
    }

    /// `if mask { a } else { b }` for scalars (i8 mask) or lanes (integer mask vector).
    fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        if ty.is_vector() {
            let m = if self.b.func.dfg.value_type(mask) == ty {
                mask
            } else {
                self.b.ins().bitcast(ty, little(), mask)
            };
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// The integer view of a float scalar or vector.
    fn as_int(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        if ty.is_vector() {
            self.b.ins().bitcast(ty.as_int(), little(), x)
        } else {
            self.b.ins().bitcast(ty.as_int(), MemFlagsData::new(), x)
        }
    }

    fn as_float(&mut self, x: Value, ty: Type) -> Value {
        let flags = if ty.is_vector() {
            little()
        } else {
            MemFlagsData::new()
        };
        self.b.ins().bitcast(ty, flags, x)
    }

    /// The interpreter's `reduce_max`/`reduce_min` step: NaN if either is NaN, else `v` if it
    /// beats `a` strictly, else `a`.
    fn extreme(&mut self, dt: DType, a: Value, v: Value, beats: FloatCC) -> Value {
        let wins = self.b.ins().fcmp(beats, v, a);
        let r = self.sel(wins, v, a);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, a, v);
        let ty = self.b.func.dfg.value_type(a);
        let q = match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        };
        let q = if ty.is_vector() {
            self.b.ins().splat(ty, q)
        } else {
            q
        };
        self.sel(nan, q, r)
    }

    fn sval(&mut self, v: Value, dt: DType) -> SVal {
        self.vals.push((v, dt));
        SVal((self.vals.len() - 1) as u32)
    }

    fn val(&self, x: SVal) -> Value {
        self.vals[x.0 as usize].0
    }

    /// Imports module function `index` (signature `sig`) into the function being built.
    fn import(&mut self, index: u32, sig: Signature) -> FuncRef {
        let signature = self.b.import_signature(sig);
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: false,
            patchable: false,
        })
    }

    fn gemm_ref(&mut self, dt: DType) -> FuncRef {
        if let Some(&r) = self.gemm_refs.get(&dt) {
            return r;
        }
        let r = self.import(self.gemm[&dt], gemm_signature(self.ptr, self.call_conv));
        self.gemm_refs.insert(dt, r);
        r
    }

    fn batch_ref(&mut self, f: MathFn, dt: DType) -> FuncRef {
        if let Some(&r) = self.batch_refs.get(&(f, dt)) {
            return r;
        }
        let r = self.import(
            self.batch[&(f, dt)],
            batch_signature(self.ptr, self.call_conv),
        );
        self.batch_refs.insert((f, dt), r);
        r
    }

    fn math_ref(&mut self, f: MathFn, dt: DType) -> FuncRef {
        if let Some(&r) = self.math_refs.get(&(f, dt)) {
            return r;
        }
        let r = self.import(self.math[&(f, dt)], math_signature(f, dt, self.call_conv));
        self.math_refs.insert((f, dt), r);
        r
    }

    /// `f` on every lane of `args` through the scalar libm wrapper.
    fn lanewise(&mut self, f: MathFn, dt: DType, args: &[Value]) -> Value {
        let r = self.math_ref(f, dt);
        let mut out = args[0];
        let n = self.b.func.dfg.value_type(out).lane_count();
        for lane in 0..n {
            let es: Vec<Value> = args
                .iter()
                .map(|&a| self.b.ins().extractlane(a, lane as u8))
                .collect();
            let inst = self.b.ins().call(r, &es);
            let c = self.b.inst_results(inst)[0];
            out = self.b.ins().insertlane(out, c, lane as u8);
        }
        out
    }

    /// A vector transcendental; the lanes outside its fast range are recorded for the slow
    /// pass (see [`Lowerer::block`]).
    fn vector_call(&mut self, f: MathFn, x: Value) -> Value {
        let a = vmath::emit(&mut self.b, self.opts.fma, f, x);
        if let Some(bad) = a.bad {
            let (var, _) = self.bad.expect("vector code runs in a fast pass");
            let m = self.b.use_var(var);
            let m = self.b.ins().bor(m, bad);
            self.b.def_var(var, m);
            self.bad = Some((var, true));
        }
        a.value
    }
}

/// Element strides (signed) scaled to bytes.
fn bytes_i(st: &[i64], size: usize) -> Vec<i64> {
    st.iter().map(|&s| s * size as i64).collect()
}

impl ScalarEmit for Lowerer<'_, '_> {
    fn fconst(&mut self, dtype: DType, x: f64) -> SVal {
        let s = match dtype {
            DType::Bool => self.b.ins().iconst(types::I8, i64::from(x != 0.0)),
            // Integer groups are never vectorized (see `plan`), so this stays a scalar.
            DType::I32 => self.b.ins().iconst(types::I32, i64::from(x as i32 as u32)),
            d => self.float(d, x),
        };
        let v = self.widen(s, dtype);
        self.sval(v, dtype)
    }

    fn unary(&mut self, op: FUnary, x: SVal) -> SVal {
        let (v, dt) = self.vals[x.0 as usize];
        let r = match op {
            // Cranelift lowers a vector `fneg` to three instructions (building the sign mask
            // each time); an XOR with a splat of -0.0 is one, with the mask kept in a
            // register. Same bits, NaN signs included.
            FUnary::Neg if self.lanes > 1 => {
                let m = self.float(dt, -0.0);
                let m = self.b.ins().splat(vec_ty(dt), m);
                self.b.ins().bxor(v, m)
            }
            FUnary::Neg => self.b.ins().fneg(v),
            FUnary::Abs => self.b.ins().fabs(v),
            FUnary::Sqrt => self.b.ins().sqrt(v),
        };
        self.sval(r, dt)
    }

    fn binary(&mut self, op: FBinary, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.vals[a.0 as usize];
        let y = self.val(b);
        let r = match op {
            FBinary::Add => self.b.ins().fadd(x, y),
            FBinary::Sub => self.b.ins().fsub(x, y),
            FBinary::Mul => self.b.ins().fmul(x, y),
            FBinary::Div => self.b.ins().fdiv(x, y),
            FBinary::Max => self.max_min(dt, x, y, true),
            FBinary::Min => self.max_min(dt, x, y, false),
        };
        self.sval(r, dt)
    }

    fn call(&mut self, f: MathFn, args: &[SVal]) -> SVal {
        let dt = self.vals[args[0].0 as usize].1;
        let vs: Vec<Value> = args.iter().map(|&a| self.val(a)).collect();
        let staged = if self.lanes > 1 {
            self.staged_call(f, dt, &vs)
        } else {
            None
        };
        let v = if let Some(v) = staged {
            v
        } else if self.lanes == 1 {
            let r = self.math_ref(f, dt);
            let inst = self.b.ins().call(r, &vs);
            self.b.inst_results(inst)[0]
        } else if self.opts.exact || self.slow || !vmath::supported(f, self.opts.fma) {
            self.lanewise(f, dt, &vs)
        } else {
            self.vector_call(f, vs[0])
        };
        self.sval(v, dt)
    }

    fn compare(&mut self, cmp: Cmp, a: SVal, b: SVal) -> SVal {
        let cc = match cmp {
            Cmp::Lt => FloatCC::LessThan,
            Cmp::Le => FloatCC::LessThanOrEqual,
            Cmp::Gt => FloatCC::GreaterThan,
            Cmp::Ge => FloatCC::GreaterThanOrEqual,
            Cmp::Eq => FloatCC::Equal,
            // Unordered or unequal: true when either is NaN, like Rust's `!=`.
            Cmp::Ne => FloatCC::NotEqual,
        };
        let (x, y) = (self.val(a), self.val(b));
        let r = if self.dtype(a) == DType::I32 {
            let icc = match cmp {
                Cmp::Lt => IntCC::SignedLessThan,
                Cmp::Le => IntCC::SignedLessThanOrEqual,
                Cmp::Gt => IntCC::SignedGreaterThan,
                Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
                Cmp::Eq => IntCC::Equal,
                Cmp::Ne => IntCC::NotEqual,
            };
            self.b.ins().icmp(icc, x, y)
        } else {
            self.b.ins().fcmp(cc, x, y)
        };
        self.sval(r, DType::Bool)
    }

    fn select(&mut self, c: SVal, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.vals[a.0 as usize];
        let (c, y) = (self.val(c), self.val(b));
        let r = self.sel(c, x, y);
        self.sval(r, dt)
    }

    fn cast(&mut self, x: SVal, to: DType) -> SVal {
        let (v, from) = self.vals[x.0 as usize];
        let r = match (from, to) {
            (a, b) if a == b => v,
            (DType::Bool, f) if self.lanes > 1 => {
                // All-ones lanes AND the bits of 1.0.
                let one = self.float(f, 1.0);
                let one = self.b.ins().splat(vec_ty(f), one);
                let ob = self.as_int(one);
                let m = self.b.ins().band(v, ob);
                self.as_float(m, vec_ty(f))
            }
            // `i32` values only occur in scalar code (integer groups are never vectorized).
            (DType::I32, f) => self.b.ins().fcvt_from_sint(val_ty(f), v),
            // Saturating, NaN to 0: Rust's `as`, which the interpreter uses.
            (f, DType::I32) if f.is_float() => self.b.ins().fcvt_to_sint_sat(types::I32, v),
            (DType::Bool, DType::I32) => self.b.ins().uextend(types::I32, v),
            (DType::F64, DType::F32) => self.b.ins().fdemote(types::F32, v),
            (DType::F32, DType::F64) => self.b.ins().fpromote(types::F64, v),
            (DType::Bool, f) if f.is_float() => {
                let w = self.b.ins().uextend(types::I32, v);
                self.b.ins().fcvt_from_sint(val_ty(f), w)
            }
            (f, DType::Bool) => {
                // Not produced by the shape rules (cast targets are floats); nonzero is true.
                let z = self.float(f, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, v, z)
            }
            _ => unreachable!("all dtype pairs covered"),
        };
        self.sval(r, to)
    }

    fn dtype(&self, x: SVal) -> DType {
        self.vals[x.0 as usize].1
    }
}

impl Lowerer<'_, '_> {
    /// `ops` max/min semantics: NaN if either is NaN (the interpreter's NaN), else the larger
    /// (smaller) one, with `+0 > -0`. Equal values differ at most in the sign of zero, so the
    /// bitwise AND (max) or OR (min) of the two picks the right zero.
    fn max_min(&mut self, dt: DType, x: Value, y: Value, max: bool) -> Value {
        let cc = if max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let wins = self.b.ins().fcmp(cc, x, y);
        let pick = self.sel(wins, x, y);
        let ty = self.b.func.dfg.value_type(x);
        let (xi, yi) = (self.as_int(x), self.as_int(y));
        let tie_bits = if max {
            self.b.ins().band(xi, yi)
        } else {
            self.b.ins().bor(xi, yi)
        };
        let tie = self.as_float(tie_bits, ty);
        let eq = self.b.ins().fcmp(FloatCC::Equal, x, y);
        let r = self.sel(eq, tie, pick);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, y);
        let q = self.nan(dt);
        self.sel(nan, q, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorType;
    use crate::jit::plan::{Func, PlanConfig};

    /// Lowers all of `g` into functions and returns (blocks, CLIF text) of the first one.
    fn lowered(g: &Graph) -> (usize, String) {
        lowered_with(g, false)
    }

    /// Lowers `g` (one serial function); `batch` stages long loops. Math wrappers are
    /// imports `0..16`, batched helpers `1000..`.
    fn lowered_with(g: &Graph, batch: bool) -> (usize, String) {
        let plan = super::super::plan::plan(
            g,
            &PlanConfig {
                max_ops_per_function: usize::MAX,
                parallel_min_elements: usize::MAX,
                exact: false,
                checked: false,
            },
        )
        .unwrap();
        let math: MathIds = crate::ops::MathFn::ALL
            .iter()
            .enumerate()
            .flat_map(|(i, &f)| {
                [
                    ((f, DType::F32), 2 * i as u32),
                    ((f, DType::F64), 2 * i as u32 + 1),
                ]
            })
            .collect();
        let cc = CallConv::SystemV;
        let mut func = Function::with_name_signature(
            cranelift_codegen::ir::UserFuncName::user(0, 99),
            kernel_signature(types::I64, cc),
        );
        let mut fctx = FunctionBuilderContext::new();
        let target = TargetFrontendConfig {
            default_call_conv: cc,
            pointer_width: target_lexicon::PointerWidth::U64,
            page_size_align_log2: 12,
        };
        let Func::Serial(items) = &plan.funcs[0] else {
            panic!("serial function expected")
        };
        let opts = Opts {
            exact: false,
            fma: true,
            batch,
        };
        let batch_ids: MathIds = super::super::batch::symbols()
            .enumerate()
            .map(|(i, (f, d, _, _))| ((f, d), 1000 + i as u32))
            .collect();
        build_function(
            &mut func,
            &mut fctx,
            g,
            &plan,
            Body::Serial(items),
            &math,
            &batch_ids,
            &[(DType::F32, 1000), (DType::F64, 1001)]
                .into_iter()
                .collect(),
            target,
            opts,
        );
        (func.layout.blocks().count(), func.display().to_string())
    }

    #[test]
    fn scalar_nodes_are_straight_line_and_chains_are_one_vector_loop() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
        let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
        let z = g.push(Op::Exp, vec![y], Attrs::None).unwrap();
        g.set_outputs(vec![z]);
        let (blocks, clif) = lowered(&g);
        assert_eq!(blocks, 1, "{clif}");
        assert!(clif.contains("fmul") && clif.contains("call"), "{clif}");
        // The fused value y is never stored: one store (z).
        assert_eq!(clif.matches("store").count(), 1, "{clif}");

        // (a + a) * s over [2,8] f32: one fused vector loop, no scalar tail (16 = 4 lanes × 4).
        let mut g = Graph::new("t");
        let a = g
            .add_input("a", TensorType::new(DType::F32, vec![2, 8]))
            .unwrap();
        let s = g.add_input("s", TensorType::scalar(DType::F32)).unwrap();
        let y = g.push(Op::Add, vec![a, a], Attrs::None).unwrap();
        let z = g.push(Op::Mul, vec![y, s], Attrs::None).unwrap();
        g.set_outputs(vec![z]);
        let (blocks, clif) = lowered(&g);
        assert_eq!(blocks, 1 + 2, "{clif}");
        assert!(clif.contains("f32x4"), "{clif}");
    }

    #[test]
    fn vector_transcendentals_have_a_cold_libm_pass() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F64, vec![8]))
            .unwrap();
        let y = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
        g.set_outputs(vec![y]);
        let (_, clif) = lowered(&g);
        assert!(
            clif.contains("vany_true") && clif.contains("cold"),
            "{clif}"
        );
        assert!(
            clif.contains("= fma v") && clif.contains("load.f64x2"),
            "{clif}"
        );
    }

    /// A long loop with a batchable call and a call depending on it: the first is staged
    /// (its argument stored, one helper call per chunk, its result loaded), the second
    /// stays a vector polynomial in the loop; short loops are not staged.
    #[test]
    fn long_loops_stage_calls_through_batched_helpers() {
        let graph = |n: usize| {
            let mut g = Graph::new("t");
            let x = g
                .add_input("x", TensorType::new(DType::F32, vec![n]))
                .unwrap();
            let e = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
            let t = g.push(Op::Tanh, vec![e], Attrs::None).unwrap();
            g.set_outputs(vec![t]);
            g
        };
        let (_, clif) = lowered_with(&graph(3000), true);
        // exp (f32) is helper 0: `u0:1000`; tanh (f32) is `u0:1004`, at level 1 (its
        // argument is exp's result).
        let callee = |name: &str| {
            clif.lines()
                .find(|l| l.contains(&format!("= {name} ")))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_else(|| panic!("{name} is imported: {clif}"))
                .to_string()
        };
        let (exp, tanh) = (callee("u0:1000"), callee("u0:1004"));
        // Both run in the helpers: no polynomial is left in the loop.
        assert!(
            clif.contains("stack_addr") && !clif.contains("= fma v"),
            "{clif}"
        );
        // Two chunk emissions (full chunks, the remainder), each calling each helper once,
        // exp before tanh.
        let calls: Vec<&str> = clif
            .lines()
            .filter_map(|l| l.trim().strip_prefix("call "))
            .filter_map(|l| l.split('(').next())
            .filter(|c| *c == exp || *c == tanh)
            .collect();
        assert_eq!(calls, [&exp, &tanh, &exp, &tanh], "{clif}");
        let (_, short) = lowered_with(&graph(1000), true);
        assert!(
            !short.contains("u0:1000") && !short.contains("stack_addr"),
            "{short}"
        );
        let (_, off) = lowered_with(&graph(3000), false);
        assert!(!off.contains("u0:1000"), "{off}");
    }

    /// A chain of dependent calls is batched level by level, `MAX_LEVELS` deep; deeper calls
    /// stay in the loop (as vector polynomials).
    #[test]
    fn dependent_calls_are_batched_up_to_max_levels() {
        let n = 2048; // two full chunks, emitted once inside the chunk loop
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![n]))
            .unwrap();
        let mut y = x;
        for _ in 0..MAX_LEVELS + 2 {
            y = g.push(Op::Sin, vec![y], Attrs::None).unwrap();
        }
        g.set_outputs(vec![y]);
        let (_, clif) = lowered_with(&g, true);
        // The helper of sin (f32) is `u0:(1000 + its index in batch::symbols())`.
        let idx = super::super::batch::symbols()
            .position(|(f, d, _, _)| f == MathFn::Sin && d == DType::F32)
            .unwrap();
        let name = format!("= u0:{} ", 1000 + idx);
        let helper = clif
            .lines()
            .find(|l| l.contains(&name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("the helper is imported: {clif}"));
        assert_eq!(
            clif.matches(&format!("call {helper}(")).count(),
            MAX_LEVELS,
            "{clif}"
        );
        // The two deepest calls are in the loop: vector polynomials (fma) remain.
        assert!(clif.contains("= fma v"), "{clif}");
    }

    /// At most `MAX_SCRATCH` calls per chunk are batched (bounded stack use); the rest stay
    /// in the loop.
    #[test]
    fn staged_chunks_use_a_bounded_scratch() {
        let n = 2048;
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F64, vec![n]))
            .unwrap();
        let mut acc = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
        for _ in 0..MAX_SCRATCH + 4 {
            let y = g.push(Op::Mul, vec![x, acc], Attrs::None).unwrap();
            let e = g.push(Op::Exp, vec![y], Attrs::None).unwrap();
            let z = g.push(Op::Tanh, vec![x], Attrs::None).unwrap();
            acc = g.push(Op::Add, vec![e, z], Attrs::None).unwrap();
        }
        g.set_outputs(vec![acc]);
        let (_, clif) = lowered_with(&g, true);
        assert_eq!(clif.matches("explicit_slot").count(), MAX_SCRATCH, "{clif}");
    }
}
