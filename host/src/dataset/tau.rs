//! TAU Urban Audio-Visual Scenes 2021: TAB-separated CSVs with a header, either at the
//! root or inside `TAU-urban-audio-visual-scenes-2021-development.meta/`.

use super::{location_from_stem, Item, Listing, Split, Visual};
use anyhow::{Context, Result};
use avsc_shared::tsv::{field, Table};
use avsc_shared::Label;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const META_SUBDIR: &str = "TAU-urban-audio-visual-scenes-2021-development.meta";

/// The folder holding `meta.csv` and `evaluation_setup/`, if any.
pub fn meta_dir(root: &Path) -> Option<PathBuf> {
    [root.to_path_buf(), root.join(META_SUBDIR)].into_iter().find(|d| d.join("meta.csv").is_file())
}

/// Read and parse a TAB-separated file (the parser is [`avsc_shared::tsv`]); errors name
/// the file.
fn read_table(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Table::parse(&text, &path.display().to_string())
}

pub fn list(root: &Path, split: Split) -> Result<Listing> {
    let meta = meta_dir(root).with_context(|| format!("{}: no meta.csv", root.display()))?;
    // Locations come from meta.csv's `identifier`; the split files only list clips.
    let meta_table = read_table(&meta.join("meta.csv"))?;
    let audio_col = meta_table.column("filename_audio")?;
    let ident_col = meta_table.optional_column("identifier");
    let mut identifiers = HashMap::new();
    if let Some(ic) = ident_col {
        for (_, row) in &meta_table.rows {
            if let (Some(a), Some(id)) = (row.get(audio_col), row.get(ic)) {
                identifiers.insert(a.clone(), id.clone());
            }
        }
    }
    let table = match split {
        Split::All => meta_table,
        s => read_table(&meta.join("evaluation_setup").join(format!("{s}.csv")))?,
    };
    let audio_col = table.column("filename_audio")?;
    let video_col = table.column("filename_video")?;
    let label_col = match split {
        Split::Fold1Test => None,
        _ => Some(table.column("scene_label")?),
    };
    let mut listing = Listing::default();
    let folds = fold_lists(&meta, &mut listing.errors);
    for (line, row) in &table.rows {
        let at = |c: usize| field(row, c);
        let where_ = format!("{} line {line}", table.name);
        let (Some(audio), Some(video)) = (at(audio_col), at(video_col)) else {
            listing.errors.push(format!("{where_}: missing filename_audio or filename_video"));
            continue;
        };
        let label = match label_col {
            None => None,
            Some(c) => match at(c).map(|l| l.parse::<Label>()) {
                Some(Ok(l)) => Some(l),
                Some(Err(e)) => {
                    listing.errors.push(format!("{where_}: {e}"));
                    continue;
                }
                None => {
                    listing.errors.push(format!("{where_}: missing scene_label"));
                    continue;
                }
            },
        };
        let stem = Path::new(audio).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(location) = identifiers.get(audio).cloned().or_else(|| location_from_stem(&stem)) else {
            listing.errors.push(format!("{where_}: no identifier and no location in the file name {audio:?}"));
            continue;
        };
        // Audio paths in the CSVs are relative to the dataset root; the WAV is preferred,
        // the MP4's AAC track is the fallback when the WAV is absent.
        let wav = root.join(audio);
        let mp4 = root.join(video);
        // A folder in place of the MP4 holds the clip's frames (`avsc-host synth` writes
        // TAU-shaped sets that way).
        let visual = if mp4.is_dir() { Visual::Frames(mp4.clone()) } else { Visual::Video(mp4.clone()) };
        let audio_path = if wav.exists() || !mp4.is_file() { wav } else { mp4 };
        listing.items.push(Item {
            id: stem,
            audio: Some(audio_path),
            visual: Some(visual),
            label,
            location,
            folds: folds.get(audio).cloned().unwrap_or_default(),
        });
    }
    Ok(listing)
}

/// The official folds, read from whichever of `evaluation_setup/fold1_{train,evaluate,test}.csv`
/// exist: `filename_audio` -> the folds listing it. A fold file that cannot be read, or a row
/// without `filename_audio`, is one error line (the clip then carries no such fold).
fn fold_lists(meta: &Path, errors: &mut Vec<String>) -> HashMap<String, Vec<String>> {
    let mut folds: HashMap<String, Vec<String>> = HashMap::new();
    for split in [Split::Fold1Train, Split::Fold1Evaluate, Split::Fold1Test] {
        let path = meta.join("evaluation_setup").join(format!("{split}.csv"));
        if !path.exists() {
            continue;
        }
        let (table, col) = match read_table(&path).and_then(|t| t.column("filename_audio").map(|c| (t, c))) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        for (line, row) in &table.rows {
            match field(row, col) {
                Some(a) => folds.entry(a.to_string()).or_default().push(split.to_string()),
                None => errors.push(format!("{} line {line}: missing filename_audio", path.display())),
            }
        }
    }
    folds
}

