//! The model bundle: what `avsc-host export` writes and `avsc-device` loads (format in
//! models/README.md). A folder with `manifest.json` and ONNX files; the manifest carries the
//! feature and frame presets, so the device computes exactly what the networks were trained on.

use crate::preset::{FeaturePreset, FramePreset, Normalisation};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest layout this build writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";

/// What an ONNX file of the bundle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    AudMel,
    AudGam,
    AudCqt,
    VisInc,
    VisConv,
    /// Phase II head over all five embeddings.
    Fusion,
    /// The same kind of head over the three audio embeddings only.
    FusionAudio,
    /// ... over the two visual embeddings only.
    FusionVisual,
}

impl Role {
    pub const BACKBONES: [Role; 5] = [Role::AudMel, Role::AudGam, Role::AudCqt, Role::VisInc, Role::VisConv];

    /// How a visual backbone's input pixels are scaled, as its ImageNet weights expect:
    /// InceptionV3 to [-1, 1], ConvNeXt by the ImageNet mean and deviation. `None` for the
    /// roles that read no pictures. The one place this map is written.
    pub fn input_normalisation(self) -> Option<Normalisation> {
        match self {
            Role::VisInc => Some(Normalisation::MinusOneOne),
            Role::VisConv => Some(Normalisation::imagenet()),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::AudMel => "aud_mel",
            Role::AudGam => "aud_gam",
            Role::AudCqt => "aud_cqt",
            Role::VisInc => "vis_inc",
            Role::VisConv => "vis_conv",
            Role::Fusion => "fusion",
            Role::FusionAudio => "fusion_audio",
            Role::FusionVisual => "fusion_visual",
        }
    }

    pub fn is_audio(self) -> bool {
        matches!(self, Role::AudMel | Role::AudGam | Role::AudCqt)
    }

    pub fn is_visual(self) -> bool {
        matches!(self, Role::VisInc | Role::VisConv)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    Int8,
}

/// Which embedding of the backbones a fusion head consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingKind {
    /// The FC(1024) activations.
    Fc1024,
    /// The FC(10) logits.
    Fc10,
}

impl EmbeddingKind {
    pub fn dim(self) -> usize {
        match self {
            EmbeddingKind::Fc1024 => 1024,
            EmbeddingKind::Fc10 => crate::NUM_CLASSES,
        }
    }
}

/// A dimension of a tensor: fixed, or the symbolic batch `"N"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbol(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// `[N, dims...]`.
    pub fn batched(name: &str, dims: &[usize]) -> TensorSpec {
        let mut shape = vec![Dim::Symbol("N".into())];
        shape.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        TensorSpec { name: name.into(), shape }
    }
}

