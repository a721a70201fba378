//! [`export_bundle`]: the five Phase-I backbones and the three f4-style heads as ONNX files,
//! plus `manifest.json`, into one folder. Both precisions share the folder and the manifest:
//! `ROLE.onnx` (f32) and `ROLE.int8.onnx` (int8), each listed with its precision.

use super::verify::Plan;
use super::{fusion_graph, fusion_specs, quant, Backbone};
use crate::embed::{model_path, normalisation};
use crate::fusion::{FusionKind, FusionSpec, Modalities};
use crate::nets::SizePreset;
use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::{sha256_hex, FileEntry, Manifest, Precision, Role, SCHEMA_VERSION};
use avsc_shared::{FeaturePreset, FramePreset};
use std::path::{Path, PathBuf};

/// What [`export_bundle`] reads and writes.
#[derive(Clone, Debug)]
pub struct ExportArgs {
    /// Phase-I runs: `RUNS/<role>/best.bpk`.
    pub runs: PathBuf,
    /// Phase-II heads: `HEADS/av_<fusion>`, `HEADS/audio_f4`, `HEADS/visual_f4`.
    pub heads: PathBuf,
    /// The fusion layer of the audio-visual head.
    pub fusion: FusionKind,
    pub size: SizePreset,
    pub precisions: Vec<Precision>,
    /// Written into the manifest: what the device computes for the networks' inputs.
    pub feature_preset: FeaturePreset,
    pub frame_preset: FramePreset,
    /// Feature cache the int8 pass calibrates on (needed only for int8).
    pub cache: Option<PathBuf>,
    /// Calibration clips taken from the cache (evenly spaced).
    pub calibration_clips: usize,
    /// Calibrate only on this split of the cache (the training split: evaluation clips stay
    /// unseen); `None`: every clip.
    pub calibration_split: Option<String>,
    /// int8 weight scales: per output channel (default) or per tensor.
    pub weight_scales: quant::WeightScales,
    pub out: PathBuf,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub dir: PathBuf,
    /// (file name, bytes).
    pub files: Vec<(String, u64)>,
}

impl ExportReport {
    /// Total bytes of the ONNX files at `precision` (file names say the precision).
    pub fn bytes(&self, precision: Precision) -> u64 {
        self.files
            .iter()
            .filter(|(n, _)| n.ends_with(".int8.onnx") == (precision == Precision::Int8))
            .map(|f| f.1)
            .sum()
    }
}

/// File name of `role` at `precision` inside the bundle.
pub fn file_name(role: Role, precision: Precision) -> String {
    match precision {
        Precision::F32 => format!("{}.onnx", role.name()),
        Precision::Int8 => format!("{}.int8.onnx", role.name()),
    }
}

