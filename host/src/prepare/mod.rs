//! `avsc-host prepare`: a dataset split -> the feature cache (format in `cache/`).
//! Parallel over clips, resumable (finished clips are skipped), atomic per clip; a bad clip
//! is reported and the others still prepared. Each cached clip records the official folds
//! that list it (TAU's `evaluation_setup/`), whichever split was asked for, so one `prepare`
//! of the whole dataset serves training on fold1_train and evaluation on fold1_evaluate;
//! datasets without folds tag their clips with the split asked for.

mod load;

pub use load::{load, load_audio, load_frames, Worker, MIN_FRACTION};

use crate::cache::{write_manifest, Cache, CacheItem, Manifest, SCHEMA_VERSION};
use crate::dataset::{Dataset, Item, Split};
use crate::progress;
use anyhow::{bail, Context, Result};
use avsc_shared::{FeaturePreset, FramePreset, LABELS};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

pub struct PrepareArgs {
    pub dataset: PathBuf,
    pub out: PathBuf,
    pub preset: FeaturePreset,
    pub frames: FramePreset,
    pub split: Split,
    pub jobs: usize,
    /// Show a progress bar (else one line per 10 % on stderr).
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    /// The clip id, or "-" for a row that never became a clip.
    pub id: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub dataset: String,
    pub split: String,
    pub prepared: usize,
    pub skipped: usize,
    pub failed: Vec<Failure>,
    pub notes: Vec<String>,
    /// Clips of the whole cache (after this run) per fold or split tag.
    pub folds: BTreeMap<String, usize>,
    pub seconds: f64,
}

enum Outcome {
    Prepared(Item),
    Skipped(Item),
    Failed(Failure),
}

pub fn run(a: &PrepareArgs) -> Result<Report> {
    let t0 = Instant::now();
    let ds = Dataset::open(&a.dataset)?;
    let listing = ds.list(a.split)?;
    std::fs::create_dir_all(a.out.join("items")).with_context(|| format!("{}: cannot create", a.out.display()))?;
    let mut manifest = existing_manifest(&a.out, a)?;
    let mut run_notes = Vec::new();
    if ds.layout == crate::dataset::Layout::Tau && !ds.has_folds() {
        run_notes.push(format!(
            "{}: no evaluation_setup/fold1_*.csv beside meta.csv: the clips carry no folds (train and evaluate with --split all)",
            a.dataset.display()
        ));
    }
    let mut failed: Vec<Failure> =
        listing.errors.iter().map(|e| Failure { id: "-".into(), error: e.clone() }).collect();
    for e in &listing.errors {
        eprintln!("error: {e}");
    }

    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.jobs.max(1)).build()?;
    let n = listing.items.len();
    let pb = progress::bar(n, "prepare", "clips");
    if !a.progress {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let notes = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outcomes: Vec<Outcome> = pool.install(|| {
        listing
            .items
            .par_iter()
            .map_init(
                || load::Worker::new(&a.preset),
                |w, item| {
                    let out = prepare_one(item, a, w, &notes);
                    if let Outcome::Failed(f) = &out {
                        pb.suspend(|| eprintln!("error: {}", f.error));
                    }
                    pb.inc(1);
                    let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if !a.progress && (k * 10 / n.max(1)) != ((k - 1) * 10 / n.max(1)) {
                        eprintln!("prepare: {k}/{n} clips ({:.1} s)", t0.elapsed().as_secs_f64());
                    }
                    out
                },
            )
            .collect()
    });
    pb.finish_and_clear();

    let (mut prepared, mut skipped) = (0, 0);
    let mut by_id: BTreeMap<String, CacheItem> = manifest.items.drain(..).map(|i| (i.id.clone(), i)).collect();
    let split = a.split.to_string();
    for o in outcomes {
        let item = match o {
            Outcome::Prepared(i) => {
                prepared += 1;
                i
            }
            Outcome::Skipped(i) => {
                skipped += 1;
                i
            }
            Outcome::Failed(f) => {
                failed.push(f);
                continue;
            }
        };
        let e = by_id.entry(item.id.clone()).or_insert_with(|| CacheItem {
            id: item.id.clone(),
            label: item.label.map(|l| l.name().to_string()),
            location: item.location.clone(),
            splits: Vec::new(),
        });
        // Labels come from meta.csv (fold1_test lists none): keep one once known.
        if e.label.is_none() {
            e.label = item.label.map(|l| l.name().to_string());
        }
        let tags = if item.folds.is_empty() { std::slice::from_ref(&split) } else { &item.folds[..] };
        for t in tags {
            if !e.splits.contains(t) {
                e.splits.push(t.clone());
            }
        }
    }
    let mut folds = BTreeMap::new();
    for it in by_id.values() {
        for t in &it.splits {
            *folds.entry(t.clone()).or_insert(0) += 1;
        }
    }
    manifest.items = by_id.into_values().collect();
    write_manifest(&a.out, &manifest)?;
    let mut notes = notes.into_inner().unwrap();
    notes.extend(run_notes);
    for n in &notes {
        eprintln!("warning: {n}");
    }
    let report = Report {
        dataset: a.dataset.display().to_string(),
        split,
        prepared,
        skipped,
        failed,
        notes,
        folds,
        seconds: t0.elapsed().as_secs_f64(),
    };
    avsc_shared::write_atomic(&a.out.join("prepare-report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    Ok(report)
}

fn prepare_one(item: &Item, a: &PrepareArgs, w: &mut load::Worker, notes: &Mutex<Vec<String>>) -> Outcome {
    let path = Cache::item_path(&a.out, &item.id);
    if crate::cache::ClipData::is_complete(&path) {
        return Outcome::Skipped(item.clone());
    }
    let mut n = Vec::new();
    let r = load::load(item, &a.frames, w, &mut n)
        .and_then(|clip| avsc_shared::write_atomic(&path, &clip.encode()))
        .with_context(|| format!("clip {}", item.id));
    notes.lock().unwrap().extend(n);
    match r {
        Ok(()) => Outcome::Prepared(item.clone()),
        Err(e) => Outcome::Failed(Failure { id: item.id.clone(), error: format!("{e:#}") }),
    }
}

/// The cache's manifest if there is one (it must have been made with the same presets),
/// else a new empty one.
fn existing_manifest(out: &Path, a: &PrepareArgs) -> Result<Manifest> {
    if Cache::manifest_path(out).exists() {
        let c = Cache::open(out)?;
        if c.manifest.feature_preset != a.preset || c.manifest.frame_preset != a.frames {
            bail!(
                "{}: this cache was prepared with feature preset {:?}; use another --out or the same preset",
                out.display(),
                c.manifest.feature_preset.name
            );
        }
        return Ok(c.manifest);
    }
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        feature_preset: a.preset.clone(),
        frame_preset: a.frames.clone(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        dataset: a.dataset.display().to_string(),
        items: Vec::new(),
    })
}
