//! [`Groups`]: the groups of ranks a collective combines over, and [`GroupParam`], a
//! collective's own attribute (see [`crate::ops::collective`]).

use super::DType;
use std::fmt;
use std::sync::Arc;

/// A partition of the ranks into groups, as explicit rank lists (XLA's `replica_groups`):
/// `[[0,1],[2,3]]` splits four ranks into two pairs. Every rank `0..N` is in exactly one list,
/// where `N` is the number of ranks listed; the communicator a graph runs with must have
/// exactly `N` ranks (checked at call time). A rank's *position* in its list is its index in
/// the group (what `axis_index` returns, and what a broadcast's `root` names).
///
/// [`Groups::world`] (no lists) is one group of every rank of the communicator, whatever their
/// number: what the collectives combine over without a `groups=` attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Groups {
    /// Empty for the world; else the validated lists.
    lists: Arc<[Box<[usize]>]>,
}

impl Groups {
    /// One group of every rank.
    pub fn world() -> Groups {
        Groups::default()
    }

    /// Explicit groups: every rank `0..N` (`N` the total number of ranks listed) in exactly
    /// one non-empty list.
    ///
    /// # Errors
    /// What is wrong: no lists, an empty list, a rank listed twice, or a rank `≥ N`.
    pub fn new(lists: Vec<Vec<usize>>) -> Result<Groups, String> {
        if lists.is_empty() {
            return Err("expected at least one group of ranks, found none".into());
        }
        let n: usize = lists.iter().map(Vec::len).sum();
        let mut seen = vec![false; n];
        for (k, l) in lists.iter().enumerate() {
            if l.is_empty() {
                return Err(format!("group {k} is empty (every group needs a rank)"));
            }
            for &r in l {
                if r >= n {
                    return Err(format!(
                        "rank {r} is out of range: {n} ranks are listed, so the ranks must be 0..{n}, each in one group"
                    ));
                }
                if std::mem::replace(&mut seen[r], true) {
                    return Err(format!("rank {r} is in more than one group"));
                }
            }
        }
        Ok(Groups {
            lists: lists.into_iter().map(Vec::into_boxed_slice).collect(),
        })
    }

    /// The groups along `axis` of a row-major mesh of ranks of shape `mesh` (rank
    /// `Σ i_d · stride_d`): each group holds the ranks whose coordinates differ only along
    /// `axis`, in the order of that coordinate. A mesh `[2, 2]` gives `[[0,2],[1,3]]` for axis 0
    /// and `[[0,1],[2,3]]` for axis 1 (JAX's `shard_map` over one axis of a `Mesh`).
    ///
    /// # Errors
    /// If `axis` is not an axis of `mesh`, or `mesh` has a zero or overflowing size.
    pub fn mesh_axis(mesh: &[usize], axis: usize) -> Result<Groups, String> {
        if axis >= mesh.len() {
            return Err(format!(
                "axis {axis} is not an axis of a mesh of rank {}",
                mesh.len()
            ));
        }
        let n = mesh
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("a mesh of shape {mesh:?} has no ranks or too many"))?;
        let stride: usize = mesh[axis + 1..].iter().product();
        let k = mesh[axis];
        // The first rank of each group: coordinate 0 along `axis`.
        let lists = (0..n)
            .filter(|r| (r / stride).is_multiple_of(k))
            .map(|first| (0..k).map(|i| first + i * stride).collect())
            .collect();
        Groups::new(lists)
    }

    /// True for [`Groups::world`].
    pub fn is_world(&self) -> bool {
        self.lists.is_empty()
    }

    /// The rank lists (empty for the world).
    pub fn lists(&self) -> &[Box<[usize]>] {
        &self.lists
    }

    /// The number of ranks listed (`None` for the world, which has as many as the
    /// communicator).
    pub fn ranks(&self) -> Option<usize> {
        (!self.is_world()).then(|| self.lists.iter().map(|l| l.len()).sum())
    }

    /// The size every group has, if they all have the same (`None` for the world, whose size
    /// the graph does not know, and for groups of different sizes).
    pub fn uniform_size(&self) -> Option<usize> {
        let first = self.lists.first()?.len();
        self.lists.iter().all(|l| l.len() == first).then_some(first)
    }

    /// The smallest group's size (`None` for the world).
    pub fn min_size(&self) -> Option<usize> {
        self.lists.iter().map(|l| l.len()).min()
    }

    /// Where `rank` of a communicator of `size` ranks is: (its group's index, its position in
    /// the group, the group's members as ranks of the communicator).
    ///
    /// # Errors
    /// The message when the groups do not list exactly `size` ranks.
    pub fn locate(&self, rank: usize, size: usize) -> Result<Place<'_>, String> {
        if self.is_world() {
            return Ok(Place {
                index: 0,
                position: rank,
                members: None,
                size,
            });
        }
        let listed = self.ranks().unwrap_or(0);
        if listed != size {
            return Err(format!(
                "the groups {self} list {listed} ranks, but the communicator has {size}"
            ));
        }
        for (index, l) in self.lists.iter().enumerate() {
            if let Some(position) = l.iter().position(|&r| r == rank) {
                return Ok(Place {
                    index,
                    position,
                    members: Some(l),
                    size: l.len(),
                });
            }
        }
        unreachable!("validated groups list every rank below their count")
    }
}

