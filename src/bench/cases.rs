//! The benchmark cases, shared by `wgpu-quant bench` and the criterion benches so that
//! both time the same verified work: a linear layer `[M, K] x [N, K]^T` and a
//! convolution in every precision, and the quantization kernels.
//!
//! A case is prepared once: random operands are uploaded, the op is recorded, run and
//! read back, and a spread sample of its outputs is compared with the reference. Integer
//! paths (W8A8 linear and convolution, the quantization kernels) must match bit for bit;
//! float paths must stay within the budget of the arithmetic the plan picked, relative
//! to an f64 reference on the same (f16-rounded or dequantized) operands. Only a verified
//! case may be timed ([`Prepared::time`]).

use half::f16;

use super::{random_f32, Peaks, Timings};
use crate::context::Context;
use crate::desc::rows::RowTile;
use crate::desc::tuning::{ConvKind, WeightType};
use crate::error::{Error, Result};
use crate::ops::conv::{
    conv2d, qconv2d, ConvDesc, ConvDims, ConvShape, ConvWeight, Padding, QConvWeight,
};
use crate::ops::gemm::{gemm, Activation, GemmDesc, GemmKernel};
use crate::ops::qgemm::{qgemm, QGemmDesc, QGemmOutput};
use crate::ops::quant::{dequantize, dynamic_quantize, quantize, DynamicQuant, QTensor};
use crate::ops::wgemm::{wgemm, HalfMath, WGemmDesc, Weights};
use crate::quant::{quantize_value, Granularity, QType, QuantParams, QuantScheme};
use crate::{DType, Tensor};

/// The arithmetic of a linear or convolution case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 activations and weights (`ops::gemm`, B stored `[K, N]`; `ops::conv::conv2d`).
    Fp32,
    /// f16 activations and weights, f32 output for linears and f16 for convolutions, the
    /// plan's arithmetic (`ops::wgemm`, `ops::conv::conv2d`).
    Fp16,
    /// i8 activations (per row for linears, per tensor for convolutions) times i8 weights
    /// (per output channel), int32 accumulation; f32 output for linears, requantized i8
    /// for convolutions (`ops::qgemm`, `ops::conv::qconv2d`). The activations arrive
    /// quantized, as in a static INT8 network.
    W8A8,
    /// `W8A8` on f32 activations quantized per row on the fly (`ops::quant::dynamic_quantize`
    /// then `ops::qgemm`): dynamic quantization, linears only.
    W8A8Dynamic,
    /// f16 activations, i8 per-channel weights (`ops::wgemm`), linears only.
    W8A16,
    /// f16 activations, i4 weights with one scale per group of 128 along K, linears only.
    W4A16,
}

impl Precision {
    /// Every precision, in table order.
    pub const ALL: [Precision; 6] = [
        Precision::Fp32,
        Precision::Fp16,
        Precision::W8A8,
        Precision::W8A8Dynamic,
        Precision::W8A16,
        Precision::W4A16,
    ];

    /// The name in tables and records (`fp32`, `fp16`, `w8a8`, `w8a8+q`, `w8a16`,
    /// `w4a16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::W8A8 => "w8a8",
            Precision::W8A8Dynamic => "w8a8+q",
            Precision::W8A16 => "w8a16",
            Precision::W4A16 => "w4a16",
        }
    }

    /// Parses a [`Precision::name`] (case-insensitive).
    pub fn parse(s: &str) -> std::result::Result<Precision, String> {
        let t = s.trim().to_ascii_lowercase();
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == t)
            .ok_or_else(|| {
                format!(
                    "unknown dtype '{s}': expected one of {}",
                    Precision::ALL.map(Precision::name).join(", ")
                )
            })
    }

    /// Whether convolutions run in this precision (FP32, FP16 and W8A8).
    pub fn has_conv(self) -> bool {
        matches!(self, Precision::Fp32 | Precision::Fp16 | Precision::W8A8)
    }
}

/// Which measured peak bounds a case's throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The FP32 FMA rate.
    Fp32,
    /// The f16 FMA rate.
    Fp16,
    /// The packed INT8 dot rate.
    Int8,
    /// The copy bandwidth (memory-bound kernels).
    Bandwidth,
    /// None measured (INT8 without the packed dot).
    Unknown,
}

impl Bound {
    /// `value` (GOP/s, or GB/s for [`Bound::Bandwidth`]) as a percentage of the peak.
    pub fn percent(self, peaks: &Peaks, value: f64) -> Option<f64> {
        let p = match self {
            Bound::Fp32 => peaks.fp32,
            Bound::Fp16 => peaks.fp16,
            Bound::Int8 => peaks.int8,
            Bound::Bandwidth => peaks.bandwidth,
            Bound::Unknown => None,
        };
        p.map(|p| 100.0 * value / p)
    }
}

pub(crate) type Record<'a> = Box<dyn Fn(&mut wgpu::CommandEncoder) -> Result<()> + 'a>;

/// A case set up on the GPU and checked once against its reference.
pub struct Prepared<'a> {
    /// The kernel configuration the plan chose.
    pub kernel: String,
    /// Relative error of the sampled outputs, `||got - ref|| / ||ref||`.
    pub rel_error: f64,
    /// The budget `rel_error` had to meet; 0 means bit for bit.
    pub budget: f64,
    /// Outputs compared with the reference.
    pub checked: usize,
    /// The check passed.
    pub verified: bool,
    /// Operations per run (2 per multiply-add; elements for the quantization kernels).
    pub ops: f64,
    /// Bytes per run: every operand read once and the output written once.
    pub bytes: f64,
    /// The peak that bounds it.
    pub bound: Bound,
    pub(crate) record: Record<'a>,
}

