//! One small parallel map, for the places render shares work among threads: planning the
//! documents of a large stream, searching it in chunks, and reading a large file in
//! halves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many threads to use: the machine's parallelism, at most `max`. One in WebAssembly
/// (the playground), where a thread cannot be started: everything runs on the caller's.
pub fn workers(max: usize) -> usize {
    if cfg!(target_family = "wasm") {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(max)
}

/// `f` over `items` on up to `workers` threads (this one included); the results in the
/// items' order. Items are handed out one at a time, so uneven ones balance. A thread
/// that cannot be started leaves its share to the others, and a panic in `f` goes on in
/// the caller.
pub fn map<T, R, F>(items: Vec<T>, workers: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    if workers < 2 || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    // Each slot is taken once, by whichever thread the counter gives it to, so its lock is
    // never contended.
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(index) else {
                return done;
            };
            let item = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(item) = item {
                done.push((index, f(item)));
            }
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers.min(slots.len()))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut all = work();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    results.sort_unstable_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = map(items, 4, |i| i * i);
        assert_eq!(squares, (0..1000).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn one_worker_or_one_item_runs_here() {
        let here = std::thread::current().id();
        assert_eq!(
            map(vec![1, 2], 1, |_| std::thread::current().id()),
            [here, here]
        );
        assert_eq!(map(vec![1], 4, |_| std::thread::current().id()), [here]);
    }

    #[test]
    fn items_may_be_exclusive_borrows() {
        let mut buffer = [0u8; 8];
        let (a, b) = buffer.split_at_mut(4);
        let lens = map(vec![a, b], 2, |half| {
            half.fill(1);
            half.len()
        });
        assert_eq!(lens, [4, 4]);
        assert_eq!(buffer, [1; 8]);
    }
}
