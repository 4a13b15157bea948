//! Binomial checkpointing (Griewank and Walther's "revolve"): the order in which a backward
//! loop recomputes the carries it needs from a few stored ones.
//!
//! A backward loop over `n` forward steps needs the carry entering each step `s`, from
//! `s = n - 1` down to `0`. Storing all `n` is the full tape. With `k` snapshot slots (the
//! first holds the initial carry) plus one work slot, [`drive`] reverses `n` steps with at most
//! `r` forward recomputations per step whenever `n ≤ C(k + r, k)`: memory `O(k)` for time
//! `O(r·n)`. With `k ≥ n` every carry is computed once and kept (the full tape, no
//! recomputation).
//!
//! The schedule only orders work; every step runs the same compiled body on the same carry, so
//! results are bitwise identical for every `k`. The interpreter and the JIT replay the same
//! schedule through [`Stepper`].

/// What a backward loop's runtime does when the schedule says so.
pub trait Stepper {
    /// Runs forward steps `s0..s1` from the carry in slot `from` and stores the carry entering
    /// step `s1` in slot `to` (`from != to`).
    fn advance(&mut self, from: usize, to: usize, s0: usize, s1: usize);
    /// Runs the backward step of forward step `s`, whose entering carry is in slot `slot`.
    fn backward(&mut self, slot: usize, s: usize);
}

/// Steps that `snaps - 1` free snapshots (beyond the one holding the first carry) and at most
/// `r` recomputations per step can reverse: `C(snaps + r, snaps)`, saturating.
pub fn reversible(snaps: usize, r: usize) -> usize {
    // L(f, r) = C(f + r + 1, f + 1) with f = snaps - 1, computed as a product that stays exact.
    let (s, r) = (snaps as u128, r as u128);
    let k = s.min(r);
    let mut c: u128 = 1;
    for i in 1..=k {
        c = c.saturating_mul(s + r + 1 - i) / i;
        if c > usize::MAX as u128 {
            return usize::MAX;
        }
    }
    c as usize
}

/// The number of snapshot slots a schedule uses for `n` steps when `snapshots` are allowed: at
/// least 1, at most `n`.
pub fn slots(n: usize, snapshots: usize) -> usize {
    snapshots.clamp(1, n.max(1))
}

/// The slot a schedule uses as scratch when it has no free snapshot: index [`slots`].
pub fn work_slot(n: usize, snapshots: usize) -> usize {
    slots(n, snapshots)
}

/// A pending part of a schedule: (first step, end, slot holding the carry entering the first
/// step, free slots after it).
pub type Frame = (usize, usize, usize, usize);

/// The forward steps a schedule runs to reverse `n` steps with `snapshots` (the full tape:
/// `n - 1`, each carry computed once).
pub fn forward_steps(n: usize, snapshots: usize) -> u64 {
    struct Count(u64);
    impl Stepper for Count {
        fn advance(&mut self, _: usize, _: usize, s0: usize, s1: usize) {
            self.0 += (s1 - s0) as u64;
        }
        fn backward(&mut self, _: usize, _: usize) {}
    }
    let mut c = Count(0);
    drive(n, snapshots, &mut c);
    c.0
}

/// Reverses `n` forward steps with `snapshots` slots (slot 0 holds the initial carry) plus the
/// work slot [`work_slot`], calling `st` in schedule order. Iterative: no recursion.
pub fn drive(n: usize, snapshots: usize, st: &mut impl Stepper) {
    let mut stack = vec![(0, 0, 0, 0); slots(n, snapshots)];
    drive_on(n, snapshots, st, &mut stack);
}

