//! ImageNet initialisation: torchvision checkpoints into the two visual backbones.
//!
//! The user supplies the file (`.safetensors`, or a `.pth` / `.pt` state dict); nothing is
//! downloaded. Keys are translated by the explicit tables below — one per backbone — and the
//! result must cover every backbone parameter of our module: only the fresh Dense block
//! (`head.*`) is left to its random initialisation. torchvision's 1000-way ImageNet `fc` is
//! loaded too and returned aside ([`Imported::imagenet_fc`]) so its logits can be checked
//! against torchvision's.
//!
//! A key is `prefix.middle.suffix`: the prefix is renamed by the backbone's table, the middle
//! (at most one segment: an Inception branch name, a ConvNeXt block index) is kept, and the
//! suffix is renamed by the leaf table the row names. Transforms:
//! - [`Transform::Transpose`]: torch `Linear.weight` is `[out, in]`, burn's is `[in, out]`;
//! - [`Transform::Flatten`]: ConvNeXt `layer_scale` is `[C, 1, 1]` in torch, `[C]` here.
//!
//! BatchNorm `num_batches_tracked` counters are dropped (burn keeps none).

use super::convnext_tiny::{ConvNextTiny, ConvNextTinyConfig};
use super::inception_v3::{InceptionV3, InceptionV3Config};
use super::{save_module, trainable_params, Embeddings};
use anyhow::{bail, ensure, Context, Result};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{bridge, ModuleSnapshot, ModuleStore, PytorchStore, SafetensorsStore};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// torchvision tensors by state-dict key.
pub type TorchTensors = BTreeMap<String, PackTensor>;

/// How a tensor changes on its way from torchvision to burn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Keep,
    /// `[out, in]` → `[in, out]`.
    Transpose,
    /// `[C, 1, 1]` → `[C]`.
    Flatten,
}
use Transform::{Flatten, Keep, Transpose};

