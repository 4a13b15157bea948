//! Host tensors: a [`TensorType`] plus row-major element data.
//!
//! Used for constants inside graphs, for the interpreter's values, and for the safe call API of
//! compiled kernels. Knows nothing about graphs.

use crate::ir::{DType, TensorType};

/// Row-major element storage of one dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// `i32` elements.
    I32(Vec<i32>),
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::Bool(_) => DType::Bool,
            Data::I32(_) => DType::I32,
        }
    }

    /// Element `i` converted to `f64` (`bool` gives 0.0 / 1.0; `i32` is exact).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => f64::from(v[i]),
            Data::F64(v) => v[i],
            Data::Bool(v) => f64::from(u8::from(v[i])),
            Data::I32(v) => f64::from(v[i]),
        }
    }
}

/// The element count of `ty`, panicking (instead of attempting an absurd allocation) if it is
/// over the limit.
fn checked_len(ty: &TensorType) -> usize {
    match crate::ir::checked_numel(&ty.shape) {
        Some(n) => n,
        None => panic!("tensor type {ty} has more than 2^31 - 1 elements"),
    }
}

/// A dense tensor with a static type.
///
/// ```
/// use gradlift::{Tensor, DType};
/// let t = Tensor::from_f64(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(t.ty().dtype, DType::F64);
/// assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// A tensor from a shape and data.
    ///
    /// # Panics
    /// If the data length is not the product of the shape, or the shape has more than
    /// [`crate::ir::MAX_ELEMENTS`] elements (a caller bug). Use [`Tensor::try_new`] for
    /// untrusted input.
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        assert!(
            crate::ir::checked_numel(&shape) == Some(data.len()),
            "Tensor::new: data length {} does not match shape {shape:?}",
            data.len()
        );
        Tensor { shape, data }
    }

    /// A tensor from a shape and data, or `None` if the lengths disagree.
    pub fn try_new(shape: Vec<usize>, data: Data) -> Option<Tensor> {
        (crate::ir::checked_numel(&shape)? == data.len()).then_some(Tensor { shape, data })
    }

    /// An `f64` tensor.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        Tensor::new(shape, Data::F64(data))
    }

    /// An `f32` tensor.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor::new(shape, Data::F32(data))
    }

    /// An `i32` tensor (e.g. indices for `gather`).
    pub fn from_i32(shape: Vec<usize>, data: Vec<i32>) -> Tensor {
        Tensor::new(shape, Data::I32(data))
    }

    /// An `f64` scalar.
    pub fn scalar_f64(x: f64) -> Tensor {
        Tensor::new(Vec::new(), Data::F64(vec![x]))
    }

    /// A tensor of type `ty` with every element equal to `x` (converted to the dtype;
    /// nonzero is `true` for `bool`; `i32` truncates toward zero and saturates, NaN gives 0).
    ///
    /// # Panics
    /// If `ty` has more than [`crate::ir::MAX_ELEMENTS`] elements (a caller bug: validate
    /// untrusted types with [`TensorType::checked`]).
    pub fn splat(ty: &TensorType, x: f64) -> Tensor {
        let n = checked_len(ty);
        let data = match ty.dtype {
            DType::F32 => Data::F32(vec![x as f32; n]),
            DType::F64 => Data::F64(vec![x; n]),
            DType::Bool => Data::Bool(vec![x != 0.0; n]),
            DType::I32 => Data::I32(vec![x as i32; n]),
        };
        Tensor {
            shape: ty.shape.clone(),
            data,
        }
    }

    /// A tensor of type `ty` built elementwise from `f64` values (converted to the dtype).
    ///
    /// # Panics
    /// As [`Tensor::splat`].
    pub fn from_fn(ty: &TensorType, mut f: impl FnMut(usize) -> f64) -> Tensor {
        let n = checked_len(ty);
        let data = match ty.dtype {
            DType::F32 => Data::F32((0..n).map(|i| f(i) as f32).collect()),
            DType::F64 => Data::F64((0..n).map(f).collect()),
            DType::Bool => Data::Bool((0..n).map(|i| f(i) != 0.0).collect()),
            DType::I32 => Data::I32((0..n).map(|i| f(i) as i32).collect()),
        };
        Tensor {
            shape: ty.shape.clone(),
            data,
        }
    }

    /// The tensor's type.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.data.dtype(), self.shape.clone())
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Mutable element data (the length cannot change through this).
    pub fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// All elements converted to `f64`.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.data.get_f64(i)).collect()
    }

    /// The single element of a one-element tensor as `f64`.
    pub fn scalar_value(&self) -> Option<f64> {
        (self.numel() == 1).then(|| self.data.get_f64(0))
    }

    /// Bytes of the raw element data (native endian), as kernels read them; `bool` is one byte
    /// per element (0 or 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_ne_bytes()).collect(),
        }
    }

    /// A tensor of type `ty` read from raw native-endian bytes; `None` if the length is wrong.
    pub fn from_bytes(ty: &TensorType, bytes: &[u8]) -> Option<Tensor> {
        if !ty.is_valid() || bytes.len() != ty.size_bytes() {
            return None;
        }
        let data = match ty.dtype {
            DType::F32 => Data::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F64 => Data::F64(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::I32 => Data::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        };
        Some(Tensor {
            shape: ty.shape.clone(),
            data,
        })
    }

    /// Bitwise equality (NaN equals NaN with the same payload, `-0.0 != 0.0`); used for
    /// hash-consing constants.
    pub fn bits_eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape
            && self.to_bytes() == other.to_bytes()
            && self.dtype() == other.dtype()
    }
}