impl std::fmt::Debug for Prepared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("kernel", &self.kernel)
            .field("rel_error", &self.rel_error)
            .field("budget", &self.budget)
            .field("checked", &self.checked)
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

impl Prepared<'_> {
    /// Records one run of the case into `enc`.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        (self.record)(enc)
    }

    /// Times `runs` runs after `warmup` untimed ones ([`super::time_gpu`]); `None` without
    /// timing anything when the case failed its check.
    pub fn time(&self, ctx: &Context, warmup: usize, runs: usize) -> Result<Option<Timings>> {
        if !self.verified {
            return Ok(None);
        }
        ctx.block(
            "Prepared::time",
            super::time_gpu_async(ctx, warmup, runs, |enc| self.record(enc)),
        )
        .map(Some)
    }

    /// [`Prepared::time`] for a browser: the wall clock around each awaited submission
    /// ([`super::time_wall`]).
    pub async fn time_async(
        &self,
        ctx: &Context,
        warmup: usize,
        runs: usize,
    ) -> Result<Option<Timings>> {
        if !self.verified {
            return Ok(None);
        }
        super::time_wall(ctx, warmup, runs, |enc| self.record(enc))
            .await
            .map(Some)
    }
}

/// Indices of up to `samples` entries out of `total`, walking with an odd stride so that
/// every row and column class of a tiled output is visited, not one lane of each tile.
pub fn sample_indices(total: usize, samples: usize) -> Vec<usize> {
    if total <= samples {
        return (0..total).collect();
    }
    let step = total / samples.max(1) + 1;
    let mut idx = 0usize;
    (0..samples)
        .map(|_| {
            let i = idx;
            idx = (idx + step) % total;
            i
        })
        .collect()
}

/// `||got - want|| / ||want||` over the sampled entries.
pub(crate) fn rel(got: impl Iterator<Item = f64>, want: impl Iterator<Item = f64>) -> f64 {
    let (mut e, mut r) = (0f64, 0f64);
    for (g, w) in got.zip(want) {
        e += (g - w).powi(2);
        r += w * w;
    }
    if r == 0.0 {
        if e == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (e / r).sqrt()
    }
}

/// The budget of an f16 product path with the plan's arithmetic (docs/GEMM.md).
fn half_budget(math: HalfMath) -> f64 {
    match math {
        HalfMath::F16 => 2e-2,
        HalfMath::F16AccF32 => 2e-3,
        HalfMath::F32 | HalfMath::Auto => 1e-5,
    }
}

