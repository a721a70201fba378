//! `avsc-host export`: the trained networks as ONNX files plus a manifest — the bundle the
//! device runs (format in models/README.md).
//!
//! burn's own ONNX exporter cannot lower GELU, LayerNorm or Softmax, so the host writes ONNX
//! itself with [`crate::onnx`]: each network emits its graph beside its forward pass
//! (`ResInception::emit`, `InceptionV3::emit`, `ConvNextTiny::emit`, `FusionHead::emit` in
//! `nets/` and `fusion/`), BatchNorm folded into the conv before it; this module wraps them
//! into files. [`quant`] writes the int8 variants; [`verify`] runs files with tract.
//!
//! | file           | input                                   | outputs                              |
//! |----------------|-----------------------------------------|--------------------------------------|
//! | audio backbone | `spectrogram` `[N, 6, 128, T]`          | `fc1024` `[N, 1024]`, `logits` `[N, 10]` |
//! | visual backbone| `image` `[N, 3, 224, 224]`              | `fc1024`, `logits`                   |
//! | fusion head    | `embeddings` `[N, k, d]` (sources order)| `probabilities` `[N, 10]`            |

pub mod bundle;
pub mod cli;
pub mod quant;
pub mod verify;

pub use crate::onnx::{graph, layers};

pub use bundle::{export_bundle, parse_precision, presets, ExportArgs, ExportReport};

use crate::fusion::{FusionHead, FusionSpec};
use crate::nets::convnext_tiny::{ConvNextTiny, ConvNextTinyConfig};
use crate::nets::inception_v3::{InceptionV3, InceptionV3Config};
use crate::nets::resinception::{InputNorm, ResInception, ResInceptionConfig};
use crate::nets::{load_module, Embeddings, Head, SizePreset};
use anyhow::{bail, Result};
use avsc_shared::bundle::{Dim, Role, TensorSpec};
use burn::prelude::*;
use graph::Graph;
use quant::Calibration;
use std::path::Path;

/// Output names of a backbone graph.
pub const FC1024: &str = "fc1024";
pub const LOGITS: &str = "logits";
/// Input names.
pub const SPECTROGRAM: &str = "spectrogram";
pub const IMAGE: &str = "image";
pub const EMBEDDINGS: &str = "embeddings";
/// Output of a fusion head.
pub const PROBABILITIES: &str = "probabilities";
/// The symbolic batch and spectrogram-frame dimensions.
pub const BATCH: &str = "N";
pub const FRAMES: &str = "T";

/// A Phase-I network in eval mode.
// One value at a time, during export: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Backbone {
    Audio(ResInception),
    Inception(InceptionV3),
    ConvNext(ConvNextTiny),
}

impl Backbone {
    /// A freshly initialised network of `role` (for tests), its weights drawn from a seed
    /// derived from the role ([`crate::train::math::redraw`]), so every run tests the same
    /// network. Loading a record replaces them.
    pub fn init(role: Role, size: SizePreset, device: &Device) -> Result<Backbone> {
        use crate::train::math::redraw;
        let seed = 0xB0_0000 + role as u64;
        Ok(match role {
            Role::AudMel | Role::AudGam | Role::AudCqt => {
                Backbone::Audio(redraw(ResInceptionConfig::preset(size).init(device), seed))
            }
            Role::VisInc => Backbone::Inception(redraw(InceptionV3Config::preset(size).init(device), seed)),
            Role::VisConv => Backbone::ConvNext(redraw(ConvNextTinyConfig::preset(size).init(device), seed)),
            other => bail!("{} is not a backbone", other.name()),
        })
    }

    /// The trained network of `role` from its burn record (on the CPU).
    pub fn load(role: Role, size: SizePreset, model: &Path) -> Result<Backbone> {
        Self::load_on(role, size, model, &Device::flex())
    }

    /// The trained network of `role` from its burn record, on `device` (a plain, not
    /// autodiff, device: BatchNorm uses its running statistics, dropout is off).
    /// An audio network's record says how it normalises its input: it holds the fixed
    /// statistics ([`InputNorm::Fixed`]) or not (per-example standardisation).
    pub fn load_on(role: Role, size: SizePreset, model: &Path, device: &Device) -> Result<Backbone> {
        Ok(match Self::init(role, size, device)? {
            Backbone::Audio(n) => {
                let fixed = ResInceptionConfig::preset(size).with_input_norm(InputNorm::Fixed).init(device);
                match load_module(fixed, model) {
                    Ok(n) => Backbone::Audio(n),
                    Err(_) => Backbone::Audio(load_module(n, model)?),
                }
            }
            Backbone::Inception(n) => Backbone::Inception(load_module(n, model)?),
            Backbone::ConvNext(n) => Backbone::ConvNext(load_module(n, model)?),
        })
    }

