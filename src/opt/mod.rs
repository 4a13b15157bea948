//! The optimizer: a straight pipeline of small passes run to a fixed point.
//!
//! Passes (each one file, one public entry point, one stats struct):
//! - [`const_fold`]: evaluates nodes whose operands are all constants.
//! - [`simplify`]: algebraic identities (`x+0`, `x*1`, `--x`, reshape∘reshape, ...).
//! - [`cse`]: hash-consing of identical nodes, commutative operands normalized.
//! - [`dce`]: removes nodes no output depends on, compacting and renumbering.
//! - [`loop_outputs`]: removes the loop body outputs nothing reads (after DCE dropped the
//!   loop results nothing reads), so bodies stop computing them.
//!
//! After the fixed point, once: [`bucket`] merges independent all-reduces into one call on a
//! flat buffer (data-parallel gradients), reordering nodes so the merged call comes after all
//! of its operands.
//!
//! Not in the pipeline: [`remat`], recomputation in checkpoint segments, which the JIT runs
//! for a memory budget after the pipeline (CSE would undo it).
//!
//! Every rewrite is exact in IEEE arithmetic, with one documented exception: `x + 0.0 → x`
//! changes `-0.0 + 0.0 = +0.0` into `-0.0` (equal as numbers). No pass reassociates.
//!
//! Invariants kept by every pass: the graph's inputs (names, order, types) and outputs (names,
//! order, values) are unchanged, and ids stay topologically ordered. Debug builds verify the
//! graph after each pass and name the pass that broke it.
//!
//! Not done here: fusion and memory planning (the JIT's concern), anything that needs input
//! values.

pub mod bucket;
pub mod const_fold;
pub mod cse;
pub mod dce;
pub mod loop_outputs;
pub mod remat;
pub mod simplify;
pub mod tapes;

use crate::ir::{Graph, Node, NodeId};
use std::fmt;
use std::time::{Duration, Instant};

/// Optimizer settings.
#[derive(Clone, Debug)]
pub struct OptConfig {
    /// Run constant folding.
    pub const_fold: bool,
    /// Run algebraic simplification.
    pub simplify: bool,
    /// Run common-subexpression elimination.
    pub cse: bool,
    /// Run dead-code elimination.
    pub dce: bool,
    /// Remove loop body outputs nothing reads ([`loop_outputs`]).
    pub loop_outputs: bool,
    /// Merge independent all-reduces into one ([`bucket`]), after the fixed point.
    pub bucket: bool,
    /// Stop after this many rounds even if the graph still changes.
    pub max_rounds: u32,
    /// Largest constant (in elements) that folding may create.
    pub max_folded_elements: usize,
    /// Record the graph's `.gir` text after each pass whose name is listed (`"cse"`), or after
    /// every pass with `"all"`, in [`OptReport::dumps`].
    pub dump_after: Vec<String>,
    /// Verify the graph after every pass (default: on in debug builds).
    pub verify: bool,
}

impl Default for OptConfig {
    fn default() -> OptConfig {
        OptConfig {
            const_fold: true,
            simplify: true,
            cse: true,
            dce: true,
            loop_outputs: true,
            bucket: true,
            max_rounds: 8,
            max_folded_elements: 1 << 16,
            dump_after: Vec::new(),
            verify: cfg!(debug_assertions),
        }
    }
}

/// Why the pipeline stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StopReason {
    /// A round changed nothing.
    #[default]
    FixedPoint,
    /// [`OptConfig::max_rounds`] reached.
    RoundLimit,
}

/// One pass run: its name, node counts, counters and time.
#[derive(Clone, Debug)]
pub struct PassRun {
    /// Pass name (`const_fold`, `simplify`, `cse`, `dce`, `loop_outputs`, `bucket`).
    pub pass: &'static str,
    /// The round it ran in (1-based).
    pub round: u32,
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// The pass's counters, printed (`nodes_merged=3`).
    pub counters: String,
    /// Wall time.
    pub time: Duration,
}

/// What the optimizer did.
#[derive(Clone, Debug, Default)]
pub struct OptReport {
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// Rounds run.
    pub rounds: u32,
    /// Why it stopped.
    pub stop: StopReason,
    /// Every pass run, in order. A pass that ran without changing the graph is not run again
    /// until another pass changes it (it would change nothing), so the last round may list
    /// fewer passes.
    pub passes: Vec<PassRun>,
    /// `(pass name, round, .gir text)` after each pass listed in [`OptConfig::dump_after`].
    pub dumps: Vec<(String, u32, String)>,
}

impl fmt::Display for OptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "optimizer: {} -> {} nodes in {} round(s) ({:?})",
            self.nodes_before, self.nodes_after, self.rounds, self.stop
        )?;
        for p in &self.passes {
            writeln!(
                f,
                "  round {} {:<10} {:>8} -> {:<8} {:>9.3} ms  {}",
                p.round,
                p.pass,
                p.nodes_before,
                p.nodes_after,
                p.time.as_secs_f64() * 1e3,
                p.counters
            )?;
        }
        Ok(())
    }
}

