//! gradlift's main demo: train a multilayer perceptron classifier (784 → 256 → 10, ReLU,
//! softmax cross-entropy) with ONE compiled kernel per step. The kernel takes the parameters,
//! the Adam state and a batch, and returns the loss and the updated parameters and state:
//! forward, backward (`GraphBuilder::grad`) and the optimizer update are all graph ops, built
//! once, optimized (`opt::optimize`) and compiled (`jit::compile_with`, the parameters and
//! optimizer state donated: the kernel overwrites each with its update). The training loop
//! only copies a batch in and calls the kernel through the allocation-free
//! `Kernel::call_iter` path, on one buffer per parameter and state tensor.
//!
//! Data: by default a synthetic task made in-process — ten "seven-segment" digit classes
//! drawn with random shift, scale, slant, stroke width, segment dropout, stray strokes and
//! pixel noise (50,000 training and 10,000 test images). With `--mnist DIR` it reads MNIST's
//! IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, uncompressed) instead.
//!
//! Run: `cargo run --release --example mlp` (add `-- --help` for the options). The default
//! run (3 epochs of 50,000 images, batch 64, Adam lr 1e-3: 2,343 steps) takes about 7 s on
//! the 2-core reference machine (about 6 s of training at ~25,000 samples/s, measured while
//! other builds were running) and reaches 88.8% test accuracy on the synthetic task; the same
//! model without its ReLU (`--linear`, a linear softmax classifier) reaches 61.9%. It prints a
//! progress bar with the loss and throughput and the final accuracy, and writes the loss
//! curve to `mlp_loss.svg`.

