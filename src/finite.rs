//! NaN provenance: which node first produced a non-finite value from finite operands.
//!
//! Checked evaluation ([`crate::interp::run_checked`], and the JIT's
//! [`crate::jit::JitConfig::check_finite`]) stops at the first node, in execution (id) order,
//! that has a *culprit element*: an output element that is NaN or ±∞ although every operand
//! element it was computed from is finite. Non-finite values that merely propagate (an input or
//! constant that is already NaN, or an operand some earlier culprit produced) do not stop it,
//! so a graph fed non-finite inputs runs to the end unless some node makes a *new* non-finite
//! value.
//!
//! The elements an output element is computed from:
//! - elementwise ops: the operands' elements at the same (broadcast) index (`bool` operands
//!   count as finite);
//! - reductions: the operand's elements folded into it;
//! - `cumsum`: the operand's elements summed into it (those up to it along the axis, or from it
//!   on with `reverse`);
//! - `matmul`: the row of the left operand and the column of the right one.
//!
//! Leaves (inputs, constants), data movement (`reshape`, `transpose`, `broadcast`, `slice`,
//! `concat`: they copy values and cannot create one) and `bool` results are never culprits.
//! Nodes no output depends on are not checked (the JIT does not run them).
//!
//! The report, [`NonFinite`], names the node, its op, the element and the operand values at it,
//! and the node's [`Origin`]: the builder call or `.gir` line that created it, or, for an
//! adjoint node, the forward node whose adjoint it is (and that node's origin).
//!
//! Not here: evaluation itself (each backend calls `find_culprit` after computing a node), or
//! any check of values that the optimizer folded away (run checked evaluation on an unoptimized
//! graph for exact provenance).

use crate::ir::{Attrs, Graph, NodeId, Op, Origin, broadcast_strides, strides};
use crate::ops;
use std::fmt;

/// At most this many contributing values are kept per operand in a report.
const SAMPLE: usize = 8;

/// The values of one operand that a culprit element was computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct OperandSample {
    /// The operand node.
    pub node: NodeId,
    /// Its contributing element values (the first few, in row-major order; all finite).
    pub values: Vec<f64>,
    /// How many elements contributed (one for elementwise ops).
    pub count: usize,
}

/// The first node that produced a non-finite value from finite operands (see the module docs).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "non-finite value ({}) produced by {node} ({op}) at element {index:?}",
    value_word(*.value)
)]
pub struct NonFinite {
    /// The culprit node.
    pub node: NodeId,
    /// Its op.
    pub op: Op,
    /// The non-finite value (NaN, `inf` or `-inf`).
    pub value: f64,
    /// The element's index in the node's output (row-major multi-index; empty for scalars).
    pub index: Vec<usize>,
    /// The operand values that element was computed from, per operand.
    pub operands: Vec<OperandSample>,
    /// Where the node came from.
    pub origin: Origin,
}

/// `nan`, `inf` or `-inf`.
fn value_word(x: f64) -> &'static str {
    if x.is_nan() {
        "nan"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// A number as the CLI prints it (shortest round trip; non-finite values as words).
fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        value_word(x).to_string()
    }
}

/// `%l = log %x` for node `id` of `g` (or `%7 (not in this graph)` for a stale id).
/// ` at FILE:LINE` (or ` at line L:C` without a file, ` at src/x.rs:L:C` for builder calls).
fn location(origin: Origin, file: Option<&str>) -> String {
    match origin {
        Origin::Line(l, c) => match file {
            Some(f) => format!(" at {f}:{l}"),
            None => format!(" at line {l}:{c}"),
        },
        Origin::Source(loc) => format!(" at {}:{}", loc.file(), loc.line()),
        Origin::None | Origin::Adjoint(_) | Origin::Tangent(_) => String::new(),
    }
}

