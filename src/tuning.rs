//! Autotuning, opt-in: every candidate kernel for a shape is compiled, checked against
//! the reference once, timed (GPU timestamps where the device has them inside encoders,
//! else submit + wait), and the fastest correct one is stored in a [`TuneCache`] under
//! the adapter (name, vendor, device, driver, backend) and the shape class. A candidate
//! that fails to compile, fails validation or gives a wrong result is recorded as
//! rejected and never chosen. The default heuristic's choice is always among the
//! candidates and keeps its place unless another is faster by more than
//! [`TuneOptions::margin`], so a tuned plan is never slower than the default as measured.
//! Candidates are timed interleaved: [`TuneOptions::runs`] rounds, each timing every
//! candidate once, in alternating order, and each keeps the median of its runs, so that a
//! slow or fast spell of a shared machine falls on every candidate alike and running
//! first (cold caches) or last favours none.
//!
//! The cache is a JSON file: save it after tuning, ship it with an app, load it at start
//! and install it with [`Context::set_tuning`]; entries for other adapters are ignored.
//!
//! ```no_run
//! use wgpu_quant::{Context, ops::gemm::GemmDesc, tuning::{TuneCache, TuneOptions, Tuner}};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let mut cache = TuneCache::load_or_default("wgpu-quant-tuning.json")?;
//! let mut tuner = Tuner::new(&ctx, &mut cache, TuneOptions::default());
//! let report = tuner.gemm(&GemmDesc::new(256, 256, 256))?;
//! println!("{report:?}");
//! cache.save("wgpu-quant-tuning.json")?;
//! ctx.set_tuning(Some(cache)); // later GEMMs of this shape class use the winner
//! # Ok(()) }
//! ```

//!
//! # Plans that learn
//!
//! [`learn`] makes tuning happen on first use instead: it loads a cache file (creating
//! it when absent), installs it, and installs a learner on the context, so that the first
//! time the plan meets a shape class without an entry for this adapter and driver it
//! tunes that shape there and then (on the thread recording the op, before the op is
//! recorded), installs the winner and saves the file. The next process that calls
//! [`learn`] with the file starts with every shape it learned. Off unless called; the
//! test suite never calls it outside its own test.
//!
//! Cost: the first use of each class pays one tuning run: every candidate compiled,
//! checked and timed [`LEARN_OPTIONS`]`.runs` times after a warm-up. On lavapipe (2
//! cores) a 128x768x768 linear layer took 2.1 s (FP32), 3.8 s (W8A16) and 3.1 s (FP16)
//! (`examples/learn.rs` at 59f2d1e, docs/PERFORMANCE.md); larger shapes take longer in
//! proportion to their run time. Shapes whose class is already learned cost one hash lookup.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType, ops::gemm::{gemm, GemmDesc}};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! wgpu_quant::tuning::learn(&ctx, "wgpu-quant-plans.json")?;
//! let a = Tensor::from_slice(&ctx, &[64, 128], &vec![0.5f32; 64 * 128])?;
//! let b = Tensor::from_slice(&ctx, &[128, 96], &vec![0.25f32; 128 * 96])?;
//! let c = Tensor::zeros(&ctx, &[64, 96], DType::F32)?;
//! let mut enc = ctx.encoder("learned gemm");
//! // The first GEMM of this class is tuned here; later ones (and later runs) reuse it.
//! gemm(&ctx, &mut enc, &GemmDesc::new(64, 96, 128), &a, &b, None, &c)?;
//! ctx.submit_and_wait(enc)?;
//! assert_eq!(ctx.stats().plans_learned, 1);
//! # Ok(()) }
//! ```

use std::cell::RefCell;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};
#[cfg(not(target_arch = "wasm32"))]
use std::sync::{Arc, Mutex};

use crate::bench::{
    random_f32, time_gpu_async, CaseOptions, ConvData, LinearData, Precision, Prepared,
};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::gemm::{GemmDesc, GemmKernel};
use crate::ops::RowTile;

