//! `ht`: hand tracking. A skinned hand model is posed by 26 parameters `theta` (global
//! rotation and translation, then the finger joints' angles); `objective` is the difference
//! between each measured point and its corresponding model point, `jacobian` its dense
//! derivative with respect to `theta` (and, in the "complicated" variant, the barycentric
//! coordinates `us` that place each model point on a triangle).
//!
//! Structure, not scalars: the per-bone Euler angles are one `gather` from `theta`, the
//! bones' rotations one batched `[bones, 3, 3]` product `R_z R_y R_x`, their posed relative
//! transforms one batched matmul. Only the kinematic chain (each bone's absolute transform is
//! its parent's times its own relative) is a loop over the bones. Skinning is a matmul of the
//! vertex weights `[vertices, bones]` with the bones' `[bones, 3×4]` transforms, contracted with
//! the homogeneous base positions; the correspondences are a `gather` of the posed vertices
//! (simple) or of each triangle's three vertices (complicated). Only the vertices some point
//! uses are skinned (their weights and positions gathered first), which at the eval's smaller
//! sizes is a small fraction of the model's 10⁴ vertices.
//!
//! The Jacobian: the errors are linear in the posed vertices, so forward mode (the 26
//! directions of `theta` on a leading batch axis) runs only to the used vertices, whose
//! `[vertices, 3, 26]` Jacobian is gathered per point and, in the complicated variant, mixed
//! with the barycentric weights; its two `us` columns (each error depends only on its own
//! point's `u`, as the reference tool reports them) are differences of triangle corners.

use super::{GbError, Task, Value, infallible, list, unknown_function};
use crate::{DType, GraphBuilder, Tensor, Var};

/// Pose parameters.
const NTHETA: usize = 26;
/// Bones the fixed pose layout addresses (`to_pose_params` in GradBench's reference).
const MIN_BONES: usize = 22;

/// The model and data sizes that, with the bone tree, fix the graph.
#[derive(Clone, Debug)]
struct Dims {
    bones: usize,
    verts: usize,
    /// Vertices some point uses.
    used: usize,
    points: usize,
    parents: Vec<Option<usize>>,
    mirrored: bool,
    complicated: bool,
}

/// Prepares `objective` or `jacobian` on the eval's input object.
///
/// # Errors
/// An unknown function, a missing field, arrays whose sizes disagree, a parent that is not an
/// earlier bone, or a correspondence or triangle vertex out of range.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let jac = match function {
        "objective" => false,
        "jacobian" => true,
        f => return Err(unknown_function("ht", f, &["objective", "jacobian"])),
    };
    let theta = input.list_field("theta")?;
    if theta.len() != NTHETA {
        return Err(bad(format!(
            "`theta` has {} numbers, expected {NTHETA}",
            theta.len()
        )));
    }
    let data = input.field("data")?;
    let model = data.field("model")?;
    let parents = parents(&model.list_field("parents")?)?;
    let bones = parents.len();
    let rel = transforms(model, "base_relatives", bones)?;
    let inv = transforms(model, "inverse_base_absolutes", bones)?;
    let (verts, base_pos) = sized(model, "base_positions", None, 4)?;
    let (_, weights) = sized(model, "weights", Some(verts), bones)?;
    let (points, pts) = sized(data, "points", None, 3)?;
    let corr = indices(&data.list_field("correspondences")?, "correspondences")?;
    if corr.len() != points {
        return Err(bad(format!(
            "{} correspondences for {points} points",
            corr.len()
        )));
    }
    let us = match input.field("us") {
        Ok(_) => input.matrix_field("us")?,
        Err(_) => (0, 0, Vec::new()),
    };
    let complicated = us.0 != 0;
    let mut inputs = vec![theta, rel, inv, base_pos, weights, pts];
    let targets = if complicated {
        if us.0 != points || us.1 != 2 {
            return Err(bad(format!(
                "`us` is {} x {}, expected {points} x 2",
                us.0, us.1
            )));
        }
        let (ntri, tri) = sized(model, "triangles", None, 3)?;
        let tri = indices(&tri, "triangles")?;
        check_range(&tri, verts, "a triangle's vertex")?;
        check_range(&corr, ntri, "a correspondence (a triangle)")?;
        inputs.push(us.2);
        corr.iter()
            .flat_map(|&c| tri[3 * c..3 * c + 3].to_vec())
            .collect()
    } else {
        check_range(&corr, verts, "a correspondence (a vertex)")?;
        corr
    };
    // Only the vertices some point uses are skinned: their sorted list is an input, and the
    // corners index into it.
    let mut used = targets.clone();
    used.sort_unstable();
    used.dedup();
    let mut slot = vec![0; verts];
    for (k, &v) in used.iter().enumerate() {
        slot[v] = k;
    }
    inputs.push(targets.iter().map(|&v| slot[v] as f64).collect());
    let nused = used.len();
    inputs.push(used.into_iter().map(|v| v as f64).collect());
    let dims = Dims {
        bones,
        verts,
        used: nused,
        points,
        mirrored: model.flag("is_mirrored")?,
        parents,
        complicated,
    };
    let ncols = NTHETA + if complicated { 2 } else { 0 };
    let key = format!(
        "ht/{function}/complicated={complicated},bones={bones},verts={verts},used={nused},\
         points={points},mirrored={},parents={:?}",
        dims.mirrored, dims.parents
    );
    Ok(Task {
        key,
        inputs,
        build: Box::new(move || build(&dims, jac)),
        decode: infallible(move |outs| {
            if jac {
                Value::rows(outs.first().map_or(&[][..], Vec::as_slice), ncols)
            } else {
                list(outs)
            }
        }),
    })
}

