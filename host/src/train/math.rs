//! The numerical pieces of Phase-I training: the Beta sampler and mixup, the KL loss,
//! the cosine learning rate, Adam with the coupled L2 term, and a deterministic
//! (thread-independent) parameter initialisation.

use crate::rng::SplitMix64;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Gradients, TensorData};

/// Gamma(shape, 1) by Marsaglia–Tsang (with the `U^(1/a)` boost for `shape < 1`).
pub fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    assert!(shape > 0.0, "gamma shape must be positive");
    if shape < 1.0 {
        let u = rng.uniform().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.uniform().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
pub fn beta(rng: &mut SplitMix64, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    if x + y == 0.0 {
        0.5
    } else {
        x / (x + y)
    }
}

/// Mixup in place on a batch: row `i` becomes `lambda * row_i + (1 - lambda) * row_perm[i]`,
/// for the inputs `x` (`batch` rows) and the soft labels `y` (`batch` rows of class scores).
pub fn mixup(x: &mut [f32], y: &mut [f32], batch: usize, lambda: f32, perm: &[usize]) {
    assert_eq!(perm.len(), batch);
    for buf in [x, y] {
        let row = buf.len() / batch;
        let orig = buf.to_vec();
        for (i, &j) in perm.iter().enumerate() {
            let (a, b) = (&orig[i * row..(i + 1) * row], &orig[j * row..(j + 1) * row]);
            for ((d, &p), &q) in buf[i * row..(i + 1) * row].iter_mut().zip(a).zip(b) {
                *d = lambda * p + (1.0 - lambda) * q;
            }
        }
    }
}

/// KL divergence Σ_c y log(y / ŷ), ŷ = softmax(logits), averaged over the batch. `targets`
/// is `[batch, classes]` row-major (rows sum to 1). The Σ y log y part is a constant for the
/// gradient; it is included so the value is the divergence itself (0 at a perfect fit).
pub fn kl_loss(logits: Tensor<2>, targets: &[f32]) -> Tensor<1> {
    let [b, c] = logits.dims();
    assert_eq!(targets.len(), b * c, "targets do not match the logits");
    let entropy: f64 = targets.iter().filter(|&&t| t > 0.0).map(|&t| t as f64 * (t as f64).ln()).sum();
    let y = Tensor::<2>::from_data(TensorData::new(targets.to_vec(), [b, c]), &logits.device());
    let cross = (y * log_softmax(logits, 1)).sum().neg();
    (cross + entropy).div_scalar(b as f64)
}

/// Cosine decay from `lr` to `lr_min` over `total` steps, evaluated at step `step`.
pub fn cosine_lr(lr: f64, lr_min: f64, step: usize, total: usize) -> f64 {
    let t = if total <= 1 { 0.0 } else { step as f64 / (total - 1) as f64 };
    lr_min + 0.5 * (lr - lr_min) * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// ‖Θ‖² over the trainable parameters (BatchNorm running statistics excluded).
pub fn squared_norm<M: Module>(module: &M) -> f64 {
    let mut total = 0.0;
    crate::nets::visit_trainable(module, |_, read| {
        total += read().iter().map(|&x| x as f64 * x as f64).sum::<f64>();
    });
    total
}

/// Redraw every randomly initialised (non-constant) parameter from burn's default
/// Kaiming-uniform distribution, U(-1/√fan_in, 1/√fan_in), with `SplitMix64(seed)`: burn's
/// own initialisers draw from a process-wide generator that other threads share, this does
/// not. fan_in: `[in, out]` Linear weights → in; `[out, in, k...]` conv weights → in·k...;
/// a bias takes the fan_in of the weight before it. Constant parameters (norm scales and
/// shifts, layer scales, running statistics) are kept.
pub fn redraw<M: Module>(module: M, seed: u64) -> M {
    struct Redraw(SplitMix64, usize);
    impl ModuleMapper for Redraw {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Redraw(rng, last_fan_in) = self;
            param.map(|t| {
                let v: Vec<f32> = t.clone().into_data().try_to_vec().expect("f32 parameters");
                if v.iter().all(|&x| x == v[0]) {
                    return t;
                }
                let dims = t.dims();
                let fan_in = match D {
                    0 | 1 => *last_fan_in,
                    2 => dims[0],
                    _ => dims[1..].iter().product(),
                };
                *last_fan_in = fan_in;
                let b = 1.0 / (fan_in.max(1) as f64).sqrt();
                let data: Vec<f32> = (0..v.len()).map(|_| rng.range(-b, b) as f32).collect();
                Tensor::from_data(TensorData::new(data, t.shape()), &t.device())
            })
        }
    }
    module.map(&mut Redraw(SplitMix64::new(seed), 1))
}

/// Adam hyper-parameters (Keras defaults).
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// λ of λ/2‖Θ‖²: its gradient λΘ is added to every parameter gradient (coupled decay).
    pub l2: f64,
}

