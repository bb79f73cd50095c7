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
    /// Pins the FP16 GEMM on cooperative matrices (tensor cores) either way: `true` where
    /// it applies (f16 weights and activations, f16 products, an adapter listing 16x16x16
    /// f16 matrices with f32 accumulation and 32-wide subgroups, no row tile, FP32
    /// kernel or `uniform_x` pinned; an error otherwise), `false` never. `None`: the
    /// plan's choice ([`crate::plan::wgemm_coop`]).
    pub cooperative: Option<bool>,
    /// Pins the cooperative kernel's block (implies `cooperative`; the tuner's
    /// candidates).
    pub coop_tile: Option<CoopTile>,
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

    /// Pins the cooperative-matrix kernel either way (see [`WGemmDesc::cooperative`]).
    pub fn cooperative(mut self, on: bool) -> Self {
        self.cooperative = Some(on);
        self
    }

    /// Pins the cooperative kernel on `tile`.
    pub fn coop_tile(mut self, tile: CoopTile) -> Self {
        self.cooperative = Some(true);
        self.coop_tile = Some(tile);
        self
    }
}

/// The block of the FP16 GEMM on cooperative matrices: `wm x wn` subgroups of 32
/// invocations, each computing 32 x 64 outputs as 2 x 4 matrices of 16 x 16, so a
/// workgroup computes `32 * wm` rows by `64 * wn` columns; and the parallel split of K
/// (1: none; the slices' sums are added by a second pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CoopTile {
    /// Subgroups along M.
    pub wm: u32,
    /// Subgroups along N.
    pub wn: u32,
    /// K slices run in parallel (1: not split).
    #[serde(default = "one")]
    pub split_k: u32,
}

fn one() -> u32 {
    1
}

impl CoopTile {
    /// A block without split-K.
    pub const fn new(wm: u32, wn: u32) -> Self {
        CoopTile { wm, wn, split_k: 1 }
    }

    /// The blocks the plan and the tuner choose from: 128 x 128, 64 x 128, 32 x 128.
    pub const TILES: [CoopTile; 3] = [
        CoopTile::new(4, 2),
        CoopTile::new(2, 2),
        CoopTile::new(1, 2),
    ];

    /// The same block with K split `split_k` ways.
    pub fn split_k(self, split_k: u32) -> Self {
        CoopTile { split_k, ..self }
    }

    /// Rows of the block.
    pub fn rows(self) -> u32 {
        self.wm.saturating_mul(32)
    }

    /// Columns of the block.
    pub fn columns(self) -> u32 {
        self.wn.saturating_mul(64)
    }

    /// Invocations per workgroup.
    pub fn invocations(self) -> u32 {
        self.wm.saturating_mul(self.wn).saturating_mul(32)
    }

    /// Bytes of workgroup memory: the f16 tiles of X and W (32 values of K, rows padded
    /// to 40 halves) and one f32 16 x 16 slot per subgroup.
    pub fn workgroup_bytes(self) -> u32 {
        let tiles = self
            .rows()
            .saturating_add(self.columns())
            .saturating_mul(80);
        tiles.saturating_add(self.invocations().saturating_mul(32))
    }

    /// Whether the kernel can run the block: 1 to 32 subgroups in each direction, a split
    /// of at least 1, and staging loads (eight halves each, 32 values of K per tile) that
    /// divide evenly among the invocations.
    pub fn is_valid(self) -> bool {
        let t = self.invocations();
        (1..=32).contains(&self.wm)
            && (1..=32).contains(&self.wn)
            && self.split_k > 0
            && (self.rows() * 4).is_multiple_of(t)
            && (self.columns() * 4).is_multiple_of(t)
    }
}
