//! The reference interpreter: the semantics of a graph.
//!
//! Walks the nodes in id order, evaluating each with its op's `eval` kernel from
//! [`crate::ops`] (straightforward loops, no fusion, no reassociation), and frees each value
//! after its last use. The JIT must agree with this module.
//!
//! Not here: any optimization, or any code shared with the JIT's lowering.

use crate::ir::{Graph, Op, TensorType};
use crate::ops;
use crate::tensor::Tensor;

/// A bad call to the interpreter (user error: wrong input count or types).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, EvalError> {
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
    let mut uses = g.use_counts();
    let mut values: Vec<Option<Tensor>> = vec![None; g.len()];
    let mut next_input = inputs.iter();
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
            ops::eval(node, &args)
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
