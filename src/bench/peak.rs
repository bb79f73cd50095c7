//! The adapter's measured peaks: FP32 and f16 FMA rate, packed INT8 dot rate and memory
//! bandwidth. Each probe is a kernel whose limit is one resource (independent ALU chains,
//! or a plain copy), and each is checked like any other case before its rate counts: a
//! sample of the chains is recomputed on the CPU (exactly for the integer probe, within
//! a stated budget for the float ones) and a sample of the copy is compared bit for bit.
//! The rates are what "% of peak" in the benchmark tables is relative to.

use half::f16;
use wgpu::util::DeviceExt;

use super::{time_gpu_async, Timings};
use crate::context::Context;
use crate::error::Result;
use crate::shaders::{Def, ShaderFile, ShaderVariant};

const PEAK_WG: u32 = 64;
const PEAK_CHAINS: u32 = 8;
const PEAK_ITERS: u32 = 2048;
/// The packed byte multiplier of the dot probe (bytes 3, -2, 5, -7).
const DOT_MULT: u32 = 0xf9_05_fe_03;
const DOT_SEED: u32 = 0x1234_5678;

/// What a probe measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// FP32 FMA rate (`shaders/peak_fma.wgsl` with f32), GFLOP/s (an FMA is 2).
    Fp32Fma,
    /// f16 FMA rate (`shaders/peak_fma.wgsl` with f16; needs `SHADER_F16`), GFLOP/s.
    Fp16Fma,
    /// Packed INT8 dot rate (`shaders/peak_dot.wgsl`, `dot4I8Packed`; needs the packed
    /// dot), GOP/s (a 4-byte dot with its accumulation is 8).
    Int8Dot,
    /// Copy bandwidth (`shaders/peak_copy.wgsl`), GB/s of bytes read plus written.
    Bandwidth,
}

impl Probe {
    /// Every probe, in table order.
    pub const ALL: [Probe; 4] = [
        Probe::Fp32Fma,
        Probe::Fp16Fma,
        Probe::Int8Dot,
        Probe::Bandwidth,
    ];

    /// The record's `op`.
    pub fn op(self) -> &'static str {
        match self {
            Probe::Fp32Fma | Probe::Fp16Fma => "fma",
            Probe::Int8Dot => "dot4",
            Probe::Bandwidth => "copy",
        }
    }

    /// The record's `dtype`.
    pub fn dtype(self) -> &'static str {
        match self {
            Probe::Fp32Fma => "fp32",
            Probe::Fp16Fma => "fp16",
            Probe::Int8Dot => "int8",
            Probe::Bandwidth => "u32",
        }
    }

    /// The check's budget: 0 (exact) for the integer and copy probes; for the float
    /// chains, the relative error their rounding can reach (2.4e-4 for f32, 2e-2 for f16).
    pub fn budget(self) -> f64 {
        match self {
            Probe::Fp32Fma => fma_params(false).2,
            Probe::Fp16Fma => fma_params(true).2,
            _ => 0.0,
        }
    }

    /// Why the adapter cannot run this probe, if it cannot.
    pub fn unsupported(self, ctx: &Context) -> Option<&'static str> {
        let c = ctx.capabilities();
        match self {
            Probe::Fp16Fma if !c.shader_f16 => Some("no SHADER_F16"),
            Probe::Int8Dot if !c.packed_int8_dot => Some("no packed int8 dot"),
            _ => None,
        }
    }

    /// The default size: workgroups of 64 invocations for the ALU probes (enough to fill
    /// the device: 256 on a CPU, 16384 on a GPU; a quarter in quick runs), bytes copied
    /// for the bandwidth probe (64 MiB on a CPU, 256 MiB on a GPU, capped by the binding
    /// limit; 16 MiB in quick runs).
    pub fn default_size(self, ctx: &Context, quick: bool) -> u64 {
        let cpu = ctx.capabilities().is_cpu();
        match self {
            Probe::Bandwidth => {
                let want: u64 = match (quick, cpu) {
                    (true, _) => 16 << 20,
                    (false, true) => 64 << 20,
                    (false, false) => 256 << 20,
                };
                let l = &ctx.capabilities().limits;
                want.min(l.max_storage_buffer_binding_size)
                    .min(l.max_buffer_size)
                    / 16
                    * 16
            }
            _ => match (quick, cpu) {
                (true, true) => 64,
                (false, true) => 256,
                (true, false) => 4096,
                (false, false) => 16384,
            },
        }
    }
}

