//! `lstm`: ADBench's LSTM (diagonal weights) over a character sequence: the mean negative
//! log-likelihood of each next character (`objective`) and its gradient with respect to
//! `main_params` and `extra_params`, flattened row-major and concatenated (`jacobian`).
//!
//! The time loop is unrolled as a wavefront: at wave `w` layer `i` processes time `w − i`, so
//! all layers advance together on `[l, b]` tensors and the graph has about 33 nodes per wave
//! (`c + l − 2` waves), the top layer's scoring included, instead of that many per layer and
//! time step. Each wave scores its own time step (stacking all steps first would make one
//! `concat` of `c` pieces, which cuts every loop reading it into `c` pieces in the JIT).

use super::{GbError, Task, Value, infallible, scalar, unknown_function};
use crate::{DType, GraphBuilder, Var};

/// The most forward waves (`c + l`) unrolled into one graph: about 33 nodes each, so 20 000
/// waves are about 660 000 forward nodes, beyond which building and compiling the
/// unrolled graph takes longer than is reasonable.
pub const MAX_WAVES: usize = 20_000;

/// Prepares `objective` or `jacobian` on `{main_params, extra_params, state, sequence}`.
///
/// # Errors
/// An unknown function, missing or ragged matrices, sizes that disagree (`main_params` is
/// `[2l, 4b]`, `extra_params` `[3, b]`, `state` `[2l, b]`, `sequence` `[c, b]`, `c ≥ 2`), or
/// more than [`MAX_WAVES`] waves.
pub fn prepare(function: &str, input: &Value) -> Result<Task, GbError> {
    let grad = match function {
        "objective" => false,
        "jacobian" => true,
        f => return Err(unknown_function("lstm", f, &["objective", "jacobian"])),
    };
    let (l2, b4, main) = input.matrix_field("main_params")?;
    let (e3, eb, extra) = input.matrix_field("extra_params")?;
    let (s2, sb, state) = input.matrix_field("state")?;
    let (c, cb, seq) = input.matrix_field("sequence")?;
    let (l, b) = (l2 / 2, b4 / 4);
    let sizes_ok = l >= 1 && b >= 1 && l2 == 2 * l && b4 == 4 * b;
    if !sizes_ok || e3 != 3 || eb != b || s2 != l2 || sb != b || cb != b || c < 2 {
        return Err(GbError::Input(format!(
            "lstm: expected main_params [2l, 4b], extra_params [3, b], state [2l, b], sequence \
             [c, b] with l, b >= 1 and c >= 2; got {l2} x {b4}, {e3} x {eb}, {s2} x {sb}, \
             {c} x {cb}"
        )));
    }
    if c + l > MAX_WAVES {
        return Err(GbError::TooLarge(format!(
            "lstm: c = {c} characters and l = {l} layers unroll into {} waves; at most \
             {MAX_WAVES} are supported until graphs have loops",
            c + l
        )));
    }
    Ok(Task {
        key: format!("lstm/{function}/l={l},b={b},c={c}"),
        inputs: vec![main, extra, state, seq],
        build: Box::new(move || build(l, b, c, grad)),
        decode: infallible(move |outs| {
            if grad {
                Value::list(outs.concat())
            } else {
                scalar(&outs)
            }
        }),
    })
}

/// One gate's `[l, b]` weights or biases: columns `gate·b .. (gate+1)·b` of every other row
/// of `main_params` starting at `row` (0: weights, 1: biases).
fn gate<'b>(main4: Var<'b>, row: usize, gate: usize) -> Var<'b> {
    let (l, b) = (main4.shape()[0], main4.shape()[3]);
    main4
        .slice(&[0, row, gate, 0], &[l, row + 1, gate + 1, b])
        .reshape(&[l, b])
}

fn build(l: usize, b: usize, c: usize, grad: bool) -> Result<crate::Graph, GbError> {
    let g = GraphBuilder::new("lstm");
    let [main, extra, loss] = loss(&g, l, b, c);
    if grad {
        let d = g.grad(loss, &[main, extra])?;
        let outs = [("d_main", d[0]), ("d_extra", d[1])];
        Ok(g.finish(&outs).map_err(crate::Error::from)?)
    } else {
        Ok(g.finish(&[("loss", loss)]).map_err(crate::Error::from)?)
    }
}

