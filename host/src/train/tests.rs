use super::math::{beta, kl_loss, mixup};
use super::parity::{self, no_dropout, synthetic_cache_sized};
use super::*;
use std::sync::Mutex;

/// The training tests share burn's process-wide generator and the two CI cores.
static SERIAL: Mutex<()> = Mutex::new(());

const BINS: usize = 16;
const FRAMES_T: usize = 24;

fn synthetic_cache(dir: &Path, classes: usize, locations: usize, per_loc: usize, frames: usize) {
    synthetic_cache_sized(dir, classes, locations, per_loc, frames, BINS, FRAMES_T).unwrap();
}

fn tiny_cfg(epochs: usize) -> TrainConfig {
    parity::tiny_config(epochs)
}

#[test]
fn kl_loss_matches_hand_computation() {
    let device = Device::flex();
    let l3 = 3.0f32.ln();
    // softmax([0, ln 3]) = [1/4, 3/4].
    let mut logits = vec![0.0f32; 2 * 10];
    logits[1] = l3;
    logits[11] = l3;
    for (i, v) in logits.iter_mut().enumerate() {
        if i % 10 >= 2 {
            *v = -1e4; // other classes: probability 0
        }
    }
    let logits = Tensor::<2>::from_data(burn::tensor::TensorData::new(logits, [2, 10]), &device);
    let mut y = vec![0.0f32; 20];
    y[0] = 0.5;
    y[1] = 0.5;
    y[11] = 1.0;
    // 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); ln(1/0.75) = ln(4/3).
    let want = 0.5 * (0.5 * (4.0f64 / 3.0).ln() + (4.0f64 / 3.0).ln());
    let got: f32 = kl_loss(logits, &y).into_scalar();
    assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn mixup_mixes_inputs_and_labels() {
    let mut x = vec![1.0, 2.0, 10.0, 20.0];
    let mut y = vec![1.0, 0.0, 0.0, 1.0];
    mixup(&mut x, &mut y, 2, 0.75, &[1, 0]);
    assert_eq!(x, vec![3.25, 6.5, 7.75, 15.5]);
    assert_eq!(y, vec![0.75, 0.25, 0.25, 0.75]);
}

#[test]
fn beta_sampler_mean_and_variance() {
    let mut rng = SplitMix64::new(3);
    for (a, b) in [(0.4, 0.4), (2.0, 5.0)] {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| beta(&mut rng, a, b)).collect();
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let (m, v) = (a / (a + b), a * b / ((a + b).powi(2) * (a + b + 1.0)));
        assert!((mean - m).abs() < 0.01 && (var - v).abs() < 0.01, "Beta({a},{b}): mean {mean} var {var}");
    }
}

#[test]
fn tiny_audio_net_learns_the_easy_data() {
    const EPOCHS: usize = 12;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    synthetic_cache(&dir.path().join("cache"), 4, 3, 3, 0);
    let out = dir.path().join("out");
    let t0 = std::time::Instant::now();
    let s =
        train_audio_with(&dir.path().join("cache"), FeatureKind::Mel, &no_dropout(), &tiny_cfg(EPOCHS), &out).unwrap();
    eprintln!("tiny audio: {:.2} s/epoch on 36 clips", t0.elapsed().as_secs_f64() / EPOCHS as f64);
    let h = &s.history;
    assert_eq!(h.len(), EPOCHS);
    assert!(h[EPOCHS - 1].train_loss < h[0].train_loss, "loss did not decrease: {h:?}");
    assert!(s.best_val_accuracy >= 0.5, "chance is 0.25: {h:?}");
    assert!(h.iter().all(|m| m.l2_penalty > 0.0));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), EPOCHS + 1);
    assert!(s.checkpoint.exists() && s.best_model.exists());
}

