//! The generic Phase-I loop: mixup → KL loss → Adam (+ λΘ) with a cosine learning rate,
//! validation per clip, and an atomic checkpoint per epoch that `resume` continues from.

use super::data::Data;
use super::loader::{self, Batch};
use super::math::{self, AdamParams, AdamState};
use super::{EpochMetrics, Net, TrainConfig, TrainSummary};
use crate::nets::{load_module, save_module, NUM_CLASSES};
use crate::rng::SplitMix64;
use anyhow::{bail, ensure, Context, Result};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::TensorData;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// `checkpoint/state.json`: the last finished epoch and the files that hold it.
#[derive(Serialize, Deserialize)]
struct State {
    /// Finished epochs.
    epoch: usize,
    /// What was trained (task, network, preset): a resume must match it.
    meta: serde_json::Value,
    config: TrainConfig,
    history: Vec<EpochMetrics>,
    model: String,
    optimizer: String,
}

/// The config fields that must agree for a resume (everything but `resume`, `stop_after` and
/// the device).
fn comparable(cfg: &TrainConfig) -> TrainConfig {
    TrainConfig { resume: false, stop_after: None, device: Default::default(), ..cfg.clone() }
}

/// `OUT/config.toml`: what was trained (`[run]`) and every hyper-parameter (`[train]`), written
/// at the start of every run; `--config` reads the `[train]` table back.
#[derive(Serialize, Deserialize)]
pub struct RunFile {
    pub run: toml::Table,
    pub train: TrainConfig,
}

impl RunFile {
    /// Read a `config.toml` written by an earlier run.
    pub fn read(path: &Path) -> Result<RunFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            // toml's messages draw the line with a caret: keep the one-line error.
            let what = e.message().to_string();
            let at = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "{}: invalid run configuration{}: {what}",
                path.display(),
                at.map_or(String::new(), |l| format!(" (line {l})"))
            )
        })
    }
}

/// JSON metadata as a TOML table (nulls dropped: TOML has none).
fn toml_table(meta: &serde_json::Value) -> toml::Table {
    fn conv(v: &serde_json::Value) -> Option<toml::Value> {
        use serde_json::Value as J;
        Some(match v {
            J::Null => return None,
            J::Bool(b) => toml::Value::Boolean(*b),
            J::Number(n) => {
                n.as_i64().map_or_else(|| toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)), toml::Value::Integer)
            }
            J::String(s) => toml::Value::String(s.clone()),
            J::Array(a) => toml::Value::Array(a.iter().filter_map(conv).collect()),
            J::Object(o) => toml::Value::Table(o.iter().filter_map(|(k, v)| Some((k.clone(), conv(v)?))).collect()),
        })
    }
    match conv(meta) {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    }
}

fn write_run_file(out: &Path, meta: &serde_json::Value, cfg: &TrainConfig) -> Result<()> {
    let file = RunFile { run: toml_table(meta), train: TrainConfig { resume: false, stop_after: None, ..cfg.clone() } };
    let body = toml::to_string_pretty(&file).context("writing the run configuration")?;
    let text = format!(
        "# avsc-host Phase-I run: the network and every hyper-parameter. Re-run with --config this-file.\n{body}"
    );
    avsc_shared::write_atomic(&out.join("config.toml"), text.as_bytes())
}

/// Adam with Keras' defaults and the coupled L2 term `l2`.
fn adam_params(l2: f64) -> AdamParams {
    AdamParams { beta1: 0.9, beta2: 0.999, eps: 1e-7, l2 }
}