impl NonFinite {
    /// The one-line message the CLI prints (after `error: `), naming values as in `g` (the graph
    /// that was evaluated) and `.gir` lines as `FILE:LINE` when `file` is given:
    ///
    /// `non-finite value (nan) produced by %l = log %x at f.gir:4 (element [1]; operands: %x =
    /// -1)`, and for an adjoint node `... produced by %17 = div %12, %3 (adjoint of %l = log %x
    /// at f.gir:4) (element ...)`.
    pub fn describe(&self, g: &Graph, file: Option<&str>) -> String {
        let mut s = format!(
            "non-finite value ({}) produced by {}",
            value_word(self.value),
            g.statement(self.node)
        );
        s.push_str(&location(self.origin, file));
        // Follow adjoint origins to the forward node (second-order adjoints have adjoint
        // forward nodes too); bounded, since origins of a valid graph point backwards.
        let mut origin = self.origin;
        let mut depth = 0;
        while let Origin::Adjoint(f) | Origin::Tangent(f) = origin {
            let kind = if matches!(origin, Origin::Adjoint(_)) {
                "adjoint"
            } else {
                "tangent"
            };
            let fwd = g.nodes().get(f.index()).map_or(Origin::None, |n| n.origin);
            s.push_str(&format!(
                " ({kind} of {}{}",
                g.statement(f),
                location(fwd, file)
            ));
            depth += 1;
            origin = fwd;
            if depth >= 8 || f.index() >= g.len() {
                break;
            }
        }
        s.push_str(&")".repeat(depth));
        let index = if self.index.is_empty() {
            String::new()
        } else {
            let i: Vec<String> = self.index.iter().map(ToString::to_string).collect();
            format!("element [{}]; ", i.join(","))
        };
        let ops: Vec<String> = self
            .operands
            .iter()
            .map(|o| {
                let vals: Vec<String> = o.values.iter().map(|&x| number(x)).collect();
                let v = if o.count == 1 {
                    vals.join("")
                } else if o.count > o.values.len() {
                    format!("[{}, ...] ({} values)", vals.join(", "), o.count)
                } else {
                    format!("[{}]", vals.join(", "))
                };
                format!("%{} = {v}", g.value_name(o.node))
            })
            .collect();
        s.push_str(&format!(" ({index}operands: {})", ops.join(", ")));
        s
    }
}

/// True if a node of this op can be a culprit (see the module docs).
pub(crate) fn can_originate(g: &Graph, id: NodeId) -> bool {
    let n = g.node(id);
    if !n.ty.dtype.is_float() {
        return false;
    }
    match n.op {
        Op::Input | Op::Const => false,
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin | Op::Matmul => true,
        Op::Cumsum => true,
        op => ops::rules(op).props.elementwise,
    }
}

/// The nodes some output depends on.
pub(crate) fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.len()];
    for o in g.outputs() {
        if let Some(l) = live.get_mut(o.index()) {
            *l = true;
        }
    }
    for i in (0..g.len()).rev() {
        if live[i] {
            for x in &g.nodes()[i].inputs {
                live[x.index()] = true;
            }
        }
    }
    live
}

/// Row-major multi-index of flat index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for ax in (0..shape.len()).rev() {
        idx[ax] = i % shape[ax];
        i /= shape[ax];
    }
    idx
}

