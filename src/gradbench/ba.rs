//! `ba`: bundle adjustment. `objective` is each observation's weighted reprojection error
//! (Rodrigues rotation, perspective division, radial distortion, focal length and principal
//! point) and each weight's error `1 − w²`; `jacobian` is the sparse Jacobian of both with
//! respect to the `11n` camera parameters, `3m` point coordinates and `p` weights.
//!
//! The eval sends one camera, point, weight and feature and their counts `n`, `m`, `p`; as
//! GradBench's reference tool does, the input is duplicated to `n` cameras, `m` points and `p`
//! observations (observation `i` sees camera `i mod n` and point `i mod m`) and every
//! observation is computed: nothing exploits the duplication.
//!
//! Structure, not scalars: the cameras and points are gathered per observation, transposed
//! (`[11, p]` and `[3, p]`, so each parameter is one contiguous row over the observations), the
//! projection is one elementwise chain over the observation axis, and the Jacobian's nonzero
//! blocks are the per-observation Jacobians of that chain with respect to the gathered
//! parameters (11 camera, 3 point, 1 weight): reverse mode seeded with both error components
//! on a leading batch axis gives `[2, 15, p]`, transposed to the `[p, 2, 15]` blocks, which
//! are the values of the sparse matrix in its row-major (CSR) order. (Forward mode with the 15
//! directions on the batch axis gives the same blocks; it measured about 2× slower, as it
//! carries 15 tangents through the chain where reverse mode carries 2 cotangents. Gathering
//! rows `[p, 11]` and reading strided columns measured 2–5× slower than the transposed
//! layout.) The kernel also computes the column index of each value (exact integers in
//! `f64`), so the timed call produces the whole matrix.
//!
//! Output, as GradBench's reference tool reports it: the objective's first observation and the
//! repeat count; the Jacobian's `rows`, `cols` and `vals` lists cut to their first 30 entries
//! and their last one.

use super::{GbError, Task, Value, infallible, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// Camera parameters: rotation (3), center (3), focal length, principal point (2), radial
/// distortion (2).
const NCAM: usize = 11;
/// Nonzeros per row of a reprojection error: its camera, its point, its weight.
const NDIR: usize = NCAM + 3 + 1;
/// Entries of each list GradBench keeps before the last one.
const KEPT: usize = 2 * NDIR;

/// Prepares `objective` or `jacobian` on the eval's input object.
///
/// # Errors
/// An unknown function, a missing field, a count of zero or above `i32::MAX`, or a `cam`,
/// `x` or `feat` of the wrong length.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let jac = match function {
        "objective" => false,
        "jacobian" => true,
        f => return Err(unknown_function("ba", f, &["objective", "jacobian"])),
    };
    let (n, m, p) = (input.count("n")?, input.count("m")?, input.count("p")?);
    let limit = i32::MAX as usize;
    if n == 0 || m == 0 || p == 0 || n.max(m).max(p) > limit {
        return Err(GbError::Input(format!(
            "ba: need 1 <= n, m, p <= {limit}; got n = {n}, m = {m}, p = {p}"
        )));
    }
    let one = |name: &str, len: usize| -> Result<Vec<f64>, GbError> {
        let v = input.list_field(name)?;
        if v.len() == len {
            Ok(v)
        } else {
            Err(GbError::Input(format!(
                "ba: `{name}` has {} numbers, expected {len}",
                v.len()
            )))
        }
    };
    let (cam, x, feat) = (one("cam", NCAM)?, one("x", 3)?, one("feat", 2)?);
    let w = input.num("w")?;
    // Indices are below 2^31, so `f64` holds them exactly and the graph casts them to `i32`.
    let obs: Vec<f64> = (0..p)
        .flat_map(|i| [(i % n) as f64, (i % m) as f64])
        .collect();
    let inputs = vec![cam.repeat(n), x.repeat(m), vec![w; p], feat.repeat(p), obs];
    Ok(Task {
        key: format!("ba/{function}/n={n},m={m},p={p}"),
        inputs,
        build: Box::new(move || build(n, m, p, jac)),
        decode: infallible(move |outs| {
            if jac {
                decode_jacobian(&outs, p)
            } else {
                decode_objective(&outs, p)
            }
        }),
    })
}

