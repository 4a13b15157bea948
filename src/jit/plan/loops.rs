//! Loops in the plan. The consecutive `scan` nodes of one loop (its result group, see
//! [`crate::ir::loops`]) form one group, [`Group::Loop`](super::Group::Loop): no Cranelift
//! code, but a step the kernel runs in Rust around the loop's body, which `compile_with`
//! compiled once into a kernel of its own (see `jit::loops`). Like any group it reads its
//! operands from memory (each one contiguous: `fuse` realizes other views) and writes its live
//! members' homes. Its scratch memory (the carries' two buffers, rows for the ys no member
//! stores, the body's buffer table and the body's workspace) is one block of the workspace,
//! taken for the duration of the group, so [`Plan::ws_bytes`](super::Plan::ws_bytes) counts it.

use super::BIG_ALIGN;
use crate::ir::loops::{Loop, scan_attrs};
use crate::ir::{Graph, NodeId};
use crate::jit::JitError;
use std::collections::HashMap;
use std::sync::Arc;

/// Per loop body (keyed by [`body_key`]): the workspace bytes its compiled kernel needs.
pub(in crate::jit) type BodySizes = HashMap<usize, usize>;

/// The key of a loop's body in [`BodySizes`] (and in the compiled bodies): its `Arc`'s address,
/// shared by every node of its groups.
pub(in crate::jit) fn body_key(lp: &Arc<Loop>) -> usize {
    Arc::as_ptr(lp) as usize
}

/// A loop group, as the kernel runs it.
#[derive(Clone, Debug)]
pub(in crate::jit) struct LoopStep {
    /// The loop.
    pub lp: Arc<Loop>,
    /// The group's first live node (the operands of every member are its operands).
    pub node: NodeId,
    /// The live members and the loop result each holds.
    pub members: Vec<(NodeId, usize)>,
    /// Workspace byte offset of the scratch block (set by `memory`).
    pub temps: usize,
    /// The scratch block's layout.
    pub layout: LoopLayout,
}

/// Byte offsets inside a loop's scratch block, each 64-byte aligned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::jit) struct LoopLayout {
    /// The carries' two buffers: per buffer, per carry, its offset. Step `s` reads the carries
    /// from buffer `(s - 1) % 2` (step 0 from the operands) and writes buffer `s % 2`, so a body
    /// never writes memory it reads.
    pub carries: [Vec<usize>; 2],
    /// Per y: a one-row buffer that every step writes when no live member holds that y.
    pub scratch: Vec<Option<usize>>,
    /// The body's buffer-address table: one `usize` per body input, then per body output.
    pub table: usize,
    /// The body's workspace.
    pub body_ws: usize,
    /// A recomputing loop's memory for its forward loop (see [`RecomputeLayout`]).
    pub recompute: Option<RecomputeLayout>,
    /// Size of the block (at least 64 bytes, so the arena aligns it to 64 bytes).
    pub bytes: usize,
}

/// The part of a recomputing loop's scratch block (see [`crate::ir::loops::Recompute`]) that
/// runs its forward loop: snapshot slots, the forward carries' two buffers, rows for the
/// forward ys (never kept), the forward body's table and workspace. Offsets as in
/// [`LoopLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::jit) struct RecomputeLayout {
    /// The snapshots the schedule keeps: the loop's own count, or fewer if a memory budget
    /// chose so.
    pub snapshots: usize,
    /// Per snapshot slot (index 0 unused: slot 0 is the initial carries, read where they
    /// are; the last is the schedule's work slot), per forward carry: its offset.
    pub slots: Vec<Vec<usize>>,
    /// The forward carries' two buffers (for advances of several steps).
    pub carries: [Vec<usize>; 2],
    /// Per forward y: a one-row buffer.
    pub ys: Vec<usize>,
    /// The forward body's buffer-address table.
    pub table: usize,
    /// The forward body's workspace.
    pub body_ws: usize,
}

fn too_large() -> JitError {
    JitError::TooLarge {
        what: "a loop's scratch memory exceeds the address space".into(),
    }
}

