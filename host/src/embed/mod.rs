//! `avsc-host embed`: the frozen Phase-I backbones run once over a prepared cache; per clip
//! and backbone, the FC(1024) activations and FC(10) logits are stored for Phase II and for
//! evaluation. A visual clip's embeddings are the mean over its frames.
//!
//! ```text
//! EMB/
//!   index.json            schema, size preset, the clips (id, label, location, splits), the
//!                         Phase-I runs' common split and the set's fingerprint
//!   aud_mel.fc1024.npy    [clips, 1024] f32, rows in index order
//!   aud_mel.fc10.npy      [clips, 10]
//!   ... the same for aud_gam, aud_cqt, vis_inc, vis_conv
//! ```
//!
//! Phase-I runs are found by role under one folder (`RUNS/aud_mel/best.bpk`, ...), the layout
//! `avsc-host demo` and `table1` write.

use crate::cache::{Cache, CacheItem, ClipData};
use crate::compute::ComputeDevice;
use crate::nets::SizePreset;
use crate::train::data::SplitRecord;
use anyhow::{bail, ensure, Context, Result};
use avsc_shared::bundle::{EmbeddingKind, Role};
use avsc_shared::dsp::deltas::stack6;
use avsc_shared::image::normalise;
use avsc_shared::{FeatureKind, Normalisation, NUM_CLASSES};
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: u32 = 1;
const EMBED_DIM: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Index {
    schema_version: u32,
    size: String,
    roles: Vec<Role>,
    items: Vec<CacheItem>,
    /// The split all five Phase-I runs trained and validated on (absent in sets written
    /// before runs recorded it).
    #[serde(default)]
    phase1: Option<SplitRecord>,
    /// [`EmbeddingSet::fingerprint`], for people and scripts (readers recompute it).
    #[serde(default)]
    fingerprint: String,
}

/// The embeddings of every clip of a cache under each backbone.
#[derive(Clone, Debug)]
pub struct EmbeddingSet {
    /// The clips, in row order; not changed after construction (the fingerprint is cached).
    pub items: Vec<CacheItem>,
    pub size: SizePreset,
    /// The split the Phase-I backbones trained and validated on: Phase II must not validate
    /// on a clip they trained on.
    pub phase1: Option<SplitRecord>,
    /// role → (FC(1024) rows, FC(10) rows), row-major.
    data: BTreeMap<Role, (Vec<f32>, Vec<f32>)>,
    /// [`EmbeddingSet::fingerprint`], computed once (every head trained and evaluated asks).
    fingerprint: std::sync::OnceLock<String>,
}

/// The Phase-I model file of `role` under a runs folder.
pub fn model_path(runs: &Path, role: Role) -> PathBuf {
    runs.join(role.name()).join("best.bpk")
}

/// The network input normalisation of a visual backbone.
pub fn normalisation(role: Role) -> Normalisation {
    role.input_normalisation().unwrap_or_else(|| panic!("{} reads no pictures", role.name()))
}

pub fn feature_kind(role: Role) -> Option<FeatureKind> {
    match role {
        Role::AudMel => Some(FeatureKind::Mel),
        Role::AudGam => Some(FeatureKind::Gam),
        Role::AudCqt => Some(FeatureKind::Cqt),
        _ => None,
    }
}

