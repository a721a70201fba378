//! The engine in-process: frames embedded in a batch (their networks spread over the cores,
//! costliest first) give exactly what they give one at a time, each in its own slot.

mod common;

use avsc_device::infer::Engine;
use avsc_shared::bundle::Precision;
use avsc_shared::image::RgbImage;
use common::*;

fn image(width: usize, height: usize, seed: usize) -> RgbImage {
    let data = (0..width * height * 3).map(|i| ((i * (seed * 2 + 1) + seed * 37) % 251) as u8).collect();
    RgbImage { width, height, data }
}

#[test]
fn frames_embedded_in_a_batch_equal_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write_bundle(&dir.path().join("b"), BundleSpec::default());
    let mut engine = Engine::load(&bundle, Precision::F32).unwrap();
    let w = engine.visual_width();
    let images = [image(224, 224, 1), image(320, 240, 2), image(224, 224, 3), image(64, 48, 4), image(224, 224, 5)];
    let alone: Vec<Vec<f32>> = images
        .iter()
        .map(|im| {
            let mut o = vec![f32::NAN; w];
            engine.embed_frame(im, &mut o).unwrap();
            o
        })
        .collect();
    // Different frames embed differently, or the comparison below would prove nothing.
    for (i, a) in alone.iter().enumerate() {
        assert!(a.iter().all(|v| v.is_finite()));
        assert!(alone[i + 1..].iter().all(|b| b != a), "frame {i} embeds like a later one");
    }
    for n in 1..=images.len() {
        let refs: Vec<&RgbImage> = images[..n].iter().collect();
        let mut out = vec![f32::NAN; n * w];
        let mut ms = vec![-1.0; n];
        let results = engine.embed_frames(&refs, &mut out, &mut ms);
        assert_eq!(results.len(), n);
        for (i, r) in results.iter().enumerate() {
            assert!(r.is_ok(), "batch of {n}, frame {i}: {r:?}");
            assert_eq!(&out[i * w..(i + 1) * w], &alone[i][..], "batch of {n}, frame {i}");
            assert!(ms[i] >= 0.0, "batch of {n}, frame {i}: no thread time");
        }
    }
}
