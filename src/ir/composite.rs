//! More composites: `softplus`, `logaddexp`, `clamp`, `pad`.
//!
//! Each is built from primitives and has no rules of its own: its value is exact (the
//! primitives in a fixed order, so the JIT equals the interpreter as for any graph) and its
//! derivatives are those of the primitives, which come out right here:
//! - `softplus(x) = max(x, 0) + log1p(exp(-|x|))`: never overflows, and its derivative is
//!   `1·[x>0] + ½·[x=0] - sign(x)·exp(-|x|)/(1 + exp(-|x|)) = sigmoid(x)`, including `½` at 0
//!   (`max` splits a tie, `abs'(0) = 0`).
//! - `logaddexp(a, b) = max(a, b) + log1p(exp(-|a - b|))`, derivatives `sigmoid(a - b)` and
//!   `sigmoid(b - a)` by the same argument.
//! - `clamp(x, lo, hi) = min(max(x, lo), hi)`: `jnp.clip`, ties at a bound split the cotangent
//!   as `max`/`min` do.
//! - `pad`: `concat` with splat constants, whose adjoint is the matching `slice`.

use super::{Op, Var};
use crate::ops::ShapeError;

impl<'b> Var<'b> {
    /// `log(1 + exp(x))`, computed stably as `max(x, 0) + log1p(exp(-|x|))` (`jax.nn.softplus`).
    /// Its derivative is `sigmoid(x)`.
    #[track_caller]
    pub fn softplus(self) -> Var<'b> {
        self.max(self.scalar_like(0.0)) + (-self.abs()).exp().log1p()
    }

    /// `log(exp(self) + exp(other))`, computed stably as
    /// `max(a, b) + log1p(exp(-|a - b|))` (`jnp.logaddexp`), with broadcasting. Where both are
    /// the same infinity (so `a - b` is NaN) the result is that infinity, as in JAX.
    #[track_caller]
    pub fn logaddexp(self, other: Var<'b>) -> Var<'b> {
        let d = self - other;
        let s = self.max(other) + (-d.abs()).exp().log1p();
        // `d` is NaN only if an operand is NaN (then `a + b` is NaN too) or both are the same
        // infinity (then `a + b` is it).
        self.builder().select(d.not_equal(d), self + other, s)
    }

    /// `min(max(x, lo), hi)`, as `jnp.clip(x, lo, hi)` (so `hi` wins if `lo > hi`; NaN stays
    /// NaN). At `x = lo` or `x = hi` exactly, half the cotangent flows to `x` (the tie rule of
    /// `max` and `min`).
    #[track_caller]
    pub fn clamp(self, lo: f64, hi: f64) -> Var<'b> {
        self.max(self.scalar_like(lo)).min(self.scalar_like(hi))
    }

    /// Pads with zeros: `pads[axis] = (before, after)` elements on each side of each axis
    /// (`jnp.pad` in constant mode, non-negative widths). Built from `concat`, so its adjoint
    /// slices the padding off again.
    #[track_caller]
    pub fn pad(self, pads: &[(usize, usize)]) -> Var<'b> {
        self.pad_with(pads, 0.0)
    }

    /// Pads with `value` (see [`Var::pad`]).
    #[track_caller]
    pub fn pad_with(self, pads: &[(usize, usize)], value: f64) -> Var<'b> {
        let b = self.builder();
        let ty = self.ty();
        if pads.len() != ty.rank() {
            if b.error().is_some() {
                // `self` may stand for a value that failed to build; the first error stands.
                return self;
            }
            return b.fail(ShapeError {
                op: Op::Concat,
                operands: vec![ty.clone()],
                names: Vec::new(),
                message: format!(
                    "pad needs one (before, after) pair per axis ({} axes), found {}",
                    ty.rank(),
                    pads.len()
                ),
            });
        }
        let fill = |shape: &[usize]| -> Var<'b> { b.scalar(ty.dtype, value).broadcast_to(shape) };
        let mut y = self;
        for (ax, &(lo, hi)) in pads.iter().enumerate() {
            let mut parts = Vec::with_capacity(3);
            let mut shape = y.shape();
            if lo > 0 {
                shape[ax] = lo;
                parts.push(fill(&shape));
            }
            parts.push(y);
            if hi > 0 {
                shape[ax] = hi;
                parts.push(fill(&shape));
            }
            if parts.len() > 1 {
                y = b.concat(&parts, ax);
            }
        }
        y
    }
}
