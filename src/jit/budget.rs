//! The memory budget ([`JitConfig::memory_budget_bytes`]): chooses what to store and what to
//! recompute so that the kernel's workspace, as the memory plan computes it before any call,
//! fits the budget.
//!
//! A graph offers *trade-offs*: each a knob with settings, from 0 (the graph unchanged) to ones
//! that use less memory and more time ([`Tradeoff`]). There are three: the snapshot count of
//! loops that recompute their forward carries (binomial checkpointing, a cap on every such
//! loop), keeping the backward part's elementwise work out of the forward part's fused loops
//! (the JIT's fusion otherwise computes `1 - h²` next to `h` and stores both), and checkpoint
//! segments of the straight-line backward pass ([`crate::opt::remat`]). The planner
//! evaluates settings with the real memory plan ([`super::plan_graph`]): first all at 0 (no
//! recomputation), then, knob by knob, every setting of one knob with the others fixed, keeping
//! the fitting combination with the least recomputed work, until a round changes nothing. If
//! nothing fits, [`JitError::OverBudget`] names the smallest workspace any evaluated
//! combination needs: the smallest budget that succeeds.
//!
//! Not done here: anything that changes results. Every trade is exact recomputation, so a
//! kernel gives bitwise the same results under any budget.

use super::{JitConfig, JitError};
use crate::ir::Graph;
use crate::opt::remat::{self, RematStats};
use std::borrow::Cow;
use std::collections::HashMap;

/// What the planner varies: the graph (rewritten by recomputation) and how the JIT fuses it.
pub(crate) struct Candidate {
    /// The graph to compile.
    pub graph: Graph,
    /// Plan with [`super::plan::PlanConfig::keep_backward_apart`].
    pub keep_backward_apart: bool,
    /// Plan with [`super::plan::PlanConfig::max_snapshots`].
    pub max_snapshots: Option<usize>,
    /// The recomputation the rewrites cost.
    pub stats: RematStats,
}

/// One way to trade memory for time in a graph.
pub(crate) trait Tradeoff {
    /// How many settings there are (at least 1; setting 0 leaves the candidate unchanged).
    fn settings(&self) -> usize;
    /// Applies `setting` to `c`, adding the recomputation it costs to `c.stats`. Trade-offs
    /// are applied in [`tradeoffs`] order, each to the previous one's result; one that
    /// renumbers nodes must come after those that find their nodes by id.
    fn apply(&self, c: &mut Candidate, setting: usize);
}

/// Backward elementwise work in the forward part's loops (setting 0, the JIT's default) or
/// kept in the backward part (setting 1): the first can store two values per layer until the
/// backward pass (`h` and `1 - h²`), the second reads `h` again there.
struct KeepApart;

impl Tradeoff for KeepApart {
    fn settings(&self) -> usize {
        2
    }

    fn apply(&self, c: &mut Candidate, setting: usize) {
        c.keep_backward_apart = setting == 1;
    }
}

/// Checkpoint segments of the straight-line backward pass: setting `s > 0` cuts the forward
/// part into `counts[s - 1]` segments.
struct Segments {
    counts: Vec<usize>,
}

impl Tradeoff for Segments {
    fn settings(&self) -> usize {
        self.counts.len() + 1
    }

    fn apply(&self, c: &mut Candidate, setting: usize) {
        if setting > 0 {
            let st = remat::rematerialize(&mut c.graph, self.counts[setting - 1]);
            c.stats.nodes_recomputed += st.nodes_recomputed;
            c.stats.flops_recomputed += st.flops_recomputed;
        }
    }
}

/// Snapshot counts of the loops that recompute their forward loop's carries (binomial
/// checkpointing, [`crate::ops::loops::revolve`]): setting `s > 0` lets each keep at most
/// `caps[s - 1]` carries.
struct Snapshots {
    caps: Vec<usize>,
}

impl Tradeoff for Snapshots {
    fn settings(&self) -> usize {
        self.caps.len() + 1
    }

    fn apply(&self, c: &mut Candidate, setting: usize) {
        if setting == 0 {
            return;
        }
        let cap = self.caps[setting - 1];
        c.max_snapshots = Some(cap);
        for n in c.graph.nodes() {
            let Some((lp, 0)) = crate::ir::loops::scan_attrs(&n.attrs) else {
                continue;
            };
            let Some(rc) = &lp.recompute else { continue };
            let extra = extra_steps(lp.length, rc.snapshots.min(cap).max(1));
            let body = &rc.forward.body;
            let per_step: u64 = (0..body.len() as u32)
                .map(|i| remat::flops(body, crate::ir::NodeId(i)))
                .sum();
            c.stats.nodes_recomputed += extra * body.len() as u64;
            c.stats.flops_recomputed += extra * per_step;
        }
    }
}

