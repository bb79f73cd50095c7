//! Plain-Rust references for every kernel: the test oracle. They mirror the shaders' index
//! arithmetic (strides, transposes, broadcast) but accumulate in f64, so a float kernel's
//! error is measured against something more exact than itself.

mod conv;
mod eltwise;
mod gemm;
mod image;
pub mod layout;
mod pool;
mod qgemm;
pub mod train;
mod wgemm;

pub use conv::{conv2d_f64, qconv2d_i32};
pub use eltwise::{
    binary_f64, channel_affine_f64, layer_norm_f64, map_f64, qadd, row_reduce_f64, softmax_f64,
};
pub use gemm::{gemm, gemm_at};
pub use image::image_to_tensor_reference;
pub use pool::{max_pool_grad_f64, pool_f64};
pub use qgemm::{qgemm_dequant, qgemm_i32, requant_onnx};
pub use wgemm::linear_f64;

/// The `cols x rows` transpose of a row-major `rows x cols` matrix (a linear layer's
/// `[N, K]` weight as the GEMM's `[K, N]` B, and back).
pub fn transpose<T: Copy>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(
        x.len(),
        rows * cols,
        "transpose: {rows} x {cols} needs {} elements",
        rows * cols
    );
    let mut out = Vec::with_capacity(x.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| x[r * cols + c]));
    }
    out
}

/// Relative error `||out - ref|| / ||ref||` (2-norms, f64), the float kernels' metric.
/// Returns 0 when both are zero and infinity when only the reference is.
pub fn rel_error(out: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(out.len(), reference.len(), "rel_error: length mismatch");
    let (mut num, mut den) = (0f64, 0f64);
    for (&o, &r) in out.iter().zip(reference) {
        let d = f64::from(o) - f64::from(r);
        num += d * d;
        den += f64::from(r) * f64::from(r);
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

/// The index of the element that differs most (absolute), for failure messages.
pub fn worst_index(out: &[f32], reference: &[f32]) -> usize {
    out.iter()
        .zip(reference)
        .map(|(&o, &r)| {
            let d = (f64::from(o) - f64::from(r)).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d
            }
        })
        .enumerate()
        .fold(
            (0, -1.0),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        )
        .0
}
