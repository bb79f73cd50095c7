// Dequantize packed integers to f32 or f16: out = scale * (q - zero_point), one
// invocation per output word (one f32, or two f16 packed with pack2x16float, so f16
// output works without SHADER_F16).
//
// Compile-time constants: BITS (4, 8, 16), SIGNED, OUT_F16, SLOTS (0: slot per element;
// 1: per tensor; 2: one slot per row of the [rows, cols] view).

// #import common/quant_math.wgsl

struct Params {
    slots: Slots,
    cols: u32,
    words_per_row: u32,
    numel: u32,
    out_words: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> zero_points: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const PER_WORD: u32 = 32u / BITS;
const MASK: u32 = 0xffffffffu >> (32u - BITS);

fn load_code(flat: u32) -> i32 {
    let row = flat / p.cols;
    let col = flat % p.cols;
    let word = q[row * p.words_per_row + col / PER_WORD];
    let raw = (word >> ((col % PER_WORD) * BITS)) & MASK;
    if (SIGNED) {
        return bitcast<i32>(raw << (32u - BITS)) >> (32u - BITS);
    }
    return i32(raw);
}

fn value(flat: u32) -> f32 {
    var s = 0u;
    if (SLOTS == 2u) {
        s = flat / p.cols;
    } else if (SLOTS == 0u) {
        s = slot_of(p.slots, flat);
    }
    return scales[s] * f32(load_code(flat) - zero_points[s]);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let w = (wg.x + nwg.x * (wg.y + nwg.y * wg.z)) * 256u + li;
    if (w >= p.out_words) {
        return;
    }
    if (OUT_F16) {
        let f0 = 2u * w;
        var hi = 0.0;
        if (f0 + 1u < p.numel) {
            hi = value(f0 + 1u);
        }
        out[w] = pack2x16float(vec2<f32>(value(f0), hi));
    } else {
        out[w] = bitcast<u32>(value(w));
    }
}
