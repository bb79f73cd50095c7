//! The tile of the row kernels (W8A8 and weight-only GEMMs, the float and INT8
//! convolutions): a plain value the plan chooses, the tuner stores and the ops record.

/// Tile of the row kernels ([`crate::ops::qgemm`], [`crate::ops::wgemm`], [`crate::ops::conv`]): `wg` invocations along N,
/// each computing `tm` rows by `4 * tn4` consecutive-by-four columns, and for the GEMMs
/// K cut into `split_k` slices that run in parallel (a second pass adds them and applies
/// the epilogue; see [`crate::plan::default_split_k`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RowTile {
    /// Invocations per workgroup, all along N.
    pub wg: u32,
    /// Rows per invocation.
    pub tm: u32,
    /// Groups of 4 columns per invocation.
    pub tn4: u32,
    /// K slices computed in parallel (1: no split). Convolutions take 1 only. Absent
    /// from tuning caches written before split-K existed, where it reads as 1.
    #[serde(default = "one")]
    pub split_k: u32,
}

fn one() -> u32 {
    1
}

impl RowTile {
    /// A tile without split-K.
    pub const fn new(wg: u32, tm: u32, tn4: u32) -> RowTile {
        RowTile {
            wg,
            tm,
            tn4,
            split_k: 1,
        }
    }

    /// This tile with K cut into `split_k` parallel slices.
    pub const fn split_k(self, split_k: u32) -> RowTile {
        RowTile { split_k, ..self }
    }

    /// The workgroup sizes a tile may be narrowed to by [`RowTile::fit`].
    pub const NARROW_WG: [u32; 3] = [8, 16, 32];

    /// This tile with its workgroup narrowed (to 8, 16 or 32 invocations) when `ncols`
    /// output columns would leave most of a 64-wide workgroup idle: invocations past the
    /// last column still run the whole reduction on clamped columns, so a 64-channel layer
    /// on a 512-column workgroup would waste 7/8 of the work.
    pub fn fit(self, ncols: usize) -> RowTile {
        let need = (ncols as u64).div_ceil(u64::from(self.tn4) * 4).max(1);
        let wg = Self::NARROW_WG
            .into_iter()
            .find(|&w| u64::from(w) >= need)
            .unwrap_or(self.wg)
            .min(self.wg);
        RowTile { wg, ..self }
    }

    /// Output columns one workgroup covers.
    pub fn columns(self) -> u32 {
        self.wg * self.tn4 * 4
    }
}
