//! CQT against the librosa 0.11 goldens (SPEC §7): the exact scipy-polyphase variant at
//! tight tolerances, the soxr_hq goldens with the product decimator statistically, and the
//! 6-channel stacks end to end through the `FeatureExtractor`.

mod common;

use avsc_shared::dsp::cqt::Cqt;
use avsc_shared::dsp::db::power_to_db;
use avsc_shared::dsp::resample::DecimatorKind;
use avsc_shared::dsp::FeatureExtractor;
use avsc_shared::{Array3, FeatureKind, FeaturePreset};
use common::{load3, load_input, max_abs_diff, max_rel_diff, quantile_abs_diff};

fn preset(set: &str) -> FeaturePreset {
    match set {
        "PA" => FeaturePreset::hop14(),
        "PB" => FeaturePreset::paper(),
        _ => unreachable!(),
    }
}

/// |C| per channel, cropped by the preset like the extractor does: (channels, bins, T).
fn cqt_lin(set: &str, input: &str, kind: DecimatorKind) -> Array3 {
    let p = preset(set);
    let mut cqt = Cqt::with_decimator(p.sample_rate, p.stft.hop_length, p.n_bins, p.fmin, &p.cqt, kind);
    let x = load_input(input);
    let mut planes = Vec::new();
    let mut buf = Vec::new();
    let mut frames = 0;
    for ch in &x {
        let t = cqt.magnitude(ch, &mut buf);
        assert_eq!(t, cqt.n_frames(ch.len()));
        let crop = p.cqt.crop_frames;
        frames = t - 2 * crop;
        for row in buf.chunks_exact(t) {
            planes.extend_from_slice(&row[crop..crop + frames]);
        }
    }
    Array3::from_vec([x.len(), p.n_bins, frames], planes)
}

/// librosa amplitude_to_db per channel (== power_to_db of |C|^2, SPEC §6).
fn to_db(lin: &Array3, set: &str) -> Array3 {
    let mut a = lin.clone();
    a.data.iter_mut().for_each(|v| *v *= *v);
    for c in 0..a.shape[0] {
        power_to_db(a.channel_mut(c), &preset(set).db);
    }
    a
}

struct Stats {
    median: f32,
    p99: f32,
    max: f32,
}

fn stats(name: &str, got: &Array3, want: &Array3) -> Stats {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let s = Stats {
        median: quantile_abs_diff(got, want, 0.5),
        p99: quantile_abs_diff(got, want, 0.99),
        max: max_abs_diff(got, want),
    };
    eprintln!("{name:40} shape {:?}: median {:.2e}  p99 {:.2e}  max {:.3e}", got.shape, s.median, s.p99, s.max);
    s
}

#[test]
fn polyphase_variant_matches_the_scipy_golden() {
    let lin = cqt_lin("PA", "tone_noise_1s", DecimatorKind::ScipyPolyphase);
    let want = load3("PA_tone_noise_1s_cqt_polyphase_lin");
    let rel = max_rel_diff(&lin, &want);
    eprintln!("PA_tone_noise_1s_cqt_polyphase_lin: max |diff| / max = {rel:.2e}");
    assert!(rel <= 1e-4, "linear: {rel}");
    let s = stats("PA_tone_noise_1s_cqt_polyphase_db", &to_db(&lin, "PA"), &load3("PA_tone_noise_1s_cqt_polyphase_db"));
    assert!(s.max <= 0.05, "dB max {}", s.max);
}

/// The soxr_hq goldens with the product (soxr-like) decimator.
fn check_soxr(set: &str, input: &str, frames: usize, has_lin: bool) {
    let lin = cqt_lin(set, input, DecimatorKind::SoxrHq);
    assert_eq!(lin.shape, [2, 128, frames]);
    if has_lin {
        let name = format!("{set}_{input}_cqt_lin");
        let rel = max_rel_diff(&lin, &load3(&name));
        eprintln!("{name:40} max |diff| / max = {rel:.2e}");
        assert!(rel <= 1e-3, "{name}: {rel}");
    }
    let name = format!("{set}_{input}_cqt_db");
    let s = stats(&name, &to_db(&lin, set), &load3(&name));
    assert!(s.median <= 0.05 && s.p99 <= 1.0, "{name}: median {} p99 {}", s.median, s.p99);
}

#[test]
fn pa_tone_noise_matches_soxr_golden() {
    check_soxr("PA", "tone_noise_1s", 72, true);
}

#[test]
fn pa_impulse_matches_soxr_golden() {
    check_soxr("PA", "impulse_1s", 72, true);
}

#[test]
fn pa_scene_matches_soxr_golden() {
    check_soxr("PA", "scene_10s", 715, false);
}

#[test]
fn pb_tone_noise_matches_soxr_golden() {
    check_soxr("PB", "tone_noise_1s", 28, true);
}

#[test]
fn pb_scene_matches_soxr_golden() {
    check_soxr("PB", "scene_10s", 309, false);
}

fn stack(set: &str, input: &str) -> Array3 {
    let x = load_input(input);
    let refs: Vec<&[f32]> = x.iter().map(Vec::as_slice).collect();
    FeatureExtractor::new(&preset(set)).stack(FeatureKind::Cqt, &refs)
}

fn check_stack(name: &str, got: &Array3) {
    let s = stats(name, got, &load3(name));
    assert!(s.median <= 0.05 && s.p99 <= 1.0, "{name}: median {} p99 {}", s.median, s.p99);
}

#[test]
fn pb_tone_noise_stack_valid5() {
    let st = stack("PB", "tone_noise_1s");
    assert_eq!(st.shape, [6, 128, 24]);
    check_stack("PB_tone_noise_1s_cqt_stack6_valid5", &st);
}

#[test]
fn pa_tone_noise_stack_default() {
    let st = stack("PA", "tone_noise_1s");
    assert_eq!(st.shape, [6, 128, 72]);
    check_stack("PA_tone_noise_1s_cqt_stack6_default", &st);
}

#[test]
fn pb_scene_stack_deltas_valid5() {
    let st = stack("PB", "scene_10s");
    assert_eq!(st.shape, [6, 128, 305]);
    let [_, f, t] = st.shape;
    let deltas = Array3::from_vec([4, f, t], st.data[2 * f * t..].to_vec());
    check_stack("PB_scene_10s_cqt_deltas4_valid5", &deltas);
    // The statics are the cropped dB spectrogram.
    let statics = Array3::from_vec([2, f, t], st.data[..2 * f * t].to_vec());
    let want = load3("PB_scene_10s_cqt_db").crop_time(2, 307);
    let s = stats("PB_scene_10s_cqt_db[2:-2] (stack statics)", &statics, &want);
    assert!(s.median <= 0.05 && s.p99 <= 1.0);
}
