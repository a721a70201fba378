//! The `train-all` verb's options, kept beside the chain they drive.

use super::{train_all, ChainConfig};
use crate::compute::ComputeDevice;
use crate::nets::resinception::InputNorm;
use crate::train::TrainConfig;
use anyhow::Result;
use std::path::PathBuf;

/// `avsc-host train-all` options: the paper's recipe by default.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainAllCli {
    /// Dataset root (meta.csv and evaluation_setup/).
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Network widths: paper (published) or tiny.
    #[arg(long, default_value = "paper")]
    pub size: String,
    #[arg(long, default_value_t = 30)]
    pub audio_epochs: usize,
    #[arg(long, default_value_t = 30)]
    pub visual_epochs: usize,
    #[arg(long, default_value_t = 30)]
    pub fusion_epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Random frames per training clip and epoch for the visual networks (0: all, as the
    /// paper trains).
    #[arg(long, default_value_t = 0)]
    pub frames_per_clip: usize,
    /// Evenly spaced frames per clip for visual validation and the embeddings (0: all).
    #[arg(long, default_value_t = 0)]
    pub eval_frames: usize,
    /// ImageNet weights for InceptionV3 (torchvision .pth/.safetensors or burn .bpk).
    #[arg(long)]
    pub weights_inc: Option<PathBuf>,
    /// ImageNet weights for ConvNeXt-Tiny.
    #[arg(long)]
    pub weights_conv: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// int8 calibration clips (taken from fold1_train).
    #[arg(long, default_value_t = 256)]
    pub calibration_clips: usize,
    /// cpu (burn flex), wgpu (Vulkan), cuda or cubecl-cpu; all but cpu need a build with their
    /// feature.
    #[arg(long, default_value = "cpu")]
    pub device: ComputeDevice,
    /// Audio input normalisation: per-example (standardised over each window, on the paper
    /// preset's spectrograms) or fixed (training-set statistics per channel and bin, on the
    /// stream preset: no window-relative dB floor; the device can then work as the window fills).
    #[arg(long, default_value = "per-example")]
    pub audio_norm: InputNorm,
}

impl TrainAllCli {
    pub fn config(&self) -> Result<ChainConfig> {
        let base = ChainConfig::paper(self.dataset.clone(), self.out.clone());
        let audio = TrainConfig {
            epochs: self.audio_epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            input_norm: self.audio_norm,
            ..base.audio.clone()
        };
        // A network fine-tuned from ImageNet weights takes `finetune_lr` (1e-4) instead.
        let visual = TrainConfig {
            epochs: self.visual_epochs,
            frames_per_clip: self.frames_per_clip,
            eval_frames: self.eval_frames,
            ..audio.clone()
        };
        Ok(ChainConfig {
            size: self.size.parse()?,
            audio,
            visual,
            weights_inc: self.weights_inc.clone(),
            weights_conv: self.weights_conv.clone(),
            embed_frames: self.eval_frames,
            fusion_epochs: self.fusion_epochs,
            calibration_clips: self.calibration_clips,
            device: self.device,
            ..base
        })
    }

    pub fn run(&self) -> Result<()> {
        train_all(&self.config()?).map(|_| ())
    }
}
