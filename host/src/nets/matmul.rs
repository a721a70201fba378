//! Convolutions written as matrix products, for burn's `flex` CPU backend.
//!
//! flex runs a convolution's backward pass as a transposed convolution (for the input's
//! gradient) and as a convolution whose kernel is the whole output map (for the weight's
//! gradient), each behind transposing copies. On the audio network's shapes (few channels,
//! large maps) that costs far more than the matrix products the same numbers are (tiny audio
//! network, batch 32, one thread: the stem's forward and backward about 600 ms as a flex
//! convolution, 260 ms here; a 1x1 16→4 layer at 64x152 94 ms against 27 ms). The
//! values are the same up to float summation order; the parameters stay in the layers' own
//! modules, so checkpoints and the ONNX export do not change.

use super::ConvBn;
use burn::prelude::*;
use burn::tensor::TensorData;

/// The convolutions (before BatchNorm) of pointwise layers (1x1, stride 1, no padding, no
/// bias) that read the same input, as one matrix product of their stacked weights with the
/// input: `[batch, c, h, w]` → one `[batch, c_out_i, h, w]` per layer. The backward pass is
/// then two matrix products, and the input's gradient is accumulated once, not once per layer.
pub fn pointwise_siblings(layers: &[&ConvBn], x: Tensor<4>) -> Vec<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let sizes: Vec<usize> = layers.iter().map(|l| l.conv.weight.dims()[0]).collect();
    let weights = layers
        .iter()
        .zip(&sizes)
        .map(|(l, &o)| {
            assert_eq!(l.conv.weight.dims(), [o, c, 1, 1], "pointwise layer on {c} channels expected");
            l.conv.weight.val().reshape([o, c])
        })
        .collect();
    let total = sizes.iter().sum();
    let y = Tensor::cat(weights, 0).unsqueeze::<3>().matmul(x.reshape([n, c, h * w]));
    y.reshape([n, total, h, w]).split_with_sizes(sizes, 1)
}

/// Whether `x` lives on the `flex` CPU backend (with or without autodiff).
pub fn on_flex(x: &Tensor<4>) -> bool {
    x.device().without_autodiff() == Device::flex()
}

/// A "same" convolution (odd kernel, stride 1, zero padding of half the kernel, no bias) of an
/// input that carries no gradient (a network's input), as the matrix product of the weight
/// `[c_out, c, kh, kw]` with the input's patches `[batch, c * kh * kw, h * w]`, gathered here
/// on the host. The weight's gradient is then one matrix product too. Panics when `x` requires
/// a gradient (the patches are a constant).
pub fn same_conv_of_input(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    assert!(!x.is_require_grad(), "same_conv_of_input: the input must not need a gradient");
    let [n, c, h, w] = x.dims();
    let [o, wc, kh, kw] = weight.dims();
    assert!(wc == c && kh % 2 == 1 && kw % 2 == 1, "weight {:?} on {c} channels", weight.dims());
    let device = x.device();
    let data: Vec<f32> = x.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 input");
    let cols = patches(&data, [n, c, h, w], [kh, kw]);
    let cols = Tensor::<3>::from_data(TensorData::new(cols, [n, c * kh * kw, h * w]), &device);
    weight.reshape([o, c * kh * kw]).unsqueeze::<3>().matmul(cols).reshape([n, o, h, w])
}

