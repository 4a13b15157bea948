//! Phase 6: packing groups into functions. Serial groups are packed into functions of at most
//! `max_ops_per_function` nodes (one each in checked mode); a parallel group gets a function
//! of its own taking a chunk range, and the fold of its partial results goes into the next
//! serial function. A loop group is a step of its own with no function (the kernel runs it).

use super::{Func, Group, Item, PlanConfig};

/// The compiled functions, in execution order.
pub(super) fn pack(groups: &[Group], cfg: &PlanConfig) -> Vec<Func> {
    let per = if cfg.checked {
        1
    } else {
        cfg.max_ops_per_function.max(1)
    };
    let mut funcs = Vec::new();
    let mut cur: Vec<Item> = Vec::new();
    let mut cur_ops = 0usize;
    let flush = |cur: &mut Vec<Item>, cur_ops: &mut usize, funcs: &mut Vec<Func>| {
        if !cur.is_empty() {
            funcs.push(Func::Serial(std::mem::take(cur)));
        }
        *cur_ops = 0;
    };
    for (gi, grp) in groups.iter().enumerate() {
        let gi = gi as u32;
        match grp {
            Group::Loop(_) => {
                flush(&mut cur, &mut cur_ops, &mut funcs);
                funcs.push(Func::Loop(gi));
            }
            Group::Fused(f) if f.parallel => {
                flush(&mut cur, &mut cur_ops, &mut funcs);
                funcs.push(Func::Chunks(gi));
                if f.reductions.iter().any(|r| r.partials.is_some()) {
                    cur.push(Item::Combine(gi));
                    cur_ops += 1;
                }
            }
            _ => {
                let ops = match grp {
                    Group::Fused(f) => f.members.len(),
                    _ => 1,
                };
                if cur_ops + ops > per && !cur.is_empty() {
                    flush(&mut cur, &mut cur_ops, &mut funcs);
                }
                cur.push(Item::Run(gi));
                cur_ops += ops;
            }
        }
    }
    flush(&mut cur, &mut cur_ops, &mut funcs);
    funcs
}
