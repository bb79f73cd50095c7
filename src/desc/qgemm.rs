//! W8A8 GEMM options and tiles. Plain data; the op is [`crate::ops::qgemm`].

use crate::desc::gemm::Activation;
use crate::desc::rows::RowTile;

/// The tiles the plan may choose (tests run all of them): 1x8, 2x8, 4x4, 4x8 (the
/// default for 3 rows or more), 8x4 and 8x8 rows x columns per invocation.
pub const TILES: [RowTile; 6] = [
    RowTile::new(64, 1, 2),
    RowTile::new(64, 2, 2),
    RowTile::new(64, 4, 1),
    RowTile::new(64, 4, 2),
    RowTile::new(64, 8, 1),
    RowTile::new(64, 8, 2),
];

/// Options of [`crate::ops::qgemm::qgemm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QGemmDesc {
    /// Activation after the bias (float and requantized outputs).
    pub activation: Activation,
    /// Pins a tile instead of the plan's choice.
    pub config: Option<RowTile>,
    /// `Some(false)` runs the unpacked integer fallback instead of `dot4I8Packed` (same
    /// results); `None` uses the packed dot product where the adapter has it.
    pub packed_dot: Option<bool>,
    /// Requantizes as ONNX's `QLinearMatMul` and `QLinearConv` do (bit for bit with
    /// `onnx.reference`): `clamp(round_half_even(f64(acc + bias) * f64(M) + zy))` with
    /// `M = f32(f32(sa * sw) / sy)`, the bias an i32 tensor in units of `sa * sw`. Needs a
    /// requantized output and no activation. Off: the output's code is the dequantized
    /// f32 value (f32 bias, activation) quantized with the output's scale.
    pub onnx_requant: bool,
    /// Pins how a GEMM reads A: `true` from a uniform copy of A's codes (where they fit
    /// [`crate::plan::X_UNIFORM_BYTES`], A is bound whole and its buffer has `COPY_SRC`;
    /// an error otherwise, and for convolutions), `false` from its storage binding.
    /// `None`: the plan's choice ([`crate::plan::qgemm_uniform_a`]).
    pub uniform_a: Option<bool>,
}

impl QGemmDesc {
    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Pins a tile.
    pub fn config(mut self, config: RowTile) -> Self {
        self.config = Some(config);
        self
    }

    /// Rounds a requantized output as ONNX does (see [`QGemmDesc::onnx_requant`]).
    pub fn onnx_requant(mut self, on: bool) -> Self {
        self.onnx_requant = on;
        self
    }

    /// Chooses the packed dot product (`true`) or the unpacked fallback (`false`).
    pub fn packed_dot(mut self, packed: bool) -> Self {
        self.packed_dot = Some(packed);
        self
    }

    /// Pins how a GEMM reads A (see [`QGemmDesc::uniform_a`]).
    pub fn uniform_a(mut self, uniform: bool) -> Self {
        self.uniform_a = Some(uniform);
        self
    }
}
