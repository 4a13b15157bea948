//! Builder methods for integer indexing and random numbers: `iota`, `gather`, `scatter_add`,
//! `argmax`/`argmin`, `random_uniform` and the Box–Muller composite `random_normal`. The ops'
//! rules (clamped indices, tie and NaN conventions, the Philox stream) are documented in
//! [`crate::ops`] (`index` and [`crate::ops::random`]).

use super::{Attrs, DType, GraphBuilder, Op, TensorType, Var};

impl GraphBuilder {
    /// An `iota`: a tensor of `dtype` (`I32`, `F32` or `F64`) and `shape` whose elements are
    /// their index along `axis`.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, interp};
    /// let b = GraphBuilder::new("g");
    /// let i = b.iota(DType::I32, &[2, 3], 1);
    /// let g = b.finish(&[("i", i)]).unwrap();
    /// let out = interp::run(&g, &[]).unwrap();
    /// assert_eq!(out[0].to_f64_vec(), vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn iota(&self, dtype: DType, shape: &[usize], axis: usize) -> Var<'_> {
        let ty = TensorType::new(dtype, shape.to_vec());
        self.push(Op::Iota, &[], Attrs::Iota { ty, axis })
    }

    /// `x` taken along `axis` at the `i32` indices `idx` (`jnp.take(x, idx, axis)`; indices
    /// outside `0..n` are clamped): the result has shape
    /// `x.shape[..axis] ++ idx.shape ++ x.shape[axis+1..]`.
    #[track_caller]
    pub fn gather<'b>(&'b self, x: Var<'b>, idx: Var<'b>, axis: usize) -> Var<'b> {
        self.push(Op::Gather, &[x, idx], Attrs::Axis { axis })
    }

    /// The transpose of [`GraphBuilder::gather`]: a tensor with `size` elements along `axis`,
    /// zero except that each slice of `updates` is added at its (clamped) index from `idx`.
    /// `updates` has shape `out.shape[..axis] ++ idx.shape ++ out.shape[axis+1..]`.
    ///
    /// ```
    /// use gradlift::{DType, GraphBuilder, Tensor, interp};
    /// let b = GraphBuilder::new("g");
    /// let u = b.input("u", DType::F64, &[3]);
    /// let idx = b.constant(Tensor::from_i32(vec![3], vec![2, 0, 2]));
    /// let y = b.scatter_add(u, idx, 0, 4);
    /// let g = b.finish(&[("y", y)]).unwrap();
    /// let u = Tensor::from_f64(vec![3], vec![1.0, 10.0, 100.0]);
    /// let out = interp::run(&g, &[u]).unwrap();
    /// assert_eq!(out[0].to_f64_vec(), vec![10.0, 0.0, 101.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn scatter_add<'b>(
        &'b self,
        updates: Var<'b>,
        idx: Var<'b>,
        axis: usize,
        size: usize,
    ) -> Var<'b> {
        self.push(
            Op::ScatterAdd,
            &[updates, idx],
            Attrs::Scatter { axis, size },
        )
    }

    /// Uniform samples in `[0, 1)` of `dtype` (`F32` or `F64`) and `shape` from the counter-based
    /// Philox-4x32-10 generator: a pure function of the `i32[]` values `seed` and `counter`
    /// (see [`crate::ops::random`]). No derivative flows through it.
    #[track_caller]
    pub fn random_uniform<'b>(
        &'b self,
        seed: Var<'b>,
        counter: Var<'b>,
        dtype: DType,
        shape: &[usize],
    ) -> Var<'b> {
        let ty = TensorType::new(dtype, shape.to_vec());
        self.push(Op::RandomUniform, &[seed, counter], Attrs::Random { ty })
    }

    /// Standard normal samples by Box–Muller from one `random_uniform` of shape `[2, ...shape]`
    /// (halves `u₁`, `u₂`): `√(−2·ln(1 − u₁))·cos(2π·u₂)` (`1 − u₁` is in `(0, 1]`, so the
    /// logarithm is finite). A composite: no rules of its own.
    #[track_caller]
    pub fn random_normal<'b>(
        &'b self,
        seed: Var<'b>,
        counter: Var<'b>,
        dtype: DType,
        shape: &[usize],
    ) -> Var<'b> {
        let mut both = vec![2];
        both.extend(shape);
        let u = self.random_uniform(seed, counter, dtype, &both);
        let half = |k: usize| {
            let mut start = vec![0; both.len()];
            let mut stop = both.clone();
            start[0] = k;
            stop[0] = k + 1;
            u.slice(&start, &stop).reshape(shape)
        };
        let (u1, u2) = (half(0), half(1));
        let r = ((1.0 - u1).log() * -2.0).sqrt();
        r * (u2 * std::f64::consts::TAU).cos()
    }
}

impl<'b> Var<'b> {
    /// `self` taken along `axis` at the `i32` indices `idx` (see [`GraphBuilder::gather`]).
    #[track_caller]
    pub fn gather(self, idx: Var<'b>, axis: usize) -> Var<'b> {
        self.builder().gather(self, idx, axis)
    }

    /// `self` added into `size` slots along `axis` at the `i32` indices `idx` (see
    /// [`GraphBuilder::scatter_add`]).
    #[track_caller]
    pub fn scatter_add(self, idx: Var<'b>, axis: usize, size: usize) -> Var<'b> {
        self.builder().scatter_add(self, idx, axis, size)
    }

    /// The `i32` index of the first maximum along `axis` (the first NaN if there is one); the
    /// axis is removed. No derivative.
    #[track_caller]
    pub fn argmax(self, axis: usize) -> Var<'b> {
        self.builder()
            .push(Op::Argmax, &[self], Attrs::Axis { axis })
    }

    /// The `i32` index of the first minimum along `axis` (the first NaN if there is one); the
    /// axis is removed. No derivative.
    #[track_caller]
    pub fn argmin(self, axis: usize) -> Var<'b> {
        self.builder()
            .push(Op::Argmin, &[self], Attrs::Axis { axis })
    }
}
