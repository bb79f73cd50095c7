//! The FP32 GEMM reference ([`crate::ops::gemm`]), accumulating in f64.

use crate::desc::gemm::GemmDesc;

/// One entry `C[batch][i][j]` of the reference GEMM, in f64.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at(
    desc: &GemmDesc,
    strides: [usize; 3],
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    batch: usize,
    i: usize,
    j: usize,
) -> f64 {
    let lda = desc.stored_a().1;
    let ldb = desc.stored_b().1;
    let (ao, bo) = (batch * strides[0], batch * strides[1]);
    let mut acc = 0f64;
    for p in 0..desc.k {
        let av = if desc.trans_a {
            a[ao + p * lda + i]
        } else {
            a[ao + i * lda + p]
        };
        let bv = if desc.trans_b {
            b[bo + j * ldb + p]
        } else {
            b[bo + p * ldb + j]
        };
        acc += f64::from(av) * f64::from(bv);
    }
    let mut v = acc * f64::from(desc.alpha);
    if let Some(bias) = bias {
        v += f64::from(bias[j]);
    }
    desc.activation.apply(v)
}

/// Reference GEMM with f64 accumulation. `strides` are the batch strides of A, B and C
/// (as returned by [`GemmDesc::resolve_strides`]); C comes back with that batch stride,
/// length `(batch - 1) * stride_c + m * n`; entries between matrices stay NaN.
pub fn gemm(
    desc: &GemmDesc,
    strides: [usize; 3],
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (m, n) = (desc.m, desc.n);
    let sc = strides[2];
    let mut c = vec![f32::NAN; (desc.batch - 1) * sc + m * n];
    for bt in 0..desc.batch {
        for i in 0..m {
            for j in 0..n {
                c[bt * sc + i * n + j] = gemm_at(desc, strides, a, b, bias, bt, i, j) as f32;
            }
        }
    }
    c
}