/// [`drive`] keeping its pending parts in `stack`, which holds at least
/// [`slots`]`(n, snapshots)` frames, so a runtime can keep it with its other scratch memory
/// and allocate nothing. That many suffice: the free-slot counts of the pending parts strictly
/// decrease from the bottom of the stack to its top (a part with `f` free slots is replaced by
/// its two halves, with `f` and `f - 1`), and lie in `0..slots`.
pub fn drive_on(n: usize, snapshots: usize, st: &mut impl Stepper, stack: &mut [Frame]) {
    if n == 0 {
        return;
    }
    let k = slots(n, snapshots);
    let work = work_slot(n, snapshots);
    stack[0] = (0, n, 0, k - 1);
    let mut top = 1;
    while top > 0 {
        top -= 1;
        let (a, b, slot, free) = stack[top];
        let len = b - a;
        if len == 1 {
            st.backward(slot, a);
            continue;
        }
        if free == 0 {
            for s in (a + 1..b).rev() {
                st.advance(slot, work, a, s);
                st.backward(work, s);
            }
            st.backward(slot, a);
            continue;
        }
        let m = a + split(len, free);
        st.advance(slot, slot + 1, a, m);
        stack[top] = (a, m, slot, free);
        stack[top + 1] = (m, b, slot + 1, free - 1);
        top += 2;
    }
}

/// How many of `len` steps go to the left part when `free` snapshots remain: the fewest
/// recomputations `r` that can reverse `len` steps, and the right part as large as `r` allows.
fn split(len: usize, free: usize) -> usize {
    let snaps = free + 1;
    let mut r = 1;
    while reversible(snaps, r) < len {
        r += 1;
    }
    let right_max = reversible(free, r);
    len.saturating_sub(right_max).max(1).min(len - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a schedule on carries that are step numbers, checking each backward step
    /// gets the carry entering its step, in reverse order; counts forward steps.
    struct Check {
        slots: Vec<Option<usize>>,
        next_back: usize,
        forward_steps: usize,
        max_recompute: Vec<usize>,
    }

    impl Stepper for Check {
        fn advance(&mut self, from: usize, to: usize, s0: usize, s1: usize) {
            assert_ne!(from, to);
            assert_eq!(
                self.slots[from],
                Some(s0),
                "slot {from} holds the carry of step {s0}"
            );
            assert!(s0 < s1);
            for s in s0..s1 {
                self.max_recompute[s] += 1;
            }
            self.forward_steps += s1 - s0;
            self.slots[to] = Some(s1);
        }
        fn backward(&mut self, slot: usize, s: usize) {
            assert_eq!(
                self.next_back,
                s + 1,
                "backward steps run from last to first"
            );
            assert_eq!(self.slots[slot], Some(s));
            self.next_back = s;
        }
    }

    fn check(n: usize, snapshots: usize) -> Check {
        let mut c = Check {
            slots: vec![None; work_slot(n, snapshots) + 1],
            next_back: n,
            forward_steps: 0,
            max_recompute: vec![0; n],
        };
        c.slots[0] = Some(0);
        drive(n, snapshots, &mut c);
        assert_eq!(c.next_back, 0, "n={n} k={snapshots}: every step reversed");
        c
    }

    #[test]
    fn binomial_counts_match_hand_values() {
        assert_eq!(reversible(1, 0), 1);
        assert_eq!(reversible(1, 3), 4); // one slot: recompute from the start
        assert_eq!(reversible(2, 2), 6); // C(4, 2)
        assert_eq!(reversible(3, 3), 20); // C(6, 3)
        assert_eq!(reversible(1000, 2), 501_501); // C(1002, 2)
        assert_eq!(reversible(200, 200), usize::MAX);
    }

    #[test]
    fn every_schedule_reverses_every_step_with_the_right_carry() {
        for n in [1, 2, 3, 7, 20, 100, 257] {
            for k in [1, 2, 3, 5, 16, n, n + 3] {
                check(n, k);
            }
        }
    }

    #[test]
    fn enough_snapshots_is_the_full_tape_and_few_stay_within_the_binomial_bound() {
        let full = check(50, 50);
        assert_eq!(full.forward_steps, 49, "each carry computed once");
        for (n, k) in [(20, 3), (100, 5), (1000, 10), (100_000, 1000)] {
            let mut r = 1;
            while reversible(k, r) < n {
                r += 1;
            }
            let c = check(n, k);
            let worst = c.max_recompute.iter().copied().max().unwrap();
            assert!(
                worst <= r,
                "n={n} k={k}: a step recomputed {worst} > {r} times"
            );
            assert!(
                c.forward_steps <= r * n,
                "n={n} k={k}: {} steps",
                c.forward_steps
            );
        }
    }
}
