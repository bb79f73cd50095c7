//! Measuring GPU work, the pieces of `wgpu-quant bench`: timing recorded work
//! ([`time_gpu`]: timestamp queries where the device has them inside encoders, else
//! submit + wait on the wall clock), the verified cases ([`LinearData`], [`ConvData`],
//! [`QuantOp`]), the adapter's peaks ([`probe`]), the JSON [`Record`] and the SVG chart
//! ([`chart_svg`]). The runner and the criterion benches share them, so every figure
//! comes from the same cases and the same clock.
//!
//! A case is checked before it may be timed:
//!
//! ```
//! use wgpu_quant::bench::{CaseOptions, LinearData, Precision};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = wgpu_quant::Context::request_blocking(&Default::default())?;
//! // A 3-row linear layer with 65 outputs over 70 inputs, random operands.
//! let data = LinearData::new(3, 65, 70);
//! let fp32 = data.prepare(&ctx, Precision::Fp32, &CaseOptions::default())?;
//! let w8a8 = data.prepare(&ctx, Precision::W8A8, &CaseOptions::default())?;
//! // FP32 within 1e-5 of the f64 reference; W8A8 bit for bit (budget 0).
//! assert!(fp32.verified && fp32.rel_error <= 1e-5);
//! assert!(w8a8.verified && w8a8.budget == 0.0);
//! let t32 = fp32.time(&ctx, 1, 3)?.expect("a verified case is timed");
//! let t8 = w8a8.time(&ctx, 1, 3)?.expect("a verified case is timed");
//! println!("W8A8 runs {:.2}x FP32", t32.median() / t8.median());
//! # Ok(()) }
//! ```

use web_time::Instant;

use crate::context::Context;
use crate::error::Result;

mod cases;
mod chart;
mod peak;
mod train;

pub use cases::*;
pub use chart::{chart_svg, speedup_table};
pub use peak::*;
pub use train::{train_cases, TrainCase, TrainOp};

/// How a time was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamps written before and after the work in the same encoder.
    Timestamps,
    /// Wall clock around submit + wait (includes submission overhead).
    Wall,
}

/// Milliseconds of repeated runs and the clock that produced them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// One entry per timed run, milliseconds.
    pub ms: Vec<f64>,
    /// The clock.
    pub clock: Clock,
}

impl Timings {
    /// Median, milliseconds.
    pub fn median(&self) -> f64 {
        Timings::median_of(self.ms.clone())
    }

    /// Median of `v` (NaN when empty), milliseconds.
    pub fn median_of(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    }

