//! GEMM and GEMV with float activations and compressed weights: weight-only quantization
//! (W8A32/W8A16, W4A32/W4A16: int8 per channel, int4 per group, symmetric or with zero
//! points, dequantized inside the kernel) and the FP16 GEMM (f16 activations times f16
//! weights, in f16 or f32 arithmetic).
//!
//! `X` is an f32 or f16 tensor `[.., K]` (its rows are the `M` activations), the weight is
//! `[N, K]` (PyTorch's Linear layout), the output f32 or f16 `[.., N]`:
//! `out = act(X * W^T + bias)`. Quantized weights are applied group by group,
//! `sum_k x*w = sum_g s_g * (sum_{k in g} x*q - z_g * sum_{k in g} x)`, so the inner loop
//! multiplies raw codes. Each invocation reads each of its weight words once for all the
//! rows it owns; with `M <= tm` (the GEMV case, M up to 8) every weight byte is read
//! exactly once.
//!
//! f16 operands are read as `u32` pairs, so f16 storage works on every adapter; with
//! [`HalfMath::F32`] they are widened to f32 (the only choice without `SHADER_F16`).
//!
//! On GPUs that list 16x16x16 f16 cooperative matrices with f32 sums
//! ([`crate::Capabilities::coop_f16`]), an FP16 GEMM of more than 8 rows with f16
//! activations and f16 products runs on them (tensor cores; [`crate::plan::wgemm_coop`],
//! [`WGemmDesc::cooperative`] and [`WGemmDesc::coop_tile`] pin it), within the budget of
//! f16 products with f32 accumulation.
//!
//! Error budget against an f64 reference on the same (dequantized) operands, as
//! `||out - ref|| / ||ref||`: `1e-5` for f32 arithmetic, `2e-3` for f16 products with f32
//! accumulation, `2e-2` for f16 products and accumulation with `K <= 1024`; f16 output
//! adds its rounding, `2^-11`. The tests check these.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType};
//! use wgpu_quant::ops::quant::QTensor;
//! use wgpu_quant::ops::wgemm::{wgemm, WGemmDesc, Weights};
//! use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let (n, k) = (2, 64);
//! let w: Vec<f32> = (0..n * k).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
//! // int4, symmetric, one scale per group of 32 along K.
//! let scheme = QuantScheme::symmetric(QType::I4).per_group(1, 32);
//! let params = QuantParams::from_data(&scheme, &[n, k], &w)?;
//! let wq = QTensor::from_codes(&ctx, &params, &params.quantize(&w)?)?;
//! let x = Tensor::from_slice(&ctx, &[1, k], &vec![1.0f32; k])?;
//! let y = Tensor::zeros(&ctx, &[1, n], DType::F32)?;
//! let mut enc = ctx.encoder("gemv");
//! wgemm(&ctx, &mut enc, &WGemmDesc::default(), &x, Weights::Quantized(&wq), None, &y)?;
//! ctx.submit_and_wait(enc)?;
//! println!("{:?}", y.read_blocking::<f32>(&ctx)?);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::quant::QTensor;
use crate::ops::{to_u32, RowTile};
use crate::plan;
use crate::quant::Granularity;
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::{DType, Tensor};

use crate::desc::tuning::WeightType;
pub use crate::desc::wgemm::{CoopTile, HalfMath, WGemmDesc, TILES};

const OP: &str = "wgemm";

/// The weight operand: `[N, K]`.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Quantized codes (i8/u8 per tensor or per output channel; i4/u4 likewise or per
    /// group along K with a group size that is a multiple of 8).
    Quantized(&'a QTensor),
    /// An f16 tensor (the FP16 GEMM).
    F16(&'a Tensor),
}

impl Weights<'_> {
    /// The tensor holding the weights (a quantized weight's codes).
    pub fn tensor(&self) -> &Tensor {
        match self {
            Weights::Quantized(q) => q.data(),
            Weights::F16(t) => t,
        }
    }
}

crate::shaders::uniform! {
    struct Params {
        m: u32,
        n: u32,
        k: u32,
        kw: u32,
        kfull: u32,
        groups_x: u32,
        flags: u32,
        ngroups: u32,
        group_words: u32,
        w_col_stride: u32,
        w_group_stride: u32,
        a_words: u32,
        w_words: u32,
        ldo: u32,
        splits: u32,
        slice_words: u32,
    }
}
const _: () = assert!(std::mem::size_of::<Params>() == 64);