/// torchvision suffix → our suffix.
pub type Leaf = (&'static str, &'static str, Transform);
/// torchvision prefix → our prefix, and the leaf table for what follows.
pub type Rule = (&'static str, &'static str, &'static [Leaf]);

/// torchvision `BasicConv2d`: conv (no bias) + BatchNorm.
const BASIC_CONV2D: &[Leaf] = &[
    ("conv.weight", "conv.weight", Keep),
    ("bn.weight", "bn.gamma", Keep),
    ("bn.bias", "bn.beta", Keep),
    ("bn.running_mean", "bn.running_mean", Keep),
    ("bn.running_var", "bn.running_var", Keep),
];
const LINEAR: &[Leaf] = &[("weight", "weight", Transpose), ("bias", "bias", Keep)];
const CONV: &[Leaf] = &[("weight", "weight", Keep), ("bias", "bias", Keep)];
const LAYER_NORM: &[Leaf] = &[("weight", "gamma", Keep), ("bias", "beta", Keep)];
/// torchvision `CNBlock`; `block.1` and `block.6` are permutes, `block.4` the GELU.
const CN_BLOCK: &[Leaf] = &[
    ("block.0.weight", "dwconv.weight", Keep),
    ("block.0.bias", "dwconv.bias", Keep),
    ("block.2.weight", "norm.gamma", Keep),
    ("block.2.bias", "norm.beta", Keep),
    ("block.3.weight", "pwconv1.weight", Transpose),
    ("block.3.bias", "pwconv1.bias", Keep),
    ("block.5.weight", "pwconv2.weight", Transpose),
    ("block.5.bias", "pwconv2.bias", Keep),
    ("layer_scale", "layer_scale", Flatten),
];

/// Where torchvision's 1000-way fc goes (outside the network: see [`Imported`]).
const IMAGENET_FC: &str = "imagenet_fc";

/// InceptionV3: module names lower-cased; a Mixed block's middle segment is its branch name.
pub const INCEPTION_V3: &[Rule] = &[
    ("Conv2d_1a_3x3", "conv2d_1a_3x3", BASIC_CONV2D),
    ("Conv2d_2a_3x3", "conv2d_2a_3x3", BASIC_CONV2D),
    ("Conv2d_2b_3x3", "conv2d_2b_3x3", BASIC_CONV2D),
    ("Conv2d_3b_1x1", "conv2d_3b_1x1", BASIC_CONV2D),
    ("Conv2d_4a_3x3", "conv2d_4a_3x3", BASIC_CONV2D),
    ("Mixed_5b", "mixed_5b", BASIC_CONV2D),
    ("Mixed_5c", "mixed_5c", BASIC_CONV2D),
    ("Mixed_5d", "mixed_5d", BASIC_CONV2D),
    ("Mixed_6a", "mixed_6a", BASIC_CONV2D),
    ("Mixed_6b", "mixed_6b", BASIC_CONV2D),
    ("Mixed_6c", "mixed_6c", BASIC_CONV2D),
    ("Mixed_6d", "mixed_6d", BASIC_CONV2D),
    ("Mixed_6e", "mixed_6e", BASIC_CONV2D),
    ("Mixed_7a", "mixed_7a", BASIC_CONV2D),
    ("Mixed_7b", "mixed_7b", BASIC_CONV2D),
    ("Mixed_7c", "mixed_7c", BASIC_CONV2D),
    ("fc", IMAGENET_FC, LINEAR),
];

/// ConvNeXt-Tiny: `features.{1,3,5,7}` are the stages (middle segment: block index),
/// `features.{2,4,6}` the downsampling layers between them.
pub const CONVNEXT_TINY: &[Rule] = &[
    ("features.0.0", "stem.conv", CONV),
    ("features.0.1", "stem.norm", LAYER_NORM),
    ("features.1", "stages.0", CN_BLOCK),
    ("features.2.0", "downsample.0.norm", LAYER_NORM),
    ("features.2.1", "downsample.0.conv", CONV),
    ("features.3", "stages.1", CN_BLOCK),
    ("features.4.0", "downsample.1.norm", LAYER_NORM),
    ("features.4.1", "downsample.1.conv", CONV),
    ("features.5", "stages.2", CN_BLOCK),
    ("features.6.0", "downsample.2.norm", LAYER_NORM),
    ("features.6.1", "downsample.2.conv", CONV),
    ("features.7", "stages.3", CN_BLOCK),
    ("classifier.0", "head_norm", LAYER_NORM),
    ("classifier.2", IMAGENET_FC, LINEAR),
];

/// The two ImageNet-pretrained visual backbones of Figure 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backbone {
    InceptionV3,
    ConvNextTiny,
}

impl Backbone {
    /// The key-mapping table of this backbone.
    pub fn table(self) -> &'static [Rule] {
        match self {
            Self::InceptionV3 => INCEPTION_V3,
            Self::ConvNextTiny => CONVNEXT_TINY,
        }
    }

    /// torchvision's builder name (`inception_v3`, `convnext_tiny`), also the golden
    /// manifest's key.
    /// The bundle role this backbone fills.
    pub fn role(self) -> avsc_shared::bundle::Role {
        match self {
            Self::InceptionV3 => avsc_shared::bundle::Role::VisInc,
            Self::ConvNextTiny => avsc_shared::bundle::Role::VisConv,
        }
    }

    pub fn torchvision_name(self) -> &'static str {
        match self {
            Self::InceptionV3 => "inception_v3",
            Self::ConvNextTiny => "convnext_tiny",
        }
    }
}

impl FromStr for Backbone {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.replace('-', "_").as_str() {
            "inception_v3" => Ok(Self::InceptionV3),
            "convnext_tiny" => Ok(Self::ConvNextTiny),
            _ => bail!("unknown backbone {s:?} (expected inception-v3 or convnext-tiny)"),
        }
    }
}

