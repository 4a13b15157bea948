//! Times MPI all-reduces of f32 buffers through gradlift's `comm::MpiComm`, to calibrate the
//! ring all-reduce cost model in `benches/README.md`: the median time per call for buffers from
//! one element to ten times the MLP demo's gradient.
//!
//! Run (needs OpenMPI; as root add `--allow-run-as-root --oversubscribe`):
//! `cargo build --release -p gradlift-demo --example allreduce --features mpi &&
//! mpirun -np 2 target/release/examples/allreduce`

use gradlift::comm::{Communicator, MpiComm};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let comm = MpiComm::init()?;
    // The MLP demo's gradient (784·256 + 256 + 256·10 + 10) plus its loss, and 10× that.
    let mlp = 784 * 256 + 256 + 256 * 10 + 10 + 1;
    for len in [1usize, 1024, 65_536, mlp, 10 * mlp] {
        let mut buf = vec![1.0f32; len];
        let reps = if len > 100_000 { 30 } else { 300 };
        let mut times = Vec::with_capacity(reps);
        for _ in 0..5 {
            comm.all_reduce_sum_f32(&mut buf)?;
        }
        for _ in 0..reps {
            comm.barrier();
            let t = Instant::now();
            comm.all_reduce_sum_f32(&mut buf)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[reps / 2];
        if comm.rank() == 0 {
            let bytes = len * 4;
            println!(
                "ranks {} bytes {bytes:>9}: median {:>9.1} µs, {:>7.2} GB/s algorithm bandwidth",
                comm.size(),
                median * 1e6,
                bytes as f64 / median / 1e9
            );
        }
    }
    Ok(())
}
