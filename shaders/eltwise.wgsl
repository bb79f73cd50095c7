// Elementwise kernels, one invocation per element (float) or per packed word (INT8):
//   OP 0, float add:  out = clip(a + b, lo, hi)
//   OP 1, float clip: out = clip(a, lo, hi)         (ReLU: lo = 0, hi = +inf; ReLU6: 0, 6)
//   OP 2, INT8 add with rescaling, per-tensor parameters read from the tensors' buffers:
//         v = clip(sa * (qa - za) + sb * (qb - zb), lo, hi), out = quantize(v, so, zo),
//         each product and the sum rounded once in f32 (no fusion), exactly as
//         `reference::qadd` computes it; lanes past a row's end stay raw 0.
//   OP 3, softmax along the last axis (one invocation per row; max-subtracted, f32 sums).
//   OP 4, conversion: out = a (f32 <-> f16).
//   OP 5, unary function FUNC of `desc::eltwise::UnaryOp` with parameters alpha, beta:
//         0 sigmoid, 1 hard sigmoid, 2 hard swish, 3 tanh, 4 leaky ReLU, 5 affine,
//         6 sqrt, 7 power, 8 exp, 9 log, 10 abs, 11 alpha / x, 12 erf, 13 GELU (erf
//         form; tanh form when alpha != 0), 14 ELU (beta * ELU with alpha), 15 CELU,
//         16 softplus, 17 softsign, 18 Mish;
//         out = clip(f(a), lo, hi).
//   OP 7, layer normalization along the last axis (one invocation per row of `cols`):
//         mean and variance in f32 (two passes, as ONNX's decomposed form computes
//         them), out = (a - mean) / sqrt(var + alpha) * gamma + beta, with gamma read
//         from b (f32) when p.func bit 0 is set and beta from qp (f32) when bit 1 is.
//   OP 8, per-channel affine map along the last axis of `cols` channels:
//         out[e] = a[e] * scale[c] + shift[c], c = (base + e) % cols, scale read from b
//         and shift from qp (f32 each).
//   OP 9, reduction p.func along the last axis (one invocation per row of `cols`, in
//         f32): 0 mean (sum, then divided by cols), 1 sum, 2 max (NaN if any is),
//         3/4 index of the first/last max, 5/6 of the first/last min (NaN counts as
//         the max and the min), as an f32.
//   OP 6, binary operation FUNC (0 add, 1 sub, 2 mul, 3 div, 4 b - a, 5 b / a, 6 max,
//         7 min, 8 PRelu a by b, 9 PRelu b by a, 10-14 a < b, a > b, a <= b, a >= b,
//         a == b as 1 or 0, 15 a where b != 0 else 0, 16 b where a != 0, 17 a where
//         b == 0, 18 b where a == 0, 19 a ^ b, 20 b ^ a, as `power` below):
//         out[e] = clip(a[e] op b[e'], lo, hi), with e' = e for b of a's shape
//         (b_span = 0; b windowed like a) or, for b of length 1 on a contiguous run of
//         a's axes (b bound whole), e' = (g / b_span) * b_inner + g % b_inner where
//         g = base + e is the element's index in the whole tensor, b_span the elements
//         of a from the run's first axis on and b_inner those after the run.
// Float storage is f32 or f16 pairs (A_F16, B_F16, OUT_F16).
//
// Compile-time constants: WG, OP, FUNC, A_F16, B_F16, OUT_F16 (B_F16 is false for OP 5,
// 7, 8 and 9). FUNC is the function of OP 5 and 6 (0 for the others): a constant, so
// that CPU drivers, which run every case of a switch on a uniform value under masks,
// compile only the one case.

// #import common/quant_math.wgsl
// #import common/store_f16.wgsl

