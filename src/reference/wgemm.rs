//! The weight-only / FP16 GEMM reference ([`crate::ops::wgemm`]), in f64 on the
//! dequantized weights.

/// `out[i, j] = act(sum_p x[i, p] * w[j, p] + bias[j])` in f64, with `x` `[m, k]` and `w`
/// `[n, k]` (the reference of [`crate::ops::wgemm`], given dequantized weights).
pub fn linear_f64(
    x: &[f64],
    w: &[f64],
    bias: Option<&[f32]>,
    activation: crate::desc::gemm::Activation,
    (m, n, k): (usize, usize, usize),
) -> Vec<f64> {
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for p in 0..k {
                acc += x[i * k + p] * w[j * k + p];
            }
            if let Some(b) = bias {
                acc += f64::from(b[j]);
            }
            out.push(activation.apply(acc));
        }
    }
    out
}
