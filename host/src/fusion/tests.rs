use super::*;
use crate::nets::resinception::ResInceptionConfig;
use crate::nets::trainable_params;
use burn::module::ModuleVisitor;
use burn::tensor::{Distribution, TensorData};

fn t2(v: &[f32], shape: [usize; 2]) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
}

/// A head with hand-chosen parameters, d = 2, three audio + two visual inputs.
fn hand_head(w_av: Option<[f32; 4]>, bias: bool, concat: bool) -> FusionHead {
    let device = Device::flex();
    let w = [1.0, 0.5, 2.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 2.0];
    FusionHead {
        w: Param::from_tensor(t2(&w, [5, 2])),
        w_av: w_av.map(|v| Param::from_tensor(t2(&v, [2, 2]))),
        b: bias.then(|| Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.1f32, -0.2], [2]), &device))),
        fc: LinearConfig::new(if concat { 4 } else { 2 }, NUM_CLASSES).init(&device),
        n_audio: 3,
        concat,
    }
}

/// e_1..e_5 = [1,2], [3,4], [5,6], [7,8], [9,10]; weighted by w: [1,1], [6,4], [0,6], [7,8],
/// [4.5,20]; audio sum [7,11], visual sum [11.5,28].
fn hand_input() -> Tensor<3> {
    let e: Vec<f32> = (1..=10).map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(e, [1, 5, 2]), &Device::flex())
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

#[test]
fn f1_f4_weighted_sum_plus_bias() {
    // 7 + 11.5 + 0.1, 11 + 28 - 0.2
    close(&values(hand_head(None, true, false).fuse(hand_input())), &[18.6, 38.8]);
}

#[test]
fn f2_f5_two_level_weighting() {
    // [7,11]⊙[2,1] + [11.5,28]⊙[0.5,-1] + b = [14 + 5.75 + 0.1, 11 - 28 - 0.2]
    let head = hand_head(Some([2.0, 1.0, 0.5, -1.0]), true, false);
    close(&values(head.fuse(hand_input())), &[19.85, -17.2]);
}

#[test]
fn f3_f6_concatenation() {
    close(&values(hand_head(None, false, true).fuse(hand_input())), &[7.0, 11.0, 11.5, 28.0]);
}

#[test]
fn the_dense_layer_reads_the_fused_embedding() {
    let head = hand_head(None, true, false);
    let e = head.forward(hand_input());
    let want = head.fc.forward(t2(&[18.6, 38.8], [1, 2]));
    close(&values(e.logits), &values(want));
}

#[test]
fn shapes_and_trainable_parameters_of_every_head() {
    let device = Device::flex();
    // w (k·d), w_a/w_v (2d), b (d), FC (fused·10 + 10).
    let cases = [
        (FusionKind::F1, Modalities::Av, 5 * 1024 + 1024 + 1024 * 10 + 10),
        (FusionKind::F2, Modalities::Av, 5 * 1024 + 2 * 1024 + 1024 + 1024 * 10 + 10),
        (FusionKind::F3, Modalities::Av, 5 * 1024 + 2048 * 10 + 10),
        (FusionKind::F4, Modalities::Av, 50 + 10 + 110),
        (FusionKind::F5, Modalities::Av, 50 + 20 + 10 + 110),
        (FusionKind::F6, Modalities::Av, 50 + 20 * 10 + 10),
        (FusionKind::F4, Modalities::Audio, 30 + 10 + 110),
        (FusionKind::F4, Modalities::Visual, 20 + 10 + 110),
    ];
    for (kind, modalities, params) in cases {
        let spec = FusionSpec::new(kind, modalities).unwrap();
        let head = spec.init(&device);
        assert_eq!(trainable_params(&head), params, "{kind} {modalities:?}");
        let x = Tensor::<3>::random([3, spec.k(), spec.d()], Distribution::Default, &device);
        let e = head.forward(x);
        assert_eq!(e.fc1024.dims(), [3, spec.fused_dim()], "{kind}");
        assert_eq!(e.logits.dims(), [3, NUM_CLASSES], "{kind}");
    }
    assert!(FusionSpec::new(FusionKind::F5, Modalities::Audio).is_err());
    assert_eq!(FusionKind::parse("F3").unwrap(), FusionKind::F3);
    assert_eq!(FusionKind::F6.to_string(), "f6");
    assert!(FusionKind::parse("f7").is_err());
}

#[test]
fn initial_fusion_is_the_plain_sum() {
    let spec = FusionSpec::new(FusionKind::F4, Modalities::Av).unwrap();
    let head = spec.init(&Device::flex());
    let x = Tensor::<3>::random([2, 5, 10], Distribution::Default, &Device::flex());
    let want = values(x.clone().sum_dim(1).reshape([2, 10]));
    close(&values(head.fuse(x)), &want);
}

/// Counts the parameters of a module with and without a gradient.
struct GradCount<'a> {
    grads: &'a burn::tensor::Gradients,
    with: usize,
    without: usize,
}

impl ModuleVisitor for GradCount<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match param.val().grad(self.grads) {
            Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => self.with += 1,
            _ => self.without += 1,
        }
    }
}

fn grad_count<M: Module>(m: &M, grads: &burn::tensor::Gradients) -> (usize, usize) {
    let mut c = GradCount { grads, with: 0, without: 0 };
    m.visit(&mut c);
    (c.with, c.without)
}

