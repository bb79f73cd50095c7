//! FP32 GEMM: what to compute ([`GemmDesc`]) and the kernel configurations the plan
//! chooses between ([`GemmKernel`]). Plain data; the op is [`crate::ops::gemm`].

use crate::error::{Error, Result};

const OP: &str = "gemm";

/// Activation applied after bias in a fused epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl Activation {
    pub(crate) fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        }
    }

    /// Applies the activation on the CPU (the reference's twin of the shader's epilogue).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
        }
    }
}

/// Configuration of the tiled kernel: a `wg_x * wg_y` workgroup computes a
/// `(wg_y * tm) x (wg_x * tn)` tile of C, `bk` deep per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TiledConfig {
    /// Workgroup width (invocations along N).
    pub wg_x: u32,
    /// Workgroup height (invocations along M).
    pub wg_y: u32,
    /// Rows per invocation (multiple of 4).
    pub tm: u32,
    /// Columns per invocation (multiple of 4).
    pub tn: u32,
    /// K depth of a staged tile.
    pub bk: u32,
}

/// Configuration of the register kernel: `wg` invocations along N, each computing `tm`
/// rows by `4 * tn4` columns, with the K loop unrolled `ku` times, and K cut into
/// `split_k` slices that run in parallel (parallel split-K: one dispatch computes every
/// slice's partial sums into a pooled scratch, a second adds them and applies the
/// epilogue). Split-K gives a GEMV-like shape, whose few output tiles would leave most of
/// a GPU's cores idle, `split_k` times the workgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RegConfig {
    /// Invocations per workgroup, all along N.
    pub wg: u32,
    /// Rows per invocation.
    pub tm: u32,
    /// Groups of 4 columns per invocation.
    pub tn4: u32,
    /// K unroll factor.
    pub ku: u32,
    /// K slices computed in parallel and summed by a reduce pass (1: no split). Absent
    /// from tuning caches written before split-K existed, where it reads as 1.
    #[serde(default = "one")]
    pub split_k: u32,
}

fn one() -> u32 {
    1
}

impl RegConfig {
    /// A register configuration without split-K.
    pub const fn new(wg: u32, tm: u32, tn4: u32, ku: u32) -> RegConfig {
        RegConfig {
            wg,
            tm,
            tn4,
            ku,
            split_k: 1,
        }
    }

    /// This configuration with K cut into `split_k` parallel slices.
    pub const fn split_k(self, split_k: u32) -> RegConfig {
        RegConfig { split_k, ..self }
    }
}

/// Configuration of the subgroup kernel: `wg` invocations along N, each computing `tm`
/// rows (a multiple of 8, shared through subgroup broadcasts) by `4 * tn4` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SubgroupConfig {
    /// Invocations per workgroup, all along N.
    pub wg: u32,
    /// Rows per invocation (multiple of 8).
    pub tm: u32,
    /// Groups of 4 columns per invocation.
    pub tn4: u32,
}

/// A GEMM kernel choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GemmKernel {
    /// Workgroup-memory tiled kernel.
    Tiled(TiledConfig),
    /// Register kernel without workgroup memory.
    Register(RegConfig),
    /// Register kernel sharing A through subgroup broadcasts (needs subgroups of at
    /// least 8 invocations).
    Subgroup(SubgroupConfig),
}

impl GemmKernel {
    /// The tiled configurations the plan may choose.
    pub const TILED: [TiledConfig; 2] = [
        TiledConfig {
            wg_x: 16,
            wg_y: 16,
            tm: 4,
            tn: 4,
            bk: 16,
        },
        TiledConfig {
            wg_x: 16,
            wg_y: 16,
            tm: 8,
            tn: 8,
            bk: 8,
        },
    ];