impl EmbeddingSet {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.data.keys().copied()
    }

    /// One clip's embedding.
    pub fn get(&self, role: Role, kind: EmbeddingKind, clip: usize) -> &[f32] {
        let (fc1024, fc10) = &self.data[&role];
        let d = kind.dim();
        let rows = if kind == EmbeddingKind::Fc1024 { fc1024 } else { fc10 };
        &rows[clip * d..(clip + 1) * d]
    }

    /// The clips of `split` ("all": every clip) that carry a label.
    pub fn labelled(&self, split: &str) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| {
                let it = &self.items[i];
                it.label().is_some() && (split == "all" || it.splits.iter().any(|s| s == split))
            })
            .collect()
    }

    pub fn label(&self, clip: usize) -> Option<usize> {
        self.items[clip].label().map(|l| l.index())
    }

    pub fn insert(&mut self, role: Role, fc1024: Vec<f32>, fc10: Vec<f32>) {
        assert_eq!(fc1024.len(), self.items.len() * EMBED_DIM);
        assert_eq!(fc10.len(), self.items.len() * NUM_CLASSES);
        self.data.insert(role, (fc1024, fc10));
        self.fingerprint = Default::default();
    }

    pub fn new(items: Vec<CacheItem>, size: SizePreset) -> EmbeddingSet {
        EmbeddingSet { items, size, phase1: None, data: BTreeMap::new(), fingerprint: Default::default() }
    }

    /// SHA-256 (hex) of what a head learns from: the clips (id, label, splits) and every
    /// role's arrays. A head records it; evaluation and resumption compare it.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.get_or_init(|| self.compute_fingerprint()).clone()
    }

    fn compute_fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.size.to_string().as_bytes());
        for it in &self.items {
            h.update(format!("{}\t{:?}\t{:?}\n", it.id, it.label, it.splits).as_bytes());
        }
        for (role, (fc1024, fc10)) in &self.data {
            h.update(role.name().as_bytes());
            for v in fc1024.iter().chain(fc10) {
                h.update(v.to_le_bytes());
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Write the arrays, then `index.json` (each file atomically; the index last).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let n = self.items.len();
        for (role, (fc1024, fc10)) in &self.data {
            avsc_shared::npy::write_f32(&dir.join(format!("{}.fc1024.npy", role.name())), &[n, EMBED_DIM], fc1024)?;
            avsc_shared::npy::write_f32(&dir.join(format!("{}.fc10.npy", role.name())), &[n, NUM_CLASSES], fc10)?;
        }
        let index = Index {
            schema_version: SCHEMA_VERSION,
            size: self.size.to_string(),
            roles: self.data.keys().copied().collect(),
            items: self.items.clone(),
            phase1: self.phase1.clone(),
            fingerprint: self.fingerprint(),
        };
        avsc_shared::write_atomic(&dir.join("index.json"), serde_json::to_string_pretty(&index)?.as_bytes())
    }

    pub fn read(dir: &Path) -> Result<EmbeddingSet> {
        let path = dir.join("index.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read (run `avsc-host embed` first)", path.display()))?;
        let index: Index = serde_json::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        ensure!(
            index.schema_version == SCHEMA_VERSION,
            "{}: schema_version {} (this build reads {SCHEMA_VERSION})",
            path.display(),
            index.schema_version
        );
        let n = index.items.len();
        let mut data = BTreeMap::new();
        for role in &index.roles {
            let load = |kind: &str, d: usize| -> Result<Vec<f32>> {
                let p = dir.join(format!("{}.{kind}.npy", role.name()));
                let a = avsc_shared::npy::read(&p)?;
                ensure!(a.shape == [n, d], "{}: shape {:?}, expected [{n}, {d}]", p.display(), a.shape);
                Ok(a.data)
            };
            let fc1024 = load("fc1024", EMBED_DIM)?;
            let fc10 = load("fc10", NUM_CLASSES)?;
            data.insert(*role, (fc1024, fc10));
        }
        Ok(EmbeddingSet {
            items: index.items,
            size: index.size.parse()?,
            phase1: index.phase1,
            data,
            fingerprint: Default::default(),
        })
    }
}

/// Options of [`run`].
pub struct EmbedArgs {
    pub cache: PathBuf,
    pub runs: PathBuf,
    pub size: SizePreset,
    /// Evenly spaced frames per clip for the visual mean (0: all).
    pub frames: usize,
    pub batch: usize,
    pub out: PathBuf,
    /// Where the backbones run.
    pub device: ComputeDevice,
}

/// Embed every clip of the cache with each of the five backbones found under `runs`.
pub fn run(a: &EmbedArgs) -> Result<EmbeddingSet> {
    let cache = Cache::open(&a.cache)?;
    let items: Vec<CacheItem> = cache.manifest.items.clone();
    if items.is_empty() {
        bail!("{}: the cache has no clips", a.cache.display());
    }
    let mut set = EmbeddingSet::new(items, a.size);
    set.phase1 = Some(common_split(&a.runs)?);
    for role in Role::BACKBONES {
        let model = model_path(&a.runs, role);
        if !model.exists() {
            bail!("{}: missing (train the {} network first)", model.display(), role.name());
        }
        let t0 = std::time::Instant::now();
        let (fc1024, fc10) = embed_role(&cache, &set.items, role, &model, a)?;
        eprintln!("embed {}: {} clips in {:.1} s", role.name(), set.items.len(), t0.elapsed().as_secs_f64());
        set.insert(role, fc1024, fc10);
    }
    set.write(&a.out)?;
    Ok(set)
}

