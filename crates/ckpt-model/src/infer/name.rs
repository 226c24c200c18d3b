//! A tensor name cut into dotted segments, and the small questions the patterns ask about it
//! (the segment at `i`, whether the name ends there in a 2-d or 4-d `weight`, the prefix before
//! a segment, a dimension of the shape). Pure helpers, no knowledge of any model.

/// Names deeper than this are counted but not matched.
pub(super) const MAX_SEGS: usize = 32;

/// A small decimal index (`0`, `11`), as module lists name their children.
pub(super) fn num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Keep the largest value seen.
pub(super) fn raise(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |o| o.max(v)));
}

/// Keep the first value seen.
pub(super) fn first<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

pub(super) fn numel(shape: &[u64]) -> u64 {
    shape.iter().fold(1u64, |a, d| a.saturating_mul(*d))
}

/// Split a dotted name into `segs`/`starts` (byte offsets); None when deeper than MAX_SEGS.
pub(super) fn split<'s>(
    name: &'s str,
    segs: &mut [&'s str; MAX_SEGS],
    starts: &mut [usize; MAX_SEGS],
) -> Option<usize> {
    // A byte loop: names are short, and segments shorter still (memchr per segment costs more).
    let mut n = 0;
    let mut start = 0;
    for (i, b) in name.bytes().enumerate() {
        if b == b'.' {
            if n + 1 == MAX_SEGS {
                return None;
            }
            segs[n] = &name[start..i];
            starts[n] = start;
            n += 1;
            start = i + 1;
        }
    }
    segs[n] = &name[start..];
    starts[n] = start;
    n += 1;
    Some(n)
}

/// `prefix` is `anchor` or one of its dotted ancestors (`""` is everyone's).
pub(super) fn scopes(prefix: &str, anchor: &str) -> bool {
    prefix.is_empty()
        || anchor == prefix
        || (anchor.starts_with(prefix) && anchor.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// `s` is `word` followed by a small index (`up3`, `down12`).
pub(super) fn upn(s: &str, word: &str) -> bool {
    s.len() > word.len() && s.starts_with(word) && num(&s[word.len()..]).is_some()
}

/// One name, split, with its tensor's shape: what a pattern looks at.
pub(super) struct Name<'s> {
    /// The name, wrappers removed.
    pub(super) name: &'s str,
    pub(super) segs: &'s [&'s str],
    /// Byte offset of each segment in `name`.
    pub(super) starts: &'s [usize],
    /// Number of segments.
    pub(super) n: usize,
    pub(super) shape: &'s [u64],
    /// A `decoder`/`neck` segment came before the one being matched.
    pub(super) in_dec: bool,
}

impl Name<'_> {
    /// Segment `i`, or `""` past the end.
    pub(super) fn seg(&self, i: usize) -> &str {
        if i < self.n { self.segs[i] } else { "" }
    }

    /// Segment `j` is the last one and reads `s`.
    pub(super) fn ends(&self, j: usize, s: &str) -> bool {
        j + 1 == self.n && self.segs[j] == s
    }

    /// The name before segment `i`, without its dot (`""` for the first).
    pub(super) fn prefix(&self, i: usize) -> &str {
        if i == 0 {
            ""
        } else {
            &self.name[..self.starts[i] - 1]
        }
    }

    /// The segment before `i` is an index (`stages.3.blocks`).
    pub(super) fn prev_num(&self, i: usize) -> bool {
        i > 0 && num(self.segs[i - 1]).is_some()
    }

    /// Dimension `k` of the shape, or 0.
    pub(super) fn d(&self, k: usize) -> u64 {
        self.shape.get(k).copied().unwrap_or(0)
    }

    /// The name ends at segment `j` in a 2-d `weight` (a linear layer, an embedding).
    pub(super) fn w2(&self, j: usize) -> bool {
        self.ends(j, "weight") && self.shape.len() == 2
    }

    /// The name ends at segment `j` in a 4-d `weight` (a conv).
    pub(super) fn w4(&self, j: usize) -> bool {
        self.ends(j, "weight") && self.shape.len() == 4
    }
}
