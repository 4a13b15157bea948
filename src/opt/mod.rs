//! The optimizer (being written): `optimize(&mut Graph, &OptConfig) -> OptReport`.

use crate::ir::Graph;
use std::fmt;

/// Optimizer settings.
#[derive(Clone, Debug, Default)]
pub struct OptConfig {}

/// What the optimizer did.
#[derive(Clone, Debug, Default)]
pub struct OptReport {
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

impl fmt::Display for OptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nodes {} -> {}", self.nodes_before, self.nodes_after)
    }
}

/// Optimizes `g` in place, keeping its inputs and outputs (names, order, values).
pub fn optimize(g: &mut Graph, _cfg: &OptConfig) -> OptReport {
    OptReport { nodes_before: g.len(), nodes_after: g.len() }
}