fn f16_round(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

/// Host operands of a linear layer `y[M, N] = x[M, K] w[N, K]^T`, shared by the
/// precisions of one shape.
#[derive(Debug, Clone)]
pub struct LinearData {
    /// Rows.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    x: Vec<f32>,
    w: Vec<f32>,
}

/// Options of a linear case.
#[derive(Debug, Clone, Copy)]
pub struct CaseOptions {
    /// Outputs compared with the reference.
    pub samples: usize,
    /// Pins the FP32 GEMM kernel (else the plan's).
    pub fp32_kernel: Option<GemmKernel>,
    /// Pins the row-kernel tile of the W8A8, weight-only and FP16 linears and of the
    /// implicit-GEMM convolutions (else the plan's); the tuner's candidates.
    pub tile: Option<RowTile>,
    /// Pins the weight-only / FP16 linear's FP32-kernel route on this kernel
    /// ([`WGemmDesc::fp32_kernel`]); the tuner's candidates.
    pub half_kernel: Option<GemmKernel>,
    /// Pins the FP16 linear on cooperative matrices with this block
    /// ([`WGemmDesc::coop_tile`]); the tuner's candidates.
    pub coop_tile: Option<crate::desc::wgemm::CoopTile>,
}

impl CaseOptions {
    /// The label of what runs: the pinned tile or route, else the plan's choice.
    fn label(&self, plan: impl FnOnce() -> Result<String>) -> Result<String> {
        use crate::desc::tuning::Choice;
        match (self.tile, self.half_kernel, self.coop_tile) {
            (Some(t), _, _) => Ok(Choice::Rows(t).label()),
            (None, Some(k), _) => Ok(Choice::Gemm(k).label()),
            (None, None, Some(t)) => Ok(Choice::Coop(t).label()),
            (None, None, None) => plan(),
        }
    }
}

impl Default for CaseOptions {
    fn default() -> Self {
        CaseOptions {
            samples: 1024,
            fp32_kernel: None,
            tile: None,
            half_kernel: None,
            coop_tile: None,
        }
    }
}

impl LinearData {
    /// Uniform random operands in `[-1, 1)` (fixed seeds).
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        LinearData {
            m,
            n,
            k,
            x: random_f32(m * k, 1),
            w: random_f32(n * k, 2),
        }
    }

    fn dot(&self, x: &[f32], w: &[f32], i: usize, j: usize) -> f64 {
        let k = self.k;
        x[i * k..(i + 1) * k]
            .iter()
            .zip(&w[j * k..(j + 1) * k])
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    }

    /// Uploads, runs and checks the layer in `p` on `ctx` (waits for the GPU; in a
    /// browser use [`LinearData::prepare_async`]).
    pub fn prepare<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        ctx.block("LinearData::prepare", self.prepare_async(ctx, p, opts))
    }

    /// [`LinearData::prepare`] for a browser: the check's run is awaited.
    pub async fn prepare_async<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        match p {
            Precision::Fp32 => self.prepare_fp32(ctx, opts).await,
            Precision::Fp16 | Precision::W8A16 | Precision::W4A16 => {
                self.prepare_weight_only(ctx, p, opts).await
            }
            Precision::W8A8 | Precision::W8A8Dynamic => self.prepare_w8a8(ctx, p, opts).await,
        }
    }

    /// The outputs to check, and the output tensor poisoned with NaN (so that an
    /// unwritten element fails the check).
    fn outputs(&self, ctx: &Context, opts: &CaseOptions) -> Result<(Vec<usize>, Tensor)> {
        let mn = self.m * self.n;
        let y = Tensor::from_slice(ctx, &[self.m, self.n], &vec![f32::NAN; mn])?;
        Ok((sample_indices(mn, opts.samples), y))
    }

    /// The relative error of the sampled outputs `idx` of `got` against `x * w^T` in f64,
    /// and whether it is within `budget`.
    fn float_check(
        &self,
        idx: &[usize],
        got: &[f32],
        x: &[f32],
        w: &[f32],
        budget: f64,
    ) -> (f64, bool) {
        let e = rel(
            idx.iter().map(|&i| f64::from(got[i])),
            idx.iter().map(|&i| self.dot(x, w, i / self.n, i % self.n)),
        );
        (e, e <= budget)
    }

    /// FP32: the GEMM with the weight in the layout the plan prefers for a linear layer
    /// on this adapter ([`crate::plan::linear_weight_transposed`]).
    async fn prepare_fp32<'a>(&self, ctx: &'a Context, opts: &CaseOptions) -> Result<Prepared<'a>> {
        let (m, n, k) = (self.m, self.n, self.k);
        let (idx, y) = self.outputs(ctx, opts)?;
        let (macs, out_bytes) = ((m * n * k) as f64, 4.0 * (m * n) as f64);
        let x32 = Tensor::from_slice(ctx, &[m, k], &self.x)?;
        let trans = crate::plan::linear_weight_transposed(ctx.capabilities(), k);
        let b = if trans {
            Tensor::from_slice(ctx, &[n, k], &self.w)?
        } else {
            Tensor::from_slice(ctx, &[k, n], &crate::reference::transpose(&self.w, n, k))?
        };
        let mut desc = GemmDesc::new(m, n, k).transpose(false, trans);
        desc.kernel = opts.fp32_kernel;
        let kernel = crate::plan::explain_gemm(ctx, &desc)?.choice.label();
        let rec: Record<'a> = {
            let y = y.clone();
            Box::new(move |enc| gemm(ctx, enc, &desc, &x32, &b, None, &y))
        };
        let got = run_once(ctx, &rec, &y).await?;
        let budget = super::F32_GEMM_BUDGET;
        let (rel_error, verified) = self.float_check(&idx, &got, &self.x, &self.w, budget);
        Ok(Prepared {
            kernel,
            rel_error,
            budget,
            checked: idx.len(),
            verified,
            ops: 2.0 * macs,
            bytes: 4.0 * (m * k + n * k) as f64 + out_bytes,
            bound: Bound::Fp32,
            record: rec,
        })
    }

    /// FP16, W8A16 and W4A16: the weight-only / FP16 GEMM on f16 activations.
    async fn prepare_weight_only<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        let (m, n, k) = (self.m, self.n, self.k);
        let (idx, y) = self.outputs(ctx, opts)?;
        let (macs, out_bytes) = ((m * n * k) as f64, 4.0 * (m * n) as f64);
        let xh = f16_round(&self.x);
        let xr: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
        let x16 = Tensor::from_slice(ctx, &[m, k], &xh)?;
        // The weights as the kernel sees them, and their storage.
        let (wr, wbytes, weights, wtype) = match p {
            Precision::Fp16 => {
                let wh = f16_round(&self.w);
                let wr: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
                let t = Tensor::from_slice(ctx, &[n, k], &wh)?;
                (
                    wr,
                    2.0 * (n * k) as f64,
                    WeightStore::F16(t),
                    WeightType::F16,
                )
            }
            _ => {
                let (scheme, wtype) = if p == Precision::W8A16 {
                    (
                        QuantScheme::symmetric(QType::I8).per_channel(0),
                        WeightType::I8,
                    )
                } else {
                    (
                        QuantScheme::symmetric(QType::I4).per_group(1, 128),
                        WeightType::I4,
                    )
                };
                let wp = QuantParams::from_data(&scheme, &[n, k], &self.w)?;
                let codes = wp.quantize(&self.w)?;
                let wr = wp.dequantize(&codes)?;
                let q = QTensor::from_codes(ctx, &wp, &codes)?;
                let bytes = (q.data().size_bytes() + 4 * wp.scales.len() as u64) as f64;
                (wr, bytes, WeightStore::Quantized(Box::new(q)), wtype)
            }
        };
        let planned = crate::plan::explain_wgemm(ctx, m, n, k, wtype).choice;
        let kernel = opts.label(|| Ok(planned.label()))?;
        // Cooperative matrices (tensor cores) have no probe of their own: no % of peak.
        let coop = opts.coop_tile.is_some()
            || (opts.tile.is_none()
                && opts.half_kernel.is_none()
                && matches!(planned, crate::desc::tuning::Choice::Coop(_)));
        let wdesc = WGemmDesc {
            config: opts.tile,
            fp32_kernel: opts.half_kernel,
            cooperative: opts.coop_tile.map(|_| true),
            coop_tile: opts.coop_tile,
            ..WGemmDesc::default()
        };
        let budget = if p == Precision::Fp16 {
            half_budget(crate::plan::half_math(ctx.capabilities()))
        } else {
            1e-5
        };
        let bound = if coop {
            Bound::Unknown
        } else if p == Precision::Fp16
            && crate::plan::half_math(ctx.capabilities()) != HalfMath::F32
        {
            Bound::Fp16
        } else {
            Bound::Fp32
        };
        let rec: Record<'a> = {
            let y = y.clone();
            Box::new(move |enc| {
                let w = match &weights {
                    WeightStore::F16(t) => Weights::F16(t),
                    WeightStore::Quantized(q) => Weights::Quantized(q),
                };
                wgemm(ctx, enc, &wdesc, &x16, w, None, &y)
            })
        };
        let got = run_once(ctx, &rec, &y).await?;
        let (rel_error, verified) = self.float_check(&idx, &got, &xr, &wr, budget);
        Ok(Prepared {
            kernel,
            rel_error,
            budget,
            checked: idx.len(),
            verified,
            ops: 2.0 * macs,
            bytes: 2.0 * (m * k) as f64 + wbytes + out_bytes,
            bound,
            record: rec,
        })
    }

    /// W8A8 on static or dynamically quantized activations, checked bit for bit.
    async fn prepare_w8a8<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        let (m, n, k) = (self.m, self.n, self.k);
        let (idx, y) = self.outputs(ctx, opts)?;
        let (macs, out_bytes) = ((m * n * k) as f64, 4.0 * (m * n) as f64);
        let x32 = Tensor::from_slice(ctx, &[m, k], &self.x)?;
        let wp = QuantParams::from_data(
            &QuantScheme::symmetric(QType::I8).per_channel(0),
            &[n, k],
            &self.w,
        )?;
        let wc = wp.quantize(&self.w)?;
        let w8 = QTensor::from_codes(ctx, &wp, &wc)?;
        let spec = DynamicQuant::per_row_i8();
        // The activation codes the dynamic kernel must produce, bit for bit.
        let (ac, ap) = crate::quant::dynamic_quantize_reference(&spec.scheme, &[m, k], &self.x)?;
        let dynamic = p == Precision::W8A8Dynamic;
        let xq = if dynamic {
            QTensor::for_dynamic(ctx, &spec, &[m, k])?
        } else {
            QTensor::from_codes(ctx, &ap, &ac)?
        };
        let qdesc = QGemmDesc {
            config: opts.tile,
            ..QGemmDesc::default()
        };
        let rec: Record<'a> = {
            let y = y.clone();
            Box::new(move |enc| {
                if dynamic {
                    dynamic_quantize(ctx, enc, &x32, &spec, &xq)?;
                }
                qgemm(ctx, enc, &qdesc, &xq, &w8, None, QGemmOutput::F32(&y))
            })
        };
        let got = run_once(ctx, &rec, &y).await?;
        let want: Vec<f32> = idx
            .iter()
            .map(|&t| {
                let (i, j) = (t / n, t % n);
                let (za, zw) = (ap.zero_points[i], wp.zero_points[j]);
                let r: i64 = (0..k)
                    .map(|q| i64::from(ac[i * k + q] - za) * i64::from(wc[j * k + q] - zw))
                    .sum();
                let r = i32::try_from(r)
                    .map_err(|_| Error::invalid("bench w8a8", "accumulator outside int32"))?;
                Ok(crate::reference::qgemm_dequant(
                    r,
                    ap.scales[i],
                    wp.scales[j],
                    None,
                    Activation::None,
                ))
            })
            .collect::<Result<_>>()?;
        let verified = idx
            .iter()
            .zip(&want)
            .all(|(&i, w)| got[i].to_bits() == w.to_bits());
        let rel_error = rel(
            idx.iter().map(|&i| f64::from(got[i])),
            want.iter().map(|&w| f64::from(w)),
        );
        let in_bytes = if dynamic { 4.0 } else { 1.0 } * (m * k) as f64;
        Ok(Prepared {
            kernel: opts.label(|| Ok(crate::plan::explain_qgemm(ctx, m, n, k).choice.label()))?,
            rel_error,
            budget: 0.0,
            checked: idx.len(),
            verified,
            ops: 2.0 * macs,
            bytes: in_bytes + (n * k) as f64 + out_bytes,
            bound: if ctx.capabilities().packed_int8_dot {
                Bound::Int8
            } else {
                Bound::Unknown
            },
            record: rec,
        })
    }
}

