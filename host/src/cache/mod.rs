//! The training-ready feature cache written by `avsc-host prepare`.
//!
//! ```text
//! CACHE/
//!   manifest.json        schema, feature preset, frame preset, labels, items
//!   prepare-report.json  the last run: prepared / skipped / failed (with reasons)
//!   items/ID.clip        one clip, written atomically (temp + rename)
//! ```
//!
//! A `.clip` file: the 8-byte magic `AVSCCLIP`, a u32 LE header length, a JSON header
//! ([`ClipHeader`]), then the payload: the MEL, GAM and CQT dB spectrograms (2 x bins x T
//! each, the statics *before* deltas) as little-endian f16, then the frames (n x size x
//! size x 3, RGB u8, before normalisation). In the `paper` preset that is 0.47 MB of
//! spectrograms and 3.0 MB of frames per 10-s clip. Deltas are recomputed on load with the
//! same avsc-shared code the device runs, so the cache stores 3x fewer spectrogram bytes;
//! f16 keeps dB values to within 0.03 dB (11-bit mantissa at |x| < 128).

mod clip;

pub use clip::{ClipData, ClipHeader};

use anyhow::{bail, Context, Result};
use avsc_shared::{FeaturePreset, FramePreset, Label, LABELS};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheItem {
    pub id: String,
    /// Label name, `None` for unlabelled clips.
    pub label: Option<String>,
    pub location: String,
    /// The dataset split(s) it was prepared for, e.g. "fold1_train".
    pub splits: Vec<String>,
}

impl CacheItem {
    pub fn label(&self) -> Option<Label> {
        self.label.as_deref().and_then(|l| l.parse().ok())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub feature_preset: FeaturePreset,
    pub frame_preset: FramePreset,
    pub labels: Vec<String>,
    pub dataset: String,
    pub items: Vec<CacheItem>,
}

/// An open cache folder.
pub struct Cache {
    pub root: PathBuf,
    pub manifest: Manifest,
}

impl Cache {
    pub fn manifest_path(root: &Path) -> PathBuf {
        root.join("manifest.json")
    }

    pub fn item_path(root: &Path, id: &str) -> PathBuf {
        root.join("items").join(format!("{id}.clip"))
    }

    /// Open an existing cache; refuses other schema versions and label sets.
    pub fn open(root: &Path) -> Result<Cache> {
        let path = Self::manifest_path(root);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: cannot read (is this a cache made by `avsc-host prepare`?)", path.display())
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid cache manifest", path.display()))?;
        if manifest.schema_version != SCHEMA_VERSION {
            bail!(
                "{}: cache schema {} but this build reads {SCHEMA_VERSION}; prepare it again",
                path.display(),
                manifest.schema_version
            );
        }
        if manifest.labels != LABELS {
            bail!("{}: the cache's label list differs from this build's", path.display());
        }
        Ok(Cache { root: root.to_path_buf(), manifest })
    }

    /// Items of one split ("all" = every item).
    pub fn items(&self, split: &str) -> Vec<&CacheItem> {
        self.manifest.items.iter().filter(|i| split == "all" || i.splits.iter().any(|s| s == split)).collect()
    }

    pub fn read(&self, id: &str) -> Result<ClipData> {
        ClipData::read(&Self::item_path(&self.root, id), &self.manifest.feature_preset)
    }
}

/// Write the manifest atomically.
pub fn write_manifest(root: &Path, m: &Manifest) -> Result<()> {
    avsc_shared::write_atomic(&Cache::manifest_path(root), serde_json::to_string_pretty(m)?.as_bytes())
}