/// The weight encodings the kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WKind {
    Codes { bits: u32, signed: bool, zw: bool },
    Half,
}

// f16 pairs are widened with unpack2x16float and converted, not bitcast to vec2<f16>:
// naga 30 rejects `bitcast<vec2<f16>>(u32)` (the return type does not match).
const MATH_F32: &str = "alias T = f32;\nalias TACC = f32;\n\
    fn h2(w: u32) -> vec2<T> { return unpack2x16float(w); }";
const MATH_F16_ACC_F32: &str = "alias T = f16;\nalias TACC = f32;\n\
    fn h2(w: u32) -> vec2<T> { return vec2<f16>(unpack2x16float(w)); }";
const MATH_F16: &str = "alias T = f16;\nalias TACC = f16;\n\
    fn h2(w: u32) -> vec2<T> { return vec2<f16>(unpack2x16float(w)); }";

/// The composer's `T`/`TACC`/`h2` definitions for `math` (Auto means f32), and their
/// label in the variant's tag.
pub(crate) fn math_code(math: HalfMath) -> (&'static str, &'static str) {
    match math {
        HalfMath::F16 => ("MATH_F16", MATH_F16),
        HalfMath::F16AccF32 => ("MATH_F16_ACC_F32", MATH_F16_ACC_F32),
        _ => ("MATH_F32", MATH_F32),
    }
}

/// The weight binding's element type and accessors: vec4s of words (W4) or words.
pub(crate) const W_VEC4: &str = "alias WW = vec4<u32>;\n\
    fn w_word(i: u32) -> u32 { return w[i >> 2u][i & 3u]; }\n\
    fn w_quad(i: u32) -> vec4<u32> { return w[i]; }";
pub(crate) const W_U32: &str = "alias WW = u32;\n\
    fn w_word(i: u32) -> u32 { return w[i]; }\n\
    fn w_quad(i: u32) -> vec4<u32> { let j = 4u * i; return vec4<u32>(w[j], w[j + 1u], w[j + 2u], w[j + 3u]); }";

/// The X binding and its accessor: a storage array, or a uniform block of
/// [`plan::X_UNIFORM_BYTES`] (4096 vec4s) with X itself bound unused at binding 7, so that
/// binding validates X as every other op validates its operands (a destroyed buffer, say).
const A_STORAGE: &str = "@group(0) @binding(1) var<storage, read> a: array<u32>;\n\
    fn a_word(i: u32) -> u32 { return a[i]; }";
const A_UNIFORM: &str = "@group(0) @binding(1) var<uniform> a: array<vec4<u32>, 4096>;\n\
    @group(0) @binding(7) var<storage, read> a_source: array<u32>;\n\
    fn a_word(i: u32) -> u32 { return a[i >> 2u][i & 3u]; }";
const _: () = assert!(plan::X_UNIFORM_BYTES == 4096 * 16);

/// Whether the weight can be read four words at a time (the W4 variants): words per
/// row, per parameter group and per split-K slice multiples of 4, and f16 rows starting
/// on word boundaries.
fn quad_words(w: &WeightForm, k: usize, split: Option<&plan::split::SplitK>) -> bool {
    let pairs = matches!(w.kind, WKind::Codes { .. }) || k.is_multiple_of(2);
    pairs
        && w.kw.is_multiple_of(4)
        && w.slots.3.is_multiple_of(4)
        && split.is_none_or(|sk| sk.per % 4 == 0)
}

