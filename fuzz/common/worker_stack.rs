//! Shared by the fuzz targets: run each input where the node would, on a thread with a
//! tokio worker's stack (2 MiB). libFuzzer calls a target on the main thread (8 MiB),
//! where recursion too deep for the node goes unnoticed (see `minotaur_protocol::MAX_DEPTH`).
//! One long-lived worker thread, not one per input: spawning costs more than most inputs.

use std::sync::{mpsc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

/// The worker's job queue and its "done" answers.
static WORKER: OnceLock<Mutex<(mpsc::Sender<Job>, mpsc::Receiver<()>)>> = OnceLock::new();

/// Runs `check` on the 2 MiB worker and waits for it. A panic there aborts the process
/// (libfuzzer-sys's panic hook), which libFuzzer reports like any crash.
pub fn on_worker_stack(check: impl FnOnce() + Send + 'static) {
    let worker = WORKER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (done, finished) = mpsc::channel();
        std::thread::Builder::new()
            .name("fuzz-worker".into())
            .stack_size(2 << 20)
            .spawn(move || {
                for job in queue {
                    job();
                    let _ = done.send(());
                }
            })
            .expect("spawn the fuzz worker thread");
        Mutex::new((jobs, finished))
    });
    let worker = worker.lock().unwrap_or_else(|e| e.into_inner());
    worker
        .0
        .send(Box::new(check))
        .expect("the fuzz worker is alive");
    worker.1.recv().expect("the fuzz worker finished the input");
}
