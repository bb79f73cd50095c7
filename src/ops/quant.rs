//! Quantization on the GPU: quantize f32/f16 tensors to packed integers with given
//! parameters (static quantization), compute the parameters on the GPU from the data
//! (dynamic quantization, ONNX `DynamicQuantizeLinear` semantics generalized to signed
//! types, symmetric ranges and per-row scales), dequantize back to f32/f16, and the
//! per-channel statistics (min/max, histograms) that calibration observers need.
//!
//! Every function records into the caller's encoder and allocates nothing but small
//! uniform buffers; the results stay on the GPU. The integer codes equal the reference in
//! [`crate::quant`] bit for bit.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType};
//! use wgpu_quant::ops::quant::{dequantize, dynamic_quantize, DynamicQuant, QTensor};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let x = Tensor::from_slice(&ctx, &[2, 3], &[0.0f32, 2.0, -3.0, -2.5, 1.34, 0.5])?;
//! let spec = DynamicQuant::onnx(); // u8, asymmetric, per tensor
//! let q = QTensor::for_dynamic(&ctx, &spec, x.shape())?;
//! let back = Tensor::zeros(&ctx, x.shape(), DType::F32)?;
//! let mut enc = ctx.encoder("quantize");
//! dynamic_quantize(&ctx, &mut enc, &x, &spec, &q)?;
//! dequantize(&ctx, &mut enc, &q, &back)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(q.read_codes_blocking(&ctx)?, vec![153, 255, 0, 26, 221, 179]);
//! # Ok(()) }
//! ```

use wgpu::util::DeviceExt;

use super::to_u32;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::quant::{Granularity, QType, SlotLayout};
use crate::shaders::{Def, ShaderFile, ShaderVariant};
use crate::tensor::Tensor;

/// Bins of the calibration histograms over `[-R, R]` (2048 per sign).
pub const HIST_BINS: usize = 4096;
const WG: u64 = 256;
const STATS_CHUNK: u64 = 256 * 16;

crate::shaders::uniform! {
    struct SlotsUniform {
        inner: u32,
        axis_len: u32,
        block: u32,
        outer_stride: u32,
        axis_stride: u32,
        inner_stride: u32,
        _pad: [u32; 2],
    }
}

crate::shaders::uniform! {
    struct QuantizeUniform {
        slots: SlotsUniform,
        rows: u32,
        cols: u32,
        words_per_row: u32,
        words: u32,
        qmin: i32,
        qmax: i32,
        _pad: [u32; 2],
    }
}

crate::shaders::uniform! {
    struct DequantizeUniform {
        slots: SlotsUniform,
        cols: u32,
        words_per_row: u32,
        numel: u32,
        out_words: u32,
        _pad: [u32; 4],
    }
}

crate::shaders::uniform! {
    struct StatsUniform {
        channels: u32,
        inner: u32,
        per_channel: u32,
        chunks: u32,
        chan0: u32,
        all_channels: u32,
        _pad: [u32; 2],
    }
}

crate::shaders::uniform! {
    struct ParamsUniform {
        count: u32,
        qmin: i32,
        qmax: i32,
        symmetric: u32,
    }
}

// The WGSL structs have these sizes; a mismatch would silently shift every field.
const _: () = {
    assert!(std::mem::size_of::<SlotsUniform>() == 32);
    assert!(std::mem::size_of::<QuantizeUniform>() == 64);
    assert!(std::mem::size_of::<DequantizeUniform>() == 64);
    assert!(std::mem::size_of::<StatsUniform>() == 32);
    assert!(std::mem::size_of::<ParamsUniform>() == 16);
};