#[allow(clippy::too_many_arguments)]
fn variant(
    cfg: RowTile,
    w: WKind,
    math: HalfMath,
    a_f16: bool,
    pairs: bool,
    out_f16: bool,
    reduce: bool,
    w4: bool,
    ux: bool,
) -> ShaderVariant {
    let (bits, signed, quant, zw) = match w {
        WKind::Codes { bits, signed, zw } => (bits, signed, true, zw),
        WKind::Half => (16, false, false, false),
    };
    let (name, code) = math_code(math);
    let mut v = ShaderVariant::new(
        if ux {
            ShaderFile::WGemmUniformX
        } else {
            ShaderFile::WGemm
        },
        vec![
            ("WG", Def::U32(cfg.wg)),
            ("TM", Def::U32(cfg.tm)),
            ("TN4", Def::U32(cfg.tn4)),
            ("W_BITS", Def::U32(bits)),
            ("W_SIGNED", Def::Bool(signed)),
            ("QUANT", Def::Bool(quant)),
            ("ZW", Def::Bool(zw)),
            ("A_F16", Def::Bool(a_f16)),
            ("PAIRS", Def::Bool(pairs)),
            ("OUT_F16", Def::Bool(out_f16)),
            ("REDUCE", Def::Bool(reduce)),
            ("W4", Def::Bool(w4)),
            (name, Def::Code(code)),
            if w4 {
                ("W_VEC4", Def::Code(W_VEC4))
            } else {
                ("W_U32", Def::Code(W_U32))
            },
            if ux {
                ("A_UNIFORM", Def::Code(A_UNIFORM))
            } else {
                ("A_STORAGE", Def::Code(A_STORAGE))
            },
        ],
    );
    v.f16 = matches!(math, HalfMath::F16 | HalfMath::F16AccF32);
    v
}

/// Split-K's reduce pass for `cfg` (the weight encoding is irrelevant there: one fixed
/// variant serves every kind).
fn reduce_variant(cfg: RowTile, out_f16: bool) -> ShaderVariant {
    let codes = WKind::Codes {
        bits: 8,
        signed: true,
        zw: false,
    };
    variant(
        cfg,
        codes,
        HalfMath::F32,
        false,
        true,
        out_f16,
        true,
        false,
        false,
    )
}

/// Every kernel variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    let mut kinds: Vec<(WKind, HalfMath)> = Vec::new();
    for bits in [4, 8] {
        for signed in [false, true] {
            for zw in [false, true] {
                kinds.push((WKind::Codes { bits, signed, zw }, HalfMath::F32));
            }
        }
    }
    for math in [HalfMath::F32, HalfMath::F16AccF32, HalfMath::F16] {
        kinds.push((WKind::Half, math));
    }
    let narrowed = TILES
        .into_iter()
        .flat_map(|t| RowTile::NARROW_WG.map(|wg| RowTile { wg, ..t }));
    for cfg in TILES.into_iter().chain(narrowed) {
        for &(w, math) in &kinds {
            for a_f16 in [false, true] {
                if math != HalfMath::F32 && !a_f16 {
                    continue;
                }
                for pairs in [false, true] {
                    for out_f16 in [false, true] {
                        for ux in [false, true] {
                            v.push(variant(
                                cfg, w, math, a_f16, pairs, out_f16, false, false, ux,
                            ));
                            if pairs {
                                v.push(variant(
                                    cfg, w, math, a_f16, pairs, out_f16, false, true, ux,
                                ));
                            }
                        }
                    }
                }
            }
        }
        for out_f16 in [false, true] {
            v.push(reduce_variant(cfg, out_f16));
        }
    }
    v
}

/// How the quantized weight's slots map to (column, group): strides, groups per row and
/// words per group.
fn weight_groups(w: &QTensor, n: usize, k: usize) -> Result<(u32, u32, usize, usize)> {
    let pw = w.qtype().per_word();
    let kw = k.div_ceil(pw);
    let per_row =
        |g: Granularity| matches!(g, Granularity::PerRow | Granularity::PerChannel { axis: 0 });
    match w.granularity() {
        Granularity::PerTensor => Ok((0, 0, 1, kw)),
        g if per_row(g) => Ok((1, 0, 1, kw)),
        Granularity::PerGroup {
            axis: 1,
            group_size,
        } if group_size >= k => Ok((1, 0, 1, kw)),
        Granularity::PerGroup {
            axis: 1,
            group_size,
        } if group_size % pw == 0 => {
            let nblocks = k.div_ceil(group_size);
            Ok((nblocks as u32, 1, nblocks, group_size / pw))
        }
        g => Err(Error::invalid(
            OP,
            format!(
                "weight [{n}, {k}] of {} is quantized {g:?}; the kernel takes per-tensor, \
                 per-output-channel (axis 0) or per-group along K (axis 1) with a group size \
                 that is a multiple of {pw}",
                w.qtype().name()
            ),
        )),
    }
}