/// Phase II end to end on the autodiff device: frozen backbones → embeddings → head → KL.
/// Every head parameter gets a gradient; no backbone parameter does.
#[test]
fn backbones_get_no_gradient() {
    let device = Device::flex().autodiff();
    let backbones: Vec<_> = (0..3).map(|_| ResInceptionConfig::tiny().init(&device).no_grad()).collect();
    let spec = FusionSpec::new(FusionKind::F4, Modalities::Audio).unwrap();
    let head = spec.init(&device);
    let x = Tensor::<4>::random([2, 6, 32, 48], Distribution::Default, &device);
    let logits: Vec<Tensor<2>> = backbones.iter().map(|b| b.forward(x.clone()).logits).collect();
    let stacked = Tensor::stack::<3>(logits, 1);
    let y = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let grads = crate::train::math::kl_loss(head.forward(stacked).logits, &y).backward();
    let (with, without) = grad_count(&head, &grads);
    assert_eq!((with, without), (4, 0), "w, b, FC weight and bias");
    for b in &backbones {
        let (with, without) = grad_count(b, &grads);
        assert_eq!(with, 0);
        assert!(without > 50);
    }
}

/// 40 labelled fold1_train clips (10 classes x 4 locations) with embeddings that carry the
/// label (plus `shift`), and the Phase-I split that held out every class's location 0.
fn small_set(shift: f32) -> EmbeddingSet {
    use crate::cache::CacheItem;
    let mut items = Vec::new();
    for class in 0..NUM_CLASSES {
        for loc in 0..4 {
            items.push(CacheItem {
                id: format!("c{class}-l{loc}"),
                label: Some(avsc_shared::LABELS[class].to_string()),
                location: format!("c{class}-l{loc}"),
                splits: vec!["fold1_train".into()],
            });
        }
    }
    let (val, train): (Vec<&CacheItem>, Vec<&CacheItem>) = items.iter().partition(|c| c.id.ends_with("-l0"));
    let ids = |v: Vec<&CacheItem>| v.iter().map(|c| c.id.clone()).collect();
    let phase1 = crate::train::data::SplitRecord {
        cache: "C".into(),
        split: "fold1_train".into(),
        val_fraction: 0.2,
        seed: 0,
        train: ids(train),
        validation: ids(val),
    };
    let n = items.len();
    let labels: Vec<usize> = items.iter().map(|c| c.label().unwrap().index()).collect();
    let mut set = EmbeddingSet::new(items, crate::nets::SizePreset::Tiny);
    set.phase1 = Some(phase1);
    let mut rng = crate::rng::SplitMix64::new(7);
    for role in Role::BACKBONES {
        let fc1024: Vec<f32> = (0..n * 1024).map(|_| rng.normal() as f32 * 0.1 + shift).collect();
        let fc10: Vec<f32> = (0..n * NUM_CLASSES)
            .map(|i| if i % NUM_CLASSES == labels[i / NUM_CLASSES] { 2.0 } else { 0.0 } + shift)
            .collect();
        set.insert(role, fc1024, fc10);
    }
    set
}

#[test]
fn phase_two_validates_on_exactly_the_clips_phase_one_held_out() {
    let set = small_set(0.0);
    let spec = FusionSpec::new(FusionKind::F4, Modalities::Av).unwrap();
    let d = data::FusionData::new(&set, spec, "fold1_train").unwrap();
    assert_eq!((d.train_len(), crate::train::data::Data::val_len(&d)), (30, 10));
    let mut old = set.clone();
    old.phase1 = None;
    let e = data::FusionData::new(&old, spec, "fold1_train").err().unwrap().to_string();
    assert!(e.contains("run embed again"), "{e}");
}

#[test]
fn a_head_is_retrained_when_its_embeddings_change_and_evaluation_refuses_other_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FusionSpec::new(FusionKind::F4, Modalities::Av).unwrap();
    let cfg = crate::pipeline::fusion_config("fold1_train", 0, 2);
    let (a, b) = (small_set(0.0), small_set(0.5));
    let first = train(&a, spec, &cfg, dir.path()).unwrap();
    assert_eq!(trained_on(dir.path()), Some(a.fingerprint()));
    // Finished and unchanged: resuming keeps it (no epoch trained again).
    let again = train(&a, spec, &cfg, dir.path()).unwrap();
    assert_eq!(again.history, first.history);
    // New embeddings: trained again from the start, not resumed.
    let changed = train(&b, spec, &cfg, dir.path()).unwrap();
    assert_eq!(changed.epochs, 2);
    assert_ne!(changed.history[0].train_loss, first.history[0].train_loss);
    assert_eq!(trained_on(dir.path()), Some(b.fingerprint()));
    assert_ne!(a.fingerprint(), b.fingerprint());

    let eval = tempfile::tempdir().unwrap();
    let heads = [dir.path().to_path_buf()];
    let device = crate::compute::ComputeDevice::Cpu;
    let e = crate::evaluate::run(&a, &heads, "fold1_train", eval.path(), device).err().unwrap().to_string();
    assert!(e.contains("trained on other embeddings"), "{e}");
    assert!(crate::evaluate::run(&b, &heads, "fold1_train", eval.path(), device).is_ok());
}
