//! Stage records of `train-all`: a stage runs again only when what it reads changed.
//!
//! Each stage names its inputs as a JSON value (its settings and the digests of the files it
//! reads); their SHA-256 is the stage's *key*. `OUT/stages/<name>.json` records the key, the
//! state (`running` or `done`), a digest of what the stage wrote, and the stage's summary
//! (accuracies and the like, so a skipped stage still reports). On the next run:
//!
//! - same key, `done`, and the outputs still hash to the recorded digest: skipped;
//! - same key, `running` (the run was stopped): the stage runs again without clearing, so
//!   resumable work (training checkpoints, prepared clips) continues;
//! - another key, outputs changed since recorded, or no record at all (outputs of unknown
//!   origin): the outputs are cleared and the stage redone.
//!
//! Digests are of file contents (SHA-256), except where a stage says otherwise.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
}

/// `OUT/stages/<name>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub stage: String,
    /// SHA-256 of the canonical JSON of `inputs`.
    pub key: String,
    pub state: State,
    /// Digest of the outputs when the stage finished.
    pub outputs: Option<String>,
    pub seconds: f64,
    /// What the key was made of (for a person reading why a stage re-ran).
    pub inputs: Value,
    /// The stage's summary, handed back when it is skipped.
    pub summary: Value,
}

/// How a stage went in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Inputs and outputs as recorded: nothing done.
    UpToDate,
    /// Run from a clean state (first run, or its inputs or outputs changed).
    Ran,
    /// Continued an interrupted run with the same inputs.
    Resumed,
}

/// What a stage is: its name, its inputs, how to digest and clear its outputs.
pub struct Stage<'a> {
    pub name: String,
    pub inputs: Value,
    /// Digest of the outputs as they are on disk (`None`: missing).
    pub outputs: Box<dyn Fn() -> Result<Option<String>> + 'a>,
    /// Remove the outputs before a clean run.
    pub clear: Box<dyn Fn() -> Result<()> + 'a>,
}

/// The stage records of one `train-all` folder, and how each stage went in this run.
pub struct Stages {
    dir: PathBuf,
    t0: Instant,
    pub log: Vec<(String, Outcome)>,
}

impl Stages {
    pub fn new(out: &Path) -> Stages {
        Stages { dir: out.join("stages"), t0: Instant::now(), log: Vec::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.json", name.replace('/', "_")))
    }

    pub fn record(&self, name: &str) -> Option<Record> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, r: &Record) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("{}: cannot create", self.dir.display()))?;
        avsc_shared::write_atomic(&self.path(&r.stage), serde_json::to_string_pretty(r)?.as_bytes())
    }

    /// Run `work` unless `stage` is up to date; returns its summary and the digest of its
    /// outputs (recorded or new).
    pub fn run(&mut self, stage: Stage, work: impl FnOnce() -> Result<Value>) -> Result<(Value, String)> {
        let key = key_of(&stage.inputs);
        let name = stage.name.clone();
        let short = &key[..12];
        let minutes = self.t0.elapsed().as_secs_f64() / 60.0;
        let prior = self.record(&name);
        let resume = match &prior {
            Some(r) if r.key == key && r.state == State::Done => {
                let now = (stage.outputs)()?;
                if now.is_some() && now == r.outputs {
                    eprintln!("== [{minutes:5.1} min] {name}: up to date (inputs {short}…)");
                    self.log.push((name, Outcome::UpToDate));
                    return Ok((r.summary.clone(), now.unwrap_or_default()));
                }
                eprintln!("== [{minutes:5.1} min] {name}: its outputs changed since it finished: redoing");
                false
            }
            Some(r) if r.key == key => {
                eprintln!("== [{minutes:5.1} min] {name}: continuing an interrupted run (inputs {short}…)");
                true
            }
            Some(r) => {
                eprintln!("== [{minutes:5.1} min] {name}: inputs changed ({}… -> {short}…): redoing", &r.key[..12]);
                false
            }
            None => {
                eprintln!("== [{minutes:5.1} min] {name} (inputs {short}…)");
                false
            }
        };
        if !resume {
            (stage.clear)().with_context(|| format!("{name}: clearing the previous outputs"))?;
        }
        let t = Instant::now();
        let mut rec = Record {
            stage: name.clone(),
            key,
            state: State::Running,
            outputs: None,
            seconds: 0.0,
            inputs: stage.inputs,
            summary: Value::Null,
        };
        self.write(&rec)?;
        let summary = work().with_context(|| format!("stage {name}"))?;
        let outputs = (stage.outputs)()?.with_context(|| format!("stage {name}: finished but wrote no outputs"))?;
        rec.state = State::Done;
        rec.outputs = Some(outputs.clone());
        rec.summary = summary.clone();
        rec.seconds = t.elapsed().as_secs_f64();
        self.write(&rec)?;
        self.log.push((name, if resume { Outcome::Resumed } else { Outcome::Ran }));
        Ok((summary, outputs))
    }
}