fn slots_uniform(op: &'static str, s: &SlotLayout) -> Result<SlotsUniform> {
    Ok(SlotsUniform {
        inner: to_u32(op, "inner size", s.inner)?,
        axis_len: to_u32(op, "axis length", s.axis_len)?,
        block: to_u32(op, "block", s.block)?,
        outer_stride: to_u32(op, "slot stride", s.outer_stride)?,
        axis_stride: to_u32(op, "slot stride", s.axis_stride)?,
        inner_stride: to_u32(op, "slot stride", s.inner_stride)?,
        _pad: [0; 2],
    })
}

/// 1 when one slot covers the tensor, 2 when slot `r` covers exactly row `r` of the
/// `[rows, cols]` packing view, else 0 (the kernel computes each element's slot).
fn slot_mode(s: &SlotLayout, rows: usize, cols: usize) -> u32 {
    if s.slots == 1 {
        1
    } else if s.is_per_row(rows, cols) {
        2
    } else {
        0
    }
}

/// How a quantized tensor splits into pieces of whole rows that keep every element's slot
/// (scale and zero point) at the same index relative to a window of the slots: rows per
/// unit and slots per unit. A tensor that does not split this way is one unit.
fn slot_units(s: &SlotLayout, rows: usize, cols: usize) -> (usize, usize) {
    let cols = cols.max(1);
    let groups = s.axis_len.div_ceil(s.block.max(1));
    // Slots one outer index (or one block of the axis) touches, counted from its first.
    let block_span = (groups - 1) * s.axis_stride + (s.inner - 1) * s.inner_stride + 1;
    if s.slots == 1 {
        (1, 0)
    } else if s.is_per_row(rows, cols) {
        (1, 1)
    } else if s.outer > 1 && (s.outer_stride == 0 || s.outer_stride >= block_span) {
        ((s.inner * s.axis_len / cols).max(1), s.outer_stride)
    } else if s.outer == 1
        && s.inner.is_multiple_of(cols)
        && s.axis_len.is_multiple_of(s.block.max(1))
        && s.axis_stride > (s.inner - 1) * s.inner_stride
    {
        ((s.block * s.inner / cols).max(1), s.axis_stride)
    } else {
        (rows.max(1), 0)
    }
}

fn bits(qtype: QType) -> Def {
    Def::U32(qtype.bits())
}

/// Every quantization kernel variant (validated by the naga test).
pub(crate) fn all_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for b in [4, 8, 16] {
        for f16 in [false, true] {
            for mode in 0..3 {
                v.push(ShaderVariant::new(
                    ShaderFile::Quantize,
                    vec![
                        ("BITS", Def::U32(b)),
                        ("IN_F16", Def::Bool(f16)),
                        ("SLOTS", Def::U32(mode)),
                    ],
                ));
            }
            for signed in [false, true] {
                for mode in 0..3 {
                    v.push(ShaderVariant::new(
                        ShaderFile::Dequantize,
                        vec![
                            ("BITS", Def::U32(b)),
                            ("SIGNED", Def::Bool(signed)),
                            ("OUT_F16", Def::Bool(f16)),
                            ("SLOTS", Def::U32(mode)),
                        ],
                    ));
                }
            }
        }
    }
    for mode in [0, 1] {
        for f16 in [false, true] {
            v.push(stats_variant(mode, f16));
        }
    }
    v.push(ShaderVariant::new(ShaderFile::QuantParams, vec![]));
    v
}

fn stats_variant(mode: u32, f16: bool) -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::QuantStats,
        vec![
            ("MODE", Def::U32(mode)),
            ("BINS", Def::U32(HIST_BINS as u32)),
            ("IN_F16", Def::Bool(f16)),
        ],
    )
}

pub use crate::qtensor::{rows_pack_alike, DynamicQuant, QTensor};
fn check_same_shape(op: &'static str, a: &[usize], b: &[usize], what: &str) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            format!("{what}: the float tensor has shape {a:?}, the quantized tensor {b:?}"),
        ));
    }
    Ok(())
}

