//! [`ThreadComm`]: ranks that are threads of one process.

use super::{CommError, Communicator};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

/// One rank of a group of threads (make the group with [`ThreadComm::group`] and move one
/// handle into each thread).
///
/// An all-reduce copies the rank's buffer into its slot, waits for every rank, sums the slots
/// in rank order into the buffer (each rank the same additions in the same order, so the same
/// bits), and waits again before any slot can be reused. Two barriers and one copy per call:
/// meant for tests and small demos, not for speed.
///
/// A rank that panics or stops calling leaves the others waiting at the barrier. Run each rank
/// on a thread of its own (`std::thread`), not as tasks of a pool with fewer threads than
/// ranks, where a waiting rank can hold the thread another rank needs.
#[derive(Debug)]
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    slots: Vec<Mutex<Slot>>,
}

/// One rank's contribution to the current all-reduce.
#[derive(Debug, Default)]
struct Slot {
    f32: Vec<f32>,
    f64: Vec<f64>,
    wide: bool,
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A rank that panicked mid-copy leaves a slot that is only read as numbers.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ThreadComm {
    /// The handles of a group of `size` ranks, rank `i` at index `i`.
    pub fn group(size: usize) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(size),
            slots: (0..size).map(|_| Mutex::new(Slot::default())).collect(),
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    fn reduce<T: Copy + std::ops::Add<Output = T>>(
        &self,
        buf: &mut [T],
        wide: bool,
        vec: fn(&mut Slot) -> &mut Vec<T>,
    ) -> Result<(), CommError> {
        let s = &self.shared;
        {
            let mut mine = lock(&s.slots[self.rank]);
            mine.wide = wide;
            let v = vec(&mut mine);
            v.clear();
            v.extend_from_slice(buf);
        }
        s.barrier.wait();
        let mut result = Ok(());
        for (r, slot) in s.slots.iter().enumerate() {
            let mut other = lock(slot);
            if other.wide != wide {
                result = Err(CommError::DtypeMismatch {
                    rank: self.rank,
                    other: r,
                });
                break;
            }
            let v = vec(&mut other);
            if v.len() != buf.len() {
                result = Err(CommError::LengthMismatch {
                    rank: self.rank,
                    len: buf.len(),
                    other: r,
                    other_len: v.len(),
                });
                break;
            }
            if r == 0 {
                buf.copy_from_slice(v);
            } else {
                for (b, &x) in buf.iter_mut().zip(v.iter()) {
                    *b = *b + x;
                }
            }
        }
        // Nobody refills a slot before every rank has read all of them.
        s.barrier.wait();
        result
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.slots.len()
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.reduce(buf, false, |s| &mut s.f32)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.reduce(buf, true, |s| &mut s.f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f(rank comm)` on one thread per rank and returns the results in rank order.
    fn on_ranks<R: Send>(size: usize, f: impl Fn(&ThreadComm) -> R + Sync) -> Vec<R> {
        let comms = ThreadComm::group(size);
        std::thread::scope(|s| {
            let hs: Vec<_> = comms.iter().map(|c| s.spawn(|| f(c))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn sums_in_rank_order_with_the_same_bits_everywhere() {
        // 1e16 + 1 + 1 - 1e16: rank order gives ((1e16 + 1) + 1) - 1e16 = 0 in f64 (each + 1
        // is lost); a different order (1 + 1 first) would give 2.
        let xs = [1e16, 1.0, 1.0, -1e16];
        let out = on_ranks(4, |c| {
            let mut b = vec![xs[c.rank()], c.rank() as f64];
            c.all_reduce_sum_f64(&mut b).unwrap();
            b
        });
        for b in &out {
            assert_eq!(b, &vec![0.0, 6.0]);
        }
        let out32 = on_ranks(3, |c| {
            let mut b = vec![c.rank() as f32 + 0.5; 5];
            for _ in 0..3 {
                c.all_reduce_sum_f32(&mut b).unwrap();
            }
            b
        });
        // Three rounds: 4.5, then 13.5, then 40.5 on every rank.
        assert!(out32.iter().all(|b| b == &vec![40.5f32; 5]));
    }

    #[test]
    fn mismatched_lengths_are_an_error_on_every_rank() {
        let out = on_ranks(2, |c| {
            let mut b = vec![1.0f32; 2 + c.rank()];
            c.all_reduce_sum_f32(&mut b)
        });
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(CommError::LengthMismatch { .. })))
        );
        let out = on_ranks(2, |c| {
            if c.rank() == 0 {
                c.all_reduce_sum_f32(&mut [1.0])
            } else {
                c.all_reduce_sum_f64(&mut [1.0])
            }
        });
        assert!(
            out.iter()
                .all(|r| matches!(r, Err(CommError::DtypeMismatch { .. })))
        );
    }
}
