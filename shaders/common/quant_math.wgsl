// Shared quantization arithmetic. Every function here reproduces the Rust reference in
// src/quant/mod.rs bit for bit on any conforming WGSL implementation: it relies only on
// correctly rounded f32 add, subtract and multiply, floor/round (round is half to even in
// WGSL), integer arithmetic and bit casts. WGSL's f32 division is only accurate to 2.5
// ulp, so quotients that decide a rounding are either far from a tie or recomputed with
// div_rn, an exact integer long division.

const F32_MIN_NORMAL: f32 = 1.17549435e-38;
const MAX_SCALE: f32 = 8.507059e37;       // 2^126
const QUOTIENT_LIMIT: f32 = 1048576.0;    // 2^20

struct Slots {
    inner: u32,
    axis_len: u32,
    block: u32,
    outer_stride: u32,
    axis_stride: u32,
    inner_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

// The parameter slot of flat element `flat` (see SlotLayout in src/quant/mod.rs).
fn slot_of(s: Slots, flat: u32) -> u32 {
    let i = flat % s.inner;
    let a = (flat / s.inner) % s.axis_len;
    let o = flat / (s.inner * s.axis_len);
    return o * s.outer_stride + (a / s.block) * s.axis_stride + i * s.inner_stride;
}

fn is_nan_bits(b: u32) -> bool {
    return (b & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite_bits(b: u32) -> bool {
    return (b & 0x7f800000u) != 0x7f800000u;
}

// a / b rounded to nearest even, for b positive and normal. A zero or subnormal `a` gives
// a signed zero, a result below the normal range flushes to zero and one above it is
// infinite (callers never use either beyond rounding or clamping them).
fn div_rn(a: f32, b: f32) -> f32 {
    let ab = bitcast<u32>(a);
    let sign = ab & 0x80000000u;
    let ea = (ab >> 23u) & 0xffu;
    if (ea == 0u) {
        return bitcast<f32>(sign);
    }
    let bb = bitcast<u32>(b);
    let eb = (bb >> 23u) & 0xffu;
    let ma = (ab & 0x7fffffu) | 0x800000u;
    let mb = (bb & 0x7fffffu) | 0x800000u;
    var e = i32(ea) - i32(eb) + 127;
    var rem = ma;
    if (rem < mb) {
        rem = rem << 1u;
        e = e - 1;
    }
    // 25 quotient bits: 24 of mantissa and a guard bit; the remainder is the sticky bit.
    var q = 0u;
    for (var i = 0u; i < 25u; i = i + 1u) {
        q = q << 1u;
        if (rem >= mb) {
            rem = rem - mb;
            q = q | 1u;
        }
        rem = rem << 1u;
    }
    var mant = q >> 1u;
    if ((q & 1u) == 1u && (rem != 0u || (mant & 1u) == 1u)) {
        mant = mant + 1u;
    }
    if (mant == 0x1000000u) {
        mant = mant >> 1u;
        e = e + 1;
    }
    if (e <= 0) {
        return bitcast<f32>(sign);
    }
    if (e >= 255) {
        return bitcast<f32>(sign | 0x7f800000u);
    }
    return bitcast<f32>(sign | (u32(e) << 23u) | (mant & 0x7fffffu));
}

// round_half_even(x / s) clamped to +-2^20, for s positive and normal: the f32 quotient
// of the reference, computed fast unless it lies within 1e-5 (relative) of a .5 tie.
fn round_quotient(x: f32, s: f32) -> f32 {
    let b = bitcast<u32>(x);
    let neg = (b & 0x80000000u) != 0u;
    // |x| / s >= 2^20 (also true for infinities): saturate without dividing.
    if (!is_finite_bits(b) || abs(x) * 9.5367431640625e-7 >= s) {
        return select(QUOTIENT_LIMIT, -QUOTIENT_LIMIT, neg);
    }
    let r = x / s;
    let t = r - floor(r);
    if (abs(t - 0.5) > abs(r) * 1e-5) {
        return round(r);
    }
    return round(div_rn(x, s));
}

fn quantize_one(x: f32, s: f32, z: i32, qmin: i32, qmax: i32) -> i32 {
    if (is_nan_bits(bitcast<u32>(x))) {
        return clamp(z, qmin, qmax);
    }
    return clamp(i32(round_quotient(x, s)) + z, qmin, qmax);
}

// Order-preserving map of finite floats to u32 (for atomicMin / atomicMax).
fn f32_to_ordered(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn ordered_to_f32(u: u32) -> f32 {
    return bitcast<f32>(select(~u, u & 0x7fffffffu, (u & 0x80000000u) != 0u));
}

// ---- ONNX's requantization, bit for bit --------------------------------------------
// ONNX's QLinearMatMul and QLinearConv (onnx.reference, numpy) compute
// rint(f64(acc) * f64(M) + zy) with M = f32(f32(sa * sw) / sy): one f64 product, one f64
// sum, then round half to even. WGSL has no f64, so the same value is computed exactly
// in 64-bit integers (two u32 words, x = low, y = high), with both f64 roundings
// reproduced: a product or sum wider than 53 bits is rounded to 53 significant bits,
// half to even, exactly where f64 would round it.

fn u64_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// a - b for a >= b.
fn u64_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn u64_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y < b.y || (a.y == b.y && a.x < b.x);
}

// a << s for s < 64.
fn u64_shl(a: vec2<u32>, s: u32) -> vec2<u32> {
    if (s == 0u) {
        return a;
    }
    if (s >= 32u) {
        return vec2<u32>(0u, a.x << (s - 32u));
    }
    return vec2<u32>(a.x << s, (a.y << s) | (a.x >> (32u - s)));
}

// a >> s for any s (0 from 64 on).
fn u64_shr(a: vec2<u32>, s: u32) -> vec2<u32> {
    if (s == 0u) {
        return a;
    }
    if (s >= 64u) {
        return vec2<u32>(0u, 0u);
    }
    if (s >= 32u) {
        return vec2<u32>(a.y >> (s - 32u), 0u);
    }
    return vec2<u32>((a.x >> s) | (a.y << (32u - s)), a.y >> s);
}

fn u64_bitlen(a: vec2<u32>) -> u32 {
    if (a.y != 0u) {
        return 64u - countLeadingZeros(a.y);
    }
    return 32u - countLeadingZeros(a.x);
}

// a / 2^s rounded half to even, for 1 <= s < 64.
fn u64_round_shr(a: vec2<u32>, s: u32) -> vec2<u32> {
    let q = u64_shr(a, s);
    let r = u64_sub(a, u64_shl(q, s));
    let half = u64_shl(vec2<u32>(1u, 0u), s - 1u);
    if (u64_lt(half, r) || (all(r == half) && (q.x & 1u) == 1u)) {
        return u64_add(q, vec2<u32>(1u, 0u));
    }
    return q;
}

// a rounded to 53 significant bits, half to even (f64's rounding of an integer).
fn u64_round53(a: vec2<u32>) -> vec2<u32> {
    let len = u64_bitlen(a);
    if (len <= 53u) {
        return a;
    }
    return u64_shl(u64_round_shr(a, len - 53u), len - 53u);
}

// a * m for a < 2^32, m < 2^24 (16-bit halves; every partial product fits 32 bits).
fn u64_mul_u24(a: u32, m: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let ml = m & 0xffffu;
    let mh = m >> 16u;
    var r = vec2<u32>(al * ml, ah * mh);
    r = u64_add(r, u64_shl(vec2<u32>(al * mh, 0u), 16u));
    r = u64_add(r, u64_shl(vec2<u32>(ah * ml, 0u), 16u));
    return r;
}

// clamp(rint(f64(acc) * f64(mult) + f64(zy)), qmin, qmax), as ONNX computes it, for mult
// >= 0 (a multiplier of scales). Value = sign * p * 2^-sh throughout.
fn requant_onnx(acc: i32, mult: f32, zy: i32, qmin: i32, qmax: i32) -> i32 {
    let bits = bitcast<u32>(mult);
    let ex = (bits >> 23u) & 0xffu;
    let man = bits & 0x7fffffu;
    if (acc == 0 || (ex == 0u && man == 0u)) {
        return clamp(zy, qmin, qmax);
    }
    let neg = acc < 0;
    if (ex == 255u) {
        return select(qmax, qmin, neg);
    }
    let m = select(man | 0x800000u, man, ex == 0u);
    let shi = select(150 - i32(ex), 149, ex == 0u);
    if (shi <= 0) {
        // |acc * mult| >= 2^23: saturated whatever the zero point.
        return select(qmax, qmin, neg);
    }
    var sh = u32(shi);
    let ua = select(bitcast<u32>(acc), ~bitcast<u32>(acc) + 1u, neg);
    // f64(acc) * f64(mult): the exact product, rounded to 53 bits.
    var p = u64_round53(u64_mul_u24(ua, m));
    // Far below the integers, keep 55 fractional bits and a sticky bit: rounding to odd
    // keeps the later rounding to 53 bits (at least 2 bits coarser) correct.
    if (sh > 55u) {
        let d = sh - 55u;
        let q = u64_shr(p, d);
        let sticky = d >= 64u || any(u64_shl(q, d) != p);
        p = vec2<u32>(q.x | select(0u, 1u, sticky && any(p != vec2<u32>(0u, 0u))), q.y);
        sh = 55u;
    }
    // + f64(zy): signed magnitudes; |zy| << 55 < 2^63.
    let z = u64_shl(vec2<u32>(u32(abs(zy)), 0u), sh);
    let zneg = zy < 0;
    var w: vec2<u32>;
    var wneg: bool;
    if (neg == zneg) {
        w = u64_add(p, z);
        wneg = neg;
    } else if (u64_lt(p, z)) {
        w = u64_sub(z, p);
        wneg = zneg;
    } else {
        w = u64_sub(p, z);
        wneg = neg;
    }
    // The f64 sum, then rint.
    let q = u64_round_shr(u64_round53(w), sh);
    if (q.y != 0u || q.x > 1048576u) {
        return select(qmax, qmin, wneg);
    }
    let r = select(i32(q.x), -i32(q.x), wneg);
    return clamp(r, qmin, qmax);
}
