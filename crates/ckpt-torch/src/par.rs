//! A small parallel map over a slice on all cores (scoped threads pulling indices from an
//! atomic counter). Results come back in input order, so output never depends on timing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many threads to use: asked of the system once per process. (`available_parallelism`
/// reads the cgroup quota files on Linux: a catalog calling `map` once per chunk of 128
/// checkpoints spent more on asking than on some chunks.)
pub fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over `items` on all cores, results in input order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_n(items, threads(), f)
}

/// [`map`] on `width` threads: for work that waits on the network rather than the CPU
/// (objects in a bucket: as many threads as requests may be in flight), or that must not
/// take every core. Results in input order.
pub fn map_n<T: Sync, R: Send>(items: &[T], width: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = width.min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let r = f(item);
            if let Some(slot) = slots.get(i)
                && let Ok(mut g) = slot.lock()
            {
                *g = Some(r);
            }
        }
    };
    // The calling thread is one of the workers: one thread fewer to start per call.
    std::thread::scope(|s| {
        for _ in 1..n {
            s.spawn(work);
        }
        work();
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        let v: Vec<u32> = (0..1000).collect();
        assert_eq!(
            super::map(&v, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn map_n_keeps_order_at_any_width() {
        let v: Vec<u32> = (0..100).collect();
        let want: Vec<u32> = v.iter().map(|x| x + 1).collect();
        for width in [0, 1, 3, 16, 1000] {
            assert_eq!(super::map_n(&v, width, |x| x + 1), want, "width {width}");
        }
        assert!(super::map_n(&[] as &[u32], 16, |x| *x).is_empty());
    }
}
