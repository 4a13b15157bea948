//! Phase 1: liveness. A backward pass from the outputs marks the nodes whose values are
//! needed; the rest get no code.

use crate::ir::{Graph, Op};

/// Which nodes are needed, and which are outputs.
pub(super) struct Live {
    /// The node's value is needed to compute some output.
    pub live: Vec<bool>,
    /// The node is an output.
    pub output: Vec<bool>,
}

/// The live nodes of `g`.
pub(super) fn analyze(g: &Graph) -> Live {
    let n = g.len();
    let nodes = g.nodes();
    let mut live = vec![false; n];
    let mut output = vec![false; n];
    for o in g.outputs() {
        live[o.index()] = true;
        output[o.index()] = true;
    }
    for i in (0..n).rev() {
        if live[i] {
            for x in &nodes[i].inputs {
                live[x.index()] = true;
            }
        }
    }
    Live { live, output }
}

impl Live {
    /// The number of dead nodes that would have needed code (inputs and constants do not).
    pub(super) fn dead(&self, g: &Graph) -> u64 {
        g.nodes()
            .iter()
            .zip(&self.live)
            .filter(|(node, live)| !**live && !matches!(node.op, Op::Input | Op::Const))
            .count() as u64
    }
}
