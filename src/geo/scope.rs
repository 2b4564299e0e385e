//! How far an answer holds: the widest network around a client in which every address gets
//! the same answer (the ECS scope, RFC 7871 §7.2.1).
//!
//! MaxMind networks are narrow and often sit next to networks of the same place (a /28 beside
//! a /28 of the same city). Scoping an answer to the record's own network makes resolvers cache
//! many narrow copies of one answer. A policy only tells location *classes* apart, and usually
//! far fewer than that (a continent policy: a handful of outcomes), so much wider networks are
//! uniform for it.
//!
//! Owns two precomputed views of the address space, both built on the control plane:
//! - [`Runs`]: per family, the address space as maximal runs of one label (a location class,
//!   "not in the database", or [`OPAQUE`]). Built once per database load, overrides painted in;
//!   kept with narrow labels ([`Label`]) and, for IPv6, by /64 ([`V6Runs`]).
//! - [`ScopeIndex`]: the runs regrouped by one partition of the classes (which classes a policy
//!   answers alike). Built once per distinct partition and shared by every table that induces
//!   it, so 1,000 names with a few policy shapes cost a few indexes.
//!
//! [`ScopeIndex::widest`] is on the query path: one binary search and two `leading_zeros`, no
//! allocation. The widest aligned network inside a run around `x` is the one that contains
//! neither the address before the run nor the one after it, so runs need no precomputed CIDR
//! decomposition.

use std::fmt;
use std::net::IpAddr;

/// Label of addresses the City database has no record for (its "not located" answer).
pub(crate) const NOT_LOCATED: u32 = u32::MAX - 1;
/// Label of address space these runs do not describe: the IPv6 aliases of the IPv4 tree
/// (`::/96`, `2001::/32`, `2002::/16`, `::ffff:0:0/96`) and anything the database walk did not
/// yield. A query there falls back to the record's own network, which is always correct.
pub(crate) const OPAQUE: u32 = u32::MAX;

/// An address as an unsigned integer: `u32` for IPv4, `u128` for IPv6, and `u64` for the
/// top half of an IPv6 address where every boundary is a /64 or wider ([`V6Grouped`]).
pub(crate) trait Bits: Copy + Ord + fmt::Debug {
    const ZERO: Self;
    const WIDTH: u8;
    /// Leading bits two different addresses share.
    fn common(self, other: Self) -> u8;
    fn checked_next(self) -> Option<Self>;
    fn checked_prev(self) -> Option<Self>;
    /// Last address of the network `self/prefix` (`self` is its first address).
    fn last_of(self, prefix: u8) -> Self;
    /// The top `bits` bits (1 to [`MAX_BUCKET_BITS`]), and the first address with the
    /// given top bits.
    fn bucket(self, bits: u32) -> usize;
    fn bucket_start(bucket: usize, bits: u32) -> Self;
}

/// The query path narrows its binary search with a table indexed by an address's top bits,
/// a few cache misses saved per query: about one entry per two runs, so a bucket holds a few
/// runs (with GeoLite2-City 2^15 entries, 128 KiB, per family and partition; 2^16 at most).
const MAX_BUCKET_BITS: u32 = 16;

/// Bucket bits for `runs` runs: the largest power of two at most half of them, within 1 to
/// [`MAX_BUCKET_BITS`].
fn bucket_bits(runs: usize) -> u32 {
    (usize::BITS - 1 - (runs / 2).max(1).leading_zeros()).clamp(1, MAX_BUCKET_BITS)
}

macro_rules! bits {
    ($t:ty) => {
        impl Bits for $t {
            const ZERO: Self = 0;
            const WIDTH: u8 = <$t>::BITS as u8;
            fn common(self, other: Self) -> u8 {
                (self ^ other).leading_zeros() as u8
            }
            fn checked_next(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn checked_prev(self) -> Option<Self> {
                self.checked_sub(1)
            }
            fn last_of(self, prefix: u8) -> Self {
                self | <$t>::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)
            }
            fn bucket(self, bits: u32) -> usize {
                (self >> (<$t>::BITS - bits)) as usize
            }
            fn bucket_start(bucket: usize, bits: u32) -> Self {
                (bucket as $t) << (<$t>::BITS - bits)
            }
        }
    };
}
bits!(u32);
bits!(u64);
bits!(u128);

