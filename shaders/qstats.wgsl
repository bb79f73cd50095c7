// Calibration statistics on the GPU, per channel of a tensor viewed as
// [outer, channels, inner]: MODE 0 accumulates each channel's finite min and max (as
// order-preserving u32 codes, with atomicMin / atomicMax), MODE 1 a histogram of BINS
// bins over [-R, R] per channel. Both count the non-finite values they skip. Each
// workgroup handles CHUNK elements of one channel.
//
// Compile-time constants: MODE, BINS, IN_F16.
//
// out layout: MODE 0: [min0, max0, min1, max1, ..., nonfinite]
//             MODE 1: [channel 0 bins..., channel 1 bins..., ..., nonfinite]
// ranges (MODE 1): [R0, BINS / (2 R0), R1, ...]
// A dispatch may cover channels chan0.. of the statistics only (x bound from the first
// of them), or whole outer indices; the statistics accumulate across dispatches.

// #import common/quant_math.wgsl

struct Params {
    channels: u32,
    inner: u32,
    per_channel: u32,
    chunks: u32,
    chan0: u32,          // first channel of this dispatch (a piece of the channels)
    all_channels: u32,   // channels of the statistics (out and ranges)
    _pad1: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> ranges: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<atomic<u32>>;

const WG: u32 = 256u;
const ITEMS: u32 = 16u;
const CHUNK: u32 = WG * ITEMS;

var<workgroup> wg_min: atomic<u32>;
var<workgroup> wg_max: atomic<u32>;
var<workgroup> wg_bad: atomic<u32>;

fn load_bits(flat: u32) -> u32 {
    if (IN_F16) {
        let pair = unpack2x16float(x[flat >> 1u]);
        return bitcast<u32>(select(pair.x, pair.y, (flat & 1u) == 1u));
    }
    return x[flat];
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let id = wg.x + nwg.x * (wg.y + nwg.y * wg.z);
    // Uniform control flow: every invocation of a workgroup takes the same branch.
    if (id >= p.channels * p.chunks) {
        return;
    }
    let c = id / p.chunks;
    let start = (id % p.chunks) * CHUNK;
    if (li == 0u) {
        atomicStore(&wg_min, 0xffffffffu);
        atomicStore(&wg_max, 0u);
        atomicStore(&wg_bad, 0u);
    }
    workgroupBarrier();
    var lo = 0xffffffffu;
    var hi = 0u;
    var bad = 0u;
    var r = 0.0;
    var inv = 0.0;
    if (MODE == 1u) {
        r = ranges[2u * (c + p.chan0)];
        inv = ranges[2u * (c + p.chan0) + 1u];
    }
    for (var k = 0u; k < ITEMS; k = k + 1u) {
        let e = start + k * WG + li;
        if (e < p.per_channel) {
            let o = e / p.inner;
            let flat = (o * p.channels + c) * p.inner + (e % p.inner);
            let b = load_bits(flat);
            if (!is_finite_bits(b)) {
                bad = bad + 1u;
            } else if (MODE == 0u) {
                let u = f32_to_ordered(bitcast<f32>(b));
                lo = min(lo, u);
                hi = max(hi, u);
            } else {
                let f = floor((bitcast<f32>(b) + r) * inv);
                let bin = min(u32(max(f, 0.0)), BINS - 1u);
                atomicAdd(&out[(c + p.chan0) * BINS + bin], 1u);
            }
        }
    }
    if (MODE == 0u) {
        atomicMin(&wg_min, lo);
        atomicMax(&wg_max, hi);
    }
    if (bad != 0u) {
        atomicAdd(&wg_bad, bad);
    }
    workgroupBarrier();
    if (li == 0u) {
        if (MODE == 0u) {
            atomicMin(&out[2u * (c + p.chan0)], atomicLoad(&wg_min));
            atomicMax(&out[2u * (c + p.chan0) + 1u], atomicLoad(&wg_max));
        }
        let nb = atomicLoad(&wg_bad);
        if (nb != 0u) {
            let tail = select(p.all_channels * BINS, 2u * p.all_channels, MODE == 0u);
            atomicAdd(&out[tail], nb);
        }
    }
}
