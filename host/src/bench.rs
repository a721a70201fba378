//! `avsc-host bench`: how fast the Phase-I networks train and embed on a device, measured the
//! way `reference_torch_step.py` measures PyTorch, so the two print side by side.
//!
//! - `step`: one training step as `train-audio` / `train-visual` take it — forward, the KL
//!   loss against mixed (two-class) targets, backward, Adam with the coupled L2 term.
//! - `forward`: inference as `embed` runs it (eval mode, no gradients).
//!
//! Each timed iteration ends with a device sync, so a GPU's queued work is counted. The first
//! iterations compile kernels and, with autotune, try the candidate kernels of each new shape:
//! their time is reported apart (`first`, `warm-up`), the median is over the timed ones.

use crate::compute::ComputeDevice;
use crate::nets::convnext_tiny::ConvNextTinyConfig;
use crate::nets::inception_v3::InceptionV3Config;
use crate::nets::resinception::ResInceptionConfig;
use crate::nets::{SizePreset, NUM_CLASSES};
use crate::train::math::{adam_step, kl_loss, AdamParams, AdamState};
use crate::train::Net;
use anyhow::{bail, ensure, Context, Result};
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::Serialize;
use std::time::Instant;

/// A Phase-I architecture, at the input size the paper feeds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchNet {
    /// The residual-inception audio CNN on 6 x 128 x 305 spectrogram stacks.
    Audio,
    /// InceptionV3 on 3 x 224 x 224 frames.
    InceptionV3,
    /// ConvNeXt-Tiny on 3 x 224 x 224 frames.
    ConvnextTiny,
}

impl BenchNet {
    pub fn input_shape(self) -> [usize; 3] {
        match self {
            BenchNet::Audio => [6, 128, 305],
            _ => [3, 224, 224],
        }
    }
}

/// What one iteration does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BenchWhat {
    /// forward + KL loss + backward + Adam
    Step,
    /// eval-mode forward (as `embed`)
    Forward,
    /// the training loader alone on a feature cache (`--cache`): batches read, assembled and
    /// mixed as the training loop receives them, no network
    Loader,
    /// the CPU/GPU parity check (train::parity) on `--device`; exit status 1 if it fails
    Parity,
}

/// `avsc-host bench` options.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "step")]
    pub what: BenchWhat,
    #[arg(long, value_enum, default_value = "audio")]
    pub net: BenchNet,
    /// Network widths: paper or tiny.
    #[arg(long, default_value = "paper")]
    pub size: String,
    /// cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Untimed iterations first (kernel compilation, autotune).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// `--what loader`: the feature cache, and the split whose clips are loaded.
    #[arg(long)]
    pub cache: Option<std::path::PathBuf>,
    #[arg(long, default_value = "all")]
    pub split: String,
}

/// What `bench` measured; printed as one JSON line on stdout.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub what: BenchWhat,
    pub net: BenchNet,
    pub size: String,
    pub device: String,
    pub batch: usize,
    /// Trainable parameters.
    pub params: usize,
    /// The first iteration, seconds (compilation and autotune included).
    pub first_s: f64,
    /// All warm-up iterations together, seconds (`first_s` included).
    pub warmup_s: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Examples (clips or frames) per second at the median.
    pub per_second: f64,
}

impl BenchResult {
    pub fn line(&self) -> String {
        format!(
            "{:?} {:?} {} on {}, batch {}, {} parameters: median {:.1} ms (min {:.1}, max {:.1}), {:.0} examples/s; \
             first iteration {:.2} s, warm-up {:.2} s",
            self.what,
            self.net,
            self.size,
            self.device,
            self.batch,
            self.params,
            self.median_ms,
            self.min_ms,
            self.max_ms,
            self.per_second,
            self.first_s,
            self.warmup_s
        )
    }
}

