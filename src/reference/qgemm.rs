//! The W8A8 references ([`crate::ops::qgemm`]): the exact accumulator and the
//! dequantizing epilogue, rounded as the kernel rounds.

/// The exact W8A8 accumulator `r[m, n] = sum_k (a[m, k] - za[m]) * (w[n, k] - zw[n])` of
/// [`crate::ops::qgemm`], computed in i64. `a` is `[m, k]` codes, `w` is `[n, k]` codes,
/// `za` has one zero point per row, `zw` one per output channel. Returns `None` for an
/// entry outside i32 (which the GPU kernel refuses to compute).
pub fn qgemm_i32(
    a: &[i32],
    za: &[i32],
    w: &[i32],
    zw: &[i32],
    (m, n, k): (usize, usize, usize),
) -> Vec<Option<i32>> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0i64;
            for p in 0..k {
                acc += i64::from(a[i * k + p] - za[i]) * i64::from(w[j * k + p] - zw[j]);
            }
            out.push(i32::try_from(acc).ok());
        }
    }
    out
}

/// The dequantizing epilogue of [`crate::ops::qgemm`], rounded exactly as the kernel
/// rounds it: `s = sa * sw`, `v = r * s`, `v = v + bias`, each once in f32, then the
/// activation.
pub fn qgemm_dequant(
    r: i32,
    sa: f32,
    sw: f32,
    bias: Option<f32>,
    activation: crate::desc::gemm::Activation,
) -> f32 {
    use crate::desc::gemm::Activation;
    let s = sa * sw;
    let mut v = r as f32 * s;
    if let Some(b) = bias {
        v += b;
    }
    match activation {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Relu6 => v.clamp(0.0, 6.0),
    }
}

/// ONNX's requantization of an int32 accumulator (bias included), as `onnx.reference`'s
/// `QLinearMatMul` and `QLinearConv` compute it in numpy: the multiplier
/// `M = (sa * sw) / sy` in f32, then `rint(f64(acc) * f64(M) + f64(zy))` (half to even)
/// clamped to `qmin..=qmax`. The kernels' `requant_onnx` reproduces it in integers.
pub fn requant_onnx(acc: i32, sa: f32, sw: f32, sy: f32, zy: i32, qmin: i32, qmax: i32) -> i32 {
    let m = (sa * sw) / sy;
    let d = f64::from(acc) * f64::from(m) + f64::from(zy);
    d.round_ties_even().clamp(f64::from(qmin), f64::from(qmax)) as i32
}
