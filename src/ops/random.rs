//! Counter-based random numbers: `random_uniform`, from Philox-4x32-10 (Salmon et al.,
//! "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the Random123 reference).
//!
//! `random_uniform %seed, %counter type=TYPE` (`seed` and `counter` are `i32[]` scalars, TYPE
//! a float type) fills its result with uniform numbers in `[0, 1)`. Element `e` is a pure
//! function of `(seed, counter, e)`: the Philox key is `[seed, 0]` and block `j` of the result
//! is encrypted from the counter `[j, counter, 0, 0]` (bit patterns of the `i32`s as `u32`).
//! An `f32` element `e` takes word `e % 4` of block `e / 4`, keeps its top 24 bits and scales
//! by 2⁻²⁴; an `f64` element takes words `2(e % 2)` (low half) and `2(e % 2) + 1` (high half)
//! of block `e / 2`, keeps the top 53 bits of that 64-bit value and scales by 2⁻⁵³. So the same
//! seed and counter give the same bits on every backend, block split and thread count, and
//! different counters give independent streams (for dropout, step `t` passes counter `t`).
//!
//! No derivative flows through it. Normal samples are a builder composite (Box–Muller,
//! [`crate::GraphBuilder::random_normal`]).

use super::{Arity, AttrKind, OpProps, OpRules};
use crate::ir::{Attrs, DType, TensorType};
use crate::tensor::{Data, Tensor};

/// Philox multipliers and Weyl key increments (Random123's `PHILOX_M4x32_*`, `PHILOX_W32_*`).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox-4x32 with 10 rounds: encrypts `ctr` under `key` (bit-exact with Random123's
/// `philox4x32_R(10, ctr, key)`).
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

fn scalar_i32(t: &Tensor) -> u32 {
    match t.data() {
        Data::I32(v) => v[0] as u32,
        _ => unreachable!("i32 scalar checked by infer"),
    }
}

/// `y = uniform [0, 1)` samples of `type=TYPE` from Philox-4x32-10 keyed by `seed` at
/// `counter` (both `i32[]`); no derivative.
pub(super) const RANDOM_UNIFORM: OpRules = OpRules {
    name: "random_uniform",
    arity: Arity::Exact(2),
    attrs: AttrKind::Random,
    props: OpProps {
        commutative: false,
        elementwise: false,
        differentiable: false,
    },
    infer: |t, a| {
        let Attrs::Random { ty } = a else {
            unreachable!("attribute kind checked")
        };
        for (k, what) in ["the seed", "the counter"].iter().enumerate() {
            if *t[k] != TensorType::scalar(DType::I32) {
                return Err(format!("{what} must be i32[], found {}", t[k]));
            }
        }
        if !ty.dtype.is_float() || !ty.is_valid() {
            return Err(format!(
                "the result type must be a valid float type, found {ty}"
            ));
        }
        Ok(ty.clone())
    },
    eval: |n, a| {
        let key = [scalar_i32(a[0]), 0];
        let counter = scalar_i32(a[1]);
        let block = |j: usize| philox4x32_10([j as u32, counter, 0, 0], key);
        let numel = n.ty.numel();
        let data = match n.ty.dtype {
            DType::F32 => Data::F32(
                (0..numel)
                    .map(|e| (block(e / 4)[e % 4] >> 8) as f32 * (1.0 / 16_777_216.0))
                    .collect(),
            ),
            _ => Data::F64(
                (0..numel)
                    .map(|e| {
                        let w = block(e / 2);
                        let bits = u64::from(w[2 * (e % 2) + 1]) << 32 | u64::from(w[2 * (e % 2)]);
                        (bits >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
                    })
                    .collect(),
            ),
        };
        Tensor::new(n.ty.shape.clone(), data)
    },
    jvp: None,
    vjp: None,
    math: None,
    lower: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's `kat_vectors` for philox4x32 with 10 rounds.
    #[test]
    fn philox_matches_the_published_known_answers() {
        let cases = [
            (
                [0u32; 4],
                [0u32; 2],
                [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
            ),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (ctr, key, want) in cases {
            assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:x?} key {key:x?}");
        }
    }
}