/// SHA-256 (hex) of a JSON value written canonically: objects in key order, whatever order
/// the map keeps (serde_json's `preserve_order` may be on through another crate).
pub fn key_of(v: &Value) -> String {
    fn write(v: &Value, s: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                s.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&Value::String(k.clone()).to_string());
                    s.push(':');
                    write(&m[k], s);
                }
                s.push('}');
            }
            Value::Array(a) => {
                s.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    write(x, s);
                }
                s.push(']');
            }
            other => s.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    hex(&Sha256::digest(s.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a file's contents, read in 1 MiB pieces; `None` when it does not exist.
pub fn file_digest(path: &Path) -> Result<Option<String>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Some(hex(&h.finalize())))
}

/// One digest over several files (name and contents of each); `None` when any is missing.
pub fn files_digest(paths: &[PathBuf]) -> Result<Option<String>> {
    let mut h = Sha256::new();
    for p in paths {
        let Some(d) = file_digest(p)? else { return Ok(None) };
        h.update(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
        h.update(d.as_bytes());
    }
    Ok(Some(hex(&h.finalize())))
}

/// Remove a file or a folder if it is there.
pub fn remove(path: &Path) -> Result<()> {
    let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("{}: cannot remove", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn stage<'a>(dir: &'a Path, inputs: Value, cleared: &'a Cell<usize>) -> Stage<'a> {
        let file = dir.join("out.txt");
        let f2 = file.clone();
        Stage {
            name: "phase1/aud_mel".into(),
            inputs,
            outputs: Box::new(move || file_digest(&file)),
            clear: Box::new(move || {
                cleared.set(cleared.get() + 1);
                remove(&f2)
            }),
        }
    }

    #[test]
    fn skips_when_inputs_and_outputs_are_as_recorded_and_redoes_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cleared = Cell::new(0);
        let runs = Cell::new(0);
        let work = |text: &'static str| {
            let p = d.join("out.txt");
            let runs = &runs;
            move || {
                runs.set(runs.get() + 1);
                std::fs::write(&p, text).unwrap();
                Ok(serde_json::json!({ "accuracy": 0.5 }))
            }
        };
        let in1 = serde_json::json!({ "epochs": 1, "cache": "abc" });
        let mut s = Stages::new(d);
        let (sum, digest) = s.run(stage(d, in1.clone(), &cleared), work("a")).unwrap();
        assert_eq!((runs.get(), cleared.get()), (1, 1), "no record: cleared, then run");
        assert_eq!(sum["accuracy"], 0.5);
        assert_eq!(Some(digest.clone()), file_digest(&d.join("out.txt")).unwrap());

        // Same inputs: nothing runs, the summary comes back from the record.
        let mut s = Stages::new(d);
        let (sum, again) = s.run(stage(d, in1.clone(), &cleared), work("a")).unwrap();
        assert_eq!((runs.get(), cleared.get(), again), (1, 1, digest));
        assert_eq!(sum["accuracy"], 0.5);
        assert_eq!(s.log[0].1, Outcome::UpToDate);

        // Outputs edited by hand: redone.
        std::fs::write(d.join("out.txt"), "tampered").unwrap();
        let mut s = Stages::new(d);
        s.run(stage(d, in1.clone(), &cleared), work("a")).unwrap();
        assert_eq!((runs.get(), cleared.get(), s.log[0].1), (2, 2, Outcome::Ran));

        // Other inputs: cleared and redone.
        let in2 = serde_json::json!({ "epochs": 2, "cache": "abc" });
        let mut s = Stages::new(d);
        s.run(stage(d, in2.clone(), &cleared), work("b")).unwrap();
        assert_eq!((runs.get(), cleared.get()), (3, 3));

        // Interrupted (work fails): the record says running; the next run continues without
        // clearing.
        let in3 = serde_json::json!({ "epochs": 3, "cache": "abc" });
        let mut s = Stages::new(d);
        let err = s.run(stage(d, in3.clone(), &cleared), || anyhow::bail!("killed")).unwrap_err();
        assert!(format!("{err:#}").contains("stage phase1/aud_mel: killed"), "{err:#}");
        assert_eq!(s.record("phase1/aud_mel").unwrap().state, State::Running);
        let mut s = Stages::new(d);
        s.run(stage(d, in3, &cleared), work("c")).unwrap();
        assert_eq!((runs.get(), cleared.get(), s.log[0].1), (4, 4, Outcome::Resumed));
    }

    #[test]
    fn keys_follow_the_values() {
        let a = key_of(&serde_json::json!({ "b": 1, "a": [1, 2] }));
        assert_eq!(a, key_of(&serde_json::json!({ "a": [1, 2], "b": 1 })), "objects hash in key order");
        assert_ne!(a, key_of(&serde_json::json!({ "a": [2, 1], "b": 1 })));
        assert_eq!(a.len(), 64);
    }
}