/// Forward steps a schedule with `snapshots` runs beyond the full tape's `n - 1`.
fn extra_steps(n: usize, snapshots: usize) -> u64 {
    crate::ops::loops::revolve::forward_steps(n, snapshots)
        .saturating_sub(n.saturating_sub(1) as u64)
}

/// The trade-offs `g` offers, in the order they are applied.
fn tradeoffs(g: &Graph) -> Vec<Box<dyn Tradeoff>> {
    let mut knobs: Vec<Box<dyn Tradeoff>> = Vec::new();
    let longest = (g.nodes().iter())
        .filter_map(|n| crate::ir::loops::scan_attrs(&n.attrs))
        .filter(|(lp, _)| lp.recompute.is_some())
        .map(|(lp, _)| lp.length)
        .max();
    if let Some(n) = longest.filter(|&n| n > 1) {
        // Halving caps from n/2 down to 1 snapshot: the schedule's memory falls with the cap,
        // its recomputation grows by about one sweep per halving.
        let mut caps = Vec::new();
        let mut k = n / 2;
        while k >= 1 {
            caps.push(k);
            k /= 2;
        }
        knobs.push(Box::new(Snapshots { caps }));
    }
    let back = remat::backward_part(g);
    if !back.contains(&true) {
        return knobs;
    }
    let forward = (g.nodes().iter().zip(&back))
        .filter(|(n, b)| !**b && !n.inputs.is_empty())
        .count();
    knobs.push(Box::new(KeepApart));
    if forward >= 2 {
        // Segment counts from 2 to one per forward node, about 12% apart: fine enough near
        // √n, where the memory curve is flat, and few enough to plan each.
        let mut counts = Vec::new();
        let mut k = 2usize;
        while k < forward {
            counts.push(k);
            k = (k + 1).max(k + k / 8);
        }
        counts.push(forward);
        knobs.push(Box::new(Segments { counts }));
    }
    knobs
}

/// One evaluated combination of settings.
struct Trial {
    candidate: Candidate,
    ws_bytes: u64,
}

/// A candidate for `g` whose workspace fits `budget` with the least recomputation found;
/// `None` if `g` itself fits.
///
/// # Errors
/// [`JitError::OverBudget`] if no combination fits, or an error of planning itself.
pub(super) fn fit(
    g: &Graph,
    cfg: &JitConfig,
    budget: u64,
    bodies: &super::plan::BodySizes,
) -> Result<Option<Candidate>, JitError> {
    let knobs = tradeoffs(g);
    let unbudgeted = JitConfig {
        memory_budget_bytes: None,
        ..cfg.clone()
    };
    let mut tried: HashMap<Vec<usize>, Trial> = HashMap::new();
    let mut evaluate = |settings: &[usize]| -> Result<(u64, u64), JitError> {
        if let Some(t) = tried.get(settings) {
            return Ok((t.ws_bytes, t.candidate.stats.flops_recomputed));
        }
        let mut c = Candidate {
            graph: g.clone(),
            keep_backward_apart: false,
            max_snapshots: None,
            stats: RematStats::default(),
        };
        for (knob, &s) in knobs.iter().zip(settings) {
            knob.apply(&mut c, s);
        }
        debug_assert!(
            crate::ir::verify(&c.graph).is_ok(),
            "remat keeps graphs valid"
        );
        let plan = super::plan_graph(
            &c.graph,
            &unbudgeted,
            bodies,
            (c.keep_backward_apart, c.max_snapshots),
        )?
        .0;
        let t = Trial {
            candidate: c,
            ws_bytes: plan.ws_bytes as u64,
        };
        let r = (t.ws_bytes, t.candidate.stats.flops_recomputed);
        tried.insert(settings.to_vec(), t);
        Ok(r)
    };
    let mut current = vec![0; knobs.len()];
    if evaluate(&current)?.0 <= budget {
        return Ok(None);
    }
    let mut best: Option<(u64, Vec<usize>)> = None;
    loop {
        let before = current.clone();
        for k in 0..knobs.len() {
            // The fitting setting of knob k with the least work, else the smallest workspace.
            let mut smallest = (u64::MAX, current[k]);
            for s in 0..knobs[k].settings() {
                let mut cand = current.clone();
                cand[k] = s;
                let (ws, work) = evaluate(&cand)?;
                smallest = smallest.min((ws, s));
                // Least work; on a tie, the smaller settings (the JIT's defaults first).
                if ws <= budget && best.as_ref().is_none_or(|b| (work, &cand) < (b.0, &b.1)) {
                    best = Some((work, cand));
                }
            }
            current = match &best {
                Some((_, b)) => b.clone(),
                None => {
                    let mut c = current.clone();
                    c[k] = smallest.1;
                    c
                }
            };
        }
        if current == before {
            break;
        }
    }
    match best {
        Some((_, settings)) => Ok(Some(tried.remove(&settings).expect("evaluated").candidate)),
        None => Err(JitError::OverBudget {
            budget,
            minimum: tried.values().map(|t| t.ws_bytes).min().unwrap_or(0),
        }),
    }
}

