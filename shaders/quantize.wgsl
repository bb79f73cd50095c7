// Quantize f32 or f16 values to packed integers: one invocation per output word, so that
// no two invocations write the same word. Layout: src/quant/pack.rs.
//
// Compile-time constants: BITS (4, 8, 16), IN_F16 (input is f16, read as u32 pairs),
// SLOTS (0: any granularity, slot per element; 1: per tensor; 2: one slot per row, which
// a word never straddles). The specialized modes load the scale and zero point once per
// word and skip the slot arithmetic; the codes are the same.

// #import common/quant_math.wgsl

struct Params {
    slots: Slots,
    rows: u32,
    cols: u32,
    words_per_row: u32,
    words: u32,
    qmin: i32,
    qmax: i32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read> zero_points: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const PER_WORD: u32 = 32u / BITS;
const MASK: u32 = 0xffffffffu >> (32u - BITS);

fn load_x(flat: u32) -> f32 {
    if (IN_F16) {
        let pair = unpack2x16float(x[flat >> 1u]);
        return select(pair.x, pair.y, (flat & 1u) == 1u);
    }
    return bitcast<f32>(x[flat]);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let w = (wg.x + nwg.x * (wg.y + nwg.y * wg.z)) * 256u + li;
    if (w >= p.words) {
        return;
    }
    let row = w / p.words_per_row;
    let c0 = (w % p.words_per_row) * PER_WORD;
    var word = 0u;
    var s0 = 0.0;
    var z0 = 0;
    if (SLOTS == 1u) {
        s0 = scales[0];
        z0 = zero_points[0];
    } else if (SLOTS == 2u) {
        s0 = scales[row];
        z0 = zero_points[row];
    }
    for (var e = 0u; e < PER_WORD; e = e + 1u) {
        let col = c0 + e;
        if (col < p.cols) {
            let flat = row * p.cols + col;
            var s = s0;
            var z = z0;
            if (SLOTS == 0u) {
                let slot = slot_of(p.slots, flat);
                s = scales[slot];
                z = zero_points[slot];
            }
            let q = quantize_one(load_x(flat), s, z, p.qmin, p.qmax);
            word = word | ((bitcast<u32>(q) & MASK) << (e * BITS));
        }
    }
    out[w] = word;
}