/// A label as a run stores it. Location classes and a policy's parts are few (about 3,400
/// classes with GeoLite2-City, a handful of parts), so their runs store a `u16`, half the
/// memory of a `u32`; ASNs and override entries keep a `u32`. Code reads and writes every
/// label as a `u32`. The special labels ([`OPAQUE`], [`NOT_LOCATED`], [`FINE`]) are the top
/// values of each width, and a label too large for the width is stored as [`OPAQUE`], which
/// every reader already takes as "not described here: ask the database": slower for such a
/// label, never a wrong answer.
pub(crate) trait Label: Copy + Eq + fmt::Debug {
    fn pack(label: u32) -> Self;
    fn unpack(self) -> u32;
}

impl Label for u32 {
    fn pack(label: u32) -> Self {
        label
    }
    fn unpack(self) -> u32 {
        self
    }
}

/// [`FINE`] as a `u16`; [`NOT_LOCATED`] and [`OPAQUE`] follow it, as in a `u32`.
const FINE_U16: u16 = u16::MAX - (u32::MAX - FINE) as u16;

impl Label for u16 {
    fn pack(label: u32) -> Self {
        if label >= FINE {
            FINE_U16 + (label - FINE) as u16
        } else {
            u16::try_from(label)
                .ok()
                .filter(|l| *l < FINE_U16)
                .unwrap_or(u16::MAX)
        }
    }
    fn unpack(self) -> u32 {
        if self >= FINE_U16 {
            FINE + u32::from(self - FINE_U16)
        } else {
            u32::from(self)
        }
    }
}

/// The address space of one family as maximal runs of one label. `starts[0]` is 0, starts
/// increase strictly, and neighbouring runs have different labels; a run ends where the next
/// starts (the last one at the top of the space). Labels are stored as `L` ([`Label`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Runs<A, L = u32> {
    starts: Vec<A>,
    labels: Vec<L>,
}

impl<A: Bits, L: Label> Runs<A, L> {
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The run holding `x`: its first address, the address after its last, its label.
    pub(crate) fn run_at(&self, x: A) -> (A, Option<A>, u32) {
        let i = self.starts.partition_point(|s| *s <= x).saturating_sub(1);
        (
            self.starts.get(i).copied().unwrap_or(A::ZERO),
            self.starts.get(i + 1).copied(),
            self.labels.get(i).map_or(OPAQUE, |l| l.unpack()),
        )
    }

    /// Widest prefix around `x` with one label, `None` in opaque space. Without a partition:
    /// one location class, which no policy tells apart.
    pub(crate) fn widest(&self, x: A) -> Option<u8> {
        let (first, next, label) = self.run_at(x);
        (label != OPAQUE).then(|| widest_within(x, first, next))
    }

    /// One run of `label` over the whole space.
    pub(crate) fn uniform(label: u32) -> Self {
        Runs {
            starts: vec![A::ZERO],
            labels: vec![L::pack(label)],
        }
    }

    /// The same space relabelled by `f`, neighbours with equal new labels merged.
    pub(crate) fn relabel<M: Label>(&self, f: impl Fn(u32) -> u32) -> Runs<A, M> {
        let mut out = Emit::new();
        for (start, label) in self.starts.iter().zip(&self.labels) {
            out.set(*start, f(label.unpack()));
        }
        out.finish()
    }

    /// The run holding `x` (its label) and the widest aligned network around `x` inside it,
    /// whatever the label (0 when the run is the whole space).
    pub(crate) fn label_and_widest(&self, x: A) -> (u32, u8) {
        let (first, next, label) = self.run_at(x);
        (label, widest_within(x, first, next))
    }
}

