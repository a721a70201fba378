//! The `export` verb's options, kept beside the exporter they drive.

use super::{export_bundle, parse_precision, presets, ExportArgs};
use crate::fusion::FusionKind;
use anyhow::Result;
use avsc_shared::FeaturePreset;
use std::path::PathBuf;

/// `avsc-host export` options.
#[derive(Clone, Debug, clap::Args)]
pub struct ExportCli {
    /// Folder with the five Phase-I run folders.
    #[arg(long)]
    pub runs: PathBuf,
    /// Folder with the Phase-II head run folders (table1's OUT/heads).
    #[arg(long)]
    pub heads: PathBuf,
    /// Network widths the runs were trained with.
    #[arg(long, default_value = "paper")]
    pub size: String,
    /// Fusion layer of the audio-visual head (f1..f6).
    #[arg(long, default_value = "f4")]
    pub fusion: String,
    /// f32, int8 or both (one folder, one manifest).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Feature cache the networks were trained on: presets for the manifest, int8 calibration.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Feature preset written into the manifest when no --cache is given.
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// Calibration clips for int8 (evenly spaced over the cache).
    #[arg(long, default_value_t = 64)]
    pub calibration_clips: usize,
    /// Calibrate on this split of the cache only (e.g. fold1_train; default: every clip outside
    /// fold1_evaluate and fold1_test).
    #[arg(long)]
    pub calibration_split: Option<String>,
    /// int8 weight scales: per-channel (ConvInteger + float rescale: keeps f32's top-1),
    /// per-tensor (QLinearConv: up to 1.5x faster in tract, near-ties may flip), or auto
    /// (per-channel where BatchNorm was folded, per-tensor for ConvNeXt).
    #[arg(long, default_value = "auto")]
    pub weight_scales: String,
    /// Bundle folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

impl ExportCli {
    /// Export the bundle; one line per written file on stdout (path, bytes).
    pub fn run(self) -> Result<()> {
        let (feature_preset, frame_preset) = presets(self.cache.as_deref(), FeaturePreset::by_name(&self.preset)?)?;
        let args = ExportArgs {
            runs: self.runs,
            heads: self.heads,
            fusion: FusionKind::parse(&self.fusion)?,
            size: self.size.parse()?,
            precisions: parse_precision(&self.precision)?,
            feature_preset,
            frame_preset,
            cache: self.cache,
            calibration_clips: self.calibration_clips,
            calibration_split: self.calibration_split,
            weight_scales: self.weight_scales.parse()?,
            out: self.out,
        };
        let r = export_bundle(&args)?;
        for (name, bytes) in &r.files {
            println!("{}\t{bytes}", r.dir.join(name).display());
        }
        eprintln!("export: bundle in {}", r.dir.display());
        Ok(())
    }
}
