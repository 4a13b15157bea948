//! The MLP demo's parts, shared by the `mlp` example, gradlift's `tests/it/mlp.rs` and
//! `benches/mlp.rs` (which include this file with `#[path]`):
//!
//! - data: a synthetic "seven-segment digits" task (ten glyph classes drawn with random shift,
//!   scale, slant, stroke width, ink, segment dropout, a stray stroke and pixel noise), and a
//!   reader for MNIST's IDX files;
//! - the model: a multilayer perceptron `dim → hidden (ReLU) → classes` with softmax
//!   cross-entropy;
//! - the training-step graph: forward, backward (`GraphBuilder::grad`) and the optimizer
//!   update (Adam or SGD with momentum) written as graph ops, so one compiled kernel does a
//!   whole step; its data-parallel form ([`data_parallel_step_graph`]), one kernel per rank
//!   with the gradient all-reduce inside;
//! - [`Trainer`], which calls that kernel with reused buffers (swapping the parameter and
//!   optimizer-state buffers between steps), and [`accuracy`].
//!
//! Deliberately absent: any IO besides reading IDX files, and printing (the example does
//! that).
#![allow(dead_code)] // each includer uses a different part

use gradlift::comm::{Communicator, SingleProcess};
use gradlift::jit::{Buf, BufMut, JitConfig, Kernel, Workspace};
use gradlift::{DType, Graph, GraphBuilder, Var};
use std::path::Path;

/// Side of the square images.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const DIM: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

// ---- random numbers ------------------------------------------------------------------------

/// splitmix64: small, seedable, good enough for data and initialization.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Approximately standard normal: the Irwin-Hall sum of four 16-bit uniforms from one
    /// draw, scaled to unit variance (cheap; bounded by ±3.46).
    pub fn normal(&mut self) -> f64 {
        let r = self.next_u64();
        let sum: f64 = (0..4)
            .map(|k| f64::from((r >> (16 * k)) as u16) / 65536.0)
            .sum();
        (sum - 2.0) * 3f64.sqrt()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

// ---- data ----------------------------------------------------------------------------------

/// Images (row-major, `n × dim`, values in [0, 1]) with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub dim: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.dim..(i + 1) * self.dim]
    }

    /// The first `n` examples.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.dim);
    }
}

/// Segment endpoints of a seven-segment glyph in a unit box (x right, y down):
/// a (top), b (top right), c (bottom right), d (bottom), e (bottom left), f (top left),
/// g (middle).
const SEGMENTS: [[f64; 4]; 7] = [
    [0.0, 0.0, 1.0, 0.0],
    [1.0, 0.0, 1.0, 0.5],
    [1.0, 0.5, 1.0, 1.0],
    [0.0, 1.0, 1.0, 1.0],
    [0.0, 0.5, 0.0, 1.0],
    [0.0, 0.0, 0.0, 0.5],
    [0.0, 0.5, 1.0, 0.5],
];

/// Which segments (bit k = segment k of [`SEGMENTS`]) each digit lights.
const DIGITS: [u8; 10] = [
    0b011_1111, // 0: abcdef
    0b000_0110, // 1: bc
    0b101_1011, // 2: abdeg
    0b100_1111, // 3: abcdg
    0b110_0110, // 4: bcfg
    0b110_1101, // 5: acdfg
    0b111_1101, // 6: acdefg
    0b000_0111, // 7: abc
    0b111_1111, // 8: all
    0b110_1111, // 9: abcdfg
];

/// Draws a thick anti-aliased segment into `img` (max with what is there).
fn stroke(img: &mut [f32], (x0, y0, x1, y1): (f64, f64, f64, f64), width: f64, ink: f64) {
    let r = width / 2.0;
    let lo_x = (x0.min(x1) - r - 1.0).floor().max(0.0) as usize;
    let hi_x = ((x0.max(x1) + r + 1.0).ceil().max(0.0) as usize).min(SIDE);
    let lo_y = (y0.min(y1) - r - 1.0).floor().max(0.0) as usize;
    let hi_y = ((y0.max(y1) + r + 1.0).ceil().max(0.0) as usize).min(SIDE);
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len2 = (dx * dx + dy * dy).max(1e-12);
    for py in lo_y..hi_y {
        for px in lo_x..hi_x {
            let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
            let t = (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0);
            let (ex, ey) = (cx - x0 - t * dx, cy - y0 - t * dy);
            let d = (ex * ex + ey * ey).sqrt();
            let v = ((r - d + 0.5).clamp(0.0, 1.0) * ink) as f32;
            let p = &mut img[py * SIDE + px];
            *p = p.max(v);
        }
    }
}

