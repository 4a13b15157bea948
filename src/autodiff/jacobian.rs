//! Full Jacobians (by the cheaper mode), Hessians and Hessian-vector products, all built from the
//! two drivers with batched seeds.
//!
//! - **Forward** ([`Mode::Forward`]): one batched JVP whose `n` directions are the one-hot basis
//!   of the inputs (`n` = total input size). Each tangent is `[n, ...shape]`, so the cost is
//!   about `n` primal evaluations, in one kernel.
//! - **Reverse** ([`Mode::Reverse`]): one batched VJP whose `m` seeds are the one-hot basis of
//!   the outputs (`m` = total output size): about `m` primal evaluations.
//! - [`Mode::Auto`] picks forward when `n < m`, reverse otherwise ([`Mode::choose`]).
//!
//! The one-hot seeds are built in the graph from two index constants (`[k, 1] == [1, cols]`), so
//! they cost `O(k + cols)` constant memory, not a `k × cols` identity matrix.
//!
//! A Hessian is forward-over-reverse: the gradient graph, then its forward-mode Jacobian. A
//! Hessian-vector product is one unbatched JVP of the gradient graph, so it never forms the
//! Hessian. Third and higher derivatives are further nesting of the same drivers.
//!
//! Not done here: sparsity (coloring) or any structure of the Jacobian.

use super::{
    GradError, check_float_outputs, check_ids, check_wrt, forward::append_jvp, on_graph,
    reverse::append_grad, reverse::append_vjp,
};
use crate::ir::{DType, Graph, GraphBuilder, NodeId, Var};
use crate::tensor::Tensor;

/// Which mode builds a Jacobian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward when the inputs' total size is smaller than the outputs', else reverse.
    #[default]
    Auto,
    /// Forward mode: one batched JVP with a direction per input element.
    Forward,
    /// Reverse mode: one batched VJP with a seed per output element.
    Reverse,
}

impl Mode {
    /// The concrete mode (never `Auto`) for `n_in` total input elements and `n_out` total output
    /// elements: forward iff `n_in < n_out` when `Auto`.
    pub fn choose(self, n_in: usize, n_out: usize) -> Mode {
        match self {
            Mode::Auto if n_in < n_out => Mode::Forward,
            Mode::Auto => Mode::Reverse,
            m => m,
        }
    }
}

/// Appends the Jacobian of every output with respect to every `wrt` value and returns the
/// blocks `J[j][i] = ∂outputs[j]/∂wrt[i]`, each of shape `outputs[j].shape ++ wrt[i].shape`.
///
/// ```
/// use gradlift::{DType, GraphBuilder, autodiff::{Mode, jacobian}, interp, Tensor};
/// let b = GraphBuilder::new("f");
/// let x = b.input("x", DType::F64, &[2]);
/// let y = x * x; // diagonal Jacobian 2·x
/// let mut g = b.into_graph(&[y.id()]).unwrap();
/// let (xi, yi) = (x.id(), y.id());
/// let j = jacobian(&mut g, &[yi], &[xi], Mode::Auto).unwrap();
/// g.set_outputs(vec![j[0][0]]);
/// let out = interp::run(&g, &[Tensor::from_f64(vec![2], vec![3.0, 5.0])]).unwrap();
/// assert_eq!(out[0].to_f64_vec(), vec![6.0, 0.0, 0.0, 10.0]);
/// ```
///
/// # Errors
/// [`GradError`] if an output or `wrt` value is not float (or a custom op on the path lacks the
/// chosen mode's rule).
pub fn jacobian(
    g: &mut Graph,
    outputs: &[NodeId],
    wrt: &[NodeId],
    mode: Mode,
) -> Result<Vec<Vec<NodeId>>, crate::Error> {
    on_graph(g, |b| append_jacobian(b, outputs, wrt, mode))
}

