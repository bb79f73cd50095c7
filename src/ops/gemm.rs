//! FP32 GEMM: `C = act(alpha * op(A) * op(B) + bias)`, batched with arbitrary batch
//! strides (0 broadcasts one matrix across the batch).
//!
//! Two kernel families (see `shaders/gemm_tiled.wgsl` and `shaders/gemm_reg.wgsl`): a
//! workgroup-memory tiled kernel for GPUs and a register kernel without workgroup memory
//! or barriers, which is what CPU adapters (lavapipe) run fastest and what GEMV-like
//! shapes (small M) need everywhere. [`crate::plan::gemm_kernel`] chooses; a
//! [`GemmDesc::kernel`] override pins one (tests and tuning use it).
//!
//! Indices are 32-bit in the shaders, so each operand is limited to 2^32 - 1 elements; the
//! binding limit (`max_storage_buffer_binding_size`) is usually the tighter one, and both
//! are checked before anything is recorded.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

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
    pub const SUBGROUP: [SubgroupConfig; 3] = [
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

    /// Output rows and columns one workgroup covers.
    pub fn tile(self) -> (u32, u32) {
        match self {
            GemmKernel::Tiled(c) => (c.wg_y * c.tm, c.wg_x * c.tn),
            GemmKernel::Register(c) => (c.tm, c.wg * c.tn4 * 4),
            GemmKernel::Subgroup(c) => (c.tm, c.wg * c.tn4 * 4),
        }
    }

    /// The shader variant; `split` is the register kernel's split-K mode (0 plain, 1
    /// partial sums, 2 reduce), ignored by the other families.
    fn variant(self, trans_a: bool, trans_b: bool, vec_b: bool, split: u32) -> ShaderVariant {
        match self {
            GemmKernel::Tiled(c) => ShaderVariant::new(
                ShaderFile::GemmTiled,
                vec![
                    ("WG_X", Def::U32(c.wg_x)),
                    ("WG_Y", Def::U32(c.wg_y)),
                    ("TM", Def::U32(c.tm)),
                    ("TN", Def::U32(c.tn)),
                    ("BK", Def::U32(c.bk)),
                    ("TRANS_A", Def::Bool(trans_a)),
                    ("TRANS_B", Def::Bool(trans_b)),
                ],
            ),
            GemmKernel::Register(c) => ShaderVariant::new(
                ShaderFile::GemmReg,
                vec![
                    ("WG", Def::U32(c.wg)),
                    ("TM", Def::U32(c.tm)),
                    ("TN4", Def::U32(c.tn4)),
                    ("KU", Def::U32(c.ku)),
                    ("TRANS_A", Def::Bool(trans_a)),
                    ("TRANS_B", Def::Bool(trans_b)),
                    ("VEC_B", Def::Bool(vec_b && !trans_b)),
                    ("SPLIT", Def::U32(split)),
                ],
            ),
            GemmKernel::Subgroup(c) => ShaderVariant::new(
                ShaderFile::GemmSubgroup,
                vec![
                    ("WG", Def::U32(c.wg)),
                    ("TM", Def::U32(c.tm)),
                    ("TN4", Def::U32(c.tn4)),
                    ("TRANS_A", Def::Bool(trans_a)),
                    ("TRANS_B", Def::Bool(trans_b)),
                    ("VEC_B", Def::Bool(vec_b && !trans_b)),
                ],
            ),
        }
    }

    fn check(self, ctx: &Context) -> Result<()> {
        let l = ctx.capabilities().limits;
        let (invocations, wg_bytes) = match self {
            GemmKernel::Tiled(c) => {
                if c.tm % 4 != 0 || c.tn % 4 != 0 || c.tm == 0 || c.tn == 0 || c.bk == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "tiled config {c:?}: tm and tn must be non-zero multiples of 4, bk > 0"
                        ),
                    ));
                }
                let (bm, bn) = self.tile();
                (c.wg_x * c.wg_y, (bm + bn) * c.bk * 4)
            }
            GemmKernel::Register(c) => {
                if c.wg == 0 || c.tm == 0 || c.tn4 == 0 || c.ku == 0 || c.split_k == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!("register config {c:?}: every field must be non-zero"),
                    ));
                }
                (c.wg, 0)
            }
            GemmKernel::Subgroup(c) => {
                if c.wg == 0 || c.tm == 0 || c.tm % 8 != 0 || c.tn4 == 0 {
                    return Err(Error::invalid(
                        OP,
                        format!("subgroup config {c:?}: tm must be a non-zero multiple of 8, wg and tn4 non-zero"),
                    ));
                }
                if !self.supported(ctx.capabilities()) {
                    return Err(Error::MissingFeature {
                        op: OP,
                        feature: "SUBGROUP with subgroups of at least 8 invocations",
                        adapter: ctx.capabilities().adapter.name.clone(),
                    });
                }
                (c.wg, 0)
            }
        };
        if invocations > l.max_compute_invocations_per_workgroup {
            return Err(Error::LimitExceeded {
                op: OP,
                what: format!("kernel {self:?} with {invocations} invocations per workgroup"),
                needed: u64::from(invocations),
                limit_name: "max_compute_invocations_per_workgroup",
                limit: u64::from(l.max_compute_invocations_per_workgroup),
            });
        }
        if wg_bytes > l.max_compute_workgroup_storage_size {
            return Err(Error::LimitExceeded {
                op: OP,
                what: format!("kernel {self:?} workgroup memory"),
                needed: u64::from(wg_bytes),
                limit_name: "max_compute_workgroup_storage_size",
                limit: u64::from(l.max_compute_workgroup_storage_size),
            });
        }
        Ok(())
    }
}