/// Fixed input normalisation: the statistics are the training clips' per channel and bin,
/// stored in the checkpoint, left alone by Adam and the L2 term, and not counted as
/// trainable parameters.
#[test]
fn fixed_input_normalisation_is_computed_on_the_training_clips_and_never_trained() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    synthetic_cache(&cache, 3, 2, 2, 0);
    let net = ResInceptionConfig { input_bins: BINS, ..no_dropout().with_input_norm(InputNorm::Fixed) };
    let cfg = TrainConfig { val_fraction: 0.5, ..tiny_cfg(2) };
    let s = train_audio_with(&cache, FeatureKind::Mel, &net, &cfg, &dir.path().join("out")).unwrap();
    assert!(s.history.iter().all(|m| m.train_loss.is_finite()));

    let c = Cache::open(&cache).unwrap();
    let (train, val) = data::split_items(&c, &cfg.split, cfg.val_fraction, cfg.seed).unwrap();
    let d = data::AudioData::load(&c, FeatureKind::Mel, &train, &val).unwrap();
    let (mean, std) = d.channel_bin_stats();
    // By hand for one row: channel 1 (S_R), bin 3, over every training clip and frame.
    let [_, f, t] = d.input_shape();
    let row: Vec<f64> = (0..train.len())
        .flat_map(|i| d.train_input((i, 0)).unwrap()[(f + 3) * t..(f + 4) * t].to_vec())
        .map(|v| v as f64)
        .collect();
    let m = row.iter().sum::<f64>() / row.len() as f64;
    let sd = (row.iter().map(|v| (v - m).powi(2)).sum::<f64>() / row.len() as f64).sqrt();
    assert!((mean[f + 3] as f64 - m).abs() < 1e-3 && (std[f + 3] as f64 - sd).abs() < 1e-3);
    assert!(std.iter().any(|&s| s > 0.1), "the data has spread");

    for model in [&s.best_model, &s.checkpoint] {
        let loaded = load_module(net.init(&Device::flex()), model).unwrap();
        let n = loaded.fixed_norm.as_ref().unwrap();
        let got_mean: Vec<f32> = n.input_mean.val().into_data().try_to_vec().unwrap();
        let got_inv: Vec<f32> = n.input_inv_std.val().into_data().try_to_vec().unwrap();
        assert_eq!(got_mean, mean, "{}", model.display());
        for (g, s) in got_inv.iter().zip(&std) {
            assert!((g - 1.0 / (s * s + 1e-5).sqrt()).abs() <= 1e-6 * g.abs().max(1.0));
        }
        let per_example = no_dropout().init(&Device::flex());
        assert_eq!(crate::nets::trainable_params(&loaded), crate::nets::trainable_params(&per_example));
    }
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    synthetic_cache(&cache, 3, 2, 2, 0);
    let cfg = TrainConfig { val_fraction: 0.5, ..tiny_cfg(2) };
    let straight = train_audio_with(&cache, FeatureKind::Gam, &no_dropout(), &cfg, &dir.path().join("a")).unwrap();

    let b = dir.path().join("b");
    let first = TrainConfig { stop_after: Some(1), ..cfg.clone() };
    assert_eq!(train_audio_with(&cache, FeatureKind::Gam, &no_dropout(), &first, &b).unwrap().epochs, 1);
    let again = TrainConfig { resume: true, ..cfg.clone() };
    let resumed = train_audio_with(&cache, FeatureKind::Gam, &no_dropout(), &again, &b).unwrap();
    assert_eq!(resumed.epochs, 2);
    let (x, y) = (&straight.history[1], &resumed.history[1]);
    assert_eq!(
        (x.train_loss, x.l2_penalty, x.val_accuracy, x.val_log_loss),
        (y.train_loss, y.l2_penalty, y.val_accuracy, y.val_log_loss)
    );
    // A different configuration refuses to resume.
    let other = TrainConfig { lr: 1e-2, ..again };
    assert!(train_audio_with(&cache, FeatureKind::Gam, &no_dropout(), &other, &b).is_err());

    // config.toml beside the checkpoints holds the run and every hyper-parameter.
    let file = engine::RunFile::read(&b.join("config.toml")).unwrap();
    assert_eq!(file.train, cfg);
    assert_eq!(file.run["task"].as_str(), Some("audio"));
    assert_eq!(file.run["kind"].as_str(), Some("gam"));
    assert!(file.run["net"].as_str().unwrap().contains("ResInceptionConfig"));
}

#[test]
fn run_file_round_trips_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { lr: 2.5e-3, mixup_alpha: 0.0, stop_after: Some(3), resume: true, ..tiny_cfg(7) };
    let file = engine::RunFile { run: toml::Table::new(), train: cfg.clone() };
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml::to_string_pretty(&file).unwrap()).unwrap();
    assert_eq!(engine::RunFile::read(&path).unwrap().train, cfg);
    std::fs::write(&path, "[train]\nepochs = \"many\"\n").unwrap();
    let err = format!("{:#}", engine::RunFile::read(&path).err().unwrap());
    assert!(err.contains("config.toml") && err.contains("invalid run configuration"), "{err}");
}

