//! Calibration observers for post-training quantization, and ([`eval`]) what
//! quantization costs in accuracy.
//!
//! An observer watches activation tensors batch after batch ([`Observer::observe`]) and
//! then proposes a range per tensor or per channel ([`Observer::ranges`]) and the
//! parameters that follow from it ([`Observer::compute_params`]). The statistics that
//! need the whole tensor (min/max, histograms) are computed on the GPU; only those small
//! results are read back, never the activations.
//!
//! | kind | range |
//! | --- | --- |
//! | [`ObserverKind::MinMax`] | smallest and largest value seen |
//! | [`ObserverKind::MovingAverage`] | exponential moving average of each batch's min and max (PyTorch's `MovingAverageMinMaxObserver`) |
//! | [`ObserverKind::Percentile`] | clip at a percentile of `|x|` (symmetric) or at both tails (asymmetric) |
//! | [`ObserverKind::Entropy`] | clip where the KL divergence between the clipped and the quantized histogram is least (TensorRT's calibration) |
//! | [`ObserverKind::Mse`] | clip where the expected squared error (rounding plus clipping) is least |
//!
//! Histograms have [`HIST_BINS`] bins over `[-R, R]`; `R` starts at the first batch's
//! `max |x|` and doubles (merging bin pairs exactly) when a later batch exceeds it.
//! A batch holding NaN or infinite values is refused, naming the first; with
//! [`Observer::allow_nonfinite`] they are skipped and counted ([`Observer::nonfinite`]).
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor};
//! use wgpu_quant::calib::{Observer, ObserverKind};
//! use wgpu_quant::quant::{QType, QuantScheme};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let scheme = QuantScheme::asymmetric(QType::U8);
//! let mut obs = Observer::new(ObserverKind::Entropy, scheme.granularity)?;
//! for batch in 0..4 {
//!     let x: Vec<f32> = (0..4096).map(|i| ((i * 37 + batch) % 101) as f32 / 10.0).collect();
//!     obs.observe(&ctx, &Tensor::from_slice(&ctx, &[64, 64], &x)?)?;
//! }
//! let params = obs.compute_params(&scheme, &[64, 64])?;
//! println!("scale {} zero point {}", params.scales()[0], params.zero_points()[0]);
//! # Ok(()) }
//! ```

pub mod eval;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::quant::{
    hist_bin, hist_inv, histogram_async, min_max_async, ChannelView, HIST_BINS,
};
use crate::quant::{Granularity, QuantParams, QuantScheme};
use crate::tensor::Tensor;

/// How an observer turns what it saw into a range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ObserverKind {
    /// Global min and max.
    MinMax,
    /// `min += momentum * (batch_min - min)` (same for max); the first batch sets them.
    MovingAverage {
        /// Weight of each new batch (PyTorch's default is 0.01).
        momentum: f32,
    },
    /// Clip at this percentile (e.g. 99.99).
    Percentile {
        /// In `(0, 100]`.
        percentile: f32,
    },
    /// KL-divergence calibration.
    Entropy,
    /// Least expected squared error.
    Mse,
}

impl ObserverKind {
    /// The kinds used in the docs' SQNR table, with their usual settings.
    pub fn standard() -> Vec<ObserverKind> {
        vec![
            ObserverKind::MinMax,
            ObserverKind::MovingAverage { momentum: 0.01 },
            ObserverKind::Percentile { percentile: 99.99 },
            ObserverKind::Entropy,
            ObserverKind::Mse,
        ]
    }

    /// Short name, e.g. `percentile(99.99)`.
    pub fn name(&self) -> String {
        match self {
            ObserverKind::MinMax => "min-max".into(),
            ObserverKind::MovingAverage { momentum } => format!("moving-average({momentum})"),
            ObserverKind::Percentile { percentile } => format!("percentile({percentile})"),
            ObserverKind::Entropy => "entropy".into(),
            ObserverKind::Mse => "mse".into(),
        }
    }

    fn needs_histogram(&self) -> bool {
        matches!(
            self,
            ObserverKind::Percentile { .. } | ObserverKind::Entropy | ObserverKind::Mse
        )
    }
}

