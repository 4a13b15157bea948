//! Lowering of the indexing ops and the random-number op: `gather`, `scatter_add`, `iota`,
//! `argmax`/`argmin`, `random_uniform`. Each is a singleton group (the plan never fuses them)
//! emitted as its own scalar loop nest that reads its operands through their views' strides
//! and writes its contiguous home.
//!
//! Indices are loaded as `i32` and clamped to `0..=n-1` before they address memory (the
//! semantics of `ops::index`), so no index can reach outside its tensor. `scatter_add` zeroes
//! its output, then adds the updates in their row-major order (the interpreter's order), so
//! repeated indices sum bitwise alike. `argmax`/`argmin` scan the axis keeping the first
//! extreme, a NaN stopping the scan. `random_uniform` runs Philox-4x32-10 once per block of
//! four 32-bit words, emitted here with Cranelift integer instructions (independently of the
//! interpreter's Rust version; both are checked against Random123's known answers).
//!
//! Not done here: vectorization or fusion of these ops, and threads (they run on the calling
//! thread).

use super::loops::Bound;
use super::{Lowerer, Src, bits_ty, val_ty};
use crate::ir::{Attrs, DType, NodeId};
use crate::jit::layout::{row_major_bytes, to_bytes};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value, types};

/// Philox-4x32 multipliers and key increments (Random123's constants).
const M0: i64 = 0xD251_1F53;
const M1: i64 = 0xCD9E_8D57;
const W0: i64 = 0x9E37_79B9;
const W1: i64 = 0xBB67_AE85;

impl Lowerer<'_, '_> {
    /// The memory and byte strides of operand `x` (its view).
    fn operand(&mut self, x: NodeId) -> (Src, Vec<i64>) {
        let v = self.view(x);
        let size = self.g.ty(x).dtype.size_bytes();
        let src = self.root_src(v.root).offset_by(v.offset * size as i64);
        (src, to_bytes(&v.strides, size))
    }

    /// Loads the `i32` index at `off` of `src` and clamps it to `0..=n-1`, as an `i64`.
    fn clamped_index(&mut self, src: Src, off: Option<Value>, n: usize) -> Value {
        let j = self.load(src, types::I32, off);
        let zero = self.b.ins().iconst(types::I32, 0);
        let hi = self.b.ins().iconst(types::I32, n as i64 - 1);
        let j = self.b.ins().smax(j, zero);
        let j = self.b.ins().smin(j, hi);
        self.b.ins().uextend(types::I64, j)
    }

    /// `Σ idx[k]·st[k] + j·stj` bytes.
    fn offset_with(&mut self, idx: &[Value], st: &[i64], j: Value, stj: i64) -> Option<Value> {
        let o = self.offset(idx, st);
        let jo = self.b.ins().imul_imm_s(j, stj);
        self.add_off(o, Some(jo))
    }

    /// `gather`: for each output index, the clamped index picks the row of `x` to copy.
    pub(super) fn gather(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let Attrs::Axis { axis } = node.attrs else {
            unreachable!("verified gather has an axis")
        };
        let (x, ix) = (node.inputs[0], node.inputs[1]);
        let n = g.ty(x).shape[axis];
        let k = g.ty(ix).rank();
        let dt = node.ty.dtype;
        let (xs, xst) = self.operand(x);
        let (is, ist) = self.operand(ix);
        let dst = self.home(id);
        let out_st = row_major_bytes(&node.ty.shape, dt.size_bytes());
        let shape = node.ty.shape.clone();
        self.nest(&shape, &mut |lw, idx| {
            let io = lw.offset(&idx[axis..axis + k], &ist);
            let j = lw.clamped_index(is, io, n);
            let pre = lw.offset(&idx[..axis], &xst[..axis]);
            let post = lw.offset_with(&idx[axis + k..], &xst[axis + 1..], j, xst[axis]);
            let xo = lw.add_off(pre, post);
            let v = lw.load(xs, bits_ty(dt), xo);
            let d = lw.offset(idx, &out_st);
            lw.store(dst, v, d);
        });
    }

