//! Pruning of loop outputs nobody reads: a loop's body stops computing them.
//!
//! A loop group's nodes are the results something reads (DCE removes the others, see
//! [`crate::ir::loops`]), but the body still computes every output at every step. This pass
//! removes from the body each y that no member holds, and each carry that no member holds and
//! that no kept output reads (the carry's body input, its operand and its output go together).
//! Which carries the kept outputs read is a fixed point (a kept carry may read another one): it
//! is iterated, each round one backward liveness sweep over the body, at most one round per
//! carry. Then the body's dead nodes go.
//!
//! Kept: a loop's [`Exit::While`] condition (remapped to its new index), the xs and consts,
//! and every carry of a forward loop that a backward loop recomputes (it needs them all). Such a
//! forward loop loses only the ys no group of it holds, and its backward loops then name the
//! pruned loop (one `Arc`, which tape sharing matches). Backward loops themselves are left
//! alone. Values never change: the steps run the same arithmetic on the same carries.

use super::dce;
use crate::ir::loops::{Exit, Loop, LoopGroup, loop_groups, scan_attrs};
use crate::ir::{Attrs, Graph, NodeId, Op};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopOutputStats {
    /// Body outputs removed (carries and ys), summed over the loops.
    pub outputs_removed: u64,
}

impl fmt::Display for LoopOutputStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loop_outputs_removed={}", self.outputs_removed)
    }
}

/// A loop with some outputs removed: the new loop, and per old output its new index.
struct Pruned {
    lp: Arc<Loop>,
    index: Vec<Option<usize>>,
    /// Per old operand: kept.
    keep_operand: Vec<bool>,
}

/// Removes the loop outputs nothing reads (see the module docs).
pub fn prune_loop_outputs(g: &mut Graph) -> LoopOutputStats {
    let groups = loop_groups(g);
    let loops: Vec<Arc<Loop>> = (groups.iter())
        .map(|gr| scan_attrs(&g.node(gr.first).attrs).expect("scan").0.clone())
        .collect();
    // Forward loops of recomputing loops: their carries stay (the backward loop recomputes
    // them all); their ys go only if no group of that loop holds them, and the recomputing
    // loops then name the pruned loop.
    let mut fwd_held: HashMap<*const Loop, (Arc<Loop>, Vec<bool>)> = HashMap::new();
    for lp in &loops {
        if let Some(rc) = &lp.recompute {
            let f = &rc.forward;
            let held = (0..f.body.outputs().len()).map(|k| k < f.n_carry).collect();
            fwd_held.insert(Arc::as_ptr(f), (f.clone(), held));
        }
    }
    for (gr, lp) in groups.iter().zip(&loops) {
        if let Some((_, held)) = fwd_held.get_mut(&Arc::as_ptr(lp)) {
            gr.members.iter().for_each(|&(_, r)| held[r] = true);
        }
    }
    let mut stats = LoopOutputStats::default();
    let mut made: HashMap<(*const Loop, Vec<bool>), Arc<Pruned>> = HashMap::new();
    let mut forward: HashMap<*const Loop, Arc<Pruned>> = HashMap::new();
    for (&ptr, (lp, held)) in &fwd_held {
        let needed = needed_outputs(lp, held.clone());
        if !needed.iter().all(|&n| n) {
            stats.outputs_removed += needed.iter().filter(|&&n| !n).count() as u64;
            let p = Arc::new(prune(lp, &needed));
            made.insert((ptr, needed), p.clone());
            forward.insert(ptr, p);
        }
    }
    let mut backward: HashMap<*const Loop, Arc<Loop>> = HashMap::new();
    for (gr, lp) in groups.iter().zip(loops) {
        if let Some(rc) = &lp.recompute {
            let Some(p) = forward.get(&Arc::as_ptr(&rc.forward)) else {
                continue;
            };
            let new = backward.entry(Arc::as_ptr(&lp)).or_insert_with(|| {
                let mut rc = rc.clone();
                rc.forward = p.lp.clone();
                Arc::new(Loop {
                    recompute: Some(rc),
                    ..(*lp).clone()
                })
            });
            for &(m, r) in &gr.members {
                g.nodes_mut()[m.index()].attrs = Attrs::Scan {
                    body: new.clone(),
                    result: r,
                };
            }
            continue;
        }
        let p = if fwd_held.contains_key(&Arc::as_ptr(&lp)) {
            match forward.get(&Arc::as_ptr(&lp)) {
                Some(p) => p.clone(),
                None => continue,
            }
        } else {
            let mut held = vec![false; lp.body.outputs().len()];
            gr.members.iter().for_each(|&(_, r)| held[r] = true);
            let needed = needed_outputs(&lp, held);
            if needed.iter().all(|&n| n) {
                continue;
            }
            let key = (Arc::as_ptr(&lp), needed);
            if let Some(p) = made.get(&key) {
                p.clone()
            } else {
                stats.outputs_removed += key.1.iter().filter(|&&n| !n).count() as u64;
                let p = Arc::new(prune(&lp, &key.1));
                made.insert(key, p.clone());
                p
            }
        };
        rewrite_members(g, gr, &p);
    }
    stats
}

