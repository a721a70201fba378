//! Shared by `tests/export_int8.rs` and `benches/export_latency.rs`: random inputs and a
//! backbone exported in both precisions.

use avsc_host::export::quant::{calibrate, WeightScales};
use avsc_host::export::verify::Array;
use avsc_host::export::Backbone;
use avsc_host::rng::SplitMix64;

pub fn random(shape: &[usize], rng: &mut SplitMix64) -> Array {
    Array::new(shape, (0..shape.iter().product()).map(|_| rng.normal() as f32).collect())
}

/// (f32 bytes, int8 bytes).
pub fn export_both(net: &Backbone, shape: [usize; 4], calib: &[Array], scales: WeightScales) -> (Vec<u8>, Vec<u8>) {
    let input = net.input_spec(shape[2], shape[3]);
    let f32_bytes = net.graph(&input, None).unwrap().to_bytes();
    let cal = calibrate(&f32_bytes, calib).unwrap().with_weights(scales);
    let int8_bytes = net.graph(&input, Some(cal)).unwrap().to_bytes();
    (f32_bytes, int8_bytes)
}
