//! The reference interpreter: the semantics of a graph.
//!
//! Walks the nodes in id order, evaluating each with its op's `eval` kernel from
//! [`crate::ops`] (straightforward loops, no fusion, no reassociation), and frees each value
//! after its last use. The JIT must agree with this module.
//!
//! [`run_checked`] is the checked mode: it stops at the first node that produces a non-finite
//! value from finite operands ([`crate::finite`]).
//!
//! Not here: any optimization, or any code shared with the JIT's lowering.

use crate::comm::{Communicator, SingleProcess};
use crate::finite::{self, NonFinite};
use crate::ir::{Graph, Op, TensorType, loops};
use crate::ops::{self, collective};
use crate::tensor::Tensor;

/// A bad call to the interpreter (user error: wrong input count or types), or, in checked mode,
/// a non-finite value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Wrong number of inputs.
    #[error("expected {expected} inputs, got {got}")]
    InputCount {
        /// Inputs the graph has.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// An input has the wrong type.
    #[error("input {name}: expected {expected}, got {got}")]
    InputType {
        /// The input's name.
        name: String,
        /// Its declared type.
        expected: TensorType,
        /// The type given.
        got: TensorType,
    },
    /// [`run_checked`] found a node that produced a non-finite value from finite operands
    /// (not a usage error: the report says where the NaN or infinity came from).
    #[error(transparent)]
    NonFinite(Box<NonFinite>),
    /// A collective failed ([`run_with_comm`]).
    #[error(transparent)]
    Comm(#[from] crate::comm::CommError),
}

/// Evaluates `g` on `inputs` (in [`Graph::inputs`] order) and returns its outputs.
///
/// ```
/// use gradlift::{GraphBuilder, DType, interp};
/// let b = GraphBuilder::new("g");
/// let x = b.input("x", DType::F64, &[]);
/// let g = b.finish(&[("y", x.exp())]).unwrap();
/// let y = interp::run(&g, &[0.0.into()]).unwrap();
/// assert_eq!(y[0].scalar_value(), Some(1.0));
/// ```
///
/// # Errors
/// [`EvalError`] if the inputs do not match the graph's inputs.
///
/// # Panics
/// If `g` breaks the graph invariants (graphs from the builder, the parser, reverse mode and
/// the optimizer never do; run [`crate::ir::verify`] on graphs assembled by hand through
/// [`Graph::nodes_mut`] or [`Graph::append`]).
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
    run_impl(g, inputs, false, &SingleProcess)
}

/// [`run`] as one rank of `comm`: the collective ops (`all_reduce_sum`, `all_gather`, ...,
/// see [`crate::ops::collective`]) combine over its ranks. Every rank must run the same graph.
/// [`run`] is this with [`SingleProcess`].
///
/// # Errors
/// As [`run`], and [`EvalError::Comm`] if a collective fails.
pub fn run_with_comm(
    g: &Graph,
    inputs: &[Tensor],
    comm: &dyn Communicator,
) -> Result<Vec<Tensor>, EvalError> {
    run_impl(g, inputs, false, comm)
}

/// [`run`] in checked mode: after each node that some output depends on, looks for an element
/// that is NaN or infinite although the operand elements it was computed from are finite, and
/// stops at the first such node (see [`crate::finite`] for the exact rule).
///
/// ```
/// use gradlift::{GraphBuilder, DType, interp::{self, EvalError}};
/// let b = GraphBuilder::new("g");
/// let x = b.input("x", DType::F64, &[]);
/// let g = b.finish(&[("y", x.log() * 2.0)]).unwrap();
/// assert!(interp::run_checked(&g, &[2.0.into()]).is_ok());
/// let Err(EvalError::NonFinite(r)) = interp::run_checked(&g, &[(-1.0).into()]) else {
///     panic!("log(-1) is NaN")
/// };
/// assert_eq!(r.op, gradlift::Op::Log); // not the `mul` that propagated it
/// ```
///
/// # Errors
/// As [`run`], and [`EvalError::NonFinite`] with the report.
pub fn run_checked(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
    run_impl(g, inputs, true, &SingleProcess)
}

fn run_impl(
    g: &Graph,
    inputs: &[Tensor],
    check: bool,
    comm: &dyn Communicator,
) -> Result<Vec<Tensor>, EvalError> {
    let input_ids = g.inputs();
    if input_ids.len() != inputs.len() {
        return Err(EvalError::InputCount {
            expected: input_ids.len(),
            got: inputs.len(),
        });
    }
    for (&id, t) in input_ids.iter().zip(inputs) {
        if t.ty() != *g.ty(id) {
            return Err(EvalError::InputType {
                name: g.value_name(id),
                expected: g.ty(id).clone(),
                got: t.ty(),
            });
        }
    }
    let live = if check {
        finite::live_nodes(g)
    } else {
        Vec::new()
    };
    let mut uses = g.use_counts();
    let mut values: Vec<Option<Tensor>> = vec![None; g.len()];
    let mut next_input = inputs.iter();
    let mut group: Option<(usize, Vec<Tensor>)> = None;
    for (i, node) in g.nodes().iter().enumerate() {
        let v = if node.op == Op::Input {
            next_input.next().expect("input count checked").clone()
        } else {
            let args: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|x| {
                    values[x.index()]
                        .as_ref()
                        .expect("operand evaluated and still live")
                })
                .collect();
            let v = if node.op == Op::Scan {
                loop_result(g, i, &args, &mut group)
            } else if collective::is_collective(node.op) {
                collective::eval_with(node, &args, comm)?
            } else {
                ops::eval(node, &args)
            };
            if check && live[i] {
                let id = crate::ir::NodeId(i as u32);
                let found = finite::find_culprit(g, id, &|e| v.data().get_f64(e), &|k, e| {
                    args[k].data().get_f64(e)
                });
                if let Some(r) = found {
                    return Err(EvalError::NonFinite(Box::new(r)));
                }
            }
            v
        };
        values[i] = Some(v);
        for x in &node.inputs {
            uses[x.index()] -= 1;
            if uses[x.index()] == 0 {
                values[x.index()] = None;
            }
        }
        if uses[i] == 0 {
            values[i] = None;
        }
    }
    Ok(g.outputs()
        .iter()
        .map(|o| values[o.index()].clone().expect("outputs stay live"))
        .collect())
}

/// The result node `i` holds of its loop: a group's consecutive nodes share one run of the loop
/// (kept in `group` with the id of the last node that read it).
fn loop_result(
    g: &Graph,
    i: usize,
    args: &[&Tensor],
    group: &mut Option<(usize, Vec<Tensor>)>,
) -> Tensor {
    let id = crate::ir::NodeId(i as u32);
    let (lp, result) = loops::scan_attrs(&g.node(id).attrs).expect("a scan node");
    let fresh = match group.as_ref() {
        Some((last, _)) => !loops::same_loop(g, crate::ir::NodeId(*last as u32), id),
        None => true,
    };
    if fresh {
        *group = Some((i, ops::loops::run_loop(lp, args)));
    }
    let (last, results) = group.as_mut().expect("set above");
    *last = i;
    results[result].clone()
}

impl From<f64> for Tensor {
    fn from(x: f64) -> Tensor {
        Tensor::scalar_f64(x)
    }
}

impl From<f32> for Tensor {
    fn from(x: f32) -> Tensor {
        Tensor::from_f32(Vec::new(), vec![x])
    }
}
