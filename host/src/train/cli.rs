//! The Phase-I training verbs' shared options (train-audio, train-visual), kept beside the
//! training they configure; `avsc-host`'s main maps them.

use super::{TrainConfig, TrainSummary};
use crate::compute::ComputeDevice;
use anyhow::Result;
use std::path::PathBuf;

/// Phase-I training options shared by train-audio and train-visual.
#[derive(clap::Args)]
pub struct TrainOpts {
    /// Feature cache made by `prepare`.
    #[arg(long)]
    pub cache: PathBuf,
    /// Output folder: metrics.csv, best.bpk, checkpoint/.
    #[arg(long)]
    pub out: PathBuf,
    /// Network widths: paper (published) or tiny (CPU demo).
    #[arg(long, default_value = "paper")]
    pub size: String,
    /// Cache split to train on (its items are split by location into train/validation).
    #[arg(long, default_value = "fold1_train")]
    pub split: String,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate (cosine schedule down to 1 % of it).
    #[arg(long)]
    pub lr: Option<f64>,
    /// λ of the λ/2‖Θ‖² penalty.
    #[arg(long, default_value_t = 1e-4)]
    pub l2: f64,
    /// Mixup α (0 disables mixup).
    #[arg(long, default_value_t = 0.4)]
    pub mixup_alpha: f64,
    /// Fraction of training items (whole locations) held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue from OUT/checkpoint after the last finished epoch.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub dev: DeviceArg,
    /// Take every hyper-parameter from a run's config.toml (written into each OUT) instead of
    /// the flags above.
    #[arg(long, conflicts_with_all = ["split", "epochs", "batch_size", "lr", "l2", "mixup_alpha", "val_fraction", "seed"])]
    pub config: Option<PathBuf>,
}

/// Where the networks run.
#[derive(clap::Args)]
pub struct DeviceArg {
    /// cpu (burn flex), wgpu (Vulkan) or cuda; the GPU ones need a build with their feature.
    #[arg(long, default_value = "cpu")]
    pub device: ComputeDevice,
}

impl TrainOpts {
    pub fn config(&self, default_lr: f64) -> Result<TrainConfig> {
        let device = self.dev.device;
        device.open()?; // fail before any work when the device is unusable
        if let Some(path) = &self.config {
            let file = super::engine::RunFile::read(path)?;
            return Ok(TrainConfig { resume: self.resume, device, ..file.train });
        }
        let lr = self.lr.unwrap_or(default_lr);
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr,
            lr_min: lr * 0.01,
            weight_decay: self.l2,
            mixup_alpha: self.mixup_alpha,
            seed: self.seed,
            val_fraction: self.val_fraction,
            split: self.split.clone(),
            resume: self.resume,
            device,
            ..TrainConfig::default()
        })
    }
}

pub fn report_training(what: &str, s: &TrainSummary) {
    eprintln!(
        "{what}: best validation accuracy {:.3} (log loss {:.3}) at epoch {}; model {}",
        s.best_val_accuracy,
        s.best_val_log_loss,
        s.best_epoch,
        s.best_model.display()
    );
}