/// Shader variants of every GEMM kernel, transpose combination and load path.
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut out = Vec::new();
    for k in GemmKernel::all() {
        for ta in [false, true] {
            for tb in [false, true] {
                out.push(k.variant(ta, tb, false, 0));
                if !matches!(k, GemmKernel::Tiled(_)) && !tb {
                    out.push(k.variant(ta, tb, true, 0));
                }
                if matches!(k, GemmKernel::Register(_)) {
                    out.push(k.variant(ta, tb, false, 1));
                    if !tb {
                        out.push(k.variant(ta, tb, true, 1));
                    }
                }
            }
        }
        if matches!(k, GemmKernel::Register(_)) {
            out.push(k.variant(false, false, false, 2));
        }
    }
    out
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

/// Uniform block of the GEMM shaders (`shaders/common/gemm_params.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    flags: u32,
    groups_x: u32,
    groups_y: u32,
    off_a: u32,
    off_b: u32,
    off_c: u32,
    off_bias: u32,
    splits: u32,
    kslice: u32,
}
const _: () = assert!(std::mem::size_of::<GemmParams>() == 80);

/// Flag bit of [`GemmParams::flags`]: add the value already in C.
const ACCUMULATE: u32 = 8;

fn check_f32(operand: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::DType {
            op: OP,
            operand,
            expected: DType::F32,
            got: t.dtype(),
        });
    }
    Ok(())
}

/// One piece of a GEMM split to fit the binding limit: batch entry `b`, rows
/// `m0..m0 + mc`, columns `n0..n0 + nc`, reduction `k0..k0 + kc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub b: usize,
    pub m0: usize,
    pub mc: usize,
    pub n0: usize,
    pub nc: usize,
    pub k0: usize,
    pub kc: usize,
}

/// Element ranges (start, length) of A, B, C and the bias that `piece` reads or writes.
fn piece_ranges(desc: &GemmDesc, strides: [usize; 3], pc: &Piece) -> [(u64, u64); 4] {
    let (lda, ldb, ldc) = (desc.stored_a().1, desc.stored_b().1, desc.n);
    let [sa, sb, sc] = strides;
    let u = |x: usize| x as u64;
    let a = if desc.trans_a {
        (pc.b * sa + pc.k0 * lda + pc.m0, (pc.kc - 1) * lda + pc.mc)
    } else {
        (pc.b * sa + pc.m0 * lda + pc.k0, (pc.mc - 1) * lda + pc.kc)
    };
    let b = if desc.trans_b {
        (pc.b * sb + pc.n0 * ldb + pc.k0, (pc.nc - 1) * ldb + pc.kc)
    } else {
        (pc.b * sb + pc.k0 * ldb + pc.n0, (pc.kc - 1) * ldb + pc.nc)
    };
    let c = (pc.b * sc + pc.m0 * ldc + pc.n0, (pc.mc - 1) * ldc + pc.nc);
    [
        (u(a.0), u(a.1)),
        (u(b.0), u(b.1)),
        (u(c.0), u(c.1)),
        (u(pc.n0), u(pc.nc)),
    ]
}

