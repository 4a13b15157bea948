//! Phase 3: views and fusion, the one home of the fusion rules.
//!
//! Walks the live nodes in id order: view ops become [`View`]s (or realized copies), `concat`s
//! chosen by [`super::pieces`] become [`Piece`] lists, elementwise nodes and reductions join
//! or start fused groups ([`Builder::place`]: same iteration shape, every operand in a
//! register of the group or stored by an earlier group, at most [`MAX_GROUP`] members and
//! [`MAX_BOXES`] boxes), and every other node is a group of its own. Then decides which
//! values are stored and the last group reading each.

use super::live::Live;
use super::{
    Accumulate, MAX_BOXES, MAX_GROUP, Piece, PlanConfig, Role, View, box_count, insert_sorted,
    is_elementwise, is_reduction,
};
use crate::ir::{Attrs, Graph, NodeId, Op};
use crate::jit::layout::{broadcast, is_row_major, row_major};
use std::collections::HashMap;

/// Cut positions per axis of an iteration space.
pub(super) type Cuts = Vec<Vec<usize>>;

/// The groups, before they become loop nests. Group numbers are creation order.
pub(super) struct Fusion {
    /// What each node is.
    pub roles: Vec<Role>,
    /// How each node read from memory is read (views, stored nodes and leaves).
    pub views: Vec<Option<View>>,
    /// The pieces of each [`Role::Pieces`] node.
    pub pieces: Vec<Option<Vec<Piece>>>,
    /// Per group: where the pieces its members read cut its iteration space (`None`:
    /// nowhere).
    pub cuts: Vec<Option<Cuts>>,
    /// Realized views: the view each one copies from.
    pub realized: HashMap<u32, View>,
    /// Per group: the iteration shape of a fused group, `None` for a group of one node.
    pub shapes: Vec<Option<Vec<usize>>>,
    /// Per group: its members in id order.
    pub members: Vec<Vec<NodeId>>,
    /// Per node: its value is stored in memory.
    pub stored: Vec<bool>,
    /// Per node: the last group reading it from memory (-1: none).
    pub last_use: Vec<i64>,
    /// Per group: the epilogue of a GEMM group ([`super::epilogue`]).
    pub accumulate: Vec<Option<Accumulate>>,
}

/// Ops that are views of their operand (an `optimization_barrier` is the identity view: it
/// only matters to the optimizer, and a copy would cost the memory recomputation saves).
fn is_view_op(op: Op) -> bool {
    // `pvary` is the identity on each rank (its meaning is in its derivative).
    matches!(
        op,
        Op::Reshape | Op::Broadcast | Op::Transpose | Op::Slice | Op::Barrier | Op::Pvary
    )
}

/// Adds to `cuts` (per axis of an iteration space of `shape`) the boundaries between the
/// pieces `regs` of a piecewise value of shape `xs` read at that space's indices (NumPy
/// broadcasting: a broadcast axis has one piece along it, so no boundary).
fn add_cuts(xs: &[usize], regs: &[Piece], shape: &[usize], cuts: &mut [Vec<usize>]) {
    let off = shape.len() - xs.len();
    for r in regs {
        for (a, &d) in xs.iter().enumerate() {
            for v in [r.lo[a], r.hi[a]] {
                if v > 0 && v < d {
                    insert_sorted(&mut cuts[a + off], v);
                }
            }
        }
    }
}

