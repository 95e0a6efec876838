//! [`GuestPool`]: the threads every guest call and every module compile runs on,
//! so that guest code (which may loop until its deadline) never runs on the
//! host's async worker threads. One pool per [`crate::Runtime`]; the host's
//! session actors hand it one job per batch and await the result.
//!
//! Invariants: jobs start in the order they were submitted (one FIFO queue);
//! a job that panics is reported to its waiter and the worker lives on; the
//! threads exit once the last handle is dropped and the queue is empty.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of named threads fed from one FIFO queue. Cheap to clone.
#[derive(Clone)]
pub struct GuestPool {
    inner: Arc<Handle>,
}

/// Owned by the handles only: dropping the last one closes the queue.
struct Handle {
    shared: Arc<Shared>,
    threads: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Jobs running right now.
    busy: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    closed: bool,
}

/// Why a pool job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The job panicked (the worker thread survives).
    #[error("the pool job panicked")]
    Panicked,
    /// [`GuestPool::run_wait`] gave up waiting; the job may still be running
    /// and its result is dropped.
    #[error("the pool job did not finish within {0:?}")]
    TimedOut(Duration),
}

thread_local! {
    static IN_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl GuestPool {
    /// Start `threads` (at least one) threads named `{name}-{i}`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<GuestPool> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            busy: AtomicUsize::new(0),
        });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.work())?;
        }
        Ok(GuestPool {
            inner: Arc::new(Handle { shared, threads }),
        })
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.inner.shared.lock().tasks.len()
    }

    /// Jobs running now.
    pub fn busy(&self) -> usize {
        self.inner.shared.busy.load(Ordering::Relaxed)
    }

    /// Whether the calling thread is one of a pool's threads.
    pub fn on_pool_thread() -> bool {
        IN_POOL.with(|c| c.get())
    }

    /// Run `job` on a pool thread; the returned future resolves with its
    /// result. Works under any executor (or none: it is a plain future).
    /// Dropping the future does not cancel a job that has started.
    pub fn run<R, F>(&self, job: F) -> PoolJob<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            // The waiter may be gone; nothing to do then.
            let _ = tx.send(result.map_err(|_| PoolError::Panicked));
        }));
        PoolJob { rx }
    }

    /// Run `job` on a pool thread and block the calling thread until it
    /// finishes or `timeout` passes (then the job runs on, its result
    /// dropped). For synchronous callers off the async workers, such as a
    /// module compile; never call it from a pool thread (it could wait for
    /// itself).
    pub fn run_wait<R, F>(&self, timeout: Duration, job: F) -> Result<R, PoolError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        debug_assert!(
            !Self::on_pool_thread(),
            "run_wait from a pool thread may deadlock"
        );
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = tx.send(result.map_err(|_| PoolError::Panicked));
        }));
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PoolError::TimedOut(timeout)),
            // The sender is dropped without sending only if the task was.
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PoolError::Panicked),
        }
    }

    fn submit(&self, task: Task) {
        self.inner.shared.lock().tasks.push_back(task);
        self.inner.shared.ready.notify_one();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Tasks run outside the lock, so a poisoned lock still guards a sound queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self) {
        IN_POOL.with(|c| c.set(true));
        loop {
            let task = {
                let mut q = self.lock();
                loop {
                    if let Some(task) = q.tasks.pop_front() {
                        break task;
                    }
                    if q.closed {
                        return;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.busy.fetch_add(1, Ordering::Relaxed);
            // Tasks catch their own panics (see `run`).
            task();
            self.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for GuestPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPool")
            .field("threads", &self.threads())
            .field("busy", &self.busy())
            .field("queued", &self.queued())
            .finish()
    }
}

/// The result of a [`GuestPool::run`] job, as a future.
#[must_use = "a pool job's result is only seen by awaiting it"]
pub struct PoolJob<R> {
    rx: tokio::sync::oneshot::Receiver<Result<R, PoolError>>,
}

impl<R> Future for PoolJob<R> {
    type Output = Result<R, PoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(PoolError::Panicked)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn jobs_run_on_named_pool_threads_and_return_their_result() {
        let pool = GuestPool::new(2, "test-pool").unwrap();
        let (name, in_pool) = block_on(pool.run(|| {
            (
                std::thread::current().name().map(str::to_owned),
                GuestPool::on_pool_thread(),
            )
        }))
        .unwrap();
        assert!(name.unwrap().starts_with("test-pool-"));
        assert!(in_pool);
        assert!(!GuestPool::on_pool_thread());
    }

    #[test]
    fn a_busy_thread_does_not_hold_up_the_others() {
        let pool = GuestPool::new(2, "test-pool").unwrap();
        // The first job waits for a signal only the second job sends: it gets
        // it only if both run at once.
        let (tx, rx) = mpsc::channel::<()>();
        let first = pool.run(move || rx.recv_timeout(Duration::from_secs(60)).is_ok());
        let second = pool.run(move || tx.send(()).is_ok());
        block_on(async {
            assert!(
                first.await.unwrap(),
                "the second job never ran beside the first"
            );
            assert!(second.await.unwrap());
        });
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_thread_lives_on() {
        let pool = GuestPool::new(1, "test-pool").unwrap();
        let r: Result<(), _> = block_on(pool.run(|| panic!("job failed on purpose")));
        assert_eq!(r, Err(PoolError::Panicked));
        assert_eq!(block_on(pool.run(|| 7)), Ok(7));
    }

    #[test]
    fn run_wait_times_out_and_the_job_runs_on() {
        let pool = GuestPool::new(1, "test-pool").unwrap();
        let (release, wait) = mpsc::channel::<()>();
        let r = pool.run_wait(Duration::from_millis(10), move || {
            let _ = wait.recv();
        });
        assert_eq!(r, Err(PoolError::TimedOut(Duration::from_millis(10))));
        release.send(()).unwrap();
        // The single thread is free again once the stray job ends.
        assert_eq!(pool.run_wait(Duration::from_secs(60), || 3), Ok(3));
    }
}
