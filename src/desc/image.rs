//! Image input: resize, center crop and normalization. Plain data; the op is
//! [`crate::ops::image`], the reference [`crate::reference::image_to_tensor_reference`].

/// Resize, crop and normalization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageDesc {
    /// The size the image is resized to, `[height, width]`; `None` resizes the shorter
    /// side to `shorter` keeping the aspect ratio.
    pub resize: Option<[usize; 2]>,
    /// The shorter side after resizing, when `resize` is `None`.
    pub shorter: usize,
    /// The output size `[height, width]`, cropped from the center of the resized image.
    pub crop: [usize; 2],
    /// Subtracted from the 0..255 values, per channel (R, G, B).
    pub mean: [f32; 3],
    /// Divides the centered values, per channel.
    pub std: [f32; 3],
}

impl ImageDesc {
    /// Resize the shorter side to `shorter`, then crop `h x w` from the center; no
    /// normalization (mean 0, std 1).
    pub fn center_crop(shorter: usize, h: usize, w: usize) -> ImageDesc {
        ImageDesc {
            resize: None,
            shorter,
            crop: [h, w],
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    /// Sets the normalization.
    pub fn normalize(mut self, mean: [f32; 3], std: [f32; 3]) -> Self {
        self.mean = mean;
        self.std = std;
        self
    }

    /// `[1, crop_h, crop_w, 3]`.
    pub fn output_shape(&self) -> Vec<usize> {
        vec![1, self.crop[0], self.crop[1], 3]
    }

    /// The resized size `[h, w]` of a `src_h x src_w` image.
    pub fn resized(&self, src_h: usize, src_w: usize) -> [usize; 2] {
        self.resize.unwrap_or_else(|| {
            // The shorter side becomes exactly `shorter` (min * s rounds to it).
            let s = self.shorter as f64 / src_h.min(src_w).max(1) as f64;
            [src_h, src_w].map(|d| (d as f64 * s).round() as usize)
        })
    }
}
