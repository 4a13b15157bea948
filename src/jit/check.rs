//! Checked mode (`JitConfig::check_finite`): reading a node's value and operands from their
//! homes after the function computing it ran, to find the first non-finite value made from
//! finite operands (see [`crate::finite`]).
#![allow(unsafe_code)]

use super::Line;
use super::plan::Loc;
use crate::finite::{self, NonFinite};
use crate::ir::{DType, Graph, NodeId};

/// Checked mode (`JitConfig::check_finite`): what the kernel needs to inspect each node after
/// its function ran. The plan gave every value its own memory and every node its own function.
pub(super) struct Checker {
    /// The compiled graph.
    pub graph: Graph,
    /// The home of every value.
    pub locs: Vec<Loc>,
    /// The node computed by each function, in call order.
    pub steps: Vec<NodeId>,
    /// The nodes some output depends on.
    pub live: Vec<bool>,
}

impl Checker {
    /// Element `i` of the value of `id`, read from its home: a buffer whose address is in
    /// `ptrs` (inputs, then outputs), the workspace or the constant blob.
    fn value(&self, id: NodeId, i: usize, ptrs: &[usize], mem: (&[Line], &[Line])) -> f64 {
        let dtype = self.graph.ty(id).dtype;
        let read = |lines: &[Line], off: usize| -> f64 {
            let size = dtype.size_bytes();
            let at = off + i * size;
            // Elements are naturally aligned and lines are 64 bytes, so no element straddles two.
            let line = &lines[at / 64].0;
            let b = &line[at % 64..at % 64 + size];
            match dtype {
                DType::F32 => f64::from(f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                DType::F64 => f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                DType::Bool => f64::from(b[0]),
                DType::I32 => f64::from(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            }
        };
        let n_in = self.graph.inputs().len();
        match self.locs[id.index()] {
            Loc::Input(k) => read_buffer(ptrs[k], dtype, i),
            Loc::Output(k) => read_buffer(ptrs[n_in + k], dtype, i),
            Loc::Ws(off) => read(mem.0, off),
            Loc::Const(off) => read(mem.1, off),
            Loc::Splat(bits) => match dtype {
                DType::F32 => f64::from(f32::from_bits(bits as u32)),
                DType::F64 => f64::from_bits(bits),
                DType::Bool => bits as f64,
                DType::I32 => f64::from(bits as u32 as i32),
            },
            Loc::Unused => unreachable!("plan invariant: operands of a step have a home"),
        }
    }

    /// Looks for a culprit element in the node computed by function `f`.
    pub(super) fn inspect(
        &self,
        f: usize,
        ptrs: &[usize],
        mem: (&[Line], &[Line]),
    ) -> Option<NonFinite> {
        let id = *self.steps.get(f)?;
        if !self.live[id.index()] {
            return None;
        }
        let inputs = &self.graph.node(id).inputs;
        finite::find_culprit(
            &self.graph,
            id,
            &|e| self.value(id, e, ptrs, mem),
            &|k, e| self.value(inputs[k], e, ptrs, mem),
        )
    }
}

/// Element `i` of the caller buffer (or workspace copy) at `addr` holding `dtype` elements, as
/// f64 (bool as 0/1).
fn read_buffer(addr: usize, dtype: DType, i: usize) -> f64 {
    // SAFETY: `Kernel::call` filled the address table with buffers it checked to hold the
    // value's dtype and element count (or workspace ranges of that size), naturally aligned,
    // and borrowed for the whole call; `i` is an element of the value (`find_culprit` only
    // asks for those), and nothing writes the buffer while the checker reads it.
    unsafe {
        match dtype {
            DType::F32 => f64::from((addr as *const f32).add(i).read()),
            DType::F64 => (addr as *const f64).add(i).read(),
            DType::Bool => f64::from((addr as *const u8).add(i).read()),
            DType::I32 => f64::from((addr as *const i32).add(i).read()),
        }
    }
}
