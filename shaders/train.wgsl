// Training kernels (f32), one invocation per element, row or column:
//   OP 0, clip backward (ReLU, ReLU6, any clip): c[i] = b[i] where lo < a[i] < hi, else
//         0; a is the forward input, b the output's gradient (the straight-through
//         estimator of a clamp: zero outside the range).
//   OP 1, softmax cross-entropy of logits a [rows, cols] against labels b (u32) [rows]:
//         d[r] = logsumexp(a[r]) - a[r, b[r]] (the loss; NaN for a label past the
//         columns), c[r, j] = (softmax(a[r])_j - [j == b[r]]) * scale (the gradient of
//         the batch's mean loss with scale = 1 / batch).
//   OP 2, column sums: c[j] = sum over the rows r of a[r, j] (a bias's gradient).
//   OP 3, SGD step in place: g = a[i] + wd * c[i]; with momentum mu > 0, d[i] = mu *
//         d[i] + g and g = d[i]; c[i] -= lr * g (PyTorch's SGD).
//   OP 4, AdamW step in place: c[i] *= 1 - lr * wd (decoupled weight decay); d[i] (m) and
//         e[i] (v) the moving averages of a[i] and a[i]^2 with beta1, beta2; c[i] -= lr *
//         (m / bc1) / (sqrt(v / bc2) + eps), bc1 = 1 - beta1^t and bc2 = 1 - beta2^t
//         computed on the host for step t.
//   OP 5, fake quantization (PyTorch's fake_quantize_*_affine): for element i of a
//         [outer, channels, inner] tensor in channel k = i / inner % channels, q =
//         clamp(round(a[i] * inv_scale[k]) + zp[k], qmin, qmax), c[i] = (q - zp[k]) *
//         scale[k]; b holds (scale, inv_scale, zp) per channel as bits (f32, f32, i32);
//         round is WGSL's, half to even, as nearbyint.
//   OP 6, its backward (the straight-through estimator): c[i] = d[i] (the output's
//         gradient) where round(a[i] * inv_scale[k]) + zp[k] lies in [qmin, qmax], else 0.
//   OP 7, LSQ's scale gradient, one invocation per channel k: e[k] = scale * sum over
//         the channel's elements of d[i] * (q - zp - a[i] * inv_scale) inside the range,
//         (qmin - zp) below it and (qmax - zp) above it (`scale` is LSQ's gradient scale).
//   OP 8, a convolution's input gradient (NHWC, OIHW weights, groups, stride, padding,
//         dilation): for input element (n, y, x, c) of group g, c[i] = the sum over
//         output channels o of g, kernel taps (ky, kx) and the output pixel (oy, ox) they
//         came from (y + top - ky * dh = oy * sh, likewise x) of dy[n, oy, ox, o] *
//         w[o, c - g * cg, ky, kx]; a = dy, b = w's bits.
//   OP 9, its weight gradient: for weight (o, ci, ky, kx), c[i] = the sum over n, oy, ox
//         of dy[n, oy, ox, o] * x[n, oy * sh - top + ky * dh, ox * sw - left + kx * dw,
//         g * cg + ci] (zero padding outside); a = x, b = dy's bits.
//   OP 10, max pooling's input gradient: input element (n, y, x, c) gathers dy of every
//         window (same geometry fields as the convolution's) whose maximum it is, the
//         first inside tap in row-major order holding the largest value (PyTorch's rule);
//         a = the forward input, b = dy's bits.
//   OP 11, average pooling's: dy of every window holding the element, over the window's
//         count (every tap with count_pad, else the taps inside the image).
//   OP 12, a convolution's forward pass on OIHW f32 weights as training keeps them (no
//         rearrangement): for output (n, oy, ox, o), c[i] = bias + the sum over the
//         group's input channels and taps inside the image of x * w; a = x, b = w's
//         bits, d = the bias (its first element unused when pad5 is 0: no bias).
//   OP 13, range observation, one workgroup per channel k of a [outer, channels, inner]
//         tensor a: the channel's minimum and maximum (a tree in workgroup memory), as a
//         moving average with the state d (min, max per channel): d = mu * d + (1 - mu)
//         * current, or the current range when pad5 is 0 (the first observation); then
//         the fake quantization parameters of that range into c (scale, 1 / scale and the
//         zero point, each an f32, three per channel): symmetric (pad6 = 0: zero point
//         0, scale = max(|min|, |max|) / ((qmax - qmin) / 2)) or asymmetric (pad6 = 1:
//         the range widened to hold 0, scale = (max - min) / (qmax - qmin), zero point
//         qmin - round(min / scale) clamped to the codes); scales below eps become eps.
//   OP 15, im2col of one group: c[row, col] for row (n, oy, ox) and col (ci, ky, kx) =
//         x[n, tap (ky, kx) of window (oy, ox), ci] or 0 in the padding; a = x (NHWC),
//         c = [n * oh * ow, cin * kh * kw] (a convolution is then a GEMM with the OIHW
//         weights seen as [oc, cin * kh * kw]).
//   OP 16, col2im, its adjoint: for input element (n, y, x, ci), c[i] = the sum of a[row,
//         col] over every (window, tap) that read it; a = [n * oh * ow, cin * kh * kw].
//   OP 14, parameters from learned scales (LSQ): c[3k] = max(a[k], eps), c[3k + 1] its
//         inverse, the zero point c[3k + 2] kept.
//
// Compile-time constants: WG, OP.

