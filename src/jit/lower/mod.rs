//! Lowering: planned groups → the bodies of Cranelift functions.
//!
//! A fused group (see [`super::plan`]) becomes one loop nest over its collapsed dimensions.
//! The loop body walks the members in id order: operands come from registers (members
//! computed earlier in the same iteration) or are loaded from memory (leaves, at their
//! broadcast/view strides); elementwise members are emitted by their `ops::rules(op).lower`
//! rule against the [`ScalarEmit`](crate::ops::ScalarEmit) implementation in [`emit`]; a stored member is stored right
//! after it is computed; reductions fold the value into an accumulator.
//!
//! - Vectors: when the plan found one float dtype in the group, the innermost loop runs on
//!   `F32X4` / `F64X2` lanes, unrolled `U` times (4, 2 or 1 by body size), followed by single
//!   vectors and one partial vector for the tail (lane-wise loads and stores; the padding
//!   lanes repeat lane 0 and never reach memory). A loop that would run at most once unrolled
//!   is not unrolled in a group without reductions, and a loop that runs once is straight-line
//!   code (both only shrink the code). Bools are lane masks in registers and bytes
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
//! - Chunks: a parallel group's function takes a chunk range; each chunk writes its rows of
//!   the outputs, or its own partial results for reductions across chunks, which a later
//!   `Combine` item folds in chunk order.
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
//! consts: *const u8)` (serial functions) plus `lo: i64, hi: i64` (chunk functions): arrays
//! of the caller's buffer addresses in input/output order (the slot after the outputs holds
//! the call's communicator context, read by collective nodes), the workspace base (64-byte
//! aligned) and the constant blob base (64-byte aligned).
//!
//! No SSA value lives longer than one group (buffer addresses are reloaded per group), which
//! keeps register allocation linear in the function size (the compile-time trap in the
//! Cranelift notes).

mod collective;
mod cumsum;
mod emit;
mod fused;
mod indexing;
mod loops;
mod matmul;
mod reduce;
mod staged;
#[cfg(test)]
mod tests;

use super::layout::View;
use super::plan::{Group, Item, Loc, Plan};
use crate::ir::{DType, Graph, NodeId};
use crate::ops::MathFn;
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    AbiParam, Endianness, FuncRef, Function, InstBuilder, MemFlagsData, Signature, StackSlot, Type,
    Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;

/// The module-level function index of each math wrapper (declared as imports).
pub(super) type MathIds = HashMap<(MathFn, DType), u32>;

/// The module-level function index of the GEMM wrapper of each float dtype.
pub(super) type GemmIds = HashMap<DType, u32>;

/// The signature of a GEMM wrapper (see [`super::gemm`]): pointer-sized integers, then the
/// two factors as `f64`.
pub(super) fn gemm_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params
        .extend(std::iter::repeat_n(AbiParam::new(ptr), super::gemm::ARITY));
    sig.params.extend([AbiParam::new(types::F64); 2]);
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

/// The signature of a chunk function (see the module docs).
pub(super) fn chunk_signature(ptr: Type, call_conv: CallConv) -> Signature {
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
    /// Chunks `lo..hi` (the last two parameters) of this group.
    Chunks(u32),
}

/// Everything the lowering of one function reads.
pub(super) struct Env<'a> {
    pub g: &'a Graph,
    pub plan: &'a Plan,
    pub imports: &'a Imports,
    pub target: TargetFrontendConfig,
    pub opts: Opts,
}

/// The module-level function indices of the imported helpers.
#[derive(Default)]
pub(super) struct Imports {
    /// The scalar libm wrappers.
    pub math: MathIds,
    /// The batched helpers.
    pub batch: MathIds,
    /// The GEMM wrappers.
    pub gemm: GemmIds,
    /// The collectives' trampoline (`super::collective`).
    pub all_reduce: u32,
}

/// The signature of the collectives' trampoline: pointer-sized integers only.
pub(super) fn collective_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.extend(std::iter::repeat_n(
        AbiParam::new(ptr),
        super::collective::ARITY,
    ));
    sig.returns.push(AbiParam::new(ptr));
    sig
}