/// `n` synthetic seven-segment digits, balanced over the classes in random order.
///
/// Each glyph gets a random shift (±4 px), scale (0.75-1.25), slant, stroke width (1.3-2.8 px)
/// and ink (0.6-1); each lit segment is dropped with probability 3%, a stray stroke is added
/// with probability 50%, and Gaussian pixel noise (σ = 0.25) is added before clipping to
/// [0, 1]. Several digits differ by one segment (8/0/6/9, 3/9, 1/7), so dropout and shifts
/// make the classes overlap: a linear classifier does clearly worse than an MLP.
pub fn synthetic_digits(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng(seed ^ 0x5EED_D161_7500_0000);
    let mut images = vec![0f32; n * DIM];
    let mut labels: Vec<u8> = (0..n).map(|i| (i % CLASSES) as u8).collect();
    rng.shuffle(&mut labels);
    for (img, &label) in images.chunks_exact_mut(DIM).zip(&labels) {
        let s = rng.range(0.75, 1.25);
        let (w, h) = (10.0 * s, 16.0 * s);
        let (cx, cy) = (14.0 + rng.range(-4.0, 4.0), 14.0 + rng.range(-4.0, 4.0));
        let slant = rng.range(-0.35, 0.35);
        let width = rng.range(1.3, 2.8);
        let ink = rng.range(0.6, 1.0);
        let place = |u: f64, v: f64| {
            let y = cy + (v - 0.5) * h;
            let x = cx + (u - 0.5) * w - slant * (v - 0.5) * h;
            (x, y)
        };
        for (k, seg) in SEGMENTS.iter().enumerate() {
            if DIGITS[label as usize] & (1 << k) == 0 || rng.uniform() < 0.03 {
                continue;
            }
            let (x0, y0) = place(seg[0], seg[1]);
            let (x1, y1) = place(seg[2], seg[3]);
            stroke(img, (x0, y0, x1, y1), width, ink * rng.range(0.8, 1.0));
        }
        if rng.uniform() < 0.5 {
            let (x0, y0) = (rng.range(2.0, 26.0), rng.range(2.0, 26.0));
            let a = rng.range(0.0, std::f64::consts::TAU);
            let l = rng.range(3.0, 8.0);
            let stray = (x0, y0, x0 + l * a.cos(), y0 + l * a.sin());
            stroke(img, stray, rng.range(1.0, 2.0), rng.range(0.3, 0.8));
        }
        for p in img.iter_mut() {
            *p = (f64::from(*p) + 0.25 * rng.normal()).clamp(0.0, 1.0) as f32;
        }
    }
    Dataset {
        images,
        labels,
        dim: DIM,
    }
}

