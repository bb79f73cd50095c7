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
