//! Measuring GPU work: timing recorded work (timestamp queries where the device has them
//! inside encoders, else submit + wait on the wall clock) and the adapter's FP32 FMA peak.
//! The benchmark runner and the criterion benches share these, so every figure comes
//! from the same clock.

use std::time::Instant;

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::Result;
use crate::shaders::{Def, ShaderFile, ShaderVariant};

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
        let mut v = self.ms.clone();
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

/// Runs `record` `warmup` times untimed, then `runs` times timed; each run is its own
/// submission and is waited for.
pub fn time_gpu(
    ctx: &Context,
    warmup: usize,
    runs: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<Timings> {
    for _ in 0..warmup {
        let mut enc = ctx.encoder("warmup");
        record(&mut enc)?;
        ctx.submit_and_wait(enc)?;
    }
    let use_ts = ctx.device().features().contains(
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
    );
    let mut ms = Vec::with_capacity(runs);
    if use_ts {
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
            ctx.submit_and_wait(enc)?;
            let bytes = pollster::block_on(ctx.read_buffer(&resolve, 16, "timestamps"))?;
            let t: [u64; 2] = bytemuck::pod_read_unaligned(&bytes[..16]);
            ms.push(t[1].wrapping_sub(t[0]) as f64 * period / 1e6);
        }
        Ok(Timings {
            ms,
            clock: Clock::Timestamps,
        })
    } else {
        for _ in 0..runs {
            let mut enc = ctx.encoder("timed");
            record(&mut enc)?;
            let t0 = Instant::now();
            ctx.submit_and_wait(enc)?;
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(Timings {
            ms,
            clock: Clock::Wall,
        })
    }
}

const PEAK_WG: u32 = 64;
const PEAK_CHAINS: u32 = 8;
const PEAK_ITERS: u32 = 2048;

fn peak_variant() -> ShaderVariant {
    ShaderVariant::new(
        ShaderFile::PeakFma,
        vec![
            ("WG", Def::U32(PEAK_WG)),
            ("CHAINS", Def::U32(PEAK_CHAINS)),
            ("ITERS", Def::U32(PEAK_ITERS)),
        ],
    )
}

pub(crate) fn peak_variants() -> Vec<ShaderVariant> {
    vec![peak_variant()]
}

/// Result of the FMA peak probe.
#[derive(Debug, Clone)]
pub struct Peak {
    /// Median FP32 throughput, GFLOP/s (an FMA counts as 2).
    pub gflops: f64,
    /// The timings it came from.
    pub timings: Timings,
}

/// Measures the adapter's FP32 FMA throughput with `workgroups` workgroups of 64
/// invocations running independent FMA chains (pick enough workgroups to fill the
/// device: 256 for a CPU, 16384 for a large GPU).
pub fn fma_peak(ctx: &Context, workgroups: u32, runs: usize) -> Result<Peak> {
    let kernel = ctx.kernel(&peak_variant())?;
    let device = ctx.device();
    let params: [f32; 4] = [1e-6, 0.999_999, 0.0, 0.0];
    let ubuf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("peak params"),
        contents: bytemuck::cast_slice(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let grid = crate::ops::fold_grid(
        "peak fma",
        u64::from(workgroups),
        ctx.capabilities()
            .limits
            .max_compute_workgroups_per_dimension,
    )?;
    let invocations =
        u64::from(grid[0]) * u64::from(grid[1]) * u64::from(grid[2]) * u64::from(PEAK_WG);
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("peak out"),
        size: invocations * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("peak"),
        layout: &kernel.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: ubuf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: out.as_entire_binding(),
            },
        ],
    });
    let timings = time_gpu(ctx, 1, runs, |enc| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        // The shader's id uses x and y only; fold into x-y.
        pass.dispatch_workgroups(grid[0], grid[1] * grid[2], 1);
        Ok(())
    })?;
    let flops = invocations as f64 * f64::from(PEAK_ITERS) * f64::from(PEAK_CHAINS) * 8.0;
    Ok(Peak {
        gflops: flops / (timings.median() * 1e6),
        timings,
    })
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
pub fn gemm_case(
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
    ctx.submit_and_wait(enc)?;
    let out = c.read_blocking::<f32>(ctx)?;
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
        Some(time_gpu(ctx, warmup, runs, |enc| {
            gemm::gemm(ctx, enc, &desc, &a, &b, None, &c)
        })?)
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

/// The problem size of a [`Record`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Shape {
    /// A GEMM or GEMV: `m x k` times `k x n`.
    Gemm {
        /// Rows of the output.
        m: usize,
        /// Columns of the output.
        n: usize,
        /// The reduction.
        k: usize,
    },
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
    /// Suite (`gemm`: square sizes; `gemv`: the `--gemv` shapes).
    pub suite: String,
    /// Operation (`gemm`).
    pub op: String,
    /// Arithmetic (`fp32`).
    pub dtype: String,
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
    /// Throughput at the median, 10^9 operations (multiply and add counted apart) per
    /// second.
    pub gops: Option<f64>,
    /// Operand traffic at the median (every input read once, the output written once),
    /// GB/s.
    pub gbps: Option<f64>,
    /// FP32 median time over this case's, same shape and adapter (1 for FP32 itself).
    pub speedup_vs_fp32: Option<f64>,
    /// `gops` as a share of the adapter's measured FP32 FMA peak, % (none without the
    /// peak probe).
    pub pct_of_peak: Option<f64>,
    /// The result matched the reference within the dtype's budget.
    pub verified: bool,
    /// Relative error of the checked entries, `||got - ref|| / ||ref||` (the measure the
    /// budget bounds).
    pub max_rel_error: f64,
    /// Output entries compared with the reference.
    pub checked: usize,
    /// `Timestamps` (GPU timestamp queries) or `Wall` (submit and wait).
    pub clock: String,
    /// Timed runs.
    pub runs: usize,
}

impl Record {
    /// The record of an FP32 GEMM case on `ctx`'s adapter; `peak_gflops` is the measured
    /// FMA peak, if probed.
    pub fn fp32_gemm(
        ctx: &Context,
        suite: &str,
        r: &GemmResult,
        kernel: String,
        peak_gflops: Option<f64>,
    ) -> Record {
        let a = &ctx.capabilities().adapter;
        let d = &r.desc;
        let bytes = 4.0 * (d.m * d.k + d.k * d.n + d.m * d.n) as f64 * d.batch as f64;
        let t = r.timings.as_ref();
        let median = t.map(|t| t.median());
        let gops = r.gflops();
        Record {
            adapter: a.name.clone(),
            backend: format!("{:?}", a.backend),
            driver: format!("{} {}", a.driver, a.driver_info).trim().to_string(),
            suite: suite.into(),
            op: "gemm".into(),
            dtype: "fp32".into(),
            shape: Shape::Gemm {
                m: d.m,
                n: d.n,
                k: d.k,
            },
            kernel,
            median_ms: median,
            min_ms: t.map(|t| t.range().0),
            max_ms: t.map(|t| t.range().1),
            gops,
            gbps: median.map(|ms| bytes / (ms * 1e6)),
            speedup_vs_fp32: median.map(|_| 1.0),
            pct_of_peak: gops.zip(peak_gflops).map(|(g, p)| 100.0 * g / p),
            verified: r.verified,
            max_rel_error: r.rel_error,
            checked: r.checked,
            clock: t.map_or_else(|| "-".into(), |t| format!("{:?}", t.clock)),
            runs: t.map_or(0, |t| t.ms.len()),
        }
    }
}
