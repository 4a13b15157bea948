//! Views and strides: how the elements of a value are laid out in memory.
//!
//! One set of names for the whole JIT. *Element strides* count elements, *byte strides* count
//! bytes; a function says which it returns. Row-major is the layout of every stored value.
//! [`crate::ir::broadcast_strides`] is [`broadcast`] of a row-major value, for the interpreter.

use crate::ir::{Graph, NodeId, strides};

/// How a value is read from memory: element `i` (multi-index over the value's shape) is at
/// element `offset + Σ i[k]·strides[k]` of its root's home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct View {
    /// The stored node (or leaf) whose memory holds the elements.
    pub root: NodeId,
    /// Element offset into the root's memory.
    pub offset: i64,
    /// Element strides, one per dimension of the viewing value.
    pub strides: Vec<i64>,
}

impl View {
    /// The row-major view of stored node or leaf `root` of `shape`.
    pub(super) fn whole(root: NodeId, shape: &[usize]) -> View {
        View {
            root,
            offset: 0,
            strides: row_major(shape),
        }
    }
}

/// Row-major element strides of `shape`.
pub(super) fn row_major(shape: &[usize]) -> Vec<i64> {
    strides(shape).iter().map(|&s| s as i64).collect()
}

/// Row-major byte strides of `shape` with `size`-byte elements.
pub(super) fn row_major_bytes(shape: &[usize], size: usize) -> Vec<i64> {
    to_bytes(&row_major(shape), size)
}

/// Element strides `st` scaled to bytes for `size`-byte elements.
pub(super) fn to_bytes(st: &[i64], size: usize) -> Vec<i64> {
    st.iter().map(|&s| s * size as i64).collect()
}

/// True if element strides `st` walk `shape` in row-major order without gaps (dims of size 1
/// may have any stride).
pub(super) fn is_row_major(shape: &[usize], st: &[i64]) -> bool {
    let c = row_major(shape);
    shape
        .iter()
        .zip(st.iter().zip(&c))
        .all(|(&d, (a, b))| d == 1 || a == b)
}

/// Strides of a value of shape `from` with strides `st`, read at the indices of `to` (NumPy
/// broadcasting: new and size-1 axes get stride 0).
pub(super) fn broadcast(from: &[usize], st: &[i64], to: &[usize]) -> Vec<i64> {
    let off = to.len() - from.len();
    (0..to.len())
        .map(|d| {
            if d < off || from[d - off] == 1 {
                0
            } else {
                st[d - off]
            }
        })
        .collect()
}

/// Merges adjacent loop dimensions that every access walks contiguously and drops dimensions
/// of size 1, keeping the row-major visiting order. `acc[a][k]` is access `a`'s stride along
/// dimension `k`; it is rewritten for the returned dimensions.
pub(super) fn collapse<A: AsMut<Vec<i64>>>(dims: &[usize], acc: &mut [A]) -> Vec<usize> {
    let mut out_dims: Vec<usize> = Vec::with_capacity(dims.len());
    let mut out_st: Vec<Vec<i64>> = vec![Vec::with_capacity(dims.len()); acc.len()];
    for (k, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && acc
                .iter_mut()
                .zip(&out_st)
                .all(|(a, o)| *o.last().expect("non-empty") == a.as_mut()[k] * d as i64);
        if mergeable {
            *out_dims.last_mut().expect("non-empty") *= d;
            for (a, o) in acc.iter_mut().zip(&mut out_st) {
                *o.last_mut().expect("non-empty") = a.as_mut()[k];
            }
        } else {
            out_dims.push(d);
            for (a, o) in acc.iter_mut().zip(&mut out_st) {
                o.push(a.as_mut()[k]);
            }
        }
    }
    for (a, o) in acc.iter_mut().zip(out_st) {
        *a.as_mut() = o;
    }
    out_dims
}

/// The (row, column) element strides of matmul operand `x` read through view `v`: the view's
/// strides of its last two axes, with the stride of a size-1 axis (never stepped along, maybe
/// 0 in a broadcast view) normalized to 1.
pub(super) fn matrix_strides(g: &Graph, x: NodeId, v: &View) -> (i64, i64) {
    let shape = &g.ty(x).shape;
    let r = shape.len();
    let st = |a: usize| if shape[a] == 1 { 1 } else { v.strides[a] };
    (st(r - 2), st(r - 1))
}
