//! Reductions: accumulators in registers or memory, their fixed folding order, the fills and
//! divisions of outputs, and the fold of per-chunk partial results.

use super::fused::{Cx, Mode, Outer, Pos};
use super::loops::Bound;
use super::{Lowerer, Src, mask_ty, mem, val_ty, vec_ty, vmem};
use crate::ir::{DType, Op};
use crate::jit::plan::Group;
use crate::ops::SVal;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{ConstantData, InstBuilder, Value};
use cranelift_frontend::Variable;
use std::cell::Cell;

/// A reduction's code-generation state.
pub(super) struct RedCx {
    pub(super) op: Op,
    pub(super) dt: DType,
    /// The output (or the partial results).
    pub(super) target: Src,
    pub(super) partial: bool,
    /// Output element strides in bytes over the loop dimensions.
    pub(super) st: Vec<i64>,
    /// Register accumulation: the innermost kept dimension (`None`: every dimension is
    /// reduced). `None` for memory accumulation.
    pub(super) register: Option<Option<usize>>,
    /// Register accumulators are also added into memory (an outer dimension is reduced).
    pub(super) across: bool,
    pub(super) vars: Vec<Variable>,
    /// Vector register `reduce_max`/`reduce_min` (not sequential): the lanes that have seen a
    /// NaN, so that the accumulators can use the native max/min instructions (which drop a
    /// NaN operand) and the result is still NaN.
    pub(super) nan: Option<Variable>,
    /// An operand vector whose NaN test waits for the next one: one unordered compare tests
    /// two vectors (see [`Lowerer::flush_nan`]).
    pub(super) pending: Cell<Option<Value>>,
    /// Operand elements per output element.
    pub(super) count: usize,
    pub(super) numel_out: usize,
}

impl<'f, 'g> Lowerer<'f, 'g> {
    /// The identity of a reduction, as a scalar.
    pub(super) fn identity(&mut self, r: &RedCx) -> Value {
        let x = match r.op {
            Op::ReduceMax => f64::NEG_INFINITY,
            Op::ReduceMin => f64::INFINITY,
            _ => 0.0,
        };
        self.float(r.dt, x)
    }

    /// `a ⊕ v` for reduction `r` (scalars or vectors).
    pub(super) fn fold(&mut self, r: &RedCx, a: Value, v: Value) -> Value {
        match r.op {
            Op::ReduceMax => self.extreme(r.dt, a, v, FloatCC::GreaterThan),
            Op::ReduceMin => self.extreme(r.dt, a, v, FloatCC::LessThan),
            _ => self.b.ins().fadd(a, v),
        }
    }

    /// The target of reduction `r` for chunk `chunk` (partial results are per chunk).
    pub(super) fn red_target(&mut self, r: &RedCx, chunk: Option<Value>) -> (Src, Option<Value>) {
        match (r.partial, chunk) {
            (true, Some(b)) => {
                let per = (r.numel_out * r.dt.size_bytes()) as i64;
                let o = self.b.ins().imul_imm_s(b, per);
                (r.target, Some(o))
            }
            _ => (r.target, None),
        }
    }