/// A measured, checked peak.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The probe.
    pub probe: Probe,
    /// Invocations that ran.
    pub threads: u64,
    /// Operations (or bytes moved, for the bandwidth probe) per invocation.
    pub per_thread: u64,
    /// Relative error of the checked outputs against the CPU model (0 for the exact
    /// probes).
    pub rel_error: f64,
    /// Outputs checked.
    pub checked: usize,
    /// The check passed: exact for the integer and copy probes; the float chains within
    /// [`Probe::budget`] of an f64 model.
    pub verified: bool,
    /// Timings; none when the check failed.
    pub timings: Option<Timings>,
}

impl ProbeResult {
    /// Operations (or bytes) per second at the median, in 10^9.
    pub fn rate(&self) -> Option<f64> {
        self.timings
            .as_ref()
            .map(|t| (self.threads * self.per_thread) as f64 / (t.median() * 1e6))
    }
}

/// The measured peaks of one adapter, for "% of peak".
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Peaks {
    /// FP32 FMA, GFLOP/s.
    pub fp32: Option<f64>,
    /// f16 FMA, GFLOP/s.
    pub fp16: Option<f64>,
    /// Packed INT8 dot, GOP/s.
    pub int8: Option<f64>,
    /// Copy bandwidth, GB/s.
    pub bandwidth: Option<f64>,
}

impl Peaks {
    /// Records a probe's rate (nothing for an unverified probe).
    pub fn set(&mut self, r: &ProbeResult) {
        let v = r.rate();
        match r.probe {
            Probe::Fp32Fma => self.fp32 = v,
            Probe::Fp16Fma => self.fp16 = v,
            Probe::Int8Dot => self.int8 = v,
            Probe::Bandwidth => self.bandwidth = v,
        }
    }
}

fn alu_variant(probe: Probe) -> ShaderVariant {
    let mut defs = vec![
        ("WG", Def::U32(PEAK_WG)),
        ("CHAINS", Def::U32(PEAK_CHAINS)),
        ("ITERS", Def::U32(PEAK_ITERS)),
    ];
    match probe {
        Probe::Int8Dot => ShaderVariant::new(ShaderFile::PeakDot, defs),
        Probe::Fp16Fma => {
            defs.push(("S", Def::Code("alias S = f16;")));
            let mut v = ShaderVariant::new(ShaderFile::PeakFma, defs);
            v.f16 = true;
            v
        }
        _ => {
            defs.push(("S", Def::Code("alias S = f32;")));
            ShaderVariant::new(ShaderFile::PeakFma, defs)
        }
    }
}

fn copy_variant() -> ShaderVariant {
    ShaderVariant::new(ShaderFile::PeakCopy, vec![("WG", Def::U32(PEAK_WG))])
}

/// Every variant of the peak probes (validated by the naga test with the ops' variants).
pub fn peak_variants() -> Vec<ShaderVariant> {
    vec![
        alu_variant(Probe::Fp32Fma),
        alu_variant(Probe::Fp16Fma),
        alu_variant(Probe::Int8Dot),
        copy_variant(),
    ]
}

/// `(scale, seed)` of the float chains `x = x * scale + seed` (fixed point near 1), and
/// the check's budget. A step may round once or twice (WGSL's `fma` need not be fused),
/// an error of at most 1 ulp of a value below 2, which the contraction `scale` damps: the
/// chain stays within `2 ulp(1) / (1 - scale)` of the exact one. f32 uses a slow chain
/// (still moving after 2048 steps); f16 a fast one, since its ulp is 8192x coarser.
fn fma_params(half: bool) -> (f32, f32, f64) {
    if half {
        (0.9, 0.1, 2.0 * 9.77e-4 / 0.1)
    } else {
        (0.999, 1e-3, 2.0 * 1.2e-7 / 1e-3)
    }
}

/// Output of one invocation of the float probe: the chain in f64 from the operands the
/// shader starts with (rounded to f16 for the f16 probe).
fn fma_model(id: u64, half: bool) -> f64 {
    let round = |v: f32| -> f64 {
        if half {
            f64::from(f16::from_f32(v).to_f32())
        } else {
            f64::from(v)
        }
    };
    let (scale, seed, _) = fma_params(half);
    let (m, s) = (round(scale), round(seed));
    let mut t = 0f64;
    for c in 0..PEAK_CHAINS {
        let x0 = id as f32 * 1e-7 + c as f32 * 1e-3;
        for init in [round(x0), 0.5, 0.25, 0.125] {
            let mut x = init;
            for _ in 0..PEAK_ITERS {
                x = x * m + s;
            }
            t += x;
        }
    }
    t
}

