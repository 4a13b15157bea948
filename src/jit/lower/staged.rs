//! Staged batched calls: long vector loops run in segments whose transcendental calls are
//! computed by the batched helpers ([`crate::jit::batch`]) between passes over the segment.

use super::fused::{Cx, Outer};
use super::loops::Bound;
use super::{Lowerer, mask_ty, vec_ty, vmem};
use crate::ir::DType;
use crate::jit::batch;
use crate::ops::MathFn;
use cranelift_codegen::ir::{InstBuilder, StackSlot, StackSlotData, StackSlotKind, Value, types};

/// Bodies per iteration of a staged pass: 8 for groups of at most 32 members, 4 up to 48,
/// else 2, and at least the group's unroll factor (a whole round of reduction slots, see
/// [`RED_SLOTS`](super::fused::RED_SLOTS), so sums are those of the loop without staging). On
/// the 1M-element chain of `benches/jit_perf.rs` (one thread, best of 1000 calls), eight
/// bodies were fastest and sixteen no faster.
pub(super) fn staged_copies(cx: &Cx<'_>) -> usize {
    let copies = match cx.f.members.len() {
        0..=32 => 8,
        33..=48 => 4,
        _ => 2,
    };
    copies.max(cx.u)
}

/// The most batched calls per staged segment: their scratch areas take `MAX_SCRATCH · 8 KiB` of
/// the stack (128 KiB, well within any thread's stack); further calls stay in the loop.
pub(super) const MAX_SCRATCH: usize = 16;

/// The most rounds of batched calls in a staged segment (a call whose argument depends on a
/// round-`k` result is in round `k + 1`): each round costs one more pass over the segment, and
/// deeper calls stay in the loop.
pub(super) const MAX_ROUNDS: usize = 4;

/// Which pass of a staged segment is being emitted (see [`Lowerer::staged`]).
pub(super) enum Stage {
    /// An ordinary loop.
    Off,
    /// An argument pass: batched calls of the pass's round store their arguments, those of
    /// earlier rounds load their results; no stores, no reductions.
    Args(StageState),
    /// The last pass: batched calls load their results.
    Results(StageState),
}

/// A batched call of a staged segment.
#[derive(Clone, Copy)]
pub(super) struct Batched {
    pub(super) f: MathFn,
    pub(super) dt: DType,
    /// Its scratch area.
    pub(super) area: usize,
    /// Its round: its argument is computed in argument pass `round`.
    pub(super) round: usize,
}

/// The state of a staged segment's passes.
#[derive(Default)]
pub(super) struct StageState {
    /// The first element of the segment (innermost index).
    pub(super) start: Option<Value>,
    /// This iteration's byte offset into each scratch area.
    pub(super) offset: Option<Value>,
    /// Which pass this is (argument passes count from 0; unused by the last pass).
    pub(super) pass: usize,
    /// Calls made so far in this iteration of the body (the call's ordinal).
    pub(super) calls: usize,
    /// Per call ordinal (decided in pass 0, the same in every pass): how it is batched, or
    /// `None` if it stays in the loop.
    pub(super) batched: Vec<Option<Batched>>,
    /// The first pass whose values the member being emitted's operands are real in
    /// ([`NOT_STAGED`]: only the last pass's).
    pub(super) input_ready: usize,
    /// The same for the member's result, raised by its calls.
    pub(super) ready: usize,
    /// The member being emitted has made a call.
    pub(super) called: bool,
    /// Argument stores not yet emitted: (area, address, value). The main loop of an
    /// argument pass emits them after every [`STORE_GROUP`] bodies, area by area, so the
    /// stores of one area are adjacent (they fill whole cache lines back to back; stores
    /// interleaved over several areas commit about one per cycle, which would bound the pass).
    pub(super) pending: Vec<(usize, Value, Value)>,
    /// Keep stores pending after the body (the main loop flushes them).
    pub(super) defer: bool,
}

/// Bodies whose argument stores are emitted together (4 vectors: one 64-byte line per area
/// for `f32`).
pub(super) const STORE_GROUP: usize = 4;

/// `StageState::ready` of values that depend on a call left in the loop.
pub(super) const NOT_STAGED: usize = usize::MAX;

