//! `all_reduce_sum`, `all_reduce_mean` and `num_ranks`: a copy of the operand into the node's
//! home (none when the plan gave the node its dying operand's memory), then one call of the
//! collectives' trampoline (`crate::jit::collective`) that reduces the home in place over the
//! call's communicator (`num_ranks`: no copy, the call fills the home).

use super::{Lowerer, Src};
use crate::ir::{NodeId, Op};
use crate::jit::collective::{self, Action};
use cranelift_codegen::ir::InstBuilder;

impl Lowerer<'_, '_> {
    pub(super) fn all_reduce(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let action = match node.op {
            Op::AllReduceSum => Action::Sum,
            Op::AllReduceMean => Action::Mean,
            _ => Action::Size,
        };
        if action != Action::Size {
            let x = node.inputs[0];
            // The plan may give a dying operand's memory to the all-reduce: nothing to copy.
            if self.plan.locs[id.index()] != self.plan.locs[x.index()] {
                let from = self.view(x).clone();
                self.realize(id, &from);
            }
        }
        let Src::Mem(base, off) = self.home(id) else {
            unreachable!("plan invariant: computed values live in memory")
        };
        let (p, o) = self.addr(base, None, off);
        let data = self.b.ins().iadd_imm_s(p, i64::from(o));
        // The context's address sits after the input and output addresses.
        let slot = g.inputs().len() + g.outputs().len();
        let ctx = self.load_at(self.ptr, self.inputs, None, (slot * 8) as i64);
        let len = self.b.ins().iconst(self.ptr, node.ty.numel() as i64);
        let code = self
            .b
            .ins()
            .iconst(self.ptr, collective::code(node.ty.dtype, action));
        let f = self.all_reduce_ref();
        self.b.ins().call(f, &[ctx, data, len, code]);
    }
}
