//! Loops at run time: a `scan` group runs its body, compiled once into a kernel of its own,
//! `length` times (JAX's `lax.scan` semantics, see [`crate::ir::loops`]; the reference is
//! [`crate::ops::loops::run_loop`]).
//!
//! [`compile_bodies`] compiles each distinct body once, through the same pipeline
//! (`compile_with`), before the outer graph is planned: the recursion is as deep as the loops
//! are nested, and compile time does not depend on the trip count. In the outer plan a loop
//! group is one step (`plan::Group::Loop`) that reads its operands from memory and writes its
//! live members' homes; the kernel runs it between its compiled functions ([`LoopRun::run`]).
//!
//! A step fills the body's buffer table (in the loop's scratch block of the workspace) and
//! runs the body kernel on it, with the body's workspace inside the same block: nothing is
//! allocated per call or per step. Carries are double-buffered: step `s` reads the carries
//! from the buffer step `s - 1` wrote (step 0 reads the initial carries where they are) and
//! writes the other buffer, so the body never writes memory it reads. `xs[t]` and `ys[t]` are
//! rows of the operands and of the members' homes at `t` times the row size; a y that no live
//! member holds is written to a scratch row. After the last step the final carries are copied
//! into the live members' homes (with no step, the initial carries are).
//!
//! A loop with an [`Exit`] runs `n ≤ length` steps: an [`Exit::While`] loop reads its
//! condition where the body wrote it after each step and stops at the first false one (the carries
//! are those entering that step; its ys row is copied into the rows after it), an
//! [`Exit::Flags`] loop counts its flags first (the rows of the steps that do not run are
//! zeroed), as [`crate::ops::loops::run_loop`] defines.
//!
//! The step driver ([`LoopRun::steps`]) only decides which step runs when; a driver following
//! another schedule (recomputing carries from snapshots) can sit beside it and call
//! [`LoopRun::step`] the same way.
#![allow(unsafe_code)]

use super::kernel::{Args, Kernel, KernelFn};
use super::plan::{BodySizes, Loc, LoopLayout, LoopStep, Plan, View};
use super::recompute::RecomputeRun;
use super::{JitConfig, JitError, Line};
use crate::ir::loops::{Exit, scan_attrs};
use crate::ir::{DType, Graph, NodeId};
use std::collections::HashMap;
use std::sync::Arc;

/// The compiled bodies of a graph's loops, keyed by `plan::loops::body_key`.
pub(super) type Bodies = HashMap<usize, Arc<Kernel>>;

/// Compiles the body of every loop in `g` once (nested loops recursively, through
/// `compile_with`), with `cfg`'s options but no donated buffers and no checked mode (the
/// outer kernel checks the loop's results), and returns them with their workspace sizes.
///
/// # Errors
/// A body's [`JitError`].
pub(super) fn compile_bodies(g: &Graph, cfg: &JitConfig) -> Result<(Bodies, BodySizes), JitError> {
    let mut bodies = Bodies::new();
    let mut sizes = BodySizes::new();
    let body_cfg = JitConfig {
        donate: Vec::new(),
        check_finite: false,
        // The outer kernel's budget counts a body's workspace inside its loop's scratch.
        memory_budget_bytes: None,
        ..cfg.clone()
    };
    for node in g.nodes() {
        let Some((lp, _)) = scan_attrs(&node.attrs) else {
            continue;
        };
        // A recomputing loop also runs its forward loop's body.
        let forward = lp.recompute.as_ref().map(|rc| &rc.forward);
        for l in std::iter::once(lp).chain(forward) {
            let key = super::plan::body_key(l);
            if bodies.contains_key(&key) {
                continue;
            }
            let k = super::compile_with(&l.body, &body_cfg)?;
            sizes.insert(key, k.workspace_bytes());
            bodies.insert(key, Arc::new(k));
        }
    }
    Ok((bodies, sizes))
}

