//! The threads a kernel call shares its work with: the calling thread plus helper threads that
//! stay awake between parallel regions.
//!
//! A call on more than one thread forks a few times (once per threaded GEMM and per parallel
//! group), each fork a few tens of microseconds of work. A sleeping thread takes 10–35 µs to
//! wake on a virtual machine (measured here with rayon's pool: the wake of a parked worker,
//! the hop of a caller into the pool and the wake of the parked caller afterwards each cost
//! that much), and the scheduler may wake it on the waker's own core. A 200 µs training step
//! that sleeps and wakes three times per call loses a quarter of its time. So, as OpenMP
//! runtimes do, the helpers spin for a while ([`LINGER`]) after each piece of work before they
//! park, and the calling thread takes part instead of handing the call to a pool.
//!
//! The protocol: [`run`] publishes one job (a closure that claims pieces of work from a shared
//! counter until none are left, so the caller alone can finish it) and runs it itself; up to
//! `threads − 1` helpers join while the job is open; the caller then closes the job and waits
//! for the helpers that joined. A helper that arrives late finds nothing to claim, so the
//! result never depends on who ran what (the callers make every piece write its own memory).
//!
//! One job runs at a time: a second caller (another thread calling a kernel concurrently, or
//! a GEMM inside a parallel group's chunk) finds the team taken and runs its job alone.
//! Helpers are started on first use, one per extra thread ever asked for, and live for the
//! process; a parked helper costs nothing.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins after its last piece of work before it parks. Long enough to span
/// the serial stretches of a step and the gap between two calls in a training loop, short
/// enough that an idle process gives its cores back within a millisecond.
const LINGER: Duration = Duration::from_millis(1);

/// Spins between looks at the clock, and between yields of the core (another thread that is
/// ready on this core gets it).
const SPINS_PER_CHECK: u32 = 256;

/// `state` layout: the job's sequence number above bit 32, bit 31 set while the job is open,
/// and the number of helpers inside the job below.
const OPEN: u64 = 1 << 31;
const ACTIVE: u64 = OPEN - 1;
const SEQ: u64 = 1 << 32;

/// A job: the caller's closure, as a pointer to a `&dyn Fn` on the caller's stack.
type JobRef<'a> = &'a (dyn Fn() + Sync);

struct Team {
    state: AtomicU64,
    /// The address of the open job's [`JobRef`]; valid while a helper is counted in `state`.
    job: AtomicUsize,
    /// How many helpers the open job takes (its thread count − 1).
    wanted: AtomicUsize,
    /// Set by the caller that owns the team for its job.
    taken: AtomicBool,
    /// Helpers that are parked or about to park.
    sleepers: AtomicUsize,
    /// A helper's job panicked; the caller panics too once the job is closed.
    panicked: AtomicBool,
    helpers: Mutex<Vec<Thread>>,
    /// Helpers whose thread has started running.
    started: AtomicUsize,
}

/// Runs `work` on the calling thread and on up to `threads − 1` helpers at once, and returns
/// when every one of them has returned from it. `work` must claim its pieces (from a shared
/// counter, say) and return when none are left: any number of threads, the caller alone
/// included, may run it, and a helper may start it after the others have finished.
pub(super) fn run(threads: usize, work: &(dyn Fn() + Sync)) {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(Team::new).run(threads, work);
}

/// Spins, yielding the core every [`SPINS_PER_CHECK`] rounds.
fn backoff(spins: &mut u32) {
    std::hint::spin_loop();
    *spins += 1;
    if (*spins).is_multiple_of(SPINS_PER_CHECK) {
        std::thread::yield_now();
    }
}

impl Team {
    fn new() -> Team {
        Team {
            state: AtomicU64::new(0),
            job: AtomicUsize::new(0),
            wanted: AtomicUsize::new(0),
            taken: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            helpers: Mutex::new(Vec::new()),
            started: AtomicUsize::new(0),
        }
    }

