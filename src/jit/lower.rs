//! Lowering: one chunk of planned nodes → the body of one Cranelift function.
//!
//! Every node becomes a loop nest over its output (straight-line code when the output has one
//! element). Operands are loaded from their homes (see [`super::plan`]) at every use and the
//! result is stored to its home, so no SSA value lives longer than one node: this keeps
//! register allocation linear in the function size (the compile-time trap in the Cranelift
//! notes).
//!
//! - Elementwise ops: the loop body loads each operand at its broadcast offset, calls the op's
//!   `ops::rules(op).lower` rule against the [`ScalarEmit`] implementation below, and stores
//!   the result. Broadcasting is index/stride arithmetic; adjacent dimensions that every access
//!   walks contiguously are merged first, so most nests are one flat loop.
//! - Reductions, `matmul`: an outer nest over the output and an inner nest over the reduced
//!   dimensions (the operand's row-major order), accumulating in the operand's dtype exactly as
//!   the interpreter does (no `fma`, no reassociation).
//! - Data movement (`reshape`, `transpose`, `broadcast`, `slice`, `concat`): strided copies of
//!   the raw element bits.
//!
//! Function ABI (every function of a kernel):
//! `extern "C" fn(inputs: *const *const u8, outputs: *const *mut u8, ws: *mut u8,
//! consts: *const u8)`: arrays of the caller's buffer addresses in input/output order, the
//! workspace base (64-byte aligned) and the constant blob base (64-byte aligned).
//!
//! Deliberately absent: vectorization, unrolling and fusion of elementwise chains (the scalar
//! rules are already emitted through [`ScalarEmit`] inside a loop body, so a later tier can fuse
//! and vectorize without touching the rules).

use super::plan::{Loc, Plan};
use crate::ir::{Attrs, DType, Graph, NodeId, Op, broadcast_strides, strides};
use crate::ops::{self, Cmp, FBinary, FUnary, MathFn, SVal, ScalarEmit};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    AbiParam, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, MemFlagsData, Signature,
    Type, UserExternalName, Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::collections::HashMap;

/// The module-level function index of each math wrapper (declared as imports).
pub(super) type MathIds = HashMap<(MathFn, DType), u32>;

/// The signature every kernel function has (see the module docs).
pub(super) fn kernel_signature(ptr: Type, call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.extend([AbiParam::new(ptr); 4]);
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

/// Builds the body of `func` (whose signature is [`kernel_signature`]) computing `steps`.
pub(super) fn build_function(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    g: &Graph,
    plan: &Plan,
    steps: &[NodeId],
    math: &MathIds,
    target: TargetFrontendConfig,
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
        vals: Vec::new(),
    };
    for &id in steps {
        lw.node(id);
    }
    lw.b.ins().return_(&[]);
    lw.b.finalize(target);
}

/// Loads and stores never trap (the kernel checked every buffer) and are aligned to their
/// element size (Rust slices, the 64-byte aligned workspace and constant blob, and planned
/// offsets that are multiples of 8).
fn mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// The SSA type of an element of `dtype` (bool is a byte holding 0 or 1).
fn val_ty(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::Bool => types::I8,
    }
}

/// The integer type of the same size, for bit-exact copies.
fn bits_ty(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::I32,
        DType::F64 => types::I64,
        DType::Bool => types::I8,
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
    /// The values behind the [`SVal`]s of the node being lowered.
    vals: Vec<(Value, DType)>,
}

/// Byte strides of a row-major (contiguous) tensor of `shape` with `size`-byte elements.
fn contiguous(shape: &[usize], size: usize) -> Vec<i64> {
    strides(shape).iter().map(|&s| (s * size) as i64).collect()
}

/// Element strides scaled to bytes.
fn bytes(st: &[usize], size: usize) -> Vec<i64> {
    st.iter().map(|&s| (s * size) as i64).collect()
}

/// Merges adjacent loop dimensions that every access walks contiguously and drops dimensions
/// of size 1, keeping the row-major visiting order. `acc[a][k]` is access `a`'s byte stride
/// along dimension `k`; it is rewritten for the returned dimensions.
fn collapse(dims: &[usize], acc: &mut [Vec<i64>]) -> Vec<usize> {
    let mut out_dims: Vec<usize> = Vec::with_capacity(dims.len());
    let mut out_st: Vec<Vec<i64>> = vec![Vec::with_capacity(dims.len()); acc.len()];
    for (k, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && acc
                .iter()
                .zip(&out_st)
                .all(|(a, o)| *o.last().expect("non-empty") == a[k] * d as i64);
        if mergeable {
            *out_dims.last_mut().expect("non-empty") *= d;
            for (a, o) in acc.iter().zip(&mut out_st) {
                *o.last_mut().expect("non-empty") = a[k];
            }
        } else {
            out_dims.push(d);
            for (a, o) in acc.iter().zip(&mut out_st) {
                o.push(a[k]);
            }
        }
    }
    for (a, o) in acc.iter_mut().zip(out_st) {
        *a = o;
    }
    out_dims
}

