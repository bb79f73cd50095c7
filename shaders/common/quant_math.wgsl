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
