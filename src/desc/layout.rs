//! How a bilinear resize maps an output pixel to the input (ONNX `Resize`'s
//! `coordinate_transformation_mode`). Plain data; the op is [`crate::ops::layout`].

/// The coordinate transformation of a bilinear resize along one axis, from output index
/// `o` to a (fractional) input coordinate; `scale` is output size over input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeCoords {
    /// `(o + 0.5) / scale - 0.5` (ONNX's default; PyTorch's `align_corners=False`).
    HalfPixel,
    /// As `HalfPixel`, but 0 where the output size is 1.
    PytorchHalfPixel,
    /// `o * (in - 1) / (in * scale - 1)` (ONNX's resized length `in * scale`, the output
    /// size where that is whole; 0 where the output size is 1).
    AlignCorners,
    /// `o / scale`.
    Asymmetric,
    /// `in / 2 * (1 - out / (in * scale)) + (o + 0.5) / scale - 0.5` (ONNX's
    /// `half_pixel_symmetric`: half pixel, centred where the output size is rounded).
    HalfPixelSymmetric,
}

impl ResizeCoords {
    /// The shader's code.
    pub(crate) fn code(self) -> u32 {
        match self {
            ResizeCoords::HalfPixel => 0,
            ResizeCoords::PytorchHalfPixel => 1,
            ResizeCoords::AlignCorners => 2,
            ResizeCoords::Asymmetric => 3,
            ResizeCoords::HalfPixelSymmetric => 4,
        }
    }

    /// The input coordinate of output index `o` (the reference's twin of the shader's),
    /// before clamping to the image.
    pub fn source(self, o: usize, in_size: usize, out_size: usize, scale: f32) -> f64 {
        let (o, s) = (o as f64, f64::from(scale));
        match self {
            ResizeCoords::HalfPixel => (o + 0.5) / s - 0.5,
            ResizeCoords::PytorchHalfPixel if out_size > 1 => (o + 0.5) / s - 0.5,
            ResizeCoords::PytorchHalfPixel => 0.0,
            ResizeCoords::AlignCorners if out_size > 1 => {
                o * (in_size as f64 - 1.0) / (in_size as f64 * s - 1.0)
            }
            ResizeCoords::AlignCorners => 0.0,
            ResizeCoords::Asymmetric => o / s,
            ResizeCoords::HalfPixelSymmetric => {
                let n = in_size as f64;
                let adjustment = out_size as f64 / (n * s);
                n / 2.0 * (1.0 - adjustment) + (o + 0.5) / s - 0.5
            }
        }
    }
}

/// What a pad fills the border with (ONNX `Pad`'s `mode`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode {
    /// One value (ONNX `constant`, default 0).
    Constant(f32),
    /// The nearest element of the input (`edge`).
    Edge,
    /// The input mirrored about its first and last element, which are not repeated
    /// (`reflect`; pads below the dimension).
    Reflect,
    /// The input repeated (`wrap`, opset 19).
    Wrap,
}

impl PadMode {
    /// The shader's code and constant.
    pub(crate) fn code(self) -> (u32, f32) {
        match self {
            PadMode::Constant(v) => (0, v),
            PadMode::Edge => (1, 0.0),
            PadMode::Reflect => (2, 0.0),
            PadMode::Wrap => (3, 0.0),
        }
    }

    /// The input index that output index `o` reads on an axis of `n` elements padded by
    /// `before` in front, or `None` where the constant is read (the reference's twin of
    /// the shader's).
    pub fn source(self, o: usize, n: usize, before: usize) -> Option<usize> {
        let (i, ni) = (o as i64 - before as i64, n as i64);
        if (0..ni).contains(&i) {
            return Some(i as usize);
        }
        let j = match self {
            PadMode::Constant(_) => return None,
            PadMode::Edge => i.clamp(0, ni - 1),
            PadMode::Reflect if ni == 1 => 0,
            PadMode::Reflect => {
                let m = i.abs();
                (if m >= ni { 2 * (ni - 1) - m } else { m }).clamp(0, ni - 1)
            }
            PadMode::Wrap => i.rem_euclid(ni),
        };
        Some(j as usize)
    }
}
