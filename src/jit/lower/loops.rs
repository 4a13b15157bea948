//! Loop scaffolding: counted loops, row-major nests, and byte offsets of loop counters.

use super::Lowerer;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, InstBuilder, Value, types};

/// A loop bound.
#[derive(Clone, Copy)]
pub(super) enum Bound {
    C(i64),
    V(Value),
}

/// An open loop (see [`Lowerer::loop_begin`]).
pub(super) struct Loop {
    /// The head block (whose parameter is the counter) and the bound; absent for a loop that
    /// runs exactly once, which is straight-line code.
    head: Option<(Block, Bound)>,
    /// The counter.
    pub(super) i: Value,
}

pub(super) type NestBody<'a, 'f, 'g> = &'a mut dyn FnMut(&mut Lowerer<'f, 'g>, &[Value]);

impl<'f, 'g> Lowerer<'f, 'g> {
    /// `Σ idx[k] * st[k]` (bytes), or `None` if every stride is zero.
    pub(super) fn offset(&mut self, idx: &[Value], st: &[i64]) -> Option<Value> {
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

    pub(super) fn add_off(&mut self, a: Option<Value>, b: Option<Value>) -> Option<Value> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.b.ins().iadd(a, b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn bound(&mut self, b: Bound) -> Value {
        match b {
            Bound::C(c) => self.b.ins().iconst(types::I64, c),
            Bound::V(v) => v,
        }
    }

    /// Opens `for i in lo..hi` (a do-while: the caller guarantees `lo < hi`). The counter is
    /// the head block's parameter, not a frontend variable: a variable costs the SSA builder
    /// a map entry per block of the function, so one per loop would make building quadratic
    /// in the function's size. A loop with constant bounds that runs once is no loop at all,
    /// which spares register allocation its blocks and its loop-carried counter.
    pub(super) fn loop_begin(&mut self, lo: Bound, hi: Bound) -> Loop {
        if let (Bound::C(a), Bound::C(b)) = (lo, hi)
            && b == a + 1
        {
            let i = self.b.ins().iconst(types::I64, a);
            return Loop { head: None, i };
        }
        let lo = self.bound(lo);
        let head = self.b.create_block();
        let i = self.b.append_block_param(head, types::I64);
        self.b.ins().jump(head, &[lo.into()]);
        self.b.switch_to_block(head);
        Loop {
            head: Some((head, hi)),
            i,
        }
    }

    /// Closes loop `l` (see [`Lowerer::loop_begin`]).
    pub(super) fn loop_end(&mut self, l: Loop) {
        let Some((head, hi)) = l.head else {
            return;
        };
        let next = self.b.ins().iadd_imm_s(l.i, 1);
        let more = match hi {
            Bound::C(c) => self.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, c),
            Bound::V(v) => self.b.ins().icmp(IntCC::SignedLessThan, next, v),
        };
        let exit = self.b.create_block();
        self.b.ins().brif(more, head, &[next.into()], exit, &[]);
        self.b.seal_block(head);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    /// Emits a row-major loop nest over `dims` (all > 1 after collapsing; none means one
    /// straight-line execution) and calls `body` with the counters, outermost first.
    pub(super) fn nest(&mut self, dims: &[usize], body: NestBody<'_, 'f, 'g>) {
        let mut idx = Vec::with_capacity(dims.len());
        self.nest_at(dims, &mut idx, body);
    }

    pub(super) fn nest_at(
        &mut self,
        dims: &[usize],
        idx: &mut Vec<Value>,
        body: NestBody<'_, 'f, 'g>,
    ) {
        let Some((&d, rest)) = dims.split_first() else {
            body(self, idx);
            return;
        };
        let l = self.loop_begin(Bound::C(0), Bound::C(d as i64));
        idx.push(l.i);
        self.nest_at(rest, idx, body);
        idx.pop();
        self.loop_end(l);
    }
}