/// The split shared by the five Phase-I runs under `runs` (their `split.json`): Phase II
/// validates on clips no backbone trained on only when all five held out the same clips.
pub fn common_split(runs: &Path) -> Result<SplitRecord> {
    let mut first: Option<(Role, SplitRecord)> = None;
    for role in Role::BACKBONES {
        let dir = runs.join(role.name());
        let rec = SplitRecord::read(&dir).with_context(|| {
            format!("the {} run does not say which clips it trained on (train it again)", role.name())
        })?;
        match &first {
            None => first = Some((role, rec)),
            Some((r0, rec0)) => {
                let same_clips = rec.train == rec0.train && rec.validation == rec0.validation;
                ensure!(
                    same_clips,
                    "the {} and {} runs trained on different splits (split {} / {}, val fraction {} / {}, seed {} / {}, \
                     cache {} / {}): Phase II would validate on clips a backbone trained on; train all five with the \
                     same --split, --val-fraction, --seed and cache",
                    r0.name(),
                    role.name(),
                    rec0.split,
                    rec.split,
                    rec0.val_fraction,
                    rec.val_fraction,
                    rec0.seed,
                    rec.seed,
                    rec0.cache,
                    rec.cache
                );
            }
        }
    }
    Ok(first.expect("five backbones").1)
}

fn embed_role(
    cache: &Cache,
    items: &[CacheItem],
    role: Role,
    model: &Path,
    a: &EmbedArgs,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let device = a.device.open()?;
    // The one role -> network map (the export's), on the embedding device.
    let net = crate::export::Backbone::load_on(role, a.size, model, &device)?;
    embed_clips(&net, cache, items, role, a, &device)
}

/// The inputs of one clip for `role`: one spectrogram stack, or its (selected) frames.
fn clip_inputs(cache: &Cache, item: &CacheItem, role: Role, frames: usize) -> Result<(Vec<Vec<f32>>, [usize; 3])> {
    let path = Cache::item_path(&cache.root, &item.id);
    if let Some(kind) = feature_kind(role) {
        let clip = cache.read(&item.id)?;
        let stack = stack6(clip.spec(kind), &cache.manifest.feature_preset.deltas);
        return Ok((vec![stack.data], stack.shape));
    }
    let (h, _) = ClipData::read_frames(&path, &[])?;
    ensure!(h.n_frames > 0, "{}: no frames", path.display());
    let k = if frames == 0 { h.n_frames } else { frames.min(h.n_frames) };
    let which: Vec<usize> = (0..k).map(|j| (2 * j + 1) * h.n_frames / (2 * k)).collect();
    let (_, imgs) = ClipData::read_frames(&path, &which)?;
    let norm = normalisation(role);
    let s = cache.manifest.frame_preset.size;
    Ok((imgs.iter().map(|f| normalise(f, &norm)).collect(), [3, s, s]))
}