struct Params {
    total: u32,
    cols: u32,
    rows: u32,
    pad2: u32,
    lo: f32,
    hi: f32,
    scale: f32,
    lr: f32,
    mu: f32,
    wd: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    pad3: f32,
    qmin: i32,
    qmax: i32,
    channels: u32,
    inner: u32,
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    oh: u32,
    ow: u32,
    oc: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    top: u32,
    left: u32,
    dh: u32,
    dw: u32,
    cg: u32,
    ocg: u32,
    pad4: u32,
    pad5: u32,
    pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> d: array<f32>;
@group(0) @binding(5) var<storage, read_write> e: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    if (OP == 13u) {
        observe(wid.x + nwg.x * (wid.y + nwg.y * wid.z), lid.x);
        return;
    }
    let i = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * WG + lid.x;
    if (i >= p.total) {
        return;
    }
    if (OP == 14u) {
        let s = max(a[i], p.eps);
        c[3u * i] = s;
        c[3u * i + 1u] = 1.0 / s;
        return;
    }
    if (OP == 12u) {
        conv_forward(i);
        return;
    }
    if (OP == 15u || OP == 16u) {
        columns(i);
        return;
    }
    if (OP >= 10u) {
        pool_backward(i);
        return;
    }
    if (OP >= 8u) {
        conv_backward(i);
        return;
    }
    if (OP >= 5u) {
        fake_quant(i);
        return;
    }
    if (OP == 0u) {
        let x = a[i];
        c[i] = select(0.0, bitcast<f32>(b[i]), x > p.lo && x < p.hi);
    } else if (OP == 1u) {
        let base = i * p.cols;
        var m = a[base];
        for (var j = 1u; j < p.cols; j++) {
            m = max(m, a[base + j]);
        }
        var s = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            s += exp(a[base + j] - m);
        }
        let label = b[i];
        // A NaN loss for a label past the classes. Built from a run-time value: WGSL
        // forbids a NaN constant (browsers reject `bitcast<f32>(0x7fc00000u)`).
        var picked = bitcast<f32>(0x7fc00000u | (label & 0u));
        if (label < p.cols) {
            picked = a[base + label];
        }
        d[i] = log(s) + m - picked;
        for (var j = 0u; j < p.cols; j++) {
            let hot = select(0.0, 1.0, j == label);
            c[base + j] = (exp(a[base + j] - m) / s - hot) * p.scale;
        }
    } else if (OP == 2u) {
        var s = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            s += a[r * p.cols + i];
        }
        c[i] = s;
    } else if (OP == 3u) {
        var g = a[i] + p.wd * c[i];
        if (p.mu > 0.0) {
            d[i] = p.mu * d[i] + g;
            g = d[i];
        }
        c[i] = c[i] - p.lr * g;
    } else {
        let g = a[i];
        let w = c[i] * (1.0 - p.lr * p.wd);
        let m = p.beta1 * d[i] + (1.0 - p.beta1) * g;
        let v = p.beta2 * e[i] + (1.0 - p.beta2) * g * g;
        d[i] = m;
        e[i] = v;
        c[i] = w - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
    }
}

// The channel's scale, inverse scale and zero point.
fn qparams(k: u32) -> vec3<f32> {
    return vec3<f32>(bitcast<f32>(b[3u * k]), bitcast<f32>(b[3u * k + 1u]), bitcast<f32>(b[3u * k + 2u]));
}

fn fake_quant(i: u32) {
    let lo = f32(p.qmin);
    let hi = f32(p.qmax);
    if (OP == 7u) {
        // One channel: every element of it.
        let k = i;
        let q = qparams(k);
        var s = 0.0;
        for (var o = 0u; o < p.rows; o++) {
            for (var j = 0u; j < p.inner; j++) {
                let el = (o * p.channels + k) * p.inner + j;
                let v = a[el] * q.y;
                let r = round(v) + q.z;
                var dq = r - q.z - v;
                if (r < lo) {
                    dq = lo - q.z;
                } else if (r > hi) {
                    dq = hi - q.z;
                }
                s += d[el] * dq;
            }
        }
        e[k] = s * p.scale;
        return;
    }
    let k = i / p.inner % p.channels;
    let q = qparams(k);
    let r = round(a[i] * q.y) + q.z;
    if (OP == 5u) {
        c[i] = (clamp(r, lo, hi) - q.z) * q.x;
    } else {
        c[i] = select(0.0, d[i], r >= lo && r <= hi);
    }
}

