//! Labelled samples on the host, and seeded shuffled mini-batches of them.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{Error, Result};

const OP: &str = "Dataset";

/// Labelled samples: `images` holds `labels.len()` samples of `sample` (`[H, W, C]`,
/// NHWC, f32) one after the other.
#[derive(Debug, Clone)]
pub struct Dataset {
    images: Vec<f32>,
    labels: Vec<u32>,
    sample: [usize; 3],
}

impl Dataset {
    /// The samples, checked: `images` must hold exactly one `sample` per label, every
    /// value finite.
    pub fn new(images: Vec<f32>, labels: Vec<u32>, sample: [usize; 3]) -> Result<Dataset> {
        let per = sample
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::shape(OP, format!("sample shape {sample:?} is empty or overflows"))
            })?;
        let want = per.checked_mul(labels.len());
        if labels.is_empty() || want != Some(images.len()) {
            return Err(Error::shape(
                OP,
                format!(
                    "{} labels of samples {sample:?} need {} values; the images hold {}",
                    labels.len(),
                    want.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                    images.len()
                ),
            ));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                OP,
                format!(
                    "sample {} holds {} at index {}",
                    i / per,
                    images[i],
                    i % per
                ),
            ));
        }
        Ok(Dataset {
            images,
            labels,
            sample,
        })
    }

    /// Samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none (never: [`Dataset::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[H, W, C]` of one sample.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.sample
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample.iter().product()
    }

    /// Sample `i`'s values.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The samples `idx` one after the other, and their labels.
    pub fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(idx.len() * self.sample_len());
        for &i in idx {
            x.extend_from_slice(self.image(i));
        }
        (x, idx.iter().map(|&i| self.labels[i]).collect())
    }

    /// The first `n` samples of each label, in order (a balanced calibration set).
    pub fn first_of_each_class(&self, n: usize) -> Vec<usize> {
        let mut seen = std::collections::BTreeMap::new();
        (0..self.len())
            .filter(|&i| {
                let c = seen.entry(self.labels[i]).or_insert(0usize);
                *c += 1;
                *c <= n
            })
            .collect()
    }
}

/// The sample order of every epoch: a permutation drawn from a generator seeded once
/// with `seed`, epoch after epoch (the same seed, the same orders).
#[derive(Debug)]
pub(crate) struct Shuffler {
    rng: rand::rngs::StdRng,
}

impl Shuffler {
    pub(crate) fn new(seed: u64) -> Shuffler {
        Shuffler {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    /// The next epoch's order of `n` samples.
    pub(crate) fn epoch(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        order
    }

    /// A standard normal value (Box-Muller on two uniform draws).
    pub(crate) fn normal(&mut self) -> f64 {
        use rand::RngExt;
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