struct Params {
    total: u32,      // elements (float), words (INT8) or rows (softmax)
    cols: u32,       // INT8: values per row; softmax: row length
    words_per_row: u32,
    opaque_zero: u32,
    lo: f32,
    hi: f32,
    qmin: i32,
    qmax: i32,
    a_xor: u32,      // INT8: 0x80808080 for u8 codes (shift to i8), else 0
    b_xor: u32,
    a_shift: i32,    // 128 for u8
    b_shift: i32,
    func: u32,       // OP 7: gamma/beta flags; OP 9: which reduction
    b_span: u32,     // OP 6: elements of a per broadcast block of b
    b_inner: u32,    // OP 6: elements of b per block
    base: u32,       // the first element of this piece (split ops)
    alpha: f32,      // OP 5: parameters
    beta: f32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
// INT8: scale and zero point of a, b, out (in this order).
@group(0) @binding(3) var<storage, read> qp: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

fn a_at(e: u32) -> f32 {
    if (A_F16) {
        return half_at(a[e >> 1u], e);
    }
    return bitcast<f32>(a[e]);
}

fn b_at(e: u32) -> f32 {
    if (B_F16) {
        return half_at(b[e >> 1u], e);
    }
    return bitcast<f32>(b[e]);
}

fn store(e: u32, v: f32) {
    store_float(e, v, OUT_F16);
}

// NaN by its bits (WGSL lets compilers assume `x != x` is false).
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// clamp(x, lo, hi) that passes NaN through (a plain clamp may turn it into a bound, as
// x86's min/max do): NaN in, NaN out, as in ONNX.
fn clip(x: f32) -> f32 {
    return select(clamp(x, p.lo, p.hi), x, is_nan(x));
}

fn no_fuse(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | p.opaque_zero);
}

fn unary(x: f32) -> f32 {
    switch FUNC {
        case 0u: {
            return 1.0 / (1.0 + exp(-x));
        }
        case 1u: {
            return clamp(p.alpha * x + p.beta, 0.0, 1.0);
        }
        case 2u: {
            return x * clamp(p.alpha * x + p.beta, 0.0, 1.0);
        }
        case 3u: {
            return tanh_rel(x);
        }
        case 4u: {
            return select(p.alpha * x, x, x >= 0.0);
        }
        case 6u: {
            return sqrt(x);
        }
        case 7u: {
            return power(x, p.alpha);
        }
        case 8u: {
            return exp(x);
        }
        case 9u: {
            return log(x);
        }
        case 10u: {
            return abs(x);
        }
        case 11u: {
            return p.alpha / x;
        }
        case 12u: {
            return erf(x);
        }
        case 13u: {
            // (1 + tanh(z)) / 2 = 1 / (1 + exp(-2z)), and 1 + erf(u) = erfc(-u) below
            // u = -1: no cancellation for large negative x.
            if (p.alpha != 0.0) {
                let k = 0.7978845608028654;
                return x / (1.0 + exp(-2.0 * k * (x + 0.044715 * x * x * x)));
            }
            let u = x * 0.7071067811865476;
            if (u <= -1.0) {
                return 0.5 * x * erfc_pos(-u);
            }
            return 0.5 * x * (1.0 + erf(u));
        }
        case 14u: {
            return p.beta * select(p.alpha * expm1(x), x, x >= 0.0);
        }
        case 15u: {
            return max(x, 0.0) + min(p.alpha * expm1(x / p.alpha), 0.0);
        }
        case 16u: {
            return softplus(x);
        }
        case 17u: {
            return x / (1.0 + abs(x));
        }
        case 18u: {
            return x * tanh_rel(softplus(x));
        }
        default: {
            return p.alpha * x + p.beta;
        }
    }
}

// exp(x) - 1 without the cancellation near zero (a Taylor polynomial below 1/32).
fn expm1(x: f32) -> f32 {
    if (abs(x) < 0.03125) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x / 120.0))));
    }
    return exp(x) - 1.0;
}

// ln(1 + y) for y >= 0 without the loss near zero: below 1/32 its series to y^5
// (relative error under 1e-8; `log` near 1 has only an absolute error bound in WGSL).
fn log1p_pos(y: f32) -> f32 {
    if (y < 0.03125) {
        return y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * 0.2))));
    }
    return log(1.0 + y);
}

// tanh(x) as sign(x) * -expm1(-2|x|) / (2 + expm1(-2|x|)): a small relative error near
// zero too (WGSL bounds `tanh` by an absolute error only; llvmpipe's loses the digits of
// tanh(1e-4), which Mish of a large negative x needs), and exactly +-1 far out.
fn tanh_rel(x: f32) -> f32 {
    let e = expm1(-2.0 * abs(x));
    return sign(x) * (-e / (2.0 + e));
}

// ln(1 + exp(x)) without overflow: max(x, 0) + ln(1 + exp(-|x|)).
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_pos(exp(-abs(x)));
}