/// `m`, `n` and `k` of `x * W^T`, with the operands' shapes and dtypes checked.
fn check_shapes(x: &Tensor, weights: Weights<'_>, out: &Tensor) -> Result<(usize, usize, usize)> {
    let w_shape = match weights {
        Weights::Quantized(q) => q.shape(),
        Weights::F16(t) => {
            if t.dtype() != DType::F16 {
                return Err(Error::DType {
                    op: OP,
                    operand: "weight",
                    expected: DType::F16,
                    got: t.dtype(),
                });
            }
            t.shape()
        }
    };
    if w_shape.len() != 2 {
        return Err(Error::shape(
            OP,
            format!("the weight has shape {w_shape:?}; expected [N, K]"),
        ));
    }
    let (n, k) = (w_shape[0], w_shape[1]);
    super::qgemm::check_nk(OP, "the weight", w_shape)?;
    if x.shape().last() != Some(&k) {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} and the weight {w_shape:?}: x's last dimension must be K = {k}",
                x.shape()
            ),
        ));
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("x has a last dimension") = n;
    if out.shape() != out_shape.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "the output has shape {:?}; x {:?} times the weight {w_shape:?} gives {out_shape:?}",
                out.shape(),
                x.shape()
            ),
        ));
    }
    Ok((x.numel() / k.max(1), n, k))
}

/// The weight operand as the kernel reads it.
struct WeightForm<'a> {
    kind: WKind,
    /// The arithmetic (f32 for quantized weights).
    math: HalfMath,
    /// The codes or the f16 tensor.
    data: &'a Tensor,
    /// Scales and zero points (none for f16 weights: a dummy is bound there).
    params: Option<(&'a Tensor, &'a Tensor)>,
    /// Words per row, and whole words per row.
    kw: usize,
    kfull: usize,
    /// Column stride, group stride, groups per row and words per group of the slots.
    slots: (u32, u32, usize, usize),
    /// The weight type of the tuning cache's shape class.
    wtype: WeightType,
}

/// Checks the weight's type against the requested arithmetic and describes it.
fn weight_form<'a>(
    caps: &crate::Capabilities,
    desc: &WGemmDesc,
    weights: Weights<'a>,
    a_f16: bool,
    (n, k): (usize, usize),
) -> Result<WeightForm<'a>> {
    match weights {
        Weights::Quantized(q) => {
            let Some(wtype) = WeightType::of_codes(q.qtype()) else {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "the weight holds {} codes; weight-only GEMM takes i8, u8, i4 or u4",
                        q.qtype().name()
                    ),
                ));
            };
            if !matches!(desc.math, HalfMath::Auto | HalfMath::F32) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "{:?} arithmetic applies to f16 weights; quantized weights are \
                         dequantized in f32",
                        desc.math
                    ),
                ));
            }
            let pw = q.qtype().per_word();
            Ok(WeightForm {
                kind: WKind::Codes {
                    bits: q.qtype().bits(),
                    signed: q.qtype().signed(),
                    zw: !q.is_symmetric(),
                },
                math: HalfMath::F32,
                data: q.data(),
                params: Some((q.scales(), q.zero_points())),
                kw: k.div_ceil(pw),
                kfull: k / pw,
                slots: weight_groups(q, n, k)?,
                wtype,
            })
        }
        Weights::F16(t) => {
            let math = crate::plan::resolve_half_math(caps, desc.math, a_f16);
            if math != HalfMath::F32 && !caps.shader_f16 {
                return Err(Error::MissingFeature {
                    op: OP,
                    feature: "SHADER_F16 (f16 arithmetic; HalfMath::F32 works everywhere)",
                    adapter: caps.adapter.name.clone(),
                });
            }
            if math != HalfMath::F32 && !a_f16 {
                return Err(Error::invalid(
                    OP,
                    format!("{math:?} arithmetic needs f16 activations; x is f32"),
                ));
            }
            Ok(WeightForm {
                kind: WKind::Half,
                math,
                data: t,
                params: None,
                kw: k.div_ceil(2),
                kfull: k / 2,
                slots: (0, 0, 1, k.div_ceil(2)),
                wtype: WeightType::F16,
            })
        }
    }
}

