//! The driver of a backward loop that recomputes its forward loop's carries from snapshots
//! ([`crate::ir::loops::Recompute`]): it replays [`revolve::drive_on`]'s schedule, the same one the
//! interpreter replays (`ops::loops::recomputed`), so the results are the interpreter's bit for
//! bit. A forward recomputation runs the forward loop's body (compiled once, like every body)
//! from one snapshot slot into another, alternating with a second carry buffer so that the last
//! step writes the target slot and no step writes what it reads; a backward step is
//! [`LoopRun::step`] with the recomputed carries read whole from their slot. Slot 0 is the
//! forward loop's initial carries, read where they are (no schedule writes slot 0).

use super::{Bodies, LoopRun, call_body};
use crate::ir::loops::Loop;
use crate::jit::kernel::{Args, Kernel, KernelFn};
use crate::jit::plan::{RecomputeLayout, body_key};
use crate::ops::loops::revolve::{self, Stepper};
use std::sync::Arc;

/// The forward loop whose carries a backward loop recomputes.
pub(super) struct Forward {
    body: Arc<Kernel>,
    single: Option<KernelFn>,
    /// Forward carries: the backward loop's first xs.
    pub(super) n_carry: usize,
    n_xs: usize,
    reverse: bool,
    /// Per forward body input, then output: bytes of one value (a row, for xs and ys).
    bytes: Vec<usize>,
    snapshots: usize,
}

impl Forward {
    /// The forward loop of `lp`, if `lp` recomputes one, running the compiled body from
    /// `bodies`.
    pub(super) fn new(lp: &Loop, bodies: &Bodies) -> Option<Forward> {
        let rc = lp.recompute.as_ref()?;
        let f = &rc.forward;
        let body = Arc::clone(&bodies[&body_key(f)]);
        let fb = &f.body;
        let bytes = (fb.inputs().iter().chain(fb.outputs()))
            .map(|&x| fb.ty(x).numel() * fb.ty(x).dtype.size_bytes())
            .collect();
        Some(Forward {
            single: body.single_fn(),
            body,
            n_carry: f.n_carry,
            n_xs: f.n_xs,
            reverse: f.reverse,
            bytes,
            snapshots: rc.snapshots,
        })
    }
}

impl Forward {
    /// The forward loop's compiled body.
    pub(super) fn body(&self) -> &Kernel {
        &self.body
    }
}

impl LoopRun {
    fn recompute_layout(&self) -> &RecomputeLayout {
        (self.layout.recompute.as_ref()).expect("plan invariant: recomputing loops have slots")
    }

    /// Forward carry `i` in snapshot slot `slot` (slot 0: the forward loop's initial carries,
    /// which are this loop's operands after its carries).
    ///
    /// # Safety
    /// As [`LoopRun::run`]; `slot` is at most the schedule's work slot.
    pub(super) unsafe fn slot_addr(&self, args: &Args, slot: usize, i: usize) -> *mut u8 {
        if slot == 0 {
            // SAFETY: forwarded.
            unsafe { self.addr(self.operands[self.n_carry + i], args) }
        } else {
            let off = self.recompute_layout().slots[slot - 1][i];
            // SAFETY: the slots lie in the loop's scratch block.
            unsafe { args.ws.add(self.temps + off) }
        }
    }

    /// The driver of a recomputing loop: the schedule for `length` steps and the snapshot
    /// count, each backward step a [`LoopRun::step`].
    ///
    /// # Safety
    /// As [`LoopRun::run`], which set the consts' slots of `table`.
    pub(super) unsafe fn recompute_steps(
        &self,
        f: &Forward,
        args: &Args,
        table: *mut usize,
        threads: usize,
    ) {
        let n_consts = self.operands.len() - self.n_carry - self.n_xs;
        let f_in = f.n_carry + f.n_xs + n_consts;
        // SAFETY: the forward table lies in the scratch block with one slot per forward body
        // input and output; the forward loop's consts are this loop's (set in `table`).
        let ftable = unsafe {
            let ftable = args.ws.add(self.temps + self.recompute_layout().table);
            let ftable = ftable.cast::<usize>();
            for k in 0..n_consts {
                *ftable.add(f.n_carry + f.n_xs + k) = *table.add(self.n_carry + self.n_xs + k);
            }
            ftable
        };
        let frames = revolve::slots(self.length, f.snapshots);
        // SAFETY: the stack's range of the scratch block holds `frames` frames, 8-byte aligned
        // (the block's ranges are 64-byte aligned), of initialized memory (every workspace is
        // zeroed when made, and frames are plain integers), and nothing else uses it while the
        // schedule runs.
        let stack = unsafe {
            let at = args.ws.add(self.temps + self.recompute_layout().stack);
            std::slice::from_raw_parts_mut(at.cast::<revolve::Frame>(), frames)
        };
        let mut d = Driver {
            run: self,
            f,
            args,
            table,
            ftable,
            f_in,
            threads,
            done: 0,
        };
        revolve::drive_on(self.length, f.snapshots, &mut d, stack);
    }
}