// x ^ e: integer exponents up to 16 in magnitude by squaring (negative x allowed;
// x ^ 2 is exactly x * x), others by pow (NaN for negative x, as in ONNX).
fn power(x: f32, e: f32) -> f32 {
    if (e == round(e) && abs(e) <= 16.0) {
        var n = u32(abs(e));
        var base = x;
        var r = 1.0;
        var first = true;
        while (n > 0u) {
            if ((n & 1u) != 0u) {
                if (first) {
                    r = base;
                    first = false;
                } else {
                    r = r * base;
                }
            }
            n = n >> 1u;
            if (n > 0u) {
                base = base * base;
            }
        }
        return select(r, 1.0 / r, e < 0.0);
    }
    return pow(x, e);
}

// erfc(t) for t >= 0 in f32: the Chebyshev fit of Numerical Recipes' erfcc (relative
// error below 1.2e-7 everywhere).
fn erfc_pos(t: f32) -> f32 {
    let k = 1.0 / (1.0 + 0.5 * t);
    var s = 0.17087277;
    s = s * k - 0.82215223;
    s = s * k + 1.48851587;
    s = s * k - 1.13520398;
    s = s * k + 0.27886807;
    s = s * k - 0.18628806;
    s = s * k + 0.09678418;
    s = s * k + 0.37409196;
    s = s * k + 1.00002368;
    return k * exp(-t * t - 1.26551223 + k * s);
}

// erf(x) in f32: the Maclaurin series (to x^21) for |x| < 1, 1 - erfc above; odd in x.
fn erf(x: f32) -> f32 {
    let t = abs(x);
    if (t < 1.0) {
        let z = t * t;
        // 2/sqrt(pi) * sum_n (-1)^n z^n / (n! (2n + 1)), n = 0..10, by Horner.
        var s = -1.0 / 76204800.0;
        s = s * z + 1.0 / 6894720.0;
        s = s * z - 1.0 / 685440.0;
        s = s * z + 1.0 / 75600.0;
        s = s * z - 1.0 / 9360.0;
        s = s * z + 1.0 / 1320.0;
        s = s * z - 1.0 / 216.0;
        s = s * z + 1.0 / 42.0;
        s = s * z - 1.0 / 10.0;
        s = s * z + 1.0 / 3.0;
        s = 1.0 - z * s;
        return 1.1283791670955126 * x * s;
    }
    return sign(x) * (1.0 - erfc_pos(t));
}