impl<'f, 'g> Lowerer<'f, 'g> {
    /// A staged innermost loop of `len >= CHUNK` elements from `start_v` (absent: 0), in
    /// segments of [`batch::SEGMENT`]. Per segment, argument pass `k` runs the body with every
    /// batched call of round `k` (a call is in round 0 if its argument depends on no call,
    /// else one above the deepest call it depends on, see [`MAX_ROUNDS`]) storing its
    /// argument into its scratch area, the calls of earlier rounds loading their results, and
    /// nothing stored or reduced; after each argument pass the batched helpers compute that
    /// round's areas in place; the last pass runs the body with every batched call loading
    /// its result. The helpers compute bitwise what the in-loop code would (see
    /// [`crate::jit::batch`]), on wider vectors.
    pub(super) fn staged(
        &mut self,
        cx: &Cx<'_>,
        outer: &Outer,
        start_v: Option<Value>,
        len: usize,
    ) {
        let full = len / batch::SEGMENT;
        let rest = len % batch::SEGMENT;
        let park = self.park_slot(cx);
        self.park(cx, park, true);
        let l = self.loop_begin(Bound::C(0), Bound::C(full as i64));
        let off = self.b.ins().imul_imm_s(l.i, batch::SEGMENT as i64);
        let s = match start_v {
            Some(s) => self.b.ins().iadd(s, off),
            None => off,
        };
        self.staged_segment(cx, outer, s, batch::SEGMENT, park);
        self.loop_end(l);
        if rest > 0 {
            let done = (full * batch::SEGMENT) as i64;
            let s = match start_v {
                Some(s) => self.b.ins().iadd_imm_s(s, done),
                None => self.b.ins().iconst(types::I64, done),
            };
            self.staged_segment(cx, outer, s, rest, park);
        }
        self.park(cx, park, false);
    }

