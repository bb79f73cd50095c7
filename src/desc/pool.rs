//! Pooling windows. Plain data; the op is [`crate::ops::pool`].

use crate::desc::conv::{ConvDesc, ConvDims, Padding};
use crate::error::{Error, Result};

const OP: &str = "pool2d";

/// Which reduction a pooling window applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The largest value inside the image.
    Max,
    /// The mean.
    Avg,
}

/// A pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDesc {
    /// Max or average.
    pub kind: PoolKind,
    /// `[KH, KW]`; `None` pools the whole image (global pooling).
    pub kernel: Option<[usize; 2]>,
    /// `[vertical, horizontal]` stride.
    pub stride: [usize; 2],
    /// Padding.
    pub padding: Padding,
    /// `[vertical, horizontal]` dilation.
    pub dilation: [usize; 2],
    /// Average only: divide by the whole window, padding included.
    pub count_pad: bool,
}

impl PoolDesc {
    /// A `k x k` window of `kind` with stride `stride`, no padding.
    pub fn new(kind: PoolKind, k: usize, stride: usize) -> PoolDesc {
        PoolDesc {
            kind,
            kernel: Some([k, k]),
            stride: [stride, stride],
            padding: Padding::Valid,
            dilation: [1, 1],
            count_pad: false,
        }
    }

    /// Global average pooling: `[B, H, W, C]` to `[B, 1, 1, C]`.
    pub fn global_avg() -> PoolDesc {
        PoolDesc {
            kernel: None,
            ..PoolDesc::new(PoolKind::Avg, 1, 1)
        }
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Geometry through the convolution's rules: `(out_h, out_w, [top, left], kernel)`.
    pub(crate) fn geometry(
        &self,
        x_shape: &[usize],
    ) -> Result<(usize, usize, [usize; 2], [usize; 2])> {
        let &[_, h, w, c] = x_shape else {
            return Err(Error::shape(
                OP,
                format!("the input has shape {x_shape:?}; expected NHWC [B, H, W, C]"),
            ));
        };
        let kernel = self.kernel.unwrap_or([h, w]);
        if kernel.contains(&0) {
            return Err(Error::invalid(
                OP,
                format!("kernel {kernel:?} must be at least 1 in both dimensions"),
            ));
        }
        let dims = ConvDims::new(1, c.max(1), kernel, 1)?;
        let desc = ConvDesc {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            ..ConvDesc::default()
        };
        let mut shape = x_shape.to_vec();
        shape[3] = c.max(1);
        let s = crate::desc::conv::ConvShape::for_op(OP, &desc, &dims, &shape)?;
        Ok((s.out_h, s.out_w, [s.pad[0], s.pad[1]], kernel))
    }

    /// The NHWC output shape for an input of shape `x_shape`.
    pub fn output_shape(&self, x_shape: &[usize]) -> Result<Vec<usize>> {
        let (oh, ow, _, _) = self.geometry(x_shape)?;
        Ok(vec![x_shape[0], oh, ow, x_shape[3]])
    }
}