/// Whether the dataset has any official fold list.
pub fn has_folds(root: &Path) -> bool {
    meta_dir(root).is_some_and(|m| {
        [Split::Fold1Train, Split::Fold1Evaluate, Split::Fold1Test]
            .iter()
            .any(|s| m.join("evaluation_setup").join(format!("{s}.csv")).is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;

    fn tau_mini() -> PathBuf {
        avsc_shared::reference_dir().join("media/tau-mini")
    }

    #[test]
    fn tau_mini_folds() {
        let ds = Dataset::open(&tau_mini()).unwrap();
        let all = ds.list(Split::All).unwrap();
        assert_eq!(all.items.len(), 20);
        assert!(all.errors.is_empty(), "{:?}", all.errors);
        let train = ds.list(Split::Fold1Train).unwrap();
        let eval = ds.list(Split::Fold1Evaluate).unwrap();
        let test = ds.list(Split::Fold1Test).unwrap();
        assert_eq!(train.items.len() + eval.items.len(), 20);
        assert_eq!(test.items.len(), eval.items.len());
        assert!(test.items.iter().all(|i| i.label.is_none()));
        let first = &all.items[0];
        assert_eq!(first.id, "airport-lyon-1100-40000");
        assert_eq!(first.location, "lyon-1100");
        assert_eq!(first.label.unwrap().name(), "airport");
        assert!(first.audio.as_ref().unwrap().ends_with("audio/airport-lyon-1100-40000.wav"));
        // TAU's official split is by location.
        for t in &train.items {
            assert!(eval.items.iter().all(|e| e.location != t.location));
        }
        // Every listing carries each clip's folds, so one `prepare` of everything keeps them.
        for it in &all.items {
            let in_train = train.items.iter().any(|t| t.id == it.id);
            let expected: &[&str] = if in_train { &["fold1_train"] } else { &["fold1_evaluate", "fold1_test"] };
            assert_eq!(it.folds, expected, "{}", it.id);
        }
        assert!(eval.items.iter().all(|e| e.folds == ["fold1_evaluate", "fold1_test"]));
    }

    #[test]
    fn a_fold_list_without_filename_audio_is_named_and_the_rest_listed() {
        let dir = tempfile::tempdir().unwrap();
        copy_meta(dir.path(), "");
        let test = dir.path().join("evaluation_setup/fold1_test.csv");
        let text = std::fs::read_to_string(&test).unwrap().replacen("filename_audio", "audio", 1);
        std::fs::write(&test, text).unwrap();
        let l = Dataset::open(dir.path()).unwrap().list(Split::All).unwrap();
        assert_eq!(l.items.len(), 20);
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert!(l.errors[0].contains("fold1_test.csv") && l.errors[0].contains("filename_audio"), "{}", l.errors[0]);
        assert!(l.items.iter().all(|i| !i.folds.iter().any(|f| f == "fold1_test")));
        assert_eq!(l.items.iter().filter(|i| i.folds == ["fold1_evaluate"]).count(), 10);
    }

    /// Copy tau-mini's CSVs (not the media) into `dst`, under `sub`.
    fn copy_meta(dst: &Path, sub: &str) {
        let m = dst.join(sub);
        std::fs::create_dir_all(m.join("evaluation_setup")).unwrap();
        for f in [
            "meta.csv",
            "evaluation_setup/fold1_train.csv",
            "evaluation_setup/fold1_evaluate.csv",
            "evaluation_setup/fold1_test.csv",
        ] {
            std::fs::copy(tau_mini().join(f), m.join(f)).unwrap();
        }
    }

    #[test]
    fn meta_inside_the_meta_subfolder_is_found() {
        let dir = tempfile::tempdir().unwrap();
        copy_meta(dir.path(), META_SUBDIR);
        let ds = Dataset::open(dir.path()).unwrap();
        let l = ds.list(Split::Fold1Train).unwrap();
        assert_eq!(l.items.len(), 10);
        assert!(l.items[0].audio.as_ref().unwrap().starts_with(dir.path()));
    }

    #[test]
    fn bad_rows_and_missing_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        copy_meta(dir.path(), "");
        let train = dir.path().join("evaluation_setup/fold1_train.csv");
        let text = std::fs::read_to_string(&train).unwrap().replacen("\tbus\n", "\tspaceship\n", 1);
        std::fs::write(&train, text).unwrap();
        let l = Dataset::open(dir.path()).unwrap().list(Split::Fold1Train).unwrap();
        assert_eq!(l.items.len(), 9, "the other rows are still listed");
        assert_eq!(l.errors.len(), 1);
        assert!(l.errors[0].contains("fold1_train.csv line 3") && l.errors[0].contains("spaceship"), "{}", l.errors[0]);

        let eval = dir.path().join("evaluation_setup/fold1_evaluate.csv");
        let text = std::fs::read_to_string(&eval).unwrap().replacen("scene_label", "label", 1);
        std::fs::write(&eval, text).unwrap();
        let err = Dataset::open(dir.path()).unwrap().list(Split::Fold1Evaluate).unwrap_err().to_string();
        assert!(err.contains("fold1_evaluate.csv") && err.contains("missing column \"scene_label\""), "{err}");
    }
}
