//! The torchvision import against torchvision itself: weights rebuilt from
//! `golden/vision/manifest.json`, loaded through the same key-mapping tables as a real
//! checkpoint, must reproduce torchvision's pooled features and 1000-way logits on the golden
//! input within 1e-3 relative (max |diff| / max |golden|).

use avsc_host::nets::torchvision::{import_tensors, import_torchvision, weights_from_manifest, Backbone, TorchTensors};
use avsc_shared::npy;
use burn::prelude::*;
use burn::store::bridge;
use std::path::{Path, PathBuf};

/// `golden/vision` in the project's reference folder (`$AVSC_SHARED_DIR`, else `../shared`).
fn golden_dir() -> PathBuf {
    let dir = avsc_shared::reference_dir().join("golden/vision");
    assert!(dir.is_dir(), "{} not found (set AVSC_SHARED_DIR)", dir.display());
    dir
}

fn rel_diff(got: Tensor<2>, want: &npy::NpyArray) -> f32 {
    assert_eq!(got.dims().to_vec(), want.shape, "shape");
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    let max_diff = got.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let max_abs = want.data.iter().map(|v| v.abs()).fold(0f32, f32::max);
    max_diff / max_abs
}

/// A minimal safetensors writer (f32 only): u64 header length, JSON header, raw data.
fn write_safetensors(path: &Path, tensors: &TorchTensors) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (key, tensor) in tensors {
        let values = bridge::to_data(tensor).unwrap().try_to_vec::<f32>().unwrap();
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": "F32", "shape": tensor.shape.to_vec(),
                               "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).unwrap();
}

/// `via_file`: go through a `.safetensors` file and `import_torchvision`, as the CLI does.
fn check(backbone: Backbone, via_file: bool) {
    let dir = golden_dir();
    let device = Device::flex();
    let tensors = weights_from_manifest(&dir.join("manifest.json"), backbone).unwrap();
    let imported = if via_file {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("weights.safetensors");
        write_safetensors(&path, &tensors);
        import_torchvision(backbone, &path, &device).unwrap()
    } else {
        import_tensors(backbone, tensors, &device).unwrap()
    };
    assert!(imported.fresh.iter().all(|p| p.starts_with("head.")));

    let input = npy::read(&dir.join("input_1x3x224x224.npy")).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(input.data, [1, 3, 224, 224]), &device);
    let pooled = imported.net.forward_pooled(x);
    let logits = imported.imagenet_logits(pooled.clone());

    let name = backbone.torchvision_name();
    let want_pooled = npy::read(&dir.join(format!("{name}_pooled.npy"))).unwrap();
    let want_logits = npy::read(&dir.join(format!("{name}_logits.npy"))).unwrap();
    let (dp, dl) = (rel_diff(pooled, &want_pooled), rel_diff(logits, &want_logits));
    println!("{name}: {} tensors loaded; max rel diff pooled {dp:.2e}, logits {dl:.2e}", imported.loaded);
    assert!(dp < 1e-3, "{name} pooled: {dp}");
    assert!(dl < 1e-3, "{name} logits: {dl}");
}

#[test]
fn inception_v3_matches_torchvision() {
    check(Backbone::InceptionV3, true);
}

#[test]
fn convnext_tiny_matches_torchvision() {
    check(Backbone::ConvNextTiny, false);
}