pub use crate::desc::tuning::{
    bucket, AdapterEntry, AdapterKey, Choice, ConvKind, ShapeClass, TuneCache, TuneRequest, Tuned,
    WeightType, CACHE_VERSION,
};

/// How [`learn`] times candidates: one warm-up and 5 interleaved runs each (fewer than
/// `tune`'s 9, since it runs inside the app), the default margin.
pub const LEARN_OPTIONS: TuneOptions = TuneOptions {
    warmup: 1,
    runs: 5,
    margin: 0.03,
};

/// Turns on plans that learn (see the module docs): loads `path` (an empty cache if it
/// does not exist; an error if it is damaged), installs it, and installs a learner that
/// tunes each new shape class on first use with [`LEARN_OPTIONS`], installs the result
/// and saves the cache to `path`. Entries for other adapters and drivers in the file are
/// kept and ignored. [`stop_learning`] turns it off (the learned plans stay installed).
#[cfg(not(target_arch = "wasm32"))]
pub fn learn(ctx: &Context, path: impl AsRef<Path>) -> Result<()> {
    let path: PathBuf = path.as_ref().to_path_buf();
    let cache = TuneCache::load_or_default(&path)?;
    ctx.set_tuning(Some(cache));
    // One learner at a time writes the file.
    let file = Arc::new(Mutex::new(path));
    ctx.set_learner(Some(Arc::new(move |ctx: &Context, req: &TuneRequest| {
        let mut cache = ctx.tuning().map(|c| (*c).clone()).unwrap_or_default();
        tune_request(ctx, &mut cache, req)?;
        ctx.set_tuning(Some(cache.clone()));
        let path = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.save(&*path)
    })));
    Ok(())
}

/// Removes the learner [`learn`] installed; the cache stays installed.
pub fn stop_learning(ctx: &Context) {
    ctx.set_learner(None);
}

/// Tunes the shape of `req` into `cache` with [`LEARN_OPTIONS`] (natively only;
/// [`tune_request_async`] is the async form).
pub fn tune_request(ctx: &Context, cache: &mut TuneCache, req: &TuneRequest) -> Result<Tuned> {
    ctx.block("tune_request", tune_request_async(ctx, cache, req))
}

/// [`tune_request`] without blocking (the form a browser build uses).
pub async fn tune_request_async(
    ctx: &Context,
    cache: &mut TuneCache,
    req: &TuneRequest,
) -> Result<Tuned> {
    let mut tuner = Tuner::new(ctx, cache, LEARN_OPTIONS);
    match *req {
        TuneRequest::Gemm(ref desc) => tuner.gemm_async(desc).await,
        TuneRequest::QGemm { m, n, k } => tuner.qgemm_async(m, n, k).await,
        TuneRequest::WGemm { m, n, k, wtype } => {
            let kind = match wtype {
                WeightType::I8 => WeightKind::I8,
                WeightType::I4 => WeightKind::I4,
                WeightType::F16 => WeightKind::F16,
                other => {
                    return Err(Error::invalid(
                        "tune",
                        format!(
                            "{}: {other:?} weights are not tuned (i8, i4 and f16 are)",
                            req.class()
                        ),
                    ))
                }
            };
            tuner.wgemm_async(m, n, k, kind).await
        }
        TuneRequest::Conv { shape, kind } => {
            let desc = crate::ops::conv::ConvDesc {
                stride: shape.stride,
                dilation: shape.dilation,
                padding: crate::ops::conv::Padding::Explicit(shape.pad),
                ..Default::default()
            };
            let x_shape = [shape.batch, shape.in_h, shape.in_w, shape.dims.in_channels];
            tuner.conv_async(&desc, shape.dims, x_shape, kind).await
        }
    }
}

