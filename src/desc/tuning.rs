//! The autotuning cache: its keys ([`ShapeClass`], [`AdapterKey`]), entries ([`Tuned`],
//! [`Choice`]) and JSON file. Plain data that a [`crate::Context`] holds and the plan
//! reads; the tuner that fills it is [`crate::tuning`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::desc::conv::ConvShape;
use crate::desc::gemm::{GemmDesc, GemmKernel};
use crate::desc::rows::RowTile;
use crate::error::{Error, Result};

/// The version of the JSON layout this crate writes and reads.
pub const CACHE_VERSION: u32 = 1;

/// A kernel configuration the plan can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// An FP32 GEMM kernel.
    Gemm(GemmKernel),
    /// A row-kernel tile (W8A8, weight-only and FP16 GEMM, float convolution).
    Rows(RowTile),
}

impl Choice {
    /// A short human-readable name: `subgroup wg64 16x8`, `reg wg64 1x4 ku4 split-K 8`,
    /// `rows wg64 4x8`.
    pub fn label(&self) -> String {
        let split = |s: u32| {
            if s > 1 {
                format!(" split-K {s}")
            } else {
                String::new()
            }
        };
        match *self {
            Choice::Gemm(GemmKernel::Tiled(c)) => format!(
                "tiled {}x{} ({}x{} per inv, bk {})",
                c.wg_y * c.tm,
                c.wg_x * c.tn,
                c.tm,
                c.tn,
                c.bk
            ),
            Choice::Gemm(GemmKernel::Register(c)) => format!(
                "reg wg{} {}x{} ku{}{}",
                c.wg,
                c.tm,
                c.tn4 * 4,
                c.ku,
                split(c.split_k)
            ),
            Choice::Gemm(GemmKernel::Subgroup(c)) => {
                format!("subgroup wg{} {}x{}", c.wg, c.tm, c.tn4 * 4)
            }
            Choice::Rows(t) => {
                format!("rows wg{} {}x{}{}", t.wg, t.tm, t.tn4 * 4, split(t.split_k))
            }
        }
    }
}

/// `m` as the tuning cache buckets it: exact up to 8 (GEMV-like shapes differ per row
/// count), else the next power of two.
pub fn bucket(m: usize) -> usize {
    if m <= 8 {
        m
    } else {
        m.next_power_of_two()
    }
}

/// The key of a tuned plan: op, dtype and the shape bucketed ([`bucket`] for M, the
/// next power of two for N and K).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShapeClass(pub String);

impl ShapeClass {
    /// An FP32 GEMM (transposes and batching are part of the class).
    pub fn gemm(d: &GemmDesc) -> ShapeClass {
        ShapeClass(format!(
            "gemm f32 m{} n{} k{} {}{}{}",
            bucket(d.m),
            d.n.next_power_of_two(),
            d.k.next_power_of_two(),
            if d.trans_a { 't' } else { 'n' },
            if d.trans_b { 't' } else { 'n' },
            if d.batch > 1 { " batched" } else { "" }
        ))
    }

    /// A W8A8 GEMM (linear layers; `m` rows of activations, `n x k` weight).
    pub fn qgemm(m: usize, n: usize, k: usize) -> ShapeClass {
        ShapeClass(format!(
            "qgemm w8a8 m{} n{} k{}",
            bucket(m),
            n.next_power_of_two(),
            k.next_power_of_two()
        ))
    }

    /// A convolution's implicit GEMM with `dtype` storage (`"f32"`, `"f16"` or `"w8a8"`):
    /// output pixels, channels per group (input and output), kernel and stride are part
    /// of the class.
    pub fn conv(s: &ConvShape, dtype: &str) -> ShapeClass {
        let d = s.dims;
        ShapeClass(format!(
            "conv {dtype} m{} n{} c{} k{}x{} s{}x{}{}",
            bucket(s.rows()),
            (d.out_channels / d.groups).next_power_of_two(),
            (d.in_channels / d.groups).next_power_of_two(),
            d.kernel[0],
            d.kernel[1],
            s.stride[0],
            s.stride[1],
            if d.groups > 1 { " grouped" } else { "" }
        ))
    }

    /// A weight-only or FP16 GEMM with `wtype` weights.
    pub fn wgemm(m: usize, n: usize, k: usize, wtype: &str) -> ShapeClass {
        ShapeClass(format!(
            "wgemm {wtype} m{} n{} k{}",
            bucket(m),
            n.next_power_of_two(),
            k.next_power_of_two()
        ))
    }
}

