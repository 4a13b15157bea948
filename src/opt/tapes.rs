//! Tape sharing: a backward loop that would recompute every carry of a forward loop the graph
//! already runs reads them from that loop instead.
//!
//! A loop's VJP is a backward loop that recomputes its forward loop's carries from snapshots
//! ([`crate::ir::loops::Recompute`]). When it keeps them all (`snapshots ≥ length`) and the
//! same forward loop runs earlier in the graph on the same operands, recomputing is a second
//! forward sweep for nothing: this pass makes the forward loop also output its carries stacked
//! (its tape) and turns the backward loop into a plain one that reads them. The same body runs
//! on the same carries, so results are bitwise unchanged; the forward sweep runs once.
//!
//! Run it after a memory budget has chosen snapshot counts (a shared tape cannot shrink).

use crate::ir::loops::{Loop, loop_groups, scan_attrs};
use crate::ir::{Attrs, Graph, Node, NodeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapeStats {
    /// Backward loops that now read a forward loop's tape.
    pub tapes_shared: u64,
}

impl fmt::Display for TapeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tapes_shared={}", self.tapes_shared)
    }
}

/// A forward group that will output its tape.
struct Taped {
    /// Its last member (the tape nodes go right after it).
    last: NodeId,
    /// The loop with the tape outputs added.
    with_tape: Arc<Loop>,
    /// The tape nodes' new ids, once appended.
    tape: Vec<NodeId>,
}

/// Shares tapes wherever it can (see the module docs).
pub fn share_tapes(g: &mut Graph) -> TapeStats {
    let groups = loop_groups(g);
    // Forward groups by loop and operands.
    let mut forward: HashMap<(*const Loop, Vec<NodeId>), usize> = HashMap::new();
    let mut pairs: Vec<(usize, usize)> = Vec::new(); // (forward group, backward group)
    for (k, gr) in groups.iter().enumerate() {
        let node = g.node(gr.first);
        let lp = scan_attrs(&node.attrs).expect("a scan node").0;
        let Some(rc) = &lp.recompute else {
            forward.insert((Arc::as_ptr(lp), node.inputs.clone()), k);
            continue;
        };
        if rc.snapshots < lp.length {
            continue;
        }
        let (nc, nfc, nfx) = (lp.n_carry, rc.forward.n_carry, rc.forward.n_xs);
        let ops = &node.inputs;
        let mut want: Vec<NodeId> = ops[nc..nc + nfc + nfx].to_vec();
        want.extend(&ops[nc + lp.n_xs..]);
        if let Some(&f) = forward.get(&(Arc::as_ptr(&rc.forward), want)) {
            pairs.push((f, k));
        }
    }
    if pairs.is_empty() {
        return TapeStats::default();
    }
    let mut taped: HashMap<NodeId, Taped> = HashMap::new(); // by the forward group's first node
    let mut plain: HashMap<NodeId, (NodeId, Arc<Loop>)> = HashMap::new(); // backward member → (forward first, loop)
    for &(f, k) in &pairs {
        let fg = &groups[f];
        let lp = scan_attrs(&g.node(fg.first).attrs).expect("scan").0;
        taped.entry(fg.first).or_insert_with(|| Taped {
            last: fg.members.last().expect("a group has members").0,
            with_tape: Arc::new(lp.with_tape()),
            tape: Vec::new(),
        });
        let bl = scan_attrs(&g.node(groups[k].first).attrs).expect("scan").0;
        let p = Arc::new(Loop {
            recompute: None,
            ..(**bl).clone()
        });
        for &(m, _) in &groups[k].members {
            plain.insert(m, (fg.first, p.clone()));
        }
    }
    rewrite(g, &groups, &mut taped, &plain);
    TapeStats {
        tapes_shared: pairs.len() as u64,
    }
}

/// Rebuilds `g`: forward members take the taped loop (and its tape nodes follow the last
/// member), backward members become plain loops reading the tape.
fn rewrite(
    g: &mut Graph,
    groups: &[crate::ir::loops::LoopGroup],
    taped: &mut HashMap<NodeId, Taped>,
    plain: &HashMap<NodeId, (NodeId, Arc<Loop>)>,
) {
    let first_of: HashMap<NodeId, NodeId> = (groups.iter())
        .filter(|gr| taped.contains_key(&gr.first))
        .flat_map(|gr| gr.members.iter().map(move |&(m, _)| (m, gr.first)))
        .collect();
    let regions = g.take_custom_regions();
    let old = std::mem::take(g);
    let mut new = Graph::new(old.name.clone());
    let mut map: Vec<NodeId> = Vec::with_capacity(old.len());
    for (i, node) in old.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let mut n: Node = node.clone();
        n.inputs.iter_mut().for_each(|x| *x = map[x.index()]);
        n.origin = n.origin.renumbered(|f| map.get(f.index()).copied());
        if let Some(f) = first_of.get(&id) {
            let t = &taped[f];
            let result = scan_attrs(&n.attrs).expect("scan").1;
            n.attrs = Attrs::Scan {
                body: t.with_tape.clone(),
                result,
            };
        }
        if let Some((f, lp)) = plain.get(&id) {
            let rc_carries = lp.n_carry;
            let tape = &taped[f].tape;
            let result = scan_attrs(&n.attrs).expect("scan").1;
            n.inputs
                .splice(rc_carries..rc_carries + tape.len(), tape.iter().copied());
            n.attrs = Attrs::Scan {
                body: lp.clone(),
                result,
            };
            n.ty = lp.result_type(result).expect("same results");
        }
        let new_id = new.append(n.clone());
        map.push(new_id);
        if let Some(f) = first_of.get(&id)
            && taped[f].last == id
        {
            let t = taped.get_mut(f).expect("present");
            let n_out = t.with_tape.body.outputs().len();
            let n_c = t.with_tape.n_carry;
            for result in n_out - n_c..n_out {
                let ty = t.with_tape.result_type(result).expect("a tape result");
                let attrs = Attrs::Scan {
                    body: t.with_tape.clone(),
                    result,
                };
                t.tape.push(new.append(Node {
                    ty,
                    attrs,
                    name: None,
                    ..n.clone()
                }));
            }
        }
    }
    new.set_outputs(old.outputs().iter().map(|o| map[o.index()]).collect());
    for mut r in regions {
        r.inputs.iter_mut().for_each(|x| *x = map[x.index()]);
        (r.first, r.output) = (map[r.first.index()], map[r.output.index()]);
        new.add_custom_region(r);
    }
    *g = new;
}
