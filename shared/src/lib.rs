//! avsc-shared: the contract between the avsc host (training, export) and the device
//! (live inference). Everything both sides must compute identically lives here:
//! the label order, the feature presets, the spectrogram DSP, frame preprocessing.

pub mod array;
pub mod bundle;
#[cfg(feature = "decode")]
pub mod decode;
pub mod dsp;
pub mod image;
pub mod labels;
pub mod npy;
pub mod preset;
pub mod rng;
pub mod tsv;
pub mod wav;

pub use array::Array3;
pub use labels::{Label, LABELS, NUM_CLASSES};
pub use preset::{FeatureKind, FeaturePreset, FramePreset, Normalisation};

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write a file atomically: a uniquely named temporary file in the same folder, fsync,
/// then rename over `path`. A killed process never leaves a half-written `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

/// The project's reference material (golden vectors, media fixtures), for tests and
/// benches: `$AVSC_SHARED_DIR` if set, else `shared/` beside the repository clone.
pub fn reference_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AVSC_SHARED_DIR") {
        return d.into();
    }
    // Every workspace crate sits one level below the root.
    in_checkout("../../shared")
}

/// avsc-shared's own test data (`shared/tests/data`), for its tests.
#[doc(hidden)]
pub fn test_data_dir() -> PathBuf {
    in_checkout("tests/data")
}

/// `rel` under this crate's folder at build time; when that checkout has moved (a target dir
/// shared between clones reuses the build), under the running crate's folder, which cargo
/// sets for `cargo test` / `cargo run`.
fn in_checkout(rel: &str) -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if built.exists() {
        return built;
    }
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(d) if Path::new(&d).join(rel).exists() => Path::new(&d).join(rel),
        _ => built,
    }
}