/// Identifies an adapter and its driver: tuned plans apply only where all of it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterKey {
    /// Adapter name.
    pub name: String,
    /// PCI vendor id (0 where the backend has none).
    pub vendor: u32,
    /// PCI device id.
    pub device: u32,
    /// Driver name.
    pub driver: String,
    /// Driver version string.
    pub driver_info: String,
    /// Backend (`Vulkan`, `Metal`, `Dx12`, `Gl`).
    pub backend: String,
}

impl AdapterKey {
    /// The key of `info`.
    pub fn of(info: &wgpu::AdapterInfo) -> AdapterKey {
        AdapterKey {
            name: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            backend: format!("{:?}", info.backend),
        }
    }
}

/// One tuned shape class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// The chosen configuration.
    pub choice: Choice,
    /// Its median time, milliseconds, on the shape that was tuned.
    pub median_ms: f64,
    /// The heuristic's configuration.
    pub default: Choice,
    /// The heuristic's median time in the same run, milliseconds.
    pub default_ms: f64,
    /// The shape that was tuned (`m x n x k`).
    pub shape: [usize; 3],
    /// Candidates that compiled and gave the right result.
    pub verified: usize,
    /// Candidates left out, with the reason (validation error, wrong result).
    pub rejected: Vec<String>,
    /// `timestamps` or `wall`.
    pub clock: String,
}

impl Tuned {
    /// How much faster the choice is than the default (`default_ms / median_ms`).
    pub fn speedup(&self) -> f64 {
        self.default_ms / self.median_ms
    }
}

/// The tuned classes of one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterEntry {
    /// The adapter.
    pub adapter: AdapterKey,
    /// Tuned plans by shape class.
    pub entries: BTreeMap<ShapeClass, Tuned>,
}

/// Tuned plans of any number of adapters, as saved to and loaded from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneCache {
    /// [`CACHE_VERSION`].
    pub version: u32,
    /// One entry per adapter.
    pub adapters: Vec<AdapterEntry>,
}

impl Default for TuneCache {
    fn default() -> Self {
        TuneCache {
            version: CACHE_VERSION,
            adapters: Vec::new(),
        }
    }
}

impl TuneCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a cache from JSON (`path` names the source in errors).
    pub fn from_json(json: &str, path: &str) -> Result<TuneCache> {
        let cache: TuneCache = serde_json::from_str(json).map_err(|e| Error::File {
            path: path.to_string(),
            message: format!("not a wgpu-quant tuning cache: {e}"),
        })?;
        if cache.version != CACHE_VERSION {
            return Err(Error::File {
                path: path.to_string(),
                message: format!(
                    "tuning cache version {} (this wgpu-quant reads version {CACHE_VERSION}); \
                     tune again",
                    cache.version
                ),
            });
        }
        Ok(cache)
    }

    /// The cache as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the cache serializes")
    }

    /// Loads a cache from a JSON file.
    pub fn load(path: impl AsRef<Path>) -> Result<TuneCache> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| Error::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, &p.display().to_string())
    }

    /// Loads a cache from a JSON file, or an empty cache when the file does not exist.
    pub fn load_or_default(path: impl AsRef<Path>) -> Result<TuneCache> {
        if path.as_ref().exists() {
            Self::load(path)
        } else {
            Ok(Self::default())
        }
    }

    /// Writes the cache as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let p = path.as_ref();
        std::fs::write(p, self.to_json()).map_err(|e| Error::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })
    }

    /// The tuned plan of `class` on `adapter`.
    pub fn get(&self, adapter: &AdapterKey, class: &ShapeClass) -> Option<&Tuned> {
        self.adapters
            .iter()
            .find(|a| &a.adapter == adapter)
            .and_then(|a| a.entries.get(class))
    }

    /// Stores a tuned plan, replacing any for the same adapter and class.
    pub fn insert(&mut self, adapter: AdapterKey, class: ShapeClass, tuned: Tuned) {
        match self.adapters.iter_mut().find(|a| a.adapter == adapter) {
            Some(a) => {
                a.entries.insert(class, tuned);
            }
            None => self.adapters.push(AdapterEntry {
                adapter,
                entries: BTreeMap::from([(class, tuned)]),
            }),
        }
    }

    /// Number of tuned classes over all adapters.
    pub fn len(&self) -> usize {
        self.adapters.iter().map(|a| a.entries.len()).sum()
    }

    /// True when nothing is tuned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