    /// A stack slot for the register accumulators of `cx`'s reductions while a staged loop
    /// makes its helper calls (`None` without register reductions).
    ///
    /// The calls clobber every vector register, so accumulators live across them are
    /// spilled, and the register allocator then keeps them in their stack slots for the
    /// whole loop, which adds a store and a load to every add of the accumulator chain.
    /// Parked here explicitly, they are loaded once before the last pass of each segment and
    /// stored once after it, and stay in registers inside it.
    fn park_slot(&mut self, cx: &Cx<'_>) -> Option<StackSlot> {
        let n: usize = cx
            .red
            .iter()
            .map(|r| r.vars.len() + usize::from(r.nan.is_some()))
            .sum();
        (n > 0).then(|| {
            self.b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                (n * 16) as u32,
                4,
            ))
        })
    }

    /// Stores (`store`) or loads the register accumulators of `cx`'s reductions into or from
    /// `slot` (see [`Lowerer::park_slot`]).
    fn park(&mut self, cx: &Cx<'_>, slot: Option<StackSlot>, store: bool) {
        let Some(slot) = slot else { return };
        let mut at = 0;
        for r in &cx.red {
            let vars = r.vars.iter().map(|&v| (v, vec_ty(r.dt)));
            for (var, ty) in vars.chain(r.nan.map(|v| (v, mask_ty(r.dt)))) {
                if store {
                    let v = self.b.use_var(var);
                    self.b.ins().stack_store(self.ptr, v, slot, at);
                } else {
                    let v = self.b.ins().stack_load(self.ptr, ty, slot, at);
                    self.b.def_var(var, v);
                }
                at += 16;
            }
        }
    }

    /// All passes of one staged segment of `len <= CHUNK` elements from `start`: an argument
    /// pass and the helper calls per round of batched calls, then the last pass.
    pub(super) fn staged_segment(
        &mut self,
        cx: &Cx<'_>,
        outer: &Outer,
        start: Value,
        len: usize,
        park: Option<StackSlot>,
    ) {
        // Whole vectors: the padding lanes of a partial last vector repeat lane 0, so they
        // hold valid arguments too.
        let count = len.div_ceil(cx.mode.lanes) * cx.mode.lanes;
        let mut batched = Vec::new();
        let mut pass = 0;
        loop {
            let mut stage = Stage::Args(StageState {
                start: Some(start),
                pass,
                batched: std::mem::take(&mut batched),
                ..StageState::default()
            });
            self.vector_loops(cx, &mut stage, outer, Some(start), len, staged_copies(cx));
            let Stage::Args(st) = stage else {
                unreachable!("an argument pass ends in its own stage")
            };
            batched = st.batched;
            for b in batched.iter().flatten().filter(|b| b.round == pass) {
                let r = self.batch_ref(b.f, b.dt);
                let p = self.b.ins().stack_addr(self.ptr, self.scratch[b.area], 0);
                let n = self.b.ins().iconst(types::I64, count as i64);
                self.b.ins().call(r, &[p, n]);
            }
            pass += 1;
            if batched.iter().flatten().all(|b| b.round < pass) {
                break;
            }
        }
        let mut stage = Stage::Results(StageState {
            start: Some(start),
            batched,
            ..StageState::default()
        });
        self.park(cx, park, false);
        self.vector_loops(cx, &mut stage, outer, Some(start), len, staged_copies(cx));
        self.park(cx, park, true);
    }

    /// Scratch area `k`.
    pub(super) fn scratch_slot(&mut self, k: usize) -> StackSlot {
        while self.scratch.len() <= k {
            let bytes = (batch::SEGMENT * 8) as u32;
            let slot = self.b.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                bytes,
                6,
            ));
            self.scratch.push(slot);
        }
        self.scratch[k]
    }

    /// In a staged segment, call `f` (on vector `x` of `dt`) as the current pass does it:
    /// `None` if the call is computed in the loop.
    pub(super) fn staged_call(
        &mut self,
        stage: &mut Stage,
        f: MathFn,
        dt: DType,
        args: &[Value],
    ) -> Option<Value> {
        let (last, st) = match stage {
            Stage::Off => return None,
            Stage::Args(st) => (false, st),
            Stage::Results(st) => (true, st),
        };
        let k = st.calls;
        st.calls += 1;
        if !last && st.pass == 0 && st.batched.len() <= k {
            // Every iteration of the body makes the same calls, in every pass: the first body
            // of pass 0 decides each ordinal's round and area once. A member's second call may
            // depend on its first (the rule is opaque), so it stays in the loop.
            st.batched.resize(k + 1, None);
            let area = st.batched[..k].iter().flatten().count();
            let round = st.input_ready;
            let ok = batch::supported(f)
                && args.len() == 1
                && round < MAX_ROUNDS
                && !st.called
                && area < MAX_SCRATCH;
            st.batched[k] = ok.then_some(Batched { f, dt, area, round });
        }
        st.called = true;
        let Some(b) = st.batched.get(k).copied().flatten() else {
            st.ready = NOT_STAGED;
            // The last pass computes it in the loop; argument passes need only the real
            // arguments of their own round, which cannot depend on it: any value will do.
            return if last { None } else { Some(args[0]) };
        };
        st.ready = st.ready.max(b.round + 1);
        let off = st.offset.expect("set by the body");
        let (area, first) = match (last, st.pass.cmp(&b.round)) {
            (false, std::cmp::Ordering::Equal) => (b.area, true),
            (false, std::cmp::Ordering::Less) => return Some(args[0]),
            _ => (b.area, false),
        };
        let slot = self.scratch_slot(area);
        let base = self.b.ins().stack_addr(self.ptr, slot, 0);
        let p = self.b.ins().iadd(base, off);
        if first {
            st.pending.push((area, p, args[0]));
            Some(args[0])
        } else {
            let ty = self.b.func.dfg.value_type(args[0]);
            Some(self.b.ins().load(ty, vmem(), p, 0))
        }
    }

    /// Emits an argument pass's pending stores, area by area (see `StageState::pending`).
    pub(super) fn flush_arg_stores(&mut self, stage: &mut Stage) {
        let Stage::Args(st) = stage else {
            return;
        };
        st.defer = false;
        let mut pending = std::mem::take(&mut st.pending);
        pending.sort_by_key(|&(area, _, _)| area);
        for (_, p, v) in pending {
            self.b.ins().store(vmem(), v, p, 0);
        }
    }
}
