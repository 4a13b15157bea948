//! A recomputing backward loop at run time ([`crate::ir::loops::Recompute`]): the binomial
//! schedule of [`crate::ops::loops::revolve`] replayed with the compiled bodies.
//!
//! The backward loop's steps are [`LoopRun::fill`] + [`LoopRun::exec`] as for any loop, except
//! that the xs slots of the recomputed carries point at a snapshot slot instead of a row. The
//! forward steps run the forward loop's compiled body on the loop's own operands (its xs and
//! consts are the backward loop's), double-buffering carries, its ys written to scratch rows.
//! Slot 0 is the initial carries where they are; the other slots and buffers are the loop's
//! scratch block ([`RecomputeLayout`]), so a call allocates nothing. The interpreter
//! (`ops::loops::recomputed`) replays the same schedule, and every step runs the same code on
//! the same carries, so results are bitwise those of any other snapshot count.
#![allow(unsafe_code)]

use super::kernel::{Args, Kernel, KernelFn};
use super::loops::LoopRun;
use super::plan::RecomputeLayout;
use crate::ops::loops::revolve::{self, Stepper};
use std::sync::Arc;

/// What a [`LoopRun`] of a recomputing loop adds: its forward loop.
pub(super) struct RecomputeRun {
    pub fwd: Arc<Kernel>,
    pub fwd_single: Option<KernelFn>,
    pub snapshots: usize,
    pub fwd_reverse: bool,
    pub n_fc: usize,
    pub n_fx: usize,
    /// Per forward body input, then output: bytes of one value (a row, for xs and ys).
    pub fwd_bytes: Vec<usize>,
    pub layout: RecomputeLayout,
}

/// One run of the schedule: the loop, the call, and the backward steps done so far.
struct Replay<'a> {
    lp: &'a LoopRun,
    rc: &'a RecomputeRun,
    args: &'a Args,
    table: *mut usize,
    fwd_table: *mut usize,
    threads: usize,
    done: usize,
    /// The forward steps that ran (`length`, or fewer for a loop with an exit).
    n: usize,
}

impl Replay<'_> {
    /// The address of forward carry `c` in snapshot slot `slot`.
    ///
    /// # Safety
    /// As [`LoopRun::run`].
    unsafe fn slot(&self, slot: usize, c: usize) -> *mut u8 {
        // SAFETY: slot 0 is the operand of the recomputed xs slot `c` (the forward loop's
        // initial carry); the others lie in the scratch block.
        unsafe {
            if slot == 0 {
                self.lp.operand(self.args, self.lp.n_carry() + c)
            } else {
                let l = &self.rc.layout;
                let off = l.slot1[c] + (slot - 1) * l.slot_bytes;
                self.args.ws.add(self.lp.temps() + off)
            }
        }
    }

    /// The xs row forward step `s` reads.
    fn row_of(&self, s: usize) -> usize {
        if self.rc.fwd_reverse {
            self.n - 1 - s
        } else {
            s
        }
    }

    /// The address of a forward carry buffer.
    ///
    /// # Safety
    /// As [`LoopRun::run`].
    unsafe fn buffer(&self, which: usize, c: usize) -> *mut u8 {
        // SAFETY: the buffers lie in the scratch block.
        unsafe { (self.args.ws).add(self.lp.temps() + self.rc.layout.carries[which][c]) }
    }
}

