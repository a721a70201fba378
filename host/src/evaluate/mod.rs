//! Evaluation as DCASE 2021 Task 1B scores it: accuracy (overall, per class), multi-class
//! log loss (overall and macro-averaged over classes: the task's primary metric), confusion
//! matrices, and the submission file.
//!
//! Log loss: −ln p̂(true class) with p̂ clipped to [ε, 1 − ε], ε = 1e-15 (scikit-learn's
//! `log_loss`, which the DCASE evaluation used). Macro: the mean over classes of each class's
//! mean log loss (classes without clips are left out).

use crate::compute::ComputeDevice;
use crate::embed::EmbeddingSet;
use crate::fusion::{self, FusionHead, FusionSpec, Modalities};
use anyhow::{bail, Context, Result};
use avsc_shared::{LABELS, NUM_CLASSES};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const EPS: f64 = 1e-15;

/// Scores of one system on one set of clips.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub clips: usize,
    pub accuracy: f64,
    /// Per class (NaN → null where the class has no clip).
    #[serde(serialize_with = "nan_list")]
    pub class_accuracy: Vec<f64>,
    pub log_loss: f64,
    pub macro_log_loss: f64,
    #[serde(serialize_with = "nan_list")]
    pub class_log_loss: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: [[usize; NUM_CLASSES]; NUM_CLASSES],
}

fn nan_list<S: serde::Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        seq.serialize_element(&x.is_finite().then_some(*x))?;
    }
    seq.end()
}

pub fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |a, k| if p[k] > p[a] { k } else { a })
}

/// Score class probabilities against labels.
pub fn score(probs: &[[f32; NUM_CLASSES]], labels: &[usize]) -> Scores {
    assert_eq!(probs.len(), labels.len());
    let mut confusion = [[0usize; NUM_CLASSES]; NUM_CLASSES];
    let mut class_loss = [0.0f64; NUM_CLASSES];
    let mut total_loss = 0.0;
    for (p, &y) in probs.iter().zip(labels) {
        confusion[y][argmax(p)] += 1;
        let l = -(p[y] as f64).clamp(EPS, 1.0 - EPS).ln();
        class_loss[y] += l;
        total_loss += l;
    }
    let n = labels.len();
    let counts: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
    let correct: usize = (0..NUM_CLASSES).map(|c| confusion[c][c]).sum();
    let per = |v: f64, c: usize| if counts[c] == 0 { f64::NAN } else { v / counts[c] as f64 };
    let class_accuracy: Vec<f64> = (0..NUM_CLASSES).map(|c| per(confusion[c][c] as f64, c)).collect();
    let class_log_loss: Vec<f64> = (0..NUM_CLASSES).map(|c| per(class_loss[c], c)).collect();
    let present: Vec<f64> = class_log_loss.iter().copied().filter(|v| v.is_finite()).collect();
    Scores {
        clips: n,
        accuracy: if n == 0 { f64::NAN } else { correct as f64 / n as f64 },
        class_accuracy,
        log_loss: if n == 0 { f64::NAN } else { total_loss / n as f64 },
        macro_log_loss: present.iter().sum::<f64>() / present.len().max(1) as f64,
        class_log_loss,
        confusion,
    }
}

/// The confusion matrix as CSV: a header of predicted classes, one row per true class.
pub fn confusion_csv(m: &[[usize; NUM_CLASSES]; NUM_CLASSES]) -> String {
    let mut s = String::from("true\\predicted");
    for l in LABELS {
        s += &format!(",{l}");
    }
    s.push('\n');
    for (t, row) in m.iter().enumerate() {
        s += LABELS[t];
        for c in row {
            s += &format!(",{c}");
        }
        s.push('\n');
    }
    s
}

/// DCASE's submission format: TAB separated, `filename`, `scene_label`, then one probability
/// column per class.
pub fn submission_csv(ids: &[String], probs: &[[f32; NUM_CLASSES]]) -> String {
    let mut s = String::from("filename\tscene_label");
    for l in LABELS {
        s += &format!("\t{l}");
    }
    s.push('\n');
    for (id, p) in ids.iter().zip(probs) {
        s += &format!("{id}.mp4\t{}", LABELS[argmax(p)]);
        for v in p {
            s += &format!("\t{v:.6}");
        }
        s.push('\n');
    }
    s
}

