//! Datasets: where clips come from. Two layouts, one item type:
//! - TAU Urban Audio-Visual Scenes 2021 (`meta.csv`, `evaluation_setup/fold1_*.csv`);
//! - a plain folder `<root>/<label>/<clip>.{mp4,wav}` (optionally a frame folder
//!   `<root>/<label>/<clip>/` of images next to the WAV) for users' own recordings.

mod folder;
mod split;
mod tau;

pub use split::grouped_validation_split;

use anyhow::{bail, Result};
use avsc_shared::Label;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a clip's pictures come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visual {
    /// A video file (MP4, H.264); frames are sampled by timestamp.
    Video(PathBuf),
    /// A folder of images (PNG/JPEG) in name order, already at the preset's frame rate.
    Frames(PathBuf),
}

/// One clip of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Unique, file-name-safe identifier (the clip's file stem).
    pub id: String,
    /// Audio source: a WAV, or the video file itself (its AAC track) when there is no WAV.
    pub audio: Option<PathBuf>,
    pub visual: Option<Visual>,
    /// `None` for unlabelled splits (TAU's fold1_test).
    pub label: Option<Label>,
    /// Recording location: validation splits never put one location on both sides.
    pub location: String,
    /// The official folds that list the clip (TAU's `evaluation_setup/fold1_*.csv`, e.g.
    /// `["fold1_evaluate", "fold1_test"]`); empty where the layout has no folds.
    pub folds: Vec<String>,
}

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Fold1Train,
    Fold1Evaluate,
    Fold1Test,
    All,
}

impl Split {
    pub fn parse(s: &str) -> Result<Split> {
        Ok(match s {
            "fold1_train" | "train" => Split::Fold1Train,
            "fold1_evaluate" | "evaluate" => Split::Fold1Evaluate,
            "fold1_test" | "test" => Split::Fold1Test,
            "all" => Split::All,
            _ => bail!("unknown split {s:?} (expected fold1_train, fold1_evaluate, fold1_test or all)"),
        })
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Fold1Train => "fold1_train",
            Split::Fold1Evaluate => "fold1_evaluate",
            Split::Fold1Test => "fold1_test",
            Split::All => "all",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Tau,
    Folder,
}

/// A listing of a split: the good items, and one line per row or file that was refused
/// (naming the file, the CSV row and the reason) so a caller can report it and go on.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Item>,
    pub errors: Vec<String>,
}

pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
}

impl Dataset {
    /// Recognise the layout of `root`.
    pub fn open(root: &Path) -> Result<Dataset> {
        if !root.is_dir() {
            bail!("{}: dataset folder not found", root.display());
        }
        let layout = if tau::meta_dir(root).is_some() {
            Layout::Tau
        } else if folder::looks_like(root) {
            Layout::Folder
        } else {
            bail!(
                "{}: not a dataset: no meta.csv (TAU layout) and no <label>/ folders named after the scene classes",
                root.display()
            );
        };
        Ok(Dataset { root: root.to_path_buf(), layout })
    }

    /// Whether the dataset has official folds (TAU's `evaluation_setup/`).
    pub fn has_folds(&self) -> bool {
        self.layout == Layout::Tau && tau::has_folds(&self.root)
    }

    /// The items of `split`, each with the folds that list it. The folder layout has no
    /// official folds: every split is `All`.
    pub fn list(&self, split: Split) -> Result<Listing> {
        match self.layout {
            Layout::Tau => tau::list(&self.root, split),
            Layout::Folder => folder::list(&self.root),
        }
    }
}

/// TAU names clips `<scene>-<city>-<location>-<segment>`; the location is `<city>-<location>`.
pub fn location_from_stem(stem: &str) -> Option<String> {
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    // rsplitn yields [segment, location, city, scene...]
    (parts.len() == 4).then(|| format!("{}-{}", parts[2], parts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_comes_from_the_tau_file_name() {
        assert_eq!(location_from_stem("street_traffic-lyon-1181-40057").as_deref(), Some("lyon-1181"));
        assert_eq!(location_from_stem("metro_station-prague-1131-40022").as_deref(), Some("prague-1131"));
        assert_eq!(location_from_stem("myclip"), None);
    }
}