impl Stepper for Replay<'_> {
    fn advance(&mut self, from: usize, to: usize, s0: usize, s1: usize) {
        let (rc, lp) = (self.rc, self.lp);
        let (nfc, nfx) = (rc.n_fc, rc.n_fx);
        let n_in = rc.fwd_bytes.len() - (rc.layout.ys.len() + nfc);
        for s in s0..s1 {
            let t = self.row_of(s);
            // SAFETY: (whole block) `LoopRun::run`'s contract; the forward table has a slot
            // per forward body input and output; rows `t < length` lie in the xs operands;
            // each step reads carries (slot `from` or one buffer) distinct from those it
            // writes (the other buffer, or slot `to != from`), and its ys go to scratch rows.
            unsafe {
                for c in 0..nfc {
                    let input = if s == s0 {
                        self.slot(from, c)
                    } else {
                        self.buffer((s - s0 - 1) % 2, c)
                    };
                    let output = if s + 1 == s1 {
                        self.slot(to, c)
                    } else {
                        self.buffer((s - s0) % 2, c)
                    };
                    *self.fwd_table.add(c) = input as usize;
                    *self.fwd_table.add(n_in + c) = output as usize;
                }
                for x in 0..nfx {
                    let base = lp.operand(self.args, lp.n_carry() + nfc + x);
                    *self.fwd_table.add(nfc + x) = base.add(t * rc.fwd_bytes[nfc + x]) as usize;
                }
                let ws = (self.args.ws).add(lp.temps() + rc.layout.body_ws);
                match rc.fwd_single {
                    Some(f) => f(
                        self.fwd_table.cast::<*const u8>(),
                        self.fwd_table.add(n_in).cast::<*mut u8>(),
                        ws,
                        rc.fwd.consts_ptr(),
                    ),
                    None => rc.fwd.exec_body(self.fwd_table, ws, self.threads),
                }
            }
        }
    }

    fn backward(&mut self, slot: usize, s: usize) {
        let t = self.row_of(s);
        // SAFETY: `LoopRun::run`'s contract; the backward steps run in schedule order, so
        // step `done - 1` wrote the carries this one reads; the recomputed xs slots point at
        // the snapshot holding the carries entering forward step `s`.
        unsafe {
            self.lp.fill(self.args, self.table, self.done, t);
            for c in 0..self.rc.n_fc {
                *self.table.add(self.lp.n_carry() + c) = self.slot(slot, c) as usize;
            }
            self.lp.exec(self.args, self.table, self.threads);
        }
        self.done += 1;
    }
}

impl LoopRun {
    /// Runs a recomputing loop's steps by the schedule (in place of the plain step driver):
    /// the schedule of the `n` steps the loop runs ([`LoopRun::count`]). Returns `n`.
    ///
    /// # Safety
    /// As [`LoopRun::run`], which set the consts' slots of `table`.
    pub(super) unsafe fn replay(
        &self,
        rc: &RecomputeRun,
        args: &Args,
        table: *mut usize,
        threads: usize,
    ) -> usize {
        // SAFETY: forwarded.
        let n = unsafe { self.count(args) };
        // SAFETY: the forward table lies in the scratch block; the forward body's consts are
        // the loop's consts (the same at every step).
        let fwd_table = unsafe { args.ws.add(self.temps() + rc.layout.table) }.cast::<usize>();
        let n_k = self.n_operands() - self.n_carry() - self.n_xs();
        let n_in = rc.n_fc + rc.n_fx + n_k;
        for k in 0..n_k {
            // SAFETY: as above.
            unsafe {
                *fwd_table.add(rc.n_fc + rc.n_fx + k) =
                    self.operand(args, self.n_carry() + self.n_xs() + k) as usize;
            }
        }
        for (y, &off) in rc.layout.ys.iter().enumerate() {
            // SAFETY: the forward ys' scratch rows lie in the scratch block.
            unsafe {
                *fwd_table.add(n_in + rc.n_fc + y) = args.ws.add(self.temps() + off) as usize;
            }
        }
        let frames = revolve::slots(n, rc.snapshots);
        // SAFETY: the stack's range of the scratch block holds `frames` frames, 8-byte aligned
        // (the block's ranges are 64-byte aligned), of initialized memory (a workspace is
        // zeroed when made, and frames are plain integers), used by nothing else meanwhile.
        let stack = unsafe {
            let at = args.ws.add(self.temps() + rc.layout.stack);
            std::slice::from_raw_parts_mut(at.cast::<revolve::Frame>(), frames)
        };
        let mut replay = Replay {
            lp: self,
            rc,
            args,
            table,
            fwd_table,
            threads,
            done: 0,
            n,
        };
        revolve::drive_on(n, rc.snapshots, &mut replay, stack);
        n
    }
}
