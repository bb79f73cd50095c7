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
use crate::plan;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

pub use crate::desc::gemm::{
    Activation, GemmDesc, GemmKernel, RegConfig, SubgroupConfig, TiledConfig,
};

const OP: &str = "gemm";

/// How a register or subgroup kernel binds A and B: as `f32` arrays, or as `vec4<f32>`
/// arrays where the layout allows (one load where a CPU driver would make four). The
/// tiled kernel ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loads {
    /// B not transposed, bound as vec4s along N (N, ldb, offset and batch stride of B
    /// multiples of 4).
    pub vec_b: bool,
    /// B transposed, bound as vec4s along K (K, ldb, offset and batch stride of B
    /// multiples of 4): the K-vector path.
    pub kv: bool,
    /// With `kv`: A not transposed and bound as vec4s (lda, offset and batch stride of A
    /// multiples of 4).
    pub a4: bool,
    /// A stored as f16 (pairs in u32 words), widened to f32 in the kernel.
    pub a_f16: bool,
    /// B stored as f16 likewise.
    pub b_f16: bool,
}

impl Loads {
    /// The widest loads `desc` allows for a dispatch over `[k, n]` of it (the whole
    /// GEMM or a piece) with batch strides `stride_a`, `stride_b` and operand offsets
    /// `off_a`, `off_b` (elements into their bindings).
    pub(crate) fn of(
        desc: &GemmDesc,
        [k, n]: [usize; 2],
        [sa, sb]: [usize; 2],
        [oa, ob]: [u64; 2],
    ) -> Loads {
        let (lda, ldb) = (desc.stored_a().1, desc.stored_b().1);
        let b_ok = ldb % 4 == 0 && sb % 4 == 0 && ob % 4 == 0;
        let kv = desc.trans_b && b_ok && k % 4 == 0;
        Loads {
            vec_b: !desc.trans_b && b_ok && n % 4 == 0,
            kv,
            a4: kv && !desc.trans_a && lda % 4 == 0 && sa % 4 == 0 && oa % 4 == 0,
            a_f16: false,
            b_f16: false,
        }
    }
}

/// The composer lines that bind `a` or `b` (the array `$buf`, element type `$w`) and
/// define its accessors `$at(i)` (element i) and `$vec(i)` (elements 4i..4i+4, as f32):
/// f32s, vec4<f32>s, f16 pairs (u32) or f16 quads (vec2<u32>).
macro_rules! binding_code {
    ($buf:literal, $w:literal, $at:literal, $vec:literal) => {
        [
            concat!(
                "alias ",
                $w,
                " = f32;\nfn ",
                $at,
                "(i: u32) -> f32 { return ",
                $buf,
                "[i]; }\nfn ",
                $vec,
                "(i: u32) -> vec4<f32> { let j = 4u * i; return vec4<f32>(",
                $buf,
                "[j], ",
                $buf,
                "[j + 1u], ",
                $buf,
                "[j + 2u], ",
                $buf,
                "[j + 3u]); }"
            ),
            concat!(
                "alias ",
                $w,
                " = vec4<f32>;\nfn ",
                $at,
                "(i: u32) -> f32 { return ",
                $buf,
                "[i >> 2u][i & 3u]; }\nfn ",
                $vec,
                "(i: u32) -> vec4<f32> { return ",
                $buf,
                "[i]; }"
            ),
            concat!(
                "alias ",
                $w,
                " = u32;\nfn ",
                $at,
                "(i: u32) -> f32 { return unpack2x16float(",
                $buf,
                "[i >> 1u])[i & 1u]; }\nfn ",
                $vec,
                "(i: u32) -> vec4<f32> { let j = 2u * i; return vec4<f32>(unpack2x16float(",
                $buf,
                "[j]), unpack2x16float(",
                $buf,
                "[j + 1u])); }"
            ),
            concat!(
                "alias ",
                $w,
                " = vec2<u32>;\nfn ",
                $at,
                "(i: u32) -> f32 { return unpack2x16float(",
                $buf,
                "[i >> 2u][(i >> 1u) & 1u])[i & 1u]; }\nfn ",
                $vec,
                "(i: u32) -> vec4<f32> { let w = ",
                $buf,
                "[i]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }"
            ),
        ]
    };
}

