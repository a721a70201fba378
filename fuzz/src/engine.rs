//! The fuzz loop: run the seeds, then mutants of the pool (seeds plus accepted mutants),
//! each under `catch_unwind`, with allocations measured and a watchdog thread watching the
//! time. Findings:
//!
//! - **panic**: the reader (or what uses its result) panicked; recorded, the run goes on;
//! - **alloc**: the input's allocations peaked above [`alloc_cap`] for its length;
//!   recorded, the run goes on; a single request above [`alloc::HARD_LIMIT`] ends the run;
//! - **hang**: one input ran longer than the timeout; ends the run.
//!
//! Each distinct finding's first input is written to the findings folder
//! (`<kind>-<hash>.bin`); a run that ends early writes it before exiting with status 3.

use crate::alloc;
use crate::mutate::Mutator;
use crate::targets::Target;
use avsc_shared::rng::SplitMix64 as Rng;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to run a target.
#[derive(Clone, Debug)]
pub struct Options {
    /// Inputs to run, seeds included.
    pub execs: u64,
    /// PRNG seed: a run is reproducible from it.
    pub seed: u64,
    /// Seed corpus folder (every file in it is one seed).
    pub corpus: PathBuf,
    /// Where inputs of findings are written.
    pub findings: PathBuf,
    /// An input running longer than this is a hang.
    pub timeout: Duration,
    /// Longest input made by mutation.
    pub max_len: usize,
    /// Print a progress line every this many executions (0: never).
    pub progress_every: u64,
}

impl Options {
    /// Defaults for `target`: its committed corpus, findings under `fuzz/findings/<target>`.
    pub fn new(target: Target, execs: u64) -> Options {
        Options {
            execs,
            seed: 1,
            corpus: target.corpus_dir(),
            findings: Path::new(env!("CARGO_MANIFEST_DIR")).join("findings").join(target.name()),
            timeout: Duration::from_secs(1),
            max_len: 64 * 1024,
            progress_every: 0,
        }
    }
}

/// One distinct finding (same kind and message), with how often it was hit.
#[derive(Clone, Debug)]
pub struct Finding {
    /// "panic" or "alloc".
    pub kind: &'static str,
    /// The panic message and location, or the allocation's size.
    pub detail: String,
    pub count: u64,
    /// The first (shortest of the first few) input that hit it.
    pub input: Vec<u8>,
    /// Where that input was written, if it could be.
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: Target,
    pub execs: u64,
    pub elapsed: Duration,
    pub seeds: usize,
    /// Seeds the reader accepted (a seed it refuses only tests the error path).
    pub seeds_accepted: usize,
    /// Mutants the reader accepted.
    pub mutants_accepted: u64,
    /// The slowest single input.
    pub slowest: Duration,
    /// The highest allocation peak of one input, bytes.
    pub peak_alloc: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn execs_per_s(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One summary line.
    pub fn summary(&self) -> String {
        let mutants = self.execs.saturating_sub(self.seeds as u64).max(1);
        format!(
            "{}: {} execs in {:.1} s ({:.0} exec/s); seeds {}/{} accepted, mutants {:.1} % accepted; \
             slowest input {:.2} ms, highest allocation peak {} KiB; {} findings",
            self.target.name(),
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs_per_s(),
            self.seeds_accepted,
            self.seeds,
            100.0 * self.mutants_accepted as f64 / mutants as f64,
            self.slowest.as_secs_f64() * 1e3,
            self.peak_alloc / 1024,
            self.findings.iter().map(|f| f.count).sum::<u64>(),
        )
    }
}

/// The allocation cap for an input of `len` bytes: 4 MiB plus 256 bytes per input byte
/// (a parsed sample table takes up to ~40 bytes per file byte).
pub fn alloc_cap(len: usize) -> usize {
    (4 << 20) + 256 * len
}

/// The files of a corpus folder, by name.
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.retain(|p| p.is_file());
    paths.sort();
    paths.into_iter().map(|p| std::fs::read(&p).map(|b| (p, b))).collect()
}