/// Checks a float tensor against a quantized one of the same shape; returns whether the
/// float side is f16.
fn check_pair(op: &'static str, name: &'static str, f: &Tensor, q: &QTensor) -> Result<bool> {
    let f16 = super::check_float(op, name, f)?;
    check_same_shape(op, f.shape(), &q.shape, op)?;
    Ok(f16)
}

/// The pieces of whole rows that (de)quantizing `q` with float tensor `f` runs in (see
/// [`slot_units`]), binding `[f, scales, zero points, codes]` in this order; the
/// second value is the rows per piece unit.
fn pair_pieces<'a>(
    ctx: &Context,
    op: &'static str,
    name: &'a str,
    f: &'a Tensor,
    q: &'a QTensor,
    slots: &SlotLayout,
) -> Result<(Vec<super::Split<'a>>, usize)> {
    let layout = q.layout();
    let (unit_rows, shift) = slot_units(slots, layout.rows, layout.cols);
    let units = layout.rows.div_ceil(unit_rows);
    let u = |bytes: usize| (unit_rows * bytes) as u64;
    use super::Operand as O;
    let axis = if unit_rows == 1 {
        "rows".to_string()
    } else {
        format!("blocks of {unit_rows} rows")
    };
    let pieces = super::split(
        ctx,
        op,
        [&axis, "-"],
        (units, 1),
        &[
            O::tensor(name, f, u(layout.cols * f.dtype().size()), 0),
            O::tensor("scales", &q.scales, (4 * shift) as u64, 0),
            O::tensor("zero points", &q.zero_points, (4 * shift) as u64, 0),
            O::tensor("codes", &q.data, u(4 * layout.words_per_row), 0),
        ],
    )?;
    Ok((pieces, unit_rows))
}

/// Records `q = quantize(x)` with the parameters already held by `q` (from
/// [`QTensor::new`] for static quantization). `x` is f32 or f16 with `q`'s shape.
pub fn quantize(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    q: &QTensor,
) -> Result<()> {
    super::check_devices(ctx, "quantize", &[("x", Some(x)), ("q", Some(q.data()))])?;
    const OP: &str = "quantize";
    let f16 = check_pair(OP, "x", x, q)?;
    let layout = q.layout();
    if layout.words() == 0 {
        return Ok(());
    }
    to_u32(OP, "elements", x.numel())?;
    let slots = q.granularity.layout(OP, &q.shape)?;
    let kernel = ctx.kernel(&ShaderVariant::new(
        ShaderFile::Quantize,
        vec![
            ("BITS", bits(q.qtype)),
            ("IN_F16", Def::Bool(f16)),
            (
                "SLOTS",
                Def::U32(slot_mode(&slots, layout.rows, layout.cols)),
            ),
        ],
    ))?;
    let (pieces, unit_rows) = pair_pieces(ctx, OP, "x", x, q, &slots)?;
    for piece in pieces {
        let rows = (piece.rows * unit_rows).min(layout.rows - piece.r0 * unit_rows);
        let words = rows * layout.words_per_row;
        let params = QuantizeUniform {
            slots: slots_uniform(OP, &slots)?,
            rows: to_u32(OP, "rows", rows)?,
            cols: to_u32(OP, "cols", layout.cols)?,
            words_per_row: to_u32(OP, "words per row", layout.words_per_row)?,
            words: to_u32(OP, "words", words)?,
            qmin: q.qmin,
            qmax: q.qmax,
            _pad: [0; 2],
        };
        let grid = super::grid_for(ctx, OP, (words as u64).div_ceil(WG))?;
        super::record_resources(
            ctx,
            encoder,
            OP,
            &kernel,
            bytemuck::bytes_of(&params),
            &piece.res,
            grid,
        )?;
    }
    Ok(())
}

