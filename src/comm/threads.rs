//! [`ThreadComm`]: ranks that are threads of one process.

use super::{CommError, Communicator, Groups, locate};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

/// One rank of a group of threads (make the group with [`ThreadComm::group`] and move one
/// handle into each thread).
///
/// A collective copies the rank's buffer into its slot, waits for every rank, reads the slots
/// in rank order (an all-reduce sums them in that order, so every rank makes the same additions
/// in the same order and gets the same bits; a reduce-scatter makes the same additions for its
/// block), and waits again before any slot can be reused. Two barriers and one copy per call:
/// meant for tests and small demos, not for speed. A slot keeps its memory, so once it has
/// grown to a program's longest collective, collectives allocate nothing.
///
/// [`Communicator::split`] hands out the sub-group communicators of a set of groups, made by
/// the first rank that asks and shared through the group's registry.
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
    /// Per set of groups: each rank's position and shared state in its group, indexed by rank
    /// here.
    splits: Mutex<HashMap<Groups, Vec<Place>>>,
}

/// A rank's position in its group of a split, and the group's shared state.
type Place = (usize, Arc<Shared>);

/// One rank's contribution to the current collective.
#[derive(Debug, Default)]
struct Slot {
    f32: Vec<f32>,
    f64: Vec<f64>,
    wide: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A rank that panicked mid-copy leaves a slot that is only read as numbers.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Selects the slot vector of one dtype.
type Pick<T> = fn(&mut Slot) -> &mut Vec<T>;

impl ThreadComm {
    /// The handles of a group of `size` ranks, rank `i` at index `i`.
    pub fn group(size: usize) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared::new(size));
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Puts `buf` in this rank's slot, waits for every rank, then calls `read(rank, slot)` for
    /// each rank in rank order (every slot checked against this rank's dtype and length
    /// first), and waits again.
    fn exchange<T: Copy>(
        &self,
        buf: &[T],
        wide: bool,
        vec: Pick<T>,
        read: impl FnMut(usize, &[T]),
    ) -> Result<(), CommError> {
        self.put(buf, wide, vec);
        self.collect(buf.len(), wide, vec, read)
    }

    /// Copies `buf` into this rank's slot. The slot's vector keeps its memory between
    /// collectives, so it allocates only when a collective is longer than every earlier one.
    fn put<T: Copy>(&self, buf: &[T], wide: bool, vec: Pick<T>) {
        let mut mine = lock(&self.shared.slots[self.rank]);
        mine.wide = wide;
        let v = vec(&mut mine);
        v.clear();
        v.extend_from_slice(buf);
    }

