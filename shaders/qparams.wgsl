// Dynamic quantization parameters on the GPU: one invocation per slot turns the min/max
// codes written by qstats.wgsl (MODE 0) into a scale and a zero point, with exactly the
// f32 arithmetic of params_for_range in src/quant/mod.rs (ONNX DynamicQuantizeLinear
// for u8 asymmetric per tensor).

// #import common/quant_math.wgsl

struct Params {
    count: u32,
    qmin: i32,
    qmax: i32,
    symmetric: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> zero_points: array<i32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.count) {
        return;
    }
    var mn = 0.0;
    var mx = 0.0;
    // A slot without finite values keeps its initial codes (min > max): range [0, 0].
    if (stats[2u * i] <= stats[2u * i + 1u]) {
        mn = ordered_to_f32(stats[2u * i]);
        mx = ordered_to_f32(stats[2u * i + 1u]);
    }
    let min0 = min(mn, 0.0);
    let max0 = max(mx, 0.0);
    let levels = f32(p.qmax - p.qmin);
    let sym = p.symmetric != 0u;
    let absmax = max(-min0, max0);
    var s = 1.0;
    if (absmax < F32_MIN_NORMAL) {
        s = 1.0;
    } else if (sym) {
        s = clamp(div_rn(absmax, levels * 0.5), F32_MIN_NORMAL, MAX_SCALE);
    } else if (max0 * 0.5 - min0 * 0.5 >= 1.7014118e38) {
        s = MAX_SCALE;
    } else {
        s = clamp(div_rn(max0 - min0, levels), F32_MIN_NORMAL, MAX_SCALE);
    }
    var z = 0;
    if (sym) {
        z = select((p.qmin + p.qmax + 1) / 2, 0, p.qmin < 0);
    } else {
        let zf = round(f32(p.qmin) - div_rn(min0, s));
        z = i32(clamp(zf, f32(p.qmin), f32(p.qmax)));
    }
    scales[i] = s;
    zero_points[i] = z;
}