/// Groups the live nodes of `g` (`piecewise`: the concats read in place).
/// GEMM epilogues may update the inputs `donated` to outputs in place (input index, output
/// index).
pub(super) fn group(
    g: &Graph,
    live: &Live,
    piecewise: &[bool],
    cfg: &PlanConfig,
    donated: &[(usize, usize)],
) -> Fusion {
    let n = g.len();
    let nodes = g.nodes();
    let mut b = Builder {
        g,
        roles: vec![Role::Dead; n],
        views: vec![None; n],
        pieces: vec![None; n],
        cuts: Vec::new(),
        reduced: Vec::new(),
        realized: HashMap::new(),
        shapes: Vec::new(),
        members: Vec::new(),
        latest: HashMap::new(),
        checked: cfg.checked,
        backward: if cfg.keep_backward_apart {
            crate::opt::remat::backward_part(g)
        } else {
            Vec::new()
        },
    };
    // Values some live consumer reads contiguously (`reshape`, which is only a view of a
    // contiguous operand, and `scan`, whose steps take rows and whole values by address;
    // `matmul` takes any strides).
    let mut wants_contiguous = vec![false; n];
    for (node, &live) in nodes.iter().zip(&live.live) {
        if live && matches!(node.op, Op::Reshape | Op::Scan) {
            for x in &node.inputs {
                wants_contiguous[x.index()] = true;
            }
        }
    }
    for i in 0..n {
        if !live.live[i] {
            continue;
        }
        let id = NodeId(i as u32);
        let node = &nodes[i];
        match node.op {
            Op::Input | Op::Const => b.roles[i] = Role::Leaf,
            // A slice chosen to be read in place whose operand is copied after all (another
            // reader needs it in memory) is an ordinary view of the copy.
            Op::Slice if piecewise[i] && b.pieces[node.inputs[0].index()].is_some() => {
                b.slice_pieces(id);
            }
            op if is_view_op(op) => {
                // Decided before any consumer reads it, so every reader sees one layout.
                let v = b
                    .compose(id)
                    .expect("operands that need a contiguous layout were realized");
                let contiguous = is_row_major(&node.ty.shape, &v.strides);
                b.roles[i] = Role::View;
                b.views[i] = Some(v);
                if cfg.checked || live.output[i] || (wants_contiguous[i] && !contiguous) {
                    b.realize(id);
                }
            }
            Op::Concat if piecewise[i] => b.pieces_of(id),
            Op::Scan => {
                // The live nodes of one loop's result group are one group: one run of the loop.
                let grp = match b.members.last() {
                    Some(m) if crate::ir::loops::same_loop(g, m[0], id) => {
                        b.members.len() as u32 - 1
                    }
                    _ => b.new_group(None),
                };
                b.members[grp as usize].push(id);
                b.roles[i] = Role::Single(grp);
            }
            op if is_elementwise(op) => b.place(id, node.ty.shape.clone()),
            op if is_reduction(op) => b.place(id, g.ty(node.inputs[0]).shape.clone()),
            _ => {
                // `matmul`, `concat`, `cumsum` and the indexing ops (`gather`, `scatter_add`,
                // `iota`, `argmax`/`argmin`, `random_uniform`): they read their operands' views through
                // strides.
                let grp = b.new_group(None);
                b.members[grp as usize].push(id);
                b.roles[i] = Role::Single(grp);
            }
        }
    }
    let mut fusion = Fusion {
        roles: b.roles,
        views: b.views,
        pieces: b.pieces,
        cuts: b.cuts,
        realized: b.realized,
        shapes: b.shapes,
        members: b.members,
        stored: vec![false; n],
        last_use: vec![-1; n],
        accumulate: Vec::new(),
    };
    fusion.accumulate = super::epilogue::absorb(g, live, &mut fusion, cfg, donated);
    mark_stored(g, live, &mut fusion, cfg.checked);
    fusion
}

/// Decides which values are stored and the last group reading each, and gives every stored
/// value and leaf its row-major view.
fn mark_stored(g: &Graph, live: &Live, f: &mut Fusion, checked: bool) {
    let nodes = g.nodes();
    let roles = &f.roles;
    let root_of = |x: NodeId| -> NodeId {
        match roles[x.index()] {
            Role::View => f.views[x.index()].as_ref().expect("views have views").root,
            _ => x,
        }
    };
    let group_of = |i: usize| match roles[i] {
        Role::Member(g) | Role::Single(g) => Some(g),
        _ => None,
    };
    for i in 0..g.len() {
        let Some(gi) = group_of(i) else { continue };
        let acc = f.accumulate[gi as usize];
        // A product with an epilogue is never stored: the GEMM writes the epilogue's node.
        let product = acc.is_some() && nodes[i].op == Op::Matmul;
        if checked
            || live.output[i]
            || is_reduction(nodes[i].op)
            || (matches!(roles[i], Role::Single(_)) && !product)
        {
            f.stored[i] = true;
        }
        let reads: Vec<NodeId> = match (f.realized.get(&(i as u32)), acc) {
            (Some(v), _) => vec![v.root],
            (None, Some(a)) if a.out.index() == i => vec![a.init],
            (None, _) => nodes[i].inputs.clone(),
        };
        for x in reads {
            let same = roles[i] == Role::Member(gi)
                && roles[x.index()] == Role::Member(gi)
                && is_elementwise(nodes[x.index()].op);
            if same {
                continue;
            }
            let one = [root_of(x)];
            let roots: Vec<NodeId> = match &f.pieces[x.index()] {
                Some(regs) => regs.iter().map(|r| r.view.root).collect(),
                None => one.to_vec(),
            };
            for r in roots {
                if roles[r.index()] != Role::Leaf {
                    f.stored[r.index()] = true;
                    f.last_use[r.index()] = f.last_use[r.index()].max(i64::from(gi));
                }
            }
        }
    }
    for (i, v) in f.views.iter_mut().enumerate() {
        if (f.stored[i] && v.is_none()) || roles[i] == Role::Leaf {
            *v = Some(View::whole(NodeId(i as u32), &nodes[i].ty.shape));
        }
    }
}