    /// The rest of [`ThreadComm::exchange`] after [`ThreadComm::put`] of `len` elements.
    fn collect<T: Copy>(
        &self,
        len: usize,
        wide: bool,
        vec: Pick<T>,
        mut read: impl FnMut(usize, &[T]),
    ) -> Result<(), CommError> {
        let s = &self.shared;
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
            let other_len = vec(&mut other).len();
            if other_len != len {
                result = Err(CommError::LengthMismatch {
                    rank: self.rank,
                    len,
                    other: r,
                    other_len,
                });
                break;
            }
        }
        if result.is_ok() {
            for (r, slot) in s.slots.iter().enumerate() {
                read(r, vec(&mut lock(slot)));
            }
        }
        // Nobody refills a slot before every rank has read all of them.
        s.barrier.wait();
        result
    }

    /// Sums, into `buf`, elements `at..at + buf.len()` of every rank's slot of `len`
    /// elements (filled by [`ThreadComm::put`]) in rank order: `((x₀ + x₁) + x₂) + …`.
    fn sum_into<T: Copy + std::ops::Add<Output = T>>(
        &self,
        (len, at): (usize, usize),
        buf: &mut [T],
        wide: bool,
        vec: Pick<T>,
    ) -> Result<(), CommError> {
        let n = buf.len();
        self.collect(len, wide, vec, |r, v| {
            let v = &v[at..at + n];
            if r == 0 {
                buf.copy_from_slice(v);
            } else {
                for (b, &x) in buf.iter_mut().zip(v) {
                    *b = *b + x;
                }
            }
        })
    }

    fn reduce<T: Copy + std::ops::Add<Output = T>>(
        &self,
        buf: &mut [T],
        wide: bool,
        vec: Pick<T>,
    ) -> Result<(), CommError> {
        self.put(buf, wide, vec);
        self.sum_into((buf.len(), 0), buf, wide, vec)
    }

    /// The same sums as [`ThreadComm::reduce`] of `send`, in the same order, of this rank's
    /// block only.
    fn reduce_scatter<T: Copy + std::ops::Add<Output = T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        wide: bool,
        vec: Pick<T>,
    ) -> Result<(), CommError> {
        let n = recv.len();
        super::check_scatter(self.size(), send.len(), n)?;
        self.put(send, wide, vec);
        self.sum_into((send.len(), self.rank * n), recv, wide, vec)
    }

    fn gather<T: Copy>(
        &self,
        send: &[T],
        recv: &mut [T],
        wide: bool,
        vec: Pick<T>,
    ) -> Result<(), CommError> {
        let n = send.len();
        super::check_gather(self.size(), n, recv.len())?;
        self.exchange(send, wide, vec, |r, v| {
            recv[r * n..(r + 1) * n].copy_from_slice(v);
        })
    }

    fn bcast<T: Copy>(
        &self,
        buf: &mut [T],
        root: usize,
        wide: bool,
        vec: Pick<T>,
    ) -> Result<(), CommError> {
        if root >= self.size() {
            return Err(CommError::Groups(format!(
                "broadcast root {root} is not a rank of a group of {}",
                self.size()
            )));
        }
        self.put(buf, wide, vec);
        self.collect(buf.len(), wide, vec, |r, v| {
            if r == root {
                buf.copy_from_slice(v);
            }
        })
    }
}

