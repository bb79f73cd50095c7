//! The autotuning cache: its keys ([`ShapeClass`], [`AdapterKey`]), entries ([`Tuned`],
//! [`Choice`]) and JSON file. Plain data that a [`crate::Context`] holds and the plan
//! reads; the tuner that fills it is [`crate::tuning`].

use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::desc::conv::ConvShape;
use crate::desc::gemm::{GemmDesc, GemmKernel};
use crate::desc::rows::RowTile;
use crate::desc::wgemm::CoopTile;
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
    /// A block of the FP16 GEMM on cooperative matrices.
    Coop(CoopTile),
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
            Choice::Coop(t) => format!("coop {}x{}{}", t.rows(), t.columns(), split(t.split_k)),
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

/// The storage of a convolution's implicit GEMM: part of its shape class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvKind {
    /// f32 activations and weights.
    F32,
    /// f16 activations and weights, with the plan's arithmetic.
    F16,
    /// u8 activations (per tensor) and i8 weights (per output channel).
    W8A8,
}

impl ConvKind {
    /// Every kind.
    pub const ALL: [ConvKind; 3] = [ConvKind::F32, ConvKind::F16, ConvKind::W8A8];

    /// The name in shape classes and labels: `f32`, `f16`, `w8a8`.
    pub fn name(self) -> &'static str {
        match self {
            ConvKind::F32 => "f32",
            ConvKind::F16 => "f16",
            ConvKind::W8A8 => "w8a8",
        }
    }
}

/// The weights of a weight-only or FP16 GEMM: part of its shape class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightType {
    /// Signed 8-bit codes.
    I8,
    /// Unsigned 8-bit codes.
    U8,
    /// Signed 4-bit codes.
    I4,
    /// Unsigned 4-bit codes.
    U4,
    /// f16 weights (the FP16 GEMM).
    F16,
}

impl WeightType {
    /// Every type.
    pub const ALL: [WeightType; 5] = [
        WeightType::I8,
        WeightType::U8,
        WeightType::I4,
        WeightType::U4,
        WeightType::F16,
    ];

    /// The name in shape classes: `i8`, `u8`, `i4`, `u4`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            WeightType::I8 => "i8",
            WeightType::U8 => "u8",
            WeightType::I4 => "i4",
            WeightType::U4 => "u4",
            WeightType::F16 => "f16",
        }
    }

    /// The weight type of quantized codes of `q` (`None` for types the weight-only GEMM
    /// does not take).
    pub fn of_codes(q: crate::quant::QType) -> Option<WeightType> {
        use crate::quant::QType;
        match q {
            QType::I8 => Some(WeightType::I8),
            QType::U8 => Some(WeightType::U8),
            QType::I4 => Some(WeightType::I4),
            QType::U4 => Some(WeightType::U4),
            _ => None,
        }
    }

    /// Values per 32-bit word of the weight.
    pub fn per_word(self) -> u32 {
        match self {
            WeightType::I8 | WeightType::U8 => 4,
            WeightType::I4 | WeightType::U4 => 8,
            WeightType::F16 => 2,
        }
    }
}

/// A shape the plan met without a tuned entry, as the learner receives it
/// ([`crate::context::Context::set_learner`], [`crate::tuning::learn`]): enough to tune it.
#[derive(Debug, Clone, PartialEq)]
pub enum TuneRequest {
    /// An FP32 GEMM.
    Gemm(GemmDesc),
    /// A W8A8 GEMM, `m x n x k`.
    QGemm {
        /// Rows of activations.
        m: usize,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
    },
    /// A weight-only or FP16 GEMM with `wtype` weights.
    WGemm {
        /// Rows of activations.
        m: usize,
        /// Output features.
        n: usize,
        /// Input features.
        k: usize,
        /// The weight type.
        wtype: WeightType,
    },
    /// A convolution's implicit GEMM.
    Conv {
        /// The convolution's geometry.
        shape: ConvShape,
        /// Its storage.
        kind: ConvKind,
    },
}