/// The `bench` verb: one JSON line on stdout, a readable summary on stderr.
pub fn main(args: &BenchArgs) -> Result<()> {
    if args.what == BenchWhat::Parity {
        let device: ComputeDevice = args.device.parse()?;
        device.open()?;
        let report = crate::train::parity::check(&[device])?;
        eprintln!("{}", report.text());
        let row = report.rows.first().context("no parity row")?;
        let json = serde_json::json!({
            "what": "parity",
            "device": device.to_string(),
            "passed": report.passed(),
            "epochs": row.epochs,
            "seconds": row.seconds,
            "cpu_seconds": report.cpu_seconds,
        });
        println!("{json}");
        ensure!(report.passed(), "parity: {device} does not match the CPU");
        return Ok(());
    }
    let r = run(args)?;
    eprintln!("bench: {}", r.line());
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Run one timing benchmark (`step`, `forward` or `loader`).
pub fn run(args: &BenchArgs) -> Result<BenchResult> {
    if args.batch == 0 || args.runs == 0 {
        bail!("bench: --batch and --runs must be positive");
    }
    match args.what {
        BenchWhat::Loader => return loader(args),
        BenchWhat::Parity => bail!("bench: --what parity is not a timing (see bench::main)"),
        _ => {}
    }
    let size: SizePreset = args.size.parse()?;
    let compute: ComputeDevice = args.device.parse()?;
    let plain = compute.open()?;
    let device = if args.what == BenchWhat::Step { plain.clone().autodiff() } else { plain.clone() };
    match args.net {
        BenchNet::Audio => time(ResInceptionConfig::preset(size).init(&device), args, &device, &plain),
        BenchNet::InceptionV3 => time(InceptionV3Config::preset(size).init(&device), args, &device, &plain),
        BenchNet::ConvnextTiny => time(ConvNextTinyConfig::preset(size).init(&device), args, &device, &plain),
    }
}

fn time<M: Net>(model: M, args: &BenchArgs, device: &Device, plain: &Device) -> Result<BenchResult> {
    // Trainable parameters only (burn's num_params also counts BatchNorm running statistics),
    // the number PyTorch's reference prints.
    let params = crate::nets::trainable_params(&model);
    let [c, h, w] = args.net.input_shape();
    let x = Tensor::<4>::random([args.batch, c, h, w], Distribution::Normal(0.0, 1.0), device);
    // Soft targets, as mixup makes them: two classes per row.
    let mut y = vec![0.0f32; args.batch * NUM_CLASSES];
    for i in 0..args.batch {
        y[i * NUM_CLASSES + i % NUM_CLASSES] += 0.7;
        y[i * NUM_CLASSES + (i + 3) % NUM_CLASSES] += 0.3;
    }
    let adam_p = AdamParams { beta1: 0.9, beta2: 0.999, eps: 1e-7, l2: 1e-4 };
    let mut adam = AdamState::default();
    let step = args.what == BenchWhat::Step;
    let mut model = Some(if step { model.train() } else { model });
    let mut once = || -> Result<f64> {
        let t = Instant::now();
        let m = model.take().context("model")?;
        let m = if step {
            let loss = kl_loss(m.embed(x.clone()).logits, &y);
            let grads = loss.backward();
            adam_step(m, &grads, &mut adam, adam_p, 1e-4)
        } else {
            drop(m.embed(x.clone()));
            m
        };
        model = Some(m);
        plain.sync().map_err(|e| anyhow::anyhow!("device sync: {e:?}"))?;
        Ok(t.elapsed().as_secs_f64())
    };
    let t0 = Instant::now();
    let first_s = once()?;
    for _ in 1..args.warmup {
        once()?;
    }
    let warmup_s = t0.elapsed().as_secs_f64();
    let mut times: Vec<f64> = (0..args.runs).map(|_| once()).collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(BenchResult {
        what: args.what,
        net: args.net,
        size: args.size.clone(),
        device: args.device.clone(),
        batch: args.batch,
        params,
        first_s,
        warmup_s,
        median_ms: median * 1e3,
        min_ms: times[0] * 1e3,
        max_ms: times[times.len() - 1] * 1e3,
        per_second: args.batch as f64 / median,
    })
}

/// `--what loader`: loading the data (audio: every clip's statics into memory, as training
/// does) is reported as the first iteration; each of the `--runs` timed iterations then
/// assembles the next `--warmup` batches of the epoch (wrapping around), through the same
/// prefetching producer the training loop uses.
fn loader(args: &BenchArgs) -> Result<BenchResult> {
    use crate::train::data::{split_items, AudioData, Data, VisualData};
    use crate::train::loader::for_each_batch;
    let root = args.cache.as_deref().context("--what loader needs --cache")?;
    let cache = crate::cache::Cache::open(root)?;
    let (train, val) = split_items(&cache, &args.split, 0.0, 0)?;
    let t0 = Instant::now();
    let data: Box<dyn Data> = match args.net {
        BenchNet::Audio => Box::new(AudioData::load(&cache, avsc_shared::FeatureKind::Mel, &train, &val)?),
        visual => {
            let role = match visual {
                BenchNet::InceptionV3 => avsc_shared::bundle::Role::VisInc,
                _ => avsc_shared::bundle::Role::VisConv,
            };
            let norm = crate::embed::normalisation(role);
            Box::new(VisualData::new(&cache, norm, &train, &val, 0, 0)?)
        }
    };
    let first_s = t0.elapsed().as_secs_f64();
    let samples = data.epoch_samples(&mut crate::rng::SplitMix64::new(1));
    let per_run = args.batch * args.warmup.max(1);
    let mut times = Vec::new();
    for r in 0..args.runs {
        let part: Vec<_> = samples.iter().cycle().skip(r * per_run).take(per_run).copied().collect();
        let t = Instant::now();
        let mut n = 0usize;
        for_each_batch(data.as_ref(), &part, args.batch, 0.4, crate::rng::SplitMix64::new(2), |_, b| {
            n += b.n;
            Ok(())
        })?;
        times.push((t.elapsed().as_secs_f64(), n));
    }
    let secs: f64 = times.iter().map(|t| t.0).sum();
    let examples: usize = times.iter().map(|t| t.1).sum();
    let mut per_batch: Vec<f64> = times.iter().map(|t| t.0 * args.batch as f64 / t.1.max(1) as f64).collect();
    per_batch.sort_by(f64::total_cmp);
    Ok(BenchResult {
        what: BenchWhat::Loader,
        net: args.net,
        size: args.size.clone(),
        device: "cpu".into(),
        batch: args.batch,
        params: 0,
        first_s,
        warmup_s: first_s,
        median_ms: per_batch[per_batch.len() / 2] * 1e3,
        min_ms: per_batch[0] * 1e3,
        max_ms: per_batch[per_batch.len() - 1] * 1e3,
        per_second: examples as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_step_and_forward_run_on_the_cpu() {
        for what in [BenchWhat::Step, BenchWhat::Forward] {
            let args = BenchArgs {
                what,
                net: BenchNet::Audio,
                size: "tiny".into(),
                device: "cpu".into(),
                batch: 2,
                warmup: 1,
                runs: 2,
                cache: None,
                split: "all".into(),
            };
            let r = run(&args).unwrap();
            // The same count as host/benches/reference_torch_step.py prints for the tiny audio CNN.
            assert_eq!(r.params, 317_274);
            assert!(r.median_ms > 0.0 && r.min_ms <= r.median_ms && r.median_ms <= r.max_ms);
            assert!((r.per_second - 2.0 / (r.median_ms / 1e3)).abs() < 1e-6);
            let json = serde_json::to_string(&r).unwrap();
            assert!(json.contains("\"net\":\"audio\"") && json.contains("\"device\":\"cpu\""), "{json}");
        }
        let bad = BenchArgs {
            what: BenchWhat::Step,
            net: BenchNet::Audio,
            size: "tiny".into(),
            device: "tpu".into(),
            batch: 2,
            warmup: 1,
            runs: 1,
            cache: None,
            split: "all".into(),
        };
        assert!(run(&bad).unwrap_err().to_string().contains("tpu"));
    }
}