/// The flat indices of operand `k`'s elements that output element `idx` (multi-index) of node
/// `id` is computed from.
fn contributions(g: &Graph, id: NodeId, k: usize, idx: &[usize]) -> Vec<usize> {
    let n = g.node(id);
    let out = &n.ty.shape;
    let xs = &g.ty(n.inputs[k]).shape;
    match (n.op, &n.attrs) {
        (
            Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin,
            Attrs::Reduce { axes, keepdims },
        ) => {
            let st = strides(xs);
            // The operand index with the kept axes filled in from `idx`.
            let mut full = vec![0usize; xs.len()];
            let mut o = 0;
            for (ax, f) in full.iter_mut().enumerate() {
                let reduced = axes.contains(&ax);
                if !reduced {
                    *f = idx[o];
                }
                if !reduced || *keepdims {
                    o += 1;
                }
            }
            let red_shape: Vec<usize> = axes.iter().map(|&a| xs[a]).collect();
            let count: usize = red_shape.iter().product();
            (0..count)
                .map(|r| {
                    let ri = unravel(r, &red_shape);
                    for (&a, &v) in axes.iter().zip(&ri) {
                        full[a] = v;
                    }
                    full.iter().zip(&st).map(|(i, s)| i * s).sum()
                })
                .collect()
        }
        (Op::Cumsum, &Attrs::Cumsum { axis, reverse }) => {
            let st = strides(xs);
            let at: usize = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
            let first = at - idx[axis] * st[axis];
            let range = if reverse {
                idx[axis]..xs[axis]
            } else {
                0..idx[axis] + 1
            };
            range.map(|k| first + k * st[axis]).collect()
        }
        (Op::Matmul, _) => {
            let r = out.len();
            let (i, j) = (idx[r - 2], idx[r - 1]);
            let batch = &out[..r - 2];
            let bst = broadcast_strides(&xs[..xs.len() - 2], batch);
            let (rows, cols) = (xs[xs.len() - 2], xs[xs.len() - 1]);
            let base: usize = idx[..r - 2]
                .iter()
                .zip(&bst)
                .map(|(i, s)| i * s)
                .sum::<usize>()
                * rows
                * cols;
            if k == 0 {
                (0..cols).map(|p| base + i * cols + p).collect()
            } else {
                (0..rows).map(|p| base + p * cols + j).collect()
            }
        }
        _ => {
            let bst = broadcast_strides(xs, out);
            vec![idx.iter().zip(&bst).map(|(i, s)| i * s).sum()]
        }
    }
}

/// Finds the first culprit element of node `id` (see the module docs), given its output
/// values (`out(i)`, flat row-major) and its operands' values (`operand(k, i)`). Returns `None`
/// if every non-finite element of the output has a non-finite contributing operand element, or
/// the node cannot originate non-finite values.
pub(crate) fn find_culprit(
    g: &Graph,
    id: NodeId,
    out: &dyn Fn(usize) -> f64,
    operand: &dyn Fn(usize, usize) -> f64,
) -> Option<NonFinite> {
    if !can_originate(g, id) {
        return None;
    }
    let n = g.node(id);
    let float_operand: Vec<bool> = n.inputs.iter().map(|&x| g.ty(x).dtype.is_float()).collect();
    for i in 0..n.ty.numel() {
        let v = out(i);
        if v.is_finite() {
            continue;
        }
        let idx = unravel(i, &n.ty.shape);
        let mut samples = Vec::with_capacity(n.inputs.len());
        let mut all_finite = true;
        for (k, &x) in n.inputs.iter().enumerate() {
            let elems = contributions(g, id, k, &idx);
            let mut values = Vec::new();
            for &e in &elems {
                let val = operand(k, e);
                if float_operand[k] && !val.is_finite() {
                    all_finite = false;
                    break;
                }
                if values.len() < SAMPLE {
                    values.push(val);
                }
            }
            if !all_finite {
                break;
            }
            samples.push(OperandSample {
                node: x,
                values,
                count: elems.len(),
            });
        }
        if all_finite {
            return Some(NonFinite {
                node: id,
                op: n.op,
                value: v,
                index: idx,
                operands: samples,
                origin: n.origin,
            });
        }
    }
    None
}

