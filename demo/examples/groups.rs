//! Checks gradlift's group collectives over MPI processes: every rank runs one graph of
//! `all_reduce_sum`, `all_reduce_mean`, `all_gather`, `reduce_scatter`, `collective_broadcast`
//! and `axis_index` over partitions of the ranks (all of them in reverse order, one group
//! per rank, and pairs), with the interpreter and the JIT, and compares each result with the value
//! computed by hand from every rank's inputs (integers, so any summation order is exact).
//! Exits with an error on the first mismatch.
//!
//! Run (needs OpenMPI; as root add `--allow-run-as-root --oversubscribe`):
//! `cargo build --release -p gradlift-demo --example groups --features mpi &&
//! mpirun -np 2 target/release/examples/groups`

use gradlift::comm::{Communicator, Groups, MpiComm};
use gradlift::jit::{self, Buf, BufMut};
use gradlift::{DType, GraphBuilder, Tensor, interp};

const COLS: usize = 3;

/// Rank `r`'s `[rows, COLS]` operand: small integers, distinct per rank and element.
fn operand(r: usize, rows: usize) -> Vec<f64> {
    (0..rows * COLS)
        .map(|i| (10 * (r + 1) + i) as f64)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let comm = MpiComm::init()?;
    let (p, rank) = (comm.size(), comm.rank());
    let mut partitions = vec![
        vec![(0..p).rev().collect::<Vec<_>>()],
        (0..p).map(|r| vec![r]).collect(),
    ];
    if p % 2 == 0 {
        partitions.push((0..p / 2).map(|i| vec![2 * i, 2 * i + 1]).collect());
    }
    for lists in partitions {
        let groups = Groups::new(lists.clone())?;
        let members = lists
            .iter()
            .find(|l| l.contains(&rank))
            .expect("every rank");
        let (k, pos) = (
            members.len(),
            members.iter().position(|&m| m == rank).unwrap(),
        );
        let rows = 2 * k;
        let b = GraphBuilder::new("groups");
        let x = b.input("x", DType::F64, &[rows, COLS]);
        let w = b.input("w", DType::F64, &[rows, COLS]);
        let bc = x.collective_broadcast(0, &groups);
        let loss = (bc * w).sum();
        let dx = b.grad(loss, &[x])?[0];
        let g = b.finish(&[
            ("sum", x.all_reduce_sum_in(&groups)),
            ("mean", x.all_reduce_mean_in(&groups)),
            ("gather", x.all_gather(1, &groups)),
            ("scatter", x.reduce_scatter(0, &groups)),
            ("bcast", bc),
            ("index", b.axis_index(DType::F64, &groups)),
            ("dx", dx),
        ])?;
        // By hand, from every rank's operand.
        let sum = members.iter().fold(vec![0.0; rows * COLS], |acc, &m| {
            acc.iter()
                .zip(operand(m, rows))
                .map(|(a, x)| a + x)
                .collect()
        });
        let gather: Vec<f64> = (0..rows)
            .flat_map(|i| {
                members
                    .iter()
                    .flat_map(move |&m| operand(m, rows)[i * COLS..(i + 1) * COLS].to_vec())
            })
            .collect();
        let block = rows / k * COLS;
        // `w` is 1 + rank: the broadcast's cotangent sums it over the group, on the root only.
        let wsum: f64 = members.iter().map(|&m| (m + 1) as f64).sum();
        let want = [
            sum.clone(),
            sum.iter().map(|s| s / k as f64).collect(),
            gather,
            sum[pos * block..(pos + 1) * block].to_vec(),
            operand(members[0], rows),
            vec![pos as f64],
            vec![if pos == 0 { wsum } else { 0.0 }; rows * COLS],
        ];
        let inputs = [
            Tensor::from_f64(vec![rows, COLS], operand(rank, rows)),
            Tensor::splat(&g.ty(g.inputs()[1]).clone(), (rank + 1) as f64),
        ];
        let it = interp::run_with_comm(&g, &inputs, &comm)?;
        let k = jit::compile(&g)?;
        let mut jt: Vec<Tensor> = (k.output_types().iter())
            .map(|t| Tensor::splat(t, 0.0))
            .collect();
        let bufs: Vec<Buf> = inputs.iter().map(Buf::from).collect();
        let mut ob: Vec<BufMut> = jt.iter_mut().map(BufMut::from).collect();
        k.call_with_comm(&bufs, &mut ob, &mut k.workspace(), &comm)?;
        for (o, w) in want.iter().enumerate() {
            for (how, got) in [("interpreter", &it[o]), ("JIT", &jt[o])] {
                if &got.to_f64_vec() != w {
                    return Err(format!(
                        "rank {rank}, groups {groups}, {how}, output {o}: {:?}, expected {w:?}",
                        got.to_f64_vec()
                    )
                    .into());
                }
            }
        }
    }
    comm.barrier();
    if rank == 0 {
        println!("group collectives over {p} MPI ranks: ok (interpreter and JIT)");
    }
    Ok(())
}
