//! `lstm`: ADBench's LSTM (diagonal weights) over a character sequence: the mean negative
//! log-likelihood of each next character (`objective`) and its gradient with respect to
//! `main_params` and `extra_params`, flattened row-major and concatenated (`jacobian`).
//!
//! The time loop runs as a wavefront: at wave `w` layer `i` processes time `w − i`, so all
//! layers advance together on `[l, b]` tensors, about 33 nodes per wave with the top layer's
//! scoring, instead of that many per layer and time step. The waves in which every layer is
//! active are one `scan` (its body built once, whatever `c` is); the `l − 1` partial waves at
//! each end are unrolled.

use super::{GbError, Task, Value, infallible, scalar, unknown_function};
use crate::{DType, GraphBuilder, Var};

/// The most values on the gradient's tape (the `[l, b]` states `h` and `cell` of every wave,
/// `2·l·b·(c + l)` of them, 8 bytes each): 1 GiB.
pub const MAX_TAPE: usize = 1 << 27;

/// Prepares `objective` or `jacobian` on `{main_params, extra_params, state, sequence}`.
///
/// # Errors
/// An unknown function, missing or ragged matrices, sizes that disagree (`main_params` is
/// `[2l, 4b]`, `extra_params` `[3, b]`, `state` `[2l, b]`, `sequence` `[c, b]`, `c ≥ 2`), or
/// for `jacobian` a tape of more than [`MAX_TAPE`] values.
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
    let tape = (2 * l * b).saturating_mul(c + l);
    if grad && tape > MAX_TAPE {
        return Err(GbError::TooLarge(format!(
            "lstm: the gradient's tape would hold 2·l·b·(c + l) = {tape} values for l = {l}, \
             b = {b}, c = {c}; at most {MAX_TAPE} are supported"
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

/// The weights every wave reads: per gate (forget, input, output, change) the `[l, b]`
/// weights and biases, and the output layer's `[1, b]` weight and bias.
#[derive(Clone, Copy)]
struct Weights<'g> {
    w: [Var<'g>; 4],
    bias: [Var<'g>; 4],
    out_w: Var<'g>,
    out_b: Var<'g>,
}

impl<'g> Weights<'g> {
    fn list(&self) -> Vec<Var<'g>> {
        let mut v = self.w.to_vec();
        v.extend(self.bias);
        v.extend([self.out_w, self.out_b]);
        v
    }

    fn from_list(v: &[Var<'g>]) -> Weights<'g> {
        Weights {
            w: [v[0], v[1], v[2], v[3]],
            bias: [v[4], v[5], v[6], v[7]],
            out_w: v[8],
            out_b: v[9],
        }
    }
}

/// The inputs `main_params` and `extra_params`, and the loss.
///
/// The waves in which every layer is active (`l − 1 ≤ w < c − 1`) are one `scan`, built once;
/// the `l − 1` partial waves before and after it are unrolled.
fn loss<'g>(g: &'g GraphBuilder, l: usize, b: usize, c: usize) -> [Var<'g>; 3] {
    let main = g.input("main_params", DType::F64, &[2 * l, 4 * b]);
    let extra = g.input("extra_params", DType::F64, &[3, b]);
    let state = g.input("state", DType::F64, &[2 * l, b]);
    let seq = g.input("sequence", DType::F64, &[c, b]);
    let main4 = main.reshape(&[l, 2, 4, b]);
    let rows = |m: Var<'g>, lo: usize, hi: usize| -> Var<'g> { m.slice(&[lo, 0], &[hi, b]) };
    let wt = Weights {
        w: [0, 1, 2, 3].map(|k| gate(main4, 0, k)),
        bias: [0, 1, 2, 3].map(|k| gate(main4, 1, k)),
        out_w: rows(extra, 1, 2),
        out_b: rows(extra, 2, 3),
    };
    let st = state.reshape(&[l, 2, b]);
    let mut h = st.slice(&[0, 0, 0], &[l, 1, b]).reshape(&[l, b]);
    let mut cell = st.slice(&[0, 1, 0], &[l, 2, b]).reshape(&[l, b]);
    let steps = c - 1;
    let xs = rows(seq, 0, steps) * rows(extra, 0, 1); // layer 0's inputs, [c-1, b]
    let mut total = g.scalar(DType::F64, 0.0);
    let waves = steps + l - 1;
    // The full waves w in l-1..steps, if any.
    let (full_lo, full_hi) = if steps >= l {
        (l - 1, steps)
    } else {
        (waves, waves)
    };
    let unrolled = |w: usize, h: &mut Var<'g>, cell: &mut Var<'g>, total: &mut Var<'g>| {
        let lo = (w + 1).saturating_sub(steps);
        let hi = l.min(w + 1);
        let x0 = (lo == 0).then(|| rows(xs, w, w + 1));
        // The top layer's output at time t = w - (l - 1) is scored against character t + 1.
        let gold = (hi == l).then(|| rows(seq, w + 2 - l, w + 3 - l));
        let (h2, c2, term) = wave(&wt, *h, *cell, x0, gold, lo, hi);
        (*h, *cell) = (h2, c2);
        if let Some(t) = term {
            *total = *total + t;
        }
    };
    for w in 0..full_lo {
        unrolled(w, &mut h, &mut cell, &mut total);
    }
    if full_hi > full_lo {
        let n = full_hi - full_lo;
        let x0s = rows(xs, full_lo, full_hi);
        let golds = rows(seq, full_lo + 2 - l, full_hi + 2 - l);
        let out = g.scan(n, &[h, cell, total], &[x0s, golds], &wt.list(), |_, st| {
            let wt = Weights::from_list(&st.consts);
            let x0 = st.x[0].reshape(&[1, b]);
            let gold = st.x[1].reshape(&[1, b]);
            let (h, cell, term) = wave(&wt, st.carry[0], st.carry[1], Some(x0), Some(gold), 0, l);
            let total = st.carry[2] + term.unwrap_or(st.carry[2] * 0.0);
            (vec![h, cell, total], Vec::new())
        });
        [h, cell, total] = [out.carry[0], out.carry[1], out.carry[2]];
    }
    for w in full_hi..waves {
        unrolled(w, &mut h, &mut cell, &mut total);
    }
    [main, extra, total * (-1.0 / (steps * b) as f64)]
}

/// One wave on the active layers `lo..hi` of the `[l, b]` states `h` and `cell`: layer 0
/// reads `x0` (`[1, b]`, when `lo = 0`), layer `i > 0` layer `i − 1`'s `h`. Returns the new
/// states and, when the top layer is active, its log-likelihood of `gold` (`[1, b]`).
fn wave<'g>(
    wt: &Weights<'g>,
    h: Var<'g>,
    cell: Var<'g>,
    x0: Option<Var<'g>>,
    gold: Option<Var<'g>>,
    lo: usize,
    hi: usize,
) -> (Var<'g>, Var<'g>, Option<Var<'g>>) {
    let g = h.builder();
    let (l, b) = (h.shape()[0], h.shape()[1]);
    let mut ins = Vec::with_capacity(2);
    ins.extend(x0);
    let from = lo.max(1);
    if hi > from {
        ins.push(h.slice(&[from - 1, 0], &[hi - 1, b]));
    }
    let x = if ins.len() == 1 {
        ins[0]
    } else {
        g.concat(&ins, 0)
    };
    let all = lo == 0 && hi == l;
    let rows = |v: Var<'g>| -> Var<'g> { if all { v } else { v.slice(&[lo, 0], &[hi, b]) } };
    let [wf, wi, wo, wc] = wt.w;
    let [bf, bi, bo, bc] = wt.bias;
    let (hh, cc) = (rows(h), rows(cell));
    let forget = (x * rows(wf) + rows(bf)).sigmoid();
    let ingate = (hh * rows(wi) + rows(bi)).sigmoid();
    let outgate = (x * rows(wo) + rows(bo)).sigmoid();
    let change = (hh * rows(wc) + rows(bc)).tanh();
    let c_new = cc * forget + ingate * change;
    let h_new = outgate * c_new.tanh();
    let term = gold.map(|gold| {
        let ypred = h_new.slice(&[hi - lo - 1, 0], &[hi - lo, b]) * wt.out_w + wt.out_b;
        let lse = (ypred.exp().sum() + 2.0).log();
        (gold * (ypred - lse)).sum()
    });
    if all {
        (h_new, c_new, term)
    } else {
        (splice(h, h_new, lo, hi), splice(cell, c_new, lo, hi), term)
    }
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