/// Train `model` (built on the plain device, parameters initialised) on `data`.
pub fn run<M: Net>(
    model: M,
    data: &dyn Data,
    cfg: &TrainConfig,
    out: &Path,
    meta: serde_json::Value,
) -> Result<TrainSummary> {
    ensure!(cfg.batch_size > 0 && cfg.epochs > 0, "epochs and batch size must be positive");
    let ckpt = out.join("checkpoint");
    let state_path = ckpt.join("state.json");
    let plain = cfg.device.open()?;
    let device = plain.clone().autodiff();
    let model = model.to_device(&plain);

    let (model, mut adam, mut history, start) = if cfg.resume && state_path.exists() {
        let text = std::fs::read_to_string(&state_path)?;
        let st: State = serde_json::from_str(&text).with_context(|| format!("{}: invalid", state_path.display()))?;
        if st.meta != meta || comparable(&st.config) != comparable(cfg) {
            bail!("{}: the checkpoint was made by a different task or configuration", state_path.display());
        }
        let model = load_module(model, &ckpt.join(&st.model))?;
        let bytes = std::fs::read(ckpt.join(&st.optimizer))?;
        let adam = math::decode_adam(&bytes, &plain).context("reading the optimizer state")?;
        eprintln!("resuming after epoch {} of {}", st.epoch, cfg.epochs);
        (model, adam, st.history, st.epoch)
    } else {
        if ckpt.exists() {
            std::fs::remove_dir_all(&ckpt).with_context(|| format!("clearing {}", ckpt.display()))?;
        }
        (model, AdamState::default(), Vec::new(), 0)
    };
    std::fs::create_dir_all(&ckpt).with_context(|| format!("creating {}", ckpt.display()))?;
    write_run_file(out, &meta, cfg)?;
    let mut model = model.train();

    let [c, h, w] = data.input_shape();
    let n_train = data.epoch_samples(&mut SplitMix64::new(0)).len();
    ensure!(n_train > 0, "no training examples");
    let steps_per_epoch = n_train.div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let end = cfg.stop_after.map_or(cfg.epochs, |s| s.min(cfg.epochs));

    for epoch in start..end {
        let t0 = Instant::now();
        // Everything random in an epoch derives from (seed, epoch): a resumed run repeats it.
        plain.seed(SplitMix64::derive(cfg.seed, 1 << 32 | epoch as u64).next_u64());
        let mut rng = SplitMix64::derive(cfg.seed, epoch as u64);
        let samples = data.epoch_samples(&mut rng);
        let pb = crate::progress::bar(steps_per_epoch, &format!("epoch {}", epoch + 1), "batches");
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        let mut lr = cfg.lr;
        // Batches are read and mixed on a background thread while the device trains. The
        // model moves through the slot: a second handle on its parameters would keep burn
        // from updating them in place.
        let mut slot = Some(model);
        loader::for_each_batch(data, &samples, cfg.batch_size, cfg.mixup_alpha, rng, |b, batch| {
            let Batch { x, y, n } = batch;
            let m = slot.take().context("the model was lost in a failed step")?;
            let x = Tensor::<4>::from_data(TensorData::new(x, [n, c, h, w]), &device);
            let loss = math::kl_loss(m.embed(x).logits, &y);
            let value: f32 = loss.clone().into_scalar();
            ensure!(value.is_finite(), "the loss diverged (epoch {}, batch {b})", epoch + 1);
            loss_sum += value as f64 * n as f64;
            seen += n;
            let grads = loss.backward();
            lr = math::cosine_lr(cfg.lr, cfg.lr_min, epoch * steps_per_epoch + b, total_steps);
            slot = Some(math::adam_step(m, &grads, &mut adam, adam_params(cfg.weight_decay), lr));
            pb.inc(1);
            Ok(())
        })?;
        model = slot.context("no model after the epoch")?;
        pb.finish_and_clear();

        let valid = model.valid();
        let (val_accuracy, val_log_loss) = evaluate(&valid, data, cfg.batch_size, &plain)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            l2_penalty: 0.5 * cfg.weight_decay * math::squared_norm(&valid),
            lr,
            val_accuracy,
            val_log_loss,
            seconds: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {}/{}: train KL {:.4}, L2 {:.4}, lr {:.2e}, val acc {:.4}, val log loss {:.4} ({:.1} s)",
            m.epoch, cfg.epochs, m.train_loss, m.l2_penalty, m.lr, m.val_accuracy, m.val_log_loss, m.seconds
        );
        let best_so_far = history.iter().all(|p: &EpochMetrics| better(&m, p));
        history.push(m);
        checkpoint(&ckpt, &valid, &adam, epoch + 1, &meta, cfg, &history)?;
        if best_so_far {
            save_module(valid, &out.join("best.bpk"))?;
        }
        write_metrics(&out.join("metrics.csv"), &history)?;
        let title = out.file_name().map_or_else(|| "training".to_string(), |n| n.to_string_lossy().into_owned());
        crate::plot::training_curves(&out.join("curves.png"), &title, &history)?;
    }
    let last = history.last().context("no finished epoch")?;
    let best = history.iter().fold(last, |b, m| if better(m, b) { m } else { b });
    Ok(TrainSummary {
        epochs: last.epoch,
        final_val_accuracy: last.val_accuracy,
        final_val_log_loss: last.val_log_loss,
        best_epoch: best.epoch,
        best_val_accuracy: best.val_accuracy,
        best_val_log_loss: best.val_log_loss,
        checkpoint: ckpt.join(model_name(last.epoch)),
        best_model: out.join("best.bpk"),
        history: history.clone(),
    })
}

