//! The buffers a kernel call reads and writes: typed slices (and scalars by value) with the
//! conversions that make passing them a `.into()`, and the caller-owned [`Workspace`].

use super::Line;
use crate::ir::DType;
use crate::tensor::{Data, Tensor};
use std::fmt;

/// Caller-owned scratch memory for one [`Kernel`](super::Kernel) (from
/// [`Kernel::workspace`](super::Kernel::workspace)): the values of the graph that are neither
/// inputs nor outputs, plus the buffer-address tables. 64-byte aligned. Reuse it across calls
/// (so [`Kernel::call`](super::Kernel::call) allocates nothing itself; only the GEMM behind large matmuls
/// allocates packing memory); use one per thread.
pub struct Workspace {
    /// The kernel that made it.
    pub(super) kernel: u64,
    pub(super) mem: Vec<Line>,
    /// Input addresses, then output addresses, then the communicator context (written by each
    /// call).
    pub(super) ptrs: Vec<usize>,
    /// The bytes of scalar inputs passed by value, one slot per input.
    pub(super) scalars: Vec<u64>,
}

impl fmt::Debug for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workspace")
            .field("kernel", &self.kernel)
            .field("bytes", &(self.mem.len() * size_of::<Line>()))
            .finish()
    }
}

impl Workspace {
    /// Size of the scratch memory in bytes.
    pub fn bytes(&self) -> usize {
        self.mem.len() * size_of::<Line>()
    }
}

