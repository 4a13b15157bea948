//! The verifier: checks a graph's invariants and collects every violation.
//!
//! Checks: every type is valid (positive dimensions, at most 2^31 − 1 elements), operands
//! precede their users (topological order), each node's stored type equals the type its op's
//! shape rule infers, leaves have no operands, outputs exist and are distinct,
//! names are unique, and loop bodies verify, each loop once (and the forward loop a backward
//! loop recomputes); nesting depth is the loops' own, not the graph's.
//! It does not check numerical properties.

use super::{Graph, NodeId, Op};
use crate::ops;
use std::collections::HashSet;
use std::fmt;

/// One violated invariant, at a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The offending node.
    pub node: NodeId,
    /// What is wrong.
    pub message: String,
}

/// Every violation found in a graph.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct VerifyErrors(pub Vec<VerifyError>);

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph failed verification:")?;
        for e in &self.0 {
            write!(f, "\n  {}: {}", e.node, e.message)?;
        }
        Ok(())
    }
}

/// Verifies `g`, returning all violations.
///
/// # Errors
/// [`VerifyErrors`] listing every broken invariant (an internal bug if the graph came from the
/// builder, the parser or a pass).
pub fn verify(g: &Graph) -> Result<(), VerifyErrors> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    // Each loop once, however many result nodes share it (a group of n results would
    // otherwise verify its body n times).
    let mut loops: HashSet<*const super::loops::Loop> = HashSet::new();
    for (i, n) in g.nodes().iter().enumerate() {
        let id = NodeId(i as u32);
        let mut err = |m: String| {
            errs.push(VerifyError {
                node: id,
                message: m,
            })
        };
        if let Some(name) = &n.name
            && !names.insert(name.clone())
        {
            err(format!("duplicate name %{name}"));
        }
        if !n.ty.is_valid() {
            // The JIT computes sizes and offsets from these types: they must be in range.
            err(format!(
                "type {} has a zero dimension or more than 2^31 - 1 elements",
                n.ty
            ));
            continue;
        }
        if n.inputs.iter().any(|x| x.index() >= i) {
            err("an operand does not precede its user".into());
            continue;
        }
        match n.op {
            Op::Input | Op::Const => {
                if !n.inputs.is_empty() {
                    err("a leaf has operands".into());
                }
                if let Some(t) = n.attrs.as_const() {
                    if t.ty() != n.ty {
                        err(format!("constant of type {} stored as {}", t.ty(), n.ty));
                    }
                } else if n.op == Op::Const {
                    err("const without a value".into());
                }
            }
            op => {
                if let Some((lp, _)) = super::loops::scan_attrs(&n.attrs)
                    && loops.insert(std::sync::Arc::as_ptr(lp))
                {
                    if let Err(e) = verify(&lp.body) {
                        err(format!("its loop body: {e}"));
                    }
                    if let Some(rc) = &lp.recompute
                        && let Err(e) = verify(&rc.forward.body)
                    {
                        err(format!("the body of the forward loop it recomputes: {e}"));
                    }
                }
                let tys: Vec<_> = n.inputs.iter().map(|&x| g.ty(x)).collect();
                match ops::infer(op, &tys, &n.attrs) {
                    Ok(t) if t == n.ty => {}
                    Ok(t) => err(format!("stored type {} but {op} infers {t}", n.ty)),
                    Err(e) => err(e.to_string()),
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for &o in g.outputs() {
        if o.index() >= g.len() {
            errs.push(VerifyError {
                node: o,
                message: "output is not a node".into(),
            });
        } else if !seen.insert(o) {
            errs.push(VerifyError {
                node: o,
                message: "value is output twice".into(),
            });
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(VerifyErrors(errs))
    }
}
