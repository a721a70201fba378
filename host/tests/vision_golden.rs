//! The torchvision import against torchvision itself: weights rebuilt from
//! `golden/vision/manifest.json`, loaded through the same key-mapping tables as a real
//! checkpoint, must reproduce torchvision's pooled features and 1000-way logits on the golden
//! input within 1e-3 relative (max |diff| / max |golden|).

use avsc_host::nets::torchvision::{import_torchvision, weights_from_manifest, Backbone, TorchTensors};
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

/// A minimal PyTorch `torch.save` writer (f32 tensors only), in the zip layout torch ≥ 1.6
/// writes: `archive/data.pkl` (a pickle, protocol 2, of a dict key → tensor rebuilt by
/// `torch._utils._rebuild_tensor_v2` from persistent storage ids), `archive/data/N` (the raw
/// little-endian storages), `archive/version` and `archive/byteorder`; stored, not deflated.
fn write_pth(path: &Path, tensors: &TorchTensors) {
    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }
    fn int(p: &mut Vec<u8>, v: usize) {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    }
    let mut pkl = vec![0x80, 2, b'}', b'('];
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (key, tensor)) in tensors.iter().enumerate() {
        let values = bridge::to_data(tensor).unwrap().try_to_vec::<f32>().unwrap();
        let shape: Vec<usize> = tensor.shape.to_vec();
        let mut stride = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        unicode(&mut pkl, key);
        pkl.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        // Persistent id: ('storage', torch.FloatStorage, key, location, numel).
        pkl.push(b'(');
        unicode(&mut pkl, "storage");
        pkl.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut pkl, &i.to_string());
        unicode(&mut pkl, "cpu");
        int(&mut pkl, values.len());
        pkl.extend(b"tQ");
        int(&mut pkl, 0); // storage offset
        for dims in [&shape, &stride] {
            pkl.push(b'(');
            dims.iter().for_each(|&d| int(&mut pkl, d));
            pkl.push(b't');
        }
        pkl.push(0x89); // requires_grad = False
        pkl.extend(b"ccollections\nOrderedDict\n)R"); // backward hooks
        pkl.extend(b"tR");
        entries.push((format!("archive/data/{i}"), values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    pkl.extend(b"u.");
    entries.insert(0, ("archive/data.pkl".into(), pkl));
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    entries.push(("archive/byteorder".into(), b"little".to_vec()));
    std::fs::write(path, stored_zip(&entries)).unwrap();
}

/// A zip archive of uncompressed entries (local headers, data, central directory).
fn stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let crc_table: Vec<u32> =
        (0..256u32).map(|n| (0..8).fold(n, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })).collect();
    let crc32 = |data: &[u8]| !data.iter().fold(!0u32, |c, &b| crc_table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8));
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let (offset, crc, len) = (out.len() as u32, crc32(data), data.len() as u32);
        // version 20, flags 0, method 0 (stored), time, date, crc, sizes, name length, extra 0
        let common = |v: &mut Vec<u8>| {
            v.extend(20u16.to_le_bytes());
            v.extend(0u16.to_le_bytes());
            v.extend(0u16.to_le_bytes());
            v.extend(0u32.to_le_bytes());
            v.extend(crc.to_le_bytes());
            v.extend(len.to_le_bytes());
            v.extend(len.to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes());
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend([0u8; 6]); // comment length, disk, internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let (cd_offset, cd_len, n) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend(n.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// How the weights reach the network.
#[derive(Clone, Copy)]
enum Via {
    /// A `.safetensors` file through `import_torchvision`, as the CLI does.
    Safetensors,
    /// A `.pth` file (torch.save's zip format) through `import_torchvision`.
    Pth,
}

fn check(backbone: Backbone, via: Via) {
    let dir = golden_dir();
    let device = Device::flex();
    let tensors = weights_from_manifest(&dir.join("manifest.json"), backbone).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let imported = match via {
        Via::Safetensors => {
            let path = tmp.path().join("weights.safetensors");
            write_safetensors(&path, &tensors);
            import_torchvision(backbone, &path, &device).unwrap()
        }
        Via::Pth => {
            let path = tmp.path().join("weights.pth");
            write_pth(&path, &tensors);
            import_torchvision(backbone, &path, &device).unwrap()
        }
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
    check(Backbone::InceptionV3, Via::Safetensors);
}

#[test]
fn convnext_tiny_matches_torchvision() {
    check(Backbone::ConvNextTiny, Via::Pth);
}
