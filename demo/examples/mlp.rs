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
//!
//! Data-parallel: `--ranks N` trains on N threads of this process, `--data-parallel` on the
//! processes of `mpirun -np N` (the demo built with `--features mpi`); each rank computes its
//! share of every global batch of `--batch` examples with the data-parallel step graph (the
//! gradients all-reduced inside the kernel), and rank 0 reports. Every mode ends with a
//! `final loss: X` line (the last step's loss on its global batch) for scripts to compare.

use clap::Parser;
use gradlift::comm::{Communicator, SingleProcess, ThreadComm};
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
    /// No progress bar; print only the final summary and `final loss:` lines.
    #[arg(long)]
    quiet: bool,
    /// Data-parallel over MPI: run under `mpirun -np P`; each rank computes 1/P of every
    /// global batch of `--batch` examples (needs the demo built with `--features mpi`).
    #[arg(long)]
    data_parallel: bool,
    /// Data-parallel over N threads of this process (no MPI needed; the same code path).
    #[arg(long)]
    ranks: Option<usize>,
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

    let arch = Arch {
        dim: DIM,
        hidden: args.hidden,
        classes: CLASSES,
        relu: !args.linear,
    };
    let run = if args.data_parallel {
        mpi_ranks(args, arch, optim, &train)?
    } else if let Some(n) = args.ranks {
        thread_ranks(args, arch, optim, &train, n)?
    } else {
        Some(train_rank(args, arch, optim, &train, &SingleProcess).map_err(|e| e.to_string())?)
    };
    // Ranks other than 0 are done.
    let Some(Run {
        losses,
        params,
        time: train_time,
        ema,
    }) = run
    else {
        return Ok(());
    };
    let samples = losses.len() * args.batch;

    // Evaluation and plot.
    let predict = jit::compile(&common::predict_graph(DType::F32, 1000, arch)?)?;
    let test_acc = common::accuracy(&predict, &params, &test);
    let train_acc = common::accuracy(&predict, &params, &subset(&train, test.len()));
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
    // The loss of the last step (the global batch's in data-parallel runs), for scripts that
    // compare runs.
    println!("final loss: {}", losses.last().copied().unwrap_or(f32::NAN));
    Ok(())
}

/// What one rank's training produced.
struct Run {
    losses: Vec<f32>,
    params: Vec<Vec<f32>>,
    time: std::time::Duration,
    ema: f32,
}

/// `--data-parallel`: this process is one MPI rank; rank 0 gets the run, the others `None`.
#[cfg(feature = "mpi")]
fn mpi_ranks(
    args: &Args,
    arch: Arch,
    optim: Optim,
    train: &Dataset,
) -> Result<Option<Run>, Box<dyn std::error::Error>> {
    let comm = gradlift::comm::MpiComm::init()?;
    let run = train_rank(args, arch, optim, train, &comm).map_err(|e| e.to_string())?;
    Ok((comm.rank() == 0).then_some(run))
}

#[cfg(not(feature = "mpi"))]
fn mpi_ranks(
    _: &Args,
    _: Arch,
    _: Optim,
    _: &Dataset,
) -> Result<Option<Run>, Box<dyn std::error::Error>> {
    Err("--data-parallel needs MPI: build the demo with `--features mpi` (or use --ranks N for threads)".into())
}

/// `--ranks N`: N threads of this process are the ranks; rank 0's run.
fn thread_ranks(
    args: &Args,
    arch: Arch,
    optim: Optim,
    train: &Dataset,
    n: usize,
) -> Result<Option<Run>, Box<dyn std::error::Error>> {
    if n == 0 {
        return Err("--ranks must be positive".into());
    }
    let comms = ThreadComm::group(n);
    let mut runs = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .map(|c| s.spawn(|| train_rank(args, arch, optim, train, c).map_err(|e| e.to_string())))
            .collect();
        hs.into_iter()
            .map(|h| h.join().map_err(|_| "a rank panicked".to_string())?)
            .collect::<Result<Vec<Run>, String>>()
    })?;
    Ok(Some(runs.swap_remove(0)))
}

/// Trains as rank `comm.rank()` of `comm.size()`: builds, optimizes and compiles the step
/// (data-parallel when there is more than one rank or `--data-parallel`/`--ranks` asked for
/// it) and runs it on this rank's share of each global batch. Only rank 0 reports progress.
fn train_rank(
    args: &Args,
    arch: Arch,
    optim: Optim,
    train: &Dataset,
    comm: &dyn Communicator,
) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let (rank, size) = (comm.rank(), comm.size());
    let data_parallel = args.data_parallel || args.ranks.is_some();
    if !args.batch.is_multiple_of(size) {
        return Err(format!(
            "--batch {} is not a multiple of the {size} ranks",
            args.batch
        )
        .into());
    }
    let local = args.batch / size;
    let say = |s: String| {
        if !args.quiet && rank == 0 {
            println!("{s}");
        }
    };

    // One training-step graph, optimized and compiled once.
    let t0 = Instant::now();
    let mut g = if data_parallel {
        common::data_parallel_step_graph(DType::F32, local, arch, optim)?
    } else {
        common::train_step_graph(DType::F32, args.batch, arch, optim)?
    };
    let graph_nodes = (g.len(), {
        opt::optimize(&mut g, &opt::OptConfig::default());
        g.len()
    });
    // Ranks sharing this machine's cores: one kernel thread each.
    let cfg = jit::JitConfig {
        kernel_threads: (size > 1).then_some(std::num::NonZeroUsize::MIN),
        ..jit::JitConfig::default()
    };
    let kernel = common::compile_step_with(&g, optim, cfg)?;
    say(format!(
        "step kernel: {} → {} nodes after optimization, compiled in {:.2?} ({}){}",
        graph_nodes.0,
        graph_nodes.1,
        t0.elapsed(),
        kernel.stats(),
        if data_parallel {
            format!(", {size} rank(s) of {local} examples each")
        } else {
            String::new()
        }
    ));

    // Training: every rank shuffles alike and takes its share of each global batch.
    let mut rng = Rng(args.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    let params = common::init_params(arch, &mut rng);
    let mut trainer = Trainer::new(&kernel, params, optim).with_comm(comm);
    let per_epoch = train.len() / args.batch;
    let total = (per_epoch * args.epochs).min(args.steps.unwrap_or(usize::MAX));
    let bar = if args.quiet || rank != 0 {
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
            let loss = trainer.step(train, &idx[rank * local..(rank + 1) * local], args.lr);
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
    Ok(Run {
        time: t0.elapsed(),
        params: trainer.params().to_vec(),
        losses,
        ema,
    })
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