    /// Fills (or, with `divide`, divides by the count) the part of reduction `r`'s target that
    /// chunk `chunk` writes.
    pub(super) fn fill_outputs(
        &mut self,
        cx: &Cx<'_>,
        r: &RedCx,
        chunk: Option<Value>,
        row_lo: Bound,
        row_hi: Bound,
        divide: bool,
    ) {
        let size = r.dt.size_bytes() as i64;
        let (target, chunk_off) = self.red_target(r, chunk);
        if cx.f.part {
            // One box of several (serial, see `plan::fused_nest`): the output elements it
            // writes are its kept dimensions, at the box's offset (in `target`).
            let kept: Vec<usize> = (0..cx.f.dims.len()).filter(|&k| r.st[k] != 0).collect();
            let dims: Vec<usize> = kept.iter().map(|&k| cx.f.dims[k]).collect();
            let st: Vec<i64> = kept.iter().map(|&k| r.st[k]).collect();
            self.nest(&dims, &mut |lw, idx| {
                let off = lw.offset(idx, &st);
                lw.fill_output(r, target, off, divide);
            });
            return;
        }
        let (lo, hi) = if r.partial || chunk.is_none() {
            (Bound::C(0), Bound::C(r.numel_out as i64))
        } else {
            // The chunk's rows of the output: `dims[0]` is kept, with element stride e0.
            let e0 = r.st[0] / size;
            let f = |lw: &mut Self, b: Bound| match b {
                Bound::V(v) => Bound::V(lw.b.ins().imul_imm_s(v, e0)),
                Bound::C(c) => Bound::C(c * e0),
            };
            (f(self, row_lo), f(self, row_hi))
        };
        let l = self.loop_begin(lo, hi);
        let e = self.b.ins().imul_imm_s(l.i, size);
        let off = self.add_off(chunk_off, Some(e));
        self.fill_output(r, target, off, divide);
        self.loop_end(l);
    }