fn bad(msg: String) -> GbError {
    GbError::Input(format!("ht: {msg}"))
}

/// Parents as earlier bones (`-1` for a root).
fn parents(raw: &[f64]) -> Result<Vec<Option<usize>>, GbError> {
    if raw.len() < MIN_BONES {
        return Err(bad(format!(
            "{} bones, the pose layout needs at least {MIN_BONES}",
            raw.len()
        )));
    }
    raw.iter()
        .enumerate()
        .map(|(i, &p)| {
            if p == -1.0 {
                Ok(None)
            } else if p >= 0.0 && p.fract() == 0.0 && (p as usize) < i {
                Ok(Some(p as usize))
            } else {
                Err(bad(format!(
                    "bone {i} has parent {p}, expected -1 or an earlier bone"
                )))
            }
        })
        .collect()
}

/// Non-negative integer indices.
fn indices(raw: &[f64], what: &str) -> Result<Vec<usize>, GbError> {
    raw.iter()
        .map(|&x| {
            if x >= 0.0 && x.fract() == 0.0 && x <= f64::from(i32::MAX) {
                Ok(x as usize)
            } else {
                Err(bad(format!("`{what}` holds {x}, expected an index")))
            }
        })
        .collect()
}

fn check_range(idx: &[usize], n: usize, what: &str) -> Result<(), GbError> {
    match idx.iter().find(|&&i| i >= n) {
        Some(i) => Err(bad(format!("{what} is {i}, expected below {n}"))),
        None => Ok(()),
    }
}

/// A `rows x cols` matrix field (`rows` free when `None`): its row count and row-major data.
fn sized(
    v: &Value,
    name: &str,
    rows: Option<usize>,
    cols: usize,
) -> Result<(usize, Vec<f64>), GbError> {
    let (r, c, flat) = v.matrix_field(name)?;
    if c != cols || rows.is_some_and(|rows| rows != r) || r == 0 {
        let want = rows.map_or("n".to_string(), |r| r.to_string());
        return Err(bad(format!(
            "`{name}` is {r} x {c}, expected {want} x {cols} (n >= 1)"
        )));
    }
    Ok((r, flat))
}

/// `bones` row-major 4×4 matrices.
fn transforms(model: &Value, name: &str, bones: usize) -> Result<Vec<f64>, GbError> {
    let Value::Array(ms) = model.field(name)? else {
        return Err(bad(format!("`{name}` is not an array of matrices")));
    };
    if ms.len() != bones {
        return Err(bad(format!(
            "`{name}` has {} matrices for {bones} bones",
            ms.len()
        )));
    }
    let mut flat = Vec::with_capacity(16 * bones);
    for (i, m) in ms.iter().enumerate() {
        let one = Value::Object(vec![("m".into(), m.clone())]);
        let (r, c, f) = one.matrix_field("m")?;
        if (r, c) != (4, 4) {
            return Err(bad(format!("`{name}`[{i}] is {r} x {c}, expected 4 x 4")));
        }
        flat.extend(f);
    }
    Ok(flat)
}

/// For each bone and Euler angle, the index into `theta` (or `NTHETA`, a zero) that
/// GradBench's `to_pose_params` puts there: bone `b` reads pose column `b + 3`; each finger
/// `f` has columns `5 + 4f` (two angles), `6 + 4f` and `7 + 4f` (one each) from `theta[6..]`
/// in order, and every other angle is zero.
fn pose_table(bones: usize) -> Vec<i32> {
    let mut table = vec![NTHETA as i32; bones * 3];
    let mut t = 6;
    for finger in 0..5 {
        let bone = 2 + 4 * finger;
        for (j, angles) in [2, 1, 1].into_iter().enumerate() {
            for a in 0..angles {
                table[(bone + j) * 3 + a] = t;
                t += 1;
            }
        }
    }
    table
}