/// Runs `rec` once and reads `y` back (the check before timing).
async fn run_once<'a>(ctx: &'a Context, rec: &Record<'a>, y: &Tensor) -> Result<Vec<f32>> {
    let mut enc = ctx.encoder("bench check");
    rec(&mut enc)?;
    ctx.submit(enc).await?;
    y.read::<f32>(ctx).await
}

enum WeightStore {
    F16(Tensor),
    Quantized(Box<QTensor>),
}

/// A convolution layer of a real network (batch 1, square input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvLayer {
    /// `net.layer`, e.g. `r50.conv3x3_64`.
    pub name: &'static str,
    /// Input height = width.
    pub hw: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub oc: usize,
    /// Kernel height = width.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
    /// Groups (`c` for depthwise).
    pub groups: usize,
}

#[allow(clippy::too_many_arguments)]
const fn layer(
    name: &'static str,
    hw: usize,
    c: usize,
    oc: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> ConvLayer {
    ConvLayer {
        name,
        hw,
        c,
        oc,
        k,
        stride,
        pad,
        groups,
    }
}

/// Convolutions of ResNet-50 and EfficientNet-Lite0 at 224x224: stems, 3x3, 1x1,
/// depthwise 3x3 and strided 5x5, and the heads.
pub const CONV_LAYERS: [ConvLayer; 10] = [
    layer("r50.conv1_7x7s2", 224, 3, 64, 7, 2, 3, 1),
    layer("r50.conv3x3_64", 56, 64, 64, 3, 1, 1, 1),
    layer("r50.conv1x1_256to64", 56, 256, 64, 1, 1, 0, 1),
    layer("r50.conv3x3_512", 7, 512, 512, 3, 1, 1, 1),
    layer("eff.stem_3x3s2", 224, 3, 32, 3, 2, 1, 1),
    layer("eff.dw3x3_32", 112, 32, 32, 3, 1, 1, 32),
    layer("eff.pw_32to16", 112, 32, 16, 1, 1, 0, 1),
    layer("eff.pw_24to144", 56, 24, 144, 1, 1, 0, 1),
    layer("eff.dw5x5s2_144", 56, 144, 144, 5, 2, 2, 144),
    layer("eff.head_320to1280", 7, 320, 1280, 1, 1, 0, 1),
];

/// The linear layers of the `models` suite: BERT-base at sequence length 128 (attention
/// projections and both FFN layers) and the GEMVs of a 7B LLM's decoding step.
pub const MODEL_LINEARS: [(&str, usize, usize, usize); 5] = [
    ("bert.attn_proj", 128, 768, 768),
    ("bert.ffn_up", 128, 3072, 768),
    ("bert.ffn_down", 128, 768, 3072),
    ("llm.gemv", 1, 4096, 4096),
    ("llm.gemv_ffn", 1, 11008, 4096),
];

/// Host operands of a convolution layer, shared by its precisions.
#[derive(Debug, Clone)]
pub struct ConvData {
    /// The layer (for a convolution given by its description, a summary with its
    /// channels, kernel and input height).
    pub layer: ConvLayer,
    /// Its geometry.
    pub shape: ConvShape,
    desc: ConvDesc,
    x_shape: [usize; 4],
    x: Vec<f32>,
    w: Vec<f32>,
}

impl ConvData {
    /// Random NHWC input in `[-1, 1)` and OIHW weights in `[-0.2, 0.2)` (fixed seeds).
    pub fn new(layer: ConvLayer) -> Result<Self> {
        let dims = ConvDims::new(layer.oc, layer.c, [layer.k, layer.k], layer.groups)?;
        let desc = ConvDesc::default()
            .stride(layer.stride)
            .padding(Padding::uniform(layer.pad));
        Self::build(layer, desc, dims, [1, layer.hw, layer.hw, layer.c])
    }

    /// Any convolution: `desc` (stride, padding, dilation) of weights `dims` over an NHWC
    /// input of `x_shape` (the tuner's and the tests' cases).
    pub fn from_desc(desc: &ConvDesc, dims: ConvDims, x_shape: [usize; 4]) -> Result<Self> {
        let layer = ConvLayer {
            name: "conv",
            hw: x_shape[1],
            c: dims.in_channels,
            oc: dims.out_channels,
            k: dims.kernel[0],
            stride: desc.stride[0],
            pad: 0,
            groups: dims.groups,
        };
        Self::build(layer, *desc, dims, x_shape)
    }

    fn build(layer: ConvLayer, desc: ConvDesc, dims: ConvDims, xs: [usize; 4]) -> Result<Self> {
        let shape = desc.shape(&dims, &xs)?;
        let x = random_f32(xs.iter().product(), 1);
        let w = random_f32(dims.oihw().iter().product(), 2)
            .iter()
            .map(|v| v * 0.2)
            .collect();
        Ok(ConvData {
            layer,
            shape,
            desc,
            x_shape: xs,
            x,
            w,
        })
    }

    /// The dims of the input.
    fn x_shape(&self) -> [usize; 4] {
        self.x_shape
    }

    /// `term(x_index, w_index)` summed over the taps of output `flat` (NHWC).
    fn sum_at<T: std::iter::Sum<T>>(&self, flat: usize, term: impl Fn(usize, usize) -> T) -> T {
        let s = &self.shape;
        let [oc_n, cg, kh, kw] = s.dims.oihw();
        let c_n = s.dims.in_channels;
        let (row, oc) = (flat / oc_n, flat % oc_n);
        let (oy, ox) = (row / s.out_w % s.out_h, row % s.out_w);
        let b = row / (s.out_h * s.out_w);
        let g = oc / (oc_n / s.dims.groups);
        let mut terms = Vec::with_capacity(cg * kh * kw);
        for ky in 0..kh {
            let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize - s.pad[0] as isize;
            for kx in 0..kw {
                let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize - s.pad[1] as isize;
                if iy < 0 || ix < 0 || iy >= s.in_h as isize || ix >= s.in_w as isize {
                    continue;
                }
                let pix = (b * s.in_h + iy as usize) * s.in_w + ix as usize;
                for c in 0..cg {
                    terms.push(term(
                        pix * c_n + g * cg + c,
                        ((oc * cg + c) * kh + ky) * kw + kx,
                    ));
                }
            }
        }
        terms.into_iter().sum()
    }

    /// Uploads, runs and checks the layer in `p` (FP32, FP16 or W8A8) on `ctx` (waits
    /// for the GPU; in a browser use [`ConvData::prepare_async`]).
    pub fn prepare<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        ctx.block("ConvData::prepare", self.prepare_async(ctx, p, opts))
    }

    /// [`ConvData::prepare`] for a browser: the check's runs are awaited.
    pub async fn prepare_async<'a>(
        &self,
        ctx: &'a Context,
        p: Precision,
        opts: &CaseOptions,
    ) -> Result<Prepared<'a>> {
        match p {
            Precision::Fp32 => self.prepare_fp32(ctx, opts).await,
            Precision::Fp16 => self.prepare_fp16(ctx, opts).await,
            Precision::W8A8 => self.prepare_int8(ctx, opts).await,
            _ => Err(Error::invalid(
                "bench conv",
                format!("convolutions run in fp32, fp16 and w8a8, not {}", p.name()),
            )),
        }
    }

    /// The layer's description with the tile `opts` pins, if any.
    fn pinned(&self, opts: &CaseOptions) -> ConvDesc {
        match opts.tile {
            Some(t) => self.desc.config(t),
            None => self.desc,
        }
    }

    /// Shapes, sample indices and the work of one run.
    fn setup(&self, opts: &CaseOptions) -> ConvRun {
        let dims = self.shape.dims;
        let xs = self.x_shape();
        let oshape = self.shape.output_shape();
        let total: usize = oshape.iter().product();
        let elems =
            (xs.iter().product::<usize>() + dims.oihw().iter().product::<usize>() + total) as f64;
        ConvRun {
            idx: sample_indices(total, opts.samples),
            ops: 2.0 * self.shape.macs() as f64,
            xs,
            oshape,
            total,
            elems,
        }
    }

    /// The sampled outputs `idx` in f64 for inputs `x` and OIHW weights `w`.
    fn float_want(&self, idx: &[usize], x: &[f32], w: &[f32]) -> Vec<f64> {
        idx.iter()
            .map(|&i| self.sum_at(i, |a, b| f64::from(x[a]) * f64::from(w[b])))
            .collect()
    }

    /// What the plan runs for this layer with `kind` storage.
    fn plan_label(&self, ctx: &Context, kind: ConvKind) -> Result<String> {
        let (s, dims) = (self.shape, self.shape.dims);
        Ok(if dims.is_depthwise() {
            "depthwise".to_string()
        } else if kind == ConvKind::F32 && s.is_pointwise() {
            let g = GemmDesc::new(s.rows(), dims.out_channels, dims.in_channels);
            format!(
                "1x1 as GEMM: {}",
                crate::plan::explain_gemm(ctx, &g)?.choice.label()
            )
        } else {
            format!(
                "implicit GEMM: {}",
                crate::plan::explain_conv(ctx, &s, kind).choice.label()
            )
        })
    }

    /// FP32, checked against f64 within 1e-5.
    async fn prepare_fp32<'a>(&self, ctx: &'a Context, opts: &CaseOptions) -> Result<Prepared<'a>> {
        let c = self.setup(opts);
        let (dims, desc, idx) = (self.shape.dims, self.pinned(opts), &c.idx);
        let mut enc = ctx.encoder("bench check");
        let x = Tensor::from_slice(ctx, &c.xs, &self.x)?;
        let w = ConvWeight::from_oihw(ctx, dims, &self.w, DType::F32)?;
        let y = Tensor::from_slice(ctx, &c.oshape, &vec![f32::NAN; c.total])?;
        let rec: Record<'a> = {
            let y = y.clone();
            Box::new(move |enc| conv2d(ctx, enc, &desc, &x, &w, None, &y))
        };
        rec(&mut enc)?;
        ctx.submit(enc).await?;
        let got = y.read::<f32>(ctx).await?;
        let want = self.float_want(idx, &self.x, &self.w);
        let e = rel(idx.iter().map(|&i| f64::from(got[i])), want.into_iter());
        Ok(Prepared {
            kernel: opts.label(|| self.plan_label(ctx, ConvKind::F32))?,
            rel_error: e,
            budget: 1e-5,
            checked: idx.len(),
            verified: e <= 1e-5,
            ops: c.ops,
            bytes: 4.0 * c.elems,
            bound: Bound::Fp32,
            record: rec,
        })
    }

    /// FP16 storage (and f16 arithmetic where the plan uses it), within its budget.
    async fn prepare_fp16<'a>(&self, ctx: &'a Context, opts: &CaseOptions) -> Result<Prepared<'a>> {
        let c = self.setup(opts);
        let (dims, desc, idx) = (self.shape.dims, self.pinned(opts), &c.idx);
        let mut enc = ctx.encoder("bench check");
        let xh = f16_round(&self.x);
        let xr: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
        let wr: Vec<f32> = f16_round(&self.w).iter().map(|v| v.to_f32()).collect();
        let x = Tensor::from_slice(ctx, &c.xs, &xh)?;
        let w = ConvWeight::from_oihw(ctx, dims, &self.w, DType::F16)?;
        let y = Tensor::from_slice(ctx, &c.oshape, &vec![f16::NAN; c.total])?;
        let rec: Record<'a> = {
            let y = y.clone();
            Box::new(move |enc| conv2d(ctx, enc, &desc, &x, &w, None, &y))
        };
        rec(&mut enc)?;
        ctx.submit(enc).await?;
        let got = y.read::<f16>(ctx).await?;
        let want = self.float_want(idx, &xr, &wr);
        let e = rel(
            idx.iter().map(|&i| f64::from(got[i].to_f32())),
            want.into_iter(),
        );
        let math = crate::plan::half_math(ctx.capabilities());
        // f16 output adds its rounding, 2^-11 relative.
        let budget = half_budget(math) + 4.9e-4;
        Ok(Prepared {
            kernel: opts.label(|| self.plan_label(ctx, ConvKind::F16))?,
            rel_error: e,
            budget,
            checked: idx.len(),
            verified: e <= budget,
            ops: c.ops,
            bytes: 2.0 * c.elems,
            bound: if math == HalfMath::F32 {
                Bound::Fp32
            } else {
                Bound::Fp16
            },
            record: rec,
        })
    }

    /// Static INT8, both outputs of the kernel checked bit for bit.
    async fn prepare_int8<'a>(&self, ctx: &'a Context, opts: &CaseOptions) -> Result<Prepared<'a>> {
        let c = self.setup(opts);
        let (dims, desc, idx) = (self.shape.dims, self.pinned(opts), &c.idx);
        let mut enc = ctx.encoder("bench check");
        // Static INT8: per-tensor activations, per-channel weights, an i8 output
        // whose scale covers 1.5x the sampled outputs' range.
        let xp = QuantParams::from_data(&QuantScheme::symmetric(QType::I8), &c.xs, &self.x)?;
        let xc = xp.quantize(&self.x)?;
        let x = QTensor::from_codes(ctx, &xp, &xc)?;
        let wp = QuantParams::from_data(
            &QuantScheme::symmetric(QType::I8).per_channel(0),
            &dims.oihw(),
            &self.w,
        )?;
        let wc = wp.quantize(&self.w)?;
        let w = QConvWeight::from_codes(ctx, dims, &wc, &wp)?;
        let (sa, za) = (xp.scales[0], xp.zero_points[0]);
        let deq: Vec<f32> = idx
            .iter()
            .map(|&i| {
                let oc = i % dims.out_channels;
                let zw = wp.zero_points[oc];
                let r: i64 = self.sum_at(i, |a, b| i64::from(xc[a] - za) * i64::from(wc[b] - zw));
                let r = i32::try_from(r)
                    .map_err(|_| Error::invalid("bench qconv", "accumulator outside int32"))?;
                Ok(crate::reference::qgemm_dequant(
                    r,
                    sa,
                    wp.scales[oc],
                    None,
                    Activation::None,
                ))
            })
            .collect::<Result<_>>()?;
        let amax = deq.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6) * 1.5;
        let so = amax / 127.0;
        let op = QuantParams::new(
            QType::I8,
            Granularity::PerTensor,
            &c.oshape,
            vec![so],
            vec![0],
        )?;
        let y = QTensor::new(ctx, &op)?;
        y.data()
            .write(ctx, &vec![0xa5a5_a5a5u32; y.data().numel()])?;
        let rec: Record<'a> = {
            let (x, w, y) = (x.clone(), w.clone(), y.clone());
            Box::new(move |enc| qconv2d(ctx, enc, &desc, &x, &w, None, QGemmOutput::Quantized(&y)))
        };
        rec(&mut enc)?;
        ctx.submit(enc).await?;
        let got = y.read_codes(ctx).await?;
        let want: Vec<i32> = deq
            .iter()
            .map(|&v| quantize_value(v, so, 0, -128, 127))
            .collect();
        // The 8-bit output hides an accumulator off by a little, so the same
        // kernel also writes the dequantized f32 output once, checked bit for bit.
        let y32 = Tensor::from_slice(ctx, &c.oshape, &vec![f32::NAN; c.total])?;
        let mut enc = ctx.encoder("bench check f32");
        qconv2d(ctx, &mut enc, &desc, &x, &w, None, QGemmOutput::F32(&y32))?;
        ctx.submit(enc).await?;
        let got32 = y32.read::<f32>(ctx).await?;
        let verified = idx.iter().zip(&want).all(|(&i, &w)| got[i] == w)
            && idx
                .iter()
                .zip(&deq)
                .all(|(&i, d)| got32[i].to_bits() == d.to_bits());
        // The larger of the two outputs' errors (codes, dequantized values).
        let e = rel(
            idx.iter().map(|&i| f64::from(got[i])),
            want.iter().map(|&w| f64::from(w)),
        )
        .max(rel(
            idx.iter().map(|&i| f64::from(got32[i])),
            deq.iter().map(|&d| f64::from(d)),
        ));
        Ok(Prepared {
            kernel: opts.label(|| self.plan_label(ctx, ConvKind::W8A8))?,
            rel_error: e,
            budget: 0.0,
            checked: idx.len(),
            verified,
            ops: c.ops,
            bytes: c.elems,
            bound: if ctx.capabilities().packed_int8_dot {
                Bound::Int8
            } else {
                Bound::Unknown
            },
            record: rec,
        })
    }
}