/// `dot4I8Packed(a, b)`: the signed bytes' products, summed.
fn dot4_i8(a: u32, b: u32) -> i32 {
    (0..4)
        .map(|i| i32::from((a >> (8 * i)) as u8 as i8) * i32::from((b >> (8 * i)) as u8 as i8))
        .sum()
}

/// Output of one invocation of the dot probe, exactly.
fn dot_model(id: u32) -> u32 {
    let mut t = 0u32;
    for c in 0..PEAK_CHAINS {
        let b = id.wrapping_mul(PEAK_CHAINS).wrapping_add(c).wrapping_mul(4);
        for lane in 0..4 {
            let mut x = b
                .wrapping_add(lane)
                .wrapping_mul(0x9e37_79b9)
                .wrapping_add(DOT_SEED);
            for _ in 0..PEAK_ITERS {
                x = x.wrapping_add(dot4_i8(x, DOT_MULT) as u32);
            }
            t = t.wrapping_add(x);
        }
    }
    t
}

fn spread(total: u64, samples: usize) -> Vec<u64> {
    super::sample_indices(total as usize, samples)
        .into_iter()
        .map(|i| i as u64)
        .collect()
}

crate::shaders::uniform! {
    /// `PeakParams` of `shaders/peak_fma.wgsl`.
    struct FmaParams {
        seed: f32,
        scale: f32,
        _pad: [u32; 2],
    }
}

crate::shaders::uniform! {
    /// `DotParams` of `shaders/peak_dot.wgsl`.
    struct DotParams {
        seed: u32,
        mult: u32,
        _pad: [u32; 2],
    }
}

crate::shaders::uniform! {
    /// `CopyParams` of `shaders/peak_copy.wgsl`.
    struct CopyParams {
        vecs: u32,
        _pad: [u32; 3],
    }
}

/// The params blocks of the probes (checked against the WGSL by the interface test).
pub fn peak_uniform_layouts() -> Vec<(ShaderFile, Vec<crate::shaders::Leaf>)> {
    use crate::shaders::uniform_layout;
    vec![
        (ShaderFile::PeakFma, uniform_layout::<FmaParams>()),
        (ShaderFile::PeakDot, uniform_layout::<DotParams>()),
        (ShaderFile::PeakCopy, uniform_layout::<CopyParams>()),
    ]
}

/// One compute dispatch of a probe: its pipeline, a bind group of a uniform with
/// `params` (binding 0) and the given buffers (bindings 1, 2, ...), and its grid.
struct Launch {
    kernel: std::sync::Arc<crate::context::Kernel>,
    bind: wgpu::BindGroup,
    grid: [u32; 3],
}

impl Launch {
    fn new(
        ctx: &Context,
        variant: &ShaderVariant,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
    ) -> Result<Launch> {
        let device = ctx.device();
        let kernel = ctx.kernel(variant)?;
        let ubuf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("peak params"),
            contents: params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: ubuf.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("peak"),
            layout: &kernel.layout,
            entries: &entries,
        });
        let max_dim = ctx
            .capabilities()
            .limits
            .max_compute_workgroups_per_dimension;
        let grid = crate::plan::split::fold_grid("peak", workgroups, max_dim)?;
        Ok(Launch { kernel, bind, grid })
    }

    fn record(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        // The shaders' ids use x and y only; fold into x-y.
        pass.dispatch_workgroups(self.grid[0], self.grid[1] * self.grid[2], 1);
        Ok(())
    }

    /// Runs once and reads `bytes` of `out` back as words.
    async fn run_and_read(
        &self,
        ctx: &Context,
        out: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u32>> {
        let mut enc = ctx.encoder("peak check");
        self.record(&mut enc)?;
        ctx.submit(enc).await?;
        let raw = ctx.read_buffer(out, bytes, "peak").await?;
        Ok(bytemuck::cast_slice(&raw).to_vec())
    }
}