/// Reads an IDX file of unsigned bytes (MNIST's format): a big-endian magic `0 0 8 ndim`,
/// `ndim` big-endian u32 dimensions, then the bytes. Returns (dims, data).
///
/// # Errors
/// A message naming the file if it cannot be read, has another magic or element type, or its
/// size does not match its dimensions.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |what: &str| format!("{}: not an IDX file of bytes: {what}", path.display());
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic number"));
    }
    if bytes[2] != 0x08 {
        return Err(bad("element type is not unsigned byte"));
    }
    let ndim = usize::from(bytes[3]);
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(bad("truncated header"));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("dimensions overflow"))?;
    if bytes.len() - header != count {
        return Err(bad(&format!(
            "dimensions {dims:?} need {count} bytes of data, found {}",
            bytes.len() - header
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// One MNIST split: `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` in `dir`
/// (`prefix` is `train` or `t10k`). Pixels are scaled to [0, 1].
///
/// # Errors
/// A message if a file is missing or malformed, or images and labels disagree.
pub fn read_mnist_split(dir: &Path, prefix: &str) -> Result<Dataset, String> {
    let ipath = dir.join(format!("{prefix}-images-idx3-ubyte"));
    let lpath = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let (idims, pixels) = read_idx(&ipath)?;
    let (ldims, labels) = read_idx(&lpath)?;
    if idims.len() != 3 || idims[1] * idims[2] != DIM {
        return Err(format!(
            "{}: expected n×28×28 images, got {idims:?}",
            ipath.display()
        ));
    }
    if ldims != [idims[0]] {
        return Err(format!(
            "{}: {} labels for {} images",
            lpath.display(),
            ldims.first().copied().unwrap_or(0),
            idims[0]
        ));
    }
    if let Some(l) = labels.iter().find(|&&l| usize::from(l) >= CLASSES) {
        return Err(format!("{}: label {l} is not a digit", lpath.display()));
    }
    Ok(Dataset {
        images: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        labels,
        dim: DIM,
    })
}

// ---- model and graphs ----------------------------------------------------------------------

/// Sizes of the perceptron.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    pub dim: usize,
    pub hidden: usize,
    pub classes: usize,
    /// ReLU after the hidden layer; without it the model is a (factored) linear softmax
    /// classifier, the baseline that shows the task is not linear.
    pub relu: bool,
}

impl Arch {
    /// Shapes of the parameters `w1, b1, w2, b2`.
    pub fn param_shapes(&self) -> [Vec<usize>; 4] {
        [
            vec![self.dim, self.hidden],
            vec![self.hidden],
            vec![self.hidden, self.classes],
            vec![self.classes],
        ]
    }
}

/// Parameter names, in order.
pub const PARAMS: [&str; 4] = ["w1", "b1", "w2", "b2"];

/// The optimizer, applied inside the training-step graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optim {
    /// Adam (PyTorch's form): `m ← β1·m + (1-β1)·g`, `v ← β2·v + (1-β2)·g²`,
    /// `p ← p - lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)`.
    Adam { beta1: f64, beta2: f64, eps: f64 },
    /// SGD with momentum: `u ← μ·u + g`, `p ← p - lr·u`.
    Sgd { momentum: f64 },
}

impl Optim {
    pub const ADAM: Optim = Optim::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    pub const SGD: Optim = Optim::Sgd { momentum: 0.9 };

    /// Optimizer-state tensors per parameter.
    pub fn slots(&self) -> usize {
        match self {
            Optim::Adam { .. } => 2,
            Optim::Sgd { .. } => 1,
        }
    }
}

/// He-uniform weights for the ReLU layer, Glorot-uniform for the output layer, zero biases:
/// `w1, b1, w2, b2` as flat row-major vectors.
pub fn init_params(arch: Arch, rng: &mut Rng) -> Vec<Vec<f32>> {
    let uniform = |n: usize, a: f64, rng: &mut Rng| -> Vec<f32> {
        (0..n).map(|_| rng.range(-a, a) as f32).collect()
    };
    let a1 = (6.0 / arch.dim as f64).sqrt();
    let a2 = (6.0 / (arch.hidden + arch.classes) as f64).sqrt();
    vec![
        uniform(arch.dim * arch.hidden, a1, rng),
        vec![0.0; arch.hidden],
        uniform(arch.hidden * arch.classes, a2, rng),
        vec![0.0; arch.classes],
    ]
}

/// Logits `relu(x·w1 + b1)·w2 + b2` (no ReLU unless `arch.relu`).
pub fn forward<'b>(arch: Arch, params: &[Var<'b>], x: Var<'b>) -> Var<'b> {
    let z = x.matmul(params[0]) + params[1];
    let h = if arch.relu { z.relu() } else { z };
    h.matmul(params[2]) + params[3]
}

/// Declares the parameter inputs `w1, b1, w2, b2`.
fn param_inputs(b: &GraphBuilder, dtype: DType, arch: Arch) -> Vec<Var<'_>> {
    PARAMS
        .iter()
        .zip(arch.param_shapes())
        .map(|(n, s)| b.input(n, dtype, &s))
        .collect()
}

/// Loss and gradients: inputs `w1, b1, w2, b2, x [batch, dim], y [batch, classes]`
/// (one-hot); outputs `loss, d_w1, d_b1, d_w2, d_b2`.
///
/// # Errors
/// Builder or AD errors (bugs in this file).
pub fn grad_graph(dtype: DType, batch: usize, arch: Arch) -> Result<Graph, gradlift::Error> {
    let b = GraphBuilder::new("mlp_grad");
    let params = param_inputs(&b, dtype, arch);
    let x = b.input("x", dtype, &[batch, arch.dim]);
    let y = b.input("y", dtype, &[batch, arch.classes]);
    let loss = forward(arch, &params, x).cross_entropy(y);
    let grads = b.grad(loss, &params)?;
    let names: Vec<String> = PARAMS.iter().map(|p| format!("d_{p}")).collect();
    let mut outs = vec![("loss", loss)];
    outs.extend(names.iter().map(String::as_str).zip(grads));
    Ok(b.finish(&outs)?)
}