/// Records `out = scale * (q - zero_point)`; `out` is f32 or f16 with `q`'s shape. f16
/// output is packed in the kernel, so it works without `SHADER_F16`.
pub fn dequantize(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    q: &QTensor,
    out: &Tensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "dequantize",
        &[("q", Some(q.data())), ("output", Some(out))],
    )?;
    const OP: &str = "dequantize";
    let f16 = check_pair(OP, "out", out, q)?;
    let numel = q.numel();
    if numel == 0 {
        return Ok(());
    }
    let layout = q.layout();
    let slots = q.granularity.layout(OP, &q.shape)?;
    let kernel = ctx.kernel(&ShaderVariant::new(
        ShaderFile::Dequantize,
        vec![
            ("BITS", bits(q.qtype)),
            ("SIGNED", Def::Bool(q.qtype.signed())),
            ("OUT_F16", Def::Bool(f16)),
            (
                "SLOTS",
                Def::U32(slot_mode(&slots, layout.rows, layout.cols)),
            ),
        ],
    ))?;
    let (pieces, unit_rows) = pair_pieces(ctx, OP, "out", out, q, &slots)?;
    for piece in pieces {
        let rows = (piece.rows * unit_rows).min(layout.rows - piece.r0 * unit_rows);
        let numel = rows * layout.cols;
        let out_words = if f16 { numel.div_ceil(2) } else { numel };
        let params = DequantizeUniform {
            slots: slots_uniform(OP, &slots)?,
            cols: to_u32(OP, "cols", layout.cols)?,
            words_per_row: to_u32(OP, "words per row", layout.words_per_row)?,
            numel: to_u32(OP, "elements", numel)?,
            out_words: to_u32(OP, "words", out_words)?,
            _pad: [0; 4],
        };
        let grid = super::grid_for(ctx, OP, (out_words as u64).div_ceil(WG))?;
        // The kernel binds codes, scales, zero points, output.
        let mut res = piece.res;
        res.swap(0, 3);
        super::record_resources(
            ctx,
            encoder,
            OP,
            &kernel,
            bytemuck::bytes_of(&params),
            &res,
            grid,
        )?;
    }
    Ok(())
}

/// A tensor seen as `[outer, channels, inner]` for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelView {
    /// Product of the dims before the channel axis.
    pub outer: usize,
    /// Number of channels (1 per tensor).
    pub channels: usize,
    /// Product of the dims after the channel axis.
    pub inner: usize,
}

impl ChannelView {
    /// The view matching a granularity (per tensor, per channel or per row).
    pub fn new(op: &'static str, granularity: Granularity, shape: &[usize]) -> Result<Self> {
        let s = granularity.layout(op, shape)?;
        match granularity {
            Granularity::PerTensor => Ok(ChannelView {
                outer: 1,
                channels: 1,
                inner: s.axis_len,
            }),
            Granularity::PerChannel { .. } | Granularity::PerRow => Ok(ChannelView {
                outer: s.outer,
                channels: s.axis_len,
                inner: s.inner,
            }),
            Granularity::PerGroup { .. } => Err(Error::invalid(
                op,
                "statistics are per tensor, per channel or per row, not per group",
            )),
        }
    }

    /// Channel of flat element `flat`.
    pub fn channel(&self, flat: usize) -> usize {
        (flat / self.inner) % self.channels
    }
}