/// Higher accuracy wins, then lower log loss; NaN (no validation) never beats anything.
fn better(a: &EpochMetrics, b: &EpochMetrics) -> bool {
    if b.val_accuracy.is_nan() {
        return true;
    }
    a.val_accuracy > b.val_accuracy || (a.val_accuracy == b.val_accuracy && a.val_log_loss < b.val_log_loss)
}

fn model_name(epoch: usize) -> String {
    format!("epoch-{epoch:04}.model.bpk")
}

/// Write the model and optimizer of `epoch`, then point `state.json` at them (atomically,
/// last), then remove the previous epoch's files.
fn checkpoint<M: Net>(
    dir: &Path,
    model: &M,
    adam: &AdamState,
    epoch: usize,
    meta: &serde_json::Value,
    cfg: &TrainConfig,
    history: &[EpochMetrics],
) -> Result<()> {
    let (model_file, optim_file) = (model_name(epoch), format!("epoch-{epoch:04}.adam.bin"));
    save_module(model.clone(), &dir.join(&model_file))?;
    avsc_shared::write_atomic(&dir.join(&optim_file), &math::encode_adam(adam))?;
    let st = State {
        epoch,
        meta: meta.clone(),
        config: cfg.clone(),
        history: history.to_vec(),
        model: model_file.clone(),
        optimizer: optim_file.clone(),
    };
    avsc_shared::write_atomic(&dir.join("state.json"), serde_json::to_string_pretty(&st)?.as_bytes())?;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("epoch-") && name != model_file && name != optim_file {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    Ok(())
}

fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut s = String::from("epoch,train_loss,l2_penalty,lr,val_accuracy,val_log_loss,seconds\n");
    for m in history {
        s += &format!(
            "{},{},{},{},{},{},{:.3}\n",
            m.epoch, m.train_loss, m.l2_penalty, m.lr, m.val_accuracy, m.val_log_loss, m.seconds
        );
    }
    avsc_shared::write_atomic(path, s.as_bytes())
}

/// Class probabilities of every view (`[n, classes]`, row-major), in batches.
pub fn predict<M: Net>(
    model: &M,
    inputs: &[Vec<f32>],
    shape: [usize; 3],
    batch: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    let mut probs = Vec::with_capacity(inputs.len() * NUM_CLASSES);
    for chunk in inputs.chunks(batch.max(1)) {
        let x = Tensor::<4>::from_data(TensorData::new(chunk.concat(), [chunk.len(), c, h, w]), device);
        let p = softmax(model.embed(x).logits, 1).into_data().try_to_vec::<f32>();
        probs.extend(p.map_err(|e| anyhow::anyhow!("{e:?}"))?);
    }
    Ok(probs)
}

/// Per-clip accuracy and log loss, averaging the probabilities of each clip's views.
/// NaN for both when there is no validation clip.
pub fn evaluate<M: Net>(model: &M, data: &dyn Data, batch: usize, device: &Device) -> Result<(f64, f64)> {
    let n = data.val_len();
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let (mut correct, mut log_loss) = (0usize, 0.0f64);
    let clips_per_chunk = batch.max(1);
    let clips: Vec<usize> = (0..n).collect();
    for chunk in clips.chunks(clips_per_chunk) {
        let views: Vec<Vec<Vec<f32>>> = chunk.par_iter().map(|&i| data.val_inputs(i)).collect::<Result<_>>()?;
        let flat: Vec<Vec<f32>> = views.iter().flatten().cloned().collect();
        let probs = predict(model, &flat, data.input_shape(), batch, device)?;
        let mut row = 0;
        for (&clip, v) in chunk.iter().zip(&views) {
            let mut mean = [0.0f64; NUM_CLASSES];
            for r in row..row + v.len() {
                for (k, m) in mean.iter_mut().enumerate() {
                    *m += probs[r * NUM_CLASSES + k] as f64 / v.len() as f64;
                }
            }
            row += v.len();
            let label = data.val_label(clip);
            let argmax = (0..NUM_CLASSES).fold(0, |a, k| if mean[k] > mean[a] { k } else { a });
            correct += usize::from(argmax == label);
            log_loss -= mean[label].clamp(1e-15, 1.0).ln();
        }
    }
    Ok((correct as f64 / n as f64, log_loss / n as f64))
}
