//! Common-subexpression elimination by hash-consing.
//!
//! A node equal to an earlier one (same op, operands, attributes — constants compared bitwise —
//! and type) is replaced by the earlier one. Operands of commutative ops are put in id order
//! first, so `a*b` and `b*a` merge. Inputs never merge (they are distinct values by definition), nor do
//! `optimization_barrier`s (their purpose is to keep recomputed copies apart from the originals).
//! Does not remove the merged nodes' now-unused operands (DCE does).

use super::{Rewrite, rebuild};
use crate::ir::{Graph, Node, NodeId, Op};
use crate::ops;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Counters of one CSE run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CseStats {
    /// Nodes replaced by an identical earlier node.
    pub nodes_merged: u64,
    /// Commutative nodes whose operands were reordered.
    pub operands_normalized: u64,
}

impl fmt::Display for CseStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes_merged={} operands_normalized={}",
            self.nodes_merged, self.operands_normalized
        )
    }
}

fn key(n: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    n.op.hash(&mut h);
    n.inputs.hash(&mut h);
    n.ty.hash(&mut h);
    n.attrs.hash_into(&mut h);
    h.finish()
}

fn equal(a: &Node, b: &Node) -> bool {
    a.op == b.op && a.inputs == b.inputs && a.ty == b.ty && a.attrs.same(&b.attrs)
}

/// Merges identical nodes.
pub fn eliminate_common_subexpressions(g: &mut Graph) -> CseStats {
    let mut table: HashMap<u64, Vec<NodeId>> = HashMap::new();
    let mut normalized = 0u64;
    let merged = rebuild(g, |new, n| {
        // Barriers exist to keep recomputed copies apart from their originals.
        if matches!(n.op, Op::Input | Op::Barrier) {
            return Rewrite::Keep;
        }
        let mut n = n.clone();
        let swap =
            ops::rules(n.op).props.commutative && n.inputs.len() == 2 && n.inputs[0] > n.inputs[1];
        if swap {
            n.inputs.swap(0, 1);
        }
        let k = key(&n);
        if let Some(m) = table
            .get(&k)
            .and_then(|c| c.iter().find(|&&m| equal(new.node(m), &n)))
        {
            return Rewrite::Alias(*m);
        }
        table.entry(k).or_default().push(NodeId(new.len() as u32));
        if swap {
            normalized += 1;
            Rewrite::Replace(n)
        } else {
            Rewrite::Keep
        }
    });
    CseStats {
        nodes_merged: merged - normalized,
        operands_normalized: normalized,
    }
}
