//! The JSON the CLI prints: tensors as numbers or nested row-major lists, written by hand.
//!
//! Floats are written in the shortest form that reads back to the identical value of their own
//! dtype (Rust's `{:?}` of `f32`/`f64`, which is shortest round-trip and always valid JSON for
//! finite values: `0.1`, `1.0`, `1e-7`); non-finite values are the strings `"nan"`, `"inf"`,
//! `"-inf"`; bools are `true`/`false`. Not here: reading JSON (see `inputs`).

use gradlift::{Data, Tensor};
use std::fmt::Write;

/// Appends `{"k1": v1, "k2": v2}` in the given order.
pub fn object<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Tensor)>) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        string(out, k);
        out.push_str(": ");
        tensor(out, v);
    }
    out.push('}');
}

/// Appends a JSON string literal.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a tensor: a number for rank 0, nested lists in row-major order otherwise.
pub fn tensor(out: &mut String, t: &Tensor) {
    let shape = t.shape();
    let rank = shape.len();
    // blocks[k] = number of elements spanned by one entry at depth k (product of shape[k..]);
    // a '[' opens at depth k before element i exactly when i % blocks[k] == 0.
    let mut blocks = vec![1usize; rank];
    let mut acc = 1usize;
    for k in (0..rank).rev() {
        acc = acc.saturating_mul(shape[k]);
        blocks[k] = acc;
    }
    for i in 0..t.numel() {
        if i == 0 {
            push_n(out, '[', rank);
        } else {
            let opened = blocks.iter().filter(|&&b| i % b == 0).count();
            push_n(out, ']', opened);
            out.push_str(", ");
            push_n(out, '[', opened);
        }
        element(out, t.data(), i);
    }
    push_n(out, ']', rank);
}

fn push_n(out: &mut String, c: char, n: usize) {
    out.extend(std::iter::repeat_n(c, n));
}

fn element(out: &mut String, data: &Data, i: usize) {
    match data {
        Data::F32(v) => float(out, v[i].is_nan(), v[i].is_infinite(), v[i] < 0.0, v[i]),
        Data::F64(v) => float(out, v[i].is_nan(), v[i].is_infinite(), v[i] < 0.0, v[i]),
        Data::Bool(v) => out.push_str(if v[i] { "true" } else { "false" }),
        Data::I32(v) => out.push_str(&v[i].to_string()),
    }
}

fn float(out: &mut String, nan: bool, inf: bool, neg: bool, x: impl std::fmt::Debug) {
    if nan {
        out.push_str("\"nan\"");
    } else if inf {
        out.push_str(if neg { "\"-inf\"" } else { "\"inf\"" });
    } else {
        let _ = write!(out, "{x:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(t: &Tensor) -> String {
        let mut s = String::new();
        tensor(&mut s, t);
        s
    }

    #[test]
    fn floats_are_shortest_in_their_own_dtype() {
        assert_eq!(show(&Tensor::from_f32(vec![], vec![0.1])), "0.1");
        assert_eq!(
            show(&Tensor::from_f64(vec![], vec![0.1f32 as f64])),
            "0.10000000149011612"
        );
        assert_eq!(show(&Tensor::from_f64(vec![], vec![13.0])), "13.0");
        assert_eq!(show(&Tensor::from_f32(vec![], vec![1e-7])), "1e-7");
        assert_eq!(show(&Tensor::from_f64(vec![], vec![-0.0])), "-0.0");
        assert_eq!(
            show(&Tensor::from_f32(
                vec![3],
                vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
            )),
            r#"["nan", "inf", "-inf"]"#
        );
    }

    #[test]
    fn nesting_follows_the_shape() {
        let t = Tensor::from_f64(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(show(&t), "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]");
        let t = Tensor::from_f64(vec![2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(show(&t), "[[[1.0, 2.0]], [[3.0, 4.0]]]");
        let t = Tensor::new(vec![1, 1], Data::Bool(vec![true]));
        assert_eq!(show(&t), "[[true]]");
    }

    #[test]
    fn keys_are_escaped() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\u000a""#);
    }
}