/// [`jacobian`] on a builder.
///
/// # Errors
/// As [`jacobian`].
pub(crate) fn append_jacobian(
    b: &GraphBuilder,
    outputs: &[NodeId],
    wrt: &[NodeId],
    mode: Mode,
) -> Result<Vec<Vec<NodeId>>, GradError> {
    check_ids(b, &[outputs, wrt])?;
    check_float_outputs(b, outputs)?;
    check_wrt(b, wrt)?;
    if outputs.is_empty() || wrt.is_empty() {
        return Ok(vec![Vec::new(); outputs.len()]);
    }
    let sizes = |ids: &[NodeId]| -> Vec<usize> { ids.iter().map(|&i| b.ty(i).numel()).collect() };
    let (in_sizes, out_sizes) = (sizes(wrt), sizes(outputs));
    let (n, m) = (in_sizes.iter().sum(), out_sizes.iter().sum());
    let in_offsets = offsets(&in_sizes);
    let out_offsets = offsets(&out_sizes);
    let shape = |id: NodeId| b.ty(id).shape;
    let concat = |a: &[usize], c: &[usize]| -> Vec<usize> { a.iter().chain(c).copied().collect() };

    let mode = mode.choose(n, m);
    // Every batched tangent (cotangent) is k times a value of the graph: check the largest.
    let (k, what) = match mode {
        Mode::Forward => (n, "tangents"),
        _ => (m, "cotangents"),
    };
    let top = outputs.iter().map(|o| o.index()).max().unwrap_or(0);
    let biggest = b.graph().nodes()[..=top]
        .iter()
        .map(|nd| nd.ty.numel())
        .max()
        .unwrap_or(1);
    if crate::ir::checked_numel(&[k, biggest]).is_none() {
        return Err(GradError::TooLarge(format!(
            "a {mode:?}-mode Jacobian of {m} output elements by {n} input elements needs \
             batched {what} of {k} x {biggest} elements, more than the limit of {} elements",
            crate::ir::MAX_ELEMENTS
        )));
    }
    match mode {
        Mode::Forward => {
            let seeds: Vec<NodeId> = wrt
                .iter()
                .zip(&in_offsets)
                .map(|(&w, &off)| {
                    let t = b.ty(w);
                    one_hot(b, t.dtype, n, off, t.numel())
                        .reshape(&concat(&[n], &t.shape))
                        .id()
                })
                .collect();
            let ys = append_jvp(b, outputs, wrt, &seeds, Some(n))?;
            Ok(outputs
                .iter()
                .zip(ys)
                .map(|(&o, y)| {
                    let (ys_shape, m_j) = (shape(o), b.ty(o).numel());
                    let y = b.var(y);
                    wrt.iter()
                        .zip(&in_offsets)
                        .map(|(&w, &off)| {
                            let n_i = b.ty(w).numel();
                            rows(y, off, n_i, n)
                                .reshape(&[n_i, m_j])
                                .transpose(&[1, 0])
                                .reshape(&concat(&ys_shape, &shape(w)))
                                .id()
                        })
                        .collect()
                })
                .collect())
        }
        _ => {
            let seeds: Vec<NodeId> = outputs
                .iter()
                .zip(&out_offsets)
                .map(|(&o, &off)| {
                    let t = b.ty(o);
                    one_hot(b, t.dtype, m, off, t.numel())
                        .reshape(&concat(&[m], &t.shape))
                        .id()
                })
                .collect();
            let xs = append_vjp(b, outputs, wrt, &seeds, Some(m))?;
            Ok(outputs
                .iter()
                .zip(&out_offsets)
                .map(|(&o, &off)| {
                    let m_j = b.ty(o).numel();
                    wrt.iter()
                        .zip(&xs)
                        .map(|(&w, &x)| {
                            rows(b.var(x), off, m_j, m)
                                .reshape(&concat(&shape(o), &shape(w)))
                                .id()
                        })
                        .collect()
                })
                .collect())
        }
    }
}

/// Appends the Hessian of the float scalar `y` with respect to `wrt` (forward-over-reverse) and
/// returns the blocks `H[i][j] = ∂²y/∂wrt[i]∂wrt[j]`, each of shape
/// `wrt[i].shape ++ wrt[j].shape`.
///
/// # Errors
/// [`GradError`] if `y` is not a float scalar or a `wrt` value is not float.
pub fn hessian(g: &mut Graph, y: NodeId, wrt: &[NodeId]) -> Result<Vec<Vec<NodeId>>, crate::Error> {
    on_graph(g, |b| append_hessian(b, y, wrt))
}

/// [`hessian`] on a builder.
///
/// # Errors
/// As [`hessian`].
pub(crate) fn append_hessian(
    b: &GraphBuilder,
    y: NodeId,
    wrt: &[NodeId],
) -> Result<Vec<Vec<NodeId>>, GradError> {
    let grads = append_grad(b, y, wrt)?;
    append_jacobian(b, &grads, wrt, Mode::Forward)
}

/// Appends a Hessian-vector product of the float scalar `y`: returns `Σⱼ H[i][j]·v[j]` for each
/// `wrt[i]` (shaped like it), by one forward pass over the gradient graph, without forming the
/// Hessian. `v[j]` has `wrt[j]`'s type.
///
/// # Errors
/// [`GradError`] if `y` is not a float scalar, a `wrt` value is not float, or a `v` has the
/// wrong type.
pub fn hvp(
    g: &mut Graph,
    y: NodeId,
    wrt: &[NodeId],
    v: &[NodeId],
) -> Result<Vec<NodeId>, crate::Error> {
    on_graph(g, |b| append_hvp(b, y, wrt, v))
}

/// [`hvp`] on a builder.
///
/// # Errors
/// As [`hvp`].
pub(crate) fn append_hvp(
    b: &GraphBuilder,
    y: NodeId,
    wrt: &[NodeId],
    v: &[NodeId],
) -> Result<Vec<NodeId>, GradError> {
    check_ids(b, &[v])?;
    super::check_seeds(b, "tangent", wrt, v, None)?;
    let grads = append_grad(b, y, wrt)?;
    append_jvp(b, &grads, wrt, v, None)
}

fn offsets(sizes: &[usize]) -> Vec<usize> {
    sizes
        .iter()
        .scan(0, |acc, &s| {
            let o = *acc;
            *acc += s;
            Some(o)
        })
        .collect()
}

/// A `[k, cols]` matrix of `dtype` with `M[r][c] = 1` where `r == off + c`, else 0.
fn one_hot(b: &GraphBuilder, dtype: DType, k: usize, off: usize, cols: usize) -> Var<'_> {
    let idx = |shape: Vec<usize>, range: std::ops::Range<usize>| {
        b.constant(Tensor::from_f64(shape, range.map(|i| i as f64).collect()))
    };
    let hit = idx(vec![k, 1], 0..k).equal(idx(vec![1, cols], off..off + cols));
    b.select(hit, b.scalar(dtype, 1.0), b.scalar(dtype, 0.0))
}

/// Rows `off..off + len` of `y` along its leading axis of size `total` (no node when that is all
/// of it).
fn rows(y: Var<'_>, off: usize, len: usize, total: usize) -> Var<'_> {
    if off == 0 && len == total {
        return y;
    }
    let shape = y.shape();
    let mut start = vec![0; shape.len()];
    let mut stop = shape;
    start[0] = off;
    stop[0] = off + len;
    y.slice(&start, &stop)
}