/// Where a buffer of a loop is, resolved at each call: a base and a byte offset.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// Caller input buffer `k` (or a donated input's copy).
    Input(usize),
    /// Caller output buffer `k`.
    Output(usize),
    /// The workspace.
    Ws,
    /// The constant blob.
    Const,
    /// The loop's own buffer `k` (a splat constant, which has no memory in the plan).
    Owned(usize),
}

#[derive(Clone, Copy, Debug)]
struct Addr {
    base: Base,
    off: usize,
}

/// A loop as the kernel runs it.
pub(super) struct LoopRun {
    body: Arc<Kernel>,
    /// The body's only function, when that is all it is (called directly at each step).
    single: Option<KernelFn>,
    length: usize,
    reverse: bool,
    n_carry: usize,
    n_xs: usize,
    /// Per operand (carries, xs, consts): where it is.
    operands: Vec<Addr>,
    /// Per body output: the homes of the live members holding it.
    results: Vec<Vec<Addr>>,
    /// Per body input, then per body output: bytes of one value (a row, for xs and ys).
    bytes: Vec<usize>,
    /// Workspace offset of the scratch block.
    temps: usize,
    layout: LoopLayout,
    /// Buffers of splat-constant operands.
    owned: Vec<Vec<Line>>,
    /// A recomputing loop's forward loop (`jit::recompute`).
    recompute: Option<RecomputeRun>,
    exit: Option<Exit>,
}

/// The bytes of a value of `g`.
fn bytes_of(g: &Graph, id: NodeId) -> usize {
    g.ty(id).numel() * g.ty(id).dtype.size_bytes()
}

impl LoopRun {
    /// The loop of group `l` of `plan` (a plan of `g`), running the compiled body from
    /// `bodies`.
    pub(super) fn new(g: &Graph, plan: &Plan, l: &LoopStep, bodies: &Bodies) -> LoopRun {
        let body = Arc::clone(&bodies[&super::plan::body_key(&l.lp)]);
        let mut owned = Vec::new();
        let operands = g
            .node(l.node)
            .inputs
            .iter()
            .map(|&x| {
                let v = plan.views[x.index()]
                    .as_ref()
                    .expect("plan invariant: loop operands are read from memory");
                operand_addr(g, plan, x, v, &mut owned)
            })
            .collect();
        let mut results = vec![Vec::new(); l.lp.body.outputs().len()];
        for &(m, r) in &l.members {
            results[r].push(home(plan.locs[m.index()], 0));
        }
        let bg = &l.lp.body;
        let bytes = bg
            .inputs()
            .iter()
            .chain(bg.outputs())
            .map(|&x| bytes_of(bg, x))
            .collect();
        LoopRun {
            single: body.single_fn(),
            body,
            length: l.lp.length,
            reverse: l.lp.reverse,
            n_carry: l.lp.n_carry,
            n_xs: l.lp.n_xs,
            operands,
            results,
            bytes,
            temps: l.temps,
            layout: l.layout.clone(),
            owned,
            recompute: recompute_run(l, bodies),
            exit: l.lp.exit,
        }
    }

