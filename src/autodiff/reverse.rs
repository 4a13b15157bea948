//! Reverse mode: appends the adjoint graph to the same graph.
//!
//! Phases:
//! 1. Mark the *active* nodes: reachable forward from a `wrt` node and backward from the output.
//!    Only these get adjoints.
//! 2. Seed ȳ = 1 and visit the nodes in reverse topological (id) order. Each active node with an
//!    adjoint calls its op's VJP rule, which appends nodes computing the cotangent of each
//!    operand; the driver un-broadcasts each contribution to its operand's shape and accumulates
//!    it into the operand's adjoint with `add`.
//! 3. Return the adjoint of each `wrt` node (zeros if the output does not depend on it).
//!
//! The result is an ordinary graph: it can be printed, optimized, compiled, and differentiated
//! again. Everything is a loop over ids, so a million-node chain is fine. Adjoint nodes record
//! `Origin::Adjoint(forward node)`.
//!
//! Not done here: simplification of the appended nodes (the optimizer does that).

use crate::ir::{Graph, GraphBuilder, NodeId, Origin, Var};
use crate::ops;

/// Why a gradient could not be formed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GradError {
    /// The differentiated value is not a float scalar (user error: reduce it first).
    #[error("cannot differentiate {name}: expected a float scalar, found {ty}")]
    NotScalar {
        /// The value's name.
        name: String,
        /// Its type.
        ty: String,
    },
    /// A `wrt` value is not a float tensor (user error).
    #[error(
        "cannot differentiate with respect to {name}: it has dtype {dtype}, expected f32 or f64"
    )]
    NotFloat {
        /// The value's name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// An id does not name a node of the graph (user error).
    #[error("node {0} does not exist")]
    NoSuchNode(NodeId),
}

/// Appends the adjoint of `y` to `g` and returns `∂y/∂w` for each `w` in `wrt`.
///
/// ```
/// use gradlift::{Graph, Op, Attrs, TensorType, DType, autodiff::grad, interp};
/// let mut g = Graph::new("sq");
/// let x = g.add_input("x", TensorType::scalar(DType::F64)).unwrap();
/// let y = g.push(Op::Mul, vec![x, x], Attrs::None).unwrap();
/// let dx = grad(&mut g, y, &[x]).unwrap();
/// g.set_outputs(vec![y, dx[0]]);
/// let out = interp::run(&g, &[3.0.into()]).unwrap();
/// assert_eq!(out[1].scalar_value(), Some(6.0));
/// ```
///
/// # Errors
/// [`GradError`] if `y` is not a float scalar or a `wrt` value is not a float tensor.
pub fn grad(g: &mut Graph, y: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>, crate::Error> {
    let outputs = g.outputs().to_vec();
    let b = GraphBuilder::from_graph(std::mem::take(g));
    let res = grad_in(&b, y, wrt);
    let built = b.check();
    *g = b.take_graph();
    g.set_outputs(outputs);
    let grads = res?;
    built?;
    Ok(grads)
}

/// [`grad`] on a builder (what [`GraphBuilder::grad`] calls).
///
/// # Errors
/// As [`grad`].
pub fn grad_in(b: &GraphBuilder, y: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>, GradError> {
    let n = b.graph().len();
    for &id in wrt.iter().chain([&y]) {
        if id.index() >= n {
            return Err(GradError::NoSuchNode(id));
        }
    }
    let yty = b.ty(y);
    if !yty.is_scalar() || !yty.dtype.is_float() {
        return Err(GradError::NotScalar {
            name: b.graph().value_name(y),
            ty: yty.to_string(),
        });
    }
    if let Some(&w) = wrt.iter().find(|&&w| !b.ty(w).dtype.is_float()) {
        return Err(GradError::NotFloat {
            name: b.graph().value_name(w),
            dtype: b.ty(w).dtype.to_string(),
        });
    }
    let active = active_nodes(&b.graph(), y, wrt);

    let mut adjoint: Vec<Option<NodeId>> = vec![None; n];
    b.set_origin(Origin::Adjoint(y));
    adjoint[y.index()] = Some(b.var(y).scalar_like(1.0).id());
    for i in (0..=y.index()).rev() {
        let Some(ct) = adjoint[i] else { continue };
        if !active[i] {
            continue;
        }
        let node = b.graph().nodes()[i].clone();
        let Some(vjp) = ops::rules(node.op).vjp else {
            continue;
        };
        let id = NodeId(i as u32);
        b.set_origin(Origin::Adjoint(id));
        let contribs = vjp(b, id, &node, b.var(ct));
        for (&x, c) in node.inputs.iter().zip(contribs) {
            let Some(c) = c else { continue };
            if !active[x.index()] {
                continue;
            }
            let c = unbroadcast(c, &b.ty(x).shape);
            adjoint[x.index()] = Some(match adjoint[x.index()] {
                Some(prev) => (b.var(prev) + c).id(),
                None => c.id(),
            });
        }
    }
    let grads = wrt
        .iter()
        .map(|&w| match adjoint[w.index()] {
            Some(a) => a,
            None => {
                b.set_origin(Origin::Adjoint(w));
                let t = b.ty(w);
                b.zeros(t.dtype, &t.shape).id()
            }
        })
        .collect();
    b.clear_origin();
    Ok(grads)
}

/// Nodes on a path from some `wrt` node to `y`.
fn active_nodes(g: &Graph, y: NodeId, wrt: &[NodeId]) -> Vec<bool> {
    let n = y.index() + 1;
    let mut from_wrt = vec![false; n];
    for &w in wrt {
        if w.index() < n {
            from_wrt[w.index()] = true;
        }
    }
    for i in 0..n {
        if !from_wrt[i] && g.nodes()[i].inputs.iter().any(|x| from_wrt[x.index()]) {
            from_wrt[i] = true;
        }
    }
    let mut to_y = vec![false; n];
    to_y[y.index()] = true;
    for i in (0..n).rev() {
        if to_y[i] {
            for x in &g.nodes()[i].inputs {
                to_y[x.index()] = true;
            }
        }
    }
    (0..g.len())
        .map(|i| i < n && from_wrt[i] && to_y[i])
        .collect()
}

/// Sums a cotangent over the axes that broadcasting added or stretched, to shape `to`.
fn unbroadcast<'b>(c: Var<'b>, to: &[usize]) -> Var<'b> {
    let from = c.shape();
    if from == to {
        return c;
    }
    let lead = from.len() - to.len();
    let axes: Vec<usize> = (0..from.len())
        .filter(|&a| a < lead || (to[a - lead] == 1 && from[a] != 1))
        .collect();
    let s = if axes.is_empty() {
        c
    } else {
        c.sum_axes(&axes)
    };
    if s.shape() == to { s } else { s.reshape(to) }
}