fn decode_objective(outs: &[Vec<f64>], p: usize) -> Value {
    let first = |o: Option<&Vec<f64>>, k: usize| -> Vec<f64> {
        o.map_or_else(Vec::new, |v| v.iter().take(k).copied().collect())
    };
    let w_err = first(outs.get(1), 1).first().copied().unwrap_or(f64::NAN);
    Value::Object(vec![
        (
            "reproj_error".into(),
            Value::Object(vec![
                ("elements".into(), Value::list(first(outs.first(), 2))),
                ("repeated".into(), Value::Num(p as f64)),
            ]),
        ),
        (
            "w_err".into(),
            Value::Object(vec![
                ("element".into(), Value::Num(w_err)),
                ("repeated".into(), Value::Num(p as f64)),
            ]),
        ),
    ])
}

/// The kept entries of the CSR lists: rows `0, 15, …, 30p` for the reprojection errors, then
/// one nonzero per weight-error row; values and columns from the kernel.
fn decode_jacobian(outs: &[Vec<f64>], p: usize) -> Value {
    let row = |i: usize| {
        if i <= 2 * p {
            (i * NDIR) as f64
        } else {
            (2 * p * NDIR + (i - 2 * p)) as f64
        }
    };
    let empty = Vec::new();
    let get = |k: usize| outs.get(k).unwrap_or(&empty);
    let (vals, cols, w_vals, w_cols) = (get(0), get(1), get(2), get(3));
    let kept = |v: &[f64], last: &[f64]| {
        let mut out: Vec<f64> = v.iter().take(KEPT).copied().collect();
        out.push(last.last().copied().unwrap_or(f64::NAN));
        Value::list(out)
    };
    let mut rows: Vec<f64> = (0..KEPT).map(row).collect();
    rows.push(row(3 * p));
    Value::Object(vec![
        ("rows".into(), Value::list(rows)),
        ("cols".into(), kept(cols, w_cols)),
        ("vals".into(), kept(vals, w_vals)),
    ])
}

/// Row `r` (`[1, p]`) of a `[k, p]` tensor.
fn row(v: Var<'_>, r: usize) -> Var<'_> {
    let p = v.shape()[1];
    v.slice(&[r, 0], &[r + 1, p])
}

fn cross<'b>(a: &[Var<'b>; 3], b: &[Var<'b>; 3]) -> [Var<'b>; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// `pt` rotated by the angle-axis vector `r` (Rodrigues' formula); for `r = 0` exactly, the
/// first-order form `pt + r × pt`, as the reference does (its derivative in `r` is the limit).
fn rodrigues<'b>(r: [Var<'b>; 3], pt: [Var<'b>; 3]) -> [Var<'b>; 3] {
    let sq = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    let nz = sq.not_equal(sq.scalar_like(0.0));
    // The unused branch must stay finite so no NaN reaches a derivative through `select`.
    let theta = nz.select(sq, sq.scalar_like(1.0)).sqrt();
    let (c, s, inv) = (theta.cos(), theta.sin(), theta.recip());
    let w = [r[0] * inv, r[1] * inv, r[2] * inv];
    let wxp = cross(&w, &pt);
    let tmp = (w[0] * pt[0] + w[1] * pt[1] + w[2] * pt[2]) * (1.0 - c);
    let rxp = cross(&r, &pt);
    std::array::from_fn(|i| {
        let big = pt[i] * c + wxp[i] * s + w[i] * tmp;
        nz.select(big, pt[i] + rxp[i])
    })
}