/// Fails when the output shares a buffer with an input.
fn check_aliasing(w: &WeightForm, x: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<()> {
    let named = match w.params {
        Some((s, z)) => vec![
            ("weight codes", w.data),
            ("weight scales", s),
            ("weight zero points", z),
        ],
        None => vec![("weight", w.data)],
    };
    for (name, t) in named
        .into_iter()
        .chain([("x", x)])
        .chain(bias.map(|b| ("bias", b)))
    {
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                OP,
                format!("the output shares its buffer with {name}"),
            ));
        }
    }
    Ok(())
}

/// The pieces the operands are bound in: rows (x, output) and output columns (weight
/// rows, their scales, bias), each bound as an aligned window; the output keeps its row
/// pitch `ldo`. Bytes per unit of each axis, 0 where the operand does not grow along it
/// (then it must fit whole).
fn windows<'a>(
    ctx: &'a Context,
    x: &'a Tensor,
    w: &WeightForm<'a>,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<super::Split<'a>>> {
    let x_row = (k * x.dtype().size()) as u64;
    let w_row = match w.kind {
        WKind::Half => 2 * k as u64,
        WKind::Codes { .. } => 4 * w.kw as u64,
    };
    let slot_row = 4 * u64::from(w.slots.0);
    let out_elem = out.dtype().size() as u64;
    use super::Operand as O;
    super::split(
        ctx,
        OP,
        ["rows", "output columns"],
        (m, n),
        &[
            O::tensor("x", x, x_row, 0),
            O::tensor("weight", w.data, 0, w_row),
            O::optional(ctx, "weight scales", w.params.map(|p| p.0), 0, slot_row),
            O::optional(
                ctx,
                "weight zero points",
                w.params.map(|p| p.1),
                0,
                slot_row,
            ),
            O::optional(ctx, "bias", bias, 0, 4),
            O::tensor("output", out, out_elem * n as u64, out_elem),
        ],
    )
}

/// The uniform block of one piece of `mc` rows by `nc` columns.
fn piece_params(
    desc: &WGemmDesc,
    w: &WeightForm,
    x: &Tensor,
    bias: bool,
    (mc, nc, n, k): (usize, usize, usize, usize),
    groups_x: u32,
    res: &[super::Res],
) -> Result<Params> {
    let to_u32 = |what: &str, v: usize| to_u32(OP, what, v);
    let (w_col_stride, w_group_stride, ngroups, group_words) = w.slots;
    Ok(Params {
        m: to_u32("M", mc)?,
        n: to_u32("N", nc)?,
        k: to_u32("K", k)?,
        kw: to_u32("words per row", w.kw)?,
        kfull: to_u32("words per row", w.kfull)?,
        groups_x,
        flags: u32::from(bias) | (desc.activation.code() << 1),
        ngroups: to_u32("groups", ngroups)?,
        group_words: to_u32("words per group", group_words)?,
        w_col_stride,
        w_group_stride,
        a_words: to_u32(
            "words of x",
            super::bound_words(&res[0], x.buffer().size()) as usize,
        )?,
        w_words: to_u32(
            "words of the weight",
            super::bound_words(&res[1], w.data.buffer().size()) as usize,
        )?,
        ldo: to_u32("N", n)?,
        splits: 1,
        slice_words: to_u32("words per row", w.kw)?,
    })
}