impl<A: Bits> Runs<A> {
    /// Runs of a layer of networks, each `(first, last, label)`, that are nested or disjoint
    /// (CIDR networks are): where several cover an address the innermost wins, and of equal
    /// ones the first listed. Space no network covers is [`OPAQUE`]. O(n log n): a sort and
    /// one sweep with a stack of the networks open at each point.
    pub(crate) fn nested(layer: &[(A, A, u32)]) -> Self {
        let mut order: Vec<u32> = (0..layer.len() as u32).collect();
        order.sort_unstable_by(|a, b| {
            let (fa, la, _) = layer[*a as usize];
            let (fb, lb, _) = layer[*b as usize];
            fa.cmp(&fb).then(lb.cmp(&la)).then(a.cmp(b))
        });
        let mut out = Emit::new();
        // Open networks, outermost first: (first, last, label).
        let mut open: Vec<(A, A, u32)> = Vec::new();
        let close_before = |open: &mut Vec<(A, A, u32)>, out: &mut Emit<A, u32>, at: Option<A>| {
            while let Some(&(_, last, _)) = open.last() {
                if at.is_some_and(|at| last >= at) {
                    break;
                }
                open.pop();
                if let Some(after) = last.checked_next() {
                    out.set(after, open.last().map_or(OPAQUE, |o| o.2));
                }
            }
        };
        for i in order {
            let (first, last, label) = layer[i as usize];
            close_before(&mut open, &mut out, Some(first));
            let last = match open.last() {
                // The same network again: the first listed keeps it.
                Some(&(f, l, _)) if f == first && l == last => continue,
                // Not nested (never for CIDR networks): clipped to the open one.
                Some(&(_, l, _)) => last.min(l),
                None => last,
            };
            out.set(first, label);
            open.push((first, last, label));
        }
        close_before(&mut open, &mut out, None);
        out.finish()
    }
}

impl<A: Bits, L: Label> Runs<A, L> {
    /// Paint `over` on these runs: where `over` is not [`OPAQUE`], its label mapped through
    /// `label_of` replaces this one. Linear in the runs of both.
    pub(crate) fn overlay<M: Label>(
        &self,
        over: &Runs<A, M>,
        label_of: impl Fn(u32) -> u32,
    ) -> Self {
        if over.labels.iter().all(|l| l.unpack() == OPAQUE) {
            return self.clone();
        }
        let mut out = Emit::new();
        // The runs holding `here`, in each.
        let (mut i, mut j) = (0, 0);
        let mut here = A::ZERO;
        loop {
            let base = self.labels.get(i).map_or(OPAQUE, |l| l.unpack());
            let painted = over.labels.get(j).map_or(OPAQUE, |l| l.unpack());
            out.set(
                here,
                if painted == OPAQUE {
                    base
                } else {
                    label_of(painted)
                },
            );
            let (next_i, next_j) = (self.starts.get(i + 1), over.starts.get(j + 1));
            here = match (next_i, next_j) {
                (None, None) => break,
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (Some(a), Some(b)) => *a.min(b),
            };
            if next_i == Some(&here) {
                i += 1;
            }
            if next_j == Some(&here) {
                j += 1;
            }
        }
        out.finish()
    }
}

/// Writes runs from label changes in address order; a change at the same start as the last
/// replaces it, and equal neighbours merge.
struct Emit<A, L> {
    starts: Vec<A>,
    labels: Vec<L>,
}

impl<A: Bits, L: Label> Emit<A, L> {
    fn new() -> Self {
        let mut emit = Emit {
            starts: Vec::new(),
            labels: Vec::new(),
        };
        emit.set(A::ZERO, OPAQUE);
        emit
    }

    fn set(&mut self, start: A, label: u32) {
        let label = L::pack(label);
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.labels.pop();
        }
        if self.labels.last() != Some(&label) {
            self.starts.push(start);
            self.labels.push(label);
        }
    }

    fn finish(mut self) -> Runs<A, L> {
        self.starts.shrink_to_fit();
        self.labels.shrink_to_fit();
        Runs {
            starts: self.starts,
            labels: self.labels,
        }
    }
}

/// Two views of one space merged: every address labelled `f(label in a, label in b)`. One pass
/// over both, so merging the City's runs with the ASN database's costs their length.
pub(crate) fn combine<A: Bits, L: Label, M: Label, N: Label>(
    a: &Runs<A, L>,
    b: &Runs<A, M>,
    f: impl Fn(u32, u32) -> u32,
) -> Runs<A, N> {
    let mut out = Emit::new();
    let (mut i, mut j) = (0, 0);
    let mut here = A::ZERO;
    loop {
        while a.starts.get(i + 1).is_some_and(|s| *s <= here) {
            i += 1;
        }
        while b.starts.get(j + 1).is_some_and(|s| *s <= here) {
            j += 1;
        }
        let la = a.labels.get(i).map_or(OPAQUE, |l| l.unpack());
        let lb = b.labels.get(j).map_or(OPAQUE, |l| l.unpack());
        out.set(here, f(la, lb));
        here = match (a.starts.get(i + 1), b.starts.get(j + 1)) {
            (Some(x), Some(y)) => *x.min(y),
            (Some(x), None) | (None, Some(x)) => *x,
            (None, None) => break,
        };
    }
    out.finish()
}