    /// The register configurations the plan may choose.
    pub const REGISTER: [RegConfig; 6] = [
        RegConfig::new(64, 1, 1, 4),
        RegConfig::new(64, 2, 1, 4),
        RegConfig::new(64, 4, 1, 4),
        RegConfig::new(64, 8, 1, 4),
        RegConfig::new(64, 4, 2, 2),
        RegConfig::new(32, 2, 2, 4),
    ];

    /// The subgroup configurations the plan may choose.
    pub const SUBGROUP: [SubgroupConfig; 5] = [
        SubgroupConfig {
            wg: 64,
            tm: 8,
            tn4: 2,
        },
        SubgroupConfig {
            wg: 64,
            tm: 16,
            tn4: 2,
        },
        SubgroupConfig {
            wg: 64,
            tm: 32,
            tn4: 1,
        },
        SubgroupConfig {
            wg: 64,
            tm: 8,
            tn4: 1,
        },
        SubgroupConfig {
            wg: 64,
            tm: 16,
            tn4: 1,
        },
    ];

    /// Every kernel choice (for tests, naga validation and tuning).
    pub fn all() -> Vec<GemmKernel> {
        Self::TILED
            .iter()
            .map(|&c| GemmKernel::Tiled(c))
            .chain(Self::REGISTER.iter().map(|&c| GemmKernel::Register(c)))
            .chain(Self::SUBGROUP.iter().map(|&c| GemmKernel::Subgroup(c)))
            .collect()
    }