/// Records a split-K run: every slice's raw f32 sums into a dense scratch, then a reduce
/// pass that adds them and applies bias, activation and the output type. `main` is the
/// variant of the partial pass with an f32 output.
#[allow(clippy::too_many_arguments)]
fn record_split_k(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    sk: &crate::plan::split::SplitK,
    main: &ShaderVariant,
    (cfg, out_f16): (RowTile, bool),
    params: &Params,
    res: &[super::Res],
    grid: [u32; 3],
) -> Result<()> {
    let scratch = super::split_scratch(ctx, sk, "wgemm split-k")?;
    let partial = Params {
        flags: 0,
        splits: sk.splits,
        slice_words: sk.per,
        ..*params
    };
    let mut pres = res.to_vec();
    pres[5] = super::Res::whole(&scratch);
    let wgs = (params.m as u64).div_ceil(u64::from(cfg.tm))
        * (params.n as u64).div_ceil(u64::from(cfg.columns()));
    super::record_resources(
        ctx,
        encoder,
        OP,
        &*ctx.kernel(main)?,
        bytemuck::bytes_of(&partial),
        &pres,
        super::grid_for(ctx, OP, wgs * u64::from(sk.splits))?,
    )?;
    // The reduce pass binds the storage layout: no unused X source (uniform X).
    let mut rres = res[..6].to_vec();
    rres[0] = super::Res::whole(&scratch);
    let reduce = Params {
        splits: sk.splits,
        ..*params
    };
    let rk = ctx.kernel(&reduce_variant(cfg, out_f16))?;
    super::record_resources(
        ctx,
        encoder,
        OP,
        &rk,
        bytemuck::bytes_of(&reduce),
        &rres,
        grid,
    )
}

/// Split-K's reduce pass for a dense scratch `[splits, m, n]` of f32 sums written by
/// another kernel (the cooperative-matrix FP16 GEMM): adds the slices in order, applies
/// bias and `desc`'s activation, writes `out` (f32 or f16).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_reduce(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &WGemmDesc,
    scratch: &wgpu::Buffer,
    splits: u32,
    (m, n): (usize, usize),
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let cfg = RowTile::new(64, 4, 1);
    let (grid, groups_x) = cfg.grid(ctx, OP, m, n)?;
    let words = scratch.size() / 4;
    let params = Params {
        m: to_u32(OP, "M", m)?,
        n: to_u32(OP, "N", n)?,
        k: 1,
        kw: 1,
        kfull: 1,
        groups_x,
        flags: u32::from(bias.is_some()) | (desc.activation.code() << 1),
        ngroups: 1,
        group_words: 1,
        w_col_stride: 0,
        w_group_stride: 0,
        a_words: to_u32(OP, "words of the split-K scratch", words as usize)?,
        w_words: 1,
        ldo: to_u32(OP, "N", n)?,
        splits,
        slice_words: 1,
    };
    let dummy = super::Res::whole(ctx.dummy_buffer());
    let res = [
        super::Res::whole(scratch),
        dummy.clone(),
        dummy.clone(),
        dummy.clone(),
        bias.map_or(dummy, |b| super::Res::whole(b.buffer())),
        super::Res::whole(out.buffer()),
    ];
    let out_f16 = out.dtype() == DType::F16;
    let rk = ctx.kernel(&reduce_variant(cfg, out_f16))?;
    super::record_resources(
        ctx,
        encoder,
        OP,
        &rk,
        bytemuck::bytes_of(&params),
        &res,
        grid,
    )
}