/// Translate one torchvision key: `Ok(None)` for tensors burn does not keep.
pub fn map_key(table: &[Rule], key: &str) -> Result<Option<(String, Transform)>> {
    if key.ends_with("num_batches_tracked") {
        return Ok(None);
    }
    for &(tv_prefix, our_prefix, leaves) in table {
        let Some(rest) = key.strip_prefix(tv_prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        for &(tv_leaf, our_leaf, transform) in leaves {
            let middle = match rest.strip_suffix(tv_leaf) {
                Some("") => None,
                Some(m) => match m.strip_suffix('.') {
                    Some(m) if !m.is_empty() && !m.contains('.') => Some(m),
                    _ => continue,
                },
                None => continue,
            };
            let path = match middle {
                Some(m) => format!("{our_prefix}.{m}.{our_leaf}"),
                None => format!("{our_prefix}.{our_leaf}"),
            };
            return Ok(Some((path, transform)));
        }
    }
    bail!("torchvision key {key:?} has no entry in the mapping table")
}

/// A visual backbone with the Dense block (paper widths). Boxed: burn modules are large
/// structs (InceptionV3 is about 54 kB).
#[derive(Clone, Debug)]
pub enum VisualNet {
    InceptionV3(Box<InceptionV3>),
    ConvNextTiny(Box<ConvNextTiny>),
}

impl VisualNet {
    pub fn forward_pooled(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::InceptionV3(n) => n.forward_pooled(x),
            Self::ConvNextTiny(n) => n.forward_pooled(x),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Embeddings {
        match self {
            Self::InceptionV3(n) => n.forward(x),
            Self::ConvNextTiny(n) => n.forward(x),
        }
    }

    pub fn trainable_params(&self) -> usize {
        match self {
            Self::InceptionV3(n) => trainable_params(n.as_ref()),
            Self::ConvNextTiny(n) => trainable_params(n.as_ref()),
        }
    }

    /// Write the network (backbone and head) as a burn record, atomically; load it back
    /// with [`super::load_module`] into `InceptionV3Config::paper()` / `ConvNextTinyConfig::paper()`.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Self::InceptionV3(n) => save_module(n.as_ref().clone(), path),
            Self::ConvNextTiny(n) => save_module(n.as_ref().clone(), path),
        }
    }
}

/// An imported backbone.
#[derive(Debug)]
pub struct Imported {
    /// Backbone with ImageNet weights; its `head` is freshly initialised.
    pub net: VisualNet,
    /// torchvision's 1000-way ImageNet fc, for checks: see [`Imported::imagenet_logits`].
    pub imagenet_fc: Linear,
    /// Number of tensors loaded.
    pub loaded: usize,
    /// Our parameters the checkpoint did not provide (the Dense block).
    pub fresh: Vec<String>,
}

impl Imported {
    /// torchvision's ImageNet logits from [`VisualNet::forward_pooled`]'s features (ConvNeXt's
    /// classifier normalises them first, with the network's `head_norm`).
    pub fn imagenet_logits(&self, pooled: Tensor<2>) -> Tensor<2> {
        match &self.net {
            VisualNet::InceptionV3(_) => self.imagenet_fc.forward(pooled),
            VisualNet::ConvNextTiny(n) => self.imagenet_fc.forward(n.head_norm.forward(pooled)),
        }
    }
}

/// Read a torchvision checkpoint: `.safetensors`, or a `.pth` / `.pt` state dict.
pub fn read_checkpoint(path: &Path) -> Result<TorchTensors> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensors = match ext {
        "safetensors" => {
            SafetensorsStore::from_file(path).get_all_tensors().map_err(|e| anyhow::anyhow!("{e}"))?.clone()
        }
        // Keys verbatim: burn-store renumbers Sequential indices by default (ConvNeXt's
        // `classifier.2` would become `classifier.1`), and the table maps torchvision's names.
        "pth" | "pt" => PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .get_all_tensors()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .clone(),
        _ => bail!("expected a .safetensors, .pth or .pt file"),
    };
    Ok(tensors)
}

