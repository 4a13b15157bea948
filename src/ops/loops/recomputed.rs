//! The reference semantics of a backward loop that recomputes its forward loop's carries
//! ([`crate::ir::loops::Recompute`]): the [`revolve`] schedule, each step run by the
//! interpreter.

use super::revolve::{self, Stepper};
use super::{row, stack};
use crate::ir::loops::Loop;
use crate::tensor::Tensor;

struct Interp<'a> {
    lp: &'a Loop,
    fwd: &'a Loop,
    args: &'a [&'a Tensor],
    /// Snapshot slots, then the work slot: the forward carries entering some step.
    slots: Vec<Vec<Tensor>>,
    /// The backward loop's carries.
    carry: Vec<Tensor>,
    /// The backward loop's ys, by row.
    ys: Vec<Vec<Option<Tensor>>>,
    /// The steps that run (`length`, or fewer for a loop with an exit).
    n: usize,
}

impl Interp<'_> {
    /// The xs row that forward step `s` reads (and that the backward loop reads and writes
    /// when it reverses step `s`).
    fn row_of(&self, s: usize) -> usize {
        if self.fwd.reverse { self.n - 1 - s } else { s }
    }

    fn consts(&self) -> impl Iterator<Item = Tensor> + '_ {
        self.args[self.lp.n_carry + self.lp.n_xs..]
            .iter()
            .map(|k| (*k).clone())
    }
}

impl Stepper for Interp<'_> {
    fn advance(&mut self, from: usize, to: usize, s0: usize, s1: usize) {
        let nc = self.lp.n_carry;
        let nfc = self.fwd.n_carry;
        let xs = &self.args[nc + nfc..nc + nfc + self.fwd.n_xs];
        let mut c = self.slots[from].clone();
        for s in s0..s1 {
            let t = self.row_of(s);
            let mut inputs = std::mem::take(&mut c);
            inputs.extend(xs.iter().map(|x| row(x, t)));
            inputs.extend(self.consts());
            let mut out = crate::interp::run(&self.fwd.body, &inputs)
                .expect("invariant: the forward body takes the loop's operands");
            out.truncate(nfc);
            c = out;
        }
        self.slots[to] = c;
    }

    fn backward(&mut self, slot: usize, s: usize) {
        let (nc, nx) = (self.lp.n_carry, self.lp.n_xs);
        let t = self.row_of(s);
        let mut inputs = std::mem::take(&mut self.carry);
        inputs.extend(self.slots[slot].iter().cloned());
        let stacked = &self.args[nc + self.fwd.n_carry..nc + nx];
        inputs.extend(stacked.iter().map(|x| row(x, t)));
        inputs.extend(self.consts());
        let mut out = crate::interp::run(&self.lp.body, &inputs)
            .expect("invariant: the backward body takes the loop's operands");
        let rest = out.split_off(nc);
        self.carry = out;
        for (y, v) in self.ys.iter_mut().zip(rest) {
            y[t] = Some(v);
        }
    }
}

/// Runs a recomputing backward loop on its operands; returns its results like `run_loop`.
pub(super) fn run(lp: &Loop, args: &[&Tensor]) -> Vec<Tensor> {
    let rc = lp.recompute.as_ref().expect("a recomputing loop");
    let (n, nc) = (super::steps_of(lp, args), lp.n_carry);
    let nfc = rc.forward.n_carry;
    let mut slots = vec![Vec::new(); revolve::work_slot(n, rc.snapshots) + 1];
    slots[0] = args[nc..nc + nfc].iter().map(|t| (*t).clone()).collect();
    let mut st = Interp {
        lp,
        fwd: &rc.forward,
        args,
        slots,
        carry: args[..nc].iter().map(|t| (*t).clone()).collect(),
        ys: vec![vec![None; lp.length]; lp.n_ys()],
        n,
    };
    revolve::drive(n, rc.snapshots, &mut st);
    let outs = &lp.body.outputs()[nc..];
    let ys: Vec<Tensor> = (st.ys.iter().zip(outs))
        .map(|(rows, &o)| {
            // Rows of steps that did not run are zero (see `Exit::Flags`).
            let zero = Tensor::splat(lp.body.ty(o), 0.0);
            let rows: Vec<Tensor> = rows
                .iter()
                .map(|r| r.clone().unwrap_or_else(|| zero.clone()))
                .collect();
            stack(&rows)
        })
        .collect();
    st.carry.into_iter().chain(ys).collect()
}
