//! `run --jacobian [--mode fwd|rev|auto]` and `run --hessian`: appends full Jacobian and Hessian
//! blocks as extra outputs, and prints them.
//!
//! JSON (after `"outputs"` and `"gradients"`):
//! - `"jacobian": {"OUT": {"IN": J}}` for every output `OUT` and every float input `IN`, where
//!   `J` has shape `OUT.shape + IN.shape` (`J[o...][i...] = ∂OUT[o...]/∂IN[i...]`).
//! - `"hessian": {"IN": H}` for every float input: the second derivatives of the first output
//!   (a float scalar), shape `IN.shape + IN.shape`.
//! - `"hessian_cross": {"A,B": H}` for every pair of distinct float inputs `A` before `B` in
//!   input order (the key is the two names joined by a comma; `.gir` names never contain one):
//!   `H[a...][b...] = ∂²y/∂A[a...]∂B[b...]`, shape `A.shape + B.shape`. The `"B,A"` block is its
//!   transpose and is not printed. The object is `{}` with fewer than two float inputs.
//!
//! Errors follow `--grad`: a non-float output for `--jacobian`, or a first output that is not a
//! float scalar for `--hessian`, is a user error naming the output. Not here: choosing the mode
//! (the library's [`gradlift::autodiff::Mode`]) or any differentiation of its own.

use super::{CliError, json_out};
use crate::{DerivArgs, JacobianMode};
use gradlift::autodiff::{self, Mode};
use gradlift::{Graph, NodeId, Tensor};
use std::path::Path;

/// Which derivative outputs were appended, in output order.
#[derive(Debug, Default)]
pub struct Derivs {
    /// For each output (by name): the float inputs whose Jacobian blocks follow, in order.
    jacobian: Option<Vec<(String, Vec<String>)>>,
    /// The Hessian blocks, if asked.
    hessian: Option<HessianBlocks>,
}

/// The diagonal blocks (by input), then the cross blocks (by pair of inputs).
#[derive(Debug)]
struct HessianBlocks {
    diag: Vec<String>,
    cross: Vec<(String, String)>,
}

/// Appends the blocks `args` asks for after the graph's current outputs. `n_outputs` is how many
/// of the current outputs are the file's own (the rest are `--grad` gradients).
pub fn append(
    g: &mut Graph,
    n_outputs: usize,
    args: &DerivArgs,
    path: &Path,
) -> Result<Derivs, CliError> {
    let mut d = Derivs::default();
    if !args.jacobian && !args.hessian {
        return Ok(d);
    }
    let shown = path.display();
    let outs: Vec<NodeId> = g.outputs()[..n_outputs].to_vec();
    let wrt: Vec<NodeId> = g
        .inputs()
        .into_iter()
        .filter(|&i| g.ty(i).dtype.is_float())
        .collect();
    let in_names: Vec<String> = wrt.iter().map(|&w| g.value_name(w)).collect();
    let mut extra = Vec::new();
    if args.jacobian {
        if let Some(&o) = outs.iter().find(|&&o| !g.ty(o).dtype.is_float()) {
            return Err(CliError::new(format!(
                "{shown}: --jacobian: output %{} has type {}; only f32 and f64 outputs have a \
                 Jacobian",
                g.value_name(o),
                g.ty(o)
            )));
        }
        let mode = match args.mode {
            JacobianMode::Fwd => Mode::Forward,
            JacobianMode::Rev => Mode::Reverse,
            JacobianMode::Auto => Mode::Auto,
        };
        let blocks = autodiff::jacobian(g, &outs, &wrt, mode)
            .map_err(|e| CliError::new(format!("{shown}: --jacobian: {e}")))?;
        extra.extend(blocks.into_iter().flatten());
        d.jacobian = Some(
            outs.iter()
                .map(|&o| (g.value_name(o), in_names.clone()))
                .collect(),
        );
    }
    if args.hessian {
        let Some(&y) = outs.first() else {
            return Err(CliError::new(format!(
                "{shown}: --hessian: the graph has no outputs"
            )));
        };
        let yty = g.ty(y);
        if !yty.is_scalar() || !yty.dtype.is_float() {
            return Err(CliError::new(format!(
                "{shown}: --hessian: the first output %{} has type {yty}; it must be a float \
                 scalar (f32[] or f64[]) to be differentiated",
                g.value_name(y)
            )));
        }
        let h = autodiff::hessian(g, y, &wrt)
            .map_err(|e| CliError::new(format!("{shown}: --hessian: {e}")))?;
        let mut pairs = Vec::new();
        for (i, row) in h.iter().enumerate() {
            extra.push(row[i]);
        }
        for i in 0..wrt.len() {
            for j in i + 1..wrt.len() {
                extra.push(h[i][j]);
                pairs.push((in_names[i].clone(), in_names[j].clone()));
            }
        }
        d.hessian = Some(HessianBlocks {
            diag: in_names,
            cross: pairs,
        });
    }
    let mut all = g.outputs().to_vec();
    all.extend(extra);
    g.set_outputs(all);
    Ok(d)
}

impl Derivs {
    fn len(&self) -> usize {
        let j: usize = self
            .jacobian
            .iter()
            .flatten()
            .map(|(_, ins)| ins.len())
            .sum();
        let h = self
            .hessian
            .as_ref()
            .map_or(0, |h| h.diag.len() + h.cross.len());
        j + h
    }

    /// Appends `, "jacobian": {...}` and/or `, "hessian": {...}, "hessian_cross": {...}` for
    /// the values of the appended outputs (in the order [`append`] added them).
    pub fn write_json(&self, s: &mut String, values: &[Tensor]) -> Result<(), CliError> {
        if values.len() != self.len() {
            return Err(CliError::bug(format!(
                "expected {} derivative outputs, got {}",
                self.len(),
                values.len()
            )));
        }
        let mut vals = values.iter();
        if let Some(jac) = &self.jacobian {
            s.push_str(", \"jacobian\": {");
            for (k, (out, ins)) in jac.iter().enumerate() {
                if k > 0 {
                    s.push_str(", ");
                }
                json_out::string(s, out);
                s.push_str(": ");
                json_out::object(s, ins.iter().zip(vals.by_ref()));
            }
            s.push('}');
        }
        if let Some(HessianBlocks { diag, cross }) = &self.hessian {
            s.push_str(", \"hessian\": ");
            json_out::object(s, diag.iter().zip(vals.by_ref()));
            s.push_str(", \"hessian_cross\": ");
            let keys: Vec<String> = cross.iter().map(|(a, b)| format!("{a},{b}")).collect();
            json_out::object(s, keys.iter().zip(vals.by_ref()));
        }
        Ok(())
    }
}