#[test]
fn redraw_is_deterministic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(
            (0..6 * 16 * 20).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<f32>>(),
            [1, 6, 16, 20],
        ),
        &device,
    );
    let out = |seed| {
        let m = math::redraw(no_dropout().init(&device), seed);
        let v: Vec<f32> = m.valid().forward(x.clone()).logits.into_data().try_to_vec().unwrap();
        (math::squared_norm(&m), v)
    };
    let (a, b) = (out(1), out(1));
    eprintln!("{:?}\n{:?}", a, b);
    assert_eq!(a, b);
}

#[test]
fn tiny_visual_net_trains_on_frames() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    synthetic_cache(&cache, 2, 2, 1, 2);
    let cfg =
        TrainConfig { epochs: 1, batch_size: 2, frames_per_clip: 1, eval_frames: 2, val_fraction: 0.5, ..tiny_cfg(1) };
    let t0 = std::time::Instant::now();
    let s =
        train_visual(&cache, VisualBackbone::InceptionV3, SizePreset::Tiny, None, &cfg, &dir.path().join("v")).unwrap();
    eprintln!("tiny visual: {:.2} s", t0.elapsed().as_secs_f64());
    assert_eq!(s.epochs, 1);
    let m = &s.history[0];
    assert!(m.train_loss.is_finite() && m.val_log_loss.is_finite() && (0.0..=1.0).contains(&m.val_accuracy));
}

/// Every GPU backend compiled in trains the same network to the same losses as the CPU
/// ([`parity::check`]). Needs a build with `wgpu` and/or `cuda` and their driver (for wgpu,
/// Mesa's lavapipe will do):
/// `cargo test -p avsc-host --features wgpu,cuda --lib gpu_training -- --ignored`.
/// `AVSC_PARITY_DEVICES=cuda` limits it to the named devices; `avsc-host bench --what parity`
/// runs the same check from the release binary.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
#[test]
#[ignore]
fn gpu_training_matches_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = std::env::var("AVSC_PARITY_DEVICES").unwrap_or_else(|_| "wgpu,cuda".into());
    let devices: Vec<ComputeDevice> =
        wanted.split(',').map(|d| d.parse().unwrap()).filter(|d: &ComputeDevice| d.compiled()).collect();
    assert!(!devices.is_empty(), "no GPU device of {wanted:?} is compiled in");
    let report = parity::check(&devices).unwrap();
    eprintln!("{}", report.text());
    assert!(report.passed(), "{}", report.text());
}

#[test]
fn visual_epochs_take_every_frame_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    synthetic_cache(&root, 2, 2, 1, 3);
    let cache = Cache::open(&root).unwrap();
    let (train, val) = data::split_items(&cache, "train", 0.0, 1).unwrap();
    assert_eq!((train.len(), val.len()), (4, 0));
    let visual = |frames_per_clip| {
        data::VisualData::new(&cache, avsc_shared::Normalisation::MinusOneOne, &train, &val, frames_per_clip, 0)
            .unwrap()
    };
    use data::Data;
    let mut all = visual(TrainConfig::default().frames_per_clip).epoch_samples(&mut SplitMix64::new(3));
    all.sort();
    let every: Vec<data::Sample> = (0..4).flat_map(|i| (0..3).map(move |k| (i, k))).collect();
    assert_eq!(all, every);
    let two = visual(2).epoch_samples(&mut SplitMix64::new(3));
    assert_eq!(two.len(), 8);
    assert!(two.iter().all(|s| every.contains(s)));
}

#[test]
fn the_loader_bench_assembles_batches_from_a_cache() {
    use crate::bench::{run, BenchArgs, BenchNet, BenchWhat};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    synthetic_cache(&root, 2, 2, 2, 3);
    for net in [BenchNet::Audio, BenchNet::ConvnextTiny] {
        let args = BenchArgs {
            what: BenchWhat::Loader,
            net,
            size: "tiny".into(),
            device: "cpu".into(),
            batch: 3,
            warmup: 2,
            runs: 3,
            cache: Some(root.clone()),
            split: "train".into(),
        };
        let r = run(&args).unwrap();
        assert!(r.per_second > 0.0 && r.min_ms <= r.median_ms && r.median_ms <= r.max_ms, "{r:?}");
    }
    let no_cache = BenchArgs {
        what: BenchWhat::Loader,
        net: BenchNet::Audio,
        size: "tiny".into(),
        device: "cpu".into(),
        batch: 3,
        warmup: 2,
        runs: 3,
        cache: None,
        split: "train".into(),
    };
    assert!(run(&no_cache).unwrap_err().to_string().contains("--cache"));
}