#[allow(clippy::too_many_arguments)]
fn record_stats(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    x: &Tensor,
    view: &ChannelView,
    mode: u32,
    ranges: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<()> {
    let f16 = super::check_float(op, "x", x)?;
    to_u32(op, "elements", x.numel())?;
    // Operands over the binding limit run in pieces that accumulate into the same
    // statistics: whole outer indices, or, with one outer index, runs of channels. One
    // channel (per tensor) is seen as rows of the last dimension so that it splits too.
    let cols = x.shape().last().copied().unwrap_or(1).max(1);
    let view = if view.outer == 1 && view.channels == 1 && x.numel().is_multiple_of(cols) {
        ChannelView {
            outer: x.numel() / cols,
            channels: 1,
            inner: cols,
        }
    } else {
        *view
    };
    let by_channel = view.outer == 1;
    let (units, per_unit, axis) = if by_channel {
        (view.channels, view.inner, "channels")
    } else {
        (view.outer, view.channels * view.inner, "outer indices")
    };
    let pieces = super::split(
        ctx,
        op,
        [axis, "-"],
        (units, 1),
        &[
            super::Operand::tensor("x", x, (per_unit * x.dtype().size()) as u64, 0),
            super::Operand::whole("ranges", ranges),
            super::Operand::whole("statistics", out),
        ],
    )?;
    let kernel = ctx.kernel(&stats_variant(mode, f16))?;
    for piece in pieces {
        let (channels, per_channel, chan0) = if by_channel {
            (piece.rows, view.inner, piece.r0)
        } else {
            (view.channels, piece.rows * view.inner, 0)
        };
        let chunks = (per_channel as u64).div_ceil(STATS_CHUNK).max(1);
        let params = StatsUniform {
            channels: to_u32(op, "channels", channels)?,
            inner: to_u32(op, "inner size", view.inner)?,
            per_channel: to_u32(op, "elements per channel", per_channel)?,
            chunks: to_u32(op, "chunks", chunks as usize)?,
            chan0: to_u32(op, "channels", chan0)?,
            all_channels: to_u32(op, "channels", view.channels)?,
            _pad: [0; 2],
        };
        let grid = super::grid_for(ctx, op, chunks * channels as u64)?;
        super::record_resources(
            ctx,
            encoder,
            op,
            &kernel,
            bytemuck::bytes_of(&params),
            &piece.res,
            grid,
        )?;
    }
    Ok(())
}

fn stats_buffer(ctx: &Context, op: &'static str, init: &[u32]) -> Result<wgpu::Buffer> {
    ctx.scoped(op, || {
        ctx.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(op),
                contents: bytemuck::cast_slice(init),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
    })
}

/// The min/max accumulator of `channels` channels: `[min_0, max_0, ..., nonfinite]`
/// with every min at `u32::MAX` and every max at 0 (the identities of atomicMin/Max on
/// ordered codes), so a channel without finite values ends with min > max.
fn min_max_buffer(ctx: &Context, op: &'static str, channels: usize) -> Result<wgpu::Buffer> {
    stats_buffer(ctx, op, &min_max_init(channels))
}

fn min_max_init(channels: usize) -> Vec<u32> {
    let mut init = vec![0u32; 2 * channels + 1];
    for c in 0..channels {
        init[2 * c] = u32::MAX;
    }
    init
}

/// Records dynamic quantization of `x` into `q` (from [`QTensor::for_dynamic`] with the
/// same `spec`): a min/max pass, a parameter pass and the quantize pass, all on the GPU.
/// Non-finite values are left out of the ranges (NaN quantizes to the zero point,
/// infinities saturate). `q.scales()` and `q.zero_points()` hold the parameters used.
pub fn dynamic_quantize(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    x: &Tensor,
    spec: &DynamicQuant,
    q: &QTensor,
) -> Result<()> {
    super::check_devices(
        ctx,
        "dynamic_quantize",
        &[("x", Some(x)), ("q", Some(q.data()))],
    )?;
    const OP: &str = "dynamic_quantize";
    spec.check(OP)?;
    super::check_float(OP, "x", x)?;
    check_same_shape(OP, x.shape(), &q.shape, "dynamic_quantize")?;
    if q.qtype != spec.scheme.qtype
        || q.granularity != spec.scheme.granularity
        || (q.qmin, q.qmax) != spec.scheme.qrange()
    {
        return Err(Error::invalid(
            OP,
            format!(
                "the output was made for {} {:?} {}..={}, the spec asks for {} {:?} {:?}",
                q.qtype,
                q.granularity,
                q.qmin,
                q.qmax,
                spec.scheme.qtype,
                spec.scheme.granularity,
                spec.scheme.qrange()
            ),
        ));
    }
    if x.numel() == 0 {
        return Ok(());
    }
    let view = ChannelView::new(OP, spec.scheme.granularity, x.shape())?;
    // Pooled: the accumulator is the context's scratch, reset from a pooled copy of its
    // initial contents, so that a layer run every frame allocates nothing.
    let bytes = (2 * view.channels as u64 + 1) * 4;
    let init = ctx.scratch_with("wgpu-quant min/max identity", bytes, || {
        min_max_init(view.channels)
    })?;
    let stats = ctx.scratch("wgpu-quant min/max accumulator", bytes)?;
    encoder.copy_buffer_to_buffer(&init, 0, &stats, 0, bytes.div_ceil(16) * 16);
    record_stats(ctx, encoder, OP, x, &view, 0, ctx.dummy_buffer(), &stats)?;
    let (qmin, qmax) = spec.scheme.qrange();
    let params = ParamsUniform {
        count: to_u32(OP, "slots", view.channels)?,
        qmin,
        qmax,
        symmetric: u32::from(spec.scheme.symmetric),
    };
    let kernel = ctx.kernel(&ShaderVariant::new(ShaderFile::QuantParams, vec![]))?;
    let groups = (view.channels as u64).div_ceil(64);
    let [gx, gy, _] = super::grid_for(ctx, OP, groups)?;
    super::record(
        ctx,
        encoder,
        OP,
        &kernel,
        bytemuck::bytes_of(&params),
        &[&stats, q.scales.buffer(), q.zero_points.buffer()],
        [gx, gy, 1],
    )?;
    quantize(ctx, encoder, x, q)
}

/// Per-channel statistics read back from the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct MinMax {
    /// Smallest finite value per channel (0 for a channel without finite values).
    pub min: Vec<f32>,
    /// Largest finite value per channel.
    pub max: Vec<f32>,
    /// Number of NaN and infinite values skipped.
    pub nonfinite: u64,
}