/// Import a torchvision checkpoint file (see the module docs) onto `device`.
pub fn import_torchvision(backbone: Backbone, checkpoint: &Path, device: &Device) -> Result<Imported> {
    let tensors = read_checkpoint(checkpoint)
        .with_context(|| format!("reading torchvision checkpoint {}", checkpoint.display()))?;
    import_tensors(backbone, tensors, device)
        .with_context(|| format!("importing {} into {}", checkpoint.display(), backbone.torchvision_name()))
}

/// Map torchvision tensors through the backbone's table into a fresh paper-width network.
pub fn import_tensors(backbone: Backbone, tensors: TorchTensors, device: &Device) -> Result<Imported> {
    let mut net_tensors = Vec::new();
    let mut fc_tensors = Vec::new();
    for (key, tensor) in tensors {
        let Some((path, transform)) = map_key(backbone.table(), &key)? else {
            continue;
        };
        let data =
            bridge::into_data(tensor).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("reading {key}"))?;
        let data = transform_data(data.convert::<f32>(), transform).with_context(|| format!("transforming {key}"))?;
        match path.strip_prefix(IMAGENET_FC).and_then(|p| p.strip_prefix('.')) {
            Some(leaf) => fc_tensors.push(bridge::from_data(data, leaf.to_string(), None)),
            None => net_tensors.push(bridge::from_data(data, path, None)),
        }
    }
    let loaded = net_tensors.len() + fc_tensors.len();
    let (net, pooled_dim, fresh) = match backbone {
        Backbone::InceptionV3 => {
            let cfg = InceptionV3Config::paper();
            let mut net = cfg.init(device);
            let fresh = apply(&mut net, net_tensors, "network")?;
            (VisualNet::InceptionV3(Box::new(net)), cfg.pooled_dim(), fresh)
        }
        Backbone::ConvNextTiny => {
            let cfg = ConvNextTinyConfig::paper();
            let mut net = cfg.init(device);
            let fresh = apply(&mut net, net_tensors, "network")?;
            (VisualNet::ConvNextTiny(Box::new(net)), cfg.pooled_dim(), fresh)
        }
    };
    ensure!(
        fresh.iter().all(|p| p.starts_with("head.")),
        "checkpoint lacks backbone parameters: {:?}",
        fresh.iter().filter(|p| !p.starts_with("head.")).collect::<Vec<_>>()
    );
    let mut imagenet_fc = LinearConfig::new(pooled_dim, 1000).init(device);
    let fc_missing = apply(&mut imagenet_fc, fc_tensors, "ImageNet fc")?;
    ensure!(fc_missing.is_empty(), "checkpoint lacks fc parameters: {fc_missing:?}");
    Ok(Imported { net, imagenet_fc, loaded, fresh })
}

/// Load `tensors` into `module`; fail on shape / dtype errors or tensors it has no place for.
/// Returns the module's parameters that were not provided.
fn apply<M: Module>(module: &mut M, tensors: Vec<PackTensor>, what: &str) -> Result<Vec<String>> {
    let result = module.apply(tensors, None, None, false);
    ensure!(result.errors.is_empty(), "loading the {what}: {result}");
    ensure!(result.unused.is_empty(), "the {what} has no parameter for {:?}", result.unused);
    Ok(result.missing.into_iter().map(|(path, _)| path).collect())
}

fn transform_data(data: TensorData, transform: Transform) -> Result<TensorData> {
    let shape = data.shape().to_vec();
    match transform {
        Keep => Ok(data),
        Flatten => {
            ensure!(shape.len() == 3 && shape[1] == 1 && shape[2] == 1, "expected [C, 1, 1], got {shape:?}");
            let values = data.try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Ok(TensorData::new(values, [shape[0]]))
        }
        Transpose => {
            ensure!(shape.len() == 2, "expected a matrix, got {shape:?}");
            let (rows, cols) = (shape[0], shape[1]);
            let values = data.try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let mut out = vec![0f32; values.len()];
            for (r, row) in values.chunks_exact(cols).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    out[c * rows + r] = v;
                }
            }
            Ok(TensorData::new(out, [cols, rows]))
        }
    }
}