    /// `scatter_add`: zeros, then each update added at its clamped index, in row-major order
    /// of the updates.
    pub(super) fn scatter_add(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let Attrs::Scatter { axis, size } = node.attrs else {
            unreachable!("verified scatter_add has its attributes")
        };
        let (u, ix) = (node.inputs[0], node.inputs[1]);
        let k = g.ty(ix).rank();
        let dt = node.ty.dtype;
        let ty = val_ty(dt);
        let (us, ust) = self.operand(u);
        let (is, ist) = self.operand(ix);
        let dst = self.home(id);
        let out_st = row_major_bytes(&node.ty.shape, dt.size_bytes());
        let shape = node.ty.shape.clone();
        self.nest(&shape, &mut |lw, idx| {
            let z = lw.float(dt, 0.0);
            let d = lw.offset(idx, &out_st);
            lw.store(dst, z, d);
        });
        let ushape = g.ty(u).shape.clone();
        self.nest(&ushape, &mut |lw, idx| {
            let io = lw.offset(&idx[axis..axis + k], &ist);
            let j = lw.clamped_index(is, io, size);
            let pre = lw.offset(&idx[..axis], &out_st[..axis]);
            let post = lw.offset_with(&idx[axis + k..], &out_st[axis + 1..], j, out_st[axis]);
            let d = lw.add_off(pre, post);
            let acc = lw.load(dst, ty, d);
            let uo = lw.offset(idx, &ust);
            let v = lw.load(us, ty, uo);
            let s = lw.b.ins().fadd(acc, v);
            lw.store(dst, s, d);
        });
    }

    /// `iota`: each element is its index along the axis, converted to the dtype.
    pub(super) fn iota(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let Attrs::Iota { axis, .. } = node.attrs else {
            unreachable!("verified iota has its attributes")
        };
        let dt = node.ty.dtype;
        let dst = self.home(id);
        let out_st = row_major_bytes(&node.ty.shape, dt.size_bytes());
        let shape = node.ty.shape.clone();
        self.nest(&shape, &mut |lw, idx| {
            let i = idx[axis];
            let v = match dt {
                DType::I32 => lw.b.ins().ireduce(types::I32, i),
                d => lw.b.ins().fcvt_from_sint(val_ty(d), i),
            };
            let d = lw.offset(idx, &out_st);
            lw.store(dst, v, d);
        });
    }

    /// `argmax`/`argmin`: the first index of the extreme along the axis; a NaN (float
    /// operands) is taken at once and ends the search.
    pub(super) fn arg_extreme(&mut self, id: NodeId, max: bool) {
        let g = self.g;
        let node = g.node(id);
        let Attrs::Axis { axis } = node.attrs else {
            unreachable!("verified argmax/argmin has an axis")
        };
        let x = node.inputs[0];
        let xdt = g.ty(x).dtype;
        let n = g.ty(x).shape[axis];
        let (xs, xst) = self.operand(x);
        let dst = self.home(id);
        let out_st = row_major_bytes(&node.ty.shape, 4);
        let shape = node.ty.shape.clone();
        self.nest(&shape, &mut |lw, idx| {
            let pre = lw.offset(&idx[..axis], &xst[..axis]);
            let post = lw.offset(&idx[axis..], &xst[axis + 1..]);
            let base = lw.add_off(pre, post);
            let first = lw.load(xs, val_ty(xdt), base);
            let best = lw.var(types::I64);
            let bv = lw.var(val_ty(xdt));
            let zero = lw.b.ins().iconst(types::I64, 0);
            lw.b.def_var(best, zero);
            lw.b.def_var(bv, first);
            if n > 1 {
                let l = lw.loop_begin(Bound::C(1), Bound::C(n as i64));
                let jo = lw.b.ins().imul_imm_s(l.i, xst[axis]);
                let o = lw.add_off(base, Some(jo));
                let v = lw.load(xs, val_ty(xdt), o);
                let cur = lw.b.use_var(bv);
                let take = if xdt == DType::I32 {
                    let cc = if max {
                        IntCC::SignedGreaterThan
                    } else {
                        IntCC::SignedLessThan
                    };
                    lw.b.ins().icmp(cc, v, cur)
                } else {
                    let cc = if max {
                        FloatCC::GreaterThan
                    } else {
                        FloatCC::LessThan
                    };
                    let beats = lw.b.ins().fcmp(cc, v, cur);
                    let v_nan = lw.b.ins().fcmp(FloatCC::Unordered, v, v);
                    let cur_ok = lw.b.ins().fcmp(FloatCC::Ordered, cur, cur);
                    let hit = lw.b.ins().bor(beats, v_nan);
                    lw.b.ins().band(hit, cur_ok)
                };
                let old = lw.b.use_var(best);
                let nb = lw.b.ins().select(take, l.i, old);
                let nv = lw.b.ins().select(take, v, cur);
                lw.b.def_var(best, nb);
                lw.b.def_var(bv, nv);
                lw.loop_end(l);
            }
            let r = lw.b.use_var(best);
            let r = lw.b.ins().ireduce(types::I32, r);
            let d = lw.offset(idx, &out_st);
            lw.store(dst, r, d);
        });
    }