/// Builds the body of `func` (whose signature matches `body`).
pub(super) fn build_function(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    env: &Env<'_>,
    body: Body<'_>,
) {
    let ptr = env.target.pointer_type();
    let call_conv = func.signature.call_conv;
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let mut lw = Lowerer {
        b,
        g: env.g,
        plan: env.plan,
        inputs: p[0],
        outputs: p[1],
        ws: p[2],
        consts: p[3],
        ptr,
        call_conv,
        imports: env.imports,
        math_refs: HashMap::new(),
        batch_refs: HashMap::new(),
        gemm_refs: HashMap::new(),
        vals: Vec::new(),
        opts: env.opts,
        bases: Vec::new(),
        scratch: Vec::new(),
        vars: Vec::new(),
    };
    match body {
        Body::Serial(items) => {
            for &it in items {
                lw.bases.clear();
                lw.release_vars();
                match it {
                    Item::Run(gi) => lw.group(gi, None),
                    Item::Combine(gi) => lw.combine(gi),
                }
            }
        }
        Body::Chunks(gi) => lw.group(gi, Some((p[4], p[5]))),
    }
    lw.b.ins().return_(&[]);
    lw.b.finalize(env.target);
    fused::drop_unused_loads(func);
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

/// The state of lowering one function: what is fixed for the function (the builder, the plan,
/// the imports), caches (function references, buffer addresses, scratch areas, frontend
/// variables) and the values behind the current group's `SVal`s. What describes the code being
/// emitted reaches the code that needs it as a value: the group's [`Cx`](fused::Cx) with its
/// [`Mode`](fused::Mode) (lanes, vector dtype, fast or slow pass), [`Stage`](staged::Stage) for
/// the pass of a staged segment, `RedCx`, `Pos`, `Outer`, and the [`Em`](emit::Em) that the op
/// rules emit through.
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
    imports: &'g Imports,
    math_refs: HashMap<(MathFn, DType), FuncRef>,
    batch_refs: HashMap<(MathFn, DType), FuncRef>,
    gemm_refs: HashMap<DType, FuncRef>,
    /// The values behind the [`SVal`](crate::ops::SVal)s of the group being lowered.
    vals: Vec<(Value, DType)>,
    opts: Opts,
    /// Buffer addresses loaded in the current group.
    bases: Vec<(Loc, Value)>,
    /// The scratch areas of staged segments (`SEGMENT` elements of 8 bytes each, at most
    /// [`staged::MAX_SCRATCH`], shared by every staged group of the function).
    scratch: Vec<StackSlot>,
    /// The frontend variables declared so far, by type, and whether the item being lowered
    /// uses each (see [`Lowerer::var`]).
    vars: Vec<(Type, Variable, bool)>,
}

impl<'f, 'g> Lowerer<'f, 'g> {
    /// A frontend variable of type `ty` for the item being lowered, defined before it is used.
    /// Items reuse the variables of earlier items: the SSA builder keeps, for every variable,
    /// a map entry per block of the function, so fresh variables for every group would make
    /// building quadratic in the function's size. Reuse is sound because no value outlives
    /// its item.
    fn var(&mut self, ty: Type) -> Variable {
        if let Some(v) = self.vars.iter_mut().find(|v| v.0 == ty && !v.2) {
            v.2 = true;
            return v.1;
        }
        let var = self.b.declare_var(ty);
        self.vars.push((ty, var, true));
        var
    }

    /// Makes every variable free for the next item.
    fn release_vars(&mut self) {
        for v in &mut self.vars {
            v.2 = false;
        }
    }

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

    /// Lowers group `gi` (`chunks`: the range of a parallel group's chunks to run).
    fn group(&mut self, gi: u32, chunks: Option<(Value, Value)>) {
        self.vals.clear();
        match &self.plan.groups[gi as usize] {
            Group::Fused(f) => self.fused(f, chunks),
            Group::Matmul { node, gemm, acc } => self.matmul(*node, *gemm, acc.as_ref()),
            Group::Node(id) => self.node(*id),
            Group::Copy { node, from } => self.realize(*node, from),
            Group::Loop(_) => unreachable!("plan invariant: loops run in the kernel, not in code"),
        }
    }
}