/// What [`ConvData::setup`] derives for one run.
struct ConvRun {
    idx: Vec<usize>,
    ops: f64,
    xs: [usize; 4],
    oshape: Vec<usize>,
    total: usize,
    elems: f64,
}

/// A quantization kernel of the `quant` suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantOp {
    /// f32 to codes with known parameters (`ops::quant::quantize`).
    Quantize,
    /// Codes to f32 (`ops::quant::dequantize`).
    Dequantize,
    /// Per-row i8 parameters and codes from f32 (`ops::quant::dynamic_quantize`: two
    /// passes over the input).
    Dynamic,
}

/// The cases of the `quant` suite: (op, dtype, granularity, scheme).
pub fn quant_cases() -> Vec<(QuantOp, &'static str, &'static str, QuantScheme)> {
    let i8t = QuantScheme::symmetric(QType::I8);
    let u8c = QuantScheme::asymmetric(QType::U8).per_channel(0);
    let i4g = QuantScheme::symmetric(QType::I4).per_group(1, 32);
    let mut v = Vec::new();
    for op in [QuantOp::Quantize, QuantOp::Dequantize] {
        v.push((op, "i8", "per-tensor", i8t));
        v.push((op, "u8", "per-channel", u8c));
        v.push((op, "i4", "per-group 32", i4g));
    }
    v.push((
        QuantOp::Dynamic,
        "i8",
        "per-row",
        DynamicQuant::per_row_i8().scheme,
    ));
    v
}