/// Per-class accuracy table (Markdown) with one column per system.
pub fn markdown_table(columns: &[(String, &Scores)]) -> String {
    let mut s = String::from("| scene |");
    for (name, _) in columns {
        s += &format!(" {name} |");
    }
    s += "\n|---|";
    s += &"---:|".repeat(columns.len());
    s.push('\n');
    let pct = |v: f64| if v.is_finite() { format!("{:.1}", 100.0 * v) } else { "–".into() };
    for (c, label) in LABELS.iter().enumerate() {
        s += &format!("| {label} |");
        for (_, sc) in columns {
            s += &format!(" {} |", pct(sc.class_accuracy[c]));
        }
        s.push('\n');
    }
    s += "| **overall** |";
    for (_, sc) in columns {
        s += &format!(" **{}** |", pct(sc.accuracy));
    }
    s += "\n| log loss |";
    for (_, sc) in columns {
        s += &format!(" {:.3} |", sc.log_loss);
    }
    s += "\n| macro log loss |";
    for (_, sc) in columns {
        s += &format!(" {:.3} |", sc.macro_log_loss);
    }
    s.push('\n');
    s
}

/// One trained head evaluated on a split.
pub struct Evaluated {
    pub spec: FusionSpec,
    pub scores: Scores,
    pub ids: Vec<String>,
    pub probs: Vec<[f32; NUM_CLASSES]>,
}

/// Run a head over the labelled clips of `split`.
pub fn evaluate_head(
    set: &EmbeddingSet,
    spec: &FusionSpec,
    head: &FusionHead,
    split: &str,
    device: &burn::prelude::Device,
) -> Result<Evaluated> {
    let clips = set.labelled(split);
    if clips.is_empty() {
        bail!("no labelled clips in split {split:?} of the embeddings");
    }
    let probs = fusion::predict(head, spec, set, &clips, device)?;
    let labels: Vec<usize> = clips.iter().map(|&c| set.label(c).expect("labelled")).collect();
    let ids = clips.iter().map(|&c| set.items[c].id.clone()).collect();
    Ok(Evaluated { spec: *spec, scores: score(&probs, &labels), ids, probs })
}

/// What `avsc-host evaluate` writes.
pub struct Written {
    pub metrics: PathBuf,
    pub pngs: Vec<PathBuf>,
}