    /// Operand `k`'s address in the call `args`.
    ///
    /// # Safety
    /// As [`LoopRun::addr`].
    pub(super) unsafe fn operand(&self, args: &Args, k: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.addr(self.operands[k], args) }
    }

    pub(super) fn n_carry(&self) -> usize {
        self.n_carry
    }

    pub(super) fn n_xs(&self) -> usize {
        self.n_xs
    }

    pub(super) fn n_operands(&self) -> usize {
        self.operands.len()
    }

    /// Workspace offset of the loop's scratch block.
    pub(super) fn temps(&self) -> usize {
        self.temps
    }

    /// The compiled bodies this loop runs (its own, and a recomputing loop's forward body).
    pub(super) fn bodies(&self) -> impl Iterator<Item = &Kernel> {
        std::iter::once(&*self.body).chain(self.recompute.as_ref().map(|r| &*r.fwd))
    }

    /// The address of `a` in the call `args`.
    ///
    /// # Safety
    /// `args` is a call's checked arguments (its tables hold one address per buffer).
    #[inline(always)]
    unsafe fn addr(&self, a: Addr, args: &Args) -> *mut u8 {
        // SAFETY: the tables have a slot per input and output (caller's contract); the plan
        // gave the offsets within the buffers of the checked sizes.
        unsafe {
            let base = match a.base {
                Base::Input(k) => (*args.ins.add(k)).cast_mut(),
                Base::Output(k) => *args.outs.add(k),
                Base::Ws => args.ws,
                Base::Const => args.consts.cast_mut(),
                Base::Owned(k) => self.owned[k].as_ptr().cast::<u8>().cast_mut(),
            };
            base.add(a.off)
        }
    }

    /// Runs the loop in the call `args`, its body on up to `threads` threads.
    ///
    /// # Safety
    /// `args` is the outer kernel's call (see `Kernel::run_step`): every buffer checked, the
    /// workspace this kernel's, with the scratch block at `temps` for this loop alone.
    pub(super) unsafe fn run(&self, args: Args, threads: usize) {
        let n_in = self.operands.len();
        // SAFETY: the block lies in the workspace (the plan sized it), and its table has one
        // aligned `usize` slot per body input and output.
        let table = unsafe { args.ws.add(self.temps + self.layout.table) }.cast::<usize>();
        for k in self.n_carry + self.n_xs..n_in {
            // SAFETY: as above; the consts are the same at every step.
            unsafe { *table.add(k) = self.addr(self.operands[k], &args) as usize };
        }
        // SAFETY: forwarded.
        let n = unsafe {
            match &self.recompute {
                Some(rc) => self.replay(rc, &args, table, threads),
                None => self.steps(&args, table, threads),
            }
        };
        for c in 0..self.n_carry {
            // SAFETY: the final carries are the initial ones (no step) or in the buffer the
            // last step that ran wrote; the members' homes are distinct from both (the plan
            // gave them their own memory, and `donate` copies a donated operand first).
            unsafe {
                let from = self.carry_in(&args, c, n);
                for &h in &self.results[c] {
                    std::ptr::copy_nonoverlapping(from, self.addr(h, &args), self.bytes[c]);
                }
            }
        }
        for y in self.n_carry..self.results.len() {
            let homes = &self.results[y];
            let row = self.bytes[n_in + y];
            if n < self.length
                && let Some(&h) = homes.first()
            {
                // SAFETY: rows `n..length` lie in the home (its leading axis is `length`).
                unsafe { self.fill_rows(self.addr(h, &args), row, n) };
            }
            for &h in homes.iter().skip(1) {
                let bytes = row * self.length;
                // SAFETY: two members holding the same y have distinct homes of its type.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.addr(homes[0], &args),
                        self.addr(h, &args),
                        bytes,
                    );
                }
            }
        }
    }

    /// The rows `n..length` of a y's home `at` (rows of `row` bytes) for a loop that ran `n <
    /// length` steps: copies of row `n` (an [`Exit::While`] loop's last body run) or zeros.
    ///
    /// # Safety
    /// `at` holds `length` rows.
    unsafe fn fill_rows(&self, at: *mut u8, row: usize, n: usize) {
        // SAFETY: rows `n..length` lie in the home (caller's contract), row `n` apart from the
        // others.
        unsafe {
            if let Some(Exit::While(_)) = self.exit {
                // Doubling: rows `n..n + k` are copies of row `n`; copy them after themselves.
                let src = at.add(n * row);
                let mut k = 1;
                while n + k < self.length {
                    let m = k.min(self.length - n - k);
                    std::ptr::copy_nonoverlapping(src, src.add(k * row), m * row);
                    k += m;
                }
            } else {
                std::ptr::write_bytes(at.add(n * row), 0, (self.length - n) * row);
            }
        }
    }

    /// The steps an [`Exit::Flags`] loop runs: its leading true flags (`length` for another
    /// loop).
    ///
    /// # Safety
    /// As [`LoopRun::run`].
    pub(super) unsafe fn count(&self, args: &Args) -> usize {
        let Some(Exit::Flags(k)) = self.exit else {
            return self.length;
        };
        // SAFETY: the flags operand holds `length` bools, one byte each.
        let flags = unsafe {
            let at = self.addr(self.operands[self.n_carry + k], args);
            std::slice::from_raw_parts(at.cast_const(), self.length)
        };
        crate::ir::loops::flags_count(flags.iter().map(|&f| f != 0))
    }

    /// The step driver: step `s` of `0..n` runs at index `t = s`, or `n - 1 - s` for a reverse
    /// loop, where `n` is `length` or what the loop's [`Exit`] says. Returns `n`.
    ///
    /// # Safety
    /// As [`LoopRun::run`], which set the consts' slots of `table`.
    unsafe fn steps(&self, args: &Args, table: *mut usize, threads: usize) -> usize {
        // SAFETY: forwarded.
        let n = unsafe { self.count(args) };
        let cond = match self.exit {
            Some(Exit::While(k)) => Some(self.operands.len() + k),
            _ => None,
        };
        for s in 0..n {
            let t = if self.reverse { n - 1 - s } else { s };
            // SAFETY: forwarded; steps run in order, so step `s - 1` wrote the carries.
            unsafe { self.step(args, table, s, t, threads) };
            if let Some(slot) = cond {
                // SAFETY: the body just wrote its condition (a bool, one byte) where the
                // table's slot points.
                if unsafe { *(*table.add(slot) as *const u8) } == 0 {
                    return s;
                }
            }
        }
        n
    }

    /// The carries entering step `s` (after `s` steps): the initial carries for step 0, else
    /// the buffer step `s - 1` wrote.
    ///
    /// # Safety
    /// As [`LoopRun::run`].
    #[inline(always)]
    unsafe fn carry_in(&self, args: &Args, c: usize, s: usize) -> *mut u8 {
        if s == 0 {
            // SAFETY: forwarded.
            unsafe { self.addr(self.operands[c], args) }
        } else {
            let off = self.layout.carries[(s - 1) % 2][c];
            // SAFETY: the carry buffers lie in the loop's scratch block.
            unsafe { args.ws.add(self.temps + off) }
        }
    }

    /// Runs step `s` (the carries enter from step `s - 1`'s buffer) at index `t` (`xs[t]`
    /// read, `ys[t]` written).
    ///
    /// # Safety
    /// As [`LoopRun::run`], with `s < length`, `t < length`, and step `s - 1` run just before
    /// (its carries are read).
    #[inline]
    unsafe fn step(&self, args: &Args, table: *mut usize, s: usize, t: usize, threads: usize) {
        // SAFETY: forwarded.
        unsafe {
            self.fill(args, table, s, t);
            self.exec(args, table, threads);
        }
    }

    /// Fills the body's table for step `s` at index `t` (see [`LoopRun::step`]); the consts'
    /// slots are already set.
    ///
    /// # Safety
    /// As [`LoopRun::step`].
    #[inline]
    pub(super) unsafe fn fill(&self, args: &Args, table: *mut usize, s: usize, t: usize) {
        let (nc, nx) = (self.n_carry, self.n_xs);
        let n_in = self.operands.len();
        // SAFETY: (whole block) `table` has a slot per body input and output; rows `t` of the
        // xs operands and of the ys homes lie in their buffers (`t < length`, their leading
        // axis); the carry buffers and scratch rows lie in the scratch block; the body's
        // outputs are distinct from each other and from its inputs (two carry buffers, and
        // the members' homes and scratch rows are the loop's own memory).
        unsafe {
            for c in 0..nc {
                *table.add(c) = self.carry_in(args, c, s) as usize;
                let out = self.layout.carries[s % 2][c];
                *table.add(n_in + c) = args.ws.add(self.temps + out) as usize;
            }
            for x in nc..nc + nx {
                let row = self.addr(self.operands[x], args).add(t * self.bytes[x]);
                *table.add(x) = row as usize;
            }
            for y in nc..self.results.len() {
                let row = match self.results[y].first() {
                    Some(&h) => self.addr(h, args).add(t * self.bytes[n_in + y]),
                    None => {
                        let off = self.layout.scratch[y - nc]
                            .expect("plan invariant: ys no member holds have a scratch row");
                        args.ws.add(self.temps + off)
                    }
                };
                *table.add(n_in + y) = row as usize;
            }
        }
    }

    /// Runs the body on a filled table.
    ///
    /// # Safety
    /// As [`LoopRun::step`], with `table` filled.
    #[inline]
    pub(super) unsafe fn exec(&self, args: &Args, table: *mut usize, threads: usize) {
        let n_in = self.operands.len();
        // SAFETY: the body kernel's contract is `exec_body`'s, which the filled table meets.
        unsafe {
            let body_ws = args.ws.add(self.temps + self.layout.body_ws);
            match self.single {
                // `exec_body` minus its dispatch.
                Some(f) => f(
                    table.cast::<*const u8>(),
                    table.add(n_in).cast::<*mut u8>(),
                    body_ws,
                    self.body.consts_ptr(),
                ),
                None => self.body.exec_body(table, body_ws, threads),
            }
        }
    }
}