impl QuantOp {
    /// The record's `op`.
    pub fn name(self) -> &'static str {
        match self {
            QuantOp::Quantize => "quantize",
            QuantOp::Dequantize => "dequantize",
            QuantOp::Dynamic => "dynamic_quantize",
        }
    }

    /// Uploads, runs and checks the op on a random `[rows, cols]` f32 tensor; every
    /// output must match the reference bit for bit. Waits for the GPU; in a browser use
    /// [`QuantOp::prepare_async`].
    pub fn prepare<'a>(
        self,
        ctx: &'a Context,
        scheme: &QuantScheme,
        rows: usize,
        cols: usize,
    ) -> Result<Prepared<'a>> {
        ctx.block(
            "QuantOp::prepare",
            self.prepare_async(ctx, scheme, rows, cols),
        )
    }

    /// [`QuantOp::prepare`] for a browser: the check's run is awaited.
    pub async fn prepare_async<'a>(
        self,
        ctx: &'a Context,
        scheme: &QuantScheme,
        rows: usize,
        cols: usize,
    ) -> Result<Prepared<'a>> {
        let shape = [rows, cols];
        let n = rows * cols;
        let host = random_f32(n, 3);
        let x = Tensor::from_slice(ctx, &shape, &host)?;
        let mut enc = ctx.encoder("bench check");
        let (rec, verified, code_bytes, reads): (Record<'a>, bool, u64, f64) = match self {
            QuantOp::Quantize => {
                let params = QuantParams::from_data(scheme, &shape, &host)?;
                let q = QTensor::new(ctx, &params)?;
                let rec: Record<'a> = {
                    let q = q.clone();
                    Box::new(move |enc| quantize(ctx, enc, &x, &q))
                };
                rec(&mut enc)?;
                ctx.submit(enc).await?;
                let ok = q.read_codes(ctx).await? == params.quantize(&host)?;
                (rec, ok, q.size_bytes(), 1.0)
            }
            QuantOp::Dequantize => {
                let params = QuantParams::from_data(scheme, &shape, &host)?;
                let codes = params.quantize(&host)?;
                let q = QTensor::from_codes(ctx, &params, &codes)?;
                let out = Tensor::from_slice(ctx, &shape, &vec![f32::NAN; n])?;
                let rec: Record<'a> = {
                    let out = out.clone();
                    let q = q.clone();
                    Box::new(move |enc| dequantize(ctx, enc, &q, &out))
                };
                rec(&mut enc)?;
                ctx.submit(enc).await?;
                let got = out.read::<f32>(ctx).await?;
                let want = params.dequantize(&codes)?;
                let ok = got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                (rec, ok, q.size_bytes(), 1.0)
            }
            QuantOp::Dynamic => {
                let spec = DynamicQuant { scheme: *scheme };
                let q = QTensor::for_dynamic(ctx, &spec, &shape)?;
                let rec: Record<'a> = {
                    let q = q.clone();
                    Box::new(move |enc| dynamic_quantize(ctx, enc, &x, &spec, &q))
                };
                rec(&mut enc)?;
                ctx.submit(enc).await?;
                let (want, want_p) =
                    crate::quant::dynamic_quantize_reference(scheme, &shape, &host)?;
                let got_p = q.read_params(ctx).await?;
                let ok = q.read_codes(ctx).await? == want
                    && got_p.zero_points == want_p.zero_points
                    && got_p
                        .scales
                        .iter()
                        .zip(&want_p.scales)
                        .all(|(g, w)| g.to_bits() == w.to_bits());
                (rec, ok, q.size_bytes(), 2.0)
            }
        };
        Ok(Prepared {
            kernel: "-".into(),
            rel_error: if verified { 0.0 } else { f64::INFINITY },
            budget: 0.0,
            checked: n,
            verified,
            ops: n as f64,
            bytes: reads * 4.0 * n as f64 + code_bytes as f64,
            bound: Bound::Bandwidth,
            record: rec,
        })
    }
}