/// How candidates are timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuneOptions {
    /// Untimed runs of each candidate before its first timed run.
    pub warmup: usize,
    /// Timed runs per candidate (the median counts), interleaved: round after round,
    /// every candidate is timed once per round (at least one round).
    pub runs: usize,
    /// A candidate replaces the default only when it is faster by more than this
    /// fraction (0.03: 3 %), so that noise does not pick a kernel that is no better.
    pub margin: f64,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            warmup: 1,
            runs: 9,
            margin: 0.03,
        }
    }
}

/// Tunes shapes on one context into a cache.
pub struct Tuner<'a> {
    ctx: &'a Context,
    cache: &'a mut TuneCache,
    opts: TuneOptions,
}

struct Outcome {
    choice: Choice,
    ms: Option<f64>,
    reject: Option<String>,
}

/// Weights of a weight-only / FP16 GEMM being tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    /// i8 codes, one scale per output channel.
    I8,
    /// i4 codes, one scale per output channel.
    I4,
    /// f16 weights (the FP16 GEMM), with the plan's arithmetic.
    F16,
}

impl WeightKind {
    /// The weight type of the shape class.
    pub fn wtype(self) -> WeightType {
        match self {
            WeightKind::I8 => WeightType::I8,
            WeightKind::I4 => WeightType::I4,
            WeightKind::F16 => WeightType::F16,
        }
    }

    /// The type's name in shape classes.
    pub fn name(self) -> &'static str {
        self.wtype().name()
    }
}

/// The K slice counts the tuner tries for GEMV-like shapes (at most 8 rows).
pub const SPLIT_K_CANDIDATES: [u32; 4] = [2, 4, 8, 16];

/// Split-K variants of the FP32 register kernels for an `m`-row GEMM with reduction `k`:
/// none unless `m <= 8`; else the default's kernel (when it is a register kernel) with
/// every count of [`SPLIT_K_CANDIDATES`] that leaves slices of at least
/// [`crate::plan::SPLIT_K_MIN_SLICE`], and every register configuration with the middle
/// count.
pub fn split_k_candidates(m: usize, k: usize, default: GemmKernel) -> Vec<GemmKernel> {
    let counts = split_counts(m, k);
    let Some(&mid) = counts.get(counts.len().saturating_sub(1) / 2) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let GemmKernel::Register(c) = default {
        out.extend(counts.iter().map(|&s| GemmKernel::Register(c.split_k(s))));
    }
    out.extend(
        GemmKernel::REGISTER
            .iter()
            .map(|c| GemmKernel::Register(c.split_k(mid))),
    );
    out
}

/// The split-K counts worth trying for an `m`-row GEMM with reduction `k`: none unless
/// `m <= 8` (GEMV-like), else those of [`SPLIT_K_CANDIDATES`] that leave slices of at
/// least [`crate::plan::SPLIT_K_MIN_SLICE`].
fn split_counts(m: usize, k: usize) -> Vec<u32> {
    let min = crate::plan::SPLIT_K_MIN_SLICE;
    if m > 8 {
        return Vec::new();
    }
    SPLIT_K_CANDIDATES
        .into_iter()
        .filter(|&s| k / s as usize >= min)
        .collect()
}

/// Split-K variants of the row-kernel tiles for an `m`-row GEMM with reduction `k`: the
/// default's tile with every count of [`split_counts`], and every tile of `tiles` with
/// the middle one.
fn split_k_rows(m: usize, k: usize, default: RowTile, tiles: &[RowTile]) -> Vec<RowTile> {
    let counts = split_counts(m, k);
    let Some(&mid) = counts.get(counts.len().saturating_sub(1) / 2) else {
        return Vec::new();
    };
    counts
        .iter()
        .map(|&s| default.split_k(s))
        .chain(tiles.iter().map(|t| t.split_k(mid)))
        .collect()
}

impl<'a> Tuner<'a> {
    /// A tuner writing into `cache`.
    pub fn new(ctx: &'a Context, cache: &'a mut TuneCache, opts: TuneOptions) -> Self {
        Tuner { ctx, cache, opts }
    }

