//! Donated buffers: an output written over the input it replaces (an optimizer step updating
//! its parameters), so the caller passes one buffer for both.
//!
//! The plan itself never changes: the donated output keeps its home (the caller's output
//! buffer, which is now the input's buffer too). What this module decides, per pair, is whether
//! that is safe. It is safe when no write of the output can reach memory that some reader of
//! the input has yet to read:
//! - every loop nest (or matmul, copy) reading the input runs before the first one writing the
//!   output; or
//! - the one nest reading the input is the one writing the output, and it reads the input only
//!   at the element it is about to store, before storing it: the planner's own rule for writing
//!   a workspace value over a dying operand (same layout, read only by members up to the
//!   stored one, a nest not cut into boxes and not rerun), or a GEMM epilogue whose initial
//!   value is the input (the GEMM updates its destination in place).
//!
//! A copy after the code ran that reads the input (an output that *is* the input) also rules
//! it out. Otherwise the kernel first copies the input into a reserved workspace range and
//! reads it from there: one copy, never a wrong result.

use super::JitError;
use super::layout::row_major_bytes;
use super::plan::{Access, BIG_ALIGN, Group, Loc, Plan, PostCopy};
use crate::ir::{Graph, NodeId};

/// One donated pair, as the kernel runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Donated {
    /// Input index.
    pub input: usize,
    /// Output index.
    pub output: usize,
    /// `None`: the output is computed in place over the input. `Some(off)`: the kernel first
    /// copies the input to this workspace byte offset, and the code reads it there.
    pub copy: Option<usize>,
}

/// Resolves the `(input name, output name)` pairs of `JitConfig::donate` to indices.
///
/// # Errors
/// [`JitError::Donation`] for an unknown name, a type mismatch, or a name used twice.
pub(super) fn resolve(
    g: &Graph,
    pairs: &[(String, String)],
) -> Result<Vec<(usize, usize)>, JitError> {
    let inputs = g.inputs();
    let in_names: Vec<String> = inputs.iter().map(|&i| g.value_name(i)).collect();
    let out_names: Vec<String> = g.outputs().iter().map(|&o| g.value_name(o)).collect();
    let mut out = Vec::with_capacity(pairs.len());
    for (a, b) in pairs {
        let err = |reason: String| JitError::Donation {
            input: a.clone(),
            output: b.clone(),
            reason,
        };
        let i = in_names.iter().position(|n| n == a).ok_or_else(|| {
            err(format!(
                "no input is named %{a} (inputs: {})",
                list(&in_names)
            ))
        })?;
        let o = out_names.iter().position(|n| n == b).ok_or_else(|| {
            err(format!(
                "no output is named %{b} (outputs: {})",
                list(&out_names)
            ))
        })?;
        let (ti, to) = (g.ty(inputs[i]), g.ty(g.outputs()[o]));
        if ti != to {
            return Err(err(format!(
                "the input is {ti} and the output {to}; a donated buffer holds both, so \
                 the types must be equal"
            )));
        }
        if let Some(&(_, o2)) = out.iter().find(|&&(i2, _)| i2 == i) {
            return Err(err(format!(
                "%{a} is already donated to %{}",
                out_names[o2]
            )));
        }
        if let Some(&(i2, _)) = out.iter().find(|&&(_, o2)| o2 == o) {
            return Err(err(format!(
                "%{b} already receives the donated %{}",
                in_names[i2]
            )));
        }
        out.push((i, o));
    }
    Ok(out)
}

fn list(names: &[String]) -> String {
    let v: Vec<String> = names.iter().map(|n| format!("%{n}")).collect();
    v.join(", ")
}

/// Decides, for each resolved pair, in place or copy first; reserves the copies' workspace
/// ranges past the plan's peak (growing `plan.ws_bytes`).
///
/// # Errors
/// [`JitError::TooLarge`] if the workspace size overflows.
pub(super) fn decide(
    g: &Graph,
    plan: &mut Plan,
    pairs: &[(usize, usize)],
    exact: bool,
    checked: bool,
) -> Result<Vec<Donated>, JitError> {
    let mut out = Vec::with_capacity(pairs.len());
    for &(input, output) in pairs {
        let copy = if in_place_safe(g, plan, (input, output), exact, checked) {
            None
        } else {
            let x = g.inputs()[input];
            let bytes = g.ty(x).numel() * g.ty(x).dtype.size_bytes();
            let off = plan.ws_bytes.div_ceil(BIG_ALIGN) * BIG_ALIGN;
            plan.ws_bytes = off.checked_add(bytes).ok_or_else(|| JitError::TooLarge {
                what: "the workspace size overflows".into(),
            })?;
            Some(off)
        };
        out.push(Donated {
            input,
            output,
            copy,
        });
    }
    Ok(out)
}

