// The dequantizing epilogue of the W8A8 kernels (qgemm.wgsl, conv_dw_q8.wgsl), rounded
// exactly as `reference::qgemm_dequant`: s = sa * sw, v = r * s, v = v + bias, each once
// in f32, then the activation. Uses the kernel's `p.opaque_zero`, `p.a_row_stride`,
// `p.w_col_stride`, `p.flags` and its `a_scales`, `w_scales` and `bias` bindings.
// #import common/epilogue.wgsl
// #expects p.opaque_zero, p.a_row_stride, p.w_col_stride, p.flags, p.out_scale, p.out_zero, p.out_qmin, p.out_qmax, a_scales, w_scales, bias

// f32 product whose result cannot be fused into a following add: the OR with a uniform
// zero is opaque to the compiler, so `no_fuse(x * y) + b` rounds twice, like the Rust
// reference. Vulkan, Metal and D3D all round f32 add and multiply correctly.
fn no_fuse(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | p.opaque_zero);
}

fn dequant(r: i32, row: u32, col: u32) -> f32 {
    let s = a_scales[row * p.a_row_stride] * w_scales[col * p.w_col_stride];
    return bias_act(no_fuse(f32(r) * s), p.flags, col);
}

// The requantized 8-bit code of accumulator `r`: with flags bit 3, as ONNX's QLinearConv
// and QLinearMatMul round it (the bias an int32 in units of sa * sw, added to the
// accumulator; M = (sa * sw) / sy rounded in f32; common/quant_math.wgsl's
// requant_onnx); else the dequantized value (bias, activation) quantized with the
// output's scale, as reference::qgemm_dequant and quantize_value round it.
fn requant_code(r: i32, row: u32, col: u32) -> i32 {
    if ((p.flags & 8u) != 0u) {
        var acc = r;
        if ((p.flags & 1u) != 0u) {
            acc = acc + bitcast<i32>(bias[col]);
        }
        let s = no_fuse(a_scales[row * p.a_row_stride] * w_scales[col * p.w_col_stride]);
        return requant_onnx(acc, div_rn(s, p.out_scale), p.out_zero, p.out_qmin, p.out_qmax);
    }
    return quantize_one(dequant(r, row, col), p.out_scale, p.out_zero, p.out_qmin, p.out_qmax);
}