/// The forward loop of a recomputing loop group, if it is one.
fn recompute_run(l: &LoopStep, bodies: &Bodies) -> Option<RecomputeRun> {
    let rc = l.lp.recompute.as_ref()?;
    let fwd = Arc::clone(&bodies[&super::plan::body_key(&rc.forward)]);
    let fb = &rc.forward.body;
    let fwd_bytes = (fb.inputs().iter().chain(fb.outputs()))
        .map(|&x| bytes_of(fb, x))
        .collect();
    Some(RecomputeRun {
        fwd_single: fwd.single_fn(),
        fwd,
        snapshots: l
            .layout
            .recompute
            .as_ref()
            .map_or(rc.snapshots, |r| r.snapshots),
        fwd_reverse: rc.forward.reverse,
        n_fc: rc.forward.n_carry,
        n_fx: rc.forward.n_xs,
        fwd_bytes,
        layout: l
            .layout
            .recompute
            .clone()
            .expect("a recomputing loop's layout"),
    })
}

/// The address of home `loc` plus `off` bytes.
fn home(loc: Loc, off: usize) -> Addr {
    let base = match loc {
        Loc::Input(k) => Base::Input(k),
        Loc::Output(k) => Base::Output(k),
        Loc::Ws(o) => {
            return Addr {
                base: Base::Ws,
                off: o + off,
            };
        }
        Loc::Const(o) => {
            return Addr {
                base: Base::Const,
                off: o + off,
            };
        }
        Loc::Unused | Loc::Splat(_) => unreachable!("plan invariant: a loop's buffers have memory"),
    };
    Addr { base, off }
}