/// Loss only (the forward pass): inputs as [`grad_graph`], output `loss`.
///
/// # Errors
/// Builder errors (bugs in this file).
pub fn loss_graph(dtype: DType, batch: usize, arch: Arch) -> Result<Graph, gradlift::Error> {
    let b = GraphBuilder::new("mlp_loss");
    let params = param_inputs(&b, dtype, arch);
    let x = b.input("x", dtype, &[batch, arch.dim]);
    let y = b.input("y", dtype, &[batch, arch.classes]);
    let loss = forward(arch, &params, x).cross_entropy(y);
    Ok(b.finish(&[("loss", loss)])?)
}

/// Logits: inputs `w1, b1, w2, b2, x [batch, dim]`, output `logits [batch, classes]`.
///
/// # Errors
/// Builder errors (bugs in this file).
pub fn predict_graph(dtype: DType, batch: usize, arch: Arch) -> Result<Graph, gradlift::Error> {
    let b = GraphBuilder::new("mlp_predict");
    let params = param_inputs(&b, dtype, arch);
    let x = b.input("x", dtype, &[batch, arch.dim]);
    let logits = forward(arch, &params, x);
    Ok(b.finish(&[("logits", logits)])?)
}

/// One training step as one graph.
///
/// Inputs, in order: the parameters `w1, b1, w2, b2`; the optimizer state (Adam: `m_w1..m_b2`
/// then `v_w1..v_b2`; SGD: `u_w1..u_b2`); `t` (the 1-based step number, a scalar); `lr` (a
/// scalar); `x [batch, dim]`; `y [batch, classes]` (one-hot). Outputs: `loss`, then the
/// updated parameters and optimizer state in input order. The loss is the one of the
/// parameters passed in (before the update).
///
/// # Errors
/// Builder or AD errors (bugs in this file).
pub fn train_step_graph(
    dtype: DType,
    batch: usize,
    arch: Arch,
    optim: Optim,
) -> Result<Graph, gradlift::Error> {
    step_graph(dtype, batch, arch, optim, false)
}

/// [`train_step_graph`] for one rank of a data-parallel run, whose share of each global batch
/// is `local_batch` examples: the parameters enter the forward pass through `pvary` and the
/// loss is `all_reduce_mean`ed over the ranks, so its gradient is the mean over ranks of the
/// local gradients (one all-reduce in the backward pass, after `opt::optimize` buckets the
/// four parameters' into one) and every rank applies the same update. With equal shares the
/// loss is the global batch's. Call the kernel through [`Trainer::with_comm`].
///
/// # Errors
/// As [`train_step_graph`].
pub fn data_parallel_step_graph(
    dtype: DType,
    local_batch: usize,
    arch: Arch,
    optim: Optim,
) -> Result<Graph, gradlift::Error> {
    step_graph(dtype, local_batch, arch, optim, true)
}