/// The loop group whose live nodes are `members` (consecutive results of one loop), with its
/// scratch layout for a body whose kernel needs `bodies[body_key]` bytes of workspace.
///
/// # Errors
/// [`JitError::TooLarge`] if the block's size overflows.
pub(super) fn step(
    g: &Graph,
    members: &[NodeId],
    bodies: &BodySizes,
    max_snapshots: Option<usize>,
) -> Result<LoopStep, JitError> {
    let attrs = |m: NodeId| scan_attrs(&g.node(m).attrs).expect("loop groups hold scan nodes");
    let lp = Arc::clone(attrs(members[0]).0);
    let members: Vec<(NodeId, usize)> = members.iter().map(|&m| (m, attrs(m).1)).collect();
    let body = &lp.body;
    let outs = body.outputs();
    let bytes_of = |id: NodeId| {
        let t = body.ty(id);
        t.numel()
            .checked_mul(t.dtype.size_bytes())
            .ok_or_else(too_large)
    };
    let mut at = 0usize;
    let mut take = |bytes: usize| -> Result<usize, JitError> {
        let off = at
            .checked_next_multiple_of(BIG_ALIGN)
            .ok_or_else(too_large)?;
        at = off.checked_add(bytes).ok_or_else(too_large)?;
        Ok(off)
    };
    let mut carries = [Vec::new(), Vec::new()];
    for buf in &mut carries {
        for &o in &outs[..lp.n_carry] {
            buf.push(take(bytes_of(o)?)?);
        }
    }
    let mut scratch = Vec::with_capacity(lp.n_ys());
    for (y, &o) in outs.iter().enumerate().skip(lp.n_carry) {
        let stored = members.iter().any(|&(_, r)| r == y);
        scratch.push(if stored {
            None
        } else {
            Some(take(bytes_of(o)?)?)
        });
    }
    let slots = body.inputs().len() + outs.len();
    let table = take(slots * size_of::<usize>())?;
    let ws = *bodies
        .get(&body_key(&lp))
        .expect("compile_with compiled every loop body first");
    let body_ws = take(ws)?;
    let recompute = match &lp.recompute {
        Some(rc) => {
            let snapshots = max_snapshots.map_or(rc.snapshots, |m| rc.snapshots.min(m).max(1));
            Some(recompute_layout(
                rc, snapshots, lp.length, bodies, &mut take,
            )?)
        }
        None => None,
    };
    let layout = LoopLayout {
        carries,
        scratch,
        table,
        body_ws,
        recompute,
        bytes: at.max(BIG_ALIGN),
    };
    Ok(LoopStep {
        lp,
        node: members[0].0,
        members,
        temps: 0,
        layout,
    })
}

/// The forward half of a recomputing loop's block, allocated with `take`.
fn recompute_layout(
    rc: &crate::ir::loops::Recompute,
    snapshots: usize,
    length: usize,
    bodies: &BodySizes,
    take: &mut impl FnMut(usize) -> Result<usize, JitError>,
) -> Result<RecomputeLayout, JitError> {
    let fwd = &rc.forward;
    let body = &fwd.body;
    let bytes_of = |id: NodeId| {
        let t = body.ty(id);
        t.numel()
            .checked_mul(t.dtype.size_bytes())
            .ok_or_else(too_large)
    };
    let outs = body.outputs();
    let n_slots = crate::ops::loops::revolve::work_slot(length, snapshots) + 1;
    let mut slots = vec![Vec::new()];
    for _ in 1..n_slots {
        let mut slot = Vec::with_capacity(fwd.n_carry);
        for &o in &outs[..fwd.n_carry] {
            slot.push(take(bytes_of(o)?)?);
        }
        slots.push(slot);
    }
    let mut carries = [Vec::new(), Vec::new()];
    for buf in &mut carries {
        for &o in &outs[..fwd.n_carry] {
            buf.push(take(bytes_of(o)?)?);
        }
    }
    let mut ys = Vec::new();
    for &o in &outs[fwd.n_carry..] {
        ys.push(take(bytes_of(o)?)?);
    }
    let table = take((body.inputs().len() + outs.len()) * size_of::<usize>())?;
    let ws = *bodies
        .get(&body_key(fwd))
        .expect("compile_with compiled every forward body first");
    let body_ws = take(ws)?;
    Ok(RecomputeLayout {
        snapshots,
        slots,
        carries,
        ys,
        table,
        body_ws,
    })
}