impl TuneRequest {
    /// The shape class a tuned result is stored under.
    pub fn class(&self) -> ShapeClass {
        match self {
            TuneRequest::Gemm(d) => ShapeClass::gemm(d),
            &TuneRequest::QGemm { m, n, k } => ShapeClass::qgemm(m, n, k),
            &TuneRequest::WGemm { m, n, k, wtype } => ShapeClass::wgemm(m, n, k, wtype),
            TuneRequest::Conv { shape, kind } => ShapeClass::conv(shape, *kind),
        }
    }
}

/// The key of a tuned plan: op, dtype and the shape bucketed ([`bucket`] for M, the next
/// power of two for N, K and channels). Written to JSON as its text form, e.g.
/// `gemm f32 m16 n256 k512 nt`, `qgemm w8a8 m1 n4096 k4096`,
/// `conv w8a8 m4096 n64 c64 k3x3 s1x1`, `wgemm i4 m2 n4096 k4096`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShapeClass {
    /// An FP32 GEMM (transposes and batching are part of the class).
    Gemm {
        /// Bucketed rows.
        m: usize,
        /// Columns, next power of two.
        n: usize,
        /// Reduction, next power of two.
        k: usize,
        /// A stored transposed.
        trans_a: bool,
        /// B stored transposed.
        trans_b: bool,
        /// More than one matrix.
        batched: bool,
    },
    /// A W8A8 GEMM.
    QGemm {
        /// Bucketed rows.
        m: usize,
        /// Output channels, next power of two.
        n: usize,
        /// Reduction, next power of two.
        k: usize,
    },
    /// A convolution's implicit GEMM.
    Conv {
        /// Its storage.
        kind: ConvKind,
        /// Bucketed output pixels.
        m: usize,
        /// Output channels per group, next power of two.
        n: usize,
        /// Input channels per group, next power of two.
        c: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Strides.
        stride: [usize; 2],
        /// More than one group.
        grouped: bool,
    },
    /// A weight-only or FP16 GEMM.
    WGemm {
        /// The weights.
        wtype: WeightType,
        /// Bucketed rows.
        m: usize,
        /// Output channels, next power of two.
        n: usize,
        /// Reduction, next power of two.
        k: usize,
    },
}

impl ShapeClass {
    /// An FP32 GEMM.
    pub fn gemm(d: &GemmDesc) -> ShapeClass {
        ShapeClass::Gemm {
            m: bucket(d.m),
            n: d.n.next_power_of_two(),
            k: d.k.next_power_of_two(),
            trans_a: d.trans_a,
            trans_b: d.trans_b,
            batched: d.batch > 1,
        }
    }

    /// A W8A8 GEMM (linear layers; `m` rows of activations, `n x k` weight).
    pub fn qgemm(m: usize, n: usize, k: usize) -> ShapeClass {
        ShapeClass::QGemm {
            m: bucket(m),
            n: n.next_power_of_two(),
            k: k.next_power_of_two(),
        }
    }

    /// A convolution's implicit GEMM with `kind` storage: output pixels, channels per
    /// group (input and output), kernel and stride are part of the class.
    pub fn conv(s: &ConvShape, kind: ConvKind) -> ShapeClass {
        let d = s.dims;
        ShapeClass::Conv {
            kind,
            m: bucket(s.rows()),
            n: (d.out_channels / d.groups).next_power_of_two(),
            c: (d.in_channels / d.groups).next_power_of_two(),
            kernel: d.kernel,
            stride: s.stride,
            grouped: d.groups > 1,
        }
    }

    /// A weight-only or FP16 GEMM with `wtype` weights.
    pub fn wgemm(m: usize, n: usize, k: usize, wtype: WeightType) -> ShapeClass {
        ShapeClass::WGemm {
            wtype,
            m: bucket(m),
            n: n.next_power_of_two(),
            k: k.next_power_of_two(),
        }
    }
}

