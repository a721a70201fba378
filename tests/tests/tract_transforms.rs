//! The device's tract transforms change no result. ConvNeXt-Tiny as the exporter writes it
//! (tiny widths; f32, and int8 calibrated), planned by the device with `conv_nhwc` (its
//! default for that network: convolutions channel-last, the depthwise ones as tract's
//! DepthWise) and without, gives the same FC embedding and logits on random frames.

use avsc_device::infer::{build_plan, run_f32, transforms_for};
use avsc_host::export::quant::{calibrate, WeightScales};
use avsc_host::export::verify::Array;
use avsc_host::export::Backbone;
use avsc_host::nets::SizePreset;
use avsc_host::rng::SplitMix64;
use avsc_shared::bundle::Role;

fn random(shape: &[usize], rng: &mut SplitMix64) -> Vec<f32> {
    (0..shape.iter().product()).map(|_| rng.normal() as f32).collect()
}

#[test]
fn conv_nhwc_keeps_convnexts_outputs() {
    if std::env::var_os("AVSC_TRACT_TRANSFORMS").is_none() {
        assert_eq!(transforms_for(Role::VisConv), ["conv_nhwc"]);
        assert!(transforms_for(Role::VisInc).is_empty() && transforms_for(Role::AudMel).is_empty());
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Backbone::init(Role::VisConv, SizePreset::Tiny, &Default::default()).unwrap();
    let shape = [1usize, 3, 224, 224];
    let input = net.input_spec(shape[2], shape[3]);
    let mut rng = SplitMix64::new(11);
    let f32_bytes = net.graph(&input, None).unwrap().to_bytes();
    let calib: Vec<Array> = (0..2).map(|_| Array::new(&shape, random(&shape, &mut rng))).collect();
    let cal = calibrate(&f32_bytes, &calib).unwrap().with_weights(WeightScales::PerChannel);
    let int8_bytes = net.graph(&input, Some(cal)).unwrap().to_bytes();
    for (name, bytes) in [("f32", f32_bytes), ("int8", int8_bytes)] {
        let path = dir.path().join(format!("vis_conv.{name}.onnx"));
        std::fs::write(&path, bytes).unwrap();
        let plain = build_plan(&path, &[shape.to_vec()], &[]).unwrap();
        let nhwc = build_plan(&path, &[shape.to_vec()], &["conv_nhwc".to_string()]).unwrap();
        // The transform did rewrite the network (else this test would prove nothing).
        let moved = |p: &avsc_device::infer::Plan| p.model().nodes().iter().filter(|n| n.name.contains("nhwc")).count();
        assert_eq!(moved(&plain), 0);
        assert!(moved(&nhwc) > 0, "{name}: conv_nhwc left no channel-last node");
        for _ in 0..3 {
            let x = random(&shape, &mut rng);
            let a = run_f32(&plain, vec![(shape.to_vec(), &x)]).unwrap();
            let b = run_f32(&nhwc, vec![(shape.to_vec(), &x)]).unwrap();
            assert_eq!(a.len(), 2, "fc1024 and logits");
            for (a, b) in a.iter().zip(&b) {
                let range = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(diff <= 1e-5 * range.max(1.0), "{name}: max |diff| {diff} against {range}");
            }
        }
    }
}