fn step_graph(
    dtype: DType,
    batch: usize,
    arch: Arch,
    optim: Optim,
    data_parallel: bool,
) -> Result<Graph, gradlift::Error> {
    let b = GraphBuilder::new("mlp_step");
    let params = param_inputs(&b, dtype, arch);
    let prefixes: &[&str] = match optim {
        Optim::Adam { .. } => &["m", "v"],
        Optim::Sgd { .. } => &["u"],
    };
    let state: Vec<Vec<Var<'_>>> = prefixes
        .iter()
        .map(|pre| {
            PARAMS
                .iter()
                .zip(arch.param_shapes())
                .map(|(n, s)| b.input(&format!("{pre}_{n}"), dtype, &s))
                .collect()
        })
        .collect();
    let t = b.input("t", dtype, &[]);
    let lr = b.input("lr", dtype, &[]);
    let x = b.input("x", dtype, &[batch, arch.dim]);
    let y = b.input("y", dtype, &[batch, arch.classes]);
    let loss = if data_parallel {
        let local: Vec<Var<'_>> = params.iter().map(|p| p.pvary()).collect();
        forward(arch, &local, x).cross_entropy(y).all_reduce_mean()
    } else {
        forward(arch, &params, x).cross_entropy(y)
    };
    let grads = b.grad(loss, &params)?;

    let mut new_params = Vec::new();
    let mut new_state: Vec<Vec<Var<'_>>> = vec![Vec::new(); state.len()];
    match optim {
        Optim::Adam { beta1, beta2, eps } => {
            // Bias corrections from the step number, in the graph: 1 - βᵗ = 1 - exp(t·ln β).
            let bc1 = 1.0 - (t * beta1.ln()).exp();
            let bc2 = 1.0 - (t * beta2.ln()).exp();
            let step = lr / bc1;
            let root_bc2 = bc2.sqrt();
            for (i, (&p, &g)) in params.iter().zip(&grads).enumerate() {
                let m = state[0][i] * beta1 + g * (1.0 - beta1);
                let v = state[1][i] * beta2 + g * g * (1.0 - beta2);
                new_params.push(p - step * m / (v.sqrt() / root_bc2 + eps));
                new_state[0].push(m);
                new_state[1].push(v);
            }
        }
        Optim::Sgd { momentum } => {
            for (i, (&p, &g)) in params.iter().zip(&grads).enumerate() {
                let u = state[0][i] * momentum + g;
                new_params.push(p - lr * u);
                new_state[0].push(u);
            }
        }
    }
    let mut names = Vec::new();
    for n in PARAMS {
        names.push(format!("{n}_next"));
    }
    for pre in prefixes {
        for n in PARAMS {
            names.push(format!("{pre}_{n}_next"));
        }
    }
    let mut outs = vec![("loss", loss)];
    let values = new_params
        .into_iter()
        .chain(new_state.into_iter().flatten());
    outs.extend(names.iter().map(String::as_str).zip(values));
    Ok(b.finish(&outs)?)
}

// ---- training ----------------------------------------------------------------------------

/// The donated pairs of [`train_step_graph`]: each parameter and optimizer-state input with
/// its updated output (`w1` → `w1_next`, `m_w1` → `m_w1_next`, ...), so one buffer per tensor
/// holds it across steps and the kernel updates it in place.
pub fn step_donations(optim: Optim) -> Vec<(String, String)> {
    let prefixes: &[&str] = match optim {
        Optim::Adam { .. } => &["", "m_", "v_"],
        Optim::Sgd { .. } => &["", "u_"],
    };
    prefixes
        .iter()
        .flat_map(|pre| {
            PARAMS
                .iter()
                .map(move |n| (format!("{pre}{n}"), format!("{pre}{n}_next")))
        })
        .collect()
}

/// Compiles a [`train_step_graph`] with its parameters and optimizer state donated
/// ([`step_donations`]), as [`Trainer`] needs.
///
/// # Errors
/// Compile errors (bugs in this file or the library).
pub fn compile_step(g: &Graph, optim: Optim) -> Result<Kernel, gradlift::jit::JitError> {
    compile_step_with(g, optim, JitConfig::default())
}

/// [`compile_step`] with other options (e.g. one kernel thread per rank of a data-parallel
/// run); the donations are added.
///
/// # Errors
/// As [`compile_step`].
pub fn compile_step_with(
    g: &Graph,
    optim: Optim,
    cfg: JitConfig,
) -> Result<Kernel, gradlift::jit::JitError> {
    let cfg = JitConfig {
        donate: step_donations(optim),
        ..cfg
    };
    gradlift::jit::compile_with(g, &cfg)
}

/// Runs a kernel from [`compile_step`] step after step with no allocation on the Rust side:
/// one buffer per parameter and optimizer-state tensor, which each call reads and overwrites
/// with its update (donated buffers), plus the batch buffers and the workspace.
pub struct Trainer<'k> {
    kernel: &'k Kernel,
    ws: Workspace,
    /// Parameters then optimizer state, in the kernel's input order.
    state: Vec<Vec<f32>>,
    x: Vec<f32>,
    y: Vec<f32>,
    loss: f32,
    step: u64,
    batch: usize,
    comm: &'k dyn Communicator,
}