/// Adam's moments, per parameter in the module's visiting order (flattened).
#[derive(Default)]
pub struct AdamState {
    /// Steps taken.
    pub step: u64,
    pub moments: Vec<Option<(Tensor<1>, Tensor<1>)>>,
}

/// One Adam step on every parameter that has a gradient in `grads`.
pub fn adam_step<M: Module>(module: M, grads: &Gradients, state: &mut AdamState, p: AdamParams, lr: f64) -> M {
    struct Step<'a> {
        grads: &'a Gradients,
        state: &'a mut AdamState,
        index: usize,
        p: AdamParams,
        lr: f64,
    }
    impl ModuleMapper for Step<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let i = self.index;
            self.index += 1;
            let (id, t, mapper) = param.consume();
            let Some(g) = t.grad(self.grads) else {
                return Param::from_mapped_value(id, t, mapper);
            };
            let shape = t.shape();
            let n = shape.num_elements();
            let theta = t.without_autodiff().reshape([n]);
            let p = self.p;
            let g = g.reshape([n]) + theta.clone().mul_scalar(p.l2);
            if self.state.moments.len() <= i {
                self.state.moments.resize(i + 1, None);
            }
            let (m, v) = match self.state.moments[i].take() {
                Some((m, v)) => (
                    m.mul_scalar(p.beta1) + g.clone().mul_scalar(1.0 - p.beta1),
                    v.mul_scalar(p.beta2) + g.square().mul_scalar(1.0 - p.beta2),
                ),
                None => (g.clone().mul_scalar(1.0 - p.beta1), g.square().mul_scalar(1.0 - p.beta2)),
            };
            let t_step = self.state.step as i32;
            let c1 = 1.0 - p.beta1.powi(t_step);
            let c2 = 1.0 - p.beta2.powi(t_step);
            let update = m.clone().div_scalar(c1) / v.clone().div_scalar(c2).sqrt().add_scalar(p.eps);
            let new = (theta - update.mul_scalar(self.lr)).reshape(shape).autodiff().require_grad();
            self.state.moments[i] = Some((m, v));
            Param::from_mapped_value(id, new, mapper)
        }
    }
    state.step += 1;
    module.map(&mut Step { grads, state, index: 0, p, lr })
}

/// Serialise Adam's moments: u64 step, u64 count, then per slot a u64 length (0 = none) and
/// the first and second moments as f32 LE.
pub fn encode_adam(state: &AdamState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&state.step.to_le_bytes());
    out.extend_from_slice(&(state.moments.len() as u64).to_le_bytes());
    for slot in &state.moments {
        match slot {
            None => out.extend_from_slice(&0u64.to_le_bytes()),
            Some((m, v)) => {
                let m: Vec<f32> = m.clone().into_data().try_to_vec().expect("f32 moments");
                let v: Vec<f32> = v.clone().into_data().try_to_vec().expect("f32 moments");
                out.extend_from_slice(&(m.len() as u64).to_le_bytes());
                for x in m.iter().chain(&v) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    out
}

/// Inverse of [`encode_adam`], onto `device`.
pub fn decode_adam(bytes: &[u8], device: &Device) -> anyhow::Result<AdamState> {
    let mut pos = 0usize;
    let u64_at = |pos: &mut usize| -> anyhow::Result<u64> {
        let b = bytes.get(*pos..*pos + 8).ok_or_else(|| anyhow::anyhow!("truncated optimizer state"))?;
        *pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    };
    let step = u64_at(&mut pos)?;
    let count = u64_at(&mut pos)? as usize;
    let mut moments = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u64_at(&mut pos)? as usize;
        if n == 0 {
            moments.push(None);
            continue;
        }
        let body = bytes.get(pos..pos + 8 * n).ok_or_else(|| anyhow::anyhow!("truncated optimizer state"))?;
        pos += 8 * n;
        let f: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let m = Tensor::<1>::from_data(TensorData::new(f[..n].to_vec(), [n]), device);
        let v = Tensor::<1>::from_data(TensorData::new(f[n..].to_vec(), [n]), device);
        moments.push(Some((m, v)));
    }
    anyhow::ensure!(pos == bytes.len(), "optimizer state has trailing bytes");
    Ok(AdamState { step, moments })
}