/// Optimizes `g` in place, keeping its inputs and outputs (names, order, values).
///
/// ```
/// use gradlift::{GraphBuilder, DType, opt};
/// let b = GraphBuilder::new("g");
/// let x = b.input("x", DType::F64, &[]);
/// let y = (x * 1.0).exp() + (x * 1.0).exp(); // x*1 → x, then the two exps merge
/// let mut g = b.finish(&[("y", y)]).unwrap();
/// let report = opt::optimize(&mut g, &opt::OptConfig::default());
/// assert_eq!(g.len(), 3); // x, exp x, add
/// assert!(report.nodes_after < report.nodes_before);
/// ```
pub fn optimize(g: &mut Graph, cfg: &OptConfig) -> OptReport {
    let mut report = OptReport {
        nodes_before: g.len(),
        ..Default::default()
    };
    if cfg.verify {
        check(g, "input");
    }
    optimize_bodies(g, cfg);
    // A pass returns whether it made progress (another round is needed), whether it altered
    // the graph at all (CSE's operand normalization alone is not progress), and its counters.
    type Pass = fn(&mut Graph, &OptConfig) -> (bool, bool, String);
    let pipeline: [(&'static str, bool, Pass); 5] = [
        ("const_fold", cfg.const_fold, |g, c| {
            let s = const_fold::fold_constants(g, c.max_folded_elements);
            (s.consts_folded > 0, s.consts_folded > 0, s.to_string())
        }),
        ("simplify", cfg.simplify, |g, _| {
            let s = simplify::simplify(g);
            (s.nodes_rewritten > 0, s.nodes_rewritten > 0, s.to_string())
        }),
        ("cse", cfg.cse, |g, _| {
            let s = cse::eliminate_common_subexpressions(g);
            let altered = s.nodes_merged > 0 || s.operands_normalized > 0;
            (s.nodes_merged > 0, altered, s.to_string())
        }),
        ("dce", cfg.dce, |g, _| {
            let s = dce::eliminate_dead_nodes(g);
            (s.nodes_removed > 0, s.nodes_removed > 0, s.to_string())
        }),
        ("loop_outputs", cfg.loop_outputs, |g, _| {
            let s = loop_outputs::prune_loop_outputs(g);
            (s.outputs_removed > 0, s.outputs_removed > 0, s.to_string())
        }),
    ];
    report.stop = StopReason::RoundLimit;
    // `clean[p]`: pass `p` last ran without altering the graph, and no pass has altered it
    // since. Every pass is deterministic, so running it again would change nothing: it is
    // skipped (the round that would run it is then a no-op for it, and the fixed point is
    // reached as before, with the same graph).
    let mut clean = [false; 5];
    for round in 1..=cfg.max_rounds {
        report.rounds = round;
        let mut changed = false;
        for (p, (name, enabled, pass)) in pipeline.into_iter().enumerate() {
            if !enabled || clean[p] {
                continue;
            }
            let before = g.len();
            let t = Instant::now();
            let (c, altered, counters) = pass(g, cfg);
            let time = t.elapsed();
            changed |= c;
            if altered {
                clean = [false; 5];
            }
            clean[p] = !altered;
            if cfg.verify {
                check(g, name);
            }
            if cfg.dump_after.iter().any(|d| d == name || d == "all") {
                report
                    .dumps
                    .push((name.to_string(), round, crate::ir::text::print(g)));
            }
            report.passes.push(PassRun {
                pass: name,
                round,
                nodes_before: before,
                nodes_after: g.len(),
                counters,
                time,
            });
        }
        if !changed {
            report.stop = StopReason::FixedPoint;
            break;
        }
    }
    if cfg.bucket {
        let before = g.len();
        let t = Instant::now();
        let s = bucket::bucket_all_reduces(g);
        if cfg.verify {
            check(g, "bucket");
        }
        if cfg.dump_after.iter().any(|d| d == "bucket" || d == "all") {
            report
                .dumps
                .push(("bucket".into(), report.rounds, crate::ir::text::print(g)));
        }
        report.passes.push(PassRun {
            pass: "bucket",
            round: report.rounds,
            nodes_before: before,
            nodes_after: g.len(),
            counters: s.to_string(),
            time: t.elapsed(),
        });
    }
    report.nodes_after = g.len();
    report
}

/// Optimizes each loop body once (bodies keep their inputs and outputs, so the loops stay
/// valid), and the forward loop a recomputing loop refers to with it, so a forward loop and its
/// backward loop's copy stay one `Arc`. Recurses only as deep as loops nest.
fn optimize_bodies(g: &mut Graph, cfg: &OptConfig) {
    use crate::ir::{Attrs, loops::Loop};
    use std::sync::Arc;
    if !g
        .nodes()
        .iter()
        .any(|n| matches!(n.attrs, Attrs::Scan { .. }))
    {
        return;
    }
    let mut done: std::collections::HashMap<*const Loop, Arc<Loop>> = Default::default();
    let regions = g.take_custom_regions(); // ids do not change: put back below
    let body_cfg = OptConfig {
        dump_after: Vec::new(),
        ..cfg.clone()
    };
    for n in g.nodes_mut() {
        if let Attrs::Scan { body, .. } = &mut n.attrs {
            *body = optimized_loop(body, &body_cfg, &mut done);
        }
    }
    for r in regions {
        g.add_custom_region(r);
    }
}

fn optimized_loop(
    lp: &std::sync::Arc<crate::ir::loops::Loop>,
    cfg: &OptConfig,
    done: &mut std::collections::HashMap<
        *const crate::ir::loops::Loop,
        std::sync::Arc<crate::ir::loops::Loop>,
    >,
) -> std::sync::Arc<crate::ir::loops::Loop> {
    if let Some(new) = done.get(&std::sync::Arc::as_ptr(lp)) {
        return new.clone();
    }
    let mut new = (**lp).clone();
    optimize(&mut new.body, cfg);
    if let Some(rc) = &mut new.recompute {
        rc.forward = optimized_loop(&rc.forward, cfg, done);
    }
    let new = std::sync::Arc::new(new);
    done.insert(std::sync::Arc::as_ptr(lp), new.clone());
    new
}

fn check(g: &Graph, after: &str) {
    if let Err(e) = crate::ir::verify(g) {
        panic!("invariant broken after pass `{after}`: {e}");
    }
}

/// What a rewriting pass decides for one node.
pub(crate) enum Rewrite {
    /// Keep the node (with remapped operands).
    Keep,
    /// Use this node (already in the new graph) instead.
    Alias(NodeId),
    /// Append this node instead (its operands must be new ids).
    Replace(Node),
}

/// Rebuilds `g` node by node into a fresh graph. `decide` sees the new graph so far and the node
/// with operands already remapped to new ids, and may append helper nodes to the new graph.
///
/// Outputs are protected: an output node is only aliased to a node that is unnamed and not
/// already an output (the output's name moves to it); otherwise it is kept. Returns the number of
/// nodes that were aliased or replaced.
pub(crate) fn rebuild(g: &mut Graph, mut decide: impl FnMut(&mut Graph, &Node) -> Rewrite) -> u64 {
    let opaque = g.custom_interior();
    let regions = g.take_custom_regions();
    let old = std::mem::take(g);
    let mut is_output = vec![false; old.len()];
    for o in old.outputs() {
        is_output[o.index()] = true;
    }
    let mut new = Graph::new(old.name.clone());
    let mut new_is_output: Vec<bool> = Vec::with_capacity(old.len());
    let mut map: Vec<NodeId> = Vec::with_capacity(old.len());
    let mut rewritten = 0u64;
    for (i, node) in old.nodes().iter().enumerate() {
        let mut n = node.clone();
        for x in &mut n.inputs {
            *x = map[x.index()];
        }
        // Provenance follows the renumbering (adjoint origins point at earlier nodes).
        n.origin = n.origin.renumbered(|f| map.get(f.index()).copied());
        // Nodes inside a custom-derivative region are kept as they are (and are never merge
        // targets), so the region stays one contiguous, unchanged range.
        let decision = if opaque[i] {
            Rewrite::Keep
        } else {
            decide(&mut new, &n)
        };
        new_is_output.resize(new.len(), false);
        let id = match decision {
            Rewrite::Keep => new.append(n),
            Rewrite::Alias(m) if !is_output[i] => {
                rewritten += 1;
                m
            }
            Rewrite::Alias(m) => {
                if new.node(m).name.is_none() && !new_is_output[m.index()] {
                    new.set_name(m, n.name.as_deref());
                    rewritten += 1;
                    m
                } else {
                    new.append(n)
                }
            }
            Rewrite::Replace(mut r) => {
                rewritten += 1;
                r.name = n.name.take();
                new.append(r)
            }
        };
        new_is_output.resize(new.len(), false);
        if is_output[i] {
            new_is_output[id.index()] = true;
        }
        map.push(id);
    }
    new.set_outputs(old.outputs().iter().map(|o| map[o.index()]).collect());
    for mut r in regions {
        r.inputs.iter_mut().for_each(|x| *x = map[x.index()]);
        (r.first, r.output) = (map[r.first.index()], map[r.output.index()]);
        new.add_custom_region(r);
    }
    *g = new;
    rewritten
}

#[cfg(test)]
mod tests;
