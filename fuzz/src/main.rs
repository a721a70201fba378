//! `avsc-fuzz`: fuzz avsc's file readers. See the crate docs (src/lib.rs) and README.md.
//!
//! ```text
//! avsc-fuzz <mp4|wav|csv|manifest|all> [--execs N] [--seed S] [--corpus DIR]
//!           [--findings DIR] [--timeout-ms T] [--max-len BYTES] [--progress N]
//! avsc-fuzz minimize <target> FILE      shrink a finding's input, print it as a byte literal
//! ```
//!
//! Exits with status 1 when any target has a finding, 3 when a hang or a huge allocation
//! ended the run, 2 on bad arguments.

use avsc_fuzz::engine::describe_input;
use avsc_fuzz::{fuzz, Options, Target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static ALLOC: avsc_fuzz::alloc::CountingAlloc = avsc_fuzz::alloc::CountingAlloc;

const USAGE: &str = "usage: avsc-fuzz <mp4|wav|csv|manifest|all> [--execs N] [--seed S] [--corpus DIR] \
                     [--findings DIR] [--timeout-ms T] [--max-len BYTES] [--progress N]\n       \
                     avsc-fuzz minimize <mp4|wav|csv|manifest> FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("avsc-fuzz: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_target(name: Option<&String>) -> Result<Vec<Target>, String> {
    match name.map(String::as_str) {
        Some("all") => Ok(Target::ALL.to_vec()),
        Some(n) => Target::from_name(n).map(|t| vec![t]).ok_or_else(|| format!("unknown target {n:?}")),
        None => Err("no target given".into()),
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    if args.first().map(String::as_str) == Some("minimize") {
        return minimize(&args[1..]);
    }
    let targets = parse_target(args.first())?;
    let mut execs = 1_000_000u64;
    let mut seed = 1u64;
    let (mut corpus, mut findings) = (None, None);
    let (mut timeout_ms, mut max_len, mut progress) = (1000u64, 64 * 1024usize, 0u64);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.replace('_', "").parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--execs" => execs = number()?,
            "--seed" => seed = number()?,
            "--corpus" => corpus = Some(PathBuf::from(value)),
            "--findings" => findings = Some(PathBuf::from(value)),
            "--timeout-ms" => timeout_ms = number()?,
            "--max-len" => max_len = number()? as usize,
            "--progress" => progress = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if targets.len() > 1 && corpus.is_some() {
        return Err("--corpus names one target's corpus: give one target".into());
    }

    let mut total_findings = 0;
    for target in targets {
        let mut opts = Options::new(target, execs);
        opts.seed = seed;
        opts.timeout = Duration::from_millis(timeout_ms);
        opts.max_len = max_len;
        opts.progress_every = progress;
        if let Some(c) = &corpus {
            opts.corpus = c.clone();
        }
        if let Some(f) = &findings {
            opts.findings = f.join(target.name());
        }
        let report = fuzz(target, &opts).map_err(|e| format!("{}: {e}", target.name()))?;
        println!("{}", report.summary());
        for f in &report.findings {
            println!("FINDING {} ({} times): {}", f.kind, f.count, f.detail);
            println!("{}", describe_input(&f.input, f.saved.as_deref()));
        }
        total_findings += report.findings.len();
    }
    Ok(if total_findings == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `minimize <target> FILE`: shrink the input, write `FILE.min`, print it as a Rust byte
/// string literal for a regression test.
fn minimize(args: &[String]) -> Result<ExitCode, String> {
    let target = match parse_target(args.first())?.as_slice() {
        [t] => *t,
        _ => return Err("minimize takes one target".into()),
    };
    let file = args.get(1).ok_or("minimize needs an input file")?;
    let input = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let Some(how) = avsc_fuzz::minimize::failure(target, &input) else {
        println!("{file}: does not fail {}", target.name());
        return Ok(ExitCode::FAILURE);
    };
    let small = avsc_fuzz::minimize::minimize(target, &input, 20_000);
    let out = format!("{file}.min");
    std::fs::write(&out, &small).map_err(|e| format!("{out}: {e}"))?;
    println!("{} -> {} bytes ({out}); fails with: {how}", input.len(), small.len());
    println!("b\"{}\"", small.iter().map(|b| std::ascii::escape_default(*b).to_string()).collect::<String>());
    Ok(ExitCode::SUCCESS)
}
