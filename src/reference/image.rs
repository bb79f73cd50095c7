//! The image-input reference ([`crate::ops::image`]) on the CPU, in the kernel's f32
//! arithmetic.

use crate::desc::image::ImageDesc;

/// The reference of [`crate::ops::image::image_to_tensor`] on the CPU (f32, the same arithmetic): `rgba`
/// holds `width * height` pixels as `[r, g, b, a]` bytes.
pub fn image_to_tensor_reference(
    rgba: &[[u8; 4]],
    width: usize,
    height: usize,
    desc: &ImageDesc,
) -> Vec<f32> {
    let [rh, rw] = desc.resized(height, width);
    let (top, left) = ((rh - desc.crop[0]) / 2, (rw - desc.crop[1]) / 2);
    let (scale_x, scale_y) = (width as f32 / rw as f32, height as f32 / rh as f32);
    let px = |x: usize, y: usize, c: usize| f32::from(rgba[y * width + x][c]);
    let mut out = Vec::with_capacity(desc.crop[0] * desc.crop[1] * 3);
    for oy in 0..desc.crop[0] {
        for ox in 0..desc.crop[1] {
            let sx = ((ox + left) as f32 + 0.5) * scale_x - 0.5;
            let sy = ((oy + top) as f32 + 0.5) * scale_y - 0.5;
            let (sx, sy) = (sx.max(0.0), sy.max(0.0));
            let x0 = (sx.floor() as usize).min(width - 1);
            let y0 = (sy.floor() as usize).min(height - 1);
            let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
            let (fx, fy) = (sx - sx.floor(), sy - sy.floor());
            for c in 0..3 {
                let t = px(x0, y0, c) + (px(x1, y0, c) - px(x0, y0, c)) * fx;
                let b = px(x0, y1, c) + (px(x1, y1, c) - px(x0, y1, c)) * fx;
                let v = t + (b - t) * fy;
                out.push((v - desc.mean[c]) / desc.std[c]);
            }
        }
    }
    out
}