    /// burn's forward pass (the reference the exported graph must match).
    pub fn forward(&self, x: Tensor<4>) -> Embeddings {
        match self {
            Backbone::Audio(n) => n.forward(x),
            Backbone::Inception(n) => n.forward(x),
            Backbone::ConvNext(n) => n.forward(x),
        }
    }

    fn head(&self) -> &Head {
        match self {
            Backbone::Audio(n) => &n.head,
            Backbone::Inception(n) => &n.head,
            Backbone::ConvNext(n) => &n.head,
        }
    }

    /// The graph input: `spectrogram` `[N, channels, bins, T]` (audio; the frame count is
    /// symbolic) or `image` `[N, 3, size, size]`.
    pub fn input_spec(&self, n_bins: usize, frame_size: usize) -> TensorSpec {
        let (name, dims) = match self {
            Backbone::Audio(n) => {
                let c = n.stem.conv.weight.val().dims()[1];
                (SPECTROGRAM, vec![Dim::Fixed(c), Dim::Fixed(n_bins), Dim::Symbol(FRAMES.into())])
            }
            _ => (IMAGE, vec![Dim::Fixed(3), Dim::Fixed(frame_size), Dim::Fixed(frame_size)]),
        };
        let mut shape = vec![Dim::Symbol(BATCH.into())];
        shape.extend(dims);
        TensorSpec { name: name.into(), shape }
    }

    /// `fc1024` and `logits`.
    pub fn output_specs(&self) -> Vec<TensorSpec> {
        let h = self.head();
        let (e, k) = (h.fc1.weight.val().dims()[1], h.fc2.weight.val().dims()[1]);
        vec![TensorSpec::batched(FC1024, &[e]), TensorSpec::batched(LOGITS, &[k])]
    }

    /// The ONNX graph (int8 where `calibration` covers a conv's or dense layer's input).
    pub fn graph(&self, input: &TensorSpec, calibration: Option<Calibration>) -> Result<Graph> {
        self.graph_with(input, calibration, true)
    }

    /// [`Self::graph`], with sibling pointwise convolutions merged into one Conv or not
    /// ([`Graph::merge_pointwise`]).
    pub fn graph_with(
        &self,
        input: &TensorSpec,
        calibration: Option<Calibration>,
        merge_pointwise: bool,
    ) -> Result<Graph> {
        let mut g = Graph::new(&format!("{self}"));
        g.calibration = calibration;
        g.merge_pointwise = merge_pointwise;
        let x = g.input(input);
        let (fc1024, logits) = match self {
            Backbone::Audio(n) => n.emit(&mut g, &x)?,
            Backbone::Inception(n) => n.emit(&mut g, &x)?,
            Backbone::ConvNext(n) => n.emit(&mut g, &x)?,
        };
        let outs = self.output_specs();
        g.output(&fc1024, &outs[0]);
        g.output(&logits, &outs[1]);
        Ok(g)
    }
}

impl std::fmt::Display for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backbone::Audio(_) => "resinception",
            Backbone::Inception(_) => "inception_v3",
            Backbone::ConvNext(_) => "convnext_tiny",
        })
    }
}

/// A fusion head's input `embeddings` `[N, k, d]` and output `probabilities` `[N, 10]`.
pub fn fusion_specs(spec: &FusionSpec) -> (TensorSpec, TensorSpec) {
    (
        TensorSpec::batched(EMBEDDINGS, &[spec.k(), spec.d()]),
        TensorSpec::batched(PROBABILITIES, &[avsc_shared::NUM_CLASSES]),
    )
}

/// The ONNX graph of a fusion head.
pub fn fusion_graph(head: &FusionHead, spec: &FusionSpec, calibration: Option<Calibration>) -> Graph {
    let (input, output) = fusion_specs(spec);
    let mut g = Graph::new(&format!("fusion_{}_{}", spec.modalities.name(), spec.kind));
    g.calibration = calibration;
    let x = g.input(&input);
    let p = head.emit(&mut g, &x);
    g.output(&p, &output);
    g
}