/// Fuzz `target`. Panics if the counting allocator is not installed (see [`alloc`]).
pub fn fuzz(target: Target, opts: &Options) -> std::io::Result<Report> {
    assert!(alloc::installed(), "install avsc_fuzz::alloc::CountingAlloc as the global allocator");
    let seeds: Vec<Vec<u8>> = load_corpus(&opts.corpus)?.into_iter().map(|(_, b)| b).collect();
    if seeds.is_empty() {
        return Err(std::io::Error::other(format!("{}: no seed files", opts.corpus.display())));
    }
    let mutator = Mutator { layout: target.layout(), dictionary: target.dictionary(), max_len: opts.max_len };
    let mut rng = Rng::new(opts.seed);
    let mut pool = seeds.clone();
    let mut report = Report {
        target,
        execs: 0,
        elapsed: Duration::ZERO,
        seeds: seeds.len(),
        seeds_accepted: 0,
        mutants_accepted: 0,
        slowest: Duration::ZERO,
        peak_alloc: 0,
        findings: Vec::new(),
    };
    let mut findings: BTreeMap<(&'static str, String), Finding> = BTreeMap::new();
    let watchdog = Watchdog::start(target, opts);
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
    }));
    warm_up_unwinding();

    let start = Instant::now();
    let mut input = Vec::new();
    for i in 0..opts.execs {
        let is_seed = (i as usize) < seeds.len();
        input.clear();
        if is_seed {
            input.extend_from_slice(&seeds[i as usize]);
        } else {
            let base: &Vec<u8> = rng.pick(&pool);
            input.extend_from_slice(base);
            mutator.mutate(&mut rng, &mut input, &pool);
        }
        let outcome = run_one(target, &input, &watchdog);
        report.execs += 1;
        report.slowest = report.slowest.max(outcome.elapsed);
        report.peak_alloc = report.peak_alloc.max(outcome.usage.peak);
        let mut found = |kind: &'static str, detail: String| {
            let f = findings.entry((kind, detail.clone())).or_insert_with(|| Finding {
                kind,
                detail,
                count: 0,
                input: input.clone(),
                saved: None,
            });
            f.count += 1;
            // Keep the shortest of the first inputs: easier to read and minimise.
            if f.count <= 100 && input.len() < f.input.len() {
                f.input = input.clone();
            }
        };
        if outcome.usage.peak > alloc_cap(input.len()) {
            found("alloc", format!("allocation peak of {} bytes", outcome.usage.peak));
        }
        match outcome.result {
            Err(msg) => found("panic", msg),
            Ok(true) if is_seed => report.seeds_accepted += 1,
            Ok(true) => {
                report.mutants_accepted += 1;
                // Accepted mutants are mutated further; the pool keeps a bounded sample.
                if pool.len() < seeds.len() + 256 {
                    pool.push(input.clone());
                } else if rng.one_in(4) {
                    let slot = seeds.len() + rng.below(256);
                    pool[slot] = input.clone();
                }
            }
            Ok(false) => {}
        }
        if opts.progress_every > 0 && report.execs.is_multiple_of(opts.progress_every) {
            let s = start.elapsed().as_secs_f64();
            eprintln!(
                "  {}: {} execs, {:.0} exec/s, {} findings",
                target.name(),
                report.execs,
                report.execs as f64 / s,
                findings.len()
            );
        }
    }
    report.elapsed = start.elapsed();
    watchdog.stop();
    std::panic::set_hook(previous_hook);

    for ((kind, _), mut f) in findings {
        let name = format!("{kind}-{:016x}.bin", fnv1a(&f.input));
        f.saved = save(&opts.findings, &name, &f.input);
        report.findings.push(f);
    }
    Ok(report)
}

/// Panic once, outside any measurement: the first unwind of a process sets up the unwinder
/// (tens of MB and ~100 ms in a debug build), which would be blamed on the first input that
/// panics.
pub fn warm_up_unwinding() {
    let _ = catch_unwind(|| std::panic::resume_unwind(Box::new("warm-up")));
}

/// The outcome of one input.
struct Outcome {
    /// Accepted or not; `Err` with the message if it panicked.
    result: Result<bool, String>,
    usage: alloc::Usage,
    elapsed: Duration,
}

/// The message of the last panic, written by the panic hook the engine installs.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn run_one(target: Target, input: &[u8], watchdog: &Watchdog) -> Outcome {
    watchdog.begin(input);
    let t0 = Instant::now();
    let baseline = alloc::reset();
    let r = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let usage = alloc::usage(baseline);
    let elapsed = t0.elapsed();
    watchdog.end();
    let result = r.map_err(|_| {
        LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(|| "panic".to_string())
    });
    Outcome { result, usage, elapsed }
}

/// A thread that ends the process when an input runs past the timeout or is stalled on a
/// refused allocation, after writing the input to the findings folder.
struct Watchdog {
    shared: Arc<WatchState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchState {
    /// The input now running.
    input: Mutex<Vec<u8>>,
    /// When it started, nanoseconds since `epoch`; 0 between inputs.
    started: AtomicU64,
    epoch: Instant,
    stop: AtomicBool,
}

impl Watchdog {
    fn start(target: Target, opts: &Options) -> Watchdog {
        let shared = Arc::new(WatchState {
            input: Mutex::new(Vec::with_capacity(opts.max_len)),
            started: AtomicU64::new(0),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        });
        let (state, timeout, dir) = (shared.clone(), opts.timeout, opts.findings.clone());
        let thread = std::thread::spawn(move || {
            while !state.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let started = state.started.load(Ordering::SeqCst);
                let running = Duration::from_nanos((state.epoch.elapsed().as_nanos() as u64).saturating_sub(started));
                let why = match alloc::refused() {
                    Some(size) => format!("alloc: a single request of {size} bytes"),
                    None if started != 0 && running > timeout => format!("hang: still running after {running:.1?}"),
                    None => continue,
                };
                let input = state.input.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let name = format!("{}-{:016x}.bin", why.split(':').next().unwrap_or("finding"), fnv1a(&input));
                let saved = save(&dir, &name, &input);
                eprintln!("FINDING in {} ({why}), run ended", target.name());
                eprintln!("{}", describe_input(&input, saved.as_deref()));
                std::process::exit(3);
            }
        });
        Watchdog { shared, thread: Some(thread) }
    }

    fn begin(&self, input: &[u8]) {
        let mut current = self.shared.input.lock().unwrap_or_else(|e| e.into_inner());
        current.clear();
        current.extend_from_slice(input);
        drop(current);
        let now = self.shared.epoch.elapsed().as_nanos() as u64;
        self.shared.started.store(now.max(1), Ordering::SeqCst);
    }

    fn end(&self) {
        self.shared.started.store(0, Ordering::SeqCst);
    }

    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Write `input` as `dir/name`; `None` if that fails (the finding is still printed).
fn save(dir: &Path, name: &str, input: &[u8]) -> Option<PathBuf> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, input)).ok().map(|_| path)
}

/// A finding's input for the terminal: its length, where it was saved, its first bytes.
pub fn describe_input(input: &[u8], saved: Option<&Path>) -> String {
    let shown = &input[..input.len().min(96)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "  input: {} bytes, saved as {}\n  first bytes: {}{}",
        input.len(),
        saved.map_or("(not saved)".to_string(), |p| p.display().to_string()),
        hex.join(" "),
        if input.len() > shown.len() { " ..." } else { "" }
    )
}

/// FNV-1a 64-bit: names finding files by content.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3))
}