/// Evaluate the heads in `heads` (run folders with head.json) on `split` and write into
/// `out`: metrics.json, confusion_<modalities>.csv/.png per head, submission.csv (of the
/// audio-visual head, or the first head), and a Markdown summary.
pub fn run(
    set: &EmbeddingSet,
    heads: &[PathBuf],
    split: &str,
    out: &Path,
    device: ComputeDevice,
) -> Result<(Vec<Evaluated>, Written)> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let device = device.open()?;
    let mut results = Vec::new();
    for dir in heads {
        fusion::check_trained_on(dir, set)?;
        let (spec, head) = fusion::load(dir, &device)?;
        results.push(evaluate_head(set, &spec, &head, split, &device)?);
    }
    let mut pngs = Vec::new();
    let mut json = serde_json::Map::new();
    for e in &results {
        let name = format!("{}_{}", e.spec.modalities.name(), e.spec.kind);
        avsc_shared::write_atomic(
            &out.join(format!("confusion_{name}.csv")),
            confusion_csv(&e.scores.confusion).as_bytes(),
        )?;
        let png = out.join(format!("confusion_{name}.png"));
        let title = format!(
            "{} ({}): accuracy {:.1} %, {} clips",
            match e.spec.modalities {
                Modalities::Av => "audio-visual",
                Modalities::Audio => "audio only",
                Modalities::Visual => "visual only",
            },
            e.spec.kind,
            100.0 * e.scores.accuracy,
            e.scores.clips
        );
        crate::plot::confusion(&png, &title, &e.scores.confusion)?;
        pngs.push(png);
        json.insert(name, serde_json::to_value(&e.scores)?);
    }
    let main = results.iter().find(|e| e.spec.modalities == Modalities::Av).or(results.first());
    if let Some(e) = main {
        avsc_shared::write_atomic(&out.join("submission.csv"), submission_csv(&e.ids, &e.probs).as_bytes())?;
    }
    let columns: Vec<(String, &Scores)> =
        results.iter().map(|e| (format!("{} {}", e.spec.modalities.name(), e.spec.kind), &e.scores)).collect();
    avsc_shared::write_atomic(&out.join("summary.md"), markdown_table(&columns).as_bytes())?;
    let metrics = out.join("metrics.json");
    avsc_shared::write_atomic(&metrics, serde_json::to_string_pretty(&json)?.as_bytes())?;
    Ok((results, Written { metrics, pngs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[(usize, f32)]) -> [f32; NUM_CLASSES] {
        let rest = (1.0 - v.iter().map(|x| x.1).sum::<f32>()) / (NUM_CLASSES - v.len()) as f32;
        let mut out = [rest; NUM_CLASSES];
        for &(k, x) in v {
            out[k] = x;
        }
        out
    }

    #[test]
    fn hand_computed_scores() {
        // Three clips of class 0 (p = 0.5, 0.25, 0.8 on the truth), one of class 1 (p = 0.1,
        // predicted 2).
        let probs = [p(&[(0, 0.5)]), p(&[(0, 0.25), (3, 0.5)]), p(&[(0, 0.8)]), p(&[(1, 0.1), (2, 0.7)])];
        let labels = [0, 0, 0, 1];
        let s = score(&probs, &labels);
        assert_eq!(s.clips, 4);
        assert!((s.accuracy - 0.5).abs() < 1e-12);
        assert!((s.class_accuracy[0] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.class_accuracy[1], 0.0);
        assert!(s.class_accuracy[5].is_nan());
        let l0 = -(0.5f64.ln() + 0.25f64.ln() + (0.8f32 as f64).ln()) / 3.0;
        let l1 = -(0.1f32 as f64).ln();
        assert!((s.class_log_loss[0] - l0).abs() < 1e-6);
        assert!((s.log_loss - (3.0 * l0 + l1) / 4.0).abs() < 1e-6, "{}", s.log_loss);
        assert!((s.macro_log_loss - (l0 + l1) / 2.0).abs() < 1e-6, "{}", s.macro_log_loss);
        assert_eq!(s.confusion[0][0], 2);
        assert_eq!(s.confusion[0][3], 1);
        assert_eq!(s.confusion[1][2], 1);
        assert_eq!(s.confusion.iter().flatten().sum::<usize>(), 4, "one cell per clip");
    }

    #[test]
    fn log_loss_is_clipped() {
        let mut zero = [0.0f32; NUM_CLASSES];
        zero[1] = 1.0;
        let s = score(&[zero], &[0]);
        assert!((s.log_loss - (-EPS.ln())).abs() < 1e-9, "{}", s.log_loss);
    }

    #[test]
    fn csv_formats() {
        let probs = [p(&[(4, 0.9)])];
        let sub = submission_csv(&["park-lisbon-1-2".into()], &probs);
        let lines: Vec<&str> = sub.lines().collect();
        assert_eq!(lines[0].split('\t').count(), 12);
        assert!(lines[0].starts_with("filename\tscene_label\tairport"));
        assert!(lines[1].starts_with("park-lisbon-1-2.mp4\tpark\t"));
        let mut m = [[0usize; NUM_CLASSES]; NUM_CLASSES];
        m[2][3] = 7;
        let c = confusion_csv(&m);
        assert_eq!(c.lines().count(), 11);
        assert_eq!(c.lines().nth(3).unwrap(), "metro,0,0,0,7,0,0,0,0,0,0");
        let t = markdown_table(&[("av f4".into(), &score(&probs, &[4]))]);
        assert!(t.contains("| park | 100.0 |") && t.contains("**100.0**"), "{t}");
    }
}