/// Test support: rebuild a backbone's torchvision state dict from the golden manifest
/// (`golden/vision/manifest.json`), whose formula fills every tensor deterministically:
/// `v[k] = offset + amp * g(sin(0.5 k + 0.37 t + 0.1))` in f64, then f32, with `k` the flat
/// C-order index, `t` the state-dict position and `g` identity (`sin`) or abs (`abs_sin`).
/// `ignored` tensors (BatchNorm counters) are left out.
pub fn weights_from_manifest(manifest: &Path, backbone: Backbone) -> Result<TorchTensors> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let entries = json[backbone.torchvision_name()]["tensors"]
        .as_array()
        .with_context(|| format!("{} has no {} tensors", manifest.display(), backbone.torchvision_name()))?;
    let mut out = TorchTensors::new();
    for e in entries {
        let key = e["key"].as_str().context("tensor without key")?;
        let kind = e["kind"].as_str().context("tensor without kind")?;
        let abs = match kind {
            "ignored" => continue,
            "sin" => false,
            "abs_sin" => true,
            other => bail!("{key}: unknown kind {other:?}"),
        };
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .with_context(|| format!("{key}: no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .with_context(|| format!("{key}: bad shape"))?;
        let field = |name: &str| e[name].as_f64().with_context(|| format!("{key}: no {name}"));
        let (t, offset, amp) = (field("t")?, field("offset")?, field("amp")?);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|k| {
                let s = (0.5 * k as f64 + 0.37 * t + 0.1).sin();
                (offset + amp * if abs { s.abs() } else { s }) as f32
            })
            .collect();
        let data = TensorData::new(values, shape);
        out.insert(key.to_string(), bridge::from_data(data, key.to_string(), None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_translate_representative_keys() {
        let cases = [
            (INCEPTION_V3, "Conv2d_1a_3x3.bn.weight", "conv2d_1a_3x3.bn.gamma", Keep),
            (INCEPTION_V3, "Mixed_7c.branch3x3dbl_3a.conv.weight", "mixed_7c.branch3x3dbl_3a.conv.weight", Keep),
            (INCEPTION_V3, "fc.weight", "imagenet_fc.weight", Transpose),
            (CONVNEXT_TINY, "features.0.1.weight", "stem.norm.gamma", Keep),
            (CONVNEXT_TINY, "features.5.8.block.3.weight", "stages.2.8.pwconv1.weight", Transpose),
            (CONVNEXT_TINY, "features.7.2.layer_scale", "stages.3.2.layer_scale", Flatten),
            (CONVNEXT_TINY, "features.6.1.bias", "downsample.2.conv.bias", Keep),
            (CONVNEXT_TINY, "classifier.0.bias", "head_norm.beta", Keep),
        ];
        for (table, key, path, transform) in cases {
            assert_eq!(map_key(table, key).unwrap(), Some((path.to_string(), transform)), "{key}");
        }
        assert_eq!(map_key(INCEPTION_V3, "Mixed_5b.branch1x1.bn.num_batches_tracked").unwrap(), None);
        assert!(map_key(INCEPTION_V3, "AuxLogits.fc.weight").is_err());
        assert!(map_key(CONVNEXT_TINY, "features.1.0.block.9.weight").is_err());
    }

    #[test]
    fn transpose_and_flatten() {
        let t = transform_data(TensorData::new(vec![1f32, 2., 3., 4., 5., 6.], [2, 3]), Transpose).unwrap();
        assert_eq!(t.shape().to_vec(), vec![3, 2]);
        assert_eq!(t.try_to_vec::<f32>().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
        let f = transform_data(TensorData::new(vec![1f32, 2.], [2, 1, 1]), Flatten).unwrap();
        assert_eq!(f.shape().to_vec(), vec![2]);
    }
}