/// `[n, 3, 3]` from nine `[n, 1]` entries in row-major order.
fn mat3<'b>(entries: &[Var<'b>; 9]) -> Var<'b> {
    let n = entries[0].shape()[0];
    entries[0].builder().concat(entries, 1).reshape(&[n, 3, 3])
}

/// The bones' rotations `R_z(a₁) R_y(a₂) R_x(a₀)` from their angles `[n, 3]`.
fn euler(angles: Var<'_>) -> Var<'_> {
    let b = angles.builder();
    let n = angles.shape()[0];
    let a = |j| angles.slice(&[0, j], &[n, j + 1]);
    let (zero, one) = (
        b.zeros(DType::F64, &[n, 1]),
        b.zeros(DType::F64, &[n, 1]) + 1.0,
    );
    let (cx, sx) = (a(0).cos(), a(0).sin());
    let (cy, sy) = (a(2).cos(), a(2).sin());
    let (cz, sz) = (a(1).cos(), a(1).sin());
    let rx = mat3(&[one, zero, zero, zero, cx, -sx, zero, sx, cx]);
    let ry = mat3(&[cy, zero, sy, zero, one, zero, -sy, zero, cy]);
    let rz = mat3(&[cz, -sz, zero, sz, cz, zero, zero, zero, one]);
    rz.matmul(ry).matmul(rx)
}

/// The global rotation `[3, 3]` of the angle-axis vector `aa` `[3]`; the identity when its
/// norm is below 1e-4, as in the reference.
fn angle_axis(aa: Var<'_>) -> Var<'_> {
    let sq = (aa * aa).sum().reshape(&[1, 1]);
    let small = sq.sqrt().lt(sq.scalar_like(1e-4));
    let norm = small.select(sq.scalar_like(1.0), sq.sqrt());
    let u = aa.reshape(&[1, 3]) / norm;
    let (x, y, z) = (
        u.slice(&[0, 0], &[1, 1]),
        u.slice(&[0, 1], &[1, 2]),
        u.slice(&[0, 2], &[1, 3]),
    );
    let (s, c) = (norm.sin(), norm.cos());
    let d = 1.0 - c;
    let r = mat3(&[
        x * x + (1.0 - x * x) * c,
        x * y * d - z * s,
        x * z * d + y * s,
        x * y * d + z * s,
        y * y + (1.0 - y * y) * c,
        y * z * d - x * s,
        x * z * d - y * s,
        z * y * d + x * s,
        z * z + (1.0 - z * z) * c,
    ])
    .reshape(&[3, 3]);
    let eye = aa.builder().constant(Tensor::from_f64(
        vec![3, 3],
        vec![1., 0., 0., 0., 1., 0., 0., 0., 1.],
    ));
    small.reshape(&[1, 1]).broadcast_to(&[3, 3]).select(eye, r)
}

/// The posed, skinned vertices `[used, 3]` (of the `[used, 4]` positions and `[used, bones]`
/// weights) before the global transform.
fn skin<'b>(
    dims: &Dims,
    theta: Var<'b>,
    rel: Var<'b>,
    inv: Var<'b>,
    pos: Var<'b>,
    w: Var<'b>,
) -> Var<'b> {
    let b = theta.builder();
    let (nb, nv) = (dims.bones, dims.used);
    let padded = b.concat(&[theta, b.zeros(DType::F64, &[1])], 0);
    let table = b.constant(Tensor::from_i32(vec![nb, 3], pose_table(nb)));
    let rot = euler(padded.gather(table, 0)); // [nb, 3, 3]
    // The posed relative is base_relative · [[R, 0], [0, 1]].
    let posed = b.concat(
        &[
            rel.slice(&[0, 0, 0], &[nb, 4, 3]).matmul(rot),
            rel.slice(&[0, 0, 3], &[nb, 4, 4]),
        ],
        2,
    );
    let mut abs: Vec<Var<'b>> = Vec::with_capacity(nb);
    for (i, parent) in dims.parents.iter().enumerate() {
        let own = posed.slice(&[i, 0, 0], &[i + 1, 4, 4]).reshape(&[4, 4]);
        abs.push(match parent {
            None => own,
            Some(p) => abs[*p].matmul(own),
        });
    }
    let abs: Vec<Var<'b>> = abs.into_iter().map(|a| a.reshape(&[1, 4, 4])).collect();
    let bone = b.concat(&abs, 0).matmul(inv); // [nb, 4, 4]
    let bone = bone.slice(&[0, 0, 0], &[nb, 3, 4]).reshape(&[nb, 12]);
    let blended = w.matmul(bone).reshape(&[nv, 3, 4]);
    let out = (blended * pos.reshape(&[nv, 1, 4])).sum_axes(&[2]);
    if dims.mirrored {
        out * b.constant(Tensor::from_f64(vec![1, 3], vec![-1.0, 1.0, 1.0]))
    } else {
        out
    }
}

