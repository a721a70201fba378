//! Synthetic scene audio: a group-specific noise colour, harmonic drone and modulation rate
//! (shared by the two classes of an audio group) plus a faint class cue whose frequency
//! distributions of the two classes overlap, so audio alone is right only part of the time.

use super::{audio_group, SynthConfig};
use crate::rng::SplitMix64;
use std::f64::consts::TAU;

/// Per audio group: noise low-pass cutoff (Hz), drone fundamental (Hz), AM rate (Hz).
const GROUPS: [(f64, f64, f64); 5] =
    [(300.0, 90.0, 0.5), (900.0, 150.0, 1.5), (2500.0, 240.0, 3.0), (6000.0, 380.0, 5.0), (14000.0, 600.0, 8.0)];
/// Mean cue frequency of the even and the odd class of a group, and its spread at
/// `audio_noise = 1`: the two distributions overlap by design.
const CUE_HZ: [f64; 2] = [2000.0, 2400.0];
const CUE_SPREAD_HZ: f64 = 260.0;

pub fn render(class: usize, cfg: &SynthConfig, rng: &mut SplitMix64, loc: &mut SplitMix64) -> Vec<Vec<f32>> {
    let sr = cfg.sample_rate as f64;
    let n = (cfg.seconds * sr).round() as usize;
    let (cutoff, f0, am) = GROUPS[audio_group(class)];
    // Location nuisance: level, tuning and stereo image of the place.
    let gain = loc.range(0.5, 1.0);
    let detune = loc.range(0.93, 1.07);
    let pan = loc.range(0.25, 0.75);
    // Clip nuisance.
    let noise_level = 0.05 * cfg.audio_noise * rng.range(0.6, 1.4);
    let f0 = f0 * detune * rng.range(0.98, 1.02);
    let am_phase = rng.range(0.0, TAU);
    let cue_hz = CUE_HZ[class % 2] + CUE_SPREAD_HZ * cfg.audio_noise * rng.normal();
    let cue_amp = 0.03;
    // A distractor tone from a random group, so drones are never alone.
    let distract_hz = GROUPS[rng.below(GROUPS.len())].1 * rng.range(1.5, 3.0);
    let click_rate = rng.range(0.2, 2.0); // clicks per second
    let a = (-TAU * cutoff / sr).exp(); // one-pole low-pass coefficient
    let mut out = vec![Vec::with_capacity(n), Vec::with_capacity(n)];
    let (mut lp_l, mut lp_r) = (0.0f64, 0.0f64);
    let mut click = 0.0f64;
    for i in 0..n {
        let t = i as f64 / sr;
        lp_l = a * lp_l + (1.0 - a) * rng.normal();
        lp_r = a * lp_r + (1.0 - a) * rng.normal();
        // Compensate the low-pass's loss of power so every group is equally loud.
        let colour = ((1.0 + a) / (1.0 - a)).sqrt() * 0.05;
        let env = 0.6 + 0.4 * (TAU * am * t + am_phase).sin();
        let drone: f64 = (1..=4).map(|h| (TAU * f0 * h as f64 * t).sin() / h as f64).sum::<f64>() * 0.08 * env;
        let cue = cue_amp * (TAU * cue_hz * t).sin();
        let distract = 0.02 * (TAU * distract_hz * t).sin();
        if rng.uniform() < click_rate / sr {
            click = 0.3 * rng.range(0.5, 1.0);
        }
        click *= 0.995;
        let common = drone + cue + distract + click * rng.normal();
        let l = gain * (common * (1.0 - pan) * 2.0 + colour * lp_l) + noise_level * rng.normal();
        let r = gain * (common * pan * 2.0 + colour * lp_r) + noise_level * rng.normal();
        out[0].push(l.clamp(-1.0, 1.0) as f32);
        out[1].push(r.clamp(-1.0, 1.0) as f32);
    }
    out
}
