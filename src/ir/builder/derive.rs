//! The derivative methods of [`GraphBuilder`]: the `Var`-level front of [`crate::autodiff`]
//! (reverse and forward mode, seeds, Jacobians, Hessians, custom rules, checkpoints). Each calls a
//! crate-internal builder-level driver of `autodiff` on node ids, reports builder errors and the
//! driver's error at the caller's location, and maps the results back to `Var`s. This file is
//! the only place in `ir` that calls `autodiff`.

use super::{BuildError, GraphBuilder, POISON, Var};
use crate::autodiff::checkpoint::{CheckpointPolicy, CheckpointRegion, CheckpointResult};
use crate::ir::{Attrs, NodeId, Op};
use std::panic::Location;

impl GraphBuilder {
    /// Appends the adjoint graph of `y` (a float scalar) and returns `∂y/∂w` for each `w` in
    /// `wrt`, shaped like `w`. See [`crate::autodiff::grad`].
    ///
    /// # Errors
    /// A recorded builder error, a non-scalar or non-float `y`, or a non-float `wrt`.
    #[track_caller]
    pub fn grad<'b>(&'b self, y: Var<'b>, wrt: &[Var<'b>]) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("grad", &[&[y], wrt], |b| {
            crate::autodiff::append_grad(b, y.id, &ids(wrt)).map(|t| vars(b, t))
        })
    }

    /// Runs a derivative driver on ids and maps the results back to `Var`s. A value of another
    /// builder among `values`, a builder error recorded before or during the driver, and the
    /// driver's own error are all reported at the caller's location.
    #[track_caller]
    fn derive<'b, T>(
        &'b self,
        call: &str,
        values: &[&[Var<'b>]],
        f: impl FnOnce(&'b GraphBuilder) -> Result<T, crate::autodiff::GradError>,
    ) -> Result<T, crate::Error> {
        self.foreign(call, values);
        self.check()?;
        let out = f(self);
        // A recorded builder error is the root cause of whatever the driver then reported.
        self.check()?;
        let location = Location::caller();
        out.map_err(|e| {
            crate::Error::Build(BuildError {
                error: e.into(),
                location: location.to_string(),
            })
        })
    }

    /// Appends the tangent graph and returns the tangent of each output along the direction
    /// `tangents` (one per `wrt` value, of its type): a Jacobian-vector product by forward mode.
    /// See [`crate::autodiff::jvp`].
    ///
    /// # Errors
    /// A recorded builder error, a non-float output or `wrt`, or a tangent of the wrong type.
    #[track_caller]
    pub fn jvp<'b>(
        &'b self,
        outputs: &[Var<'b>],
        wrt: &[Var<'b>],
        tangents: &[Var<'b>],
    ) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("jvp", &[outputs, wrt, tangents], |b| {
            crate::autodiff::append_jvp(b, &ids(outputs), &ids(wrt), &ids(tangents), None)
                .map(|t| vars(b, t))
        })
    }

    /// [`GraphBuilder::jvp`] for `k` directions at once: each tangent is `[k, ...wrt.shape]`,
    /// each result `[k, ...output.shape]`. See [`crate::autodiff::jvp_batched`].
    ///
    /// # Errors
    /// As [`GraphBuilder::jvp`].
    #[track_caller]
    pub fn jvp_batched<'b>(
        &'b self,
        outputs: &[Var<'b>],
        wrt: &[Var<'b>],
        tangents: &[Var<'b>],
        k: usize,
    ) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("jvp_batched", &[outputs, wrt, tangents], |b| {
            crate::autodiff::append_jvp(b, &ids(outputs), &ids(wrt), &ids(tangents), Some(k))
                .map(|t| vars(b, t))
        })
    }

    /// Appends the adjoint graph for explicit seed cotangents (one per output, of its type) and
    /// returns `Σⱼ ȳⱼ·∂yⱼ/∂w` for each `w`: a vector-Jacobian product by reverse mode. See
    /// [`crate::autodiff::vjp`].
    ///
    /// # Errors
    /// A recorded builder error, a non-float output or `wrt`, or a cotangent of the wrong type.
    #[track_caller]
    pub fn vjp<'b>(
        &'b self,
        outputs: &[Var<'b>],
        wrt: &[Var<'b>],
        cotangents: &[Var<'b>],
    ) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("vjp", &[outputs, wrt, cotangents], |b| {
            crate::autodiff::append_vjp(b, &ids(outputs), &ids(wrt), &ids(cotangents), None)
                .map(|t| vars(b, t))
        })
    }

    /// [`GraphBuilder::vjp`] for `k` seeds at once: each cotangent is `[k, ...output.shape]`,
    /// each result `[k, ...w.shape]`. See [`crate::autodiff::vjp_batched`].
    ///
    /// # Errors
    /// As [`GraphBuilder::vjp`].
    #[track_caller]
    pub fn vjp_batched<'b>(
        &'b self,
        outputs: &[Var<'b>],
        wrt: &[Var<'b>],
        cotangents: &[Var<'b>],
        k: usize,
    ) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("vjp_batched", &[outputs, wrt, cotangents], |b| {
            crate::autodiff::append_vjp(b, &ids(outputs), &ids(wrt), &ids(cotangents), Some(k))
                .map(|t| vars(b, t))
        })
    }

    /// Appends the full Jacobian blocks `J[j][i] = ∂outputs[j]/∂wrt[i]` (shape
    /// `outputs[j].shape ++ wrt[i].shape`), by the mode `mode` picks. See
    /// [`crate::autodiff::jacobian()`].
    ///
    /// # Errors
    /// A recorded builder error, or a non-float output or `wrt`.
    #[track_caller]
    pub fn jacobian<'b>(
        &'b self,
        outputs: &[Var<'b>],
        wrt: &[Var<'b>],
        mode: crate::autodiff::Mode,
    ) -> Result<Vec<Vec<Var<'b>>>, crate::Error> {
        self.derive("jacobian", &[outputs, wrt], |b| {
            crate::autodiff::append_jacobian(b, &ids(outputs), &ids(wrt), mode)
                .map(|rows| rows.into_iter().map(|r| vars(b, r)).collect())
        })
    }

    /// Appends the Hessian blocks `H[i][j] = ∂²y/∂wrt[i]∂wrt[j]` of the float scalar `y`
    /// (forward-over-reverse). See [`crate::autodiff::hessian`].
    ///
    /// # Errors
    /// A recorded builder error, a non-scalar or non-float `y`, or a non-float `wrt`.
    #[track_caller]
    pub fn hessian<'b>(
        &'b self,
        y: Var<'b>,
        wrt: &[Var<'b>],
    ) -> Result<Vec<Vec<Var<'b>>>, crate::Error> {
        self.derive("hessian", &[&[y], wrt], |b| {
            crate::autodiff::append_hessian(b, y.id, &ids(wrt))
                .map(|rows| rows.into_iter().map(|r| vars(b, r)).collect())
        })
    }

    /// Appends the Hessian-vector product `H·v` of the float scalar `y` (one `v` per `wrt`
    /// value, of its type) without forming `H`. See [`crate::autodiff::hvp`].
    ///
    /// # Errors
    /// As [`GraphBuilder::hessian`], or a `v` of the wrong type.
    #[track_caller]
    pub fn hvp<'b>(
        &'b self,
        y: Var<'b>,
        wrt: &[Var<'b>],
        v: &[Var<'b>],
    ) -> Result<Vec<Var<'b>>, crate::Error> {
        self.derive("hvp", &[&[y], wrt, v], |b| {
            crate::autodiff::append_hvp(b, y.id, &ids(wrt), &ids(v)).map(|t| vars(b, t))
        })
    }

    /// Applies a custom op: builds its forward subgraph on `inputs` and records a
    /// custom-derivative region, so both AD modes use the op's own rules there (and fail with a
    /// typed error for a mode it has no rule for). See [`crate::ops::custom`].
    #[track_caller]
    pub fn custom<'b>(&'b self, op: &crate::ops::custom::CustomOp, inputs: &[Var<'b>]) -> Var<'b> {
        let call = format!("custom op `{}`", op.name());
        if self.foreign(&call, &[inputs]) || inputs.iter().any(|v| v.id == POISON) {
            return Var {
                id: POISON,
                b: self,
            };
        }
        let first = NodeId(self.graph.borrow().len() as u32);
        let out = (op.forward())(self, inputs);
        if out.id == POISON {
            return out;
        }
        // The region's output must be a node of its own (the forward function may return an
        // input unchanged, e.g. a gradient clip): add an identity copy then.
        let out = if out.id < first {
            out.reshape(&out.shape())
        } else {
            out
        };
        if out.id == POISON {
            return out;
        }
        self.graph
            .borrow_mut()
            .add_custom_region(crate::ops::custom::CustomRegion {
                op: op.clone(),
                inputs: ids(inputs),
                first,
                output: out.id,
            });
        out
    }

    /// Builds `f`'s nodes as a checkpoint region: reverse mode recomputes its intermediate
    /// values just before the backward pass needs them instead of keeping them from the
    /// forward pass (memory for time; `jax.checkpoint`). The values `f` returns are saved; see
    /// [`crate::autodiff::checkpoint`]. Same as [`GraphBuilder::checkpoint_with`] and
    /// [`CheckpointPolicy::SaveNothing`].
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, interp};
    /// let b = GraphBuilder::new("g");
    /// let x = b.input("x", DType::F64, &[]);
    /// let y = b.checkpoint(|_| x.sin().exp());
    /// let g = b.grad(y, &[x]).unwrap();
    /// let graph = b.finish(&[("y", y), ("dy", g[0])]).unwrap();
    /// let out = interp::run(&graph, &[0.5.into()]).unwrap();
    /// let want = 0.5f64.cos() * 0.5f64.sin().exp();
    /// assert_eq!(out[1].scalar_value(), Some(want)); // sin(x) was recomputed, exactly
    /// ```
    #[track_caller]
    pub fn checkpoint<'b, R: CheckpointResult<'b>>(
        &'b self,
        f: impl FnOnce(&'b GraphBuilder) -> R,
    ) -> R {
        self.checkpoint_with(CheckpointPolicy::SaveNothing, f)
    }

    /// [`GraphBuilder::checkpoint`] with a policy saying which intermediates are saved.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, autodiff::checkpoint::CheckpointPolicy};
    /// let b = GraphBuilder::new("g");
    /// let x = b.input("x", DType::F32, &[4, 4]);
    /// let y = b.checkpoint_with(CheckpointPolicy::SaveDots, |_| x.matmul(x).tanh().matmul(x));
    /// let _ = b.grad(y.sum(), &[x]).unwrap(); // matmuls saved, tanh recomputed
    /// ```
    #[track_caller]
    pub fn checkpoint_with<'b, R: CheckpointResult<'b>>(
        &'b self,
        policy: CheckpointPolicy,
        f: impl FnOnce(&'b GraphBuilder) -> R,
    ) -> R {
        let first = NodeId(self.graph.borrow().len() as u32);
        let out = f(self);
        let end = NodeId(self.graph.borrow().len() as u32);
        let outputs = out.values();
        if end > first && !outputs.contains(&POISON) {
            let region = CheckpointRegion {
                first,
                end,
                outputs,
                policy,
            };
            self.graph
                .borrow_mut()
                .checkpoints_mut()
                .regions
                .push(region);
        }
        out
    }
}

fn ids(vs: &[Var<'_>]) -> Vec<NodeId> {
    vs.iter().map(|v| v.id).collect()
}

fn vars(b: &GraphBuilder, ids: Vec<NodeId>) -> Vec<Var<'_>> {
    ids.into_iter().map(|id| b.var(id)).collect()
}

impl<'b> Var<'b> {
    /// The same value with no derivative: tangents and cotangents stop here (the
    /// `stop_gradient` op).
    #[track_caller]
    pub fn stop_gradient(self) -> Var<'b> {
        self.b.push(Op::StopGradient, &[self], Attrs::None)
    }

    /// Tags this value with `name` for [`CheckpointPolicy::SaveNames`] (JAX's
    /// `checkpoint_name`) and returns it. Unlike a value name ([`Var::named`]), one tag may
    /// mark many values (one per layer).
    pub fn checkpoint_name(self, name: &str) -> Var<'b> {
        if self.id != POISON {
            let mut g = self.b.graph.borrow_mut();
            g.checkpoints_mut().names.push((self.id, name.to_string()));
        }
        self
    }
}