/// A rank's place in [`Groups`] (see [`Groups::locate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place<'a> {
    /// The index of its group.
    pub index: usize,
    /// Its position in the group.
    pub position: usize,
    /// The group's members (`None` for the world: every rank).
    pub members: Option<&'a [usize]>,
    /// The group's size.
    pub size: usize,
}

impl fmt::Display for Groups {
    /// The `.gir` spelling of explicit groups, `[[0,1],[2,3]]`; `world` for the world.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_world() {
            return f.write_str("world");
        }
        f.write_str("[")?;
        for (k, l) in self.lists.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            f.write_str("[")?;
            for (i, r) in l.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{r}")?;
            }
            f.write_str("]")?;
        }
        f.write_str("]")
    }
}

/// A collective's attribute besides its groups (which op takes which is fixed by its rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupParam {
    /// `all_reduce_sum`, `all_reduce_mean`, `pvary`.
    None,
    /// `num_ranks`, `axis_index`: the result's dtype (`to=`).
    To(DType),
    /// `all_gather`, `reduce_scatter`: the axis the blocks are joined along or split from.
    Axis(usize),
    /// `collective_broadcast`: the position, in each group, of the rank whose value is sent.
    Root(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_validated_and_located() {
        let g = Groups::new(vec![vec![0], vec![3, 1, 2]]).unwrap();
        assert_eq!(g.to_string(), "[[0],[3,1,2]]");
        assert_eq!(
            (g.ranks(), g.uniform_size(), g.min_size()),
            (Some(4), None, Some(1))
        );
        let p = g.locate(1, 4).unwrap();
        assert_eq!(
            (p.index, p.position, p.members, p.size),
            (1, 1, Some(&[3, 1, 2][..]), 3)
        );
        assert!(g.locate(1, 5).unwrap_err().contains("list 4 ranks"));
        for (bad, what) in [
            (vec![], "none"),
            (vec![vec![0], vec![]], "empty"),
            (vec![vec![0, 1], vec![1, 2]], "more than one group"),
            (vec![vec![0, 4]], "out of range"),
        ] {
            assert!(Groups::new(bad).unwrap_err().contains(what), "{what}");
        }
        let w = Groups::world();
        assert_eq!((w.ranks(), w.uniform_size()), (None, None));
        let mesh = |m: &[usize], a| Groups::mesh_axis(m, a).unwrap().to_string();
        assert_eq!(mesh(&[2, 2], 0), "[[0,2],[1,3]]");
        assert_eq!(mesh(&[2, 2], 1), "[[0,1],[2,3]]");
        // 2×3×2: axis 1 varies the middle coordinate (stride 2).
        assert_eq!(mesh(&[2, 3, 2], 1), "[[0,2,4],[1,3,5],[6,8,10],[7,9,11]]");
        assert_eq!(mesh(&[4], 0), "[[0,1,2,3]]");
        assert!(Groups::mesh_axis(&[2, 2], 2).is_err());
        assert!(Groups::mesh_axis(&[2, 0], 0).is_err());
        assert_eq!(w.locate(2, 3).unwrap().position, 2);
    }
}