impl Shared {
    fn new(size: usize) -> Shared {
        Shared {
            barrier: Barrier::new(size),
            slots: (0..size).map(|_| Mutex::new(Slot::default())).collect(),
            splits: Mutex::default(),
        }
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
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.gather(send, recv, false, |s| &mut s.f32)
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.gather(send, recv, true, |s| &mut s.f64)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.bcast(buf, root, false, |s| &mut s.f32)
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<(), CommError> {
        self.bcast(buf, root, true, |s| &mut s.f64)
    }
    fn reduce_scatter_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        self.reduce_scatter(send, recv, false, |s| &mut s.f32)
    }
    fn reduce_scatter_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), CommError> {
        self.reduce_scatter(send, recv, true, |s| &mut s.f64)
    }
    fn split(&self, groups: &Groups) -> Result<Rc<dyn Communicator>, CommError> {
        locate(groups, self)?;
        if groups.is_world() {
            return Ok(Rc::new(ThreadComm {
                rank: self.rank,
                shared: Arc::clone(&self.shared),
            }));
        }
        let mut splits = lock(&self.shared.splits);
        if let Some(places) = splits.get(groups) {
            let (rank, shared) = &places[self.rank];
            return Ok(Rc::new(ThreadComm {
                rank: *rank,
                shared: Arc::clone(shared),
            }));
        }
        let places = splits.entry(groups.clone()).or_insert_with(|| {
            let mut places = vec![None; self.size()];
            for list in groups.lists() {
                let shared = Arc::new(Shared::new(list.len()));
                for (position, &r) in list.iter().enumerate() {
                    places[r] = Some((position, Arc::clone(&shared)));
                }
            }
            (places.into_iter())
                .map(|p| p.expect("validated groups list every rank"))
                .collect()
        });
        let (rank, shared) = &places[self.rank];
        Ok(Rc::new(ThreadComm {
            rank: *rank,
            shared: Arc::clone(shared),
        }))
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

    /// Buffers of the wrong lengths are a typed error on every rank that passes them (and on
    /// a single process), not a panic; the communicator still works afterwards.
    #[test]
    fn wrong_buffer_lengths_are_errors() {
        let out = on_ranks(2, |c| {
            let mut short = vec![0f32; 3];
            let gather = c.all_gather_f32(&[1.0, 2.0], &mut short);
            let scatter = c.reduce_scatter_f64(&[1.0; 5], &mut [0.0; 2]);
            let mut ok = vec![0f64; 4];
            c.all_gather_f64(&[c.rank() as f64, 1.0], &mut ok).unwrap();
            (gather, scatter, ok)
        });
        for (gather, scatter, ok) in out {
            assert_eq!(
                gather,
                Err(CommError::BufferLength {
                    op: "all_gather",
                    which: "receive",
                    got: 3,
                    expected: 4
                })
            );
            assert_eq!(
                scatter,
                Err(CommError::BufferLength {
                    op: "reduce_scatter",
                    which: "send",
                    got: 5,
                    expected: 4
                })
            );
            assert_eq!(ok, vec![0.0, 1.0, 1.0, 1.0]);
        }
        let one = crate::comm::SingleProcess;
        let e = one.all_gather_f32(&[1.0], &mut [0.0; 2]).unwrap_err();
        assert!(e.to_string().contains("has 2 elements, expected 1"), "{e}");
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
    fn reduce_scatter_sums_each_block_in_rank_order() {
        // Per block: element 0 is 1e16 + 1 + 1 - 1e16 (0 in rank order, see above), element 1
        // is Σ_r (10·i + r) = 40·i + 6 for its index i in the whole buffer.
        let xs = [1e16, 1.0, 1.0, -1e16];
        let out = on_ranks(4, |c| {
            let r = c.rank();
            let send: Vec<f64> = (0..8)
                .map(|i| {
                    if i % 2 == 0 {
                        xs[r]
                    } else {
                        (10 * i + r) as f64
                    }
                })
                .collect();
            let mut recv = vec![f64::NAN; 2];
            for _ in 0..2 {
                c.reduce_scatter_f64(&send, &mut recv).unwrap();
            }
            recv
        });
        for (k, b) in out.iter().enumerate() {
            assert_eq!(b, &vec![0.0, (40 * (2 * k + 1) + 6) as f64], "rank {k}");
        }
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

    #[test]
    fn a_split_is_made_once_and_its_groups_combine_apart() {
        let groups = Groups::new(vec![vec![2, 0], vec![1, 3]]).unwrap();
        let out = on_ranks(4, |c| {
            let sub = c.split(&groups).unwrap();
            // The state the group's ranks share is made once, by the first rank that asks.
            assert_eq!(lock(&c.shared.splits).len(), 1);
            let again = c.split(&groups).unwrap();
            assert_eq!(lock(&c.shared.splits).len(), 1);
            assert_eq!((again.rank(), again.size()), (sub.rank(), sub.size()));
            let mut b = vec![c.rank() as f64 + 1.0];
            sub.all_reduce_sum_f64(&mut b).unwrap();
            let mut all = vec![0.0; 2];
            sub.all_gather_f64(&[c.rank() as f64], &mut all).unwrap();
            let mut root = vec![c.rank() as f64];
            sub.broadcast_f64(&mut root, 1).unwrap();
            (sub.rank(), sub.size(), b[0], all, root[0])
        });
        // Groups {2, 0} (positions: 2 → 0, 0 → 1) and {1, 3}.
        assert_eq!(out[0], (1, 2, 4.0, vec![2.0, 0.0], 0.0));
        assert_eq!(out[2], (0, 2, 4.0, vec![2.0, 0.0], 0.0));
        assert_eq!(out[1], (0, 2, 6.0, vec![1.0, 3.0], 3.0));
        assert_eq!(out[3], (1, 2, 6.0, vec![1.0, 3.0], 3.0));
        let wrong = on_ranks(2, |c| c.split(&groups).map(|_| ()));
        assert!(wrong.iter().all(|r| matches!(r, Err(CommError::Groups(_)))));
    }
}