impl fmt::Display for OperandSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals: Vec<String> = self.values.iter().map(|&x| number(x)).collect();
        write!(f, "{} = [{}]", self.node, vals.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, TensorType};
    use crate::tensor::Tensor;

    fn eval_all(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
        // Every node as an output, in order (so values can be looked up by id).
        let mut h = g.clone();
        let ids: Vec<NodeId> = (0..g.len()).map(|i| NodeId(i as u32)).collect();
        h.set_outputs(ids);
        crate::interp::run(&h, inputs).unwrap()
    }

    fn culprit(g: &Graph, inputs: &[Tensor], id: NodeId) -> Option<NonFinite> {
        let v = eval_all(g, inputs);
        let n = g.node(id);
        find_culprit(g, id, &|i| v[id.index()].data().get_f64(i), &|k, i| {
            v[n.inputs[k].index()].data().get_f64(i)
        })
    }

    #[test]
    fn elementwise_culprits_need_finite_operands_at_the_broadcast_index() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F64, vec![2, 3]))
            .unwrap();
        let c = g.add_const(Tensor::from_f64(vec![3], vec![1.0, 0.0, 2.0]));
        let d = g.push(Op::Div, vec![x, c], Attrs::None).unwrap();
        g.set_outputs(vec![d]);
        // x[0,1] = 0 → 0/0 = nan at [0,1]; x[1,1] = 5 → 5/0 = inf at [1,1]. First is [0,1].
        let xv = Tensor::from_f64(vec![2, 3], vec![1.0, 0.0, 3.0, 4.0, 5.0, 6.0]);
        let r = culprit(&g, &[xv], d).unwrap();
        assert_eq!(r.index, vec![0, 1]);
        assert!(r.value.is_nan());
        assert_eq!(r.operands[0].values, vec![0.0]);
        assert_eq!(r.operands[1].values, vec![0.0]);
        // A NaN operand at that index is propagation, not a new value: the first culprit is
        // then [1,1] (5/0 = inf).
        let xv = Tensor::from_f64(vec![2, 3], vec![1.0, f64::NAN, 3.0, 4.0, 5.0, 6.0]);
        let r = culprit(&g, &[xv], d).unwrap();
        assert_eq!((r.index.clone(), r.value), (vec![1, 1], f64::INFINITY));
        let xv = Tensor::from_f64(vec![2, 3], vec![1.0, f64::NAN, 3.0, 4.0, f64::NAN, 6.0]);
        assert!(culprit(&g, &[xv], d).is_none());
    }

    #[test]
    fn reductions_and_matmul_look_at_the_folded_elements() {
        let mut g = Graph::new("t");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2, 2]))
            .unwrap();
        let s = g
            .push(
                Op::ReduceSum,
                vec![x],
                Attrs::Reduce {
                    axes: vec![1],
                    keepdims: true,
                },
            )
            .unwrap();
        let m = g.push(Op::Matmul, vec![x, x], Attrs::None).unwrap();
        g.set_outputs(vec![s, m]);
        let big = 3e38f32;
        let xv = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, big, big]);
        let r = culprit(&g, std::slice::from_ref(&xv), s).unwrap();
        assert_eq!(r.index, vec![1, 0]);
        assert_eq!(r.operands[0].count, 2);
        assert_eq!(r.operands[0].values, vec![f64::from(big), f64::from(big)]);
        // matmul [[1,2],[b,b]]²: row 0 · column 0 = 1·1 + 2·b overflows already.
        let r = culprit(&g, &[xv], m).unwrap();
        assert_eq!(r.index, vec![0, 0]);
        assert_eq!(r.operands[0].values, vec![1.0, 2.0]);
        assert_eq!(r.operands[1].values, vec![1.0, f64::from(big)]);
    }

    #[test]
    fn descriptions_name_the_statement_and_the_forward_node_of_an_adjoint() {
        let src = "graph @g {\n  %x = input f64[]\n  %l = log %x\n  output %l\n}\n";
        let mut g = crate::ir::text::parse(src).unwrap();
        let x = g.inputs()[0];
        let l = g.outputs()[0];
        let r = NonFinite {
            node: l,
            op: Op::Log,
            value: f64::NAN,
            index: vec![],
            operands: vec![OperandSample {
                node: x,
                values: vec![-1.0],
                count: 1,
            }],
            origin: g.node(l).origin,
        };
        assert_eq!(
            r.describe(&g, Some("f.gir")),
            "non-finite value (nan) produced by %l = log %x at f.gir:3 (operands: %x = -1)"
        );
        let d = crate::autodiff::grad(&mut g, l, &[x]).unwrap()[0];
        let r = NonFinite {
            node: d,
            origin: g.node(d).origin,
            ..r
        };
        let m = r.describe(&g, Some("f.gir"));
        assert!(m.contains("(adjoint of %l = log %x at f.gir:3)"), "{m}");
    }
}
