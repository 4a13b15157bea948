//! `Kernel::call` allocates nothing itself, on one thread or several: a counting global
//! allocator (this binary holds this one test, so nothing else allocates meanwhile) around
//! calls of a kernel whose large loops are cut into chunks for threads. The kernel's helper
//! threads (`jit::team`) are started by the first threaded call, which waits until they run,
//! so their start is not counted against later calls. (Kernels with GEMM calls allocate
//! inside the `gemm` crate: its packing memory; see `jit::gemm`.) Loops too: their scratch
//! memory is in the workspace. And data-parallel calls over thread ranks: collectives stage
//! their operands in the workspace, and `ThreadComm` reuses its slots.

use gradlift::comm::{Communicator, Groups, ThreadComm};
use gradlift::jit::{self, Buf, BufMut, JitConfig};
use gradlift::{DType, GraphBuilder};
use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// is an atomic that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn calls_allocate_nothing_on_one_thread_or_several() {
    let (r, c) = (200, 1000);
    let b = GraphBuilder::new("chunked");
    let x = b.input("x", DType::F32, &[r, c]);
    let e = (x * 0.5).tanh() * x;
    let g = b
        .finish(&[("total", e.sum()), ("rows", e.sum_axes(&[1])), ("e", e)])
        .unwrap();
    let xs: Vec<f32> = (0..r * c).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
    for threads in [1, 2, 3] {
        let cfg = JitConfig {
            kernel_threads: NonZeroUsize::new(threads),
            ..JitConfig::default()
        };
        let k = jit::compile_with(&g, &cfg).unwrap();
        // Compiling starts rayon's pool, whose workers allocate as they start, on their own
        // threads and in their own time: wait until every one of them runs.
        rayon::broadcast(|_| ());
        assert!(k.stats().groups_parallel > 0, "{}", k.stats());
        let mut ws = k.workspace();
        let (mut total, mut rows, mut out) = (0f32, vec![0f32; r], vec![0f32; r * c]);
        let calls = 200;
        let mut count = 0;
        for i in 0..calls + 3 {
            // The first calls start the helper threads and warm up thread-locals.
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            k.call(
                &[Buf::F32(&xs)],
                &mut [
                    BufMut::from(&mut total),
                    BufMut::F32(&mut rows),
                    BufMut::F32(&mut out),
                ],
                &mut ws,
            )
            .unwrap();
            if i >= 3 {
                count += ALLOCATIONS.load(Ordering::Relaxed) - before;
            }
        }
        let most = 0;
        assert!(
            count <= most,
            "{threads} threads: {count} allocations in {calls} calls"
        );
    }
    loop_calls_allocate_nothing();
    collective_calls_allocate_nothing();
}

