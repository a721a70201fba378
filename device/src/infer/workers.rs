//! Where the networks run: a pool of worker threads started with the engine (no thread is
//! started per window or frame), and each window's or frame's jobs spread over them,
//! costliest network first. tract runs a plan on one core; the calling thread only waits
//! (after running networks itself, its resampling of the next window took twice as long:
//! 70 ms instead of 33, int8 paper bundle, every window, on the 2-core VM).

use super::nets::Backbone;
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// The cores this process may use (2 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A borrowed task with its lifetime erased: [`Pool::run`] does not return before every
/// worker that took it has finished with it. Its argument: the share (= worker) index.
type Task = &'static (dyn Fn(usize) + Sync);

#[derive(Default)]
struct State {
    task: Option<Task>,
    /// Bumped for every task; worker i runs share i of it, if i < `shares`.
    generation: u64,
    shares: usize,
    /// Shares not finished yet.
    running: usize,
    panicked: bool,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

/// Worker threads that run one task at a time, `k` of them on it at once.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool> {
        let shared = Arc::new(Shared { state: Mutex::default(), start: Condvar::new(), done: Condvar::new() });
        let threads = (0..threads.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("nets-{i}")).spawn(move || work(&shared, i))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Pool { shared, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Run `f(i)` on workers i = 0..k at once (k at most the pool's size) and wait for all
    /// of them; worker i always runs share i, so a network given the same share every time
    /// always runs on the same thread (tract keeps scratch memory per thread: a network
    /// moving between threads would leave its scratch in each). A panic in `f` is raised
    /// here once every share has ended.
    pub fn run(&self, k: usize, f: &(dyn Fn(usize) + Sync)) {
        // SAFETY: the reference is only used by workers between here and the wait below,
        // which returns when no share runs any more (`running` 0, the task cleared under the
        // lock), so it never outlives the borrow.
        let task: Task = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Task>(f) };
        let k = k.clamp(1, self.threads.len());
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        s.task = Some(task);
        s.generation += 1;
        (s.shares, s.running, s.panicked) = (k, k, false);
        self.shared.start.notify_all();
        while s.running > 0 {
            s = self.shared.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.task = None;
        if s.panicked {
            drop(s);
            panic!("a network worker panicked");
        }
    }
}

fn work(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if s.shutdown {
            return;
        }
        match s.task {
            Some(task) if s.generation != seen => {
                seen = s.generation;
                if index >= s.shares {
                    continue;
                }
                drop(s);
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(index))).is_ok();
                s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                s.running -= 1;
                s.panicked |= !ok;
                if s.running == 0 {
                    shared.done.notify_all();
                }
            }
            _ => s = shared.start.wait(s).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).shutdown = true;
        self.shared.start.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Each backbone on its input, all at once, embeddings side by side into `out`. One worker
/// per network rather than one per core: the three audio networks of a window on two cores
/// then finish together, after about 1.5 network times rather than 2 (int8 paper bundle,
/// this 2-core VM: 354-460 ms against 455-484 ms).
/// Network k always runs on worker k.
pub(super) fn run_parallel(pool: &Pool, nets: &[Backbone], inputs: &[Vec<f32>], out: &mut [f32]) -> Result<()> {
    let mut jobs = Vec::with_capacity(nets.len());
    push_jobs(&mut jobs, nets, inputs, out, |k| k);
    let slots: Vec<Mutex<Option<Job>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Result<()>>> = nets.iter().map(|_| Mutex::new(Ok(()))).collect();
    pool.run(nets.len(), &|k| {
        let job = slots[k].lock().expect("job slot").take().expect("one share per network");
        let t = Instant::now();
        let b = &nets[job.net];
        *results[k].lock().expect("job result") = b.embed(job.input, job.out);
        b.last_us.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    });
    results.into_iter().try_for_each(|r| r.into_inner().expect("job result"))
}

/// One network run: `nets[net]` on `input`, its embedding into `out`.
pub(super) struct Job<'a> {
    tag: usize,
    net: usize,
    input: &'a [f32],
    out: &'a mut [f32],
}

/// One job per network of `nets` on its input, their embeddings side by side into `out`;
/// `tag(k)` names network k's job.
pub(super) fn push_jobs<'a>(
    jobs: &mut Vec<Job<'a>>,
    nets: &[Backbone],
    inputs: &'a [Vec<f32>],
    out: &'a mut [f32],
    tag: impl Fn(usize) -> usize,
) {
    let mut rest = out;
    for (k, (b, x)) in nets.iter().zip(inputs).enumerate() {
        let (slot, tail) = rest.split_at_mut(b.width());
        rest = tail;
        jobs.push(Job { tag: tag(k), net: k, input: x, out: slot });
    }
}

/// Run the jobs on `workers` of the pool's threads, taking them costliest network first (by
/// each network's last run time; stable, so in the given order until every network has run
/// once). Returns (tag, result, thread ms) per job, in the order they finished.
pub(super) fn run_jobs(
    pool: &Pool,
    nets: &[Backbone],
    mut jobs: Vec<Job>,
    workers: usize,
) -> Vec<(usize, Result<()>, f64)> {
    let cost = |j: &Job| nets[j.net].last_us.load(Ordering::Relaxed);
    jobs.sort_by_key(|j| std::cmp::Reverse(cost(j)));
    // Popped from the back.
    jobs.reverse();
    let workers = workers.min(jobs.len());
    let queue = Mutex::new(jobs);
    let done = Mutex::new(Vec::new());
    let work = |_| loop {
        let Some(job) = queue.lock().expect("job queue").pop() else { return };
        let t = Instant::now();
        let b = &nets[job.net];
        let r = b.embed(job.input, job.out);
        let us = t.elapsed().as_micros() as u64;
        b.last_us.store(us, Ordering::Relaxed);
        done.lock().expect("job results").push((job.tag, r, us as f64 / 1e3));
    };
    if workers > 0 {
        pool.run(workers, &work);
    }
    done.into_inner().expect("job results")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicUsize;

    /// k shares of a task run at once, share i on pool thread i, never on the caller, and 200
    /// tasks see the same three threads (none started per task).
    #[test]
    fn tasks_run_on_the_pools_threads_only() {
        let pool = Pool::new(3).unwrap();
        let mut all = HashSet::new();
        let caller = std::thread::current().id();
        for round in 0..200 {
            let k = 1 + round % 3;
            let seen = Mutex::new(HashSet::new());
            let arrived = AtomicUsize::new(0);
            pool.run(k, &|i| {
                assert_eq!(std::thread::current().name(), Some(format!("nets-{i}").as_str()));
                assert_ne!(std::thread::current().id(), caller);
                assert!(std::thread::current().name().unwrap().starts_with("nets-"));
                seen.lock().unwrap().insert(std::thread::current().id());
                // Every share waits for the others: they really run at the same time.
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < k {
                    std::hint::spin_loop();
                }
            });
            let seen = seen.into_inner().unwrap();
            assert_eq!(seen.len(), k);
            all.extend(seen);
        }
        assert_eq!(all.len(), 3, "the tasks ran on other threads than the pool's");
    }

    #[test]
    fn a_panicking_task_is_raised_in_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(2).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run(2, &|_| panic!("boom"))));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(2, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.into_inner(), 2);
    }
}
