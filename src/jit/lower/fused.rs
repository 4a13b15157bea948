//! Fused nests: the loop nest of a fused group, its chunks, the fast and slow passes of vector
//! code, the innermost vector loops, and the loop body (loads, member rules, stores).

use super::emit::Em;
use super::loops::Bound;
use super::reduce::RedCx;
use super::staged::{STORE_GROUP, Stage, StageState};
use super::{Lowerer, Src, mask_ty, mem, val_ty, vec_ty, vmem};
use crate::ir::{DType, NodeId, Op};
use crate::jit::batch;
use crate::jit::plan::Fused;
use crate::ops::{self, SVal};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::Variable;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Vector accumulators of a register reduction in non-exact vector code: the `k`-th vector of
/// an innermost loop (counted from the loop's start, or the staged segment's) goes to slot
/// `k mod RED_SLOTS`, whatever the unrolling, staging or chunking, so the summation order
/// depends on the shapes alone; the slots are folded pairwise, then the lanes. Four slots of
/// independent adds (or `maxpd`s) cover the instructions' latency.
pub(super) const RED_SLOTS: usize = 4;

/// A fused group's code-generation state.
pub(super) struct Cx<'p> {
    pub(super) f: &'p Fused,
    /// The code the group's values are computed in.
    pub(super) mode: Mode,
    /// Unroll factor.
    pub(super) u: usize,
    pub(super) leaf_src: Vec<Src>,
    pub(super) leaf_of: HashMap<NodeId, usize>,
    pub(super) store_src: Vec<Src>,
    pub(super) store_of: HashMap<NodeId, usize>,
    pub(super) red: Vec<RedCx>,
    pub(super) red_of: HashMap<NodeId, usize>,
    /// Long innermost loops run in staged segments (see [`Lowerer::staged`]).
    pub(super) staged: bool,
    /// The chunk being emitted (chunk functions only).
    pub(super) chunk: Option<Value>,
    /// A vector transcendental of this pass updated `mode.bad`.
    pub(super) bad_set: Cell<bool>,
    /// While the copies of one main-loop iteration are emitted: the full vector loads made so
    /// far, by (base, outer offset, index, element stride, constant offset), so that leaves
    /// reading the same memory (shifted views of one buffer: `x[i]`, `x[i - 1]`, … in
    /// consecutive copies) load it once. Straight-line code, and no copy stores where another
    /// reads (the plan works in place only where every read is at the written element).
    pub(super) loads: RefCell<Option<HashMap<LoadKey, Value>>>,
}

/// See [`Cx::loads`].
type LoadKey = (Value, Option<Value>, Option<Value>, i64, i64);

/// The code being emitted: scalar or vector, and of which float dtype.
#[derive(Clone, Copy)]
pub(super) struct Mode {
    /// Lanes of the values (1: scalar code).
    pub(super) lanes: usize,
    /// The float dtype of vector code.
    pub(super) vdt: DType,
    /// The slow pass of vector code: vector transcendentals call libm on every lane.
    pub(super) slow: bool,
    /// The fast pass of vector code: the mask of lanes its vector transcendentals could not
    /// compute (see [`Lowerer::chunk`]).
    pub(super) bad: Option<Variable>,
}

impl Mode {
    /// The vector type holding `dt` values in vector code.
    pub(super) fn lane_ty(self, dt: DType) -> Type {
        match dt {
            DType::Bool => mask_ty(self.vdt),
            d => vec_ty(d),
        }
    }
}

/// Where in the innermost loop a body runs: element index `idx + extra` (`idx` absent: 0).
#[derive(Clone, Copy)]
pub(super) struct Pos {
    pub(super) idx: Option<Value>,
    pub(super) extra: i64,
}

/// What the outer loop indices fix for an innermost loop: the byte offsets they contribute,
/// per access, and the leaves constant along the innermost dimension (loaded once).
pub(super) struct Outer {
    pub(super) leaves: Vec<Option<Value>>,
    pub(super) stores: Vec<Option<Value>>,
    pub(super) reds: Vec<Option<Value>>,
    pub(super) hoisted: Vec<Option<SVal>>,
}

