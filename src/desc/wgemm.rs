//! Weight-only and FP16 GEMM options, and the f16 arithmetic shared with the float
//! convolution. Plain data; the op is [`crate::ops::wgemm`].

use crate::desc::gemm::{Activation, GemmKernel};
use crate::desc::rows::RowTile;

/// Arithmetic of the FP16 GEMM (f16 weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HalfMath {
    /// The plan's choice: f16 products with f32 accumulation where the device has
    /// `SHADER_F16` and is a GPU, else f32.
    #[default]
    Auto,
    /// Widen to f32 (any adapter).
    F32,
    /// f16 products, f32 accumulation (`SHADER_F16`).
    F16AccF32,
    /// f16 products and accumulation (`SHADER_F16`).
    F16,
}

/// The tiles the plan may choose (tests run all of them).
pub const TILES: [RowTile; 5] = [
    RowTile::new(64, 1, 2),
    RowTile::new(64, 2, 2),
    RowTile::new(64, 4, 1),
    RowTile::new(64, 4, 2),
    RowTile::new(64, 8, 1),
];

/// Options of [`crate::ops::wgemm::wgemm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WGemmDesc {
    /// Activation after the bias.
    pub activation: Activation,
    /// Arithmetic for f16 weights.
    pub math: HalfMath,
    /// Pins a tile instead of the plan's choice.
    pub config: Option<RowTile>,
    /// Pins the FP32-kernel route on this FP32 register or subgroup kernel instead of the
    /// plan's choice ([`crate::plan::wgemm_route`]): f16 weights read as f16 in f32
    /// arithmetic (f16 arithmetic refuses it), or quantized weights dequantized into an
    /// f32 scratch first; the tuner's candidates.
    pub fp32_kernel: Option<GemmKernel>,
    /// Pins the row kernel (like `config`) and how it reads the activations: `true` from
    /// a uniform copy of `X` (where it fits [`crate::plan::X_UNIFORM_BYTES`] and `X`'s
    /// buffer has `COPY_SRC`; an error otherwise), `false` from its storage binding.
    /// `None`: the plan's choice ([`crate::plan::wgemm_uniform_x`]).
    pub uniform_x: Option<bool>,
}

impl WGemmDesc {
    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the f16 arithmetic.
    pub fn math(mut self, math: HalfMath) -> Self {
        self.math = math;
        self
    }

    /// Pins a tile.
    pub fn config(mut self, config: RowTile) -> Self {
        self.config = Some(config);
        self
    }

    /// Pins the FP32-kernel route's kernel.
    pub fn fp32_kernel(mut self, kernel: GemmKernel) -> Self {
        self.fp32_kernel = Some(kernel);
        self
    }

    /// Pins how the row kernel reads the activations (see [`WGemmDesc::uniform_x`]).
    pub fn uniform_x(mut self, uniform: bool) -> Self {
        self.uniform_x = Some(uniform);
        self
    }
}