    fn clock(&self) -> &'static str {
        let f = self.ctx.device().features();
        if f.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        ) {
            "timestamps"
        } else {
            "wall"
        }
    }

    /// Verifies every candidate with `check` (`Ok(None)`: right; `Ok(Some(why))`:
    /// wrong), then times the right ones with `time(choice, warmup, runs)` interleaved:
    /// `runs` rounds, each timing every candidate once (the first round after its
    /// warm-up), in alternating order, so that a slow or fast spell of the machine falls
    /// on every candidate alike; each keeps the median of its runs.
    async fn run_candidates(
        &self,
        cands: Vec<Choice>,
        mut check: impl AsyncFnMut(Choice) -> Result<Option<String>>,
        mut time: impl AsyncFnMut(Choice, usize, usize) -> Result<crate::bench::Timings>,
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(cands.len());
        for choice in cands {
            let reject = match check(choice).await {
                Ok(None) => None,
                Ok(Some(why)) => Some(why),
                Err(e) => Some(e.to_string()),
            };
            outcomes.push(Outcome {
                choice,
                ms: reject.is_none().then_some(f64::INFINITY),
                reject,
            });
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); outcomes.len()];
        for round in 0..self.opts.runs.max(1) {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..outcomes.len()).collect()
            } else {
                (0..outcomes.len()).rev().collect()
            };
            let warmup = if round == 0 { self.opts.warmup } else { 0 };
            for i in order {
                let o = &mut outcomes[i];
                if o.ms.is_none() {
                    continue;
                }
                match time(o.choice, warmup, 1).await {
                    Ok(t) => samples[i].extend(t.ms),
                    Err(e) => {
                        o.ms = None;
                        o.reject = Some(e.to_string());
                    }
                }
            }
        }
        for (o, ms) in outcomes.iter_mut().zip(samples) {
            if o.ms.is_some() {
                o.ms = Some(crate::bench::Timings::median_of(ms));
            }
        }
        outcomes
    }

    fn finish(
        &mut self,
        class: ShapeClass,
        shape: [usize; 3],
        default: Choice,
        outcomes: Vec<Outcome>,
    ) -> Result<Tuned> {
        let default_ms = outcomes
            .iter()
            .find(|o| o.choice == default)
            .and_then(|o| o.ms);
        let Some(default_ms) = default_ms else {
            let why = outcomes
                .iter()
                .find(|o| o.choice == default)
                .and_then(|o| o.reject.clone())
                .unwrap_or_default();
            return Err(Error::invalid(
                "tune",
                format!("{}: the default plan {default:?} failed: {why}", class),
            ));
        };
        let best = outcomes
            .iter()
            .filter_map(|o| o.ms.map(|ms| (o.choice, ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("the default was timed");
        let (choice, median_ms) = if best.1 < default_ms * (1.0 - self.opts.margin) {
            best
        } else {
            (default, default_ms)
        };
        let tuned = Tuned {
            choice,
            median_ms,
            default,
            default_ms,
            shape,
            verified: outcomes.iter().filter(|o| o.ms.is_some()).count(),
            rejected: outcomes
                .iter()
                .filter_map(|o| o.reject.as_ref().map(|r| format!("{:?}: {r}", o.choice)))
                .collect(),
            clock: self.clock().into(),
            timings: outcomes
                .iter()
                .filter_map(|o| o.ms.map(|ms| (o.choice, ms)))
                .collect(),
        };
        let key = AdapterKey::of(&self.ctx.capabilities().adapter);
        self.cache.insert(key, class, tuned.clone());
        Ok(tuned)
    }

    /// Tunes the FP32 GEMM of `desc`'s shape class over every kernel in
    /// [`GemmKernel::all`] that fits the device, and for GEMV-like shapes over split-K
    /// variants of the register kernels ([`split_k_candidates`]). Natively only;
    /// [`Tuner::gemm_async`] is the async form, as for the other shapes.
    pub fn gemm(&mut self, desc: &GemmDesc) -> Result<Tuned> {
        self.gemm_with(desc, &[])
    }

    /// [`Tuner::gemm`] without blocking (the form a browser build uses).
    pub async fn gemm_async(&mut self, desc: &GemmDesc) -> Result<Tuned> {
        self.gemm_with_async(desc, &[]).await
    }

    /// [`Tuner::gemm`] with `extra` candidates of the caller's (each is validated and
    /// checked like the built-in ones).
    pub fn gemm_with(&mut self, desc: &GemmDesc, extra: &[GemmKernel]) -> Result<Tuned> {
        let ctx = self.ctx;
        ctx.block("Tuner::gemm_with", self.gemm_with_async(desc, extra))
    }

    /// [`Tuner::gemm_with`] without blocking.
    pub async fn gemm_with_async(
        &mut self,
        desc: &GemmDesc,
        extra: &[GemmKernel],
    ) -> Result<Tuned> {
        let ctx = self.ctx;
        let caps = ctx.capabilities();
        let default = crate::plan::default_gemm_kernel(caps, desc);
        let mut cands = gemm_candidates(caps, desc, default);
        for &k in extra {
            if !cands.contains(&k) {
                cands.push(k);
            }
        }
        let (ar, ac) = desc.stored_a();
        let (br, bc) = desc.stored_b();
        let a = crate::tensor::Tensor::from_slice(
            ctx,
            &[desc.batch, ar, ac],
            &random_f32(desc.batch * ar * ac, 1),
        )?;
        let b = crate::tensor::Tensor::from_slice(
            ctx,
            &[desc.batch, br, bc],
            &random_f32(desc.batch * br * bc, 2),
        )?;
        let c =
            crate::tensor::Tensor::zeros(ctx, &[desc.batch, desc.m, desc.n], crate::DType::F32)?;
        let kernel = |ch: Choice| match ch {
            Choice::Gemm(k) => desc.clone().kernel(k),
            Choice::Rows(_) | Choice::Coop(_) => unreachable!("GEMM candidates"),
        };
        let outcomes = self
            .run_candidates(
                cands.into_iter().map(Choice::Gemm).collect(),
                async |ch| {
                    // Verification only (no timed runs): `gemm_case` checks 256 entries.
                    let r = crate::bench::gemm_case_async(ctx, &kernel(ch), 256, 0, 0).await?;
                    Ok((!r.verified).then(|| format!("relative error {:.2e}", r.rel_error)))
                },
                async |ch, warmup, runs| {
                    let d = kernel(ch);
                    time_gpu_async(ctx, warmup, runs, |enc| {
                        crate::ops::gemm::gemm(ctx, enc, &d, &a, &b, None, &c)
                    })
                    .await
                },
            )
            .await;
        self.finish(
            ShapeClass::gemm(desc),
            [desc.m, desc.n, desc.k],
            Choice::Gemm(default),
            outcomes,
        )
    }

    /// Tunes the W8A8 GEMM over the tiles in [`crate::ops::qgemm::TILES`], each also
    /// narrowed for `n` (and split-K variants for GEMV-like shapes), on the benchmark
    /// runner's W8A8 linear case ([`crate::bench::LinearData`]: per-row i8 activations,
    /// per-channel i8 weights, f32 output): every output of a candidate must match the
    /// reference bit for bit.
    pub fn qgemm(&mut self, m: usize, n: usize, k: usize) -> Result<Tuned> {
        let ctx = self.ctx;
        ctx.block("Tuner::qgemm", self.qgemm_async(m, n, k))
    }

    /// [`Tuner::qgemm`] without blocking.
    pub async fn qgemm_async(&mut self, m: usize, n: usize, k: usize) -> Result<Tuned> {
        use crate::ops::qgemm::TILES;
        let caps = self.ctx.capabilities();
        let default = crate::plan::default_qgemm_config(caps, m, n, k);
        let cands = row_candidates(caps, default, &TILES, (m, n, k));
        let data = LinearData::new(m, n, k);
        let cands = cands.into_iter().map(Choice::Rows).collect();
        let ctx = self.ctx;
        let outcomes = self
            .run_case(cands, async |o| {
                data.prepare_async(ctx, Precision::W8A8, o).await
            })
            .await;
        self.finish(
            ShapeClass::qgemm(m, n, k),
            [m, n, k],
            Choice::Rows(default),
            outcomes,
        )
    }

    /// Tunes the weight-only / FP16 GEMM over the tiles in [`crate::ops::wgemm::TILES`],
    /// each also narrowed for `n` (and split-K variants for GEMV-like shapes), on the
    /// benchmark runner's linear case of `kind` ([`crate::bench::LinearData`] in W8A16,
    /// W4A16 or FP16: f16 activations, f32 output, the plan's arithmetic): each candidate
    /// must meet the case's error budget against the f64 reference on the dequantized
    /// weights. Where the plan runs the product on the FP32 kernels (FP16 with f16
    /// storage, [`crate::plan::half_gemm_kernel`]; codes dequantized first,
    /// [`crate::plan::dequant_gemm_kernel`]), that route is the default. The FP32 register
    /// and subgroup kernels for the shape are candidates beside the row tiles there, and
    /// on every CPU adapter where the plan keeps the row kernel (few rows, a short K, no
    /// subgroups) too, for codes and for f16 weights in f32 arithmetic, so that `tune`
    /// shows what those rules cost.
    pub fn wgemm(&mut self, m: usize, n: usize, k: usize, kind: WeightKind) -> Result<Tuned> {
        let ctx = self.ctx;
        ctx.block("Tuner::wgemm", self.wgemm_async(m, n, k, kind))
    }

    /// [`Tuner::wgemm`] without blocking.
    pub async fn wgemm_async(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
        kind: WeightKind,
    ) -> Result<Tuned> {
        use crate::ops::wgemm::TILES;
        let caps = self.ctx.capabilities();
        let rows_default = crate::plan::default_wgemm_config(caps, m, n, k, kind.wtype());
        let mut cands: Vec<Choice> = row_candidates(caps, rows_default, &TILES, (m, n, k))
            .into_iter()
            .map(Choice::Rows)
            .collect();
        let mut default = Choice::Rows(rows_default);
        let f32_math = crate::plan::half_math(caps) == crate::ops::wgemm::HalfMath::F32;
        let desc = GemmDesc::new(m, n, k).transpose(false, true);
        let planned = match kind {
            WeightKind::F16 if !f32_math => None,
            _ => crate::plan::wgemm_fp32_kernel(caps, m, n, k, kind.wtype()),
        };
        if let Some(route) = planned {
            default = Choice::Gemm(route);
        }
        // FP16 on cooperative matrices: every block the adapter runs is a candidate, whole
        // and with `plan::coop_split`'s split of K where that splits; the plan's block is
        // the default where the plan takes that kernel.
        if kind == WeightKind::F16 && crate::plan::coop_capable(caps) {
            let mut coops = Vec::new();
            for t in crate::desc::wgemm::CoopTile::TILES {
                let split = t.split_k(crate::plan::coop_split(t, m, n, k));
                for c in [t, split] {
                    if crate::plan::coop_tile_fits(caps, c) && !coops.contains(&c) {
                        coops.push(c);
                    }
                }
            }
            cands.splice(0..0, coops.into_iter().map(Choice::Coop));
            if let Some(t) = crate::plan::wgemm_coop(caps, m, n, k) {
                default = Choice::Coop(t);
            }
        }
        // On a CPU adapter the route is a candidate where the plan keeps the row kernel
        // too (f16 weights: where the arithmetic is f32, as the route's).
        let offered = planned.or_else(|| {
            (caps.is_cpu() && (kind != WeightKind::F16 || f32_math))
                .then(|| crate::plan::default_gemm_kernel(caps, &desc))
        });
        if let Some(route) = offered {
            let mut gemms = vec![route];
            for g in gemm_candidates(caps, &desc, route) {
                if !matches!(g, GemmKernel::Tiled(_)) && !gemms.contains(&g) {
                    gemms.push(g);
                }
            }
            cands.splice(0..0, gemms.into_iter().map(Choice::Gemm));
        }
        let precision = match kind {
            WeightKind::I8 => Precision::W8A16,
            WeightKind::I4 => Precision::W4A16,
            WeightKind::F16 => Precision::Fp16,
        };
        let data = LinearData::new(m, n, k);
        let ctx = self.ctx;
        let outcomes = self
            .run_case(cands, async |o| data.prepare_async(ctx, precision, o).await)
            .await;
        self.finish(
            ShapeClass::wgemm(m, n, k, kind.wtype()),
            [m, n, k],
            default,
            outcomes,
        )
    }

    /// Checks and times candidates on one case of the benchmark runner's table, prepared
    /// with the candidate pinned (a row tile, or a GEMM kernel for the FP16 linear's
    /// f16-storage route): a candidate whose outputs (all of them) miss the case's
    /// reference (bit for bit for integer kernels, the error budget for float ones) is
    /// rejected; the others are timed recording the same operands.
    async fn run_case<'p>(
        &self,
        cands: Vec<Choice>,
        prepare: impl AsyncFn(&CaseOptions) -> Result<Prepared<'p>>,
    ) -> Vec<Outcome> {
        let prepared: RefCell<Vec<(Choice, Prepared<'p>)>> = RefCell::new(Vec::new());
        let ctx = self.ctx;
        self.run_candidates(
            cands,
            async |ch| {
                let (tile, half_kernel, coop_tile) = match ch {
                    Choice::Rows(t) => (Some(t), None, None),
                    Choice::Gemm(g) => (None, Some(g), None),
                    Choice::Coop(t) => (None, None, Some(t)),
                };
                let p = prepare(&CaseOptions {
                    samples: usize::MAX,
                    tile,
                    half_kernel,
                    coop_tile,
                    ..CaseOptions::default()
                })
                .await?;
                let why = (!p.verified).then(|| {
                    format!(
                        "{} outputs checked: relative error {:.2e}, budget {:.0e}",
                        p.checked, p.rel_error, p.budget
                    )
                });
                prepared.borrow_mut().push((ch, p));
                Ok(why)
            },
            async |ch, warmup, runs| {
                // The record closure of the candidate, taken out for the awaited timing
                // (a RefCell borrow is not held across an await).
                let i = prepared
                    .borrow()
                    .iter()
                    .position(|(c, _)| *c == ch)
                    .ok_or_else(|| Error::invalid("tune", format!("{ch:?} was not prepared")))?;
                let (c, p) = prepared.borrow_mut().swap_remove(i);
                let t = time_gpu_async(ctx, warmup, runs, |enc| p.record(enc)).await;
                prepared.borrow_mut().push((c, p));
                t
            },
        )
        .await
    }

    /// Tunes a convolution's implicit GEMM (`x_shape` NHWC, weights `dims`, geometry from
    /// `desc`) with `kind` storage over the tiles of its kernel
    /// ([`crate::ops::conv::TILES`] for float, [`crate::ops::qgemm::TILES`] for INT8),
    /// each also narrowed to the channels of a group. Float candidates must stay within
    /// the error budget of the f64 reference (1e-5 in f32 arithmetic, 2e-3 with f16
    /// products); INT8 candidates must give the exact int32 accumulators. Depthwise
    /// convolutions (their own kernel) and FP32 1x1 convolutions (the GEMM's plan; tune
    /// them with [`Tuner::gemm`]) are refused.
    pub fn conv(
        &mut self,
        desc: &crate::ops::conv::ConvDesc,
        dims: crate::ops::conv::ConvDims,
        x_shape: [usize; 4],
        kind: ConvKind,
    ) -> Result<Tuned> {
        let ctx = self.ctx;
        ctx.block("Tuner::conv", self.conv_async(desc, dims, x_shape, kind))
    }

    /// [`Tuner::conv`] without blocking.
    pub async fn conv_async(
        &mut self,
        desc: &crate::ops::conv::ConvDesc,
        dims: crate::ops::conv::ConvDims,
        x_shape: [usize; 4],
        kind: ConvKind,
    ) -> Result<Tuned> {
        let caps = self.ctx.capabilities();
        let shape = desc.shape(&dims, &x_shape)?;
        let class = ShapeClass::conv(&shape, kind);
        if dims.is_depthwise() || (kind != ConvKind::W8A8 && shape.is_pointwise()) {
            return Err(Error::invalid(
                "tune",
                format!(
                    "{}: depthwise convolutions run their own kernel and FP32/FP16 1x1 \
                     convolutions the GEMM's plan; there is no implicit-GEMM tile to tune",
                    class
                ),
            ));
        }
        let (m, ncols) = (shape.rows(), dims.out_channels / dims.groups);
        let (default, tiles) = if kind == ConvKind::W8A8 {
            (
                crate::plan::default_qconv_config(caps, m, ncols),
                crate::ops::qgemm::TILES.to_vec(),
            )
        } else {
            (
                crate::plan::default_conv_config(caps, m, ncols),
                crate::ops::conv::TILES.to_vec(),
            )
        };
        let lim = caps.limits.max_compute_invocations_per_workgroup;
        let mut cands = vec![default];
        for t in tiles.into_iter().flat_map(|t| [t, t.fit(ncols)]) {
            if !cands.contains(&t) && t.wg <= lim {
                cands.push(t);
            }
        }
        let precision = match kind {
            ConvKind::F32 => Precision::Fp32,
            ConvKind::F16 => Precision::Fp16,
            ConvKind::W8A8 => Precision::W8A8,
        };
        let data = ConvData::from_desc(desc, dims, x_shape)?;
        let cands = cands.into_iter().map(Choice::Rows).collect();
        let ctx = self.ctx;
        let outcomes = self
            .run_case(cands, async |o| data.prepare_async(ctx, precision, o).await)
            .await;
        let k = dims.kernel[0] * dims.kernel[1] * dims.in_channels / dims.groups;
        self.finish(class, [m, ncols, k], Choice::Rows(default), outcomes)
    }
}

/// The FP32 GEMM candidates of `desc`: `default` first, then every kernel in
/// [`GemmKernel::all`] and its narrowed twin for `desc.n`, and for GEMV-like shapes
/// split-K variants of the register kernels, all that fit the device.
fn gemm_candidates(
    caps: &crate::Capabilities,
    desc: &GemmDesc,
    default: GemmKernel,
) -> Vec<GemmKernel> {
    let mut cands: Vec<GemmKernel> = vec![default];
    let min_wg = crate::plan::min_gemm_wg(caps);
    for k in GemmKernel::all()
        .into_iter()
        .flat_map(|k| [k, k.fit(desc.n, min_wg)])
        .chain(split_k_candidates(desc.m, desc.k, default))
        .filter(|k| k.fits(caps))
    {
        if !cands.contains(&k) {
            cands.push(k);
        }
    }
    cands
}

/// The row-GEMM candidates of an `m x n x k` product: the plan's `default` first, then
/// every tile, each also narrowed for `n`, and the split-K variants for GEMV-like shapes,
/// without repeats and within the device's invocations per workgroup.
fn row_candidates(
    caps: &crate::Capabilities,
    default: RowTile,
    tiles: &[RowTile],
    (m, n, k): (usize, usize, usize),
) -> Vec<RowTile> {
    let lim = caps.limits.max_compute_invocations_per_workgroup;
    let mut cands = vec![default];
    for t in tiles
        .iter()
        .flat_map(|&t| [t, t.fit(n)])
        .chain(split_k_rows(m, k, default, tiles))
    {
        if !cands.contains(&t) && t.wg <= lim {
            cands.push(t);
        }
    }
    cands
}