/// Export everything into `args.out` (created if needed). Each file is written atomically;
/// `manifest.json` last, so a folder with a manifest is a complete bundle.
pub fn export_bundle(args: &ExportArgs) -> Result<ExportReport> {
    ensure!(!args.precisions.is_empty(), "no precision to export");
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    let int8 = args.precisions.contains(&Precision::Int8);
    let calib_source = match (&args.cache, int8) {
        (Some(c), true) => {
            Some(quant::CalibrationSource::open(c, args.calibration_split.as_deref(), args.calibration_clips)?)
        }
        (None, true) => bail!("int8 export calibrates on a feature cache: give --cache"),
        _ => None,
    };
    let mut files = Vec::new();
    let mut report = ExportReport { dir: args.out.clone(), files: Vec::new() };
    let mut write = |name: String, bytes: Vec<u8>, entry: FileEntry| -> Result<()> {
        avsc_shared::write_atomic(&args.out.join(&name), &bytes)?;
        report.files.push((name, bytes.len() as u64));
        files.push(FileEntry { sha256: sha256_hex(&bytes), ..entry });
        Ok(())
    };

    for role in Role::BACKBONES {
        let model = model_path(&args.runs, role);
        ensure!(model.exists(), "{}: missing (train the {} network first)", model.display(), role.name());
        let net = Backbone::load(role, args.size, &model)?;
        let input = net.input_spec(args.feature_preset.n_bins, args.frame_preset.size);
        let f32_bytes = net.graph(&input, None)?.to_bytes();
        for &p in &args.precisions {
            let bytes = match p {
                Precision::F32 => f32_bytes.clone(),
                Precision::Int8 => {
                    let src = calib_source.as_ref().expect("checked above");
                    let cal = quant::calibrate(&f32_bytes, &src.inputs(role)?)?
                        .with_weights(args.weight_scales.for_role(role));
                    net.graph(&input, Some(cal))?.to_bytes()
                }
            };
            check(&bytes, role, p)?;
            let entry = FileEntry {
                path: file_name(role, p),
                role,
                precision: p,
                inputs: vec![input.clone()],
                outputs: net.output_specs(),
                embedding: None,
                normalisation: role.is_visual().then(|| normalisation(role)),
                fusion: None,
                sources: vec![],
                sha256: String::new(),
            };
            write(file_name(role, p), bytes, entry)?;
        }
        eprintln!("export {}: {}", role.name(), model.display());
    }

    let heads =
        [(Modalities::Av, args.fusion), (Modalities::Audio, FusionKind::F4), (Modalities::Visual, FusionKind::F4)];
    for (modalities, kind) in heads {
        let want = FusionSpec::new(kind, modalities)?;
        let dir = crate::pipeline::head_dir(&args.heads, &want);
        let (spec, head) = crate::fusion::load(&dir, &burn::prelude::Device::flex())?;
        ensure!(
            spec == want,
            "{}: holds a {} {} head, expected {} {}",
            dir.display(),
            spec.modalities.name(),
            spec.kind,
            modalities.name(),
            kind
        );
        let (input, output) = fusion_specs(&spec);
        // The heads are a few thousand weights: they stay float in both precisions.
        let bytes = fusion_graph(&head, &spec, None).to_bytes();
        let role = modalities.role();
        // One graph for both precisions: load it in tract once.
        check(&bytes, role, Precision::F32)?;
        for &p in &args.precisions {
            let entry = FileEntry {
                path: file_name(role, p),
                role,
                precision: p,
                inputs: vec![input.clone()],
                outputs: vec![output.clone()],
                embedding: Some(spec.kind.embedding()),
                normalisation: None,
                fusion: Some(spec.kind.to_string()),
                sources: modalities.sources().to_vec(),
                sha256: String::new(),
            };
            write(file_name(role, p), bytes.clone(), entry)?;
        }
        eprintln!("export {}: {}", role.name(), dir.display());
    }

    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        feature_preset: args.feature_preset.clone(),
        frame_preset: args.frame_preset.clone(),
        labels: avsc_shared::LABELS.iter().map(|s| s.to_string()).collect(),
        files,
    };
    manifest.write(&args.out)?;
    Ok(report)
}

/// Every written file must load in tract (the device's engine).
fn check(bytes: &[u8], role: Role, p: Precision) -> Result<()> {
    Plan::new(bytes).map(|_| ()).with_context(|| format!("exported {} ({p:?}) does not load in tract", role.name()))
}

/// `f32`, `int8` or `both`.
pub fn parse_precision(s: &str) -> Result<Vec<Precision>> {
    Ok(match s {
        "f32" => vec![Precision::F32],
        "int8" => vec![Precision::Int8],
        "both" => vec![Precision::F32, Precision::Int8],
        _ => bail!("unknown precision {s:?} (expected f32, int8 or both)"),
    })
}

/// The feature and frame presets of a bundle: the cache's when given (what the networks were
/// trained on), else `default` and the default frames.
pub fn presets(cache: Option<&Path>, default: FeaturePreset) -> Result<(FeaturePreset, FramePreset)> {
    match cache {
        Some(c) => {
            let m = crate::cache::Cache::open(c)?.manifest;
            Ok((m.feature_preset, m.frame_preset))
        }
        None => Ok((default, FramePreset::default())),
    }
}
