//! Row-major bytes of a strided tensor in bounded memory.
//!
//! A view (`w.t()`, a slice with a step, an expanded tensor) stores its elements out of
//! row-major order. Reading the whole span it covers and picking elements is fastest and is
//! what small tensors get; a 200 MB transposed embedding must not cost 200 MB of RAM, so large
//! spans are gathered run by run: along the dimension with the smallest stride the elements are
//! (nearly) adjacent in the file, so one positioned read fetches a run of them, and a slab of
//! output rows at most [`Budget::chunk`] bytes is filled from such runs before it is emitted.
//! Every buffer is bounded by the budget whatever the tensor's size or layout.

use crate::error::Result;

/// Buffer sizes. `Budget::DEFAULT` in production; tests shrink it to exercise every path on
/// small tensors.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// A strided tensor covering at most this many bytes is read at once and gathered in memory.
    pub span_at_once: u64,
    /// Largest read, largest output slab, largest chunk handed to the sink.
    pub chunk: u64,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        span_at_once: 32 << 20,
        chunk: 8 << 20,
    };
}

/// Collects whole elements and hands them on in pieces of about `chunk` bytes.
pub(crate) struct Sink<'f> {
    buf: Vec<u8>,
    chunk: usize,
    f: &'f mut dyn FnMut(&mut [u8]) -> Result<()>,
}

impl<'f> Sink<'f> {
    pub(crate) fn new(chunk: u64, f: &'f mut dyn FnMut(&mut [u8]) -> Result<()>) -> Self {
        let chunk = usize::try_from(chunk).unwrap_or(usize::MAX).max(1);
        Sink {
            buf: Vec::new(),
            chunk,
            f,
        }
    }