/// The inputs `main_params` and `extra_params`, and the loss.
fn loss<'g>(g: &'g GraphBuilder, l: usize, b: usize, c: usize) -> [Var<'g>; 3] {
    let main = g.input("main_params", DType::F64, &[2 * l, 4 * b]);
    let extra = g.input("extra_params", DType::F64, &[3, b]);
    let state = g.input("state", DType::F64, &[2 * l, b]);
    let seq = g.input("sequence", DType::F64, &[c, b]);
    let main4 = main.reshape(&[l, 2, 4, b]);
    let [wf, wi, wo, wc] = [0, 1, 2, 3].map(|k| gate(main4, 0, k));
    let [bf, bi, bo, bc] = [0, 1, 2, 3].map(|k| gate(main4, 1, k));
    let row = |m: Var<'g>, r: usize| -> Var<'g> { m.slice(&[r, 0], &[r + 1, b]) };
    let (in_w, out_w, out_b) = (row(extra, 0), row(extra, 1), row(extra, 2));
    let st = state.reshape(&[l, 2, b]);
    let mut h = st.slice(&[0, 0, 0], &[l, 1, b]).reshape(&[l, b]);
    let mut cell = st.slice(&[0, 1, 0], &[l, 2, b]).reshape(&[l, b]);
    let steps = c - 1;
    let xs = seq.slice(&[0, 0], &[steps, b]) * in_w; // layer 0's inputs, [c-1, b]
    let mut total: Option<Var<'g>> = None;
    for w in 0..steps + l - 1 {
        // Active layers: lo..hi, those with 0 <= w - i < steps.
        let lo = (w + 1).saturating_sub(steps);
        let hi = l.min(w + 1);
        let mut ins = Vec::with_capacity(2);
        if lo == 0 {
            ins.push(row(xs, w));
        }
        let from = lo.max(1);
        if hi > from {
            ins.push(h.slice(&[from - 1, 0], &[hi - 1, b]));
        }
        let x = if ins.len() == 1 {
            ins[0]
        } else {
            g.concat(&ins, 0)
        };
        let rows = |v: Var<'g>| -> Var<'g> {
            if lo == 0 && hi == l {
                v
            } else {
                v.slice(&[lo, 0], &[hi, b])
            }
        };
        let (hh, cc) = (rows(h), rows(cell));
        let forget = (x * rows(wf) + rows(bf)).sigmoid();
        let ingate = (hh * rows(wi) + rows(bi)).sigmoid();
        let outgate = (x * rows(wo) + rows(bo)).sigmoid();
        let change = (hh * rows(wc) + rows(bc)).tanh();
        let c_new = cc * forget + ingate * change;
        let h_new = outgate * c_new.tanh();
        if hi == l {
            // The top layer's output at time t = w - (l - 1), scored against character t + 1.
            let t = w + 1 - l;
            let ypred = h_new.slice(&[hi - lo - 1, 0], &[hi - lo, b]) * out_w + out_b;
            let lse = (ypred.exp().sum() + 2.0).log();
            let gold = row(seq, t + 1);
            let term = (gold * (ypred - lse)).sum();
            total = Some(total.map_or(term, |s| s + term));
        }
        (h, cell) = if lo == 0 && hi == l {
            (h_new, c_new)
        } else {
            (splice(h, h_new, lo, hi), splice(cell, c_new, lo, hi))
        };
    }
    let total = total.unwrap_or_else(|| g.scalar(DType::F64, 0.0));
    [main, extra, total * (-1.0 / (steps * b) as f64)]
}

/// `full` with rows `lo..hi` replaced by `part`.
fn splice<'b>(full: Var<'b>, part: Var<'b>, lo: usize, hi: usize) -> Var<'b> {
    let (l, b) = (full.shape()[0], full.shape()[1]);
    let mut pieces = Vec::with_capacity(3);
    if lo > 0 {
        pieces.push(full.slice(&[0, 0], &[lo, b]));
    }
    pieces.push(part);
    if hi < l {
        pieces.push(full.slice(&[hi, 0], &[l, b]));
    }
    if pieces.len() == 1 {
        part
    } else {
        full.builder().concat(&pieces, 0)
    }
}
