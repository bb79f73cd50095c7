//! Plain-Rust references for every kernel: the test oracle. They mirror the shaders' index
//! arithmetic (strides, transposes, broadcast) but accumulate in f64, so a float kernel's
//! error is measured against something more exact than itself.

use crate::ops::gemm::GemmDesc;

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

/// Relative error `||out - ref|| / ||ref||` (2-norms, f64), the float kernels' metric.
/// Returns 0 when both are zero and infinity when only the reference is.
pub fn rel_error(out: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(out.len(), reference.len(), "rel_error: length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (&o, &r) in out.iter().zip(reference) {
        let d = f64::from(o) - f64::from(r);
        num += d * d;
        den += f64::from(r) * f64::from(r);
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

/// The index of the element that differs most (absolute), for failure messages.
pub fn worst_index(out: &[f32], reference: &[f32]) -> usize {
    out.iter()
        .zip(reference)
        .map(|(&o, &r)| {
            let d = (f64::from(o) - f64::from(r)).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .enumerate()
        .fold(
            (0, -1.0),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        )
        .0
}

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
    activation: crate::ops::gemm::Activation,
) -> f32 {
    use crate::ops::gemm::Activation;
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

/// `out[i, j] = act(sum_p x[i, p] * w[j, p] + bias[j])` in f64, with `x` `[m, k]` and `w`
/// `[n, k]` (the reference of [`crate::ops::wgemm`], given dequantized weights).
pub fn linear_f64(
    x: &[f64],
    w: &[f64],
    bias: Option<&[f32]>,
    activation: crate::ops::gemm::Activation,
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

/// Visits every term of a convolution: `f(out_index, x_index, w_index)` for each output
/// element of `s` (NHWC, flat) and each tap inside the image, with `x_index` into the
/// NHWC input and `w_index` into the OIHW weights. Taps in the padding are skipped (they
/// contribute zero).
fn conv_terms(s: &crate::ops::conv::ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let [oc_n, cg, kh, kw] = s.dims.oihw();
    let c_n = s.dims.in_channels;
    let ocg = oc_n / s.dims.groups;
    for b in 0..s.batch {
        for oy in 0..s.out_h {
            for ox in 0..s.out_w {
                let row = (b * s.out_h + oy) * s.out_w + ox;
                for oc in 0..oc_n {
                    let g = oc / ocg;
                    for ky in 0..kh {
                        let iy =
                            (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pad[0] as isize;
                        if iy < 0 || iy >= s.in_h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize
                                - s.pad[1] as isize;
                            if ix < 0 || ix >= s.in_w as isize {
                                continue;
                            }
                            let pix = (b * s.in_h + iy as usize) * s.in_w + ix as usize;
                            for c in 0..cg {
                                f(
                                    row * oc_n + oc,
                                    pix * c_n + g * cg + c,
                                    ((oc * cg + c) * kh + ky) * kw + kx,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The float convolution of [`crate::ops::conv::conv2d`] in f64: `x` NHWC, `w` OIHW,
/// the result NHWC `[B, OH, OW, OC]` with bias and activation.
pub fn conv2d_f64(
    x: &[f64],
    w: &[f64],
    bias: Option<&[f32]>,
    activation: crate::ops::gemm::Activation,
    s: &crate::ops::conv::ConvShape,
) -> Vec<f64> {
    let oc_n = s.dims.out_channels;
    let mut out = vec![0f64; s.rows() * oc_n];
    conv_terms(s, |o, xi, wi| out[o] += x[xi] * w[wi]);
    for (i, v) in out.iter_mut().enumerate() {
        if let Some(b) = bias {
            *v += f64::from(b[i % oc_n]);
        }
        *v = activation.apply(*v);
    }
    out
}

/// The exact INT8 convolution accumulator of [`crate::ops::conv::qconv2d`]:
/// `r = sum (a - za) * (w - zw[oc])` over the taps inside the image, with `a` NHWC codes
/// (one zero point), `w` OIHW codes (one zero point per output channel). `None` for an
/// entry outside i32.
pub fn qconv2d_i32(
    a: &[i32],
    za: i32,
    w: &[i32],
    zw: &[i32],
    s: &crate::ops::conv::ConvShape,
) -> Vec<Option<i32>> {
    let oc_n = s.dims.out_channels;
    let mut acc = vec![0i64; s.rows() * oc_n];
    conv_terms(s, |o, xi, wi| {
        acc[o] += i64::from(a[xi] - za) * i64::from(w[wi] - zw[o % oc_n]);
    });
    acc.into_iter().map(|v| i32::try_from(v).ok()).collect()
}

/// The INT8 residual add of [`crate::ops::eltwise::qadd`] for one element, rounded as the
/// kernel rounds it: `va = sa * (qa - za)`, `vb = sb * (qb - zb)`, `v = va + vb`, each
/// once in f32, then the clip and the requantization.
#[allow(clippy::too_many_arguments)]
pub fn qadd(
    (qa, sa, za): (i32, f32, i32),
    (qb, sb, zb): (i32, f32, i32),
    clip: crate::ops::eltwise::Clip,
    (so, zo): (f32, i32),
    (qmin, qmax): (i32, i32),
) -> i32 {
    let va = sa * (qa - za) as f32;
    let vb = sb * (qb - zb) as f32;
    crate::quant::quantize_value(clip.apply(va + vb), so, zo, qmin, qmax)
}

/// The pooling of [`crate::ops::pool::pool2d`] in f64 on an NHWC `[b, h, w, c]` input:
/// `max` (padding never wins) or the average over the taps inside the image (`count_pad`:
/// over the whole window).
#[allow(clippy::too_many_arguments)]
pub fn pool_f64(
    x: &[f64],
    [b, h, w, c]: [usize; 4],
    max: bool,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
    (out_h, out_w): (usize, usize),
    count_pad: bool,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(b * out_h * out_w * c);
    for n in 0..b {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for ch in 0..c {
                    let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                    let mut count = 0usize;
                    for ky in 0..kernel[0] {
                        let iy = (oy * stride[0] + ky * dilation[0]) as isize - pad[0] as isize;
                        for kx in 0..kernel[1] {
                            let ix = (ox * stride[1] + kx * dilation[1]) as isize - pad[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = x[((n * h + iy as usize) * w + ix as usize) * c + ch];
                            acc = if max { acc.max(v) } else { acc + v };
                            count += 1;
                        }
                    }
                    if !max {
                        let d = if count_pad {
                            kernel[0] * kernel[1]
                        } else {
                            count.max(1)
                        };
                        acc /= d as f64;
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
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