/// Widest prefix of an aligned network around `x` inside the run `[first, next)`: one bit
/// longer than `x` shares with the address before the run and with the one after it.
#[inline]
fn widest_within<A: Bits>(x: A, first: A, next: Option<A>) -> u8 {
    let below = first.checked_prev().map_or(0, |b| x.common(b) + 1);
    let above = next.map_or(0, |n| x.common(n) + 1);
    below.max(above)
}

/// Builds [`Runs`] from networks in increasing address order; gaps become [`OPAQUE`].
pub(crate) struct RunsBuilder<A, L = u32> {
    runs: Runs<A, L>,
    /// First address not yet covered; `None` once the top of the space is covered.
    next: Option<A>,
}

impl<A: Bits, L: Label> RunsBuilder<A, L> {
    pub(crate) fn new() -> Self {
        RunsBuilder {
            runs: Runs {
                starts: Vec::new(),
                labels: Vec::new(),
            },
            next: Some(A::ZERO),
        }
    }

    /// Add the network `first/prefix`. Networks out of order (never from a well-formed
    /// database walk) are dropped: their space stays as labelled before, or opaque.
    pub(crate) fn network(&mut self, first: A, prefix: u8, label: u32) {
        let Some(next) = self.next else { return };
        if first < next {
            return;
        }
        if first > next {
            self.label(next, OPAQUE);
        }
        self.label(first, label);
        self.next = first.last_of(prefix.min(A::WIDTH)).checked_next();
    }

    /// Label from `start` on (starts must increase).
    fn label(&mut self, start: A, label: u32) {
        let label = L::pack(label);
        if self.runs.labels.last() != Some(&label) {
            self.runs.starts.push(start);
            self.runs.labels.push(label);
        }
    }

    pub(crate) fn finish(mut self) -> Runs<A, L> {
        if let Some(next) = self.next {
            self.label(next, OPAQUE);
        }
        self.runs.starts.shrink_to_fit();
        self.runs.labels.shrink_to_fit();
        self.runs
    }
}

/// Runs of one family regrouped by a partition: neighbouring runs whose classes a policy
/// answers alike become one.
struct Grouped<A> {
    starts: Box<[A]>,
    /// The part of each run, or [`OPAQUE`] (as [`Label`]).
    groups: Box<[u16]>,
    /// `bounds[b]`: how many runs start at or before the first address of bucket `b`; the
    /// last entry is the number of runs. A bucket's addresses search only
    /// `starts[bounds[b]..bounds[b + 1]]`.
    bounds: Box<[u32]>,
    /// Buckets are the top `bits` bits of an address ([`bucket_bits`]).
    bits: u32,
}

impl<A: Bits> Grouped<A> {
    fn new<L: Label>(runs: &Runs<A, L>, group_of: impl Fn(u32) -> u32) -> Self {
        Self::index(runs.relabel(group_of))
    }

