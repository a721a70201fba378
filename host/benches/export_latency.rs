//! tract's batch-1, one-thread latency of each backbone exported in f32 and in int8 (per-
//! channel and per-tensor weight scales), random weights and inputs:
//!
//!     cargo bench -p avsc-host --bench export_latency               # tiny widths
//!     AVSC_SIZE=paper cargo bench -p avsc-host --bench export_latency
//!
//! `AVSC_LATENCY_DUMP=DIR` keeps the files (e.g. for `tract FILE dump --profile`).

#[path = "../tests/common/int8.rs"]
mod int8;

use avsc_host::export::quant::WeightScales;
use avsc_host::export::verify::{Array, Plan};
use avsc_host::export::Backbone;
use avsc_host::nets::SizePreset;
use avsc_host::rng::SplitMix64;
use avsc_shared::bundle::Role;
use burn::prelude::*;
use int8::{export_both, random};

fn main() {
    let size: SizePreset = std::env::var("AVSC_SIZE").unwrap_or_else(|_| "tiny".into()).parse().unwrap();
    let mut rng = SplitMix64::new(3);
    for (role, shape) in
        [(Role::AudMel, [1, 6, 128, 305]), (Role::VisInc, [1, 3, 224, 224]), (Role::VisConv, [1, 3, 224, 224])]
    {
        let net = Backbone::init(role, size, &Device::flex()).unwrap();
        let calib: Vec<Array> = (0..2).map(|_| random(&shape, &mut rng)).collect();
        let (f, qt) = export_both(&net, shape, &calib, WeightScales::PerTensor);
        let (_, q) = export_both(&net, shape, &calib, WeightScales::PerChannel);
        // AVSC_LATENCY_DUMP=DIR keeps the three files (e.g. for `tract FILE dump --profile`).
        if let Some(dir) = std::env::var_os("AVSC_LATENCY_DUMP").map(std::path::PathBuf::from) {
            std::fs::create_dir_all(&dir).unwrap();
            for (form, bytes) in [("f32", &f), ("per-channel", &q), ("per-tensor", &qt)] {
                std::fs::write(dir.join(format!("{}.{form}.onnx", role.name())), bytes).unwrap();
            }
        }
        let x = random(&shape, &mut rng);
        // Shapes fixed before optimisation, as the device builds its plans.
        let time = |bytes: &[u8]| {
            let p = Plan::fixed(bytes, &[&shape]).unwrap();
            p.run(std::slice::from_ref(&x)).unwrap();
            let t0 = std::time::Instant::now();
            let n = 5;
            for _ in 0..n {
                p.run(std::slice::from_ref(&x)).unwrap();
            }
            t0.elapsed().as_secs_f64() * 1000.0 / n as f64
        };
        if role == Role::AudMel {
            // A/B: the sibling pointwise convs of each block as one Conv (the export) or one each.
            let input = net.input_spec(shape[2], shape[3]);
            let sep = net.graph_with(&input, None, false).unwrap().to_bytes();
            let cal = avsc_host::export::quant::calibrate(&sep, &calib).unwrap().with_weights(WeightScales::PerChannel);
            let sep_q = net.graph_with(&input, Some(cal), false).unwrap().to_bytes();
            for round in 0..2 {
                println!(
                    "{} ({size}) round {round}: pointwise merged f32 {:.1} ms, int8 per-channel {:.1} ms; \
                     separate f32 {:.1} ms, int8 per-channel {:.1} ms",
                    role.name(),
                    time(&f),
                    time(&q),
                    time(&sep),
                    time(&sep_q)
                );
            }
        }
        println!(
            "{} ({size}): f32 {:.1} ms ({} B), int8 per-channel {:.1} ms ({} B), int8 per-tensor {:.1} ms ({} B), \
             batch 1, one thread",
            role.name(),
            time(&f),
            f.len(),
            time(&q),
            q.len(),
            time(&qt),
            qt.len()
        );
    }
}
