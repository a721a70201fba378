//! Helpers for tests that read the reference material in ../shared (beside the clone).
#![allow(dead_code)]

use avsc_shared::npy;
use avsc_shared::Array3;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's reference folder: `$AVSC_SHARED_DIR`, else `../shared` beside the clone.
pub fn shared_dir() -> PathBuf {
    let dir = avsc_shared::reference_dir();
    assert!(dir.join("golden").is_dir(), "reference folder {} not found (set AVSC_SHARED_DIR)", dir.display());
    dir
}

pub fn golden(name: &str) -> PathBuf {
    shared_dir().join("golden").join(name)
}

/// A golden `.npy` from ../shared/golden as an `Array3` (2-D arrays get a leading 1).
pub fn load3(name: &str) -> Array3 {
    let a = npy::read(&golden(&format!("{name}.npy"))).unwrap();
    let shape = match a.shape.as_slice() {
        [c, f, t] => [*c, *f, *t],
        [f, t] => [1, *f, *t],
        s => panic!("{name}: unexpected shape {s:?}"),
    };
    Array3::from_vec(shape, a.data)
}

/// A golden stereo input as two channel vectors.
pub fn load_input(name: &str) -> Vec<Vec<f32>> {
    let a = npy::read(&golden(&format!("input_{name}.npy"))).unwrap();
    let n = a.shape[1];
    a.data.chunks_exact(n).map(<[f32]>::to_vec).collect()
}

/// max |a - b| over all cells (shapes must match exactly).
pub fn max_abs_diff(a: &Array3, b: &Array3) -> f32 {
    assert_eq!(a.shape, b.shape, "shape mismatch");
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// max |a - b| / max |b|.
pub fn max_rel_diff(a: &Array3, b: &Array3) -> f32 {
    let m = b.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    max_abs_diff(a, b) / m.max(f32::MIN_POSITIVE)
}

/// The q-quantile (0..=1) of |a - b|.
pub fn quantile_abs_diff(a: &Array3, b: &Array3, q: f64) -> f32 {
    assert_eq!(a.shape, b.shape, "shape mismatch");
    let mut d: Vec<f32> = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).collect();
    d.sort_by(f32::total_cmp);
    d[((d.len() - 1) as f64 * q).round() as usize]
}

/// `ffmpeg -i src <args> out`, in `dir`: test fixtures only (Debian's ffmpeg, which `.ci/run`
/// installs; the product never calls it).
pub fn ffmpeg(dir: &Path, src: &Path, args: &[&str], out: &str) -> PathBuf {
    let path = dir.join(out);
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(src)
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg makes these fixtures: apt-get install ffmpeg (.ci/run does)");
    assert!(o.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    path
}