fn conv_backward(i: u32) {
    var acc = 0.0;
    if (OP == 8u) {
        let px = pixel_of(i);
        let n = px.x;
        let y = i32(px.y);
        let x = i32(px.z);
        let ch = px.w;
        let g = ch / p.cg;
        let ci = ch % p.cg;
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                let win = window_at(y, x, ky, kx);
                if (win.x < 0) {
                    continue;
                }
                let oy = u32(win.x);
                let ox = u32(win.y);
                let row = ((n * p.oh + oy) * p.ow + ox) * p.oc;
                for (var oo = 0u; oo < p.ocg; oo++) {
                    let o = g * p.ocg + oo;
                    acc += a[row + o] * bitcast<f32>(b[((o * p.cg + ci) * p.kh + ky) * p.kw + kx]);
                }
            }
        }
    } else {
        let kx = i % p.kw;
        var t = i / p.kw;
        let ky = t % p.kh;
        t /= p.kh;
        let ci = t % p.cg;
        let o = t / p.cg;
        let ch = o / p.ocg * p.cg + ci;
        for (var n = 0u; n < p.n; n++) {
            for (var oy = 0u; oy < p.oh; oy++) {
                let iy = i32(oy * p.sh + ky * p.dh) - i32(p.top);
                if (iy < 0 || iy >= i32(p.h)) {
                    continue;
                }
                for (var ox = 0u; ox < p.ow; ox++) {
                    let ix = i32(ox * p.sw + kx * p.dw) - i32(p.left);
                    if (ix < 0 || ix >= i32(p.w)) {
                        continue;
                    }
                    let g = bitcast<f32>(b[((n * p.oh + oy) * p.ow + ox) * p.oc + o]);
                    acc += g * a[((n * p.h + u32(iy)) * p.w + u32(ix)) * p.cin + ch];
                }
            }
        }
    }
    c[i] = acc;
}

// Input element i of an NHWC tensor [p.n, p.h, p.w, p.cin] as (n, y, x, c).
fn pixel_of(i: u32) -> vec4<u32> {
    let c = i % p.cin;
    let t = i / p.cin;
    return vec4<u32>(t / p.w / p.h, t / p.w % p.h, t % p.w, c);
}

// The window (oy, ox) whose tap (ky, kx) reads input pixel (y, x), or (-1, -1) where no
// window does (off the stride grid, or outside the output).
fn window_at(y: i32, x: i32, ky: u32, kx: u32) -> vec2<i32> {
    let ny = y + i32(p.top) - i32(ky * p.dh);
    let nx = x + i32(p.left) - i32(kx * p.dw);
    if (ny < 0 || nx < 0 || u32(ny) % p.sh != 0u || u32(nx) % p.sw != 0u) {
        return vec2<i32>(-1, -1);
    }
    let oy = u32(ny) / p.sh;
    let ox = u32(nx) / p.sw;
    if (oy >= p.oh || ox >= p.ow) {
        return vec2<i32>(-1, -1);
    }
    return vec2<i32>(i32(oy), i32(ox));
}

// The input pixel (y, x) of window (oy, ox)'s tap (ky, kx), or -1 where it is padding.
fn tap_pixel(oy: u32, ox: u32, ky: u32, kx: u32) -> vec2<i32> {
    let iy = i32(oy * p.sh + ky * p.dh) - i32(p.top);
    let ix = i32(ox * p.sw + kx * p.dw) - i32(p.left);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return vec2<i32>(-1, -1);
    }
    return vec2<i32>(iy, ix);
}