/// One channel's histogram: `counts[b]` values in `[-r + b w, -r + (b + 1) w)`,
/// `w = 2 r / HIST_BINS`.
#[derive(Debug, Clone)]
struct Hist {
    r: f32,
    counts: Vec<u64>,
}

impl Hist {
    fn width(&self) -> f64 {
        2.0 * f64::from(self.r) / HIST_BINS as f64
    }

    /// Folded onto `|x|`: bin `k` covers `[k w, (k + 1) w)`.
    fn abs(&self) -> Vec<u64> {
        let half = HIST_BINS / 2;
        (0..half)
            .map(|k| self.counts[half + k] + self.counts[half - 1 - k])
            .collect()
    }

    fn only_zeros(&self) -> bool {
        let h = HIST_BINS / 2;
        self.counts
            .iter()
            .enumerate()
            .all(|(b, &c)| c == 0 || b == h || b + 1 == h)
    }

    /// Makes room for `absmax`: sets the range if nothing but zeros was seen yet, else
    /// doubles it (merging bin pairs) until it covers `absmax`.
    fn fit(&mut self, absmax: f32) {
        if absmax <= self.r {
            return;
        }
        if self.r == 0.0 || self.only_zeros() {
            let zeros: u64 = self.counts.iter().sum();
            self.r = absmax;
            self.counts.iter_mut().for_each(|c| *c = 0);
            self.counts[hist_bin(0.0, absmax, hist_inv(absmax))] = zeros;
            return;
        }
        while self.r < absmax {
            let mut merged = vec![0u64; HIST_BINS];
            for (i, &c) in self.counts.iter().enumerate() {
                merged[HIST_BINS / 4 + i / 2] += c;
            }
            self.counts = merged;
            self.r *= 2.0;
        }
    }
}

/// The index and value of `x`'s first NaN or infinite element (read back; only on the
/// error path).
async fn first_nonfinite(ctx: &Context, x: &Tensor) -> Result<(usize, f32)> {
    let v: Vec<f32> = match x.dtype() {
        crate::DType::F16 => x
            .read::<half::f16>(ctx)
            .await?
            .into_iter()
            .map(f32::from)
            .collect(),
        _ => x.read::<f32>(ctx).await?,
    };
    Ok(v.iter()
        .position(|x| !x.is_finite())
        .map_or((0, f32::NAN), |i| (i, v[i])))
}

/// A streaming calibration observer (see the module docs).
#[derive(Debug, Clone)]
pub struct Observer {
    kind: ObserverKind,
    granularity: Granularity,
    min: Vec<f32>,
    max: Vec<f32>,
    hist: Vec<Hist>,
    batches: usize,
    nonfinite: u64,
    allow_nonfinite: bool,
}

impl Observer {
    /// A new observer. `granularity` is [`Granularity::PerTensor`] or
    /// [`Granularity::PerChannel`].
    pub fn new(kind: ObserverKind, granularity: Granularity) -> Result<Observer> {
        let op = "Observer::new";
        if !matches!(
            granularity,
            Granularity::PerTensor | Granularity::PerChannel { .. }
        ) {
            return Err(Error::invalid(
                op,
                format!("observers are per tensor or per channel, got {granularity:?}"),
            ));
        }
        match kind {
            ObserverKind::MovingAverage { momentum } if !(momentum > 0.0 && momentum <= 1.0) => {
                return Err(Error::invalid(
                    op,
                    format!("momentum {momentum} must be in (0, 1]"),
                ))
            }
            ObserverKind::Percentile { percentile }
                if !(percentile > 50.0 && percentile <= 100.0) =>
            {
                return Err(Error::invalid(
                    op,
                    format!("percentile {percentile} must be in (50, 100]"),
                ))
            }
            _ => {}
        }
        Ok(Observer {
            kind,
            granularity,
            min: Vec::new(),
            max: Vec::new(),
            hist: Vec::new(),
            batches: 0,
            nonfinite: 0,
            allow_nonfinite: false,
        })
    }

