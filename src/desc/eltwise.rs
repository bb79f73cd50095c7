//! The clip that ends the elementwise ops. Plain data; the ops are [`crate::ops::eltwise`].

use crate::desc::gemm::Activation;
use crate::error::{Error, Result};

/// A clip `[lo, hi]` applied after an elementwise op (ReLU is `[0, inf]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// Lower bound.
    pub lo: f32,
    /// Upper bound.
    pub hi: f32,
}

impl Clip {
    /// No clipping.
    pub const NONE: Clip = Clip {
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };
    /// `max(x, 0)`.
    pub const RELU: Clip = Clip {
        lo: 0.0,
        hi: f32::INFINITY,
    };
    /// `clamp(x, 0, 6)`.
    pub const RELU6: Clip = Clip { lo: 0.0, hi: 6.0 };

    /// The clip of an [`Activation`].
    pub fn from_activation(a: Activation) -> Clip {
        match a {
            Activation::None => Clip::NONE,
            Activation::Relu => Clip::RELU,
            Activation::Relu6 => Clip::RELU6,
        }
    }

    /// `clamp(v, lo, hi)` (the reference's twin of the shader).
    pub fn apply(self, v: f32) -> f32 {
        v.max(self.lo).min(self.hi)
    }

    pub(crate) fn check(self, op: &'static str) -> Result<()> {
        if self.lo.is_nan() || self.hi.is_nan() || self.lo > self.hi {
            return Err(Error::invalid(
                op,
                format!("clip [{}, {}] is empty or NaN", self.lo, self.hi),
            ));
        }
        Ok(())
    }
}