/// Records `out = act(x * W^T + bias)` into `encoder`; see the module docs. Nothing is
/// submitted. Validate, plan (the tile, split-K), record (piece by piece).
pub fn wgemm(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    desc: &WGemmDesc,
    x: &Tensor,
    weights: Weights<'_>,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        OP,
        &[
            ("x", Some(x)),
            ("weight", Some(weights.tensor())),
            ("bias", bias),
            ("output", Some(out)),
        ],
    )?;
    let a_f16 = super::check_float(OP, "x", x)?;
    let out_f16 = super::check_float(OP, "output", out)?;
    let (m, n, k) = check_shapes(x, weights, out)?;
    super::check_bias(OP, bias, n)?;
    let caps = ctx.capabilities();
    let w = weight_form(caps, desc, weights, a_f16, (n, k))?;
    check_aliasing(&w, x, bias, out)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        return Err(Error::shape(OP, "K must be at least 1"));
    }
    let cfg = desc
        .config
        .unwrap_or_else(|| crate::plan::wgemm_config(ctx, m, n, k, w.wtype));
    cfg.check(caps, OP)?;
    to_u32(OP, "elements of the output", m * n)?;
    to_u32(OP, "elements of x", x.numel())?;
    let pairs = k % 2 == 0;
    let pieces = windows(ctx, x, &w, bias, out, (m, n, k))?;
    let split = match &pieces[..] {
        [_] => plan::split::wgemm_split_k(caps, cfg, m, n, w.kw),
        _ => None,
    };
    let coop = super::wgemm_coop::Route {
        half_weights: matches!(weights, Weights::F16(_)),
        x_f16: a_f16,
        math: w.math,
        pieces: pieces.len(),
    };
    if let Some(tile) = super::wgemm_coop::route(ctx, desc, &coop, (m, n, k))? {
        let wt = weights.tensor();
        return super::wgemm_coop::record(ctx, encoder, desc, tile, [x, wt], bias, out, (m, n, k));
    }
    if let Some(kernel) = half_route(ctx, desc, &w, weights, (pieces.len(), out_f16), (m, n, k))? {
        let gd = crate::desc::gemm::GemmDesc::new(m, n, k)
            .transpose(false, true)
            .activation(desc.activation);
        let dequantized;
        let wt = match weights {
            Weights::F16(wt) => wt,
            Weights::Quantized(q) => {
                dequantized = pooled_f32(ctx, "wgemm dequantized weight", [n, k])?;
                super::quant::dequantize(ctx, encoder, q, &dequantized)?;
                &dequantized
            }
        };
        return record_half_gemm(ctx, encoder, kernel, &gd, [x, wt], bias, out);
    }
    let w4 = quad_words(&w, k, split.as_ref());
    let ux = uniform_x(ctx, desc, x, pieces.len(), (m, k))?;
    let kernel = ctx.kernel(&variant(
        cfg, w.kind, w.math, a_f16, pairs, out_f16, false, w4, ux,
    ))?;
    for piece in &pieces {
        let (grid, groups_x) = cfg.grid(ctx, OP, piece.rows, piece.cols)?;
        let shape = (piece.rows, piece.cols, n, k);
        let mut params = piece_params(desc, &w, x, bias.is_some(), shape, groups_x, &piece.res)?;
        let x_copy;
        let mut res = std::borrow::Cow::Borrowed(&piece.res);
        if ux {
            // One piece binding X whole (checked by `uniform_x`): copy it into the block.
            let bytes = x.size_bytes().next_multiple_of(4);
            x_copy = super::uniform_copy(ctx, encoder, x.buffer(), bytes)?;
            super::bind_uniform_copy(res.to_mut(), &x_copy);
            params.a_words = to_u32(OP, "words of x", (bytes / 4) as usize)?;
        }
        if let Some(sk) = &split {
            // The partial pass writes f32 sums whatever the output type.
            let partial = variant(cfg, w.kind, w.math, a_f16, pairs, false, false, w4, ux);
            return record_split_k(
                ctx,
                encoder,
                sk,
                &partial,
                (cfg, out_f16),
                &params,
                &res,
                grid,
            );
        }
        let bytes = bytemuck::bytes_of(&params);
        super::record_resources(ctx, encoder, OP, &kernel, bytes, &res, grid)?;
    }
    Ok(())
}

/// Whether the row kernel reads X from a uniform copy: as `desc.uniform_x` pins it (an
/// error where it cannot), else [`plan::wgemm_uniform_x`] where it can. It can with one
/// piece (X bound whole), X within [`plan::X_UNIFORM_BYTES`] on a device whose uniform
/// bindings reach that size, and `COPY_SRC` on X's buffer.
fn uniform_x(
    ctx: &Context,
    desc: &WGemmDesc,
    x: &Tensor,
    pieces: usize,
    (m, k): (usize, usize),
) -> Result<bool> {
    let caps = ctx.capabilities();
    let elem = x.dtype().size();
    let copyable = x.buffer().usage().contains(wgpu::BufferUsages::COPY_SRC)
        && x.size_bytes().next_multiple_of(4) <= x.buffer().size();
    let can = pieces == 1 && copyable && plan::x_uniform_fits(caps, m, k, elem);
    match desc.uniform_x {
        Some(true) if !can => Err(Error::invalid(
            OP,
            format!(
                "uniform_x: x [{m}, {k}] of {} bytes cannot be read from a uniform block: it \
                 needs one piece (here {pieces}), at most {} bytes on a device with uniform \
                 bindings that large (here {}) and COPY_SRC on x's buffer (usage {:?})",
                x.size_bytes(),
                plan::X_UNIFORM_BYTES,
                caps.limits.max_uniform_buffer_binding_size,
                x.buffer().usage()
            ),
        )),
        Some(pin) => Ok(pin),
        None => Ok(can && plan::wgemm_uniform_x(caps, m, k, elem)),
    }
}