/// im2col for a "same" convolution: row `(ci * kh + i) * kw + j` of example `b` holds input
/// channel `ci` shifted by `(i - kh/2, j - kw/2)`, zero outside the map.
fn patches(x: &[f32], [n, c, h, w]: [usize; 4], [kh, kw]: [usize; 2]) -> Vec<f32> {
    use rayon::prelude::*;
    let (ph, pw) = (kh / 2, kw / 2);
    let rows = c * kh * kw;
    let mut out = vec![0.0f32; n * rows * h * w];
    out.par_chunks_mut(h * w).enumerate().for_each(|(r, dst)| {
        let (b, row) = (r / rows, r % rows);
        let (ci, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
        let src = &x[(b * c + ci) * h * w..][..h * w];
        // Output column ox reads input column ox + j - pw where that lies inside the map.
        let (x0, x1) = (pw.saturating_sub(j), (w + pw).saturating_sub(j).min(w));
        for oy in 0..h {
            let Some(sy) = (oy + i).checked_sub(ph).filter(|&sy| sy < h) else { continue };
            if x0 < x1 {
                let s = sy * w + x0 + j - pw;
                dst[oy * w + x0..oy * w + x1].copy_from_slice(&src[s..s + (x1 - x0)]);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::ConvBnConfig;
    use burn::tensor::Distribution;

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        let (a, b): (Vec<f32>, Vec<f32>) = (a.into_data().try_to_vec().unwrap(), b.into_data().try_to_vec().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn pointwise_siblings_are_the_convolutions_forward_and_backward() {
        let device = Device::flex().autodiff();
        let layers: Vec<ConvBn> = [3, 5, 2].iter().map(|&o| ConvBnConfig::new(4, o, 1, 1e-3).init(&device)).collect();
        let refs: Vec<&ConvBn> = layers.iter().collect();
        let x0 = Tensor::<4>::random([2, 4, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let (xa, xb) = (x0.clone().require_grad(), x0.require_grad());
        let ya: Vec<Tensor<4>> = layers.iter().map(|l| l.conv.forward(xa.clone())).collect();
        let yb = pointwise_siblings(&refs, xb.clone());
        // A loss that weights every output differently.
        let loss = |ys: &[Tensor<4>]| {
            ys.iter()
                .enumerate()
                .map(|(k, y)| (y.clone() * y.clone()).sum().mul_scalar(k as f64 + 1.0))
                .reduce(|a, b| a + b)
                .unwrap()
        };
        let (ga, gb) = (loss(&ya).backward(), loss(&yb).backward());
        for (a, b) in ya.iter().zip(&yb) {
            assert_eq!(a.dims(), b.dims());
            assert!(max_diff(a.clone().without_autodiff(), b.clone().without_autodiff()) < 1e-5);
        }
        assert!(max_diff(xa.grad(&ga).unwrap(), xb.grad(&gb).unwrap()) < 1e-4);
        for l in &layers {
            let g = l.conv.weight.grad(&ga).unwrap();
            let h = l.conv.weight.grad(&gb).unwrap();
            assert!(g.clone().abs().sum().into_scalar::<f32>() > 0.0, "a gradient that is all zero proves nothing");
            assert!(max_diff(g, h) < 1e-4);
        }
    }

    #[test]
    fn same_conv_of_input_is_the_convolution_forward_and_backward() {
        let device = Device::flex().autodiff();
        // A non-square kernel and a map narrower than it in one direction: every border case.
        for (k, [h, w]) in [([3, 3], [6, 9]), ([3, 5], [4, 3]), ([1, 1], [2, 3])] {
            let conv = ConvBnConfig::new(3, 4, 1, 1e-3).kernel(k).same().init(&device).conv;
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            let (ya, yb) = (conv.forward(x.clone()), same_conv_of_input(x, conv.weight.val()));
            assert!(max_diff(ya.clone().without_autodiff(), yb.clone().without_autodiff()) < 1e-5, "{k:?}");
            let target = Tensor::<4>::random(ya.dims(), Distribution::Normal(0.0, 1.0), &device);
            let ga = (ya * target.clone()).sum().backward();
            let gb = (yb * target).sum().backward();
            let (a, b) = (conv.weight.grad(&ga).unwrap(), conv.weight.grad(&gb).unwrap());
            assert!(max_diff(a, b) < 1e-4, "{k:?}");
        }
    }

    #[test]
    #[should_panic(expected = "must not need a gradient")]
    fn same_conv_of_input_refuses_a_tracked_input() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::zeros([1, 1, 3, 3], &device).require_grad();
        same_conv_of_input(x, Tensor::zeros([1, 1, 3, 3], &device));
    }

    #[test]
    fn on_flex_with_and_without_autodiff() {
        assert!(on_flex(&Tensor::<4>::zeros([1, 1, 1, 1], &Device::flex())));
        assert!(on_flex(&Tensor::<4>::zeros([1, 1, 1, 1], &Device::flex().autodiff())));
    }
}