impl<'f, 'g> Lowerer<'f, 'g> {
    /// `dyn + (pos.idx + pos.extra + lane)·st` bytes as (dynamic part, constant part).
    pub(super) fn at(
        &mut self,
        outer: Option<Value>,
        pos: Pos,
        lane: i64,
        st: i64,
    ) -> (Option<Value>, i64) {
        let idx = match pos.idx {
            Some(i) if st != 0 => Some(self.b.ins().imul_imm_s(i, st)),
            _ => None,
        };
        (self.add_off(outer, idx), (pos.extra + lane) * st)
    }

    pub(super) fn fused(&mut self, f: &'g Fused, chunks: Option<(Value, Value)>) {
        let g = self.g;
        let d = f.dims.len();
        let (w, vdt) = match f.vector {
            Some(dt) => (16 / dt.size_bytes(), dt),
            None => (1, DType::F64),
        };
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
            mode: Mode {
                lanes: w,
                vdt,
                slow: false,
                bad: None,
            },
            bad_set: Cell::new(false),
            loads: RefCell::new(None),
            u,
            leaf_src: Vec::new(),
            leaf_of: HashMap::new(),
            store_src: Vec::new(),
            store_of: HashMap::new(),
            red: Vec::new(),
            red_of: HashMap::new(),
            staged: self.opts.batch && self.opts.fma && !self.opts.exact && w > 1 && f.math,
            chunk: None,
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
            let vector = register.is_some() && !self.opts.exact && w > 1;
            let vars = match register {
                Some(_) => {
                    let (n, ty) = if vector {
                        (RED_SLOTS, vec_ty(dt))
                    } else {
                        (1, val_ty(dt))
                    };
                    (0..n).map(|_| self.var(ty)).collect()
                }
                None => Vec::new(),
            };
            let extreme = matches!(node.op, Op::ReduceMax | Op::ReduceMin);
            let nan = (vector && extreme).then(|| self.var(mask_ty(dt)));
            if vector {
                // Every main-loop iteration covers whole rounds of the slots.
                cx.u = cx.u.max(RED_SLOTS);
            }
            let numel_out = node.ty.numel();
            cx.red.push(RedCx {
                op: node.op,
                dt,
                target,
                partial: r.partials.is_some(),
                st,
                register,
                across,
                vars,
                nan,
                pending: Cell::new(None),
                count: g.ty(node.inputs[0]).numel() / numel_out,
                numel_out,
            });
            cx.red_of.insert(r.node, i);
        }
        match chunks {
            None => self.chunk(cx, None),
            Some((lo, hi)) => {
                let l = self.loop_begin(Bound::V(lo), Bound::V(hi));
                cx.chunk = Some(l.i);
                self.chunk(cx, Some(l.i));
                self.loop_end(l);
            }
        }
    }

    /// One chunk of a fused group (`chunk` absent: the whole group, as one chunk). In vector
    /// code the fast pass uses the vector transcendentals; if any lane was outside their
    /// range, the chunk runs again with libm on every lane (no call inside the fast loops, so
    /// nothing there is spilled around calls). The plan keeps such groups from working in
    /// place, so the second pass reads the same operands.
    pub(super) fn chunk(&mut self, cx: Cx<'_>, chunk: Option<Value>) {
        if cx.mode.lanes == 1 || self.opts.exact {
            self.chunk_pass(&cx, chunk);
            return;
        }
        let mt = mask_ty(cx.mode.vdt);
        let var = self.var(mt);
        let z = self.b.ins().iconst(mt.lane_type(), 0);
        let z = self.b.ins().splat(mt, z);
        self.b.def_var(var, z);
        let cx = Cx {
            mode: Mode {
                bad: Some(var),
                ..cx.mode
            },
            ..cx
        };
        self.chunk_pass(&cx, chunk);
        if !cx.bad_set.get() {
            return;
        }
        let m = self.b.use_var(var);
        let any = self.b.ins().vany_true(m);
        let slow = self.b.create_block();
        let done = self.b.create_block();
        self.b.set_cold_block(slow);
        self.b.ins().brif(any, slow, &[], done, &[]);
        self.b.seal_block(slow);
        self.b.switch_to_block(slow);
        let cx = Cx {
            mode: Mode {
                slow: true,
                bad: None,
                ..cx.mode
            },
            ..cx
        };
        self.chunk_pass(&cx, chunk);
        self.b.ins().jump(done, &[]);
        self.b.seal_block(done);
        self.b.switch_to_block(done);
    }

    pub(super) fn chunk_pass(&mut self, cx: &Cx<'_>, chunk: Option<Value>) {
        let f = cx.f;
        let d = f.dims.len();
        let bs = f.chunks.size as i64;
        let (row_lo, row_hi) = match chunk {
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
        // Per-chunk setup: memory accumulators filled with the identity, register
        // accumulators spanning every dimension initialized.
        for r in &cx.red {
            if r.register.is_none() || r.across {
                self.fill_outputs(cx, r, chunk, row_lo, row_hi, false);
            }
            if r.register == Some(None) {
                self.red_init(cx.mode, r, chunk, None);
            }
        }
        if d == 0 {
            let outer = self.outer(cx, &[]);
            self.body(
                cx,
                &mut Stage::Off,
                Pos {
                    idx: None,
                    extra: 0,
                },
                1,
                0,
                &outer,
            );
            self.flush_nan(cx);
        } else if d == 1 {
            match chunk {
                None => self.inner(cx, &[], Bound::C(0), f.dims[0]),
                Some(b) => {
                    let last = f.chunks.count - 1;
                    let last_len = f.dims[0] - last * f.chunks.size;
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
                    self.inner(cx, &[], Bound::V(start), f.chunks.size);
                    self.b.ins().jump(join, &[]);
                    self.b.switch_to_block(tail);
                    self.inner(cx, &[], Bound::V(start), last_len);
                    self.b.ins().jump(join, &[]);
                    self.b.seal_block(join);
                    self.b.switch_to_block(join);
                }
            }
        } else {
            let l = self.loop_begin(row_lo, row_hi);
            let mut idx = vec![l.i];
            self.level(cx, chunk, 1, &mut idx);
            self.loop_end(l);
        }
        for r in &cx.red {
            if r.register == Some(None) {
                self.red_finish(cx.mode, r, chunk, &[]);
            }
            if (r.register.is_none() || r.across) && r.op == Op::ReduceMean && !r.partial {
                self.fill_outputs(cx, r, chunk, row_lo, row_hi, true);
            }
        }
    }

    /// Loop level `k >= 1` of a nest with at least two dimensions (`idx` holds the outer
    /// counters).
    pub(super) fn level(
        &mut self,
        cx: &Cx<'_>,
        chunk: Option<Value>,
        k: usize,
        idx: &mut Vec<Value>,
    ) {
        let f = cx.f;
        let d = f.dims.len();
        for r in &cx.red {
            if r.register == Some(Some(k - 1)) {
                self.red_init(cx.mode, r, chunk, Some(idx));
            }
        }
        if k == d - 1 {
            self.inner(cx, idx, Bound::C(0), f.dims[k]);
        } else {
            let l = self.loop_begin(Bound::C(0), Bound::C(f.dims[k] as i64));
            idx.push(l.i);
            self.level(cx, chunk, k + 1, idx);
            idx.pop();
            self.loop_end(l);
        }
        for r in &cx.red {
            if r.register == Some(Some(k - 1)) {
                self.red_finish(cx.mode, r, chunk, idx);
            }
        }
    }

    /// Per-access byte offsets of the outer loop counters `idx`.
    pub(super) fn outer(&mut self, cx: &Cx<'_>, idx: &[Value]) -> Outer {
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
        let chunk = cx.chunk;
        let reds = cx
            .red
            .iter()
            .map(|r| {
                let o = self.offset(idx, &r.st);
                let (_, b) = self.red_target(r, chunk);
                self.add_off(o, b)
            })
            .collect();
        Outer {
            leaves,
            stores,
            reds,
            hoisted: vec![None; f.leaves.len()],
        }
    }

    /// The innermost loop: `len` elements from `start`.
    pub(super) fn inner(&mut self, cx: &Cx<'_>, idx: &[Value], start: Bound, len: usize) {
        let mut outer = self.outer(cx, idx);
        let d = cx.f.dims.len();
        // Operands constant along the innermost dimension are loaded once.
        let mut hoisted: Vec<Option<SVal>> = vec![None; cx.f.leaves.len()];
        for (li, (_, a)) in cx.f.leaves.iter().enumerate() {
            if a.strides[d - 1] == 0 {
                let p = Pos {
                    idx: None,
                    extra: 0,
                };
                hoisted[li] = Some(self.load_leaf(cx, li, p, cx.mode.lanes, &outer));
            }
        }
        outer.hoisted = hoisted;
        let start_v = match start {
            Bound::C(0) => None,
            b => Some(self.bound(b)),
        };
        if cx.mode.lanes == 1 {
            let l = self.loop_begin(Bound::C(0), Bound::C(len as i64));
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, l.i),
                None => l.i,
            };
            self.body(
                cx,
                &mut Stage::Off,
                Pos {
                    idx: Some(i),
                    extra: 0,
                },
                1,
                0,
                &outer,
            );
            self.loop_end(l);
            return;
        }
        if cx.staged && !cx.mode.slow && len >= batch::SEGMENT {
            self.staged(cx, &outer, start_v, len);
        } else {
            // Unrolling a loop that would run at most once only multiplies the code; without
            // reductions the unroll slots change nothing but the code's shape.
            let copies = if cx.red.is_empty() && len < 2 * cx.mode.lanes * cx.u {
                1
            } else {
                cx.u
            };
            self.vector_loops(cx, &mut Stage::Off, &outer, start_v, len, copies);
        }
    }

    /// The vector loops of an innermost loop: `len` elements from `start_v` (absent: 0),
    /// `copies` bodies per iteration, then single vectors, then one partial vector; vector `k`
    /// accumulates into reduction slot `k mod RED_SLOTS` (see [`RED_SLOTS`]).
    pub(super) fn vector_loops(
        &mut self,
        cx: &Cx<'_>,
        stage: &mut Stage,
        outer: &Outer,
        start_v: Option<Value>,
        len: usize,
        copies: usize,
    ) {
        let (w, u) = (cx.mode.lanes, copies);
        let step = w * u;
        let main = len / step;
        let rest = (len % step) / w;
        let tail = len % w;
        let slotted = cx.red.iter().any(|r| r.vars.len() > 1);
        debug_assert!(
            !slotted || u % RED_SLOTS == 0,
            "whole rounds of slots per iteration"
        );
        if main > 0 {
            let l = self.loop_begin(Bound::C(0), Bound::C(main as i64));
            let i = self.b.ins().imul_imm_s(l.i, step as i64);
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, i),
                None => i,
            };
            *cx.loads.borrow_mut() = Some(HashMap::new());
            for j in 0..u {
                let p = Pos {
                    idx: Some(i),
                    extra: (j * w) as i64,
                };
                if let Stage::Args(st) = &mut *stage {
                    st.defer = true;
                }
                self.body(cx, stage, p, w, j % RED_SLOTS, outer);
                if (j + 1) % STORE_GROUP == 0 || j + 1 == u {
                    self.flush_arg_stores(stage);
                }
            }
            *cx.loads.borrow_mut() = None;
            self.flush_nan(cx);
            self.loop_end(l);
        }
        let done = (main * step) as i64;
        if rest == 1 || (slotted && rest > 0) {
            // Fewer than `copies` vectors, each in its own slot (the main loop ended on a
            // whole round).
            for k in 0..rest {
                let p = Pos {
                    idx: start_v,
                    extra: done + (k * w) as i64,
                };
                self.body(cx, stage, p, w, k % RED_SLOTS, outer);
            }
            self.flush_nan(cx);
        } else if rest > 1 {
            let l = self.loop_begin(Bound::C(0), Bound::C(rest as i64));
            let i = self.b.ins().imul_imm_s(l.i, w as i64);
            let i = match start_v {
                Some(s) => self.b.ins().iadd(s, i),
                None => i,
            };
            let p = Pos {
                idx: Some(i),
                extra: done,
            };
            self.body(cx, stage, p, w, 0, outer);
            self.flush_nan(cx);
            self.loop_end(l);
        }
        if tail > 0 {
            let p = Pos {
                idx: start_v,
                extra: (len - tail) as i64,
            };
            self.body(cx, stage, p, tail, rest % RED_SLOTS, outer);
            self.flush_nan(cx);
        }
    }

    /// One iteration of the loop body on `lanes` valid lanes (of `cx.mode.lanes`), accumulating
    /// into unroll slot `slot`, in the pass `stage` of a staged segment (or `Stage::Off`).
    pub(super) fn body(
        &mut self,
        cx: &Cx<'_>,
        stage: &mut Stage,
        pos: Pos,
        lanes: usize,
        slot: usize,
        outer: &Outer,
    ) {
        let g = self.g;
        let mut loaded: Vec<Option<SVal>> = outer.hoisted.clone();
        let mut regs: HashMap<NodeId, SVal> = HashMap::with_capacity(cx.f.members.len());
        let mut args: Vec<SVal> = Vec::with_capacity(3);
        // Staged segment: this iteration's byte offset into the scratch areas; in the first
        // pass, the members whose value depends on a call's (not yet computed) result.
        let first_pass = matches!(*stage, Stage::Args(_));
        // Staged segment: the first pass each member's value is real in (absent: 0).
        let mut ready: HashMap<NodeId, usize> = HashMap::new();
        if let Stage::Args(StageState { start, .. }) | Stage::Results(StageState { start, .. }) =
            &*stage
        {
            let start = start.expect("staged segments have a start");
            let idx = pos.idx.expect("staged loops have a start");
            let size = cx.mode.vdt.size_bytes() as i64;
            let d = self.b.ins().isub(idx, start);
            let d = self.b.ins().imul_imm_s(d, size);
            let d = self.b.ins().iadd_imm_s(d, pos.extra * size);
            if let Stage::Args(st) | Stage::Results(st) = &mut *stage {
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
            if let Stage::Args(st) | Stage::Results(st) = &mut *stage {
                let r = node
                    .inputs
                    .iter()
                    .map(|x| ready.get(x).copied().unwrap_or(0));
                st.input_ready = r.max().unwrap_or(0);
                st.ready = st.input_ready;
                st.called = false;
            }
            let mut em = Em {
                lw: self,
                cx,
                stage: &mut *stage,
            };
            let v = lower(&mut em, node, &args);
            regs.insert(m, v);
            if let Stage::Args(st) | Stage::Results(st) = &*stage
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
        if let Stage::Args(st) = &*stage
            && !st.defer
        {
            self.flush_arg_stores(stage);
        }
    }

    pub(super) fn load_leaf(
        &mut self,
        cx: &Cx<'_>,
        li: usize,
        pos: Pos,
        lanes: usize,
        outer: &Outer,
    ) -> SVal {
        let (x, a) = &cx.f.leaves[li];
        let dt = self.g.ty(*x).dtype;
        let d = cx.f.dims.len();
        let st = if d == 0 { 0 } else { a.strides[d - 1] };
        let mode = cx.mode;
        let w = mode.lanes;
        let v = match cx.leaf_src[li] {
            Src::Splat(bits) => {
                let s = self.constant(val_ty(dt), bits);
                self.widen(mode, s, dt)
            }
            Src::Mem(base, off) => {
                let size = dt.size_bytes() as i64;
                if w == 1 || st == 0 {
                    let (dy, c) = self.at(outer.leaves[li], pos, 0, st);
                    let s = self.load_at(val_ty(dt), base, dy, off + c);
                    self.widen(mode, s, dt)
                } else if st == size && dt.is_float() && lanes == w {
                    let key = (base, outer.leaves[li], pos.idx, st, off + pos.extra * st);
                    if let Some(&v) = cx.loads.borrow().as_ref().and_then(|m| m.get(&key)) {
                        return self.sval(v, dt);
                    }
                    let (dy, c) = self.at(outer.leaves[li], pos, 0, st);
                    let (p, o) = self.addr(base, dy, off + c);
                    let v = self.b.ins().load(vec_ty(dt), vmem(), p, o);
                    if let Some(m) = cx.loads.borrow_mut().as_mut() {
                        m.insert(key, v);
                    }
                    v
                } else {
                    let mut v = None;
                    for lane in 0..lanes {
                        let (dy, c) = self.at(outer.leaves[li], pos, lane as i64, st);
                        let s = self.load_at(val_ty(dt), base, dy, off + c);
                        let s = self.lane_value(mode, s, dt);
                        v = Some(match v {
                            None => self.b.ins().splat(mode.lane_ty(dt), s),
                            Some(v) => self.b.ins().insertlane(v, s, lane as u8),
                        });
                    }
                    v.expect("at least one lane")
                }
            }
        };
        self.sval(v, dt)
    }

    /// A scalar element as a lane value (bool 0/1 → an all-zeros/all-ones integer lane).
    pub(super) fn lane_value(&mut self, mode: Mode, s: Value, dt: DType) -> Value {
        if dt != DType::Bool {
            return s;
        }
        let it = mask_ty(mode.vdt).lane_type();
        let e = self.b.ins().uextend(it, s);
        self.b.ins().ineg(e)
    }

    /// A scalar element as a value of `mode`'s code (splat in vector code).
    pub(super) fn widen(&mut self, mode: Mode, s: Value, dt: DType) -> Value {
        if mode.lanes == 1 {
            return s;
        }
        let l = self.lane_value(mode, s, dt);
        self.b.ins().splat(mode.lane_ty(dt), l)
    }

    pub(super) fn store_val(
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
        if cx.mode.lanes == 1 {
            let (dy, c) = self.at(outer.stores[si], pos, 0, st);
            let (p, o) = self.addr(base, dy, off + c);
            self.b.ins().store(mem(), v, p, o);
        } else if dt.is_float() && lanes == cx.mode.lanes && st == dt.size_bytes() as i64 {
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
}

/// Removes the vector loads of `func` whose values nothing uses: a staged segment's last
/// pass loads each batched call's result, so the operand the body loaded for that call (the
/// op rules take loaded operands) goes unused, and Cranelift keeps a load it cannot prove
/// free of side effects. Vector loads ([`vmem`]) never trap, so dropping an unused one
/// changes nothing but the time.
pub(super) fn drop_unused_loads(func: &mut cranelift_codegen::ir::Function) {
    use cranelift_codegen::entity::EntitySet;
    use cranelift_codegen::ir::{InstructionData, Opcode};
    let mut used = EntitySet::new();
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            for v in func.dfg.inst_values(inst) {
                used.insert(func.dfg.resolve_aliases(v));
            }
        }
    }
    let mut dead = Vec::new();
    for block in func.layout.blocks() {
        for inst in func.layout.block_insts(block) {
            if let InstructionData::Load {
                opcode: Opcode::Load,
                flags,
                ..
            } = func.dfg.insts[inst]
                && func.dfg.mem_flags[flags].notrap()
                && !used.contains(func.dfg.first_result(inst))
            {
                dead.push(inst);
            }
        }
    }
    for inst in dead {
        func.layout.remove_inst(inst);
    }
}