    /// One Philox-4x32-10 block: the four words encrypted from counter `[j, c1, 0, 0]` under
    /// key `[k0, 0]` (all `i32` values holding `u32` bits).
    fn philox(&mut self, j: Value, c1: Value, k0: Value) -> [Value; 4] {
        let z = self.b.ins().iconst(types::I32, 0);
        let mut c = [j, c1, z, z];
        let mut k = [k0, z];
        for round in 0..10 {
            if round > 0 {
                k = [
                    self.b.ins().iadd_imm_s(k[0], W0),
                    self.b.ins().iadd_imm_s(k[1], W1),
                ];
            }
            let m0 = self.b.ins().iconst(types::I32, M0);
            let m1 = self.b.ins().iconst(types::I32, M1);
            let hi0 = self.b.ins().umulhi(m0, c[0]);
            let lo0 = self.b.ins().imul(m0, c[0]);
            let hi1 = self.b.ins().umulhi(m1, c[2]);
            let lo1 = self.b.ins().imul(m1, c[2]);
            let a = self.b.ins().bxor(hi1, c[1]);
            let a = self.b.ins().bxor(a, k[0]);
            let b = self.b.ins().bxor(hi0, c[3]);
            let b = self.b.ins().bxor(b, k[1]);
            c = [a, lo1, b, lo0];
        }
        c
    }

    /// The uniform `[0, 1)` element of `dt` made from Philox words (one word for `f32`, a
    /// low and a high word for `f64`), as `ops::random` defines it.
    fn uniform(&mut self, dt: DType, lo: Value, hi: Value) -> Value {
        if dt == DType::F32 {
            let top = self.b.ins().ushr_imm_u(lo, 8);
            let f = self.b.ins().fcvt_from_uint(types::F32, top);
            let s = self.b.ins().f32const(1.0 / 16_777_216.0);
            return self.b.ins().fmul(f, s);
        }
        let lo = self.b.ins().uextend(types::I64, lo);
        let hi = self.b.ins().uextend(types::I64, hi);
        let hi = self.b.ins().ishl_imm_u(hi, 32);
        let bits = self.b.ins().bor(hi, lo);
        let top = self.b.ins().ushr_imm_u(bits, 11);
        let f = self.b.ins().fcvt_from_uint(types::F64, top);
        let s = self.b.ins().f64const(1.0 / 9_007_199_254_740_992.0);
        self.b.ins().fmul(f, s)
    }

    /// `random_uniform`: a loop over the whole Philox blocks, then the partial last block.
    pub(super) fn random_uniform(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let dt = node.ty.dtype;
        let numel = node.ty.numel();
        let per = if dt == DType::F32 { 4 } else { 2 };
        let (ss, _) = self.operand(node.inputs[0]);
        let (cs, _) = self.operand(node.inputs[1]);
        let dst = self.home(id);
        let size = dt.size_bytes() as i64;
        // Stores the first `count` elements of block `j` (an i64) at element `j·per`.
        let block = |lw: &mut Lowerer<'_, '_>, j: Value, count: usize| {
            let k0 = lw.load(ss, types::I32, None);
            let c1 = lw.load(cs, types::I32, None);
            let j32 = lw.b.ins().ireduce(types::I32, j);
            let w = lw.philox(j32, c1, k0);
            let base = lw.b.ins().imul_imm_s(j, per as i64 * size);
            for e in 0..count {
                let v = match dt {
                    DType::F32 => lw.uniform(dt, w[e], w[e]),
                    _ => lw.uniform(dt, w[2 * e], w[2 * e + 1]),
                };
                lw.store(dst.offset_by(e as i64 * size), v, Some(base));
            }
        };
        let full = numel / per;
        if full > 0 {
            let l = self.loop_begin(Bound::C(0), Bound::C(full as i64));
            block(self, l.i, per);
            self.loop_end(l);
        }
        if !numel.is_multiple_of(per) {
            let j = self.b.ins().iconst(types::I64, full as i64);
            block(self, j, numel % per);
        }
    }
}