    /// The kind.
    pub fn kind(&self) -> ObserverKind {
        self.kind
    }

    /// Batches observed so far.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// NaN and infinite values skipped so far.
    pub fn nonfinite(&self) -> u64 {
        self.nonfinite
    }

    /// Lets [`Observer::observe`] skip NaN and infinite values (counted in
    /// [`Observer::nonfinite`]) instead of refusing the batch. A batch with no finite
    /// value at all is then skipped whole: it changes no range.
    pub fn allow_nonfinite(&mut self, allow: bool) {
        self.allow_nonfinite = allow;
    }

    /// The tracked min and max per channel (global, or moving averages).
    pub fn min_max(&self) -> (&[f32], &[f32]) {
        (&self.min, &self.max)
    }

    /// Observes one batch (f32 or f16 on the GPU). Every batch must have the same number
    /// of channels; other dims may vary. Submits work and waits for the statistics:
    /// natively only; [`Observer::observe_async`] is the async form.
    pub fn observe(&mut self, ctx: &Context, x: &Tensor) -> Result<()> {
        ctx.block("Observer::observe", self.observe_async(ctx, x))
    }

    /// [`Observer::observe`] without blocking (the form a browser build uses).
    pub async fn observe_async(&mut self, ctx: &Context, x: &Tensor) -> Result<()> {
        const OP: &str = "Observer::observe";
        if x.numel() == 0 {
            return Err(Error::shape(OP, format!("empty tensor {:?}", x.shape())));
        }
        let view = ChannelView::new(OP, self.granularity, x.shape())?;
        if self.batches > 0 && view.channels != self.min.len() {
            return Err(Error::shape(
                OP,
                format!(
                    "this batch has {} channels ({:?} of shape {:?}), earlier ones had {}",
                    view.channels,
                    self.granularity,
                    x.shape(),
                    self.min.len()
                ),
            ));
        }
        let mm = min_max_async(ctx, x, &view).await?;
        if mm.nonfinite > 0 && !self.allow_nonfinite {
            let (i, v) = first_nonfinite(ctx, x).await?;
            return Err(Error::invalid(
                OP,
                format!(
                    "the batch of shape {:?} holds {} NaN or infinite values (the first: {v} at \
                     index {i}); Observer::allow_nonfinite(true) skips them",
                    x.shape(),
                    mm.nonfinite
                ),
            ));
        }
        self.nonfinite += mm.nonfinite;
        if mm.nonfinite == x.numel() as u64 {
            // Nothing finite to learn from: the ranges stay as they were.
            return Ok(());
        }
        if self.batches == 0 {
            self.min = mm.min.clone();
            self.max = mm.max.clone();
            if self.kind.needs_histogram() {
                self.hist = vec![
                    Hist {
                        r: 0.0,
                        counts: vec![0; HIST_BINS],
                    };
                    view.channels
                ];
            }
        } else {
            for c in 0..view.channels {
                match self.kind {
                    ObserverKind::MovingAverage { momentum } => {
                        // A convex combination: finite for finite inputs even near
                        // f32::MAX, where `min + m * (batch - min)` overflows.
                        let keep = 1.0 - momentum;
                        self.min[c] = keep * self.min[c] + momentum * mm.min[c];
                        self.max[c] = keep * self.max[c] + momentum * mm.max[c];
                    }
                    _ => {
                        self.min[c] = self.min[c].min(mm.min[c]);
                        self.max[c] = self.max[c].max(mm.max[c]);
                    }
                }
            }
        }
        if self.kind.needs_histogram() {
            for (c, h) in self.hist.iter_mut().enumerate() {
                let absmax = mm.min[c].abs().max(mm.max[c].abs());
                // Subnormal ranges count as zero (as in params_for_range).
                let absmax = if absmax < f32::MIN_POSITIVE {
                    0.0
                } else {
                    absmax
                };
                h.fit(absmax);
                if h.r == 0.0 {
                    // Only zeros so far: a unit range keeps them in the middle bins.
                    h.r = 1.0;
                }
            }
            let ranges: Vec<f32> = self.hist.iter().map(|h| h.r).collect();
            let (counts, _) = histogram_async(ctx, x, &view, &ranges).await?;
            for (c, h) in self.hist.iter_mut().enumerate() {
                for (dst, &src) in h
                    .counts
                    .iter_mut()
                    .zip(&counts[c * HIST_BINS..(c + 1) * HIST_BINS])
                {
                    *dst += u64::from(src);
                }
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// The range `(lo, hi)` per channel this observer proposes for `scheme` (whose type
    /// sets the number of levels the entropy and MSE searches aim at).
    pub fn ranges(&self, scheme: &QuantScheme) -> Result<(Vec<f32>, Vec<f32>)> {
        if self.batches == 0 {
            return Err(Error::invalid(
                "Observer::ranges",
                "no batch observed yet: call observe() first",
            ));
        }
        let mut lo = Vec::with_capacity(self.min.len());
        let mut hi = Vec::with_capacity(self.min.len());
        for c in 0..self.min.len() {
            let (mn, mx) = (self.min[c], self.max[c]);
            let (l, h) = match self.kind {
                ObserverKind::MinMax | ObserverKind::MovingAverage { .. } => (mn, mx),
                ObserverKind::Percentile { percentile } => {
                    percentile_range(&self.hist[c], mn, mx, percentile, scheme.symmetric)
                }
                ObserverKind::Entropy => entropy_range(&self.hist[c], mn, mx, scheme),
                ObserverKind::Mse => mse_range(&self.hist[c], mn, mx, scheme),
            };
            lo.push(l);
            hi.push(h);
        }
        Ok((lo, hi))
    }

    /// Parameters for a tensor of `shape` under `scheme`, whose granularity must be the
    /// observer's.
    pub fn compute_params(&self, scheme: &QuantScheme, shape: &[usize]) -> Result<QuantParams> {
        if scheme.granularity != self.granularity {
            return Err(Error::invalid(
                "Observer::compute_params",
                format!(
                    "the scheme is {:?}, the observer watched {:?}",
                    scheme.granularity, self.granularity
                ),
            ));
        }
        let (lo, hi) = self.ranges(scheme)?;
        QuantParams::from_ranges(scheme, shape, &lo, &hi)
    }
}

fn clamp_range(lo: f64, hi: f64, mn: f32, mx: f32) -> (f32, f32) {
    ((lo as f32).max(mn), (hi as f32).min(mx))
}

fn percentile_range(h: &Hist, mn: f32, mx: f32, p: f32, symmetric: bool) -> (f32, f32) {
    let w = h.width();
    let frac = f64::from(p) / 100.0;
    if symmetric {
        let a = h.abs();
        let total: u64 = a.iter().sum();
        let t = quantile_bin(&a, total, frac).map_or(0.0, |k| (k + 1) as f64 * w);
        return clamp_range(-t, t, mn, mx);
    }
    let total: u64 = h.counts.iter().sum();
    let r = f64::from(h.r);
    let lo = quantile_bin(&h.counts, total, 1.0 - frac).map_or(0.0, |b| -r + b as f64 * w);
    let hi = quantile_bin(&h.counts, total, frac).map_or(0.0, |b| -r + (b + 1) as f64 * w);
    clamp_range(lo, hi, mn, mx)
}

/// First bin where the cumulative count reaches `frac * total`.
fn quantile_bin(counts: &[u64], total: u64, frac: f64) -> Option<usize> {
    if total == 0 {
        return None;
    }
    let target = (frac * total as f64).ceil().max(1.0) as u64;
    let mut cum = 0u64;
    counts.iter().position(|&c| {
        cum += c;
        cum >= target
    })
}

/// Quantization levels on one side of zero for a range that spans both signs, or all of
/// them when the data has one sign.
fn levels(scheme: &QuantScheme, one_signed: bool) -> usize {
    let (qmin, qmax) = scheme.qrange();
    let all = (qmax - qmin + 1) as usize;
    if one_signed {
        all
    } else {
        all / 2
    }
}

fn smooth(d: &mut [f64]) {
    const EPS: f64 = 1e-4;
    let zeros = d.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = d.len() - zeros;
    if zeros == 0 || nonzeros == 0 {
        return;
    }
    let take = EPS * zeros as f64 / nonzeros as f64;
    for v in d.iter_mut() {
        *v = if *v == 0.0 {
            EPS
        } else {
            (*v - take).max(EPS * 0.1)
        };
    }
}

fn entropy_range(h: &Hist, mn: f32, mx: f32, scheme: &QuantScheme) -> (f32, f32) {
    let a = h.abs();
    let Some(last) = a.iter().rposition(|&c| c > 0) else {
        return (mn, mx);
    };
    let n = levels(scheme, mn >= 0.0 || mx <= 0.0);
    let w = h.width();
    if last < n {
        return (mn, mx);
    }
    let mut best = (f64::INFINITY, last + 1);
    for i in n..=last + 1 {
        // P: the first i bins, with everything beyond folded into the last one.
        let mut p: Vec<f64> = a[..i].iter().map(|&c| c as f64).collect();
        p[i - 1] += a[i..].iter().sum::<u64>() as f64;
        // Q: the first i bins merged into n levels, spread back over the non-empty bins.
        // Bin 0 holds |x| < w, which includes exact zeros (half of a post-ReLU tensor):
        // 0.0 is exactly representable, so Q keeps that bin's mass in place instead of
        // spreading it over its level. Without this the zero spike dominates the
        // divergence and the search clips far too hard.
        let mut q = vec![0f64; i];
        q[0] = p[0];
        for j in 0..n {
            let (s, e) = (j * i / n, ((j + 1) * i / n).max(j * i / n + 1));
            let s = s.max(1);
            if s >= e {
                continue;
            }
            let total: f64 = a[s..e].iter().map(|&c| c as f64).sum();
            let nz = (s..e).filter(|&b| p[b] > 0.0).count();
            if nz > 0 {
                for b in s..e {
                    if p[b] > 0.0 {
                        q[b] = total / nz as f64;
                    }
                }
            }
        }
        let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        p.iter_mut().for_each(|v| *v /= ps);
        q.iter_mut().for_each(|v| *v /= qs);
        smooth(&mut p);
        smooth(&mut q);
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(pv, _)| **pv > 0.0)
            .map(|(pv, qv)| pv * (pv / qv).ln())
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    let t = best.1 as f64 * w;
    clamp_range(-t, t, mn, mx)
}

fn mse_range(h: &Hist, mn: f32, mx: f32, scheme: &QuantScheme) -> (f32, f32) {
    const STEPS: usize = 200;
    let (qmin, qmax) = scheme.qrange();
    let levels = f64::from(qmax - qmin);
    let w = h.width();
    let r = f64::from(h.r);
    let centers: Vec<(f64, f64)> = h
        .counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(b, &c)| (-r + (b as f64 + 0.5) * w, c as f64))
        .collect();
    let (mn0, mx0) = (f64::from(mn.min(0.0)), f64::from(mx.max(0.0)));
    let absmax = mn0.abs().max(mx0);
    let mut best = (f64::INFINITY, (mn, mx));
    for k in 1..=STEPS {
        let alpha = k as f64 / STEPS as f64;
        let (lo, hi, step) = if scheme.symmetric {
            let t = absmax * alpha;
            (-t, t, 2.0 * t / levels)
        } else {
            let (lo, hi) = (mn0 * alpha, mx0 * alpha);
            (lo, hi, (hi - lo) / levels)
        };
        if step <= 0.0 {
            continue;
        }
        // Values inside the range get uniform rounding noise step^2 / 12; values outside
        // are clipped to the nearest end.
        let err: f64 = centers
            .iter()
            .map(|&(c, n)| {
                let e2 = if c < lo {
                    (lo - c).powi(2)
                } else if c > hi {
                    (c - hi).powi(2)
                } else {
                    step * step / 12.0
                };
                n * e2
            })
            .sum();
        if err < best.0 {
            best = (err, clamp_range(lo, hi, mn, mx));
        }
    }
    best.1
}
