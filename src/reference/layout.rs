//! The layout references ([`crate::ops::layout`]), on NHWC `[n, h, w, c]` slices.

/// Nearest upsampling by integer factors.
pub fn upsample_nearest<T: Copy>(
    x: &[T],
    [n, h, w, c]: [usize; 4],
    [fh, fw]: [usize; 2],
) -> Vec<T> {
    let (oh, ow) = (h * fh, w * fw);
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                let base = ((b * h + y / fh) * w + xx / fw) * c;
                out.extend_from_slice(&x[base..base + c]);
            }
        }
    }
    out
}

/// Depth to space: channel `(c * fh + dy) * fw + dx` of pixel `(y, x)` goes to channel
/// `c` of pixel `(y * fh + dy, x * fw + dx)`.
pub fn depth_to_space<T: Copy>(
    x: &[T],
    [n, h, w, cin]: [usize; 4],
    [fh, fw]: [usize; 2],
) -> Vec<T> {
    let c = cin / (fh * fw);
    let (oh, ow) = (h * fh, w * fw);
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                for ch in 0..c {
                    let ic = (ch * fh + y % fh) * fw + xx % fw;
                    out.push(x[((b * h + y / fh) * w + xx / fw) * cin + ic]);
                }
            }
        }
    }
    out
}

/// Concatenation along channels of NHWC images with `channels[i]` channels each.
pub fn concat_channels<T: Copy>(inputs: &[&[T]], channels: &[usize]) -> Vec<T> {
    let pixels = inputs[0].len() / channels[0];
    let mut out = Vec::with_capacity(pixels * channels.iter().sum::<usize>());
    for p in 0..pixels {
        for (x, &c) in inputs.iter().zip(channels) {
            out.extend_from_slice(&x[p * c..(p + 1) * c]);
        }
    }
    out
}
