//! Bucketing: independent all-reduces of one dtype and one set of groups become one
//! all-reduce of a flat buffer.
//!
//! A data-parallel gradient has one `all_reduce_sum` per parameter (the transpose of each
//! `pvary`), plus the `all_reduce_mean` of the loss. Each all-reduce costs the network's latency at least once,
//! so, as Horovod and PyTorch DDP do, they are sent as one buffer: the operands are flattened
//! and concatenated, reduced by one `all_reduce_sum`, and sliced back (a mean member is its
//! slice divided by `num_ranks`: the same division as `all_reduce_mean`'s, so the same
//! bits).
//!
//! Which all-reduces can share a call: the *level* of a node is the largest level of the
//! all-reduces it depends on (0 for none), and an all-reduce's level is its operand's plus one.
//! All-reduces of one level and dtype never depend on each other, so those over the same
//! groups form one bucket (a bucket never mixes groups: its one call reduces over one group). The
//! graph is then re-emitted level by level: the nodes of level 0 in their old order, then each
//! level's buckets followed by that level's other nodes in their old order (a node of level
//! `L` reads only nodes of level at most `L`, and level-`L` all-reduces' operands are of
//! level `L - 1`). In a training step this is forward and backward, one all-reduce, then the
//! optimizer update.
//!
//! Inputs keep their order, outputs their names and values; the pass does nothing to a graph
//! with custom-derivative regions (re-emitting would split them) or without a bucket of two.

use crate::ir::{Attrs, DType, Graph, GroupParam, Groups, Node, NodeId, Op, Origin};
use crate::ops::collective::group_attrs;
use std::fmt;

/// Counters of one bucketing run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// All-reduces merged into buckets of two or more.
    pub all_reduces_merged: u64,
    /// Buckets of two or more made.
    pub buckets: u64,
}

impl fmt::Display for BucketStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "all_reduces_merged={} buckets={}",
            self.all_reduces_merged, self.buckets
        )
    }
}

fn is_all_reduce(op: Op) -> bool {
    matches!(op, Op::AllReduceSum | Op::AllReduceMean)
}

/// Merges the independent all-reduces of each level, dtype and set of groups into one (see the module docs).
pub fn bucket_all_reduces(g: &mut Graph) -> BucketStats {
    let mut stats = BucketStats::default();
    if !g.custom_regions().is_empty() {
        return stats;
    }
    let n = g.len();
    let mut level = vec![0u32; n];
    // (level, dtype, groups) → members, in id order.
    let mut buckets: Vec<((u32, DType, Groups), Vec<NodeId>)> = Vec::new();
    for (i, node) in g.nodes().iter().enumerate() {
        let l = node
            .inputs
            .iter()
            .map(|x| level[x.index()])
            .max()
            .unwrap_or(0);
        if is_all_reduce(node.op) {
            level[i] = l + 1;
            let key = (l + 1, node.ty.dtype, group_attrs(node).0.clone());
            match buckets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, m)) => m.push(NodeId(i as u32)),
                None => buckets.push((key, vec![NodeId(i as u32)])),
            }
        } else {
            level[i] = l;
        }
    }
    if buckets.iter().all(|(_, m)| m.len() < 2) {
        return stats;
    }
    let old = std::mem::take(g);
    let top = level.iter().copied().max().unwrap_or(0);
    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); top as usize + 1];
    for i in 0..n {
        if !is_all_reduce(old.nodes()[i].op) {
            by_level[level[i] as usize].push(i);
        }
    }
    let mut new = Graph::new(old.name.clone());
    let mut map: Vec<Option<NodeId>> = vec![None; n];
    let copy = |new: &mut Graph, map: &[Option<NodeId>], i: usize| {
        let mut node: Node = old.nodes()[i].clone();
        for x in &mut node.inputs {
            *x = map[x.index()].expect("operands are emitted first");
        }
        new.append(node)
    };
    for l in 0..=top {
        for ((bl, _, _), members) in &buckets {
            if *bl != l {
                continue;
            }
            if members.len() == 1 {
                map[members[0].index()] = Some(copy(&mut new, &map, members[0].index()));
                continue;
            }
            stats.buckets += 1;
            stats.all_reduces_merged += members.len() as u64;
            emit_bucket(&old, &mut new, &mut map, members);
        }
        for &i in &by_level[l as usize] {
            map[i] = Some(copy(&mut new, &map, i));
        }
    }
    let map: Vec<NodeId> = map
        .into_iter()
        .map(|m| m.expect("every node emitted"))
        .collect();
    for (i, node) in old.nodes().iter().enumerate() {
        let origin = node.origin.renumbered(|f| map.get(f.index()).copied());
        new.set_origin(map[i], origin);
    }
    new.set_outputs(old.outputs().iter().map(|o| map[o.index()]).collect());
    *g = new;
    stats
}

/// Appends one bucket: flatten, concatenate, reduce once, slice back (a mean member divided by
/// `num_ranks`); records each member's replacement in `map`.
fn emit_bucket(old: &Graph, new: &mut Graph, map: &mut [Option<NodeId>], members: &[NodeId]) {
    let push = |new: &mut Graph, op, inputs, attrs| {
        new.push(op, inputs, attrs)
            .expect("bucket nodes are well-typed by construction")
    };
    let dtype = old.ty(members[0]).dtype;
    let groups = group_attrs(old.node(members[0])).0;
    let with = |param| Attrs::Group {
        groups: groups.clone(),
        param,
    };
    let mut flats = Vec::with_capacity(members.len() + 1);
    for &m in members {
        let x = map[old.node(m).inputs[0].index()].expect("operands are emitted first");
        let len = old.ty(m).numel();
        flats.push(if old.ty(m).shape == [len] {
            x
        } else {
            push(new, Op::Reshape, vec![x], Attrs::Shape { shape: vec![len] })
        });
    }
    let any_mean = members.iter().any(|&m| old.node(m).op == Op::AllReduceMean);
    let flat = push(new, Op::Concat, flats, Attrs::Axis { axis: 0 });
    let sum = push(new, Op::AllReduceSum, vec![flat], with(GroupParam::None));
    let ranks = any_mean.then(|| push(new, Op::NumRanks, vec![], with(GroupParam::To(dtype))));
    let mut at = 0;
    for &m in members {
        let node = old.node(m);
        let len = node.ty.numel();
        let s = Attrs::Slice {
            start: vec![at],
            stop: vec![at + len],
        };
        at += len;
        let mut y = push(new, Op::Slice, vec![sum], s);
        if node.ty.shape != [len] {
            let shape = node.ty.shape.clone();
            y = push(new, Op::Reshape, vec![y], Attrs::Shape { shape });
        }
        if node.op == Op::AllReduceMean {
            let p = ranks.expect("a bucket with a mean carries the rank count");
            y = push(new, Op::Div, vec![y, p], Attrs::None);
        }
        new.set_name(y, node.name.as_deref());
        new.set_origin(y, Origin::None);
        map[m.index()] = Some(y);
    }
}