/// The graph to compile and how: see [`choose`].
pub(super) struct Chosen<'g> {
    /// The graph (the caller's, or a rewrite of it).
    pub graph: Cow<'g, Graph>,
    /// Its loop bodies, compiled.
    pub bodies: super::loops::Bodies,
    /// Their workspace sizes.
    pub body_ws: super::plan::BodySizes,
    /// The recomputation the choice costs.
    pub stats: RematStats,
    /// `(keep_backward_apart, max_snapshots)` for the plan.
    pub choice: (bool, Option<usize>),
}

/// Chooses what to compile for `g`: with its full-snapshot backward loops reading their forward
/// loops' tapes (one forward sweep, [`crate::opt::tapes`]) when there is no budget or that fits
/// it, except in checked mode (its reports name the caller's node ids, which sharing
/// renumbers); otherwise the fitting candidate with the least recomputation ([`fit`]). The error of an
/// impossible budget names the smallest workspace of either.
///
/// # Errors
/// [`JitError::OverBudget`], or an error of compiling a body or planning.
pub(super) fn choose<'g>(g: &'g Graph, cfg: &JitConfig) -> Result<Chosen<'g>, JitError> {
    let plain = |graph: Cow<'g, Graph>, bodies, body_ws| Chosen {
        graph,
        bodies,
        body_ws,
        stats: RematStats::default(),
        choice: (false, None),
    };
    let mut shared_ws = None;
    // Checked mode reports culprits by the caller's node ids, which sharing renumbers.
    if !cfg.check_finite
        && let Some(s) = with_shared_tapes(g)
    {
        let (bodies, body_ws) = super::loops::compile_bodies(&s, cfg)?;
        let fits = match cfg.memory_budget_bytes {
            None => true,
            Some(budget) => {
                let ws = super::plan_graph(&s, cfg, &body_ws, (false, None))?
                    .0
                    .ws_bytes as u64;
                shared_ws = Some(ws);
                ws <= budget
            }
        };
        if fits {
            return Ok(plain(Cow::Owned(s), bodies, body_ws));
        }
    }
    let (bodies, body_ws) = super::loops::compile_bodies(g, cfg)?;
    let Some(budget) = cfg.memory_budget_bytes else {
        return Ok(plain(Cow::Borrowed(g), bodies, body_ws));
    };
    match fit(g, cfg, budget, &body_ws) {
        Ok(None) => Ok(plain(Cow::Borrowed(g), bodies, body_ws)),
        Ok(Some(c)) => Ok(Chosen {
            choice: (c.keep_backward_apart, c.max_snapshots),
            stats: c.stats,
            graph: Cow::Owned(c.graph),
            bodies,
            body_ws,
        }),
        Err(JitError::OverBudget { budget, minimum }) => Err(JitError::OverBudget {
            budget,
            minimum: shared_ws.map_or(minimum, |s| s.min(minimum)),
        }),
        Err(e) => Err(e),
    }
}

/// `g` with its full-snapshot backward loops reading their forward loops' tapes
/// ([`crate::opt::tapes`]: one forward sweep instead of two, bitwise the same), if it has any.
pub(super) fn with_shared_tapes(g: &Graph) -> Option<Graph> {
    let full = g.nodes().iter().any(|n| {
        crate::ir::loops::scan_attrs(&n.attrs)
            .and_then(|(lp, _)| Some(lp.recompute.as_ref()?.snapshots >= lp.length))
            .unwrap_or(false)
    });
    if !full {
        return None;
    }
    let mut s = g.clone();
    (crate::opt::tapes::share_tapes(&mut s).tapes_shared > 0).then_some(s)
}