    /// Writes the element of `r`'s output at `off` in `target`: the identity, or (`divide`)
    /// the element divided by the count (the end of a `reduce_mean`).
    pub(super) fn fill_output(&mut self, r: &RedCx, target: Src, off: Option<Value>, divide: bool) {
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
    /// whose counters are `idx`, or of the chunk).
    pub(super) fn red_init(
        &mut self,
        mode: Mode,
        r: &RedCx,
        chunk: Option<Value>,
        idx: Option<&[Value]>,
    ) {
        if self.sequential(mode) && r.across {
            // Sequential accumulation continues from the partial sum in memory.
            let (target, chunk_off) = self.red_target(r, chunk);
            let o = self.offset(idx.unwrap_or(&[]), &r.st);
            let o = self.add_off(chunk_off, o);
            let v = self.load(target, val_ty(r.dt), o);
            self.b.def_var(r.vars[0], v);
            return;
        }
        let id = self.identity(r);
        let v = if r.vars.len() > 1 || (mode.lanes > 1 && !self.opts.exact) {
            self.b.ins().splat(vec_ty(r.dt), id)
        } else {
            id
        };
        for &var in &r.vars {
            self.b.def_var(var, v);
        }
        if let Some(nan) = r.nan {
            let z = self.b.ins().iconst(mask_ty(r.dt).lane_type(), 0);
            let z = self.b.ins().splat(mask_ty(r.dt), z);
            self.b.def_var(nan, z);
        }
    }

    /// `a ⊕ v` for the vector accumulator `a` of register reduction `r` in the loop: for
    /// `reduce_max`/`reduce_min` the native `maxpd`/`minpd` form (`v` if it beats `a`, else
    /// `a`: the interpreter's rule, ties keeping the earlier element), with NaN lanes of `v`
    /// recorded in `r.nan` instead of selected; otherwise [`Lowerer::fold`].
    fn fold_vector(&mut self, r: &RedCx, a: Value, v: Value) -> Value {
        let Some(nan) = r.nan else {
            return self.fold(r, a, v);
        };
        // `v` selected where `a < v` is the pattern Cranelift lowers to one `maxpd v, a`;
        // where `v < a`, to one `minpd v, a`.
        let wins = match r.op {
            Op::ReduceMax => self.b.ins().fcmp(FloatCC::LessThan, a, v),
            _ => self.b.ins().fcmp(FloatCC::LessThan, v, a),
        };
        let out = self.sel(wins, v, a);
        match r.pending.take() {
            None => r.pending.set(Some(v)),
            Some(p) => self.note_nan(nan, p, v),
        }
        out
    }

    /// Records in `nan` the lanes where `p` or `v` is NaN.
    fn note_nan(&mut self, nan: Variable, p: Value, v: Value) {
        let isnan = self.b.ins().fcmp(FloatCC::Unordered, p, v);
        let seen = self.b.use_var(nan);
        let seen = self.b.ins().bor(seen, isnan);
        self.b.def_var(nan, seen);
    }

    /// Tests the operand vectors of `cx`'s reductions still waiting for a partner. Called at
    /// the end of every straight-line run of bodies (a loop iteration, the remainder, the
    /// tail), so a waiting vector never outlives the code that defines it.
    pub(super) fn flush_nan(&mut self, cx: &Cx<'_>) {
        for r in &cx.red {
            if let (Some(nan), Some(p)) = (r.nan, r.pending.take()) {
                self.note_nan(nan, p, p);
            }
        }
    }

    /// Folds the accumulators of register reduction `r` and writes the result.
    pub(super) fn red_finish(
        &mut self,
        mode: Mode,
        r: &RedCx,
        chunk: Option<Value>,
        idx: &[Value],
    ) {
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
        if let Some(nan) = r.nan {
            let seen = self.b.use_var(nan);
            let any = self.b.ins().vany_true(seen);
            let q = self.float(r.dt, f64::NAN);
            v = self.b.ins().select(any, q, v);
        }
        let (target, chunk_off) = self.red_target(r, chunk);
        let o = self.offset(idx, &r.st);
        let o = self.add_off(chunk_off, o);
        if r.across && !self.sequential(mode) {
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
    pub(super) fn red_step(
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
        let mode = cx.mode;
        let w = mode.lanes;
        if r.register.is_some() {
            if self.sequential(mode) {
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
                let n = self.fold_vector(r, acc, v);
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
    pub(super) fn sequential(&self, mode: Mode) -> bool {
        mode.lanes == 1 || self.opts.exact
    }

    /// A lane mask with the first `lanes` lanes set.
    pub(super) fn lane_mask(&mut self, dt: DType, lanes: usize) -> Value {
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

    /// Folds the per-chunk partial results of parallel group `gi` in chunk order.
    pub(super) fn combine(&mut self, gi: u32) {
        let Group::Fused(f) = &self.plan.groups[gi as usize] else {
            unreachable!("only fused groups have partial results")
        };
        for red in &f.reductions {
            let Some(off) = red.partials else { continue };
            let node = self.g.node(red.node);
            let dt = node.ty.dtype;
            let numel_out = node.ty.numel();
            let r = RedCx {
                op: node.op,
                dt,
                target: Src::Mem(self.ws, off as i64),
                partial: true,
                st: Vec::new(),
                register: None,
                across: false,
                vars: Vec::new(),
                nan: None,
                pending: Cell::new(None),
                count: self.g.ty(node.inputs[0]).numel() / numel_out,
                numel_out,
            };
            let size = dt.size_bytes() as i64;
            let per = numel_out as i64 * size;
            let out = self.root_src(red.node);
            let ty = val_ty(dt);
            let l = self.loop_begin(Bound::C(0), Bound::C(numel_out as i64));
            let e = self.b.ins().imul_imm_s(l.i, size);
            let first = self.load(r.target, ty, Some(e));
            let acc = self.var(ty);
            self.b.def_var(acc, first);
            let lb = self.loop_begin(Bound::C(1), Bound::C(f.chunks.count as i64));
            let bo = self.b.ins().imul_imm_s(lb.i, per);
            let o = self.b.ins().iadd(bo, e);
            let x = self.load(r.target, ty, Some(o));
            let a = self.b.use_var(acc);
            let n = self.fold(&r, a, x);
            self.b.def_var(acc, n);
            self.loop_end(lb);
            let mut v = self.b.use_var(acc);
            if r.op == Op::ReduceMean {
                let c = self.float(dt, r.count as f64);
                v = self.b.ins().fdiv(v, c);
            }
            self.store(out, v, Some(e));
            self.loop_end(l);
        }
    }
}