/// Points the members of group `gr` at the pruned loop `p`.
fn rewrite_members(g: &mut Graph, gr: &LoopGroup, p: &Pruned) {
    for &(m, r) in &gr.members {
        let node = &mut g.nodes_mut()[m.index()];
        let mut k = 0;
        node.inputs.retain(|_| {
            k += 1;
            p.keep_operand[k - 1]
        });
        node.attrs = Attrs::Scan {
            body: p.lp.clone(),
            result: p.index[r].expect("a held result is kept"),
        };
    }
}

/// Which body outputs to keep: those `held`, the exit condition, every carry a kept output
/// reads (iterated to a fixed point), and one carry if nothing else would be an operand.
fn needed_outputs(lp: &Loop, mut needed: Vec<bool>) -> Vec<bool> {
    if let Some(Exit::While(k)) = lp.exit {
        needed[k] = true;
    }
    let body = &lp.body;
    let inputs = body.inputs();
    loop {
        let mut live = vec![false; body.len()];
        for (o, _) in (body.outputs().iter()).zip(&needed).filter(|p| *p.1) {
            live[o.index()] = true;
        }
        for i in (0..body.len()).rev() {
            if live[i] {
                for x in &body.nodes()[i].inputs {
                    live[x.index()] = true;
                }
            }
        }
        let mut changed = false;
        for (c, &input) in inputs.iter().enumerate().take(lp.n_carry) {
            if live[input.index()] && !needed[c] {
                needed[c] = true;
                changed = true;
            }
        }
        // A loop has at least one operand: keep the first carry of a loop with nothing else.
        let no_operand = lp.n_xs + lp.n_consts() == 0 && !needed[..lp.n_carry].contains(&true);
        if no_operand && lp.n_carry > 0 {
            needed[0] = true;
            changed = true;
        }
        if !changed {
            return needed;
        }
    }
}

/// `lp` keeping only the `needed` outputs (and the carries' inputs that go with them).
fn prune(lp: &Loop, needed: &[bool]) -> Pruned {
    let mut body = lp.body.clone();
    let outs: Vec<NodeId> = (body.outputs().iter().zip(needed))
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .collect();
    body.set_outputs(outs);
    dce::eliminate_dead_nodes(&mut body);
    let n_in = body.inputs().len();
    let keep_operand: Vec<bool> = (0..n_in).map(|k| k >= lp.n_carry || needed[k]).collect();
    drop_inputs(&mut body, &keep_operand);
    let mut index = Vec::with_capacity(needed.len());
    let mut next = 0;
    for &n in needed {
        index.push(n.then_some(next));
        next += usize::from(n);
    }
    let exit = lp.exit.map(|e| match e {
        Exit::While(k) => Exit::While(index[k].expect("the condition is kept")),
        flags => flags,
    });
    let n_carry = needed[..lp.n_carry].iter().filter(|&&n| n).count();
    Pruned {
        lp: Arc::new(Loop {
            body,
            n_carry,
            exit,
            ..lp.clone()
        }),
        index,
        keep_operand,
    }
}

/// Removes the input nodes whose `keep` is false (nothing reads them), renumbering the rest.
fn drop_inputs(g: &mut Graph, keep: &[bool]) {
    let inputs = g.inputs();
    let mut gone = vec![false; g.len()];
    for (&i, &k) in inputs.iter().zip(keep) {
        gone[i.index()] = !k;
    }
    if !gone.contains(&true) {
        return;
    }
    debug_assert!(
        g.nodes()
            .iter()
            .zip(&gone)
            .all(|(n, &d)| !d || n.op == Op::Input)
    );
    let live: Vec<bool> = gone.iter().map(|&d| !d).collect();
    super::dce::retain_nodes(g, &live);
}
