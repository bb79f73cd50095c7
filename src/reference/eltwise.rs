//! The elementwise references ([`crate::ops::eltwise`]).

/// The INT8 residual add of [`crate::ops::eltwise::qadd`] for one element, rounded as the
/// kernel rounds it: `va = sa * (qa - za)`, `vb = sb * (qb - zb)`, `v = va + vb`, each
/// once in f32, then the clip and the requantization.
#[allow(clippy::too_many_arguments)]
pub fn qadd(
    (qa, sa, za): (i32, f32, i32),
    (qb, sb, zb): (i32, f32, i32),
    clip: crate::desc::eltwise::Clip,
    (so, zo): (f32, i32),
    (qmin, qmax): (i32, i32),
) -> i32 {
    let va = sa * (qa - za) as f32;
    let vb = sb * (qb - zb) as f32;
    crate::quant::quantize_value(clip.apply(va + vb), so, zo, qmin, qmax)
}

/// Softmax along the last axis (rows of `cols`) in f64.
pub fn softmax_f64(x: &[f64], cols: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        out.extend(row.iter().map(|v| (v - m).exp() / s));
    }
    out
}

/// [`crate::ops::eltwise::layer_norm`] in f64: each row of `cols` values normalized by
/// its mean and biased variance, `(x - mean) / sqrt(var + eps) * gamma + beta` (gamma 1
/// and beta 0 where absent).
pub fn layer_norm_f64(
    x: &[f64],
    cols: usize,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    eps: f64,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols.max(1)) {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let sd = (var + eps).sqrt();
        out.extend(row.iter().enumerate().map(|(j, v)| {
            (v - mean) / sd * gamma.map_or(1.0, |g| g[j]) + beta.map_or(0.0, |b| b[j])
        }));
    }
    out
}

/// [`crate::ops::eltwise::channel_affine`] in f64: `x * scale[c] + shift[c]` along the
/// last axis (`scale.len()` channels).
pub fn channel_affine_f64(x: &[f64], scale: &[f64], shift: &[f64]) -> Vec<f64> {
    let c = scale.len().max(1);
    x.iter()
        .enumerate()
        .map(|(e, &v)| v * scale[e % c] + shift[e % c])
        .collect()
}

/// [`crate::ops::eltwise::map`] in f64: `clip(f(x))`.
pub fn map_f64(
    x: &[f64],
    f: crate::desc::eltwise::UnaryOp,
    clip: crate::desc::eltwise::Clip,
) -> Vec<f64> {
    x.iter()
        .map(|&v| f.apply(v).max(f64::from(clip.lo)).min(f64::from(clip.hi)))
        .collect()
}

/// [`crate::ops::eltwise::binary`] in f64: `clip(a op b)` with `b` of `a`'s rank,
/// each of its axes of `a`'s length or 1 (broadcast; numpy's rule, axis by axis).
pub fn binary_f64(
    a: &[f64],
    a_shape: &[usize],
    b: &[f64],
    b_shape: &[usize],
    op: crate::desc::eltwise::BinaryOp,
    clip: crate::desc::eltwise::Clip,
) -> Vec<f64> {
    let r = a_shape.len();
    assert_eq!(b_shape.len(), r, "binary_f64: b's rank");
    a.iter()
        .enumerate()
        .map(|(e, &x)| {
            // a's index, axis by axis from the last, mapped into b.
            let (mut rest, mut be, mut stride) = (e, 0, 1);
            for i in (0..r).rev() {
                let idx = rest % a_shape[i];
                rest /= a_shape[i];
                if b_shape[i] != 1 {
                    be += idx * stride;
                }
                stride *= b_shape[i];
            }
            op.apply(x, b[be])
                .max(f64::from(clip.lo))
                .min(f64::from(clip.hi))
        })
        .collect()
}

/// [`crate::ops::eltwise::row_reduce`] in f64: each row of `cols` values reduced.
pub fn row_reduce_f64(x: &[f64], cols: usize, kind: crate::desc::eltwise::Reduce) -> Vec<f64> {
    x.chunks(cols.max(1)).map(|r| kind.apply(r)).collect()
}