impl std::fmt::Display for ShapeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |b: bool| if b { 't' } else { 'n' };
        match *self {
            ShapeClass::Gemm {
                m,
                n,
                k,
                trans_a,
                trans_b,
                batched,
            } => write!(
                f,
                "gemm f32 m{m} n{n} k{k} {}{}{}",
                t(trans_a),
                t(trans_b),
                if batched { " batched" } else { "" }
            ),
            ShapeClass::QGemm { m, n, k } => write!(f, "qgemm w8a8 m{m} n{n} k{k}"),
            ShapeClass::Conv {
                kind,
                m,
                n,
                c,
                kernel,
                stride,
                grouped,
            } => write!(
                f,
                "conv {} m{m} n{n} c{c} k{}x{} s{}x{}{}",
                kind.name(),
                kernel[0],
                kernel[1],
                stride[0],
                stride[1],
                if grouped { " grouped" } else { "" }
            ),
            ShapeClass::WGemm { wtype, m, n, k } => {
                write!(f, "wgemm {} m{m} n{n} k{k}", wtype.name())
            }
        }
    }
}

impl std::str::FromStr for ShapeClass {
    type Err = Error;

    /// Parses the text form of [`std::fmt::Display`] (the JSON cache's keys).
    fn from_str(s: &str) -> Result<ShapeClass> {
        let bad = || Error::invalid("tuning cache", format!("'{s}' is not a shape class"));
        let words: Vec<&str> = s.split(' ').collect();
        let num = |w: &str, p: &str| -> Result<usize> {
            w.strip_prefix(p)
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)
        };
        let pair = |w: &str, p: &str| -> Result<[usize; 2]> {
            let (a, b) = w
                .strip_prefix(p)
                .and_then(|v| v.split_once('x'))
                .ok_or_else(bad)?;
            Ok([a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?])
        };
        let flag = |rest: &[&str], word: &str| -> Result<bool> {
            match rest {
                [] => Ok(false),
                [w] if *w == word => Ok(true),
                _ => Err(bad()),
            }
        };
        match words.as_slice() {
            ["gemm", "f32", m, n, k, tt, rest @ ..] => {
                let tt: Vec<char> = tt.chars().collect();
                let tr = |c: char| match c {
                    'n' => Ok(false),
                    't' => Ok(true),
                    _ => Err(bad()),
                };
                let [a, b] = tt[..] else { return Err(bad()) };
                Ok(ShapeClass::Gemm {
                    m: num(m, "m")?,
                    n: num(n, "n")?,
                    k: num(k, "k")?,
                    trans_a: tr(a)?,
                    trans_b: tr(b)?,
                    batched: flag(rest, "batched")?,
                })
            }
            ["qgemm", "w8a8", m, n, k] => Ok(ShapeClass::QGemm {
                m: num(m, "m")?,
                n: num(n, "n")?,
                k: num(k, "k")?,
            }),
            ["conv", kind, m, n, c, kernel, stride, rest @ ..] => Ok(ShapeClass::Conv {
                kind: ConvKind::ALL
                    .into_iter()
                    .find(|x| x.name() == *kind)
                    .ok_or_else(bad)?,
                m: num(m, "m")?,
                n: num(n, "n")?,
                c: num(c, "c")?,
                kernel: pair(kernel, "k")?,
                stride: pair(stride, "s")?,
                grouped: flag(rest, "grouped")?,
            }),
            ["wgemm", wtype, m, n, k] => Ok(ShapeClass::WGemm {
                wtype: WeightType::ALL
                    .into_iter()
                    .find(|x| x.name() == *wtype)
                    .ok_or_else(bad)?,
                m: num(m, "m")?,
                n: num(n, "n")?,
                k: num(k, "k")?,
            }),
            _ => Err(bad()),
        }
    }
}

// Ordered by the text form, so that a saved cache lists its classes as before.
impl PartialOrd for ShapeClass {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShapeClass {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl Serialize for ShapeClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShapeClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
    /// Every verified candidate's median time, milliseconds, in the order tried (kept in
    /// the file for reading which configurations came close; the plan reads `choice`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<(Choice, f64)>,
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<Path>) -> Result<TuneCache> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| Error::File {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, &p.display().to_string())
    }

    /// Loads a cache from a JSON file, or an empty cache when the file does not exist.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_or_default(path: impl AsRef<Path>) -> Result<TuneCache> {
        if path.as_ref().exists() {
            Self::load(path)
        } else {
            Ok(Self::default())
        }
    }

    /// Writes the cache as JSON.
    #[cfg(not(target_arch = "wasm32"))]
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
