//! Unit tests of the planner: grouping, pieces read in place, memory reuse.

use super::memory::Arena;
use super::*;
use crate::ir::{Attrs, TensorType};

fn cfg() -> PlanConfig {
    PlanConfig {
        max_ops_per_function: 100,
        parallel_min_elements: 1 << 16,
        exact: false,
        checked: false,
        keep_backward_apart: false,
        max_snapshots: None,
    }
}

#[test]
fn a_chain_and_its_sum_are_one_group_with_nothing_stored() {
    let mut g = Graph::new("t");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![8]))
        .unwrap();
    let a = g.push(Op::Exp, vec![x], Attrs::None).unwrap();
    let b = g.push(Op::Mul, vec![a, x], Attrs::None).unwrap();
    let s = g
        .push(
            Op::ReduceSum,
            vec![b],
            Attrs::Reduce {
                axes: vec![0],
                keepdims: false,
            },
        )
        .unwrap();
    g.set_outputs(vec![s]);
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.ws_bytes, 0);
    assert_eq!(p.locs[a.index()], Loc::Unused);
    assert_eq!(p.locs[s.index()], Loc::Output(0));
    let Group::Fused(f) = &p.groups[0] else {
        panic!("fused group expected")
    };
    assert_eq!(f.vector, Some(DType::F32));
    assert_eq!(f.dims, vec![8]);
}

#[test]
fn views_compose_and_a_reduction_result_starts_a_new_group() {
    // y = x - mean(x) over a transposed slice: slice and transpose are strides of x.
    let mut g = Graph::new("t");
    let x = g
        .add_input("x", TensorType::new(DType::F64, vec![4, 6]))
        .unwrap();
    let sl = g
        .push(
            Op::Slice,
            vec![x],
            Attrs::Slice {
                start: vec![1, 0],
                stop: vec![3, 6],
            },
        )
        .unwrap();
    let t = g
        .push(Op::Transpose, vec![sl], Attrs::Perm { perm: vec![1, 0] })
        .unwrap();
    let m = g
        .push(
            Op::ReduceMean,
            vec![t],
            Attrs::Reduce {
                axes: vec![0, 1],
                keepdims: false,
            },
        )
        .unwrap();
    let y = g.push(Op::Sub, vec![t, m], Attrs::None).unwrap();
    g.set_outputs(vec![y]);
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    let v = p.views[t.index()].as_ref().unwrap();
    assert_eq!((v.root, v.offset, v.strides.clone()), (x, 6, vec![1, 6]));
    assert_eq!(p.groups.len(), 2, "{:?}", p.groups);
    assert_eq!(p.locs[m.index()], Loc::Ws(0));
}

/// The concat nodes that got a buffer of their own (singleton groups).
fn copied_concats(g: &Graph, p: &Plan) -> usize {
    p.groups
        .iter()
        .filter(|grp| matches!(grp, Group::Node(id) if g.node(*id).op == Op::Concat))
        .count()
}

fn parts(p: &Plan) -> Vec<&Fused> {
    p.groups
        .iter()
        .filter_map(|grp| match grp {
            Group::Fused(f) if f.part => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn the_rosenbrock_adjoint_reads_its_zero_pads_in_place() {
    let n = 1000;
    let b = crate::GraphBuilder::new("rosenbrock");
    let x = b.input("x", DType::F64, &[n]);
    let hi = x.slice(&[1], &[n]);
    let lo = x.slice(&[0], &[n - 1]);
    let y = ((hi - lo * lo).powi(2) * 100.0 + (1.0 - lo).powi(2)).sum();
    let d = b.grad(y, &[x]).unwrap();
    let g = b.into_graph(&[y.id(), d[0].id()]).unwrap();
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    assert_eq!(copied_concats(&g, &p), 0, "{:#?}", p.groups);
    // add(concat(0, a), concat(b, 0)) is one loop in three boxes: [0, 1), [1, 999),
    // [999, 1000), the middle one vectorized.
    let boxes: Vec<(Vec<usize>, Option<DType>)> = parts(&p)
        .iter()
        .map(|f| (f.shape.clone(), f.vector))
        .collect();
    assert_eq!(
        boxes,
        vec![
            (vec![1], None),
            (vec![n - 2], Some(DType::F64)),
            (vec![1], None)
        ]
    );
    // The only workspace: the two cotangents of the slices (999 f64 each, 64-aligned).
    assert_eq!(p.ws_bytes, 2 * 8000);
}

#[test]
fn reductions_over_a_cut_axis_get_the_concat_in_memory() {
    let build = |axes: &[usize]| {
        let b = crate::GraphBuilder::new("t");
        let x = b.input("x", DType::F32, &[4, 6]);
        let c = b.concat(&[x, x * 2.0, x], 1);
        let s = (c * c).sum_axes(axes);
        let r = c.sum_axes(axes);
        b.into_graph(&[s.id(), r.id()]).unwrap()
    };
    // Summing rows keeps the cut axis: each box sums whole rows, with the pieces in place.
    let g = build(&[0]);
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    assert_eq!(copied_concats(&g, &p), 0);
    let boxes = parts(&p);
    assert_eq!(boxes.len(), 3);
    assert!(boxes.iter().all(|f| f.reductions.len() == 2 && !f.parallel));
    // Summing along the cut axis needs the concat in memory for the reduction that reads
    // it; the elementwise reader still reads pieces, and its square is summed later.
    let g = build(&[1]);
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    assert_eq!(copied_concats(&g, &p), 1);
}

#[test]
fn outputs_and_concats_of_many_pieces_are_copied() {
    let b = crate::GraphBuilder::new("t");
    let x = b.input("x", DType::F64, &[40]);
    let ones: Vec<_> = (0..40).map(|i| x.slice(&[i], &[i + 1])).collect();
    let many = b.concat(&ones, 0);
    let y = many * x;
    let few = b.concat(&[x, x], 0);
    let z = few * 3.0;
    let g = b.into_graph(&[y.id(), z.id(), few.id()]).unwrap();
    let p = plan(&g, &cfg(), &BodySizes::default()).unwrap();
    // `many` cuts its reader into 40 boxes (more than MAX_BOXES); `few` is an output.
    assert_eq!(copied_concats(&g, &p), 2);
    assert!(parts(&p).is_empty());
}

#[test]
fn best_fit_reuses_only_ranges_up_to_twice_the_size() {
    let mut a = Arena::default();
    let big = a.alloc(1000).unwrap();
    assert_eq!(big, (0, 1024));
    a.free(big.0, big.1);
    let small = a.alloc(100).unwrap();
    assert_eq!(small, (1024, 128));
    let again = a.alloc(600).unwrap();
    assert_eq!(again, big);
    assert_eq!(a.reused, 1);
}
