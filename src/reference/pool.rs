//! The pooling reference ([`crate::ops::pool`]) in f64.

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

/// Max pooling's input gradient in f64 for `k x k` windows at stride `stride` without
/// padding on an NHWC input of shape `xs` and output `os`: each window's gradient goes
/// to its largest element, the first in row-major order on ties (PyTorch's rule).
pub fn max_pool_grad_f64(
    x: &[f32],
    dy: &[f32],
    xs: &[usize; 4],
    os: &[usize],
    k: usize,
    stride: usize,
) -> Vec<f64> {
    let [b, h, w, c] = *xs;
    let (oh, ow) = (os[1], os[2]);
    let mut dx = vec![0.0f64; x.len()];
    for n in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut best: Option<(usize, f32)> = None;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (y, xx) = (oy * stride + ky, ox * stride + kx);
                            if y >= h || xx >= w {
                                continue;
                            }
                            let i = ((n * h + y) * w + xx) * c + ch;
                            if best.is_none_or(|(_, v)| x[i] > v) {
                                best = Some((i, x[i]));
                            }
                        }
                    }
                    if let Some((i, _)) = best {
                        dx[i] += f64::from(dy[((n * oh + oy) * ow + ox) * c + ch]);
                    }
                }
            }
        }
    }
    dx
}