fn from_ordered(u: u32) -> f32 {
    f32::from_bits(if u & 0x8000_0000 != 0 {
        u & 0x7fff_ffff
    } else {
        !u
    })
}

/// Computes each channel's finite min and max on the GPU and reads back only those
/// (`2 * channels + 1` words). Submits and waits: natively only; [`min_max_async`] is
/// its async form.
pub fn min_max(ctx: &Context, x: &Tensor, view: &ChannelView) -> Result<MinMax> {
    ctx.block("min_max", min_max_async(ctx, x, view))
}

/// [`min_max`] without blocking (the form a browser build uses).
pub async fn min_max_async(ctx: &Context, x: &Tensor, view: &ChannelView) -> Result<MinMax> {
    super::check_devices(ctx, "min_max", &[("x", Some(x))])?;
    const OP: &str = "min_max";
    check_view(OP, x, view)?;
    let stats = min_max_buffer(ctx, OP, view.channels)?;
    let mut enc = ctx.encoder(OP);
    if x.numel() > 0 {
        record_stats(ctx, &mut enc, OP, x, view, 0, ctx.dummy_buffer(), &stats)?;
    }
    ctx.submit(enc).await?;
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(
        &ctx.read_buffer(
            &stats,
            ((2 * view.channels + 1) * 4) as u64,
            "min/max statistics",
        )
        .await?,
    );
    let mut out = MinMax {
        min: Vec::with_capacity(view.channels),
        max: Vec::with_capacity(view.channels),
        nonfinite: u64::from(words[2 * view.channels]),
    };
    for c in 0..view.channels {
        let (lo, hi) = (words[2 * c], words[2 * c + 1]);
        if lo > hi {
            out.min.push(0.0);
            out.max.push(0.0);
        } else {
            out.min.push(from_ordered(lo));
            out.max.push(from_ordered(hi));
        }
    }
    Ok(out)
}