/// The weighted reprojection errors `[2, p]` of cameras `[11, p]` and points `[3, p]` (one
/// column per observation, so each parameter is a contiguous row), weights `[1, p]` and
/// features `[2, p]`.
fn reproj<'b>(cam: Var<'b>, x: Var<'b>, w: Var<'b>, feat: Var<'b>) -> Var<'b> {
    let b = cam.builder();
    let c = |j| row(cam, j);
    let xo = [row(x, 0) - c(3), row(x, 1) - c(4), row(x, 2) - c(5)];
    let xc = rodrigues([c(0), c(1), c(2)], xo);
    let inv_z = xc[2].recip();
    let (u, v) = (xc[0] * inv_z, xc[1] * inv_z);
    let rsq = u * u + v * v;
    let l = 1.0 + c(9) * rsq + c(10) * rsq * rsq;
    let f = c(6);
    let eu = w * (u * l * f + c(7) - row(feat, 0));
    let ev = w * (v * l * f + c(8) - row(feat, 1));
    b.concat(&[eu, ev], 0)
}

fn build(n: usize, m: usize, p: usize, jac: bool) -> Result<crate::Graph, GbError> {
    let b = GraphBuilder::new("ba");
    let cams = b.input("cams", DType::F64, &[n, NCAM]);
    let x = b.input("x", DType::F64, &[m, 3]);
    let w = b.input("w", DType::F64, &[p]);
    let feats = b.input("feats", DType::F64, &[p, 2]);
    let obs = b.input("obs", DType::F64, &[p, 2]).mt();
    let cam_idx = row(obs, 0).reshape(&[p]);
    let pt_idx = row(obs, 1).reshape(&[p]);
    let cam_p = cams.mt().gather(cam_idx.cast(DType::I32), 1); // [11, p]
    let x_p = x.mt().gather(pt_idx.cast(DType::I32), 1); // [3, p]
    let wp = w.reshape(&[1, p]);
    let err = reproj(cam_p, x_p, wp, feats.mt());
    if !jac {
        let w_err = 1.0 - w * w;
        return Ok(b
            .finish(&[("reproj_err", err.mt()), ("w_err", w_err)])
            .map_err(crate::Error::from)?);
    }
    // Row r of every observation's block at once: reverse mode seeded with the unit vector of
    // error component r, both rows on a leading batch axis.
    let seed = b
        .constant(Tensor::from_f64(vec![2, 2, 1], vec![1.0, 0.0, 0.0, 1.0]))
        .broadcast_to(&[2, 2, p]);
    let g = b.vjp_batched(&[err], &[cam_p, x_p, wp], &[seed], 2)?; // [2, 11 | 3 | 1, p]
    let vals = b.concat(&[g[0], g[1], g[2]], 1).transpose(&[2, 0, 1]); // [p, 2, 15]
    let cols = columns(cam_idx, pt_idx, n, m);
    let w_vals = w * -2.0;
    let w_cols = b.iota(DType::F64, &[p], 0) + (NCAM * n + 3 * m) as f64;
    Ok(b.finish(&[
        ("vals", vals),
        ("cols", cols),
        ("w_vals", w_vals),
        ("w_cols", w_cols),
    ])
    .map_err(crate::Error::from)?)
}

/// The column of each value of the `[p, 2, 15]` blocks: `11·cam + j`, then
/// `11n + 3·point + j`, then `11n + 3m + i` for observation `i`, the same for both rows.
fn columns<'b>(cam_idx: Var<'b>, pt_idx: Var<'b>, n: usize, m: usize) -> Var<'b> {
    let b = cam_idx.builder();
    let p = cam_idx.shape()[0];
    let cam = cam_idx.reshape(&[p, 1]) * NCAM as f64 + b.iota(DType::F64, &[1, NCAM], 1);
    let pt = pt_idx.reshape(&[p, 1]) * 3.0 + b.iota(DType::F64, &[1, 3], 1) + (NCAM * n) as f64;
    let obs = b.iota(DType::F64, &[p, 1], 0) + (NCAM * n + 3 * m) as f64;
    let row = b.concat(&[cam, pt, obs], 1); // [p, 15]
    row.reshape(&[p, 1, NDIR]).broadcast_to(&[p, 2, NDIR])
}
