//! Calling object_store's async API from ckpt's synchronous readers.
//!
//! One lazy, process-wide, multi-thread tokio runtime with two workers does all remote I/O; it
//! is built the first time a remote location is touched, so local runs pay nothing. [`run`]
//! spawns a future on it and waits for the answer on a `std::sync::mpsc` channel. It never calls
//! `Runtime::block_on`, which panics when the calling thread is inside another runtime, as it is
//! when `ckpt serve` runs a reader in `spawn_blocking`; a plain channel wait is fine on any
//! thread that may block (rayon, scoped threads, `spawn_blocking`). Never call [`run`] from a
//! future running on this runtime: it would block one of its two workers.
//!
//! Requests in flight are bounded process-wide by one semaphore ([`permit`]), default 16,
//! `CKPT_IO_MAX_IN_FLIGHT` to change it; each request holds a permit until its body is read.

use std::future::Future;
use std::io;
use std::sync::{Arc, OnceLock};

use tokio::runtime::Runtime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
static SEM: OnceLock<Arc<Semaphore>> = OnceLock::new();

fn runtime() -> io::Result<&'static Runtime> {
    let r = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ckpt-io")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    r.as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the I/O runtime: {e}")))
}

/// Run `fut` on the I/O runtime and wait for its answer (see the module docs).
pub fn run<T, F>(fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    match rx.recv() {
        Ok(r) => r,
        // The task panicked (the sender was dropped without a value).
        Err(_) => Err(io::Error::other("an object-storage request panicked")),
    }
}

/// One slot of the process-wide bound on requests in flight; hold it until the body is read.
pub async fn permit() -> OwnedSemaphorePermit {
    let sem = SEM
        .get_or_init(|| Arc::new(Semaphore::new(super::max_in_flight())))
        .clone();
    loop {
        // The semaphore is never closed; `acquire_owned` fails only if it were.
        if let Ok(p) = sem.clone().acquire_owned().await {
            return p;
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_works_inside_another_runtimes_spawn_blocking() {
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = outer.block_on(async {
            tokio::task::spawn_blocking(|| {
                run(async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(41 + 1)
                })
            })
            .await
            .unwrap()
        });
        assert_eq!(got.unwrap(), 42);
        // And from a thread of our own, many at once.
        let hs: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || run(async move { Ok(i) }).unwrap()))
            .collect();
        let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 28);
    }

    #[test]
    fn a_panicking_request_is_an_error_not_a_hang() {
        let e = run::<(), _>(async { panic!("boom") }).unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
    }
}
