//! Phase 2: which `concat`s are read in place, piece by piece ([`Role::Pieces`]).
//!
//! Decided before any group exists, from upper bounds of the cuts that assume every nested
//! concat is read in place too. A concat qualifies if it is not an output, it cuts its space
//! into at most [`MAX_BOXES`] boxes, and every reader reads pieces: an elementwise node (whose
//! own cuts stay within [`MAX_BOXES`] boxes), a reduction that reduces no cut axis, or a
//! concat or a `slice` that qualifies. A slice of such a value is read in place like a concat:
//! its pieces are the value's pieces that overlap it (so `concat(0, y)[k..k + n]`, a shift of
//! `y` with zeros shifted in, costs no copy).
//!
//! [`Role::Pieces`]: super::Role::Pieces

use super::live::Live;
use super::{MAX_BOXES, box_count, insert_sorted, is_elementwise, is_reduction};
use crate::ir::{Attrs, Graph, Node, Op};

/// Cut positions per axis of a concat's index space.
type Cuts = Vec<Vec<usize>>;

/// Per node: true for the `concat`s read in place. None in `checked` mode.
pub(super) fn choose(g: &Graph, live: &Live, checked: bool) -> Vec<bool> {
    let n = g.len();
    let nodes = g.nodes();
    let cuts_ub = if checked {
        vec![None; n]
    } else {
        upper_cuts(g, live)
    };
    let mut piecewise = vec![false; n];
    let mut blocked = vec![false; n];
    for i in (0..n).rev() {
        let node = &nodes[i];
        if !live.live[i] {
            continue;
        }
        if cuts_ub[i].is_some() {
            piecewise[i] = !blocked[i] && !live.output[i];
        }
        if !node.inputs.iter().any(|x| cuts_ub[x.index()].is_some()) {
            continue;
        }
        if !reads_pieces(g, node, &cuts_ub, piecewise[i]) {
            for x in &node.inputs {
                blocked[x.index()] = true;
            }
        }
    }
    piecewise
}

/// Per live `concat` that cuts its space into at most [`MAX_BOXES`] boxes when its nested
/// concats are read in place too: where it is cut.
fn upper_cuts(g: &Graph, live: &Live) -> Vec<Option<Cuts>> {
    let nodes = g.nodes();
    let mut cuts_ub: Vec<Option<Cuts>> = vec![None; g.len()];
    for i in 0..g.len() {
        let node = &nodes[i];
        if !live.live[i] {
            continue;
        }
        if let Attrs::Slice { start, stop } = &node.attrs
            && node.op == Op::Slice
        {
            // The cuts of its operand that fall strictly inside it, shifted to its origin.
            cuts_ub[i] = cuts_ub[node.inputs[0].index()].as_ref().map(|xc| {
                xc.iter()
                    .zip(start.iter().zip(stop))
                    .map(|(cut, (&a, &b))| {
                        cut.iter()
                            .filter(|&&v| a < v && v < b)
                            .map(|&v| v - a)
                            .collect()
                    })
                    .collect()
            });
            continue;
        }
        if node.op != Op::Concat {
            continue;
        }
        let Attrs::Axis { axis } = node.attrs else {
            unreachable!("verified concat has an axis")
        };
        let mut c = vec![Vec::new(); node.ty.rank()];
        let mut at = 0usize;
        for x in &node.inputs {
            if let Some(xc) = &cuts_ub[x.index()] {
                for (a, (cut, xcut)) in c.iter_mut().zip(xc).enumerate() {
                    for &v in xcut {
                        insert_sorted(cut, if a == axis { v + at } else { v });
                    }
                }
            }
            if at > 0 {
                insert_sorted(&mut c[axis], at);
            }
            at += g.ty(*x).shape[axis];
        }
        if box_count(&c) <= MAX_BOXES {
            cuts_ub[i] = Some(c);
        }
    }
    cuts_ub
}

/// True if `node`, which reads some concat with upper-bound cuts, can read it in place
/// (`piecewise`: `node` is itself a concat read in place).
fn reads_pieces(g: &Graph, node: &Node, cuts_ub: &[Option<Cuts>], piecewise: bool) -> bool {
    if is_elementwise(node.op) {
        let shape = &node.ty.shape;
        let mut c = vec![Vec::new(); shape.len()];
        for x in &node.inputs {
            if let Some(xc) = &cuts_ub[x.index()] {
                let xs = &g.ty(*x).shape;
                let off = shape.len() - xs.len();
                for (a, xcut) in xc.iter().enumerate() {
                    if xs[a] > 1 {
                        for &v in xcut {
                            insert_sorted(&mut c[a + off], v);
                        }
                    }
                }
            }
        }
        box_count(&c) <= MAX_BOXES
    } else if is_reduction(node.op) {
        let Attrs::Reduce { axes, .. } = &node.attrs else {
            unreachable!("verified reductions have axes")
        };
        let xc = cuts_ub[node.inputs[0].index()]
            .as_ref()
            .expect("checked above");
        axes.iter().all(|&a| xc[a].is_empty())
    } else {
        matches!(node.op, Op::Concat | Op::Slice) && piecewise
    }
}
