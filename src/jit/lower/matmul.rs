//! Nodes with a lowering of their own: `matmul` (GEMM calls or a loop nest, as the plan
//! decided), strided copies (a `concat` kept in memory, a realized view), and the dispatch to
//! `cumsum` (`scan.rs`).

use super::{Lowerer, Src, bits_ty, val_ty};
use crate::ir::{Attrs, DType, NodeId, Op};
use crate::jit::layout::{View, collapse, matrix_strides, row_major_bytes, to_bytes};
use crate::jit::plan::Accumulate;
use cranelift_codegen::ir::InstBuilder;

impl<'f, 'g> Lowerer<'f, 'g> {
    /// Copies view `v` into the home of `id`.
    pub(super) fn realize(&mut self, id: NodeId, v: &View) {
        let ty = self.g.ty(id);
        let size = ty.dtype.size_bytes();
        let src = self.root_src(v.root).offset_by(v.offset * size as i64);
        let dst = self.home(id);
        let shape = ty.shape.clone();
        self.copy(
            ty.dtype,
            &shape,
            dst,
            row_major_bytes(&shape, size),
            src,
            to_bytes(&v.strides, size),
        );
    }

    pub(super) fn node(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        // Non-fused ops have no scalar rule: their loop structure is the JIT's business, so
        // this is the one place that dispatches on them.
        match node.op {
            Op::Concat => {
                let Attrs::Axis { axis } = node.attrs else {
                    unreachable!("verified concat has an axis")
                };
                let size = node.ty.dtype.size_bytes();
                let out = &node.ty.shape;
                let out_st = row_major_bytes(out, size);
                let dst = self.home(id);
                let mut at = 0i64;
                for &x in &node.inputs {
                    let xs = g.ty(x).shape.clone();
                    let v = self.view(x);
                    let src = self.root_src(v.root).offset_by(v.offset * size as i64);
                    let src_st = to_bytes(&v.strides, size);
                    let d = dst.offset_by(at * out_st[axis]);
                    self.copy(node.ty.dtype, &xs, d, out_st.clone(), src, src_st);
                    at += xs[axis] as i64;
                }
            }
            Op::Cumsum => self.cumsum(id),
            Op::Gather => self.gather(id),
            Op::ScatterAdd => self.scatter_add(id),
            Op::Iota => self.iota(id),
            Op::Argmax => self.arg_extreme(id, true),
            Op::Argmin => self.arg_extreme(id, false),
            Op::RandomUniform => self.random_uniform(id),
            Op::AllReduceSum
            | Op::AllReduceMean
            | Op::NumRanks
            | Op::AxisIndex
            | Op::AllGather
            | Op::ReduceScatter
            | Op::CollectiveBroadcast => self.collective(id),
            op => unreachable!("{op} is fused or a view"),
        }
    }

    /// A strided copy of raw element bits: `dst[i] = src[i]` over the row-major nest `dims`.
    pub(super) fn copy(
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
    /// wrapper (see [`crate::jit::gemm`]) or, with `exact_math` and for small products, splat
    /// operands and broadcast rows/columns (decided by the plan, [`Group::Matmul`](crate::jit::plan::Group::Matmul)), an `i, j` nest
    /// accumulating over `p` in the interpreter's order. Both read each operand through its
    /// view's strides. With an epilogue (`acc`, GEMM only) the destination is the epilogue
    /// node's home, and the wrapper gets the initial value's address (the same address when
    /// the plan updates it in place; the wrapper copies it otherwise).
    pub(super) fn matmul(&mut self, id: NodeId, gemm: bool, acc: Option<&Accumulate>) {
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
            let (rs, cs) = matrix_strides(g, x, v);
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
        let ob: Vec<i64> = row_major_bytes(batch, size as usize)
            .iter()
            .map(|s| s * (m * n) as i64)
            .collect();
        let dst = self.home(acc.map_or(id, |a| a.out));
        // init, alpha, beta: `dst = alpha·init + beta·(x·y)`, or `dst = x·y` (no init).
        let (init, alpha, beta) = match acc {
            Some(a) => (Some(self.home(a.init)), a.alpha, a.beta),
            None => (None, 0.0, 1.0),
        };
        let [(xrs, xcs), (yrs, ycs)] = mats;
        let [sx, sy] = homes;
        if gemm {
            debug_assert!(acc.is_none() || batch.is_empty(), "epilogues are rank 2");
            let init = init.map(|s| {
                let Src::Mem(base, off) = s else {
                    unreachable!("plan invariant: an epilogue's initial value is in memory")
                };
                let (p, o) = self.addr(base, None, off);
                self.b.ins().iadd_imm_s(p, i64::from(o))
            });
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
                // m, n, k, dst, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs (strides in elements),
                // init (0: none), alpha, beta.
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
                    init.unwrap_or_else(|| int(0)),
                    lw.b.ins().f64const(alpha),
                    lw.b.ins().f64const(beta),
                ];
                lw.b.ins().call(f, &args);
            });
            return;
        }
        debug_assert!(
            acc.is_none(),
            "plan invariant: epilogues only on GEMM calls"
        );
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
            let acc = lw.var(ty);
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
}