fn storage(ctx: &Context, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Runs `probe` with `size` (see [`Probe::default_size`]), checks it, and times it
/// (`runs` timed runs after one warm-up). `Ok(None)` when the adapter cannot run it
/// ([`Probe::unsupported`] says why). Natively only; [`probe_async`] is the async form.
pub fn probe(ctx: &Context, probe: Probe, size: u64, runs: usize) -> Result<Option<ProbeResult>> {
    ctx.block("probe", probe_async(ctx, probe, size, runs))
}

/// [`probe()`] without blocking (the form a browser build uses).
pub async fn probe_async(
    ctx: &Context,
    probe: Probe,
    size: u64,
    runs: usize,
) -> Result<Option<ProbeResult>> {
    if probe.unsupported(ctx).is_some() {
        return Ok(None);
    }
    // Each branch launches, checks a sample and says what one invocation does.
    let (launch, threads, per_thread, rel_error, checked, verified) = if probe == Probe::Bandwidth {
        let vecs = size / 16;
        let words: Vec<u32> = (0..vecs * 4)
            .map(|i| (i as u32).wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995)
            .collect();
        let src = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("peak copy src"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let dst = storage(ctx, "peak copy dst", vecs * 16);
        let n = crate::ops::to_u32("peak copy", "vectors", vecs as usize)?;
        let launch = Launch::new(
            ctx,
            &copy_variant(),
            bytemuck::bytes_of(&CopyParams {
                vecs: n,
                _pad: [0; 3],
            }),
            &[&src, &dst],
            vecs.div_ceil(u64::from(PEAK_WG)),
        )?;
        let got = launch.run_and_read(ctx, &dst, vecs * 16).await?;
        let idx = spread(vecs * 4, 4096);
        let bad = idx
            .iter()
            .filter(|&&i| got[i as usize] != words[i as usize])
            .count();
        // 16 bytes read and 16 written per vector (the grid's tail does nothing).
        let rel_error = bad as f64 / idx.len() as f64;
        (launch, vecs, 32, rel_error, idx.len(), bad == 0)
    } else {
        let half = probe == Probe::Fp16Fma;
        let (scale, seed, budget) = fma_params(half);
        let dot = DotParams {
            seed: DOT_SEED,
            mult: DOT_MULT,
            _pad: [0; 2],
        };
        let fma = FmaParams {
            seed,
            scale,
            _pad: [0; 2],
        };
        let params = if probe == Probe::Int8Dot {
            bytemuck::bytes_of(&dot)
        } else {
            bytemuck::bytes_of(&fma)
        };
        // The folded grid may run more invocations than `size` workgroups ask for.
        let threads = crate::plan::split::fold_grid(
            "peak",
            size,
            ctx.capabilities()
                .limits
                .max_compute_workgroups_per_dimension,
        )?
        .iter()
        .map(|&g| u64::from(g))
        .product::<u64>()
            * u64::from(PEAK_WG);
        let out = storage(ctx, "peak out", threads * 4);
        let launch = Launch::new(ctx, &alu_variant(probe), params, &[&out], size)?;
        let got = launch.run_and_read(ctx, &out, threads * 4).await?;
        let idx = spread(threads, 64);
        let (rel_error, verified) = if probe == Probe::Int8Dot {
            let bad = idx
                .iter()
                .filter(|&&i| got[i as usize] != dot_model(i as u32))
                .count();
            (bad as f64 / idx.len() as f64, bad == 0)
        } else {
            let (mut e, mut r) = (0f64, 0f64);
            for &i in &idx {
                let want = fma_model(i, half);
                e += (f64::from(f32::from_bits(got[i as usize])) - want).powi(2);
                r += want * want;
            }
            let rel = (e / r.max(1e-300)).sqrt();
            (rel, rel <= budget)
        };
        // Per chain and step: a vec4 FMA is 4 x 2 FLOPs; four packed dots are 4 x 8 OPs.
        let per_step = if probe == Probe::Int8Dot { 32 } else { 8 };
        let per_thread = u64::from(PEAK_ITERS) * u64::from(PEAK_CHAINS) * per_step;
        (launch, threads, per_thread, rel_error, idx.len(), verified)
    };
    let timings = if verified {
        Some(time_gpu_async(ctx, 1, runs, |enc| launch.record(enc)).await?)
    } else {
        None
    };
    Ok(Some(ProbeResult {
        probe,
        threads,
        per_thread,
        rel_error,
        checked,
        verified,
        timings,
    }))
}