const A_BIND: [&str; 4] = binding_code!("a", "AW", "a_at", "a_vec");
const B_BIND: [&str; 4] = binding_code!("b", "BW", "b_at", "b_vec");
const BIND_NAMES: [[&str; 4]; 2] = [
    ["A_F32", "A_VEC4", "A_F16", "A_F16X4"],
    ["B_F32", "B_VEC4", "B_F16", "B_F16X4"],
];

/// The composer line of a binding: `f16` storage or f32, vectors of four or scalars.
fn bind_def(operand: usize, f16: bool, vec: bool) -> (&'static str, Def) {
    let i = usize::from(vec) + 2 * usize::from(f16);
    let code = if operand == 0 { A_BIND[i] } else { B_BIND[i] };
    (BIND_NAMES[operand][i], Def::Code(code))
}

impl GemmKernel {
    /// The shader variant; `split` is the register kernel's split-K mode (0 plain, 1
    /// partial sums, 2 reduce), ignored by the other families.
    fn variant(self, trans_a: bool, trans_b: bool, loads: Loads, split: u32) -> ShaderVariant {
        let vec_b = loads.vec_b && !trans_b;
        let kv = loads.kv && trans_b;
        let a4 = kv && loads.a4 && !trans_a;
        let bind = [
            bind_def(0, loads.a_f16, a4),
            bind_def(1, loads.b_f16, vec_b || kv),
        ];
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
                [
                    ("WG", Def::U32(c.wg)),
                    ("TM", Def::U32(c.tm)),
                    ("TN4", Def::U32(c.tn4)),
                    ("KU", Def::U32(c.ku)),
                    ("TRANS_A", Def::Bool(trans_a)),
                    ("TRANS_B", Def::Bool(trans_b)),
                    ("VEC_B", Def::Bool(vec_b)),
                    ("KV", Def::Bool(kv)),
                    ("A4", Def::Bool(a4)),
                    ("SPLIT", Def::U32(split)),
                ]
                .into_iter()
                .chain(bind)
                .collect(),
            ),
            GemmKernel::Subgroup(c) => ShaderVariant::new(
                ShaderFile::GemmSubgroup,
                [
                    ("WG", Def::U32(c.wg)),
                    ("TM", Def::U32(c.tm)),
                    ("TN4", Def::U32(c.tn4)),
                    ("TRANS_A", Def::Bool(trans_a)),
                    ("TRANS_B", Def::Bool(trans_b)),
                    ("VEC_B", Def::Bool(vec_b)),
                    ("KV", Def::Bool(kv)),
                    ("A4", Def::Bool(a4)),
                ]
                .into_iter()
                .chain(bind)
                .collect(),
            ),
        }
    }

    fn check(self, ctx: &Context) -> Result<()> {
        let l = ctx.capabilities().limits;
        self.check_config()?;
        let (invocations, wg_bytes) = match self {
            GemmKernel::Tiled(c) => {
                let (bm, bn) = self.tile();
                (c.wg_x * c.wg_y, (bm + bn) * c.bk * 4)
            }
            GemmKernel::Register(c) => (c.wg, 0),
            GemmKernel::Subgroup(c) => {
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
    let scalar = Loads::default();
    let mut out = Vec::new();
    for k in GemmKernel::all().into_iter().chain(GemmKernel::narrowed()) {
        let tiled = matches!(k, GemmKernel::Tiled(_));
        let splits: &[u32] = if matches!(k, GemmKernel::Register(_)) {
            &[0, 1]
        } else {
            &[0]
        };
        for ta in [false, true] {
            for tb in [false, true] {
                for &split in splits {
                    out.push(k.variant(ta, tb, scalar, split));
                    if tiled {
                        continue;
                    }
                    if tb {
                        // The K-vector path, with A as f32s and (untransposed) as vec4s.
                        let kv = Loads { kv: true, ..scalar };
                        out.push(k.variant(ta, tb, kv, split));
                        if !ta {
                            out.push(k.variant(ta, tb, Loads { a4: true, ..kv }, split));
                        }
                    } else {
                        out.push(k.variant(
                            ta,
                            tb,
                            Loads {
                                vec_b: true,
                                ..scalar
                            },
                            split,
                        ));
                    }
                }
            }
        }
        if matches!(k, GemmKernel::Register(_)) {
            out.push(k.variant(false, false, scalar, 2));
        }
        // f16 storage (the FP16 GEMM's route through these kernels, `record_f16_storage`):
        // A not transposed, B transposed, each f16 or f32, with and without vec4 loads.
        if !tiled {
            for &split in splits {
                for a_f16 in [false, true] {
                    for (kv, a4) in [(false, false), (true, false), (true, true)] {
                        let l = Loads {
                            kv,
                            a4,
                            a_f16,
                            b_f16: true,
                            ..scalar
                        };
                        out.push(k.variant(false, true, l, split));
                    }
                }
            }
        }
    }
    out
}

crate::shaders::uniform! {
    /// Uniform block of the GEMM shaders (`shaders/common/gemm_params.wgsl`).
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
    super::check_devices(
        ctx,
        "gemm",
        &[
            ("A", Some(a)),
            ("B", Some(b)),
            ("bias", bias),
            ("C", Some(c)),
        ],
    )?;
    let strides = validate(desc, a, b, bias, c)?;
    let kernel = desc
        .kernel
        .unwrap_or_else(|| crate::plan::gemm_kernel(ctx, desc));
    kernel.check(ctx)?;
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    let fits = [a, b, c]
        .into_iter()
        .chain(bias)
        .all(|t| t.buffer().size() <= limit);
    let base = base_params(desc, strides, bias.is_some());
    let ops = Operands { a, b, bias, c };
    if fits {
        record_whole(
            ctx,
            encoder,
            kernel,
            desc,
            [strides[0], strides[1]],
            base,
            &ops,
        )
    } else {
        record_pieces(ctx, encoder, kernel, desc, strides, base, &ops)
    }
}

/// Records `c = act(a * b^T + bias)` with A (`[m, k]`) and B (`[n, k]`) stored as f16 or
/// f32 and computed in f32 by a register or subgroup `kernel`: the FP16 GEMM's route on
/// adapters where f16 arithmetic is slow (`crate::plan::half_gemm_kernel`). C and the
/// bias are f32; every operand fits one binding (the caller checks).
pub(crate) fn record_f16_storage(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: GemmKernel,
    desc: &GemmDesc,
    [a, b]: [&Tensor; 2],
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<()> {
    if matches!(kernel, GemmKernel::Tiled(_)) || desc.trans_a || !desc.trans_b || desc.batch != 1 {
        return Err(Error::invalid(
            OP,
            format!("f16 storage takes a register or subgroup kernel, A [m, k] and B [n, k], one matrix; got {kernel:?} for {desc:?}"),
        ));
    }
    kernel.check(ctx)?;
    let base = base_params(desc, [0, 0, 0], bias.is_some());
    let ops = Operands { a, b, bias, c };
    record_whole(ctx, encoder, kernel, desc, [0, 0], base, &ops)
}

/// The operands of one GEMM.
struct Operands<'a> {
    a: &'a Tensor,
    b: &'a Tensor,
    bias: Option<&'a Tensor>,
    c: &'a Tensor,
}

/// Checks dtypes, shapes and aliasing; returns the batch strides of A, B and C.
fn validate(
    desc: &GemmDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<[usize; 3]> {
    check_f32("A", a)?;
    check_f32("B", b)?;
    check_f32("C", c)?;
    let strides = desc.resolve_strides(a.shape(), b.shape(), c.shape())?;
    if let Some(bias) = bias {
        check_f32("bias", bias)?;
        if bias.shape() != [desc.n] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias has shape {:?} ({} elements); expected [n] with n = {}",
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
    Ok(strides)
}

/// The uniform block of the whole GEMM (pieces override their part of it).
fn base_params(desc: &GemmDesc, [sa, sb, sc]: [usize; 3], bias: bool) -> GemmParams {
    GemmParams {
        m: desc.m as u32,
        n: desc.n as u32,
        k: desc.k as u32,
        batch: desc.batch as u32,
        stride_a: sa as u32,
        stride_b: sb as u32,
        stride_c: sc as u32,
        lda: desc.stored_a().1 as u32,
        ldb: desc.stored_b().1 as u32,
        ldc: desc.n as u32,
        alpha: desc.alpha,
        flags: u32::from(bias) | (desc.activation.code() << 1),
        groups_x: 0,
        groups_y: 0,
        off_a: 0,
        off_b: 0,
        off_c: 0,
        off_bias: 0,
        splits: 1,
        kslice: desc.k as u32,
    }
}

/// Records a GEMM whose operands each fit one binding: one dispatch, or a parallel
/// split-K run (every slice's sums into a dense scratch, then one reduce pass that adds
/// them in slice order and applies alpha, bias and activation).
fn record_whole(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: GemmKernel,
    desc: &GemmDesc,
    strides: [usize; 2],
    base: GemmParams,
    o: &Operands,
) -> Result<()> {
    // f16 storage only comes from `record_f16_storage`; `gemm` takes f32 operands.
    let loads = Loads {
        a_f16: o.a.dtype() == DType::F16,
        b_f16: o.b.dtype() == DType::F16,
        ..Loads::of(desc, [desc.k, desc.n], strides, [0, 0])
    };
    let bias_buf = o.bias.map(|t| t.buffer()).unwrap_or(ctx.dummy_buffer());
    let res = [
        super::Res::whole(o.a.buffer()),
        super::Res::whole(o.b.buffer()),
        super::Res::whole(bias_buf),
        super::Res::whole(o.c.buffer()),
    ];
    let Some(sk) = plan::split::gemm_split_k(ctx.capabilities(), kernel, desc) else {
        return dispatch(ctx, encoder, kernel, desc, loads, 0, base, &res);
    };
    let scratch = super::split_scratch(ctx, &sk, "gemm split-k")?;
    let partial = GemmParams {
        splits: sk.splits,
        kslice: sk.per,
        ..base
    };
    let mut pres = res.clone();
    pres[3] = super::Res::whole(&scratch);
    dispatch(ctx, encoder, kernel, desc, loads, 1, partial, &pres)?;
    let reduce = GemmParams {
        splits: sk.splits,
        ..base
    };
    let rres = [
        super::Res::whole(&scratch),
        super::Res::whole(ctx.dummy_buffer()),
        res[2].clone(),
        res[3].clone(),
    ];
    dispatch(
        ctx,
        encoder,
        kernel,
        desc,
        Loads::default(),
        2,
        reduce,
        &rres,
    )
}

/// Records a GEMM with an operand larger than one binding, in the pieces of
/// [`plan::split::gemm_pieces`], each binding only the windows of A, B, C and bias it
/// touches; K pieces after the first accumulate into C.
fn record_pieces(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: GemmKernel,
    desc: &GemmDesc,
    strides: [usize; 3],
    base: GemmParams,
    o: &Operands,
) -> Result<()> {
    let limits = ctx.capabilities().limits;
    let limit = limits.max_storage_buffer_binding_size;
    let align = u64::from(limits.min_storage_buffer_offset_alignment).max(16);
    for pc in plan::split::gemm_pieces(desc, strides, limit, align)? {
        let [ra, rb, rc, rbias] = plan::split::piece_ranges(desc, strides, &pc);
        let (wa, oa) = super::window(ctx, o.a.buffer(), 4, ra.0, ra.1);
        let (wb, ob) = super::window(ctx, o.b.buffer(), 4, rb.0, rb.1);
        let (wc, oc) = super::window(ctx, o.c.buffer(), 4, rc.0, rc.1);
        let (wbias, obias) = match o.bias {
            Some(t) => super::window(ctx, t.buffer(), 4, rbias.0, rbias.1),
            None => (super::Res::whole(ctx.dummy_buffer()), 0),
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
            flags: if last_k { base.flags } else { 0 } | if pc.k0 > 0 { ACCUMULATE } else { 0 },
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
        let loads = Loads::of(desc, [pc.kc, pc.nc], [0, 0], [oa, ob]);
        let res = [wa, wb, wbias, wc];
        dispatch(ctx, encoder, kernel, &sub, loads, 0, params, &res)?;
    }
    Ok(())
}

/// Records one dispatch of `kernel` over `desc` (its m, n and batch size the grid, once
/// per K slice in split-K's partial pass, `split` 1).
#[allow(clippy::too_many_arguments)]
fn dispatch(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: GemmKernel,
    desc: &GemmDesc,
    loads: Loads,
    split: u32,
    mut params: GemmParams,
    res: &[super::Res],
) -> Result<()> {
    let (ta, tb) = if split == 2 {
        (false, false)
    } else {
        (desc.trans_a, desc.trans_b)
    };
    let variant = kernel.variant(ta, tb, loads, split);
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

/// The params block of every GEMM kernel file (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    let l = crate::shaders::uniform_layout::<GemmParams>;
    vec![
        (ShaderFile::GemmTiled, l()),
        (ShaderFile::GemmReg, l()),
        (ShaderFile::GemmSubgroup, l()),
    ]
}