fn check_view(op: &'static str, x: &Tensor, view: &ChannelView) -> Result<()> {
    if view.outer * view.channels * view.inner != x.numel() || view.channels == 0 {
        return Err(Error::shape(
            op,
            format!(
                "view {view:?} does not cover a tensor of shape {:?}",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// Histograms of `HIST_BINS` bins per channel over `[-R_c, R_c]` (`ranges[c] = R_c > 0`):
/// value `v` falls in bin `floor((v + R) * (HIST_BINS / (2 R)))`, clamped to the last
/// bin. Returns the counts (`channels * HIST_BINS`) and the number of non-finite values
/// skipped. Submits and waits (natively only; [`histogram_async`] is its async form);
/// only the counts are read back.
pub fn histogram(
    ctx: &Context,
    x: &Tensor,
    view: &ChannelView,
    ranges: &[f32],
) -> Result<(Vec<u32>, u64)> {
    ctx.block("histogram", histogram_async(ctx, x, view, ranges))
}

/// [`histogram`] without blocking (the form a browser build uses).
pub async fn histogram_async(
    ctx: &Context,
    x: &Tensor,
    view: &ChannelView,
    ranges: &[f32],
) -> Result<(Vec<u32>, u64)> {
    super::check_devices(ctx, "histogram", &[("x", Some(x))])?;
    const OP: &str = "histogram";
    check_view(OP, x, view)?;
    if ranges.len() != view.channels {
        return Err(Error::shape(
            OP,
            format!(
                "{} channels need {} ranges, got {}",
                view.channels,
                view.channels,
                ranges.len()
            ),
        ));
    }
    if let Some((i, r)) = crate::quant::first_not_positive_normal(ranges) {
        return Err(Error::invalid(
            OP,
            format!("range[{i}] = {r:e} must be finite, normal and positive"),
        ));
    }
    let table: Vec<f32> = ranges.iter().flat_map(|&r| [r, hist_inv(r)]).collect();
    let range_buf = stats_buffer(ctx, OP, bytemuck::cast_slice(&table))?;
    let n = view.channels * HIST_BINS + 1;
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    if (n * 4) as u64 > limit {
        return Err(Error::LimitExceeded {
            op: OP,
            what: format!("histograms of {} channels", view.channels),
            needed: (n * 4) as u64,
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    let out = stats_buffer(ctx, OP, &vec![0u32; n])?;
    let mut enc = ctx.encoder(OP);
    if x.numel() > 0 {
        record_stats(ctx, &mut enc, OP, x, view, 1, &range_buf, &out)?;
    }
    ctx.submit(enc).await?;
    let mut words: Vec<u32> =
        bytemuck::pod_collect_to_vec(&ctx.read_buffer(&out, (n * 4) as u64, "histogram").await?);
    let bad = u64::from(words.pop().unwrap_or(0));
    Ok((words, bad))
}

/// `HIST_BINS / (2 R)` in f32, the multiplier of the binning formula.
pub fn hist_inv(r: f32) -> f32 {
    // In f64 so that 2 * r cannot overflow for ranges near f32::MAX.
    (HIST_BINS as f64 / (2.0 * f64::from(r))) as f32
}

/// The reference bin of `v` (finite) for range `r` and multiplier `inv = hist_inv(r)`.
pub fn hist_bin(v: f32, r: f32, inv: f32) -> usize {
    let f = ((v + r) * inv).floor();
    (f.max(0.0) as usize).min(HIST_BINS - 1)
}

/// The params blocks of the quantization kernels (checked against the WGSL by a test).
pub(crate) fn uniforms() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::Quantize, uniform_layout::<QuantizeUniform>()),
        (
            ShaderFile::Dequantize,
            uniform_layout::<DequantizeUniform>(),
        ),
        (ShaderFile::QuantStats, uniform_layout::<StatsUniform>()),
        (ShaderFile::QuantParams, uniform_layout::<ParamsUniform>()),
    ]
}