/// A read-only element buffer passed to [`Kernel::call`](super::Kernel::call): a slice, or a
/// scalar by value.
///
/// `From` conversions make most buffers a `.into()`: `&[f32]`, `&Vec<f32>`, `&f32` (a
/// one-element slice), `f32` (by value), a `&Tensor`, and the same for `f64`, `bool` and `i32`.
#[derive(Clone, Copy, Debug)]
pub enum Buf<'a> {
    /// `f32` elements.
    F32(&'a [f32]),
    /// `f64` elements.
    F64(&'a [f64]),
    /// `bool` elements (one byte each).
    Bool(&'a [bool]),
    /// One `f32` by value (a scalar input).
    ScalarF32(f32),
    /// One `f64` by value (a scalar input).
    ScalarF64(f64),
    /// One `bool` by value (a scalar input).
    ScalarBool(bool),
    /// `i32` elements.
    I32(&'a [i32]),
    /// One `i32` by value (a scalar input).
    ScalarI32(i32),
}

/// A writable element buffer passed to [`Kernel::call`](super::Kernel::call) (`From` a `&mut [f32]`, a
/// `&mut Vec<f32>`, a `&mut f32` for a scalar output, a `&mut Tensor`, and the same for `f64`,
/// `bool` and `i32`).
#[derive(Debug)]
pub enum BufMut<'a> {
    /// `f32` elements.
    F32(&'a mut [f32]),
    /// `f64` elements.
    F64(&'a mut [f64]),
    /// `bool` elements (one byte each; the kernel only ever writes `false`/`true`).
    Bool(&'a mut [bool]),
    /// `i32` elements.
    I32(&'a mut [i32]),
}

impl Buf<'_> {
    /// The element dtype.
    pub fn dtype(&self) -> DType {
        match self {
            Buf::F32(_) | Buf::ScalarF32(_) => DType::F32,
            Buf::F64(_) | Buf::ScalarF64(_) => DType::F64,
            Buf::Bool(_) | Buf::ScalarBool(_) => DType::Bool,
            Buf::I32(_) | Buf::ScalarI32(_) => DType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buf::F32(v) => v.len(),
            Buf::F64(v) => v.len(),
            Buf::Bool(v) => v.len(),
            Buf::I32(v) => v.len(),
            Buf::ScalarF32(_) | Buf::ScalarF64(_) | Buf::ScalarBool(_) | Buf::ScalarI32(_) => 1,
        }
    }

    /// True if the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype, the length, and the address of a slice's elements or the native bytes of a
    /// scalar (in the low-address bytes of the `u64`), in one match (the call path's check).
    #[inline(always)]
    pub(super) fn parts(&self) -> (DType, usize, Result<usize, u64>) {
        let bits = |b: &[u8]| {
            let mut w = [0u8; 8];
            w[..b.len()].copy_from_slice(b);
            Err(u64::from_ne_bytes(w))
        };
        match self {
            Buf::F32(v) => (DType::F32, v.len(), Ok(v.as_ptr() as usize)),
            Buf::F64(v) => (DType::F64, v.len(), Ok(v.as_ptr() as usize)),
            Buf::Bool(v) => (DType::Bool, v.len(), Ok(v.as_ptr() as usize)),
            Buf::ScalarF32(x) => (DType::F32, 1, bits(&x.to_ne_bytes())),
            Buf::ScalarF64(x) => (DType::F64, 1, bits(&x.to_ne_bytes())),
            Buf::ScalarBool(x) => (DType::Bool, 1, bits(&[u8::from(*x)])),
            Buf::I32(v) => (DType::I32, v.len(), Ok(v.as_ptr() as usize)),
            Buf::ScalarI32(x) => (DType::I32, 1, bits(&x.to_ne_bytes())),
        }
    }
}

impl BufMut<'_> {
    /// The element dtype.
    pub fn dtype(&self) -> DType {
        match self {
            BufMut::F32(_) => DType::F32,
            BufMut::F64(_) => DType::F64,
            BufMut::Bool(_) => DType::Bool,
            BufMut::I32(_) => DType::I32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            BufMut::F32(v) => v.len(),
            BufMut::F64(v) => v.len(),
            BufMut::Bool(v) => v.len(),
            BufMut::I32(v) => v.len(),
        }
    }

    /// True if the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same buffer, borrowed for a shorter time (to pass it on and keep it).
    pub fn reborrow(&mut self) -> BufMut<'_> {
        match self {
            BufMut::F32(v) => BufMut::F32(v),
            BufMut::F64(v) => BufMut::F64(v),
            BufMut::Bool(v) => BufMut::Bool(v),
            BufMut::I32(v) => BufMut::I32(v),
        }
    }

    /// The dtype, the length and the address of the elements, in one match.
    #[inline(always)]
    pub(super) fn parts(&mut self) -> (DType, usize, usize) {
        match self {
            BufMut::F32(v) => (DType::F32, v.len(), v.as_mut_ptr() as usize),
            BufMut::F64(v) => (DType::F64, v.len(), v.as_mut_ptr() as usize),
            BufMut::Bool(v) => (DType::Bool, v.len(), v.as_mut_ptr() as usize),
            BufMut::I32(v) => (DType::I32, v.len(), v.as_mut_ptr() as usize),
        }
    }
}

macro_rules! buf_from {
    ($t:ty, $v:ident, $s:ident) => {
        impl<'a> From<&'a [$t]> for Buf<'a> {
            fn from(v: &'a [$t]) -> Buf<'a> {
                Buf::$v(v)
            }
        }
        impl<'a> From<&'a Vec<$t>> for Buf<'a> {
            fn from(v: &'a Vec<$t>) -> Buf<'a> {
                Buf::$v(v)
            }
        }
        impl<'a> From<&'a $t> for Buf<'a> {
            fn from(x: &'a $t) -> Buf<'a> {
                Buf::$v(std::slice::from_ref(x))
            }
        }
        impl<'a> From<$t> for Buf<'a> {
            fn from(x: $t) -> Buf<'a> {
                Buf::$s(x)
            }
        }
        impl<'a> From<&'a mut [$t]> for BufMut<'a> {
            fn from(v: &'a mut [$t]) -> BufMut<'a> {
                BufMut::$v(v)
            }
        }
        impl<'a> From<&'a mut Vec<$t>> for BufMut<'a> {
            fn from(v: &'a mut Vec<$t>) -> BufMut<'a> {
                BufMut::$v(v)
            }
        }
        impl<'a> From<&'a mut $t> for BufMut<'a> {
            fn from(x: &'a mut $t) -> BufMut<'a> {
                BufMut::$v(std::slice::from_mut(x))
            }
        }
    };
}
buf_from!(f32, F32, ScalarF32);
buf_from!(f64, F64, ScalarF64);
buf_from!(bool, Bool, ScalarBool);
buf_from!(i32, I32, ScalarI32);

impl<'a> From<&'a Tensor> for Buf<'a> {
    fn from(t: &'a Tensor) -> Buf<'a> {
        match t.data() {
            Data::F32(v) => Buf::F32(v),
            Data::F64(v) => Buf::F64(v),
            Data::Bool(v) => Buf::Bool(v),
            Data::I32(v) => Buf::I32(v),
        }
    }
}

impl<'a> From<&'a mut Tensor> for BufMut<'a> {
    fn from(t: &'a mut Tensor) -> BufMut<'a> {
        match t.data_mut() {
            Data::F32(v) => BufMut::F32(v),
            Data::F64(v) => BufMut::F64(v),
            Data::Bool(v) => BufMut::Bool(v),
            Data::I32(v) => BufMut::I32(v),
        }
    }
}