fn binary(x: f32, y: f32) -> f32 {
    switch FUNC {
        case 0u: {
            return x + y;
        }
        case 1u: {
            return x - y;
        }
        case 2u: {
            return x * y;
        }
        case 3u: {
            return x / y;
        }
        case 4u: {
            return y - x;
        }
        case 5u: {
            return y / x;
        }
        case 6u: {
            // NaN + y is NaN (no NaN constant: browsers reject one).
            return select(max(x, y), x + y, is_nan(x) || is_nan(y));
        }
        case 7u: {
            return select(min(x, y), x + y, is_nan(x) || is_nan(y));
        }
        case 8u: {
            return select(x * y, x, x >= 0.0);
        }
        case 9u: {
            return select(y * x, y, y >= 0.0);
        }
        case 10u: {
            return select(0.0, 1.0, x < y);
        }
        case 11u: {
            return select(0.0, 1.0, x > y);
        }
        case 12u: {
            return select(0.0, 1.0, x <= y);
        }
        case 13u: {
            return select(0.0, 1.0, x >= y);
        }
        case 14u: {
            return select(0.0, 1.0, x == y);
        }
        case 15u: {
            return select(0.0, x, y != 0.0);
        }
        case 16u: {
            return select(0.0, y, x != 0.0);
        }
        case 17u: {
            return select(x, 0.0, y != 0.0);
        }
        case 18u: {
            return select(y, 0.0, x != 0.0);
        }
        case 19u: {
            return power(x, y);
        }
        default: {
            return power(y, x);
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let id = (wid.x + nwg.x * (wid.y + nwg.y * wid.z)) * WG + lid.x;
    if (id >= p.total) {
        return;
    }
    if (OP == 0u) {
        store(id, clip(a_at(id) + b_at(id)));
    } else if (OP == 1u) {
        store(id, clip(a_at(id)));
    } else if (OP == 4u) {
        store(id, a_at(id));
    } else if (OP == 5u) {
        // Every function maps NaN to NaN (ONNX's do; max/min inside some would not).
        let v = a_at(id);
        store(id, select(clip(unary(v)), v, is_nan(v)));
    } else if (OP == 6u) {
        var be = id;
        if (p.b_span != 0u) {
            let g = p.base + id;
            be = (g / p.b_span) * p.b_inner + g % p.b_inner;
        }
        store(id, clip(binary(a_at(id), b_at(be))));
    } else if (OP == 8u) {
        let c = (p.base + id) % p.cols;
        store(id, a_at(id) * bitcast<f32>(b[c]) + bitcast<f32>(qp[c]));
    } else if (OP == 9u) {
        let base = id * p.cols;
        var s = 0.0;
        if (p.func >= 3u) {
            // The index of the largest (3, 4) or smallest (5, 6) value, NaN counting as
            // either; the last one among equals for 4 and 6.
            let is_max = p.func <= 4u;
            let last = p.func == 4u || p.func == 6u;
            var best = a_at(base);
            var bi = 0u;
            for (var j = 1u; j < p.cols; j++) {
                let v = a_at(base + j);
                var take = false;
                if (is_nan(best)) {
                    take = last && is_nan(v);
                } else if (is_nan(v)) {
                    take = true;
                } else if (is_max) {
                    take = v > best || (last && v == best);
                } else {
                    take = v < best || (last && v == best);
                }
                if (take) {
                    best = v;
                    bi = j;
                }
            }
            s = f32(bi);
        } else if (p.func == 2u) {
            s = a_at(base);
            for (var j = 1u; j < p.cols; j++) {
                if (is_nan(s)) {
                    break;
                }
                let v = a_at(base + j);
                s = select(max(s, v), v, is_nan(v));
            }
        } else {
            for (var j = 0u; j < p.cols; j++) {
                s = s + a_at(base + j);
            }
            if (p.func == 0u) {
                s = s / f32(p.cols);
            }
        }
        store(id, s);
    } else if (OP == 7u) {
        let base = id * p.cols;
        let n = f32(p.cols);
        var s = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            s = s + a_at(base + j);
        }
        let mean = s / n;
        var v = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            let d = a_at(base + j) - mean;
            v = v + d * d;
        }
        let sd = sqrt(v / n + p.alpha);
        for (var j = 0u; j < p.cols; j++) {
            var y = (a_at(base + j) - mean) / sd;
            if ((p.func & 1u) != 0u) {
                y = y * bitcast<f32>(b[j]);
            }
            if ((p.func & 2u) != 0u) {
                y = y + bitcast<f32>(qp[j]);
            }
            store(base + j, y);
        }
    } else if (OP == 2u) {
        let sa = bitcast<f32>(qp[0]);
        let za = bitcast<i32>(qp[1]) - p.a_shift;
        let sb = bitcast<f32>(qp[2]);
        let zb = bitcast<i32>(qp[3]) - p.b_shift;
        let so = bitcast<f32>(qp[4]);
        let zo = bitcast<i32>(qp[5]);
        let wa = bitcast<i32>(a[id] ^ p.a_xor);
        let wb = bitcast<i32>(b[id] ^ p.b_xor);
        let col0 = (id % p.words_per_row) * 4u;
        var word = 0u;
        for (var q = 0u; q < 4u; q++) {
            if (col0 + q >= p.cols) {
                break;
            }
            let va = no_fuse(sa * f32(extractBits(wa, 8u * q, 8u) - za));
            let vb = no_fuse(sb * f32(extractBits(wb, 8u * q, 8u) - zb));
            let v = clamp(va + vb, p.lo, p.hi);
            let code = quantize_one(v, so, zo, p.qmin, p.qmax);
            word = word | ((bitcast<u32>(code) & 0xffu) << (8u * q));
        }
        atomicStore(&out[id], word);
    } else {
        let base = id * p.cols;
        var m = -0x1.fffffep+127f;
        for (var j = 0u; j < p.cols; j++) {
            m = max(m, a_at(base + j));
        }
        var s = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            s = s + exp(a_at(base + j) - m);
        }
        for (var j = 0u; j < p.cols; j++) {
            store(base + j, exp(a_at(base + j) - m) / s);
        }
    }
}
