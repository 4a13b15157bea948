//! The collectives (see `crate::jit::collective`): a copy of the operand into the node's home
//! (none when the plan gave an all-reduce its dying operand's memory; for `all_gather` and
//! `reduce_scatter`, into the call's staging buffer instead), then one call of the
//! collectives' trampoline, which writes the result into the home.

use super::{Lowerer, Src};
use crate::ir::{NodeId, Op};
use crate::jit::collective::Phase;
use crate::jit::layout::{row_major_bytes, to_bytes};
use cranelift_codegen::ir::{InstBuilder, Value};

impl Lowerer<'_, '_> {
    pub(super) fn collective(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        match node.op {
            Op::AllReduceSum | Op::AllReduceMean | Op::CollectiveBroadcast => {
                let x = node.inputs[0];
                // The plan may give a dying operand's memory to an all-reduce: nothing to copy.
                if self.plan.locs[id.index()] != self.plan.locs[x.index()] {
                    let from = self.view(x).clone();
                    self.realize(id, &from);
                }
            }
            Op::AllGather | Op::ReduceScatter => {
                let null = self.b.ins().iconst(self.ptr, 0);
                let stage = self.call_collective(id, null, Phase::Stage);
                let x = node.inputs[0];
                let ty = g.ty(x);
                let size = ty.dtype.size_bytes();
                let v = self.view(x).clone();
                let src = self.root_src(v.root).offset_by(v.offset * size as i64);
                let shape = ty.shape.clone();
                self.copy(
                    ty.dtype,
                    &shape,
                    Src::Mem(stage, 0),
                    row_major_bytes(&shape, size),
                    src,
                    to_bytes(&v.strides, size),
                );
            }
            _ => {}
        }
        let Src::Mem(base, off) = self.home(id) else {
            unreachable!("plan invariant: computed values live in memory")
        };
        let (p, o) = self.addr(base, None, off);
        let data = self.b.ins().iadd_imm_s(p, i64::from(o));
        self.call_collective(id, data, Phase::Run);
    }

    /// `gradlift_collective(ctx, id, ptr, phase)`; returns its result.
    fn call_collective(&mut self, id: NodeId, ptr: Value, phase: Phase) -> Value {
        let g = self.g;
        // The context's address sits after the input and output addresses.
        let slot = g.inputs().len() + g.outputs().len();
        let ctx = self.load_at(self.ptr, self.inputs, None, (slot * 8) as i64);
        let node = self.b.ins().iconst(self.ptr, i64::from(id.0));
        let phase = self.b.ins().iconst(self.ptr, phase as i64);
        let f = self.all_reduce_ref();
        let call = self.b.ins().call(f, &[ctx, node, ptr, phase]);
        self.b.inst_results(call)[0]
    }
}
