//! Helpers shared by the end-to-end tests and benches of `avsc-e2e`: untrained networks
//! exported into a bundle, the `avsc-device` binary, and its JSON lines.

use avsc_host::export::{export_bundle, Backbone, ExportArgs};
use avsc_host::fusion::{FusionKind, FusionSpec, Modalities};
use avsc_host::nets::{save_module, SizePreset};
use avsc_shared::bundle::{Precision, Role};
use avsc_shared::{FeaturePreset, FramePreset};
use std::path::{Path, PathBuf};

/// The `avsc-device` binary beside this test or bench executable (built by
/// `cargo test --workspace`; for benches, `cargo build --release -p avsc-device`).
pub fn device_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/device_export-HASH -> target/<profile>/avsc-device
    let bin = exe.parent().and_then(Path::parent).unwrap().join(format!("avsc-device{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p avsc-device` (add --release for benches; cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Untrained tiny runs and heads in the layout `export_bundle` reads, then the bundle.
pub fn untrained_bundle(dir: &Path) -> PathBuf {
    untrained_bundle_sized(dir, SizePreset::Tiny)
}

pub fn untrained_bundle_sized(dir: &Path, size: SizePreset) -> PathBuf {
    untrained_bundle_with(dir, size, vec![Precision::F32], None)
}

/// `calibration`: a feature cache, for int8.
pub fn untrained_bundle_with(
    dir: &Path,
    size: SizePreset,
    precisions: Vec<Precision>,
    calibration: Option<PathBuf>,
) -> PathBuf {
    let device = Default::default();
    let runs = dir.join("runs");
    for role in Role::BACKBONES {
        let path = avsc_host::embed::model_path(&runs, role);
        match Backbone::init(role, size, &device).unwrap() {
            Backbone::Audio(n) => save_module(n, &path),
            Backbone::Inception(n) => save_module(n, &path),
            Backbone::ConvNext(n) => save_module(n, &path),
        }
        .unwrap();
    }
    let heads = dir.join("heads");
    for modalities in [Modalities::Av, Modalities::Audio, Modalities::Visual] {
        let spec = FusionSpec::new(FusionKind::F4, modalities).unwrap();
        let d = avsc_host::pipeline::head_dir(&heads, &spec);
        save_module(spec.init(&device), &d.join("best.bpk")).unwrap();
        let json = format!("{{\"kind\": \"{}\", \"modalities\": \"{}\"}}", spec.kind, modalities.name());
        std::fs::write(d.join(avsc_host::fusion::SPEC_FILE), json).unwrap();
    }
    let out = dir.join("bundle");
    export_bundle(&ExportArgs {
        runs,
        heads,
        fusion: FusionKind::F4,
        size,
        precisions,
        feature_preset: FeaturePreset::paper(),
        frame_preset: FramePreset::default(),
        calibration_clips: if calibration.is_some() { 8 } else { 0 },
        cache: calibration,
        calibration_split: None,
        weight_scales: Default::default(),
        out: out.clone(),
    })
    .unwrap();
    out
}

/// The stdout lines of a successful run (else a panic with its stderr).
pub fn lines(o: &std::process::Output) -> Vec<String> {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

/// `"key":value` of a flat JSON line (avsc-e2e has no JSON parser; the device's lines are
/// serde_json output without spaces).
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let k = format!("\"{key}\":");
    let at = line.find(&k).unwrap_or_else(|| panic!("no {key} in {line}")) + k.len();
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}