    /// [`run`] on this self.
    fn run(&'static self, threads: usize, work: &(dyn Fn() + Sync)) {
        if threads <= 1
            || self
                .taken
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            work();
            return;
        }
        self.ensure_helpers(threads - 1);
        let job: JobRef<'_> = work;
        self.job
            .store(std::ptr::from_ref(&job) as usize, Ordering::Relaxed);
        self.wanted.store(threads - 1, Ordering::Relaxed);
        // Open the job (no helper is inside: the last caller waited for them all).
        let seq = (self.state.load(Ordering::Relaxed) & !(OPEN | ACTIVE)).wrapping_add(SEQ);
        self.state.store(seq | OPEN, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake(threads - 1);
        }
        // A panic in `work` still closes the job and waits for the helpers before unwinding, so
        // no helper reads the caller's frame after it is gone.
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        self.state.fetch_and(!OPEN, Ordering::AcqRel);
        let mut spins = 0;
        while self.state.load(Ordering::Acquire) & ACTIVE != 0 {
            backoff(&mut spins);
        }
        let theirs = self.panicked.swap(false, Ordering::Relaxed);
        self.taken.store(false, Ordering::Release);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        assert!(!theirs, "a kernel thread panicked");
    }

    /// Starts helpers until there are `n`.
    fn ensure_helpers(&'static self, n: usize) {
        let mut helpers = self.helpers.lock().unwrap_or_else(|e| e.into_inner());
        while helpers.len() < n {
            let started = &self.started;
            let before = started.load(Ordering::Acquire);
            let spawned = std::thread::Builder::new()
                .name(format!("gradlift-kernel-{}", helpers.len() + 1))
                .spawn(move || {
                    started.fetch_add(1, Ordering::Release);
                    self.helper();
                });
            match spawned {
                Ok(h) => helpers.push(h.thread().clone()),
                // Without the thread the caller does its share: nothing is lost but speed.
                Err(_) => break,
            }
            // Wait until the thread runs, so that its start (which allocates) belongs to
            // this call, not to a later one.
            while started.load(Ordering::Acquire) == before {
                std::thread::yield_now();
            }
        }
    }

    /// Unparks up to `n` helpers (a helper that is not parked keeps the token and skips its
    /// next park, then finds the job or parks again).
    fn wake(&self, n: usize) {
        let helpers = self.helpers.lock().unwrap_or_else(|e| e.into_inner());
        for h in helpers.iter().take(n) {
            h.unpark();
        }
    }

    /// A helper's life: join each open job it has not joined yet, spin for [`LINGER`] after
    /// the last one, then park until a caller wakes it.
    fn helper(&self) {
        let mut last_seq = 0;
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            let s = self.state.load(Ordering::Acquire);
            if s & OPEN != 0 && s & !(OPEN | ACTIVE) != last_seq {
                if (s & ACTIVE) as usize >= self.wanted.load(Ordering::Relaxed) {
                    last_seq = s & !(OPEN | ACTIVE);
                } else if self
                    .state
                    .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    last_seq = s & !(OPEN | ACTIVE);
                    self.join_job();
                    idle_since = Instant::now();
                }
                continue;
            }
            backoff(&mut spins);
            if spins.is_multiple_of(SPINS_PER_CHECK) && idle_since.elapsed() >= LINGER {
                self.park();
                idle_since = Instant::now();
            }
        }
    }

    /// Runs the open job this helper was just counted into, then leaves it.
    fn join_job(&self) {
        let job = self.job.load(Ordering::Relaxed) as *const JobRef<'_>;
        // SAFETY: the caller stored the job's address before opening the job (the helper's
        // successful compare-exchange on `state` acquired that store), and it keeps the
        // job's frame alive until `state` counts no helper inside; this helper is counted
        // until the `fetch_sub` below.
        let work: JobRef<'_> = unsafe { *job };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
            self.panicked.store(true, Ordering::Relaxed);
        }
        self.state.fetch_sub(1, Ordering::Release);
    }

    /// Parks until unparked, unless a job opened meanwhile (`sleepers` and `state` are both
    /// sequentially consistent, so either the caller sees this helper counted and unparks it,
    /// or this helper sees the open job).
    fn park(&self) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.state.load(Ordering::SeqCst) & OPEN == 0 {
            std::thread::park();
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A team of the test's own, so that tests running side by side do not share one.
    fn own_team() -> &'static Team {
        Box::leak(Box::new(Team::new()))
    }

    /// Every piece runs exactly once, whoever claims it, on any thread count, also when
    /// callers on several threads share the team.
    #[test]
    fn each_piece_runs_once() {
        let team = own_team();
        std::thread::scope(|s| {
            for caller in 0..3 {
                s.spawn(move || {
                    for round in 0..200 {
                        let pieces = 1 + (round * 7 + caller) % 13;
                        let next = AtomicUsize::new(0);
                        let done: Vec<AtomicUsize> =
                            (0..pieces).map(|_| AtomicUsize::new(0)).collect();
                        team.run(1 + round % 4, &|| {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= pieces {
                                    break;
                                }
                                done[i].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }

    /// A helper that parked is woken by the next job and takes part in it.
    #[test]
    fn parked_helpers_wake_and_join() {
        let team = own_team();
        // Let the helper start, go idle and park.
        team.run(2, &|| {});
        std::thread::sleep(LINGER * 5);
        let me = std::thread::current().id();
        let others = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Each invocation waits until some thread other than the caller has joined (or the
        // deadline passes, so a broken wake fails the assert instead of hanging).
        team.run(2, &|| {
            if std::thread::current().id() != me {
                others.fetch_add(1, Ordering::SeqCst);
            }
            while others.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                std::hint::spin_loop();
            }
        });
        assert_eq!(others.load(Ordering::SeqCst), 1);
    }

    /// A panic in the caller's share reaches the caller after the helpers have left.
    #[test]
    fn a_panic_reaches_the_caller() {
        let team = own_team();
        let r = std::panic::catch_unwind(|| team.run(2, &|| panic!("boom")));
        assert!(r.is_err());
        // The team is usable again.
        let n = AtomicUsize::new(0);
        team.run(2, &|| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert!(n.load(Ordering::SeqCst) >= 1);
    }
}