    /// Runs already labelled by group, with the bucket bounds of the query path added.
    fn index(grouped: Runs<A, u16>) -> Self {
        let Runs {
            starts,
            labels: groups,
        } = grouped;
        let bits = bucket_bits(starts.len());
        let bounds = (0..1usize << bits)
            .map(|b| {
                let first = A::bucket_start(b, bits);
                starts.partition_point(|s| *s <= first) as u32
            })
            .chain(std::iter::once(starts.len() as u32))
            .collect();
        Grouped {
            starts: starts.into(),
            groups: groups.into(),
            bounds,
            bits,
        }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// `x`'s part and the widest network around `x` inside it; `None` if opaque.
    #[inline]
    fn lookup(&self, x: A) -> Option<(u32, u8)> {
        let b = x.bucket(self.bits);
        let (lo, hi) = (
            *self.bounds.get(b)? as usize,
            *self.bounds.get(b + 1)? as usize,
        );
        let within = self.starts.get(lo..hi)?.partition_point(|s| *s <= x);
        let i = (lo + within).checked_sub(1)?;
        let group = self.groups.get(i)?.unpack();
        if group == OPAQUE {
            return None;
        }
        Some((
            group,
            widest_within(x, self.starts[i], self.starts.get(i + 1).copied()),
        ))
    }
}

/// IPv6 runs by /64: nearly every boundary of a real database is a /64 or wider, so `coarse`
/// keeps only the top 64 bits of each start (10 bytes a run with a `u16` label instead of 18;
/// IPv6 runs are a third of the class runs' memory with GeoLite2-City). The few /64s that hold
/// a finer boundary (about 300 with GeoLite2-City: single hosts, the `::/64` aliases) are
/// [`FINE`] in `coarse` and looked up in `fine`, the full runs around them. The widest network
/// inside a run of whole /64s is the same computed on either width; next to a fine /64 it
/// stops at that /64, which may be narrower than the run but is never wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V6Runs<L = u32> {
    coarse: Runs<u64, L>,
    fine: Fine<L>,
}

/// Every run that overlaps a fine /64, and the run after each such /64, in address order: in
/// a fine /64 the run holding an address is the last of these that starts at or before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fine<L> {
    starts: Box<[u128]>,
    labels: Box<[L]>,
}

impl<L: Label> Fine<L> {
    /// Label of `x` (in a fine /64) and the widest network around it inside its run.
    fn at(&self, x: u128) -> Option<(u32, u8)> {
        let i = self.starts.partition_point(|s| *s <= x).checked_sub(1)?;
        let next = self.starts.get(i + 1).copied();
        Some((
            self.labels.get(i)?.unpack(),
            widest_within(x, self.starts[i], next),
        ))
    }
}

/// `coarse`'s label of a /64 that holds a finer boundary.
const FINE: u32 = u32::MAX - 2;

impl<L: Label> V6Runs<L> {
    /// Full-width runs by /64.
    pub(crate) fn split(wide: &Runs<u128, L>) -> Self {
        let block = |s: u128| (s >> 64) as u64;
        let mut fine_blocks: Vec<u64> = wide
            .starts
            .iter()
            .filter(|s| **s as u64 != 0)
            .map(|s| block(*s))
            .collect();
        fine_blocks.dedup();
        let is_fine = |b: u64| fine_blocks.binary_search(&b).is_ok();
        // Run i of `wide` holding address x.
        let run_of = |x: u128| wide.starts.partition_point(|s| *s <= x).saturating_sub(1);

        let mut coarse: Vec<(u64, u32)> = Vec::new();
        for (start, label) in wide.starts.iter().zip(&wide.labels) {
            if !is_fine(block(*start)) {
                coarse.push((block(*start), label.unpack()));
            }
        }
        let mut fine: Vec<usize> = Vec::new();
        for b in &fine_blocks {
            coarse.push((*b, FINE));
            let first = u128::from(*b) << 64;
            let last = first | u128::from(u64::MAX);
            fine.extend(run_of(first)..=(run_of(last) + 1).min(wide.starts.len() - 1));
            // After a fine /64, the run holding the next /64's first address resumes, unless
            // that /64 is fine too or a run starts there anyway.
            if let Some(next) = b.checked_add(1).filter(|n| !is_fine(*n)) {
                let i = run_of(u128::from(next) << 64);
                if block(wide.starts[i]) != next {
                    coarse.push((next, wide.labels[i].unpack()));
                }
            }
        }
        coarse.sort_by_key(|(start, _)| *start);
        fine.sort_unstable();
        fine.dedup();
        // Neighbours of one label merged (a fine /64 next to a fine /64 is one FINE run).
        let coarse: Runs<u64> = Runs {
            starts: coarse.iter().map(|(s, _)| *s).collect(),
            labels: coarse.iter().map(|(_, l)| *l).collect(),
        };
        V6Runs {
            coarse: coarse.relabel(|l| l),
            fine: Fine {
                starts: fine.iter().map(|i| wide.starts[*i]).collect(),
                labels: fine.iter().map(|i| wide.labels[*i]).collect(),
            },
        }
    }

