//! `cumsum`: per row along its axis, a serial loop carrying the running sum.

use super::loops::Bound;
use super::{Lowerer, val_ty};
use crate::ir::{Attrs, NodeId};
use crate::jit::layout::{collapse, row_major_bytes, to_bytes};
use cranelift_codegen::ir::InstBuilder;

impl Lowerer<'_, '_> {
    /// `cumsum`: a nest over the other axes, and per row the interpreter's order: the first
    /// element copied, then each later one the previous result plus the operand element, so
    /// the result is the interpreter's bit for bit. With `reverse` the row is walked from its
    /// last element (negative strides). The operand is read through its view's strides.
    pub(super) fn cumsum(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let Attrs::Cumsum { axis, reverse } = node.attrs else {
            unreachable!("verified cumsum has its attributes")
        };
        let dt = node.ty.dtype;
        let size = dt.size_bytes();
        let ty = val_ty(dt);
        let mut rows = node.ty.shape.clone();
        let n = rows.remove(axis) as i64;
        let v = self.view(node.inputs[0]);
        let mut src = self.root_src(v.root).offset_by(v.offset * size as i64);
        let mut src_st = to_bytes(&v.strides, size);
        let mut dst = self.home(id);
        let mut dst_st = row_major_bytes(&node.ty.shape, size);
        let (mut s_ax, mut d_ax) = (src_st.remove(axis), dst_st.remove(axis));
        if reverse {
            src = src.offset_by((n - 1) * s_ax);
            dst = dst.offset_by((n - 1) * d_ax);
            (s_ax, d_ax) = (-s_ax, -d_ax);
        }
        let mut acc = [dst_st, src_st];
        let dims = collapse(&rows, &mut acc);
        self.nest(&dims, &mut |lw, idx| {
            let d0 = lw.offset(idx, &acc[0]);
            let s0 = lw.offset(idx, &acc[1]);
            let first = lw.load(src, ty, s0);
            lw.store(dst, first, d0);
            if n == 1 {
                return;
            }
            let sum = lw.var(ty);
            lw.b.def_var(sum, first);
            let l = lw.loop_begin(Bound::C(1), Bound::C(n));
            let so = lw.b.ins().imul_imm_s(l.i, s_ax);
            let so = lw.add_off(s0, Some(so));
            let x = lw.load(src, ty, so);
            let prev = lw.b.use_var(sum);
            let y = lw.b.ins().fadd(prev, x);
            lw.b.def_var(sum, y);
            let dof = lw.b.ins().imul_imm_s(l.i, d_ax);
            let dof = lw.add_off(d0, Some(dof));
            lw.store(dst, y, dof);
            lw.loop_end(l);
        });
    }
}