/// One ONNX file of the bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub role: Role,
    pub precision: Precision,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Fusion heads: the backbone embedding they read; backbones: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingKind>,
    /// Visual backbones: the pixel normalisation of their input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalisation: Option<Normalisation>,
    /// Fusion heads: the fusion layer (f1..f6) and the backbone roles of its inputs, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Role>,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub feature_preset: FeaturePreset,
    pub frame_preset: FramePreset,
    pub labels: Vec<String>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// The file for `role` at `precision`, if the bundle has it.
    pub fn file(&self, role: Role, precision: Precision) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == role && f.precision == precision)
    }

    /// Parse a manifest's JSON text and check its schema version and labels against this
    /// build (the files it lists are not looked at: [`Bundle::open`] verifies those).
    /// `name` (the manifest's path) begins the error messages.
    pub fn parse(text: &str, name: &str) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_str(text).with_context(|| format!("{name}: not a valid manifest"))?;
        if manifest.schema_version != SCHEMA_VERSION {
            bail!("{name}: schema_version {} (this build reads {SCHEMA_VERSION})", manifest.schema_version);
        }
        if manifest.labels.iter().map(String::as_str).ne(crate::LABELS.iter().copied()) {
            bail!("{name}: labels {:?} differ from this build's {:?}", manifest.labels, crate::LABELS);
        }
        for f in &manifest.files {
            // JSON numbers beyond f32's range read as infinite means and deviations.
            if let Some(Normalisation::MeanStd { mean, std }) = &f.normalisation {
                if !mean.iter().chain(std).all(|v| v.is_finite()) || std.contains(&0.0) {
                    bail!("{name}: {}: normalisation mean {mean:?} std {std:?} (must be finite, std non-zero)", f.path);
                }
            }
        }
        Ok(manifest)
    }

    /// Write `manifest.json` into `dir` (atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::write_atomic(&dir.join(MANIFEST), serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// A bundle folder whose manifest was read and whose files were all verified.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Read `dir/manifest.json` ([`Manifest::parse`]: schema version, labels) and check the
    /// sha256 of every listed file. Errors name the file and what is wrong.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let manifest = Manifest::parse(&text, &path.display().to_string())?;
        for f in &manifest.files {
            let file = dir.join(&f.path);
            let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let got = sha256_hex(&bytes);
            if got != f.sha256 {
                bail!("{}: sha256 {got} does not match the manifest's {}", file.display(), f.sha256);
            }
        }
        Ok(Bundle { dir: dir.to_path_buf(), manifest })
    }

    pub fn path(&self, f: &FileEntry) -> PathBuf {
        self.dir.join(&f.path)
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            feature_preset: FeaturePreset::paper(),
            frame_preset: FramePreset::default(),
            labels: crate::LABELS.iter().map(|s| s.to_string()).collect(),
            files,
        }
    }

    fn entry(path: &str, bytes: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            role: Role::AudMel,
            precision: Precision::F32,
            inputs: vec![TensorSpec::batched("spectrogram", &[6, 128, 305])],
            outputs: vec![TensorSpec::batched("fc1024", &[1024]), TensorSpec::batched("logits", &[10])],
            embedding: None,
            normalisation: None,
            fusion: None,
            sources: vec![],
            sha256: sha256_hex(bytes),
        }
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    /// Found by avsc-fuzz (manifest): a number beyond f32's range reads as an infinite
    /// normalisation constant; and a zero deviation divides by zero.
    #[test]
    fn an_infinite_or_zero_normalisation_is_refused() {
        let mut e = entry("vis_conv.onnx", b"x");
        e.role = Role::VisConv;
        e.normalisation = Some(Normalisation::imagenet());
        let text = serde_json::to_string(&manifest(vec![e])).unwrap();
        assert!(Manifest::parse(&text, "m.json").is_ok());
        for bad in ["0.1e309", "0"] {
            let err = format!("{:#}", Manifest::parse(&text.replace("0.225", bad), "m.json").unwrap_err());
            assert!(err.starts_with("m.json: vis_conv.onnx: normalisation") && err.contains("finite"), "{err}");
        }
    }

    /// Found by avsc-fuzz (manifest): a preset value written and read back came back one ULP
    /// off (serde_json's default float parsing is not correctly rounded; the workspace now
    /// enables `float_roundtrip`).
    #[test]
    fn preset_values_survive_a_write_and_read() {
        let text =
            serde_json::to_string(&manifest(vec![])).unwrap().replace("\"fps\":2.0", "\"fps\":2.18446744073709551616");
        let m = Manifest::parse(&text, "m.json").unwrap();
        assert_ne!(m.frame_preset.fps, 2.0);
        let again = Manifest::parse(&serde_json::to_string_pretty(&m).unwrap(), "m.json").unwrap();
        assert_eq!(again.frame_preset.fps.to_bits(), m.frame_preset.fps.to_bits());
    }

    #[test]
    fn round_trip_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aud_mel.onnx"), b"model bytes").unwrap();
        let m = manifest(vec![entry("aud_mel.onnx", b"model bytes")]);
        m.write(dir.path()).unwrap();
        let b = Bundle::open(dir.path()).unwrap();
        assert_eq!(b.manifest, m);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(json["files"][0]["inputs"][0]["shape"], serde_json::json!(["N", 6, 128, 305]));
        assert_eq!(json["files"][0]["role"], "aud_mel");

        // A changed file is refused, naming it.
        std::fs::write(dir.path().join("aud_mel.onnx"), b"model bytez").unwrap();
        let e = format!("{:#}", Bundle::open(dir.path()).unwrap_err());
        assert!(e.contains("aud_mel.onnx") && e.contains("sha256"), "{e}");

        // Another schema version is refused.
        let mut m2 = m.clone();
        m2.schema_version = 99;
        m2.write(dir.path()).unwrap();
        let e = format!("{:#}", Bundle::open(dir.path()).unwrap_err());
        assert!(e.contains("schema_version 99"), "{e}");
    }
}