    /// Checks the configuration itself (what any device needs): non-zero fields, tiles
    /// of whole vectors. The device's limits are checked when the kernel is recorded.
    pub fn check_config(self) -> crate::error::Result<()> {
        use crate::error::Error;
        const OP: &str = "gemm";
        match self {
            GemmKernel::Tiled(c) => {
                if c.tm % 4 != 0 || c.tn % 4 != 0 || c.tm == 0 || c.tn == 0 || c.bk == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "tiled config {c:?}: tm and tn must be non-zero multiples of 4, bk > 0"
                        ),
                    ));
                }
                if c.wg_x == 0 || c.wg_y == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!("tiled config {c:?}: wg_x and wg_y must be non-zero"),
                    ));
                }
            }
            GemmKernel::Register(c) => {
                if c.wg == 0 || c.tm == 0 || c.tn4 == 0 || c.ku == 0 || c.split_k == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!("register config {c:?}: every field must be non-zero"),
                    ));
                }
            }
            GemmKernel::Subgroup(c) => {
                if c.wg == 0 || c.tm == 0 || c.tm % 8 != 0 || c.tn4 == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "subgroup config {c:?}: tm must be a non-zero multiple of 8, wg and \
                             tn4 non-zero"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the device can run this kernel (subgroup kernels need subgroups of at least
    /// 8 invocations).
    pub fn supported(self, caps: &crate::Capabilities) -> bool {
        match self {
            GemmKernel::Subgroup(_) => caps.subgroups && caps.subgroup_size.0 >= 8,
            _ => true,
        }
    }

    /// Invocations per workgroup and bytes of workgroup memory the kernel needs.
    pub fn requirements(self) -> (u32, u32) {
        match self {
            GemmKernel::Tiled(c) => {
                let (bm, bn) = self.tile();
                (c.wg_x * c.wg_y, (bm + bn) * c.bk * 4)
            }
            GemmKernel::Register(c) => (c.wg, 0),
            GemmKernel::Subgroup(c) => (c.wg, 0),
        }
    }

    /// Whether the device can run this kernel: [`GemmKernel::supported`] and within the
    /// invocation and workgroup-memory limits.
    pub fn fits(self, caps: &crate::Capabilities) -> bool {
        let (inv, bytes) = self.requirements();
        self.supported(caps)
            && inv <= caps.limits.max_compute_invocations_per_workgroup
            && bytes <= caps.limits.max_compute_workgroup_storage_size
    }

    /// The workgroup sizes [`GemmKernel::fit`] may narrow a register or subgroup kernel to.
    pub const NARROW_WG: [u32; 3] = [8, 16, 32];

    /// This kernel with its workgroup narrowed for `n` output columns: a register or
    /// subgroup kernel covers `wg * 4 * tn4` columns per workgroup, and invocations past
    /// the last column still run the whole reduction on clamped columns, so a 64-wide
    /// workgroup on a 64-column product (3136x64x576, an implicit-GEMM convolution's
    /// shape) wastes 7/8 of its work. The workgroup becomes the narrowest of
    /// [`GemmKernel::NARROW_WG`] that is at least `min_wg` (a subgroup, where the kernel
    /// shares rows through subgroup operations or the device schedules whole subgroups)
    /// and covers `n`; never wider than it was. Tiled kernels are returned unchanged.
    pub fn fit(self, n: usize, min_wg: u32) -> GemmKernel {
        let narrow = |wg: u32, tn4: u32| {
            let need = (n as u64).div_ceil(u64::from(tn4) * 4).max(1);
            Self::NARROW_WG
                .into_iter()
                .find(|&w| w >= min_wg && u64::from(w) >= need)
                .unwrap_or(wg)
                .min(wg)
        };
        match self {
            GemmKernel::Register(c) => GemmKernel::Register(RegConfig {
                wg: narrow(c.wg, c.tn4),
                ..c
            }),
            GemmKernel::Subgroup(c) => GemmKernel::Subgroup(SubgroupConfig {
                wg: narrow(c.wg, c.tn4),
                ..c
            }),
            t => t,
        }
    }

    /// Every register and subgroup configuration at every narrowed workgroup size (for
    /// naga validation and the narrow-output tests).
    pub fn narrowed() -> Vec<GemmKernel> {
        let mut out = Vec::new();
        for &wg in &Self::NARROW_WG {
            out.extend(
                Self::REGISTER
                    .iter()
                    .filter(|c| c.wg > wg)
                    .map(|&c| GemmKernel::Register(RegConfig { wg, ..c })),
            );
            out.extend(
                Self::SUBGROUP
                    .iter()
                    .filter(|c| c.wg > wg)
                    .map(|&c| GemmKernel::Subgroup(SubgroupConfig { wg, ..c })),
            );
        }
        out
    }

    /// Output rows and columns one workgroup covers.
    pub fn tile(self) -> (u32, u32) {
        match self {
            GemmKernel::Tiled(c) => (c.wg_y * c.tm, c.wg_x * c.tn),
            GemmKernel::Register(c) => (c.tm, c.wg * c.tn4 * 4),
            GemmKernel::Subgroup(c) => (c.tm, c.wg * c.tn4 * 4),
        }
    }
}

/// Describes a (batched) GEMM: `C[b] = act(alpha * op(A[b]) * op(B[b]) + bias)` with
/// `op(A)` of shape `m x k`, `op(B)` of shape `k x n`, `C` of shape `m x n`, row-major.
///
/// `A` is stored `m x k` (`k x m` when `trans_a`), `B` is stored `k x n` (`n x k` when
/// `trans_b`, the layout of a PyTorch `Linear` weight). `bias` has `n` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmDesc {
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Number of matrices in the batch.
    pub batch: usize,
    /// A is stored transposed.
    pub trans_a: bool,
    /// B is stored transposed.
    pub trans_b: bool,
    /// Scale on the product.
    pub alpha: f32,
    /// Activation after bias.
    pub activation: Activation,
    /// Elements between batch entries of A, B, C. `None` derives them from the tensors'
    /// shapes: a rank-2 operand of a batched GEMM is broadcast (stride 0).
    pub batch_strides: Option<[usize; 3]>,
    /// Pins a kernel instead of the plan's choice.
    pub kernel: Option<GemmKernel>,
}

