//! Measuring what quantization costs in accuracy: seeded test distributions, the
//! signal-to-quantization-noise ratio, and the observer comparison behind the SQNR table
//! in docs/QUANTIZATION.md (`wgpu-quant sqnr`).

use rand::{RngExt, SeedableRng};

use crate::calib::{Observer, ObserverKind};
use crate::context::Context;
use crate::error::Result;
use crate::ops::quant::{dequantize, quantize, QTensor};
use crate::quant::{QuantParams, QuantScheme};
use crate::tensor::{DType, Tensor};

/// Synthetic activation distributions with known shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Standard normal.
    Gaussian,
    /// Laplace (double exponential) with unit scale: the heavy-tailed shape of trained
    /// weights and many activations.
    Laplace,
    /// Standard normal with 0.1% of the values scaled by 30 (rare large outliers, as in
    /// transformer activations).
    Outliers,
    /// `max(0, N(0, 1))`: what follows a ReLU.
    PostRelu,
}

impl Distribution {
    /// Every distribution.
    pub const ALL: [Distribution; 4] = [
        Distribution::Gaussian,
        Distribution::Laplace,
        Distribution::Outliers,
        Distribution::PostRelu,
    ];

    /// Name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Gaussian => "gaussian",
            Distribution::Laplace => "laplace",
            Distribution::Outliers => "gaussian + 0.1% outliers x30",
            Distribution::PostRelu => "post-ReLU gaussian",
        }
    }

    /// Whether the values are all non-negative.
    pub fn non_negative(self) -> bool {
        self == Distribution::PostRelu
    }

    /// `n` values drawn with `seed`.
    pub fn sample(self, n: usize, seed: u64) -> Vec<f32> {
        let rng = std::cell::RefCell::new(rand::rngs::StdRng::seed_from_u64(seed));
        let uniform = || -> f64 { rng.borrow_mut().random_range(0.0..1.0) };
        let normal = || -> f64 {
            let u1: f64 = rng.borrow_mut().random_range(1e-300..1.0);
            let u2: f64 = rng.borrow_mut().random_range(0.0..1.0);
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        (0..n)
            .map(|i| {
                let v = match self {
                    Distribution::Gaussian => normal(),
                    Distribution::Laplace => {
                        let u: f64 = uniform() - 0.5;
                        -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()
                    }
                    Distribution::Outliers => normal() * if i % 1000 == 999 { 30.0 } else { 1.0 },
                    Distribution::PostRelu => normal().max(0.0),
                };
                v as f32
            })
            .collect()
    }
}

/// `10 log10(sum x^2 / sum (x - y)^2)`, in dB (infinite when `y == x`).
pub fn sqnr_db(x: &[f32], y: &[f32]) -> f64 {
    let sig: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    let noise: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    10.0 * (sig / noise).log10()
}

/// Quantizes and dequantizes `x` on the GPU with `params`; returns the round trip.
/// Natively only; [`round_trip_async`] is the async form.
pub fn round_trip(ctx: &Context, x: &[f32], params: &QuantParams) -> Result<Vec<f32>> {
    ctx.block("round_trip", round_trip_async(ctx, x, params))
}

/// [`round_trip`] without blocking (the form a browser build uses).
pub async fn round_trip_async(ctx: &Context, x: &[f32], params: &QuantParams) -> Result<Vec<f32>> {
    let t = Tensor::from_slice(ctx, &params.shape, x)?;
    let q = QTensor::new(ctx, params)?;
    let back = Tensor::zeros(ctx, &params.shape, DType::F32)?;
    let mut enc = ctx.encoder("round trip");
    quantize(ctx, &mut enc, &t, &q)?;
    dequantize(ctx, &mut enc, &q, &back)?;
    ctx.submit(enc).await?;
    back.read(ctx).await
}

/// Calibrates an observer of `kind` on `batches` batches of `batch_len` values from
/// `dist` (seeds 0..batches), then returns the SQNR (dB) of the GPU round trip of a
/// held-out sample of `test_len` values, and the parameters used. Natively only;
/// [`observer_sqnr_async`] is the async form.
pub fn observer_sqnr(
    ctx: &Context,
    dist: Distribution,
    scheme: &QuantScheme,
    kind: ObserverKind,
    batches: usize,
    batch_len: usize,
    test_len: usize,
) -> Result<(f64, QuantParams)> {
    ctx.block(
        "observer_sqnr",
        observer_sqnr_async(ctx, dist, scheme, kind, batches, batch_len, test_len),
    )
}

/// [`observer_sqnr`] without blocking (the form a browser build uses).
pub async fn observer_sqnr_async(
    ctx: &Context,
    dist: Distribution,
    scheme: &QuantScheme,
    kind: ObserverKind,
    batches: usize,
    batch_len: usize,
    test_len: usize,
) -> Result<(f64, QuantParams)> {
    let mut obs = Observer::new(kind, scheme.granularity)?;
    for b in 0..batches {
        let x = dist.sample(batch_len, b as u64);
        obs.observe_async(ctx, &Tensor::from_slice(ctx, &[batch_len], &x)?)
            .await?;
    }
    let test = dist.sample(test_len, 1_000_003);
    let params = obs.compute_params(scheme, &[test_len])?;
    let back = round_trip_async(ctx, &test, &params).await?;
    Ok((sqnr_db(&test, &back), params))
}