type Body<'a, 'f, 'g> = &'a mut dyn FnMut(&mut Lowerer<'f, 'g>, &[Value]);

impl<'f, 'g> Lowerer<'f, 'g> {
    // ---- memory ----------------------------------------------------------------------------

    /// The source/destination of a planned home.
    fn home(&mut self, id: NodeId) -> Src {
        match self.plan.locs[id.index()] {
            Loc::Input(k) => {
                let p = self.load_at(self.ptr, self.inputs, None, (k * 8) as i64);
                Src::Mem(p, 0)
            }
            Loc::Output(k) => {
                let p = self.load_at(self.ptr, self.outputs, None, (k * 8) as i64);
                Src::Mem(p, 0)
            }
            Loc::Ws(off) => Src::Mem(self.ws, off as i64),
            Loc::Const(off) => Src::Mem(self.consts, off as i64),
            Loc::Splat(bits) => Src::Splat(bits),
            Loc::Unused => unreachable!("plan invariant: operands of a step are live"),
        }
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

    /// A constant of type `ty` with the given bits.
    fn constant(&mut self, ty: Type, bits: u64) -> Value {
        match ty {
            types::F32 => self.b.ins().f32const(Ieee32::with_bits(bits as u32)),
            types::F64 => self.b.ins().f64const(Ieee64::with_bits(bits)),
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

    // ---- loops -----------------------------------------------------------------------------

    /// Emits a row-major loop nest over `dims` (all > 1 after [`collapse`]; none means one
    /// straight-line execution) and calls `body` with the counters, outermost first.
    fn nest(&mut self, dims: &[usize], body: Body<'_, 'f, 'g>) {
        let mut idx = Vec::with_capacity(dims.len());
        self.nest_at(dims, &mut idx, body);
    }

    fn nest_at(&mut self, dims: &[usize], idx: &mut Vec<Value>, body: Body<'_, 'f, 'g>) {
        let Some((&d, rest)) = dims.split_first() else {
            body(self, idx);
            return;
        };
        // A do-while loop: every dimension is at least 1.
        let var = self.b.declare_var(types::I64);
        let zero = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(var, zero);
        let head = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let i = self.b.use_var(var);
        idx.push(i);
        self.nest_at(rest, idx, body);
        idx.pop();
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(var, next);
        let more = self
            .b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, next, d as i64);
        self.b.ins().brif(more, head, &[], exit, &[]);
        self.b.seal_block(head);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    // ---- nodes -----------------------------------------------------------------------------

    fn node(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        if let Some(lower) = ops::rules(node.op).lower {
            return self.elementwise(id, lower);
        }
        // Non-elementwise ops have no scalar rule: their loop structure is the JIT's business,
        // so this is the one place that dispatches on them.
        match node.op {
            Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => self.reduce(id),
            Op::Matmul => self.matmul(id),
            Op::Reshape => {
                let out = &node.ty.shape;
                let size = node.ty.dtype.size_bytes();
                let st = contiguous(out, size);
                let src = self.home(node.inputs[0]);
                let dst = self.home(id);
                self.copy(node.ty.dtype, out, dst, st.clone(), src, st);
            }
            Op::Transpose => {
                let Attrs::Perm { perm } = &node.attrs else {
                    unreachable!("verified transpose has a perm")
                };
                let size = node.ty.dtype.size_bytes();
                let xs = strides(&g.ty(node.inputs[0]).shape);
                let src_st: Vec<i64> = perm.iter().map(|&p| (xs[p] * size) as i64).collect();
                let src = self.home(node.inputs[0]);
                let dst = self.home(id);
                let out = &node.ty.shape;
                self.copy(node.ty.dtype, out, dst, contiguous(out, size), src, src_st);
            }
            Op::Broadcast => {
                let size = node.ty.dtype.size_bytes();
                let out = &node.ty.shape;
                let src_st = bytes(&broadcast_strides(&g.ty(node.inputs[0]).shape, out), size);
                let src = self.home(node.inputs[0]);
                let dst = self.home(id);
                self.copy(node.ty.dtype, out, dst, contiguous(out, size), src, src_st);
            }
            Op::Slice => {
                let Attrs::Slice { start, .. } = &node.attrs else {
                    unreachable!("verified slice has bounds")
                };
                let size = node.ty.dtype.size_bytes();
                let xs = contiguous(&g.ty(node.inputs[0]).shape, size);
                let base: i64 = start.iter().zip(&xs).map(|(&a, &s)| a as i64 * s).sum();
                let src = self.home(node.inputs[0]).offset_by(base);
                let dst = self.home(id);
                let out = &node.ty.shape;
                self.copy(node.ty.dtype, out, dst, contiguous(out, size), src, xs);
            }
            Op::Concat => {
                let Attrs::Axis { axis } = node.attrs else {
                    unreachable!("verified concat has an axis")
                };
                let size = node.ty.dtype.size_bytes();
                let out = &node.ty.shape;
                let outer: usize = out[..axis].iter().product();
                let inner: usize = out[axis + 1..].iter().product();
                let total = out[axis] * inner;
                let dst = self.home(id);
                let mut at = 0usize;
                for &x in &node.inputs {
                    let run = g.ty(x).shape[axis] * inner;
                    let src = self.home(x);
                    let d = dst.offset_by((at * size) as i64);
                    self.copy(
                        node.ty.dtype,
                        &[outer, run],
                        d,
                        vec![(total * size) as i64, size as i64],
                        src,
                        vec![(run * size) as i64, size as i64],
                    );
                    at += run;
                }
            }
            op => unreachable!("{op} has no lowering (elementwise ops use their rule)"),
        }
    }

    fn elementwise(&mut self, id: NodeId, lower: ops::LowerScalar) {
        let g = self.g;
        let node = g.node(id);
        let out = &node.ty.shape;
        let mut acc = vec![contiguous(out, node.ty.dtype.size_bytes())];
        let mut srcs = Vec::with_capacity(node.inputs.len());
        let mut dts = Vec::with_capacity(node.inputs.len());
        for &x in &node.inputs {
            let t = g.ty(x);
            acc.push(bytes(
                &broadcast_strides(&t.shape, out),
                t.dtype.size_bytes(),
            ));
            srcs.push(self.home(x));
            dts.push(t.dtype);
        }
        let dims = collapse(out, &mut acc);
        let dst = self.home(id);
        let mut args = Vec::with_capacity(srcs.len());
        self.nest(&dims, &mut |lw, idx| {
            lw.vals.clear();
            args.clear();
            for (j, (&src, &dt)) in srcs.iter().zip(&dts).enumerate() {
                let off = lw.offset(idx, &acc[j + 1]);
                let v = lw.load(src, val_ty(dt), off);
                args.push(lw.sval(v, dt));
            }
            let r = lower(lw, node, &args);
            let v = lw.vals[r.0 as usize].0;
            let off = lw.offset(idx, &acc[0]);
            lw.store(dst, v, off);
        });
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

    fn reduce(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let Attrs::Reduce { axes, .. } = &node.attrs else {
            unreachable!("verified reductions have axes")
        };
        let x = node.inputs[0];
        let xt = g.ty(x);
        let dt = node.ty.dtype;
        let size = dt.size_bytes();
        let xs = contiguous(&xt.shape, size);
        let kept: Vec<usize> = (0..xt.rank()).filter(|a| !axes.contains(a)).collect();
        let kept_shape: Vec<usize> = kept.iter().map(|&a| xt.shape[a]).collect();
        let red_shape: Vec<usize> = axes.iter().map(|&a| xt.shape[a]).collect();
        let mut outer = [
            contiguous(&kept_shape, size),
            kept.iter().map(|&a| xs[a]).collect::<Vec<_>>(),
        ];
        let outer_dims = collapse(&kept_shape, &mut outer);
        let mut inner = [axes.iter().map(|&a| xs[a]).collect::<Vec<_>>()];
        let inner_dims = collapse(&red_shape, &mut inner);
        let count = red_shape.iter().product::<usize>();
        let op = node.op;
        let init: f64 = match op {
            Op::ReduceMax => f64::NEG_INFINITY,
            Op::ReduceMin => f64::INFINITY,
            _ => 0.0,
        };
        let ty = val_ty(dt);
        let src = self.home(x);
        let dst = self.home(id);
        self.nest(&outer_dims, &mut |lw, oi| {
            let acc = lw.b.declare_var(ty);
            let z = lw.float(dt, init);
            lw.b.def_var(acc, z);
            let xo = lw.offset(oi, &outer[1]);
            lw.nest(&inner_dims, &mut |lw, ii| {
                let xi = lw.offset(ii, &inner[0]);
                let off = lw.add_off(xo, xi);
                let v = lw.load(src, ty, off);
                let a = lw.b.use_var(acc);
                let r = match op {
                    Op::ReduceMax => lw.extreme(dt, a, v, FloatCC::GreaterThan),
                    Op::ReduceMin => lw.extreme(dt, a, v, FloatCC::LessThan),
                    _ => lw.b.ins().fadd(a, v),
                };
                lw.b.def_var(acc, r);
            });
            let mut a = lw.b.use_var(acc);
            if op == Op::ReduceMean {
                let c = lw.float(dt, count as f64);
                a = lw.b.ins().fdiv(a, c);
            }
            let off = lw.offset(oi, &outer[0]);
            lw.store(dst, a, off);
        });
    }

    /// The interpreter's `reduce_max`/`reduce_min` step: NaN if either is NaN, else `v` if it
    /// beats `a` strictly, else `a`.
    fn extreme(&mut self, dt: DType, a: Value, v: Value, beats: FloatCC) -> Value {
        let wins = self.b.ins().fcmp(beats, v, a);
        let r = self.b.ins().select(wins, v, a);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, a, v);
        let q = self.nan(dt);
        self.b.ins().select(nan, q, r)
    }

    fn matmul(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let (xt, yt) = (g.ty(node.inputs[0]), g.ty(node.inputs[1]));
        let dt = node.ty.dtype;
        let size = dt.size_bytes() as i64;
        let r = node.ty.rank();
        let (m, k, n) = (
            xt.shape[xt.rank() - 2],
            xt.shape[xt.rank() - 1],
            node.ty.shape[r - 1],
        );
        let batch = &node.ty.shape[..r - 2];
        let bx = broadcast_strides(&xt.shape[..xt.rank() - 2], batch);
        let by = broadcast_strides(&yt.shape[..yt.rank() - 2], batch);
        let (mi, ki, ni) = (m as i64, k as i64, n as i64);
        let mut xo: Vec<i64> = bx.iter().map(|&s| s as i64 * mi * ki * size).collect();
        xo.extend([ki * size, 0]);
        let mut yo: Vec<i64> = by.iter().map(|&s| s as i64 * ki * ni * size).collect();
        yo.extend([0, size]);
        let mut outer = [contiguous(&node.ty.shape, size as usize), xo, yo];
        let outer_dims = collapse(&node.ty.shape, &mut outer);
        let mut inner = [vec![size], vec![ni * size]];
        let inner_dims = collapse(&[k], &mut inner);
        let ty = val_ty(dt);
        let (sx, sy) = (self.home(node.inputs[0]), self.home(node.inputs[1]));
        let dst = self.home(id);
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

    // ---- scalar helpers --------------------------------------------------------------------

    fn float(&mut self, dt: DType, x: f64) -> Value {
        match dt {
            DType::F32 => self.b.ins().f32const(x as f32),
            _ => self.b.ins().f64const(x),
        }
    }

    /// The NaN the interpreter produces (`f32::NAN` / `f64::NAN`).
    fn nan(&mut self, dt: DType) -> Value {
        match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        }
    }

    fn sval(&mut self, v: Value, dt: DType) -> SVal {
        self.vals.push((v, dt));
        SVal((self.vals.len() - 1) as u32)
    }

    fn val(&self, x: SVal) -> Value {
        self.vals[x.0 as usize].0
    }

    fn math_ref(&mut self, f: MathFn, dt: DType) -> FuncRef {
        if let Some(&r) = self.math_refs.get(&(f, dt)) {
            return r;
        }
        let index = self.math[&(f, dt)];
        let sig = self
            .b
            .import_signature(math_signature(f, dt, self.call_conv));
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        let r = self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature: sig,
            colocated: false,
            patchable: false,
        });
        self.math_refs.insert((f, dt), r);
        r
    }
}

impl ScalarEmit for Lowerer<'_, '_> {
    fn fconst(&mut self, dtype: DType, x: f64) -> SVal {
        let v = match dtype {
            DType::Bool => self.b.ins().iconst(types::I8, i64::from(x != 0.0)),
            d => self.float(d, x),
        };
        self.sval(v, dtype)
    }