/// A loop (a scan of 1000 steps whose body holds a nested scan, then a while loop that exits
/// early, and its checkpointed gradient): the carry buffers, snapshots and the bodies'
/// workspaces are in the caller's workspace.
fn loop_calls_allocate_nothing() {
    let b = GraphBuilder::new("loop");
    let x = b.input("x", DType::F64, &[4]);
    let out = b.scan(1000, &[x], &[], &[x], |sb, s| {
        let inner = sb.scan(3, &[s.carry[0]], &[], &[s.consts[0]], |_, t| {
            (vec![(t.carry[0] * t.consts[0]).sin() * 0.5], vec![])
        });
        (vec![inner.carry[0]], vec![inner.carry[0].sum()])
    });
    // A while loop that exits early, differentiated with checkpoints: its backward loop
    // counts the forward's conditions and schedules that many steps in the same scratch.
    let w = b.while_loop_with(
        1000,
        Some(3),
        &[out.carry[0]],
        &[],
        |_, s| s.carry[0].sum().gt(s.carry[0].sum() * 0.0 + 0.01),
        |_, s| vec![s.carry[0] * 0.5],
    );
    let d = b.grad(out.ys[0].sum() + w[0].sum(), &[x]).unwrap()[0];
    let g = b.finish(&[("y", out.carry[0]), ("d", d)]).unwrap();
    let cfg = JitConfig {
        kernel_threads: NonZeroUsize::new(1),
        ..JitConfig::default()
    };
    let k = jit::compile_with(&g, &cfg).unwrap();
    let mut ws = k.workspace();
    let xs = [0.1, 0.2, 0.3, 0.4];
    let (mut y, mut dx) = ([0f64; 4], [0f64; 4]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..20 {
        k.call(
            &[Buf::F64(&xs)],
            &mut [BufMut::F64(&mut y), BufMut::F64(&mut dx)],
            &mut ws,
        )
        .unwrap();
    }
    let count = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(count, 0, "{count} allocations in 20 calls of a loop kernel");
}

/// A data-parallel step on 2 thread ranks (`ThreadComm`): its gradient all-reduces (the
/// transpose of `pvary`), an `all_gather` along an inner axis and a `reduce_scatter`, whose
/// operands are staged in the workspace. Both rank threads call the kernel; every allocation
/// between two barriers that both ranks pass (after warm-up calls, which grow the
/// communicator's slots) is counted, on whichever thread it happens.
fn collective_calls_allocate_nothing() {
    let (rows, cols) = (4, 8);
    // Both ranks in one group, in rank order: the call's communicator serves it (no split).
    let both = Groups::new(vec![vec![0, 1]]).unwrap();
    let b = GraphBuilder::new("dp");
    let w = b.input("w", DType::F64, &[cols]);
    let x = b.input("x", DType::F64, &[rows, cols]);
    let h = (w.pvary() * x).tanh();
    let loss = h.sum().all_reduce_sum();
    let dw = b.grad(loss, &[w]).unwrap()[0];
    let gathered = h.all_gather(1, &both);
    let scattered = (h * h).reduce_scatter(0, &both);
    let g = b
        .finish(&[
            ("loss", loss),
            ("dw", dw),
            ("a", gathered),
            ("s", scattered),
        ])
        .unwrap();
    let cfg = JitConfig {
        kernel_threads: NonZeroUsize::new(1),
        ..JitConfig::default()
    };
    let k = jit::compile_with(&g, &cfg).unwrap();
    rayon::broadcast(|_| ());
    let ranks = 2;
    let comms = ThreadComm::group(ranks);
    let barrier = Barrier::new(ranks);
    let calls = 50;
    let step = |c: &ThreadComm| {
        let ws_ = vec![0.25; cols];
        let xs: Vec<f64> = (0..rows * cols)
            .map(|i| ((i + c.rank() * 7) % 11) as f64 * 0.1 - 0.5)
            .collect();
        let mut ws = k.workspace();
        let (mut loss, mut dw) = (0f64, vec![0f64; cols]);
        let (mut a, mut s) = (
            vec![0f64; rows * cols * ranks],
            vec![0f64; rows * cols / ranks],
        );
        let mut call = || {
            k.call_with_comm(
                &[Buf::F64(&ws_), Buf::F64(&xs)],
                &mut [
                    BufMut::from(&mut loss),
                    BufMut::F64(&mut dw),
                    BufMut::F64(&mut a),
                    BufMut::F64(&mut s),
                ],
                &mut ws,
                c,
            )
            .unwrap();
        };
        for _ in 0..3 {
            call();
        }
        barrier.wait();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        barrier.wait();
        for _ in 0..calls {
            call();
        }
        barrier.wait();
        let count = ALLOCATIONS.load(Ordering::Relaxed) - before;
        barrier.wait();
        (count, loss.to_bits())
    };
    let out: Vec<(usize, u64)> = std::thread::scope(|sc| {
        let hs: Vec<_> = comms.iter().map(|c| sc.spawn(|| step(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every rank gets the same bits from an all-reduce.
    assert_eq!(out[0].1, out[1].1);
    for (r, &(count, _)) in out.iter().enumerate() {
        assert_eq!(
            count, 0,
            "rank {r}: {count} allocations in {calls} calls of a data-parallel step"
        );
    }
}
