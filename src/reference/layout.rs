//! The layout references ([`crate::ops::layout`]), on NHWC `[n, h, w, c]` slices (and
//! [`permute`] on row-major tensors of any rank).

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

/// Zero insertion by integer factors: pixel `(y, x)` to `(y fh, x fw)`, zeros between.
pub fn zero_insert<T: Copy + Default>(
    x: &[T],
    [n, h, w, c]: [usize; 4],
    [fh, fw]: [usize; 2],
) -> Vec<T> {
    let (oh, ow) = ((h - 1) * fh + 1, (w - 1) * fw + 1);
    let mut out = vec![T::default(); n * oh * ow * c];
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                let src = ((b * h + y) * w + xx) * c;
                let dst = ((b * oh + y * fh) * ow + xx * fw) * c;
                out[dst..dst + c].copy_from_slice(&x[src..src + c]);
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

/// Bilinear resize to `[oh, ow]` in f64, coordinates as [`crate::ops::layout::resize_bilinear`]
/// maps them (clamped to the image, four neighbours).
pub fn resize_bilinear(
    x: &[f64],
    [n, h, w, c]: [usize; 4],
    [oh, ow]: [usize; 2],
    coords: crate::desc::layout::ResizeCoords,
    [sh, sw]: [f32; 2],
) -> Vec<f64> {
    let axis = |o: usize, size: usize, out: usize, s: f32| {
        let f = coords.source(o, size, out, s).clamp(0.0, (size - 1) as f64);
        let i0 = f.floor() as usize;
        (i0, (i0 + 1).min(size - 1), f - i0 as f64)
    };
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        for y in 0..oh {
            let (y0, y1, wy) = axis(y, h, oh, sh);
            for xx in 0..ow {
                let (x0, x1, wx) = axis(xx, w, ow, sw);
                for ch in 0..c {
                    let at = |yy: usize, xi: usize| x[((b * h + yy) * w + xi) * c + ch];
                    let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * wx;
                    let bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * wx;
                    out.push(top + (bottom - top) * wy);
                }
            }
        }
    }
    out
}

/// `x` of `shape` (row-major) transposed by `perm`: `out.shape[i] = shape[perm[i]]`,
/// written element by element from the definition (the output's coordinates, each
/// input coordinate taken from the axis it moved to).
pub fn permute<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for e in 0..n {
        // The output coordinates of e.
        let mut rest = e;
        let mut oc = vec![0usize; shape.len()];
        for i in (0..out_shape.len()).rev() {
            oc[i] = rest % out_shape[i];
            rest /= out_shape[i];
        }
        for (i, &a) in perm.iter().enumerate() {
            idx[a] = oc[i];
        }
        let src = idx.iter().zip(shape).fold(0, |acc, (&c, &d)| acc * d + c);
        out.push(x[src]);
    }
    out
}

/// The block of `size` at `start` of row-major `x` of `shape`.
pub fn crop<T: Copy>(x: &[T], shape: &[usize], start: &[usize], size: &[usize]) -> Vec<T> {
    let n: usize = size.iter().product();
    let mut out = Vec::with_capacity(n);
    for e in 0..n {
        let mut rest = e;
        let mut src = 0;
        let mut scale = 1;
        for a in (0..shape.len()).rev() {
            src += (start[a] + rest % size[a]) * scale;
            rest /= size[a];
            scale *= shape[a];
        }
        out.push(x[src]);
    }
    out
}

/// The coordinates of row-major element `e` of `shape`.
fn coords_of(mut e: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0usize; shape.len()];
    for a in (0..shape.len()).rev() {
        c[a] = e % shape[a];
        e /= shape[a];
    }
    c
}

/// The row-major element of coordinates `c` in `shape`.
fn element_of(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// `x[start[a] + i * step[a]]` on each axis for `i < size[a]` (a slice with any non-zero
/// steps; the caller keeps it inside).
pub fn slice<T: Copy>(
    x: &[T],
    shape: &[usize],
    start: &[usize],
    step: &[isize],
    size: &[usize],
) -> Vec<T> {
    let n: usize = size.iter().product();
    (0..n)
        .map(|e| {
            let c: Vec<usize> = coords_of(e, size)
                .iter()
                .enumerate()
                .map(|(a, &i)| (start[a] as isize + i as isize * step[a]) as usize)
                .collect();
            x[element_of(&c, shape)]
        })
        .collect()
}

/// `x` of `shape` broadcast to `to` by numpy's rules (axes aligned right; 1s repeat).
pub fn expand<T: Copy>(x: &[T], shape: &[usize], to: &[usize]) -> Vec<T> {
    let lead = to.len() - shape.len();
    let n: usize = to.iter().product();
    (0..n)
        .map(|e| {
            let oc = coords_of(e, to);
            let c: Vec<usize> = shape
                .iter()
                .enumerate()
                .map(|(a, &d)| if d == 1 { 0 } else { oc[lead + a] })
                .collect();
            x[element_of(&c, shape)]
        })
        .collect()
}

/// The tensors `xs` (with `shapes`) concatenated along `axis`.
pub fn concat<T: Copy>(xs: &[&[T]], shapes: &[&[usize]], axis: usize) -> Vec<T> {
    let mut out_shape = shapes[0].to_vec();
    out_shape[axis] = shapes.iter().map(|s| s[axis]).sum();
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|e| {
            let mut c = coords_of(e, &out_shape);
            let mut k = 0;
            while c[axis] >= shapes[k][axis] {
                c[axis] -= shapes[k][axis];
                k += 1;
            }
            xs[k][element_of(&c, shapes[k])]
        })
        .collect()
}

/// `x` of `shape` padded by `before`/`after` on each axis, filled as `mode` says
/// ([`crate::desc::layout::PadMode::source`] maps each coordinate).
pub fn pad(
    x: &[f64],
    shape: &[usize],
    before: &[usize],
    after: &[usize],
    mode: crate::desc::layout::PadMode,
) -> Vec<f64> {
    let out_shape: Vec<usize> = (0..shape.len())
        .map(|a| shape[a] + before[a] + after[a])
        .collect();
    let fill = match mode {
        crate::desc::layout::PadMode::Constant(v) => f64::from(v),
        _ => 0.0,
    };
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|e| {
            let oc = coords_of(e, &out_shape);
            let c: Option<Vec<usize>> = (0..shape.len())
                .map(|a| mode.source(oc[a], shape[a], before[a]))
                .collect();
            c.map_or(fill, |c| x[element_of(&c, shape)])
        })
        .collect()
}

/// `x` of `shape` gathered along `axis` by `indices` (`out[.., j, ..] = x[.., idx[j],
/// ..]`).
pub fn gather<T: Copy>(x: &[T], shape: &[usize], axis: usize, indices: &[usize]) -> Vec<T> {
    let mut out_shape = shape.to_vec();
    out_shape[axis] = indices.len();
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|e| {
            let mut c = coords_of(e, &out_shape);
            c[axis] = indices[c[axis]];
            x[element_of(&c, shape)]
        })
        .collect()
}
