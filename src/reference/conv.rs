//! The convolution references ([`crate::ops::conv`]): f64 for the float kernels, exact
//! integers for INT8.

/// Visits every term of a convolution: `f(out_index, x_index, w_index)` for each output
/// element of `s` (NHWC, flat) and each tap inside the image, with `x_index` into the
/// NHWC input and `w_index` into the OIHW weights. Taps in the padding are skipped (they
/// contribute zero).
pub(super) fn conv_terms(s: &crate::desc::conv::ConvShape, mut f: impl FnMut(usize, usize, usize)) {
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
    activation: crate::desc::gemm::Activation,
    s: &crate::desc::conv::ConvShape,
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
    s: &crate::desc::conv::ConvShape,
) -> Vec<Option<i32>> {
    let oc_n = s.dims.out_channels;
    let mut acc = vec![0i64; s.rows() * oc_n];
    conv_terms(s, |o, xi, wi| {
        acc[o] += i64::from(a[xi] - za) * i64::from(w[wi] - zw[o % oc_n]);
    });
    acc.into_iter().map(|v| i32::try_from(v).ok()).collect()
}