    /// The full-width runs again (for building indexes; control plane only).
    pub(crate) fn expand(&self) -> Runs<u128, L> {
        let mut out = Emit::new();
        let coarse = &self.coarse;
        for (k, (start, label)) in coarse.starts.iter().zip(&coarse.labels).enumerate() {
            let from = u128::from(*start) << 64;
            if label.unpack() != FINE {
                out.set(from, label.unpack());
                continue;
            }
            // The fine runs from the one holding `from` to the end of these fine /64s.
            let to = coarse.starts.get(k + 1).map(|n| u128::from(*n) << 64);
            let fine = &self.fine;
            let first = fine
                .starts
                .partition_point(|s| *s <= from)
                .saturating_sub(1);
            for (s, l) in fine.starts.iter().zip(&fine.labels).skip(first) {
                if to.is_some_and(|to| *s >= to) {
                    break;
                }
                out.set((*s).max(from), l.unpack());
            }
        }
        out.finish()
    }

    /// The label of the run holding `x` and the widest network around `x` inside it (see the
    /// type's documentation), whatever the label.
    pub(crate) fn label_and_widest(&self, x: u128) -> (u32, u8) {
        match self.coarse.label_and_widest((x >> 64) as u64) {
            (FINE, _) => self.fine.at(x).unwrap_or((OPAQUE, 128)),
            found => found,
        }
    }

    /// Widest prefix around `x` with one label, `None` in opaque space.
    pub(crate) fn widest(&self, x: u128) -> Option<u8> {
        let (label, widest) = self.label_and_widest(x);
        (label != OPAQUE).then_some(widest)
    }

    pub(crate) fn len(&self) -> usize {
        self.coarse.len() + self.fine.starts.len()
    }
}

/// IPv6 runs regrouped by a partition, by /64 as [`V6Runs`]; only `coarse` gets bucket bounds.
struct V6Grouped {
    coarse: Grouped<u64>,
    fine: Fine<u16>,
}

impl V6Grouped {
    fn new<L: Label>(runs: &Runs<u128, L>, group_of: impl Fn(u32) -> u32) -> Self {
        let V6Runs { coarse, fine } = V6Runs::split(&runs.relabel(group_of));
        V6Grouped {
            coarse: Grouped::index(coarse),
            fine,
        }
    }

    #[inline]
    fn lookup(&self, x: u128) -> Option<(u32, u8)> {
        match self.coarse.lookup((x >> 64) as u64)? {
            (FINE, _) => self.fine.at(x).filter(|(group, _)| *group != OPAQUE),
            found => Some(found),
        }
    }

    fn len(&self) -> usize {
        self.coarse.len() + self.fine.starts.len()
    }
}

/// For one partition of the location classes: the widest network around any address in which
/// every address falls in the same part. See the module documentation.
pub struct ScopeIndex {
    v4: Grouped<u32>,
    v6: V6Grouped,
    /// `::ffff:0:0/96` is the database's alias of its IPv4 tree, so IPv4-mapped clients are
    /// scoped as IPv4 (+96), as `GeoDb::locate` places them.
    mapped_v4: bool,
}

impl fmt::Debug for ScopeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeIndex")
            .field("v4_runs", &self.v4.starts.len())
            .field("v6_runs", &self.v6.len())
            .finish()
    }
}

impl ScopeIndex {
    /// `part[label]` for class labels; `not_located` for [`NOT_LOCATED`]. Parts must not be
    /// [`OPAQUE`] (the caller numbers them from 0).
    pub(crate) fn new<L: Label>(
        v4: &Runs<u32, L>,
        v6: &Runs<u128, L>,
        mapped_v4: bool,
        part: &[u32],
        not_located: u32,
    ) -> Self {
        let group_of = |label: u32| match label {
            OPAQUE => OPAQUE,
            NOT_LOCATED => not_located,
            class => part.get(class as usize).copied().unwrap_or(OPAQUE),
        };
        ScopeIndex {
            v4: Grouped::new(v4, group_of),
            v6: V6Grouped::new(v6, group_of),
            mapped_v4,
        }
    }

