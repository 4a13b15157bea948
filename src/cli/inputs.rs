//! Graph inputs for `run` and `bench`: the `--inputs` JSON object, or a fixed-seed generator.
//!
//! The JSON maps each input name to a number (rank 0) or a nested list in row-major order whose
//! nesting matches the shape exactly; `true`/`false` for `bool`; `"nan"`, `"inf"`, `"-inf"` for
//! non-finite floats. Numbers are rounded once, from their decimal text directly to the input's
//! dtype (serde_json's `arbitrary_precision` keeps the text), and a finite number that rounds to
//! infinity is an error. Every error names the input and the position inside it.
//!
//! Not here: anything about graphs beyond the input names and types. Nothing is allocated in
//! proportion to a declared shape: elements are only stored as the JSON supplies them.

use super::{CliError, InputSig};
use gradlift::{DType, Data, Tensor};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The top-level object as written, keeping repeated keys (serde_json's map would silently keep
/// the last one).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        d.deserialize_any(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping input names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Value>()? {
            entries.push(entry);
        }
        Ok(Entries(entries))
    }
}

/// Converts the `--inputs` JSON text (`what` names its source in messages) to one tensor per
/// input, in `sigs` order.
pub fn parse_inputs(src: &str, what: &str, sigs: &[InputSig]) -> Result<Vec<Tensor>, CliError> {
    let Entries(entries) = serde_json::from_str(src)
        .map_err(|e| CliError::new(format!("{what}: invalid inputs JSON: {e}")))?;
    let known: HashSet<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
    let mut given: HashMap<&str, &Value> = HashMap::with_capacity(entries.len());
    for (name, value) in &entries {
        if given.insert(name, value).is_some() {
            return Err(CliError::new(format!(
                "{what}: input {name:?} is given twice"
            )));
        }
        if !known.contains(name.as_str()) {
            let list: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
            let list = if list.is_empty() {
                "the graph has no inputs".to_string()
            } else {
                format!("its inputs are {}", list.join(", "))
            };
            return Err(CliError::new(format!(
                "{what}: {name:?} is not an input of the graph ({list})"
            )));
        }
    }
    sigs.iter()
        .map(|sig| {
            let Some(&v) = given.get(sig.name.as_str()) else {
                return Err(CliError::new(format!(
                    "{what}: missing input {} ({})",
                    sig.name, sig.ty
                )));
            };
            to_tensor(sig, v).map_err(|m| CliError::new(format!("{what}: input {}: {m}", sig.name)))
        })
        .collect()
}

/// Element storage being filled.
enum Elems {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    I32(Vec<i32>),
}

/// One input value to a tensor of exactly `sig.ty`; the error says where and what.
fn to_tensor(sig: &InputSig, v: &Value) -> Result<Tensor, String> {
    let mut elems = match sig.ty.dtype {
        DType::F32 => Elems::F32(Vec::new()),
        DType::F64 => Elems::F64(Vec::new()),
        DType::Bool => Elems::Bool(Vec::new()),
        DType::I32 => Elems::I32(Vec::new()),
    };
    let mut path = Vec::new();
    fill(sig, 0, v, &mut path, &mut elems)?;
    let data = match elems {
        Elems::F32(v) => Data::F32(v),
        Elems::F64(v) => Data::F64(v),
        Elems::Bool(v) => Data::Bool(v),
        Elems::I32(v) => Data::I32(v),
    };
    Tensor::try_new(sig.ty.shape.clone(), data)
        .ok_or_else(|| "internal error (bug): element count does not match the shape".into())
}