    /// Smallest and largest run, milliseconds.
    pub fn range(&self) -> (f64, f64) {
        let min = self.ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

/// Runs `record` `warmup` times untimed, then `runs` times timed by the wall clock
/// around each submission until the GPU finished it (`Context::submit`); nothing
/// blocks, so a browser page can use it. Includes the submission overhead, like
/// [`Clock::Wall`] in [`time_gpu`].
pub async fn time_wall(
    ctx: &Context,
    warmup: usize,
    runs: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<Timings> {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let mut enc = ctx.encoder("timed");
        record(&mut enc)?;
        let t0 = Instant::now();
        ctx.submit(enc).await?;
        if i >= warmup {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(Timings {
        ms,
        clock: Clock::Wall,
    })
}

/// Runs `record` `warmup` times untimed, then `runs` times timed; each run is its own
/// submission and is waited for. GPU timestamps where the device has them inside
/// encoders, else the wall clock. Natively only; [`time_gpu_async`] is the async form.
pub fn time_gpu(
    ctx: &Context,
    warmup: usize,
    runs: usize,
    record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<Timings> {
    ctx.block("time_gpu", time_gpu_async(ctx, warmup, runs, record))
}

/// [`time_gpu`] without blocking (the form a browser build uses; browsers offer no
/// timestamps inside encoders, so it times with the wall clock there).
pub async fn time_gpu_async(
    ctx: &Context,
    warmup: usize,
    runs: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<Timings> {
    for _ in 0..warmup {
        let mut enc = ctx.encoder("warmup");
        record(&mut enc)?;
        ctx.submit(enc).await?;
    }
    let use_ts = ctx.device().features().contains(
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
    );
    if use_ts {
        let mut ms = Vec::with_capacity(runs);
        let device = ctx.device();
        let qs = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let period = f64::from(ctx.queue().get_timestamp_period());
        for _ in 0..runs {
            let mut enc = ctx.encoder("timed");
            enc.write_timestamp(&qs, 0);
            record(&mut enc)?;
            enc.write_timestamp(&qs, 1);
            enc.resolve_query_set(&qs, 0..2, &resolve, 0);
            ctx.submit(enc).await?;
            let bytes = ctx.read_buffer(&resolve, 16, "timestamps").await?;
            let t: [u64; 2] = bytemuck::pod_read_unaligned(&bytes[..16]);
            ms.push(t[1].wrapping_sub(t[0]) as f64 * period / 1e6);
        }
        Ok(Timings {
            ms,
            clock: Clock::Timestamps,
        })
    } else {
        time_wall(ctx, 0, runs, record).await
    }
}

/// Deterministic uniform values in `[-1, 1)`.
pub fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Outcome of one verified GEMM benchmark case.
#[derive(Debug, Clone)]
pub struct GemmResult {
    /// The problem.
    pub desc: crate::ops::gemm::GemmDesc,
    /// The kernel that ran.
    pub kernel: crate::ops::gemm::GemmKernel,
    /// Relative error `||C - ref|| / ||ref||` over the checked entries.
    pub rel_error: f64,
    /// Entries compared with the f64 reference.
    pub checked: usize,
    /// Whether `rel_error` is within [`F32_GEMM_BUDGET`].
    pub verified: bool,
    /// Timings (empty when the result was wrong: a wrong kernel is never timed).
    pub timings: Option<Timings>,
}

impl GemmResult {
    /// Median throughput, GFLOP/s.
    pub fn gflops(&self) -> Option<f64> {
        self.timings
            .as_ref()
            .map(|t| self.desc.flops() / (t.median() * 1e6))
    }
}

/// Error budget of FP32 GEMM: `||C - ref|| / ||ref||` below this.
pub const F32_GEMM_BUDGET: f64 = 1e-5;

/// Runs one GEMM on random inputs, checks up to `samples` output entries (spread over the
/// whole matrix) against the f64 reference, and times it only if they are right.
/// Natively only; [`gemm_case_async`] is the async form.
pub fn gemm_case(
    ctx: &Context,
    desc: &crate::ops::gemm::GemmDesc,
    samples: usize,
    warmup: usize,
    runs: usize,
) -> Result<GemmResult> {
    ctx.block(
        "gemm_case",
        gemm_case_async(ctx, desc, samples, warmup, runs),
    )
}

/// [`gemm_case`] without blocking (the form a browser build uses).
pub async fn gemm_case_async(
    ctx: &Context,
    desc: &crate::ops::gemm::GemmDesc,
    samples: usize,
    warmup: usize,
    runs: usize,
) -> Result<GemmResult> {
    use crate::ops::gemm;
    use crate::tensor::Tensor;
    let (ar, ac) = desc.stored_a();
    let (br, bc) = desc.stored_b();
    let a_host = random_f32(desc.batch * ar * ac, 1);
    let b_host = random_f32(desc.batch * br * bc, 2);
    let a = Tensor::from_slice(ctx, &[desc.batch, ar, ac], &a_host)?;
    let b = Tensor::from_slice(ctx, &[desc.batch, br, bc], &b_host)?;
    let c = Tensor::from_slice(
        ctx,
        &[desc.batch, desc.m, desc.n],
        &vec![f32::NAN; desc.batch * desc.m * desc.n],
    )?;
    let kernel = desc
        .kernel
        .unwrap_or_else(|| crate::plan::gemm_kernel(ctx, desc));
    let desc = desc.clone().kernel(kernel);
    let strides = desc.resolve_strides(a.shape(), b.shape(), c.shape())?;
    let mut enc = ctx.encoder("bench verify");
    gemm::gemm(ctx, &mut enc, &desc, &a, &b, None, &c)?;
    ctx.submit(enc).await?;
    let out = c.read::<f32>(ctx).await?;
    let total = out.len();
    let step = (total / samples.max(1)).max(1);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    // An odd stride walks every row and column class, not one lane of each tile.
    let mut idx = 0usize;
    while got.len() < samples.min(total) {
        let bt = idx / (desc.m * desc.n);
        let rem = idx % (desc.m * desc.n);
        let (i, j) = (rem / desc.n, rem % desc.n);
        got.push(out[idx]);
        want.push(
            crate::reference::gemm_at(&desc, strides, &a_host, &b_host, None, bt, i, j) as f32,
        );
        idx = (idx + step + 1) % total;
    }
    let rel_error = crate::reference::rel_error(&got, &want);
    let verified = rel_error <= F32_GEMM_BUDGET;
    let timings = if verified {
        Some(
            time_gpu_async(ctx, warmup, runs, |enc| {
                gemm::gemm(ctx, enc, &desc, &a, &b, None, &c)
            })
            .await?,
        )
    } else {
        None
    };
    Ok(GemmResult {
        desc,
        kernel,
        rel_error,
        checked: got.len(),
        verified,
        timings,
    })
}

/// The problem size of a [`Record`] (serialized as a plain object; the variants have
/// distinct fields).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Shape {
    /// A GEMM, GEMV or linear layer: `m x k` times `k x n`.
    Gemm {
        /// Rows of the output.
        m: usize,
        /// Columns of the output.
        n: usize,
        /// The reduction.
        k: usize,
    },
    /// A 2-D convolution, NHWC input `[n, h, w, c]`, `oc` output channels, a `kh x kw`
    /// kernel.
    Conv {
        /// Batch.
        n: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// Input channels.
        c: usize,
        /// Output channels.
        oc: usize,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride (both axes).
        stride: usize,
        /// Padding (every side).
        pad: usize,
        /// Groups (`c` for depthwise).
        groups: usize,
    },
    /// An elementwise kernel over a `[rows, cols]` tensor (the `quant` suite).
    Tensor {
        /// Rows (the per-channel axis).
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// A peak probe: `threads` invocations doing `per_thread` operations (or moving
    /// `per_thread` bytes) each.
    Probe {
        /// Invocations.
        threads: u64,
        /// Operations or bytes per invocation.
        per_thread: u64,
    },
}

impl Shape {
    /// The shape of a convolution layer.
    pub fn conv(l: &ConvLayer) -> Shape {
        Shape::Conv {
            n: 1,
            h: l.hw,
            w: l.hw,
            c: l.c,
            oc: l.oc,
            kh: l.k,
            kw: l.k,
            stride: l.stride,
            pad: l.pad,
            groups: l.groups,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Gemm { m, n, k } => write!(f, "{m}x{n}x{k}"),
            Shape::Conv {
                n,
                h,
                w,
                c,
                oc,
                kh,
                kw,
                stride,
                pad,
                groups,
            } => {
                write!(f, "{n}x{h}x{w}x{c} k{kh}x{kw} s{stride} p{pad} -> {oc}")?;
                if groups > 1 {
                    write!(f, " g{groups}")?;
                }
                Ok(())
            }
            Shape::Tensor { rows, cols } => write!(f, "{rows}x{cols}"),
            Shape::Probe {
                threads,
                per_thread,
            } => write!(f, "{threads} x {per_thread}"),
        }
    }
}

/// One case of `wgpu-quant bench --json`: what ran where, how fast, and whether it was
/// right. A case that failed verification has `verified: false` and no timings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Adapter name.
    pub adapter: String,
    /// Backend (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
    /// Driver name and version.
    pub driver: String,
    /// Suite: `gemm` (square sizes and `--shapes`), `models` (layers of real networks),
    /// `quant` (quantization kernels) or `peak` (the adapter's probes).
    pub suite: String,
    /// Operation: `linear`, `conv`, `quantize`, `dequantize`, `dynamic_quantize`, `fma`,
    /// `dot4` or `copy`.
    pub op: String,
    /// Arithmetic: `fp32`, `fp16`, `w8a8`, `w8a8+q`, `w8a16`, `w4a16` for linears and
    /// convolutions; the code type (`i8`, `u8`, `i4`) for the quantization kernels;
    /// `fp32`, `fp16`, `int8`, `u32` for the probes.
    pub dtype: String,
    /// The case's name: the layer (`bert.ffn_up`, `r50.conv3x3_64`), the shape, or the
    /// quantization granularity.
    pub case: String,
    /// Problem size.
    pub shape: Shape,
    /// The kernel configuration that ran, as the plan names it.
    pub kernel: String,
    /// Median time of the timed runs, ms.
    pub median_ms: Option<f64>,
    /// Fastest timed run, ms.
    pub min_ms: Option<f64>,
    /// Slowest timed run, ms.
    pub max_ms: Option<f64>,
    /// Throughput at the median, 10^9 operations per second: multiply and add counted
    /// apart; elements for the quantization kernels; bytes for the copy probe.
    pub gops: Option<f64>,
    /// Operand traffic at the median (every input read once, the output written once),
    /// GB/s.
    pub gbps: Option<f64>,
    /// The FP32 case's median time over this case's, same shape and adapter, same run
    /// (1 for FP32 itself; none where there is no FP32 twin).
    pub speedup_vs_fp32: Option<f64>,
    /// Throughput as a share of the adapter's measured peak for this arithmetic (FP32
    /// FMA, f16 FMA or packed INT8 dot; copy bandwidth for memory-bound kernels), %.
    pub pct_of_peak: Option<f64>,
    /// The result matched the reference within the dtype's budget.
    pub verified: bool,
    /// Relative error of the checked entries, `||got - ref|| / ||ref||` (the measure the
    /// budget bounds; 0 for the bit-exact integer paths when they pass).
    pub max_rel_error: f64,
    /// The budget `max_rel_error` had to meet; 0 means bit for bit.
    pub budget: f64,
    /// Output entries compared with the reference.
    pub checked: usize,
    /// `Timestamps` (GPU timestamp queries) or `Wall` (submit and wait).
    pub clock: String,
    /// Timed runs.
    pub runs: usize,
}

/// What a [`Record`] is about, apart from its measurements.
#[derive(Debug, Clone)]
pub struct CaseId {
    /// Suite.
    pub suite: String,
    /// Operation.
    pub op: String,
    /// Arithmetic.
    pub dtype: String,
    /// Case name.
    pub case: String,
    /// Problem size.
    pub shape: Shape,
}

impl Record {
    fn base(ctx: &Context, id: CaseId, t: Option<&Timings>) -> Record {
        let a = &ctx.capabilities().adapter;
        Record {
            adapter: a.name.clone(),
            backend: format!("{:?}", a.backend),
            driver: format!("{} {}", a.driver, a.driver_info).trim().to_string(),
            suite: id.suite,
            op: id.op,
            dtype: id.dtype,
            case: id.case,
            shape: id.shape,
            kernel: String::new(),
            median_ms: t.map(Timings::median),
            min_ms: t.map(|t| t.range().0),
            max_ms: t.map(|t| t.range().1),
            gops: None,
            gbps: None,
            speedup_vs_fp32: None,
            pct_of_peak: None,
            verified: false,
            max_rel_error: 0.0,
            budget: 0.0,
            checked: 0,
            clock: t.map_or_else(|| "-".into(), |t| format!("{:?}", t.clock)),
            runs: t.map_or(0, |t| t.ms.len()),
        }
    }

    /// The record of a prepared case on `ctx`'s adapter, timed (`Some`) or not (a case
    /// that failed its check). `speedup_vs_fp32` is left to [`fill_speedups`].
    pub fn from_case(
        ctx: &Context,
        id: CaseId,
        p: &Prepared<'_>,
        t: Option<&Timings>,
        peaks: &Peaks,
    ) -> Record {
        let mut r = Record::base(ctx, id, t);
        r.kernel = p.kernel.clone();
        r.gops = r.median_ms.map(|ms| p.ops / (ms * 1e6));
        r.gbps = r.median_ms.map(|ms| p.bytes / (ms * 1e6));
        r.pct_of_peak = if p.bound == Bound::Bandwidth {
            r.gbps.and_then(|g| p.bound.percent(peaks, g))
        } else {
            r.gops.and_then(|g| p.bound.percent(peaks, g))
        };
        r.verified = p.verified;
        r.max_rel_error = p.rel_error;
        r.budget = p.budget;
        r.checked = p.checked;
        r
    }

    /// The record of a peak probe.
    pub fn from_probe(ctx: &Context, p: &ProbeResult) -> Record {
        let id = CaseId {
            suite: "peak".into(),
            op: p.probe.op().into(),
            dtype: p.probe.dtype().into(),
            case: format!("{} {}", p.probe.dtype(), p.probe.op()),
            shape: Shape::Probe {
                threads: p.threads,
                per_thread: p.per_thread,
            },
        };
        let mut r = Record::base(ctx, id, p.timings.as_ref());
        r.kernel = match p.probe {
            Probe::Bandwidth => "vec4<u32> copy".into(),
            _ => "8 vec4 chains x 2048 steps".into(),
        };
        let rate = p.rate();
        if p.probe == Probe::Bandwidth {
            r.gbps = rate;
        } else {
            r.gops = rate;
        }
        r.pct_of_peak = rate.map(|_| 100.0);
        r.verified = p.verified;
        r.max_rel_error = p.rel_error;
        r.budget = p.probe.budget();
        r.checked = p.checked;
        r
    }
}

/// Sets `speedup_vs_fp32` of every timed linear and convolution record: the median of
/// the FP32 record with the same adapter (name and backend: one device may be listed by
/// two backends), suite, case and shape over the record's own.
pub fn fill_speedups(records: &mut [Record]) {
    let twin = |a: &Record, b: &Record| {
        a.adapter == b.adapter
            && a.backend == b.backend
            && a.suite == b.suite
            && a.op == b.op
            && a.case == b.case
            && a.shape == b.shape
    };
    let fp32: Vec<Record> = records
        .iter()
        .filter(|r| r.dtype == "fp32" && (r.op == "linear" || r.op == "conv"))
        .cloned()
        .collect();
    for r in records
        .iter_mut()
        .filter(|r| r.op == "linear" || r.op == "conv")
    {
        r.speedup_vs_fp32 = r.median_ms.and_then(|ms| {
            fp32.iter()
                .find(|f| twin(f, r))
                .and_then(|f| f.median_ms)
                .map(|f| f / ms)
        });
    }
}