/// Group-building state.
struct Builder<'g> {
    g: &'g Graph,
    roles: Vec<Role>,
    views: Vec<Option<View>>,
    /// The pieces of each [`Role::Pieces`] node.
    pieces: Vec<Option<Vec<Piece>>>,
    /// Per fused group: where the pieces its members read cut its iteration space (per axis;
    /// `None`: nowhere), and the axes its reductions reduce.
    cuts: Vec<Option<Vec<Vec<usize>>>>,
    reduced: Vec<Vec<usize>>,
    /// Realized views: the view each one copies from.
    realized: HashMap<u32, View>,
    /// Per group: (iteration shape, members) for fused groups, `None` shape for singles.
    shapes: Vec<Option<Vec<usize>>>,
    members: Vec<Vec<NodeId>>,
    latest: HashMap<Vec<usize>, u32>,
    checked: bool,
    /// With [`PlanConfig::keep_backward_apart`]: the backward part (else empty).
    backward: Vec<bool>,
}

impl Builder<'_> {
    /// True if joining group `g` would move backward node `n` into a forward loop (only with
    /// [`PlanConfig::keep_backward_apart`]).
    fn hoists(&self, n: NodeId, g: u32) -> bool {
        self.backward.get(n.index()).copied().unwrap_or(false)
            && !self.members[g as usize]
                .iter()
                .any(|m| self.backward[m.index()])
    }

    /// The base view of a stored node or leaf.
    fn base(&self, id: NodeId) -> View {
        View::whole(id, &self.g.ty(id).shape)
    }

    /// How `x` is read from memory (for a fused member, its future home).
    fn view(&self, x: NodeId) -> View {
        match &self.views[x.index()] {
            Some(v) => v.clone(),
            None => self.base(x),
        }
    }

    /// The group after which `x` can be read from memory (-1: always).
    fn ready(&self, x: NodeId) -> i64 {
        let root_ready = |root: NodeId| match self.roles[root.index()] {
            Role::Member(g) | Role::Single(g) => i64::from(g),
            _ => -1,
        };
        match self.roles[x.index()] {
            Role::View => root_ready(self.view(x).root),
            Role::Pieces => self.pieces[x.index()]
                .iter()
                .flatten()
                .map(|r| root_ready(r.view.root))
                .max()
                .unwrap_or(-1),
            _ => root_ready(x),
        }
    }

    fn new_group(&mut self, shape: Option<Vec<usize>>) -> u32 {
        let g = self.shapes.len() as u32;
        if let Some(s) = &shape {
            self.latest.insert(s.clone(), g);
        }
        self.shapes.push(shape);
        self.members.push(Vec::new());
        self.cuts.push(None);
        self.reduced.push(Vec::new());
        g
    }

    /// Where the pieces that `n` reads cut its iteration space of `shape` (`None`: nowhere).
    fn node_cuts(&self, n: NodeId, shape: &[usize]) -> Option<Vec<Vec<usize>>> {
        let mut cuts: Option<Vec<Vec<usize>>> = None;
        for &x in &self.g.node(n).inputs {
            if let Some(regs) = &self.pieces[x.index()] {
                let c = cuts.get_or_insert_with(|| vec![Vec::new(); shape.len()]);
                add_cuts(&self.g.ty(x).shape, regs, shape, c);
            }
        }
        cuts
    }

    /// The axes reduction `n` reduces (empty for other nodes).
    fn node_reduced(&self, n: NodeId) -> Vec<usize> {
        let node = self.g.node(n);
        match (&node.attrs, is_reduction(node.op)) {
            (Attrs::Reduce { axes, .. }, true) => axes.clone(),
            _ => Vec::new(),
        }
    }

    /// True if `n`, with cuts `nc` and reduced axes `nr`, keeps group `g` within
    /// [`MAX_BOXES`] boxes and every cut off the reduced axes (a reduction must see all of
    /// its reduced axes in one box, so that each box computes whole output elements in the
    /// interpreter's order).
    fn boxes_fit(&self, g: u32, nc: Option<&Vec<Vec<usize>>>, nr: &[usize]) -> bool {
        let gc = self.cuts[g as usize].as_ref();
        let gr = &self.reduced[g as usize];
        if nc.is_none() && (nr.is_empty() || gc.is_none()) {
            return true;
        }
        let mut merged = gc.or(nc).cloned().unwrap_or_default();
        if let (Some(_), Some(nc)) = (gc, nc) {
            for (m, c) in merged.iter_mut().zip(nc) {
                for &v in c {
                    insert_sorted(m, v);
                }
            }
        }
        box_count(&merged) <= MAX_BOXES
            && gr
                .iter()
                .chain(nr)
                .all(|&a| merged.get(a).is_none_or(Vec::is_empty))
    }

    /// Turns view `x` into a copy with its own buffer (a singleton group).
    fn realize(&mut self, x: NodeId) {
        if self.roles[x.index()] != Role::View {
            return;
        }
        let v = self.view(x);
        let g = self.new_group(None);
        self.members[g as usize].push(x);
        self.roles[x.index()] = Role::Single(g);
        self.realized.insert(x.0, v);
        self.views[x.index()] = None;
    }

    /// Operand `x` of `n` is in a register inside group `g`.
    fn in_register(&self, x: NodeId, g: u32) -> bool {
        self.roles[x.index()] == Role::Member(g) && is_elementwise(self.g.node(x).op)
    }

    /// How many operands of `n` group `g` would provide from registers, if `n` may join it.
    fn fit(&self, n: NodeId, g: u32) -> Option<usize> {
        if self.members[g as usize].len() >= MAX_GROUP {
            return None;
        }
        let mut regs = 0;
        for &x in &self.g.node(n).inputs {
            if self.in_register(x, g) {
                regs += 1;
            } else if self.ready(x) >= i64::from(g) {
                return None;
            }
        }
        Some(regs)
    }

    /// Places elementwise node or reduction `n` whose loop runs over `shape`.
    fn place(&mut self, n: NodeId, shape: Vec<usize>) {
        if self.checked {
            let g = self.new_group(Some(shape));
            self.members[g as usize].push(n);
            self.roles[n.index()] = Role::Member(g);
            return;
        }
        let nc = self.node_cuts(n, &shape);
        let nr = self.node_reduced(n);
        let mut best: Option<(usize, u32)> = None;
        let mut consider = |b: &Self, g: u32| {
            if b.shapes[g as usize].as_ref() != Some(&shape) || b.hoists(n, g) {
                return;
            }
            if let Some(regs) = b.fit(n, g)
                && b.boxes_fit(g, nc.as_ref(), &nr)
                && best.is_none_or(|cur| (regs, g) > cur)
            {
                best = Some((regs, g));
            }
        };
        for &x in &self.g.node(n).inputs {
            if let Role::Member(g) = self.roles[x.index()] {
                consider(self, g);
            }
        }
        if let Some(&g) = self.latest.get(&shape) {
            consider(self, g);
        }
        let g = match best {
            Some((_, g)) => g,
            None => self.new_group(Some(shape)),
        };
        if let Some(nc) = nc {
            match &mut self.cuts[g as usize] {
                Some(gc) => {
                    for (m, c) in gc.iter_mut().zip(nc) {
                        for v in c {
                            insert_sorted(m, v);
                        }
                    }
                }
                none => *none = Some(nc),
            }
        }
        self.reduced[g as usize].extend(nr);
        self.members[g as usize].push(n);
        self.roles[n.index()] = Role::Member(g);
    }

    /// Makes `concat` node `n` a [`Role::Pieces`] value: its pieces are its operands' views
    /// (or their own pieces, for operands that are pieces), shifted to where they sit.
    fn pieces_of(&mut self, n: NodeId) {
        let node = self.g.node(n);
        let Attrs::Axis { axis } = node.attrs else {
            unreachable!("verified concat has an axis")
        };
        let mut regs = Vec::new();
        let mut at = 0usize;
        for &x in &node.inputs {
            let xs = &self.g.ty(x).shape;
            let shift = |r: &mut Piece| {
                r.lo[axis] += at;
                r.hi[axis] += at;
                r.view.offset -= at as i64 * r.view.strides[axis];
            };
            match &self.pieces[x.index()] {
                Some(rs) => regs.extend(rs.iter().cloned().map(|mut r| {
                    shift(&mut r);
                    r
                })),
                None => {
                    let mut r = Piece {
                        lo: vec![0; xs.len()],
                        hi: xs.clone(),
                        view: self.view(x),
                    };
                    shift(&mut r);
                    regs.push(r);
                }
            }
            at += xs[axis];
        }
        self.roles[n.index()] = Role::Pieces;
        self.pieces[n.index()] = Some(regs);
    }

    /// Makes `slice` node `n` of a [`Role::Pieces`] value a [`Role::Pieces`] value: the
    /// operand's pieces that overlap the slice, clipped to it and moved to its origin.
    fn slice_pieces(&mut self, n: NodeId) {
        let node = self.g.node(n);
        let Attrs::Slice { start, stop } = &node.attrs else {
            unreachable!("verified slices have bounds")
        };
        let regs = self.pieces[node.inputs[0].index()]
            .as_ref()
            .expect("checked by the caller");
        let mut out = Vec::new();
        for r in regs {
            let lo: Vec<usize> = (0..start.len()).map(|a| r.lo[a].max(start[a])).collect();
            let hi: Vec<usize> = (0..start.len()).map(|a| r.hi[a].min(stop[a])).collect();
            if lo.iter().zip(&hi).any(|(l, h)| l >= h) {
                continue;
            }
            let shift: i64 = start
                .iter()
                .zip(&r.view.strides)
                .map(|(&a, &st)| a as i64 * st)
                .sum();
            out.push(Piece {
                lo: lo.iter().zip(start).map(|(l, a)| l - a).collect(),
                hi: hi.iter().zip(start).map(|(h, a)| h - a).collect(),
                view: View {
                    offset: r.view.offset + shift,
                    ..r.view.clone()
                },
            });
        }
        self.roles[n.index()] = Role::Pieces;
        self.pieces[n.index()] = Some(out);
    }

    /// The view `n` (a view op) defines, if its operand's view composes with it.
    fn compose(&self, n: NodeId) -> Option<View> {
        let node = self.g.node(n);
        let x = node.inputs[0];
        let xs = &self.g.ty(x).shape;
        let v = self.view(x);
        Some(match (&node.op, &node.attrs) {
            (Op::Reshape, _) => {
                if !is_row_major(xs, &v.strides) {
                    return None;
                }
                View {
                    strides: row_major(&node.ty.shape),
                    ..v
                }
            }
            (Op::Barrier, _) => v,
            (Op::Pvary, _) => v,
            (Op::Broadcast, _) => View {
                strides: broadcast(xs, &v.strides, &node.ty.shape),
                ..v
            },
            (Op::Transpose, Attrs::Perm { perm }) => View {
                strides: perm.iter().map(|&p| v.strides[p]).collect(),
                ..v
            },
            (Op::Slice, Attrs::Slice { start, .. }) => View {
                offset: v.offset
                    + start
                        .iter()
                        .zip(&v.strides)
                        .map(|(&a, &s)| a as i64 * s)
                        .sum::<i64>(),
                ..v
            },
            _ => unreachable!("verified view ops have their attributes"),
        })
    }
}