    /// From runs already labelled by part (labels are the parts; [`OPAQUE`] stays opaque).
    pub(crate) fn from_parts(v4: &Runs<u32>, v6: &Runs<u128>, mapped_v4: bool) -> Self {
        ScopeIndex {
            v4: Grouped::new(v4, |label| label),
            v6: V6Grouped::new(v6, |label| label),
            mapped_v4,
        }
    }

    /// Widest prefix around `ip` in which every address is in `ip`'s part, or `None` where the
    /// runs do not describe the space (the caller then uses the database network's prefix).
    /// The query path.
    #[inline]
    pub fn widest(&self, ip: IpAddr) -> Option<u8> {
        self.part_and_widest(ip).map(|(_, widest)| widest)
    }

    /// `ip`'s part (numbered as in the partition given to `GeoDb::scope_index`) and the
    /// widest network around it, or `None` where the runs do not describe the space. With it a
    /// location-only table decides without a database lookup.
    #[inline]
    pub fn part_and_widest(&self, ip: IpAddr) -> Option<(u32, u8)> {
        match ip {
            IpAddr::V4(v4) => self.v4.lookup(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if self.mapped_v4 => self
                    .v4
                    .lookup(u32::from(v4))
                    .map(|(part, widest)| (part, widest + 96)),
                _ => self.v6.lookup(u128::from(v6)),
            },
        }
    }