/// The nests (group indices) that read the memory of `root`.
fn readers(g: &Graph, plan: &Plan, root: NodeId) -> Vec<usize> {
    let view_root = |x: NodeId| plan.views[x.index()].as_ref().map(|v| v.root);
    plan.groups
        .iter()
        .enumerate()
        .filter(|(_, grp)| match grp {
            Group::Fused(f) => f.leaves.iter().any(|(_, a)| a.root == root),
            Group::Copy { from, .. } => from.root == root,
            Group::Matmul { node, acc, .. } => {
                acc.is_some_and(|a| a.init == root)
                    || g.node(*node)
                        .inputs
                        .iter()
                        .any(|&x| view_root(x) == Some(root))
            }
            Group::Node(node) => g
                .node(*node)
                .inputs
                .iter()
                .any(|&x| view_root(x) == Some(root)),
            Group::Loop(l) => g
                .node(l.node)
                .inputs
                .iter()
                .any(|&x| view_root(x) == Some(root)),
        })
        .map(|(gi, _)| gi)
        .collect()
}

/// True if output `output` may be written straight over input `input`'s buffer.
fn in_place_safe(
    g: &Graph,
    plan: &Plan,
    (input, output): (usize, usize),
    exact: bool,
    checked: bool,
) -> bool {
    let x = g.inputs()[input];
    let o = g.outputs()[output];
    // A copy after the code that reads the input would read the output's values instead.
    let post_reads = plan
        .post
        .iter()
        .any(|p| matches!(p, PostCopy::Input { out, input: i } if *i == input && *out != output));
    if post_reads {
        return false;
    }
    if plan.locs[o.index()] != Loc::Output(output) {
        // The output is an input or a constant, copied after the code ran (after every read).
        return true;
    }
    let reads = readers(g, plan, x);
    let writes: Vec<usize> = plan
        .groups
        .iter()
        .enumerate()
        .filter(|(_, grp)| match grp {
            Group::Fused(f) => {
                f.stores.iter().any(|(m, _)| *m == o) || f.reductions.iter().any(|r| r.node == o)
            }
            Group::Matmul { acc: Some(a), .. } => a.out == o,
            Group::Matmul { node, .. } | Group::Node(node) | Group::Copy { node, .. } => *node == o,
            Group::Loop(l) => l.members.iter().any(|&(m, _)| m == o),
        })
        .map(|(gi, _)| gi)
        .collect();
    let Some(&first_write) = writes.first() else {
        unreachable!("plan invariant: a computed output is written by some group")
    };
    let Some(&last_read) = reads.last() else {
        return true;
    };
    if last_read < first_write {
        return true;
    }
    if last_read > first_write || writes.len() != 1 {
        return false;
    }
    // The same nest reads the input and writes the output.
    let f = match &plan.groups[first_write] {
        Group::Fused(f) => f,
        // A GEMM epilogue reads its initial value only as the destination it updates, each
        // element just before writing it; the plan keeps the product's operands elsewhere.
        Group::Matmul { acc: Some(a), .. } => return a.init == x && a.out == o && !checked,
        _ => return false,
    };
    if checked || f.part || (f.math && f.vector.is_some() && !exact) {
        // Checked mode inspects the operands after the node ran; a nest cut into boxes; or a
        // vector nest with transcendentals, which may rerun a chunk.
        return false;
    }
    let Some((_, store)) = f.stores.iter().find(|(m, _)| *m == o) else {
        // A reduction's result is written while (or after) its operand is read.
        return false;
    };
    let size = g.ty(x).dtype.size_bytes();
    let identity = |a: &Access| a.offset == 0 && a.strides == row_major_bytes(&f.dims, size);
    let numel = g.ty(x).numel();
    let leaves: Vec<NodeId> = f
        .leaves
        .iter()
        .filter(|(_, a)| a.root == x)
        .map(|(l, _)| *l)
        .collect();
    let same_index = numel == f.shape.iter().product::<usize>()
        && identity(store)
        && f.leaves
            .iter()
            .filter(|(_, a)| a.root == x)
            .all(|(_, a)| identity(a));
    // Members read in id order, each stored right after it is computed: readers after the
    // output would see its new value.
    let readers_before = f
        .members
        .iter()
        .filter(|m| g.node(**m).inputs.iter().any(|i| leaves.contains(i)))
        .all(|&m| m <= o);
    same_index && readers_before
}