fn build(dims: &Dims, jac: bool) -> Result<crate::Graph, GbError> {
    let (nb, nv, np) = (dims.bones, dims.verts, dims.points);
    let b = GraphBuilder::new("ht");
    let theta = b.input("theta", DType::F64, &[NTHETA]);
    let rel = b.input("base_relatives", DType::F64, &[nb, 4, 4]);
    let inv = b.input("inverse_base_absolutes", DType::F64, &[nb, 4, 4]);
    let pos = b.input("base_positions", DType::F64, &[nv, 4]);
    let w = b.input("weights", DType::F64, &[nv, nb]);
    let pts = b.input("points", DType::F64, &[np, 3]);
    let us = dims
        .complicated
        .then(|| b.input("us", DType::F64, &[np, 2]));
    let idx_shape: &[usize] = if dims.complicated { &[np, 3] } else { &[np] };
    let idx = b.input("corners", DType::F64, idx_shape).cast(DType::I32);
    let used = b.input("used", DType::F64, &[dims.used]).cast(DType::I32);
    let (pos, w) = (pos.gather(used, 0), w.gather(used, 0));

    let local = skin(dims, theta, rel, inv, pos, w);
    let r = angle_axis(theta.slice(&[0], &[3]));
    let posed = local.matmul(r.mt()) + theta.slice(&[3], &[6]).reshape(&[1, 3]); // [nv, 3]
    // The complicated variant's triangle corners `[np, 3 corners, 3]` and barycentric weights
    // `[np, 3 corners, 1]`.
    let tri = us.map(|us| {
        let u0 = us.slice(&[0, 0], &[np, 1]);
        let u1 = us.slice(&[0, 1], &[np, 2]);
        let bary = b.concat(&[u0, u1, 1.0 - u0 - u1], 1).reshape(&[np, 3, 1]);
        (posed.gather(idx, 0), bary)
    });
    let model_pts = match tri {
        None => posed.gather(idx, 0), // [np, 3]
        Some((corners, bary)) => (corners * bary).sum_axes(&[1]),
    };
    let err = (pts - model_pts).reshape(&[np * 3]);
    if !jac {
        return Ok(b.finish(&[("err", err)]).map_err(crate::Error::from)?);
    }
    // The errors are linear in the posed vertices, so their Jacobian is the vertices' Jacobian
    // (forward mode, the 26 directions on the batch axis, only for the used vertices) gathered
    // per point, negated, and in the complicated variant mixed with the barycentric weights.
    let mut eye = vec![0.0; NTHETA * NTHETA];
    for j in 0..NTHETA {
        eye[j * NTHETA + j] = 1.0;
    }
    let eye = b.constant(Tensor::from_f64(vec![NTHETA, NTHETA], eye));
    let dv = b.jvp_batched(&[posed], &[theta], &[eye], NTHETA)?[0]; // [26, nv, 3]
    let dv = dv.transpose(&[1, 2, 0]); // [nv, 3, 26]: one contiguous row per coordinate
    let jac = match tri {
        None => -dv.gather(idx, 0), // [np, 3, 26]
        Some((corners, bary)) => {
            let dc = dv.gather(idx, 0); // [np, 3 corners, 3, 26]
            let d_theta = -(dc * bary.reshape(&[np, 3, 1, 1])).sum_axes(&[1]);
            // ∂err/∂u₀ = v₂ − v₀ and ∂err/∂u₁ = v₂ − v₁ (each point's own `u` only).
            let c = |k: usize| {
                corners
                    .slice(&[0, k, 0], &[np, k + 1, 3])
                    .reshape(&[np, 3, 1])
            };
            b.concat(&[c(2) - c(0), c(2) - c(1), d_theta], 2)
        }
    };
    let k = jac.shape()[2];
    Ok(b.finish(&[("jacobian", jac.reshape(&[np * 3, k]))])
        .map_err(crate::Error::from)?)
}