fn embed_clips(
    net: &crate::export::Backbone,
    cache: &Cache,
    items: &[CacheItem],
    role: Role,
    a: &EmbedArgs,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let pb = crate::progress::bar(items.len(), &format!("embed {}", role.name()), "clips");
    let mut fc1024 = Vec::with_capacity(items.len() * EMBED_DIM);
    let mut fc10 = Vec::with_capacity(items.len() * NUM_CLASSES);
    let per_chunk = if role.is_audio() { a.batch.max(1) } else { (a.batch / a.frames.max(1)).max(1) };
    for chunk in items.chunks(per_chunk) {
        let inputs: Vec<(Vec<Vec<f32>>, [usize; 3])> =
            chunk.par_iter().map(|it| clip_inputs(cache, it, role, a.frames)).collect::<Result<_>>()?;
        let shape = inputs[0].1;
        let views: Vec<&Vec<f32>> = inputs.iter().flat_map(|(v, _)| v).collect();
        let (e1024, e10) = forward_views(net, &views, shape, a.batch.max(1), device)?;
        let mut row = 0;
        for (v, _) in &inputs {
            let k = v.len();
            fc1024.extend(mean_rows(&e1024[row * EMBED_DIM..(row + k) * EMBED_DIM], EMBED_DIM));
            fc10.extend(mean_rows(&e10[row * NUM_CLASSES..(row + k) * NUM_CLASSES], NUM_CLASSES));
            row += k;
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok((fc1024, fc10))
}

/// Both embeddings of each view, in batches.
pub fn forward_views(
    net: &crate::export::Backbone,
    views: &[&Vec<f32>],
    shape: [usize; 3],
    batch: usize,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let [c, h, w] = shape;
    let (mut e1024, mut e10) = (Vec::new(), Vec::new());
    for part in views.chunks(batch) {
        let flat: Vec<f32> = part.iter().flat_map(|v| v.iter().copied()).collect();
        let x = Tensor::<4>::from_data(TensorData::new(flat, [part.len(), c, h, w]), device);
        let e = net.forward(x);
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
        e1024.extend(vec(e.fc1024)?);
        e10.extend(vec(e.logits)?);
    }
    Ok((e1024, e10))
}

/// The mean of `rows` (row-major, width `d`).
fn mean_rows(rows: &[f32], d: usize) -> Vec<f32> {
    let k = rows.len() / d;
    let mut m = vec![0.0f64; d];
    for r in rows.chunks(d) {
        for (a, &v) in m.iter_mut().zip(r) {
            *a += v as f64;
        }
    }
    m.into_iter().map(|v| (v / k as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, label: &str, split: &str) -> CacheItem {
        CacheItem { id: id.into(), label: Some(label.into()), location: id.into(), splits: vec![split.into()] }
    }

    #[test]
    fn phase_one_runs_must_share_one_split() {
        let runs = tempfile::tempdir().unwrap();
        let rec = |seed: u64, val: &[&str]| SplitRecord {
            cache: "C".into(),
            split: "fold1_train".into(),
            val_fraction: 0.2,
            seed,
            train: vec!["a".into(), "b".into()],
            validation: val.iter().map(|s| s.to_string()).collect(),
        };
        for role in Role::BACKBONES {
            rec(0, &["c"]).write(&runs.path().join(role.name())).unwrap();
        }
        assert_eq!(common_split(runs.path()).unwrap(), rec(0, &["c"]));
        rec(3, &["d"]).write(&runs.path().join("vis_conv")).unwrap();
        let e = common_split(runs.path()).unwrap_err().to_string();
        assert!(e.contains("aud_mel and vis_conv") && e.contains("seed 0 / 3"), "{e}");
        std::fs::remove_file(runs.path().join("aud_gam/split.json")).unwrap();
        let e = format!("{:#}", common_split(runs.path()).unwrap_err());
        assert!(e.contains("aud_gam run does not say which clips") && e.contains("split.json"), "{e}");
    }

    #[test]
    fn round_trip_and_lookup() {
        let items = vec![item("a", "park", "fold1_train"), item("b", "bus", "fold1_evaluate")];
        let mut set = EmbeddingSet::new(items, SizePreset::Tiny);
        let fc1024: Vec<f32> = (0..2 * 1024).map(|i| i as f32).collect();
        let fc10: Vec<f32> = (0..20).map(|i| -(i as f32)).collect();
        set.insert(Role::AudMel, fc1024, fc10);
        let dir = tempfile::tempdir().unwrap();
        set.write(dir.path()).unwrap();
        let back = EmbeddingSet::read(dir.path()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.fingerprint(), set.fingerprint(), "the same set after a round trip");
        assert_eq!(back.get(Role::AudMel, EmbeddingKind::Fc1024, 1)[0], 1024.0);
        assert_eq!(back.get(Role::AudMel, EmbeddingKind::Fc10, 1), &fc10_row(1)[..]);
        assert_eq!(back.labelled("fold1_evaluate"), vec![1]);
        assert_eq!(back.label(0), Some(4), "park is class 4");

        // A truncated array is refused with its name.
        std::fs::write(dir.path().join("aud_mel.fc10.npy"), b"\x93NUMPY").unwrap();
        let e = format!("{:#}", EmbeddingSet::read(dir.path()).unwrap_err());
        assert!(e.contains("aud_mel.fc10.npy"), "{e}");
    }

    fn fc10_row(r: usize) -> Vec<f32> {
        (r * 10..r * 10 + 10).map(|i| -(i as f32)).collect()
    }

    #[test]
    fn mean_of_rows() {
        assert_eq!(mean_rows(&[1.0, 2.0, 3.0, 6.0], 2), vec![2.0, 4.0]);
    }
}
