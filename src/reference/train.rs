//! f64 references of the training kernels ([`crate::ops::train`]).

/// The softmax cross-entropy of `logits` `[B, K]` against `labels`: each row's loss and
/// the gradient of the batch's mean loss.
pub fn softmax_cross_entropy(logits: &[f64], k: usize, labels: &[u32]) -> (Vec<f64>, Vec<f64>) {
    let b = labels.len();
    let mut loss = Vec::with_capacity(b);
    let mut grad = Vec::with_capacity(b * k);
    for (row, &label) in logits.chunks(k).zip(labels) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        let picked = row.get(label as usize).copied().unwrap_or(f64::NAN);
        loss.push(s.ln() + m - picked);
        for (j, v) in row.iter().enumerate() {
            let hot = if j == label as usize { 1.0 } else { 0.0 };
            grad.push(((v - m).exp() / s - hot) / b as f64);
        }
    }
    (loss, grad)
}

/// One SGD step (PyTorch's rule) on `w` and its momentum buffer `v`.
pub fn sgd_step(w: &mut [f64], g: &[f64], v: &mut [f64], (lr, mu, wd): (f64, f64, f64)) {
    for i in 0..w.len() {
        let mut gi = g[i] + wd * w[i];
        if mu > 0.0 {
            v[i] = mu * v[i] + gi;
            gi = v[i];
        }
        w[i] -= lr * gi;
    }
}

/// AdamW's step `t` on `w` with moments `m` and `v`; `h` = (lr, beta1, beta2, eps, wd).
pub fn adam_step(
    w: &mut [f64],
    g: &[f64],
    (m, v): (&mut [f64], &mut [f64]),
    t: i32,
    (lr, b1, b2, eps, wd): (f64, f64, f64, f64, f64),
) {
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    for i in 0..w.len() {
        w[i] *= 1.0 - lr * wd;
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        w[i] -= lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + eps);
    }
}

/// Fake quantization of `x` viewed as `[outer, channels, inner]` in f32, as the kernel
/// computes it: `q = clamp(round_half_even(x * (1 / s)) + zp, qmin, qmax)`, `(q - zp) *
/// s`; also whether each element's unclamped code lies inside (the STE's mask).
pub fn fake_quant(
    x: &[f32],
    (scales, zps): (&[f32], &[i32]),
    inner: usize,
    (qmin, qmax): (i32, i32),
) -> (Vec<f32>, Vec<bool>) {
    let c = scales.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i / inner % c;
            let (s, z) = (scales[k], zps[k] as f32);
            let r = (v * (1.0f32 / s)).round_ties_even() + z;
            let q = r.clamp(qmin as f32, qmax as f32);
            ((q - z) * s, r >= qmin as f32 && r <= qmax as f32)
        })
        .unzip()
}

/// LSQ's scale gradient per channel (f64 sums of the f32 terms), times `grad_scale`.
pub fn lsq_scale_grad(
    x: &[f32],
    dy: &[f32],
    (scales, zps): (&[f32], &[i32]),
    inner: usize,
    (qmin, qmax): (i32, i32),
    grad_scale: f64,
) -> Vec<f64> {
    let c = scales.len();
    let mut out = vec![0.0f64; c];
    for (i, (&v, &g)) in x.iter().zip(dy).enumerate() {
        let k = i / inner % c;
        let (z, u) = (zps[k] as f32, v * (1.0f32 / scales[k]));
        let r = u.round_ties_even() + z;
        let d = if r < qmin as f32 {
            f64::from(qmin as f32 - z)
        } else if r > qmax as f32 {
            f64::from(qmax as f32 - z)
        } else {
            f64::from(r - z) - f64::from(u)
        };
        out[k] += f64::from(g) * d;
    }
    out.iter().map(|v| v * grad_scale).collect()
}

/// The minimum and maximum of each channel of `x` viewed as `[outer, channels, inner]`.
pub fn channel_ranges(x: &[f32], channels: usize, inner: usize) -> Vec<(f32, f32)> {
    let mut r = vec![(f32::INFINITY, f32::NEG_INFINITY); channels];
    for (i, &v) in x.iter().enumerate() {
        let k = i / inner % channels;
        r[k] = (r[k].0.min(v), r[k].1.max(v));
    }
    r
}

/// The fake quantization parameters `(scale, zero point)` of the range `[lo, hi]` with
/// codes `[qmin, qmax]`, as `ops::train::observe_range` computes them in f32: symmetric
/// (zero point 0, `max(|lo|, |hi|) / ((qmax - qmin) / 2)`) or asymmetric (the range
/// widened to hold 0, `(hi - lo) / (qmax - qmin)`, zero point `qmin - round(lo / scale)`
/// clamped to the codes); scales below `min_scale` become `min_scale`.
pub fn range_params(
    (lo, hi): (f32, f32),
    symmetric: bool,
    (qmin, qmax): (i32, i32),
    min_scale: f32,
) -> (f32, i32) {
    let (ql, qh) = (qmin as f32, qmax as f32);
    if symmetric {
        return (
            (lo.abs().max(hi.abs()) / ((qh - ql) / 2.0)).max(min_scale),
            0,
        );
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let s = ((hi - lo) / (qh - ql)).max(min_scale);
    let z = (ql - (lo / s).round_ties_even()).clamp(ql, qh);
    (s, z as i32)
}

/// A convolution's input and weight gradients in f64 from the output's gradient `dy`
/// (NHWC `[B, OH, OW, OC]`): `dx` (NHWC, the input's shape) and `dw` (OIHW), the sums
/// over every (input, weight, output) triple the forward convolution of `s` multiplies.
pub fn conv2d_grads_f64(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    s: &crate::desc::conv::ConvShape,
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    super::conv::conv_terms(s, |o, xi, wi| {
        let g = f64::from(dy[o]);
        dx[xi] += g * f64::from(w[wi]);
        dw[wi] += g * f64::from(x[xi]);
    });
    (dx, dw)
}