impl<'k> Trainer<'k> {
    /// A trainer starting from `params` (`w1, b1, w2, b2`) with zero optimizer state.
    ///
    /// # Panics
    /// If the kernel does not fit (it must come from [`compile_step`] of a
    /// [`train_step_graph`] in f32).
    pub fn new(kernel: &'k Kernel, params: Vec<Vec<f32>>, optim: Optim) -> Trainer<'k> {
        let tys = kernel.input_types();
        let n_state = 4 * optim.slots();
        assert_eq!(tys.len(), 4 + n_state + 4, "not a training-step kernel");
        assert!(
            kernel.donations().eq((0..4 + n_state).map(|k| (k, k + 1))),
            "compile the step with compile_step (parameters and state donated)"
        );
        let mut state = params;
        for k in 0..n_state {
            state.push(vec![0.0; tys[4 + k].numel()]);
        }
        for (v, t) in state.iter().zip(tys) {
            assert_eq!(v.len(), t.numel(), "parameter sizes do not fit the kernel");
        }
        let xt = &tys[tys.len() - 2];
        Trainer {
            kernel,
            ws: kernel.workspace(),
            x: vec![0.0; xt.numel()],
            y: vec![0.0; tys[tys.len() - 1].numel()],
            batch: xt.shape[0],
            state,
            loss: 0.0,
            step: 0,
            comm: &SingleProcess,
        }
    }

    /// This trainer as one rank of `comm` (for a kernel of [`data_parallel_step_graph`]):
    /// each step all-reduces the gradients and the loss over its ranks.
    pub fn with_comm(self, comm: &'k dyn Communicator) -> Trainer<'k> {
        Trainer { comm, ..self }
    }

    /// Examples per step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The current parameters `w1, b1, w2, b2`.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.state[..4]
    }

    /// One step on the examples `idx` (exactly one batch) of `data`, with learning rate
    /// `lr`. Returns the loss before the update.
    ///
    /// # Panics
    /// If `idx` is not one batch long or the kernel call fails (a bug).
    pub fn step(&mut self, data: &Dataset, idx: &[usize], lr: f32) -> f32 {
        assert_eq!(idx.len(), self.batch);
        let classes = self.y.len() / self.batch;
        self.y.fill(0.0);
        for (r, &i) in idx.iter().enumerate() {
            self.x[r * data.dim..(r + 1) * data.dim].copy_from_slice(data.image(i));
            self.y[r * classes + usize::from(data.labels[i])] = 1.0;
        }
        self.step += 1;
        // Inputs `t, lr, x, y` (the donated parameters and state are left out); outputs the
        // loss, then each parameter and state buffer, updated in place.
        self.kernel
            .call_iter_with_comm(
                [
                    Buf::from(self.step as f32),
                    Buf::from(lr),
                    Buf::from(&self.x),
                    Buf::from(&self.y),
                ],
                std::iter::once(BufMut::from(&mut self.loss))
                    .chain(self.state.iter_mut().map(BufMut::from)),
                &mut self.ws,
                self.comm,
            )
            .expect("buffers match the kernel");
        self.loss
    }
}

/// Fraction of `data` that a compiled [`predict_graph`] (f32, any batch size) classifies
/// right with `params`. The last partial batch is padded with zeros (padding rows are
/// ignored).
///
/// # Panics
/// If the kernel does not fit `params` and `data` (a bug).
pub fn accuracy(predict: &Kernel, params: &[Vec<f32>], data: &Dataset) -> f64 {
    let batch = predict.input_types()[4].shape[0];
    let classes = predict.output_types()[0].shape[1];
    let mut ws = predict.workspace();
    let mut x = vec![0f32; batch * data.dim];
    let mut logits = vec![0f32; batch * classes];
    let mut right = 0usize;
    for start in (0..data.len()).step_by(batch) {
        let rows = batch.min(data.len() - start);
        x.fill(0.0);
        x[..rows * data.dim]
            .copy_from_slice(&data.images[start * data.dim..(start + rows) * data.dim]);
        let ins = [
            Buf::F32(&params[0]),
            Buf::F32(&params[1]),
            Buf::F32(&params[2]),
            Buf::F32(&params[3]),
            Buf::F32(&x),
        ];
        predict
            .call(&ins, &mut [BufMut::F32(&mut logits)], &mut ws)
            .expect("buffers match the kernel");
        for r in 0..rows {
            let row = &logits[r * classes..(r + 1) * classes];
            let best = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("classes > 0");
            right += usize::from(best == usize::from(data.labels[start + r]));
        }
    }
    right as f64 / data.len().max(1) as f64
}