    fn unary(&mut self, op: FUnary, x: SVal) -> SVal {
        let (v, dt) = self.vals[x.0 as usize];
        let r = match op {
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
        let r = self.math_ref(f, dt);
        let vs: Vec<Value> = args.iter().map(|&a| self.val(a)).collect();
        let inst = self.b.ins().call(r, &vs);
        let v = self.b.inst_results(inst)[0];
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
        let r = self.b.ins().fcmp(cc, x, y);
        self.sval(r, DType::Bool)
    }

    fn select(&mut self, c: SVal, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.vals[a.0 as usize];
        let (c, y) = (self.val(c), self.val(b));
        let r = self.b.ins().select(c, x, y);
        self.sval(r, dt)
    }

    fn cast(&mut self, x: SVal, to: DType) -> SVal {
        let (v, from) = self.vals[x.0 as usize];
        let r = match (from, to) {
            (a, b) if a == b => v,
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
        let pick = self.b.ins().select(wins, x, y);
        let it = bits_ty(dt);
        let (xi, yi) = (
            self.b.ins().bitcast(it, MemFlagsData::new(), x),
            self.b.ins().bitcast(it, MemFlagsData::new(), y),
        );
        let tie_bits = if max {
            self.b.ins().band(xi, yi)
        } else {
            self.b.ins().bor(xi, yi)
        };
        let tie = self
            .b
            .ins()
            .bitcast(val_ty(dt), MemFlagsData::new(), tie_bits);
        let eq = self.b.ins().fcmp(FloatCC::Equal, x, y);
        let r = self.b.ins().select(eq, tie, pick);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, y);
        let q = self.nan(dt);
        self.b.ins().select(nan, q, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::TensorType;

    /// Lowers all of `g` into one function and returns (blocks, CLIF text).
    fn lowered(g: &Graph) -> (usize, String) {
        let plan = super::super::plan::plan(g, usize::MAX, true).unwrap();
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
        build_function(&mut func, &mut fctx, g, &plan, &plan.steps, &math, target);
        (func.layout.blocks().count(), func.display().to_string())
    }

    #[test]
    fn scalar_nodes_are_straight_line_and_tensors_are_flat_loops() {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
        let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
        let z = g.push(Op::Exp, vec![y], Attrs::None).unwrap();
        g.set_outputs(vec![z]);
        let (blocks, clif) = lowered(&g);
        assert_eq!(blocks, 1, "{clif}");
        assert!(clif.contains("fmul") && clif.contains("call"), "{clif}");

        // [2,3] + [2,3] and [2,3] * scalar: one flat loop each (entry, then head + exit per
        // loop).
        let mut g = Graph::new("t");
        let a = g
            .add_input("a", TensorType::new(DType::F32, vec![2, 3]))
            .unwrap();
        let s = g.add_input("s", TensorType::scalar(DType::F32)).unwrap();
        let y = g.push(Op::Add, vec![a, a], Attrs::None).unwrap();
        let z = g.push(Op::Mul, vec![y, s], Attrs::None).unwrap();
        g.set_outputs(vec![z]);
        let (blocks, clif) = lowered(&g);
        assert_eq!(blocks, 1 + 2 + 2, "{clif}");

        // A true broadcast ([2,1] + [1,3]) needs a two-level nest.
        let mut g = Graph::new("t");
        let a = g
            .add_input("a", TensorType::new(DType::F64, vec![2, 1]))
            .unwrap();
        let b = g
            .add_input("b", TensorType::new(DType::F64, vec![1, 3]))
            .unwrap();
        let y = g.push(Op::Sub, vec![a, b], Attrs::None).unwrap();
        g.set_outputs(vec![y]);
        assert_eq!(lowered(&g).0, 1 + 4);
    }

    #[test]
    fn collapse_merges_contiguous_dims_and_keeps_broadcast_ones() {
        // out [2,3,4] contiguous; operand [3,4] broadcast over axis 0.
        let mut acc = vec![vec![96, 32, 8], vec![0, 32, 8]];
        let dims = collapse(&[2, 3, 4], &mut acc);
        assert_eq!(dims, vec![2, 12]);
        assert_eq!(acc, vec![vec![96, 8], vec![0, 8]]);
        // Everything contiguous: one flat loop.
        let mut acc = vec![vec![48, 16, 4]];
        assert_eq!(collapse(&[2, 3, 4], &mut acc), vec![24]);
        assert_eq!(acc, vec![vec![4]]);
        // Size-1 dims vanish; a transpose does not merge.
        let mut acc = vec![vec![24, 8, 8], vec![8, 8, 16]];
        assert_eq!(collapse(&[2, 1, 3], &mut acc), vec![2, 3]);
        assert_eq!(acc, vec![vec![24, 8], vec![8, 16]]);
    }
}