/// The FP32 kernel of the FP32-kernel route, if it takes it (f16 weights read as f16 in
/// f32 arithmetic, or codes dequantized into an f32 scratch first): the pinned
/// `fp32_kernel` (an error where the route does not apply), else with no tile pinned the
/// plan's choice ([`plan::wgemm_route`]) for operands that fit one binding each.
fn half_route(
    ctx: &Context,
    desc: &WGemmDesc,
    w: &WeightForm,
    weights: Weights<'_>,
    (pieces, out_f16): (usize, bool),
    (m, n, k): (usize, usize, usize),
) -> Result<Option<crate::desc::gemm::GemmKernel>> {
    // An f16 output goes through an f32 scratch, which must fit one binding too.
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    let scratch_fits = !out_f16 || (m as u64 * n as u64).saturating_mul(4) <= limit;
    let applies = scratch_fits
        && match weights {
            Weights::F16(_) => w.math == HalfMath::F32,
            // The dequantized weight is an f32 scratch of one binding.
            Weights::Quantized(_) => (n as u64 * k as u64).saturating_mul(4) <= limit,
        };
    match desc.fp32_kernel {
        Some(kernel) => {
            if !applies || desc.config.is_some() || desc.uniform_x.is_some() || pieces != 1 {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "fp32_kernel {kernel:?} pins the FP32-kernel route, which takes f16 \
                         weights in f32 arithmetic or quantized weights, no row tile or \
                         uniform_x (options of the row kernel) and operands (and a dequantized \
                         weight's or an f16 output's f32 scratch) within one binding each; \
                         here: {:?} weights, {:?} arithmetic, tile {:?}, uniform_x {:?}, \
                         {pieces} pieces",
                        w.wtype, w.math, desc.config, desc.uniform_x
                    ),
                ));
            }
            if matches!(kernel, crate::desc::gemm::GemmKernel::Tiled(_)) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "fp32_kernel {kernel:?}: the FP32-kernel route runs the register or \
                         subgroup kernels"
                    ),
                ));
            }
            Ok(Some(kernel))
        }
        None if applies && desc.config.is_none() && desc.uniform_x.is_none() && pieces == 1 => {
            Ok(plan::wgemm_route(ctx, m, n, k, w.wtype))
        }
        None => Ok(None),
    }
}

/// The FP16 GEMM on an FP32 kernel with f16 storage: straight into an f32 output, or
/// through a pooled f32 scratch and a conversion pass into an f16 one.
fn record_half_gemm(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    kernel: crate::desc::gemm::GemmKernel,
    gd: &crate::desc::gemm::GemmDesc,
    [x, w]: [&Tensor; 2],
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let (m, n, k) = (gd.m, gd.n, gd.k);
    let a = x.reshape(&[m, k])?;
    if out.dtype() == DType::F32 {
        let c = out.reshape(&[m, n])?;
        return super::gemm::record_f16_storage(ctx, encoder, kernel, gd, [&a, w], bias, &c);
    }
    let c = pooled_f32(ctx, "wgemm f16 route", [m, n])?;
    super::gemm::record_f16_storage(ctx, encoder, kernel, gd, [&a, w], bias, &c)?;
    super::eltwise::cast(ctx, encoder, &c, &out.reshape(&[m, n])?)
}

/// An f32 matrix of `shape` in the context's scratch pool under `tag`, the buffer rounded
/// up to a power of two (within the binding limit, which `half_route` checked the exact
/// size against) so that nearby shapes share one buffer.
fn pooled_f32(ctx: &Context, tag: &'static str, shape: [usize; 2]) -> Result<Tensor> {
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    let bytes = (shape[0] as u64 * shape[1] as u64 * 4)
        .next_power_of_two()
        .min(limit);
    Tensor::from_buffer(ctx.scratch(tag, bytes)?, &shape, DType::F32)
}

/// The params block of this op's kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::WGemm, uniform_layout::<Params>()),
        (ShaderFile::WGemmUniformX, uniform_layout::<Params>()),
    ]
}