    /// Number of runs (IPv4, IPv6), for reports.
    pub fn runs(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6 runs of (first, prefix, label) networks in order.
    fn v6_runs(networks: &[(u128, u8, u32)]) -> Runs<u128> {
        let mut b = RunsBuilder::new();
        for (first, prefix, label) in networks {
            b.network(*first, *prefix, *label);
        }
        b.finish()
    }

    fn addresses(runs: &Runs<u128>) -> Vec<u128> {
        // Each start, its neighbours, and a spread of addresses inside each run.
        let mut out = vec![0, u128::MAX];
        for s in &runs.starts {
            out.extend([*s, s.wrapping_sub(1), s.wrapping_add(1), s | 0xffff_ffff]);
            out.extend((0..64).map(|k| s.wrapping_add(1u128 << k)));
        }
        out
    }

    /// Lookups in `split` against the full-width index `wide`: the same part everywhere; the
    /// same network in fine /64s and where no fine /64 is near; elsewhere never a wider one.
    fn agrees(split: &V6Grouped, wide: &Grouped<u128>, runs: &Runs<u128>) -> usize {
        let fine: Vec<u64> = runs
            .starts
            .iter()
            .filter(|s| **s as u64 != 0)
            .map(|s| (*s >> 64) as u64)
            .collect();
        let mut exact = 0;
        for x in addresses(runs) {
            let (got, want) = (split.lookup(x), wide.lookup(x));
            assert_eq!(got.map(|g| g.0), want.map(|w| w.0), "{x:#x}");
            let (Some((_, got)), Some((_, want))) = (got, want) else {
                continue;
            };
            assert!(
                got >= want,
                "{x:#x}: /{got} is wider than the run's /{want}"
            );
            if fine.contains(&((x >> 64) as u64)) {
                assert_eq!(got, want, "{x:#x} in a fine /64");
            }
            exact += usize::from(got == want);
        }
        exact
    }

    #[test]
    fn buckets_hold_about_two_runs() {
        assert_eq!(bucket_bits(0), 1);
        assert_eq!(bucket_bits(5), 1);
        assert_eq!(bucket_bits(87_000), 15);
        assert_eq!(bucket_bits(200_000), 16);
        assert_eq!(bucket_bits(usize::MAX), MAX_BUCKET_BITS);
        // Lookups agree with a plain search whatever the table's size.
        for n in [1u32, 2, 3, 17, 1000] {
            let runs: Runs<u32> = Runs {
                starts: (0..n).map(|i| i * (u32::MAX / n)).collect(),
                labels: (0..n).map(|i| i % 2).collect(),
            };
            let index = Grouped::new(&runs, |l| l);
            for x in (0..4000u32).map(|k| k.wrapping_mul(1_073_741)) {
                let (first, next, label) = runs.run_at(x);
                assert_eq!(
                    index.lookup(x),
                    Some((label, widest_within(x, first, next)))
                );
            }
        }
    }

    #[test]
    fn narrow_labels_keep_every_label_that_fits_and_make_the_rest_opaque() {
        for label in (0..u32::from(FINE_U16)).chain([OPAQUE, NOT_LOCATED, FINE]) {
            assert_eq!(u16::pack(label).unpack(), label, "{label}");
        }
        for too_big in [u32::from(FINE_U16), 70_000, FINE - 1] {
            assert_eq!(u16::pack(too_big).unpack(), OPAQUE, "{too_big}");
        }
        // In runs: a label that does not fit reads as opaque, and opaque neighbours merge.
        let mut b = RunsBuilder::<u32, u32>::new();
        b.network(0, 2, 7);
        b.network(0x4000_0000, 2, 70_000);
        b.network(0x8000_0000, 1, 70_001);
        let narrow: Runs<u32, u16> = b.finish().relabel(|l| l);
        assert_eq!(narrow.run_at(1), (0, Some(0x4000_0000), 7));
        assert_eq!(narrow.run_at(0x9000_0000), (0x4000_0000, None, OPAQUE));
        assert_eq!(narrow.widest(0x9000_0000), None);
    }

    #[test]
    fn ipv6_runs_by_64_answer_as_full_width_ones() {
        let p = 0x2001_0db8u128 << 96;
        let aligned = v6_runs(&[
            (p, 48, 1),
            (p + (1 << 80), 64, 2),
            (p + (1 << 80) + (1 << 64), 64, 1),
            (p + (2 << 80), 47, 3),
            (0x2a02u128 << 112, 16, 4),
        ]);
        let split = V6Grouped::new(&aligned, |l| l);
        assert!(split.fine.starts.is_empty());
        let wide = Grouped::new(&aligned, |l| l);
        agrees(&split, &wide, &aligned);
        for x in addresses(&aligned) {
            assert_eq!(
                split.lookup(x),
                wide.lookup(x),
                "{x:#x}: exact without fine /64s"
            );
        }

        // Single hosts inside two /64s (one at the end of a run, one splitting a run), an
        // alias-like /96 in ::/64, and a fine /64 right after another.
        let q = p + (1 << 80) + (1 << 64);
        let fine = v6_runs(&[
            (0, 96, 9),
            (1 << 32, 96, 1),
            (p, 64, 1),
            (p + (1 << 64), 128, 2),
            (p + (1 << 64) + 1, 128, 1),
            (p + (2 << 64), 128, 3),
            (q, 128, 5),
            (q + (1 << 64), 64, 1),
            (0x2a02u128 << 112, 16, 4),
        ]);
        let split = V6Grouped::new(&fine, |l| l);
        assert!(!split.fine.starts.is_empty());
        let wide = Grouped::new(&fine, |l| l);
        assert!(agrees(&split, &wide, &fine) > 0);
        assert_eq!(split.lookup(p + (1 << 64)), Some((2, 128)));
        assert_eq!(split.lookup(q), Some((5, 128)));
        // By /64 and back: the same runs, and the same labels everywhere. One run here spans
        // from a fine /64 over whole ones into another fine /64 and resumes after it.
        let spanning = Runs {
            starts: vec![0, p, p + 1, p + (5 << 64) + 8, p + (5 << 64) + 9],
            labels: vec![OPAQUE, 2, 1, 3, 1],
        };
        for runs in [&aligned, &fine, &spanning] {
            let by_64 = V6Runs::split(runs);
            assert_eq!(&by_64.expand(), runs);
            for x in addresses(runs) {
                let (label, widest) = by_64.label_and_widest(x);
                let (want_label, want_widest) = runs.label_and_widest(x);
                assert_eq!(label, want_label, "{x:#x}");
                assert!(
                    widest >= want_widest,
                    "{x:#x}: /{widest} is wider than /{want_widest}"
                );
            }
        }
        // Five coarse runs (opaque, fine, 1, fine, 1) and the four runs around the fine /64s.
        assert_eq!(V6Runs::split(&spanning).len(), 9);

        // Grouping can make a fine boundary vanish: one part for all labels is one run.
        let merged = V6Grouped::new(&fine, |_| 0);
        assert!(merged.fine.starts.is_empty());
        assert_eq!(merged.lookup(p + (1 << 64)), Some((0, 0)));
    }
}