/// Where operand `x` (read through view `v`, contiguous) is; a splat constant gets a buffer
/// of its own in `owned`.
fn operand_addr(g: &Graph, plan: &Plan, x: NodeId, v: &View, owned: &mut Vec<Vec<Line>>) -> Addr {
    let ty = g.ty(x);
    debug_assert!(
        crate::jit::layout::is_row_major(&ty.shape, &v.strides) || ty.numel() <= 1,
        "plan invariant: loop operands are contiguous"
    );
    let size = ty.dtype.size_bytes();
    match plan.locs[v.root.index()] {
        Loc::Splat(bits) => {
            let n = ty.numel();
            let bytes: Vec<u8> = match ty.dtype {
                DType::F64 => (0..n).flat_map(|_| bits.to_ne_bytes()).collect(),
                DType::F32 | DType::I32 => {
                    (0..n).flat_map(|_| (bits as u32).to_ne_bytes()).collect()
                }
                DType::Bool => vec![bits as u8; n],
            };
            let mut buf = vec![Line([0; 64]); bytes.len().div_ceil(64).max(1)];
            for (line, chunk) in buf.iter_mut().zip(bytes.chunks(64)) {
                line.0[..chunk.len()].copy_from_slice(chunk);
            }
            owned.push(buf);
            Addr {
                base: Base::Owned(owned.len() - 1),
                off: 0,
            }
        }
        loc => {
            let off = usize::try_from(v.offset).expect("plan invariant: views start in bounds");
            home(loc, off * size)
        }
    }
}