/// The schedule's callbacks. Made only by [`LoopRun::recompute_steps`], whose caller upholds
/// [`LoopRun::run`]'s contract for the whole schedule.
struct Driver<'a> {
    run: &'a LoopRun,
    f: &'a Forward,
    args: &'a Args,
    table: *mut usize,
    ftable: *mut usize,
    /// Forward body inputs.
    f_in: usize,
    threads: usize,
    /// Backward steps run so far.
    done: usize,
}

impl Driver<'_> {
    /// The row forward step `s` reads (and the backward loop reads and writes when it
    /// reverses step `s`).
    fn row_of(&self, s: usize) -> usize {
        if self.f.reverse {
            self.run.length - 1 - s
        } else {
            s
        }
    }
}

impl Stepper for Driver<'_> {
    fn advance(&mut self, from: usize, to: usize, s0: usize, s1: usize) {
        let (run, f, args) = (self.run, self.f, self.args);
        let rl = run.recompute_layout();
        let count = s1 - s0;
        let nfc = f.n_carry;
        // Step `i` writes slot `to` when `count - 1 - i` is even, else the second buffer: the
        // last step writes `to`, and a step reads what the previous one wrote.
        let out = |i: usize, c: usize| -> *mut u8 {
            if (count - 1 - i).is_multiple_of(2) {
                // SAFETY: the schedule's slots are at most its work slot (`Driver`'s contract).
                unsafe { run.slot_addr(args, to, c) }
            } else {
                // SAFETY: the second buffer lies in the scratch block.
                unsafe { args.ws.add(run.temps + rl.tmp[c]) }
            }
        };
        for (i, s) in (s0..s1).enumerate() {
            let t = self.row_of(s);
            // SAFETY: `ftable` has a slot per forward body input and output; row `t` of each
            // forward xs operand lies in it (`t < length`); the outputs (slot `to` or the
            // second buffer, and the scratch rows) are distinct from the inputs (slot `from`
            // or the other of the two, and the operands); `Driver`'s contract covers the rest.
            unsafe {
                for c in 0..nfc {
                    let input = if i == 0 {
                        run.slot_addr(args, from, c)
                    } else {
                        out(i - 1, c)
                    };
                    *self.ftable.add(c) = input as usize;
                    *self.ftable.add(self.f_in + c) = out(i, c) as usize;
                }
                for x in 0..f.n_xs {
                    let op = run.operands[run.n_carry + nfc + x];
                    let row = run.addr(op, args).add(t * f.bytes[nfc + x]);
                    *self.ftable.add(nfc + x) = row as usize;
                }
                for (y, &off) in rl.scratch.iter().enumerate() {
                    let row = args.ws.add(run.temps + off);
                    *self.ftable.add(self.f_in + nfc + y) = row as usize;
                }
                let ws = args.ws.add(run.temps + run.layout.body_ws);
                call_body(&f.body, f.single, self.ftable, ws, self.threads);
            }
        }
    }

    fn backward(&mut self, slot: usize, s: usize) {
        let t = self.row_of(s);
        // SAFETY: `Driver`'s contract; the schedule runs one backward step per forward step,
        // in order, so `done` counts the steps before this one.
        unsafe {
            self.run.step(
                self.args,
                self.table,
                (self.done, t, Some(slot)),
                self.threads,
            );
        }
        self.done += 1;
    }
}