use clap::Parser;
use gradlift::{DType, jit, opt};
use gradlift_demo::mlp as common;
use gradlift_demo::mlp::{Arch, CLASSES, DIM, Dataset, Optim, Rng, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Train an MLP classifier with one compiled gradlift kernel per step.
#[derive(Parser, Debug)]
#[command(name = "mlp")]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Hidden units.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Drop the ReLU: a linear softmax classifier (for comparison; the task is not linear).
    #[arg(long)]
    linear: bool,
    /// Stop after this many steps (default: no cap).
    #[arg(long)]
    steps: Option<usize>,
    /// Seed for data, initialization and shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Optimizer: adam or sgd (SGD with momentum 0.9).
    #[arg(long, default_value = "adam")]
    optim: String,
    /// Read MNIST's IDX files from this directory instead of the synthetic task.
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Synthetic training examples.
    #[arg(long, default_value_t = 50_000)]
    train: usize,
    /// Synthetic test examples.
    #[arg(long, default_value_t = 10_000)]
    test: usize,
    /// Write the loss curve (SVG) here.
    #[arg(long, default_value = "mlp_loss.svg")]
    plot: PathBuf,
    /// No progress bar; print only the final summary line.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let optim = match args.optim.as_str() {
        "adam" => Optim::ADAM,
        "sgd" => Optim::SGD,
        o => return Err(format!("unknown optimizer {o:?} (adam or sgd)").into()),
    };
    if args.batch == 0 || args.epochs == 0 || args.hidden == 0 {
        return Err("--batch, --epochs and --hidden must be positive".into());
    }
    let say = |s: String| {
        if !args.quiet {
            println!("{s}");
        }
    };

    // Data.
    let t0 = Instant::now();
    let (train, test) = match &args.mnist {
        Some(dir) => (
            common::read_mnist_split(dir, "train")?,
            common::read_mnist_split(dir, "t10k")?,
        ),
        None => (
            common::synthetic_digits(args.train, args.seed),
            common::synthetic_digits(args.test, args.seed.wrapping_add(1_000_003)),
        ),
    };
    if train.len() < args.batch {
        return Err(format!("{} training examples, fewer than one batch", train.len()).into());
    }
    say(format!(
        "data: {} train / {} test images ({}) in {:.2?}",
        train.len(),
        test.len(),
        if args.mnist.is_some() {
            "MNIST"
        } else {
            "synthetic seven-segment digits"
        },
        t0.elapsed()
    ));

    // One training-step graph, optimized and compiled once.
    let t0 = Instant::now();
    let arch = Arch {
        dim: DIM,
        hidden: args.hidden,
        classes: CLASSES,
        relu: !args.linear,
    };
    let mut g = common::train_step_graph(DType::F32, args.batch, arch, optim)?;
    let graph_nodes = (g.len(), {
        opt::optimize(&mut g, &opt::OptConfig::default());
        g.len()
    });
    let kernel = common::compile_step(&g, optim)?;
    let predict = jit::compile(&common::predict_graph(DType::F32, 1000, arch)?)?;
    say(format!(
        "step kernel: {} → {} nodes after optimization, compiled in {:.2?} ({})",
        graph_nodes.0,
        graph_nodes.1,
        t0.elapsed(),
        kernel.stats()
    ));

    // Training.
    let mut rng = Rng(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let params = common::init_params(arch, &mut rng);
    let mut trainer = Trainer::new(&kernel, params, optim);
    let per_epoch = train.len() / args.batch;
    let total = (per_epoch * args.epochs).min(args.steps.unwrap_or(usize::MAX));
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} steps  {msg}")?
            .progress_chars("=> "),
    );
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut losses: Vec<f32> = Vec::with_capacity(total);
    let mut ema = f32::NAN;
    let t0 = Instant::now();
    'epochs: for _ in 0..args.epochs {
        rng.shuffle(&mut order);
        for idx in order.chunks_exact(args.batch) {
            if losses.len() == total {
                break 'epochs;
            }
            let loss = trainer.step(&train, idx, args.lr);
            losses.push(loss);
            ema = if ema.is_nan() {
                loss
            } else {
                0.98 * ema + 0.02 * loss
            };
            if losses.len().is_multiple_of(20) || losses.len() == total {
                let rate = (losses.len() * args.batch) as f64 / t0.elapsed().as_secs_f64();
                bar.set_position(losses.len() as u64);
                bar.set_message(format!("loss {ema:.4}  {rate:.0} samples/s"));
            }
        }
    }
    bar.finish();
    let train_time = t0.elapsed();
    let samples = losses.len() * args.batch;

    // Evaluation and plot.
    let test_acc = common::accuracy(&predict, trainer.params(), &test);
    let train_acc = common::accuracy(&predict, trainer.params(), &subset(&train, test.len()));
    plot_losses(&args.plot, &losses, test_acc)?;
    say(format!("loss curve written to {}", args.plot.display()));
    println!(
        "{} steps ({} samples) in {:.2?}: {:.0} samples/s, final loss (EMA) {:.4}, \
         train accuracy {:.2}%, test accuracy {:.2}%",
        losses.len(),
        samples,
        train_time,
        samples as f64 / train_time.as_secs_f64(),
        ema,
        100.0 * train_acc,
        100.0 * test_acc
    );
    Ok(())
}

/// The first `n` examples (to report a training accuracy on a test-sized sample).
fn subset(d: &Dataset, n: usize) -> Dataset {
    let mut s = d.clone();
    s.truncate(n);
    s
}

/// Per-step loss (thin) and its exponential moving average (thick) as an SVG line chart.
fn plot_losses(
    path: &std::path::Path,
    losses: &[f32],
    test_acc: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = losses.iter().copied().fold(0f32, f32::max).max(1e-3) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "gradlift MLP: training loss (test accuracy {:.2}%)",
                100.0 * test_acc
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f32..losses.len().max(1) as f32, 0f32..top)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("cross-entropy loss")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, &l)| (i as f32, l)),
            RGBColor(160, 190, 230).stroke_width(1),
        ))?
        .label("loss per step")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(160, 190, 230)));
    let mut ema = losses.first().copied().unwrap_or(0.0);
    let smooth: Vec<(f32, f32)> = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            ema = 0.98 * ema + 0.02 * l;
            (i as f32, ema)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(smooth, BLUE.stroke_width(2)))?
        .label("moving average")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