/// Halves a split dimension, keeping pieces of N (and everything above 64) multiples of
/// 64 so that vector loads stay aligned.
fn shrink(d: usize) -> usize {
    if d > 64 {
        (d / 2).div_ceil(64) * 64
    } else {
        (d / 2).max(1)
    }
}

/// The pieces of a GEMM whose operands do not all fit in one binding of `limit` bytes
/// (with offsets aligned to `align`): each batch entry alone, then rows, columns and the
/// reduction halved (the dimension that governs the largest window first) until every
/// window fits. K pieces after the first accumulate into C.
pub(crate) fn split_pieces(
    desc: &GemmDesc,
    strides: [usize; 3],
    limit: u64,
    align: u64,
) -> Result<Vec<Piece>> {
    let worst = |pc: &Piece| {
        // Bytes a window may take: the span, rounded to 16, plus up to one alignment step.
        piece_ranges(desc, strides, pc).map(|(_, len)| (len * 4).div_ceil(16) * 16 + align)
    };
    let (mut mc, mut nc, mut kc) = (desc.m, desc.n, desc.k);
    loop {
        let pc = Piece {
            b: 0,
            m0: 0,
            mc,
            n0: 0,
            nc,
            k0: 0,
            kc,
        };
        let bytes = worst(&pc);
        let Some((i, _)) = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b > limit)
            .max_by_key(|(_, &b)| b)
        else {
            break;
        };
        // The dimension that multiplies the operand's leading dimension, else the other.
        let (major, minor): (&mut usize, &mut usize) = match i {
            0 if desc.trans_a => (&mut kc, &mut mc),
            0 => (&mut mc, &mut kc),
            1 if desc.trans_b => (&mut nc, &mut kc),
            1 => (&mut kc, &mut nc),
            2 => (&mut mc, &mut nc),
            _ => (&mut nc, &mut mc),
        };
        if *major > 1 {
            *major = shrink(*major);
        } else if *minor > 1 {
            *minor = shrink(*minor);
        } else {
            return Err(Error::LimitExceeded {
                op: OP,
                what: "a single element window of a GEMM operand".into(),
                needed: bytes[i],
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
    }
    let mut out = Vec::new();
    for b in 0..desc.batch {
        for m0 in (0..desc.m).step_by(mc) {
            for n0 in (0..desc.n).step_by(nc) {
                for k0 in (0..desc.k).step_by(kc) {
                    out.push(Piece {
                        b,
                        m0,
                        mc: mc.min(desc.m - m0),
                        n0,
                        nc: nc.min(desc.n - n0),
                        k0,
                        kc: kc.min(desc.k - k0),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Records `C = act(alpha * op(A) * op(B) + bias)` into `encoder`. Nothing is submitted.
///
/// All operands are f32 tensors; `c` must not share a buffer with `a`, `b` or `bias`.
///
/// ```no_run
/// use wgpu_quant::{Context, Tensor, ops::gemm::{gemm, GemmDesc, Activation}};
/// # fn main() -> wgpu_quant::Result<()> {
/// let ctx = Context::request_blocking(&Default::default())?;
/// let a = Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let b = Tensor::from_slice(&ctx, &[3, 1], &[1.0f32, 0.0, -1.0])?;
/// let c = Tensor::zeros(&ctx, &[2, 1], wgpu_quant::DType::F32)?;
/// let mut enc = ctx.encoder("my frame");
/// gemm(&ctx, &mut enc, &GemmDesc::new(2, 1, 3).activation(Activation::Relu), &a, &b, None, &c)?;
/// ctx.queue().submit([enc.finish()]);
/// assert_eq!(c.read_blocking::<f32>(&ctx)?, vec![0.0, 0.0]);
/// # Ok(()) }
/// ```
pub fn gemm(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &GemmDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<()> {
    check_f32("A", a)?;
    check_f32("B", b)?;
    check_f32("C", c)?;
    let [sa, sb, sc] = desc.resolve_strides(a.shape(), b.shape(), c.shape())?;
    if let Some(bias) = bias {
        check_f32("bias", bias)?;
        if bias.numel() != desc.n {
            return Err(Error::shape(
                OP,
                format!(
                    "bias has shape {:?} ({} elements); expected n = {}",
                    bias.shape(),
                    bias.numel(),
                    desc.n
                ),
            ));
        }
    }
    for (name, t) in [("A", a), ("B", b)]
        .into_iter()
        .chain(bias.map(|t| ("bias", t)))
    {
        if t.buffer() == c.buffer() {
            return Err(Error::invalid(
                OP,
                format!("C shares its buffer with {name}; the output must be a separate tensor"),
            ));
        }
    }

    let kernel = desc
        .kernel
        .unwrap_or_else(|| crate::plan::gemm_kernel(ctx, desc));
    kernel.check(ctx)?;
    let limits = ctx.capabilities().limits;
    let limit = limits.max_storage_buffer_binding_size;
    let fits = [a, b, c]
        .into_iter()
        .chain(bias)
        .all(|t| t.buffer().size() <= limit);
    let strides = [sa, sb, sc];
    let flags = u32::from(bias.is_some()) | (desc.activation.code() << 1);
    let (lda, ldb) = (desc.stored_a().1, desc.stored_b().1);
    let bias_buf = bias.map(|t| t.buffer()).unwrap_or(ctx.dummy_buffer());
    let base = GemmParams {
        m: desc.m as u32,
        n: desc.n as u32,
        k: desc.k as u32,
        batch: desc.batch as u32,
        stride_a: sa as u32,
        stride_b: sb as u32,
        stride_c: sc as u32,
        lda: lda as u32,
        ldb: ldb as u32,
        ldc: desc.n as u32,
        alpha: desc.alpha,
        flags,
        groups_x: 0,
        groups_y: 0,
        off_a: 0,
        off_b: 0,
        off_c: 0,
        off_bias: 0,
        splits: 1,
        kslice: desc.k as u32,
    };
    if fits {
        let vec_b = !desc.trans_b && desc.n.is_multiple_of(4) && sb.is_multiple_of(4);
        let whole = [a, b].map(|t| super::Res::whole(t.buffer()));
        let res = [
            whole[0].clone(),
            whole[1].clone(),
            super::Res::whole(bias_buf),
            super::Res::whole(c.buffer()),
        ];
        if let Some(sk) = split_k(ctx, kernel, desc) {
            // Parallel split-K: every slice's sums into a dense scratch, then one reduce
            // pass that adds them in slice order and applies alpha, bias and activation.
            let scratch = sk.scratch(ctx, "gemm split-k")?;
            let (splits, kslice) = (sk.splits, sk.per);
            let partial = GemmParams {
                splits,
                kslice,
                ..base
            };
            let mut pres = res.clone();
            pres[3] = super::Res::whole(&scratch);
            dispatch(ctx, encoder, kernel, desc, vec_b, 1, partial, &pres)?;
            let reduce = GemmParams { splits, ..base };
            let rres = [
                super::Res::whole(&scratch),
                super::Res::whole(ctx.dummy_buffer()),
                res[2].clone(),
                res[3].clone(),
            ];
            return dispatch(ctx, encoder, kernel, desc, false, 2, reduce, &rres);
        }
        return dispatch(ctx, encoder, kernel, desc, vec_b, 0, base, &res);
    }
    // Some operand is larger than one binding: run the GEMM in pieces, each binding only
    // the windows of A, B, C and bias it touches.
    let align = u64::from(limits.min_storage_buffer_offset_alignment).max(16);
    for pc in split_pieces(desc, strides, limit, align)? {
        let [ra, rb, rc, rbias] = piece_ranges(desc, strides, &pc);
        let (wa, oa) = super::window(ctx, a.buffer(), 4, ra.0, ra.1);
        let (wb, ob) = super::window(ctx, b.buffer(), 4, rb.0, rb.1);
        let (wc, oc) = super::window(ctx, c.buffer(), 4, rc.0, rc.1);
        let (wbias, obias) = match bias {
            Some(t) => super::window(ctx, t.buffer(), 4, rbias.0, rbias.1),
            None => (super::Res::whole(bias_buf), 0),
        };
        let last_k = pc.k0 + pc.kc == desc.k;
        ctx.note_split();
        let params = GemmParams {
            m: pc.mc as u32,
            n: pc.nc as u32,
            k: pc.kc as u32,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            // Bias and activation apply once, to the complete sum.
            flags: if last_k { flags } else { 0 } | if pc.k0 > 0 { ACCUMULATE } else { 0 },
            off_a: oa as u32,
            off_b: ob as u32,
            off_c: oc as u32,
            off_bias: obias as u32,
            ..base
        };
        let sub = GemmDesc {
            m: pc.mc,
            n: pc.nc,
            k: pc.kc,
            batch: 1,
            ..desc.clone()
        };
        let vec_b = !desc.trans_b
            && pc.nc.is_multiple_of(4)
            && ldb.is_multiple_of(4)
            && ob.is_multiple_of(4);
        dispatch(
            ctx,
            encoder,
            kernel,
            &sub,
            vec_b,
            0,
            params,
            &[wa, wb, wbias, wc],
        )?;
    }
    Ok(())
}

/// The slice count and K per slice of a parallel split-K run of `kernel` over `desc`, or
/// `None` to run unsplit: kernels other than the register kernel's with `split_k > 1`,
/// a K too short for two slices of at least one unrolled step each, and scratch that
/// would not fit one binding (or 32-bit indices) all run unsplit.
fn split_k(ctx: &Context, kernel: GemmKernel, desc: &GemmDesc) -> Option<super::SplitK> {
    let GemmKernel::Register(c) = kernel else {
        return None;
    };
    // Slices a whole number of unrolled steps long.
    let outputs = desc.batch * desc.m * desc.n;
    super::SplitK::plan(ctx, c.split_k, desc.k, c.ku as usize, outputs)
}

/// The slices a split-K run of `kernel` over `desc` would use (1: unsplit); see
/// [`RegConfig::split_k`].
pub fn effective_split_k(ctx: &Context, kernel: GemmKernel, desc: &GemmDesc) -> u32 {
    split_k(ctx, kernel, desc).map_or(1, |s| s.splits)
}

/// Records one dispatch of `kernel` over `desc` (its m, n and batch size the grid, once
/// per K slice in split-K's partial pass, `split` 1).
#[allow(clippy::too_many_arguments)]
fn dispatch(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: GemmKernel,
    desc: &GemmDesc,
    vec_b: bool,
    split: u32,
    mut params: GemmParams,
    res: &[super::Res],
) -> Result<()> {
    let (ta, tb) = if split == 2 {
        (false, false)
    } else {
        (desc.trans_a, desc.trans_b)
    };
    let variant = kernel.variant(ta, tb, vec_b, split);
    let compiled = ctx.kernel(&variant)?;
    let (bm, bn) = kernel.tile();
    let groups_x = (desc.n as u64).div_ceil(u64::from(bn));
    let groups_y = (desc.m as u64).div_ceil(u64::from(bm));
    let slices = if split == 1 { params.splits } else { 1 };
    let grid = super::grid_for(
        ctx,
        OP,
        groups_x * groups_y * desc.batch as u64 * u64::from(slices),
    )?;
    params.groups_x = groups_x as u32;
    params.groups_y = groups_y as u32;
    super::record_resources(
        ctx,
        encoder,
        OP,
        &compiled,
        bytemuck::bytes_of(&params),
        res,
        grid,
    )
}

/// Allocates C (shape `[batch, m, n]`, or `[m, n]` for batch 1), records the GEMM in a new
/// encoder and submits it. Does not wait: read C back (or use it in later work) when you
/// need it.
pub fn gemm_submit(
    ctx: &Context,
    desc: &GemmDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let shape = if desc.batch == 1 {
        vec![desc.m, desc.n]
    } else {
        vec![desc.batch, desc.m, desc.n]
    };
    let c = Tensor::zeros(ctx, &shape, DType::F32)?;
    let mut enc = ctx.encoder("wgpu-quant gemm");
    gemm(ctx, &mut enc, desc, a, b, bias, &c)?;
    ctx.queue().submit([enc.finish()]);
    Ok(c)
}
