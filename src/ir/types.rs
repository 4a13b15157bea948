//! Element types and static tensor types.
//!
//! A [`TensorType`] is a dtype plus a static shape. Rank 0 is a scalar. Element counts are
//! computed with checked arithmetic and capped at [`MAX_ELEMENTS`], so no type can ask for
//! absurd memory.

use std::fmt;

/// The largest number of elements one tensor may hold (2^31 − 1, as `docs/gir.md` defines).
pub const MAX_ELEMENTS: usize = (1 << 31) - 1;

/// Why a zero dimension is refused, for error messages: the reason, not just the rule.
pub const EMPTY_TENSOR_REASON: &str = "gradlift has no empty tensors: every value holds at \
     least one element, so every reduction (reduce_max, reduce_mean, ...) has a defined result; \
     give each dimension a size of 1 or more";

/// What is wrong with `shape` as the shape of a type (a zero dimension, or more than
/// [`MAX_ELEMENTS`] elements), or `None` if it is a valid shape.
pub fn shape_problem(shape: &[usize]) -> Option<String> {
    if let Some(axis) = shape.iter().position(|&d| d == 0) {
        return Some(format!(
            "dimension {axis} of {shape:?} is 0 ({EMPTY_TENSOR_REASON})"
        ));
    }
    checked_numel(shape)
        .is_none()
        .then(|| format!("{shape:?} has more than 2^31 - 1 elements (the largest tensor allowed)"))
}

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary64.
    F64,
    /// Boolean (the result of comparisons; carries no derivative).
    Bool,
    /// 32-bit signed integer (index tensors for `gather`/`scatter_add`, `argmax` results,
    /// random seeds; carries no derivative).
    I32,
}

impl DType {
    /// The `.gir` spelling (`f32`, `f64`, `bool`, `i32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::Bool => "bool",
            DType::I32 => "i32",
        }
    }

    /// Parses a `.gir` dtype name.
    pub fn from_name(s: &str) -> Option<DType> {
        match s {
            "f32" => Some(DType::F32),
            "f64" => Some(DType::F64),
            "bool" => Some(DType::Bool),
            "i32" => Some(DType::I32),
            _ => None,
        }
    }

    /// True for `f32` and `f64`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Size of one element in bytes as stored in kernel buffers (`bool` is one byte).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements of a shape, or `None` if it overflows or exceeds [`MAX_ELEMENTS`].
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d)?;
        if n > MAX_ELEMENTS {
            return None;
        }
    }
    Some(n)
}

/// A static tensor type: dtype and shape (`f64[2,3]`; `f64[]` is a scalar).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (row-major). Every dimension is positive.
    pub shape: Vec<usize>,
}

impl TensorType {
    /// A type from a dtype and shape. The caller guarantees the shape is valid
    /// (use [`TensorType::checked`] for untrusted shapes).
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// A scalar type.
    pub fn scalar(dtype: DType) -> TensorType {
        TensorType {
            dtype,
            shape: Vec::new(),
        }
    }

    /// A type, or `None` if a dimension is zero or the element count exceeds [`MAX_ELEMENTS`].
    pub fn checked(dtype: DType, shape: Vec<usize>) -> Option<TensorType> {
        let t = TensorType { dtype, shape };
        t.is_valid().then_some(t)
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements. Saturates at `usize::MAX` instead of overflowing, so an unchecked
    /// type built with [`TensorType::new`] cannot make this panic or wrap (validated types, from
    /// [`TensorType::checked`], the parser, the builder and the shape rules, have at most
    /// [`MAX_ELEMENTS`]).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// True if the type is valid: every dimension positive and at most [`MAX_ELEMENTS`]
    /// elements (what [`TensorType::checked`] accepts).
    pub fn is_valid(&self) -> bool {
        !self.shape.contains(&0) && checked_numel(&self.shape).is_some()
    }

    /// Bytes of one value of this type (saturating; at most 2^34 for valid types).
    pub fn size_bytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size_bytes())
    }

    /// True for rank 0.
    pub fn is_scalar(&self) -> bool {
        self.shape.is_empty()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Row-major strides (in elements) of a shape (saturating, so unchecked shapes cannot make
/// this overflow; strides of valid shapes are exact).
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// NumPy broadcasting of two shapes, or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Strides (in elements) for reading a tensor of shape `from` broadcast to shape `to`:
/// one entry per axis of `to`, zero on broadcast axes. `from` must broadcast to `to`.
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let s = strides(from);
    let off = to.len() - from.len();
    (0..to.len())
        .map(|i| {
            if i < off || from[i - off] == 1 {
                0
            } else {
                s[i - off]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[3, 1], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast_shapes(&[], &[2, 2]), Some(vec![2, 2]));
        assert_eq!(broadcast_shapes(&[3], &[4]), None);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
    }

    #[test]
    fn shape_problems_say_why() {
        assert_eq!(shape_problem(&[2, 3]), None);
        assert_eq!(shape_problem(&[]), None);
        let m = shape_problem(&[2, 0]).unwrap();
        assert!(m.contains("dimension 1 of [2, 0] is 0"), "{m}");
        assert!(
            m.contains("at least one element") && m.contains("reduction"),
            "{m}"
        );
        let m = shape_problem(&[1 << 20, 1 << 20]).unwrap();
        assert!(m.contains("more than 2^31 - 1 elements"), "{m}");
    }

    #[test]
    fn numel_is_checked() {
        assert_eq!(checked_numel(&[1_000_000_000, 1_000_000_000]), None);
        assert_eq!(checked_numel(&[usize::MAX, 2]), None);
        assert_eq!(checked_numel(&[]), Some(1));
        assert!(TensorType::checked(DType::F32, vec![2, 0]).is_none());
        // Unchecked types saturate instead of overflowing.
        let huge = TensorType::new(DType::F64, vec![usize::MAX, 3]);
        assert_eq!(huge.numel(), usize::MAX);
        assert_eq!(huge.size_bytes(), usize::MAX);
        assert!(!huge.is_valid());
        assert_eq!(strides(&[2, usize::MAX, 2]), vec![usize::MAX, 2, 1]);
        assert_eq!(TensorType::new(DType::F32, vec![2, 3]).size_bytes(), 24);
    }
}