/// Walks axis `axis` of the value. Recursion depth is at most the JSON nesting depth, which
/// serde_json caps at 128.
fn fill(
    sig: &InputSig,
    axis: usize,
    v: &Value,
    path: &mut Vec<usize>,
    out: &mut Elems,
) -> Result<(), String> {
    let shape = &sig.ty.shape;
    if axis == shape.len() {
        return element(v, out).map_err(|m| {
            if path.is_empty() {
                m
            } else {
                format!("{m} at {}", at(&sig.name, path))
            }
        });
    }
    let n = shape[axis];
    match v {
        Value::Array(items) if items.len() == n => {
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                fill(sig, axis + 1, item, path, out)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => Err(format!(
            "expected a list of {n} at {} (the input is {}), found a list of {}",
            at(&sig.name, path),
            sig.ty,
            items.len()
        )),
        other => Err(format!(
            "expected a list of {n} at {} (the input is {}), found {}",
            at(&sig.name, path),
            sig.ty,
            kind(other)
        )),
    }
}

/// `x[1][0]`: a position inside input `x`.
fn at(name: &str, path: &[usize]) -> String {
    let mut s = name.to_string();
    for i in path {
        s.push_str(&format!("[{i}]"));
    }
    s
}

/// What a JSON value is, for messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {}", n.as_str()),
        Value::String(s) => format!("the string {:?}", truncate(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// One scalar element.
fn element(v: &Value, out: &mut Elems) -> Result<(), String> {
    match out {
        Elems::Bool(o) => match v {
            Value::Bool(b) => {
                o.push(*b);
                Ok(())
            }
            other => Err(format!("expected true or false, found {}", kind(other))),
        },
        Elems::I32(o) => match v {
            Value::Number(n) => match n.as_str().parse::<i32>() {
                Ok(x) => {
                    o.push(x);
                    Ok(())
                }
                Err(_) => Err(format!(
                    "expected an integer in the i32 range, found the number {}",
                    n.as_str()
                )),
            },
            other => Err(format!("expected an integer (i32), found {}", kind(other))),
        },
        Elems::F32(o) => {
            o.push(float(v, "f32", |s| {
                s.parse::<f32>().ok().map(|x| (x, x.is_infinite()))
            })?);
            Ok(())
        }
        Elems::F64(o) => {
            o.push(float(v, "f64", |s| {
                s.parse::<f64>().ok().map(|x| (x, x.is_infinite()))
            })?);
            Ok(())
        }
    }
}

/// A float element: a JSON number parsed by `parse` straight from its text (which reports
/// whether it overflowed to infinity), or one of the strings `"nan"`, `"inf"`, `"-inf"`.
fn float<T: NonFinite>(
    v: &Value,
    dtype: &str,
    parse: impl Fn(&str) -> Option<(T, bool)>,
) -> Result<T, String> {
    match v {
        Value::Number(n) => match parse(n.as_str()) {
            Some((x, false)) => Ok(x),
            Some((_, true)) => Err(format!("{} is too large for {dtype}", n.as_str())),
            None => Err(format!("cannot read the number {} as {dtype}", n.as_str())),
        },
        Value::String(s) if s == "nan" => Ok(T::NAN),
        Value::String(s) if s == "inf" => Ok(T::INF),
        Value::String(s) if s == "-inf" => Ok(T::NEG_INF),
        other => Err(format!(
            "expected a number or \"nan\", \"inf\", \"-inf\" ({dtype}), found {}",
            kind(other)
        )),
    }
}

/// The non-finite values of a float type.
trait NonFinite {
    const NAN: Self;
    const INF: Self;
    const NEG_INF: Self;
}

impl NonFinite for f32 {
    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;
    const NEG_INF: f32 = f32::NEG_INFINITY;
}

impl NonFinite for f64 {
    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;
    const NEG_INF: f64 = f64::NEG_INFINITY;
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fixed, well-mixed generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The seed of the generator used without `--inputs` (fixed, so runs are reproducible).
const SEED: u64 = 0x6772_6164_6c69_6674; // "gradlift"

/// Inputs from the fixed-seed generator: floats uniform in [-1, 1), bools with probability 1/2.
/// Callers check the graph's memory needs first ([`super::check_memory`]).
pub fn random_inputs(sigs: &[InputSig]) -> Vec<Tensor> {
    let mut rng = SplitMix64(SEED);
    sigs.iter()
        .map(|sig| {
            let n = sig.ty.numel();
            let data = match sig.ty.dtype {
                // 24 (53) random bits scaled to [0, 2) exactly, then shifted: exact in the dtype.
                DType::F32 => Data::F32(
                    (0..n)
                        .map(|_| (rng.next() >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0)
                        .collect(),
                ),
                DType::F64 => Data::F64(
                    (0..n)
                        .map(|_| (rng.next() >> 11) as f64 * (2.0 / (1u64 << 53) as f64) - 1.0)
                        .collect(),
                ),
                DType::Bool => Data::Bool((0..n).map(|_| rng.next() >> 63 == 1).collect()),
                // Small non-negative integers, 0..=7 (useful as indices).
                DType::I32 => Data::I32((0..n).map(|_| (rng.next() >> 61) as i32).collect()),
            };
            Tensor::new(sig.ty.shape.clone(), data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradlift::TensorType;

    fn sig(name: &str, dtype: DType, shape: &[usize]) -> InputSig {
        InputSig {
            name: name.into(),
            ty: TensorType::new(dtype, shape.to_vec()),
        }
    }

    fn err(src: &str, sigs: &[InputSig]) -> String {
        match parse_inputs(src, "in.json", sigs) {
            Ok(t) => panic!("expected an error for {src}, got {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn numbers_round_once_to_their_dtype() {
        // Just above the f32 midpoint 1 + 2^-24 (by ~9.5e-19): rounds up to 1 + 2^-23 directly,
        // but via f64 (which drops the excess) it becomes the exact midpoint, a tie that rounds
        // to even, 1.0.
        let text = "1.000000059604644776343413634432";
        let direct: f32 = text.parse().unwrap();
        let via_f64 = text.parse::<f64>().unwrap() as f32;
        assert_eq!(direct, 1.0 + f32::EPSILON);
        assert_eq!(via_f64, 1.0);
        let t = parse_inputs(
            &format!("{{\"x\": {text}}}"),
            "in",
            &[sig("x", DType::F32, &[])],
        )
        .unwrap();
        assert_eq!(t[0].data(), &Data::F32(vec![1.0 + f32::EPSILON]));
    }

    #[test]
    fn nested_lists_fill_row_major() {
        let sigs = [sig("a", DType::F64, &[2, 3]), sig("b", DType::Bool, &[2])];
        let t = parse_inputs(
            r#"{"b": [true, false], "a": [[1, 2, 3], [4, 5, "-inf"]]}"#,
            "in",
            &sigs,
        )
        .unwrap();
        assert_eq!(
            t[0].data(),
            &Data::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, f64::NEG_INFINITY])
        );
        assert_eq!(t[0].shape(), &[2, 3]);
        assert_eq!(t[1].data(), &Data::Bool(vec![true, false]));
    }

    #[test]
    fn errors_name_the_input_and_position() {
        let sigs = [sig("a", DType::F32, &[2, 2])];
        let e = err(r#"{"a": [[1, 2], [3]]}"#, &sigs);
        assert!(e.contains("input a") && e.contains("a[1]"), "{e}");
        let e = err(r#"{"a": [[1, 2], [3, 1e39]]}"#, &sigs);
        assert!(
            e.contains("too large for f32") && e.contains("a[1][1]"),
            "{e}"
        );
        let e = err(r#"{"a": [[1, 2], [3, true]]}"#, &sigs);
        assert!(e.contains("found true"), "{e}");
        let e = err(r#"{"a": [[1, 2], [3, 4]], "a": 1}"#, &sigs);
        assert!(e.contains("given twice"), "{e}");
        let e = err("[1]", &sigs);
        assert!(e.contains("invalid inputs JSON"), "{e}");
        let e = err(r#"{"a": [1]}"#, &[sig("a", DType::F64, &[])]);
        assert!(e.contains("input a") && e.contains("found a list"), "{e}");
        // f64 overflows only beyond ~1.8e308.
        let e = err(r#"{"a": -1e309}"#, &[sig("a", DType::F64, &[])]);
        assert!(e.contains("too large for f64"), "{e}");
        let e = err(r#"{"a": 1}"#, &[sig("a", DType::Bool, &[])]);
        assert!(e.contains("expected true or false"), "{e}");
    }

    #[test]
    fn generator_is_fixed_and_in_range() {
        let sigs = [sig("a", DType::F32, &[1000]), sig("b", DType::F64, &[1000])];
        let t1 = random_inputs(&sigs);
        let t2 = random_inputs(&sigs);
        assert_eq!(t1, t2);
        for t in &t1 {
            let v = t.to_f64_vec();
            assert!(v.iter().all(|&x| (-1.0..1.0).contains(&x)));
            // Spread over the range, not stuck: both halves are populated.
            assert!(v.iter().any(|&x| x < -0.5) && v.iter().any(|&x| x > 0.5));
        }
    }
}