fn pool_backward(i: u32) {
    let px = pixel_of(i);
    let n = px.x;
    let y = i32(px.y);
    let x = i32(px.z);
    let ch = px.w;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            let win = window_at(y, x, ky, kx);
            if (win.x < 0) {
                continue;
            }
            let oy = u32(win.x);
            let ox = u32(win.y);
            let g = bitcast<f32>(b[((n * p.oh + oy) * p.ow + ox) * p.cin + ch]);
            // The window's maximum (first in order) or its count.
            var best = vec2<i32>(-1, -1);
            var best_v = 0.0;
            var count = 0u;
            for (var wy = 0u; wy < p.kh; wy++) {
                for (var wx = 0u; wx < p.kw; wx++) {
                    let q = tap_pixel(oy, ox, wy, wx);
                    if (q.x < 0) {
                        continue;
                    }
                    count++;
                    let v = a[((n * p.h + u32(q.x)) * p.w + u32(q.y)) * p.cin + ch];
                    if (best.x < 0 || v > best_v) {
                        best = q;
                        best_v = v;
                    }
                }
            }
            if (OP == 10u) {
                if (best.x == y && best.y == x) {
                    acc += g;
                }
            } else {
                if (p.pad4 != 0u) {
                    count = p.kh * p.kw;
                }
                acc += g / f32(max(count, 1u));
            }
        }
    }
    c[i] = acc;
}

fn conv_forward(i: u32) {
    let o = i % p.oc;
    var t = i / p.oc;
    let ox = t % p.ow;
    t /= p.ow;
    let oy = t % p.oh;
    let n = t / p.oh;
    let g = o / p.ocg;
    var acc = 0.0;
    if (p.pad5 != 0u) {
        acc = d[o];
    }
    for (var ci = 0u; ci < p.cg; ci++) {
        let ch = g * p.cg + ci;
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                let q = tap_pixel(oy, ox, ky, kx);
                if (q.x < 0) {
                    continue;
                }
                let xv = a[((n * p.h + u32(q.x)) * p.w + u32(q.y)) * p.cin + ch];
                acc += xv * bitcast<f32>(b[((o * p.cg + ci) * p.kh + ky) * p.kw + kx]);
            }
        }
    }
    c[i] = acc;
}

var<workgroup> lo_part: array<f32, WG>;
var<workgroup> hi_part: array<f32, WG>;

fn observe(k: u32, t: u32) {
    if (k >= p.channels) {
        return;
    }
    var lo = 0x1.fffffep+127f;
    var hi = -lo;
    for (var o = 0u; o < p.rows; o++) {
        let base = (o * p.channels + k) * p.inner;
        for (var j = t; j < p.inner; j += WG) {
            let v = a[base + j];
            lo = min(lo, v);
            hi = max(hi, v);
        }
    }
    lo_part[t] = lo;
    hi_part[t] = hi;
    for (var step = WG / 2u; step > 0u; step /= 2u) {
        workgroupBarrier();
        if (t < step) {
            lo_part[t] = min(lo_part[t], lo_part[t + step]);
            hi_part[t] = max(hi_part[t], hi_part[t + step]);
        }
    }
    if (t != 0u) {
        return;
    }
    lo = lo_part[0];
    hi = hi_part[0];
    if (p.pad5 != 0u) {
        lo = p.mu * d[2u * k] + (1.0 - p.mu) * lo;
        hi = p.mu * d[2u * k + 1u] + (1.0 - p.mu) * hi;
    }
    d[2u * k] = lo;
    d[2u * k + 1u] = hi;
    let qlo = f32(p.qmin);
    let qhi = f32(p.qmax);
    var s = 0.0;
    var z = 0.0;
    if (p.pad6 == 0u) {
        s = max(max(abs(lo), abs(hi)) / ((qhi - qlo) / 2.0), p.eps);
    } else {
        lo = min(lo, 0.0);
        hi = max(hi, 0.0);
        s = max((hi - lo) / (qhi - qlo), p.eps);
        z = clamp(qlo - round(lo / s), qlo, qhi);
    }
    c[3u * k] = s;
    c[3u * k + 1u] = 1.0 / s;
    c[3u * k + 2u] = z;
}

fn columns(i: u32) {
    let taps = p.kh * p.kw;
    let ckk = p.cin * taps;
    if (OP == 15u) {
        let col = i % ckk;
        let row = i / ckk;
        let kx = col % p.kw;
        let ky = col / p.kw % p.kh;
        let ci = col / taps;
        let ox = row % p.ow;
        let oy = row / p.ow % p.oh;
        let n = row / (p.ow * p.oh);
        let q = tap_pixel(oy, ox, ky, kx);
        var v = 0.0;
        if (q.x >= 0) {
            v = a[((n * p.h + u32(q.x)) * p.w + u32(q.y)) * p.cin + ci];
        }
        c[i] = v;
        return;
    }
    let px = pixel_of(i);
    let n = px.x;
    let y = i32(px.y);
    let x = i32(px.z);
    let ci = px.w;
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            let win = window_at(y, x, ky, kx);
            if (win.x < 0) {
                continue;
            }
            let oy = u32(win.x);
            let ox = u32(win.y);
            acc += a[((n * p.oh + oy) * p.ow + ox) * ckk + ci * taps + ky * p.kw + kx];
        }
    }
    c[i] = acc;
}