impl GemmDesc {
    /// An `m x n x k` GEMM, batch 1, no transposes, alpha 1, no activation.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        GemmDesc {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            activation: Activation::None,
            batch_strides: None,
            kernel: None,
        }
    }

    /// Sets the batch size.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets whether A and B are stored transposed.
    pub fn transpose(mut self, trans_a: bool, trans_b: bool) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }

    /// Sets alpha.
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets explicit batch strides (elements) of A, B and C.
    pub fn batch_strides(mut self, a: usize, b: usize, c: usize) -> Self {
        self.batch_strides = Some([a, b, c]);
        self
    }

    /// Pins a kernel.
    pub fn kernel(mut self, kernel: GemmKernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Floating-point operations (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// Stored shape (rows, cols) of A and B.
    pub fn stored_a(&self) -> (usize, usize) {
        if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }

    /// Stored shape (rows, cols) of B.
    pub fn stored_b(&self) -> (usize, usize) {
        if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }

    /// Checks the description against operand shapes and returns the batch strides.
    pub fn resolve_strides(
        &self,
        a_shape: &[usize],
        b_shape: &[usize],
        c_shape: &[usize],
    ) -> Result<[usize; 3]> {
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return Err(Error::shape(
                OP,
                format!(
                    "m, n, k and batch must be at least 1, got m={} n={} k={} batch={}",
                    self.m, self.n, self.k, self.batch
                ),
            ));
        }
        if !self.alpha.is_finite() {
            return Err(Error::invalid(
                OP,
                format!("alpha must be finite, got {}", self.alpha),
            ));
        }
        let operand = |name: &str,
                       shape: &[usize],
                       (rows, cols): (usize, usize),
                       explicit: Option<usize>|
         -> Result<usize> {
            let numel: usize = shape.iter().product();
            let mat = rows * cols;
            let stride = match explicit {
                Some(s) => s,
                None => {
                    if shape.len() < 2 || shape[shape.len() - 2..] != [rows, cols] {
                        return Err(Error::shape(
                            OP,
                            format!(
                                "{name} has shape {shape:?}; expected [.., {rows}, {cols}] for \
                                 m={} n={} k={} trans_a={} trans_b={}",
                                self.m, self.n, self.k, self.trans_a, self.trans_b
                            ),
                        ));
                    }
                    let lead: usize = shape[..shape.len() - 2].iter().product();
                    if lead == self.batch {
                        mat
                    } else if lead == 1 && name != "C" {
                        0
                    } else {
                        return Err(Error::shape(
                            OP,
                            format!(
                                "{name} has shape {shape:?}: its leading dimensions hold {lead} \
                                 matrices, the batch is {}",
                                self.batch
                            ),
                        ));
                    }
                }
            };
            let extent = (self.batch - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(mat))
                .ok_or_else(|| Error::shape(OP, format!("{name}: batch extent overflows")))?;
            if extent > numel {
                return Err(Error::shape(
                    OP,
                    format!(
                        "{name} has {numel} elements (shape {shape:?}); batch {} with stride \
                         {stride} of {rows}x{cols} matrices needs {extent}",
                        self.batch
                    ),
                ));
            }
            if extent > u32::MAX as usize {
                return Err(Error::invalid(
                    OP,
                    format!("{name} spans {extent} elements; kernels index with 32 bits"),
                ));
            }
            Ok(stride)
        };
        let ex = self.batch_strides;
        let sa = operand("A", a_shape, self.stored_a(), ex.map(|s| s[0]))?;
        let sb = operand("B", b_shape, self.stored_b(), ex.map(|s| s[1]))?;
        let sc = operand("C", c_shape, (self.m, self.n), ex.map(|s| s[2]))?;
        if sc < self.m * self.n && self.batch > 1 {
            return Err(Error::shape(
                OP,
                format!(
                    "C's batch stride {sc} is smaller than one {}x{} matrix: outputs would overlap",
                    self.m, self.n
                ),
            ));
        }
        Ok([sa, sb, sc])
    }
}