    pub(crate) fn push(&mut self, b: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= self.chunk {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            (self.f)(&mut self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads `len` bytes at a byte offset of the file (relative to whatever `start` is relative to).
pub(crate) type ReadAt<'r> = &'r mut dyn FnMut(u64, u64) -> Result<Vec<u8>>;

/// Push the elements of the tensor whose element 0 is at byte `start`, with `shape` and
/// element `strides` (same length, no negative strides: torch has none), to `sink` in
/// row-major order. `esize` is the element size in bytes. Lengths were validated against the
/// storage by `tensor_span`, so offsets computed here stay inside it.
pub(crate) fn gather(
    read: ReadAt<'_>,
    start: u64,
    shape: &[u64],
    strides: &[u64],
    esize: u64,
    budget: Budget,
    sink: &mut Sink<'_>,
) -> Result<()> {
    // Size-1 dimensions do not move anything; dropping them bounds the depth of the
    // recursion below by 64 (every remaining dimension at least doubles the element count).
    let (shape, strides): (Vec<u64>, Vec<u64>) = shape
        .iter()
        .zip(strides)
        .filter(|(d, _)| **d != 1)
        .map(|(d, s)| (*d, *s))
        .unzip();
    if shape.contains(&0) {
        return Ok(());
    }
    gather_dims(read, start, &shape, &strides, esize, budget, sink)
}

fn gather_dims(
    read: ReadAt<'_>,
    start: u64,
    shape: &[u64],
    strides: &[u64],
    esize: u64,
    budget: Budget,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let nd = shape.len();
    if nd == 0 {
        return run(read, start, 1, 0, esize, budget, &mut |b| sink.push(b));
    }
    // Row-major already: one run.
    let mut expect = 1u64;
    let mut contiguous = true;
    for (d, s) in shape.iter().zip(strides).rev() {
        contiguous &= *s == expect;
        expect = expect.saturating_mul(*d);
    }
    if contiguous {
        return run(read, start, expect, 1, esize, budget, &mut |b| sink.push(b));
    }
    // The dimension whose neighbours are closest in the file (the innermost on ties).
    let mut k = nd - 1;
    for i in (0..nd).rev() {
        if strides[i] < strides[k] {
            k = i;
        }
    }
    let last = nd - 1;
    if k == last {
        // Each output row is one run.
        return for_each_index(&shape[..last], &strides[..last], &mut |off| {
            run(
                read,
                start + off * esize,
                shape[last],
                strides[last],
                esize,
                budget,
                &mut |b| sink.push(b),
            )
        });
    }
    let inner: u64 = shape[k + 1..].iter().product();
    let row = inner.saturating_mul(esize);
    if row > budget.chunk {
        // One index of dimension k is already more than a slab: take the dimensions after k
        // as a tensor of their own, once per index of the dimensions up to k.
        return for_each_index(&shape[..=k], &strides[..=k], &mut |off| {
            gather_dims(
                read,
                start + off * esize,
                &shape[k + 1..],
                &strides[k + 1..],
                esize,
                budget,
                sink,
            )
        });
    }
    // Slabs of `b` consecutive indices of dimension k × everything after it: contiguous in the
    // output, filled by one run per position of the trailing dimensions.
    let b = (budget.chunk / row).clamp(1, shape[k]);
    let es = usize::try_from(esize).unwrap_or(usize::MAX);
    let mut slab = vec![0u8; usize::try_from(b * row).unwrap_or(0)];
    let inner_n = usize::try_from(inner).unwrap_or(usize::MAX);
    for_each_index(&shape[..k], &strides[..k], &mut |prefix| {
        let mut c = 0u64;
        while c < shape[k] {
            let bb = b.min(shape[k] - c);
            let base = start + (prefix + c * strides[k]) * esize;
            let mut t = 0usize;
            for_each_index(&shape[k + 1..], &strides[k + 1..], &mut |q| {
                let mut j = 0usize;
                run(
                    read,
                    base + q * esize,
                    bb,
                    strides[k],
                    esize,
                    budget,
                    &mut |b| {
                        for e in b.chunks_exact(es) {
                            let at = (j * inner_n + t) * es;
                            slab[at..at + es].copy_from_slice(e);
                            j += 1;
                        }
                        Ok(())
                    },
                )?;
                t += 1;
                Ok(())
            })?;
            sink.push(&slab[..usize::try_from(bb * row).unwrap_or(0)])?;
            c += bb;
        }
        Ok(())
    })
}

/// Call `f` with the element offset of every index of `shape` (with `strides`), row-major.
fn for_each_index(
    shape: &[u64],
    strides: &[u64],
    f: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let nd = shape.len();
    let mut idx = vec![0u64; nd];
    loop {
        let off: u64 = idx.iter().zip(strides).map(|(i, s)| i * s).sum();
        f(off)?;
        let mut d = nd;
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// `n` elements from byte `start`, `stride` elements apart, handed to `put` as slices of whole
/// elements; no read is larger than the budget's chunk.
fn run(
    read: ReadAt<'_>,
    start: u64,
    n: u64,
    stride: u64,
    esize: u64,
    budget: Budget,
    put: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let es = usize::try_from(esize).unwrap_or(usize::MAX);
    if stride == 1 {
        let per = (budget.chunk / esize).max(1);
        let mut done = 0;
        while done < n {
            let m = per.min(n - done);
            put(&read(start + done * esize, m * esize)?)?;
            done += m;
        }
        return Ok(());
    }
    if stride == 0 {
        // An expanded dimension: one element, repeated.
        let e = read(start, esize)?;
        for _ in 0..n {
            put(&e)?;
        }
        return Ok(());
    }
    // Elements per read such that the span read stays within the chunk.
    let step = stride * esize;
    let per = (budget.chunk / step).max(1);
    let mut done = 0;
    while done < n {
        let m = per.min(n - done);
        let span = (m - 1) * step + esize;
        let buf = read(start + done * step, span)?;
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        for i in 0..usize::try_from(m).unwrap_or(0) {
            put(&buf[i * step..i * step + es])?;
        }
        done += m;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious element-by-element gather over an in-memory storage.
    fn naive(data: &[u8], start: u64, shape: &[u64], strides: &[u64], es: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let n: u64 = shape.iter().product();
        if n == 0 {
            return out;
        }
        for_each_index(shape, strides, &mut |off| {
            let at = start as usize + off as usize * es;
            out.extend_from_slice(&data[at..at + es]);
            Ok(())
        })
        .unwrap();
        out
    }

    fn gathered(
        data: &[u8],
        start: u64,
        shape: &[u64],
        strides: &[u64],
        es: u64,
        budget: Budget,
    ) -> (Vec<u8>, usize, u64) {
        let mut out = Vec::new();
        let mut largest_piece = 0usize;
        let mut largest_read = 0u64;
        let mut f = |b: &mut [u8]| {
            largest_piece = largest_piece.max(b.len());
            out.extend_from_slice(b);
            Ok(())
        };
        let mut sink = Sink::new(budget.chunk, &mut f);
        let mut read = |off: u64, len: u64| {
            largest_read = largest_read.max(len);
            Ok(data[off as usize..(off + len) as usize].to_vec())
        };
        gather(&mut read, start, shape, strides, es, budget, &mut sink).unwrap();
        sink.flush().unwrap();
        (out, largest_piece, largest_read)
    }

    #[test]
    fn a_transposed_matrix_comes_out_row_major_within_the_budget() {
        // A 300×70 f32 storage seen as its transpose [70, 300] with strides (1, 70).
        let data: Vec<u8> = (0..300u32 * 70).flat_map(|i| i.to_le_bytes()).collect();
        let budget = Budget {
            span_at_once: 0,
            chunk: 4096,
        };
        let (out, piece, read) = gathered(&data, 0, &[70, 300], &[1, 70], 4, budget);
        assert_eq!(out, naive(&data, 0, &[70, 300], &[1, 70], 4));
        // Pieces are bounded by the chunk plus one slab, reads by the chunk.
        assert!(piece <= 2 * 4096, "{piece}");
        assert!(read <= 4096, "{read}");
        let first: Vec<u32> = out[..12]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(first, [0, 70, 140]);
    }

    #[test]
    fn rows_wider_than_the_budget_recurse_into_the_trailing_dimensions() {
        // [3, 4, 50] with strides (1, 3, 12): k = 0 and a "row" of 4×50 elements is 800 bytes.
        let data: Vec<u8> = (0..600u32).flat_map(|i| i.to_le_bytes()).collect();
        let budget = Budget {
            span_at_once: 0,
            chunk: 256,
        };
        let (out, _, read) = gathered(&data, 0, &[3, 4, 50], &[1, 3, 12], 4, budget);
        assert_eq!(out, naive(&data, 0, &[3, 4, 50], &[1, 3, 12], 4));
        assert!(read <= 256);
    }

    #[test]
    fn expanded_and_stepped_dimensions() {
        let data: Vec<u8> = (0..64u8).collect();
        let budget = Budget {
            span_at_once: 0,
            chunk: 8,
        };
        for (shape, strides, start) in [
            (vec![4u64, 5], vec![0u64, 2], 3u64), // expand + step
            (vec![5], vec![7], 1),                // every 7th byte
            (vec![2, 1, 3], vec![1, 9, 2], 0),    // size-1 dimension with an odd stride
            (vec![], vec![], 9),                  // 0-d
            (vec![3, 0], vec![1, 1], 0),          // empty
        ] {
            let (out, _, _) = gathered(&data, start, &shape, &strides, 1, budget);
            assert_eq!(
                out,
                naive(&data, start, &shape, &strides, 1),
                "{shape:?} {strides:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_layout_equals_the_naive_gather(
            dims in prop::collection::vec((1u64..6, 0u64..4), 0..5),
            perm_seed in any::<u64>(),
            start in 0u64..5,
            es in prop::sample::select(vec![1u64, 2, 4, 8]),
            chunk in 1u64..64,
        ) {
            // Strides from a permuted contiguous layout, optionally stepped or expanded.
            let shape: Vec<u64> = dims.iter().map(|d| d.0).collect();
            let nd = shape.len();
            let mut order: Vec<usize> = (0..nd).collect();
            let mut s = perm_seed;
            for i in (1..nd).rev() {
                order.swap(i, (s % (i as u64 + 1)) as usize);
                s /= 7;
            }
            let mut strides = vec![0u64; nd];
            let mut acc = 1u64;
            for &d in order.iter().rev() {
                let step = dims[d].1; // 0 = expanded, else a step
                strides[d] = acc * step;
                acc *= shape[d] * step.max(1);
            }
            let span: u64 = shape.iter().zip(&strides).map(|(d, s)| (d - 1) * s).sum::<u64>() + 1;
            let data: Vec<u8> = (0..(start + span) * es).map(|i| (i * 31 % 251) as u8).collect();
            let budget = Budget { span_at_once: 0, chunk: chunk * es };
            let (out, _, read) = gathered(&data, start * es, &shape, &strides, es, budget);
            prop_assert_eq!(out, naive(&data, start * es, &shape, &strides, es as usize));
            prop_assert!(read <= (chunk * es).max(es));
        }
    }
}
