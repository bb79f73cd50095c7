//! Quantization as users know it: integer types, scale and zero point, symmetric and
//! asymmetric ranges, per-tensor / per-channel / per-group / per-row granularity, the
//! exact rounding rules, and packing for the GPU. Plain data and CPU arithmetic; the
//! observers that calibrate ranges on the GPU are [`crate::calib`].
//!
//! The formulas (docs/QUANTIZATION.md has the full derivation and the degenerate cases):
//!
//! - quantize: `q = clamp(round_half_even(x / S) + Z, qmin, qmax)`, with `x / S` the
//!   IEEE f32 quotient, exactly as ONNX `QuantizeLinear` computes it;
//! - dequantize: `x' = S * (q - Z)` in f32;
//! - from an observed range: `rmin = min(min, 0)`, `rmax = max(max, 0)`; asymmetric
//!   `S = (rmax - rmin) / (qmax - qmin)`, `Z = clamp(round(qmin - rmin / S))`; symmetric
//!   `S = max(|rmin|, rmax) / ((qmax - qmin) / 2)` and `Z` the middle of the range (0 for
//!   signed types, 128 for `U8`, 8 for `U4`).
//!
//! The GPU kernels in [`crate::ops::quant`] produce the same integers as the functions
//! here, bit for bit, on every adapter (a WGSL division is only accurate to 2.5 ulp, so
//! the kernels redo the few quotients that fall near a rounding tie with an exact
//! integer division).
//!
//! ```
//! use wgpu_quant::quant::{QType, QuantParams, QuantScheme};
//! let x = [-1.0f32, 0.0, 0.5, 2.0];
//! let params = QuantParams::from_data(&QuantScheme::asymmetric(QType::U8), &[4], &x).unwrap();
//! assert_eq!(params.zero_points(), [85]); // rmin = -1, S = 3/255: Z = round(85.0)
//! let q = params.quantize(&x).unwrap();
//! assert_eq!(q, vec![0, 85, 127, 255]); // 0.5 / S = 42.5 rounds half to even: 42
//! let back = params.dequantize(&q).unwrap();
//! assert!((back[2] - 0.5).abs() <= params.scales()[0] / 2.0);
//! assert_eq!(back[1], 0.0); // zero is exact
//! ```

pub mod pack;

use std::fmt;

use crate::error::{Error, Result};

pub use pack::PackedLayout;

/// Smallest scale ever produced: the smallest normal f32. Scales are clamped up to it so
/// that no zero or subnormal scale reaches a kernel.
pub const MIN_SCALE: f32 = f32::MIN_POSITIVE;
/// Largest scale ever produced (2^126). Ranges wider than `MAX_SCALE * (qmax - qmin)`
/// saturate.
pub const MAX_SCALE: f32 = 8.507_059e37;
/// `|x / S|` is clamped to this before the zero point is added, which keeps every
/// intermediate an exact integer in f32 and i32 (it is far outside every integer range).
pub const QUOTIENT_LIMIT: f32 = 1_048_576.0;

/// An integer storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QType {
    /// Signed 4-bit, two's complement, -8..=7, eight per `u32`.
    I4,
    /// Unsigned 4-bit, 0..=15, eight per `u32`.
    U4,
    /// Signed 8-bit, -128..=127, four per `u32`.
    I8,
    /// Unsigned 8-bit, 0..=255, four per `u32`.
    U8,
    /// Signed 16-bit, two per `u32`.
    I16,
    /// Unsigned 16-bit, two per `u32`.
    U16,
}

impl QType {
    /// Every supported type.
    pub const ALL: [QType; 6] = [
        QType::I4,
        QType::U4,
        QType::I8,
        QType::U8,
        QType::I16,
        QType::U16,
    ];

    /// Bits per value.
    pub const fn bits(self) -> u32 {
        match self {
            QType::I4 | QType::U4 => 4,
            QType::I8 | QType::U8 => 8,
            QType::I16 | QType::U16 => 16,
        }
    }

    /// Values packed in one `u32` word.
    pub const fn per_word(self) -> usize {
        (32 / self.bits()) as usize
    }

    /// Two's complement (signed) or not.
    pub const fn signed(self) -> bool {
        matches!(self, QType::I4 | QType::I8 | QType::I16)
    }

    /// Smallest representable value.
    pub const fn qmin(self) -> i32 {
        if self.signed() {
            -(1 << (self.bits() - 1))
        } else {
            0
        }
    }

    /// Largest representable value.
    pub const fn qmax(self) -> i32 {
        if self.signed() {
            (1 << (self.bits() - 1)) - 1
        } else {
            (1 << self.bits()) - 1
        }
    }

    /// Lower-case name (`i8`, `u4`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            QType::I4 => "i4",
            QType::U4 => "u4",
            QType::I8 => "i8",
            QType::U8 => "u8",
            QType::I16 => "i16",
            QType::U16 => "u16",
        }
    }
}

impl fmt::Display for QType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which elements share one scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One pair for the whole tensor.
    PerTensor,
    /// One pair per index along `axis` (per output channel of a weight: axis 0 of a
    /// `[out, in]` Linear weight or an `[out, in, kh, kw]` conv weight).
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// One pair per block of `group_size` consecutive values along `axis` (the reduction
    /// axis, usually the last), for every index of the other axes: ONNX's blocked
    /// quantization. The last block of a row may be short. 32, 64 and 128 are the usual
    /// sizes for 4-bit weights; any size of at least 1 works.
    PerGroup {
        /// The blocked axis.
        axis: usize,
        /// Values per block.
        group_size: usize,
    },
    /// One pair per row of the tensor seen as `[numel / last_dim, last_dim]`: per token
    /// of a `[batch, seq, hidden]` activation, for dynamic quantization.
    PerRow,
}

/// How a tensor's elements map to its parameter slots. The tensor is viewed as
/// `[outer, axis_len, inner]`; element `(o, a, i)` uses slot
/// `o * outer_stride + (a / block) * axis_stride + i * inner_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// Product of the dims before the axis.
    pub outer: usize,
    /// Length of the axis.
    pub axis_len: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
    /// Values of the axis per slot.
    pub block: usize,
    /// Slot stride of the outer index.
    pub outer_stride: usize,
    /// Slot stride of the block index along the axis.
    pub axis_stride: usize,
    /// Slot stride of the inner index.
    pub inner_stride: usize,
    /// Number of slots.
    pub slots: usize,
}

impl SlotLayout {
    /// Whether slot `r` covers exactly row `r` of the tensor seen as `[rows, cols]`
    /// (per-row, per-channel on the second-to-last axis, or one group per row along the
    /// last axis).
    pub fn is_per_row(&self, rows: usize, cols: usize) -> bool {
        let by_axis = self.outer == 1
            && self.axis_len == rows
            && self.inner == cols
            && self.block == 1
            && self.axis_stride == 1;
        let by_group = self.outer == rows
            && self.axis_len == cols
            && self.inner == 1
            && self.block >= cols
            && self.outer_stride == 1;
        self.slots == rows && (by_axis || by_group)
    }

    /// Slot of flat element `flat`.
    pub fn slot(&self, flat: usize) -> usize {
        let i = flat % self.inner;
        let a = (flat / self.inner) % self.axis_len;
        let o = flat / (self.inner * self.axis_len);
        o * self.outer_stride + (a / self.block) * self.axis_stride + i * self.inner_stride
    }
}

impl Granularity {
    /// The slot layout of this granularity over a tensor of `shape`.
    pub fn layout(&self, op: &'static str, shape: &[usize]) -> Result<SlotLayout> {
        let numel = crate::error::checked_numel(op, shape)?;
        let split = |axis: usize| -> Result<(usize, usize, usize)> {
            if axis >= shape.len() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "axis {axis} is out of range for a tensor of shape {shape:?} ({} dims)",
                        shape.len()
                    ),
                ));
            }
            let outer = shape[..axis].iter().product::<usize>().max(1);
            let inner = shape[axis + 1..].iter().product::<usize>().max(1);
            Ok((outer, shape[axis].max(1), inner))
        };
        Ok(match *self {
            Granularity::PerTensor => SlotLayout {
                outer: 1,
                axis_len: numel.max(1),
                inner: 1,
                block: numel.max(1),
                outer_stride: 0,
                axis_stride: 0,
                inner_stride: 0,
                slots: 1,
            },
            Granularity::PerChannel { axis } => {
                let (outer, axis_len, inner) = split(axis)?;
                SlotLayout {
                    outer,
                    axis_len,
                    inner,
                    block: 1,
                    outer_stride: 0,
                    axis_stride: 1,
                    inner_stride: 0,
                    slots: axis_len,
                }
            }
            Granularity::PerGroup { axis, group_size } => {
                if group_size == 0 {
                    return Err(Error::invalid(op, "group_size must be at least 1"));
                }
                let (outer, axis_len, inner) = split(axis)?;
                let nblocks = axis_len.div_ceil(group_size);
                SlotLayout {
                    outer,
                    axis_len,
                    inner,
                    block: group_size,
                    outer_stride: nblocks * inner,
                    axis_stride: inner,
                    inner_stride: 1,
                    slots: outer * nblocks * inner,
                }
            }
            Granularity::PerRow => {
                let cols = shape.last().copied().unwrap_or(1).max(1);
                let rows = (numel / cols).max(1);
                SlotLayout {
                    outer: 1,
                    axis_len: rows,
                    inner: cols,
                    block: 1,
                    outer_stride: 0,
                    axis_stride: 1,
                    inner_stride: 0,
                    slots: rows,
                }
            }
        })
    }
}

/// A quantization recipe: the type, symmetric or not, the range and the granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantScheme {
    /// Storage type.
    pub qtype: QType,
    /// Symmetric: `Z` is the middle of the range and `S` comes from `max |x|`.
    pub symmetric: bool,
    /// Signed types only: use `-qmax..=qmax` (e.g. -127..=127), dropping the most
    /// negative value, as some INT8 GEMM libraries require.
    pub restricted_range: bool,
    /// Which elements share parameters.
    pub granularity: Granularity,
    /// Codes of a lower bit width stored in the type (`None`: the type's own width):
    /// 4 bits in `U8` are the codes 0..=15, in `I8` -8..=7 (-7..=7 restricted). The
    /// integer kernels read them as the type's codes, so they stay exact.
    pub code_bits: Option<u32>,
}

impl QuantScheme {
    /// Per-tensor quantization, symmetric or asymmetric, full range.
    pub fn new(qtype: QType, symmetric: bool) -> Self {
        QuantScheme {
            qtype,
            symmetric,
            restricted_range: false,
            granularity: Granularity::PerTensor,
            code_bits: None,
        }
    }

    /// Asymmetric (affine) per-tensor quantization.
    pub fn asymmetric(qtype: QType) -> Self {
        Self::new(qtype, false)
    }

    /// Symmetric per-tensor quantization.
    pub fn symmetric(qtype: QType) -> Self {
        Self::new(qtype, true)
    }

    /// The same scheme with another granularity.
    pub fn with_granularity(self, granularity: Granularity) -> Self {
        QuantScheme {
            granularity,
            ..self
        }
    }

    /// The same scheme, per channel along `axis`.
    pub fn per_channel(self, axis: usize) -> Self {
        self.with_granularity(Granularity::PerChannel { axis })
    }

    /// The same scheme, per block of `group_size` along `axis`.
    pub fn per_group(self, axis: usize, group_size: usize) -> Self {
        self.with_granularity(Granularity::PerGroup { axis, group_size })
    }

    /// The same scheme with the restricted (symmetric) integer range.
    pub fn restricted(self) -> Self {
        QuantScheme {
            restricted_range: true,
            ..self
        }
    }

    /// The same scheme with codes of `bits` bits (2 up to the type's width) stored in
    /// the type: a low bit width on the 8-bit kernels.
    pub fn with_bits(self, bits: u32) -> Result<Self> {
        let width = self.qtype.bits();
        if !(2..=width).contains(&bits) {
            return Err(Error::invalid(
                "QuantScheme::with_bits",
                format!(
                    "{bits} bits: {} holds codes of 2 to {width} bits",
                    self.qtype
                ),
            ));
        }
        Ok(QuantScheme {
            code_bits: (bits < width).then_some(bits),
            ..self
        })
    }

    /// The integer range `(qmin, qmax)` values are clamped to.
    pub fn qrange(&self) -> (i32, i32) {
        let (lo, hi) = match self.code_bits {
            Some(b) if self.qtype.signed() => (-(1 << (b - 1)), (1 << (b - 1)) - 1),
            Some(b) => (0, (1 << b) - 1),
            None => (self.qtype.qmin(), self.qtype.qmax()),
        };
        if self.restricted_range && self.qtype.signed() {
            (lo + 1, hi)
        } else {
            (lo, hi)
        }
    }

    /// Scale and zero point for one observed range `[min, max]` (non-finite bounds are
    /// treated as 0; the range is extended to include 0). Never returns a zero, subnormal
    /// or non-finite scale. This is the function the GPU's dynamic quantization mirrors.
    pub fn params_for_range(&self, min: f32, max: f32) -> (f32, i32) {
        let (qmin, qmax) = self.qrange();
        params_for_range(min, max, qmin, qmax, self.symmetric)
    }
}

/// See [`QuantScheme::params_for_range`]. The arithmetic is f32, step by step as the
/// WGSL kernel does it, so the two agree bit for bit.
pub fn params_for_range(min: f32, max: f32, qmin: i32, qmax: i32, symmetric: bool) -> (f32, i32) {
    let min0 = if min.is_finite() { min.min(0.0) } else { 0.0 };
    let max0 = if max.is_finite() { max.max(0.0) } else { 0.0 };
    let levels = (qmax - qmin) as f32;
    let zsym = if qmin < 0 { 0 } else { (qmin + qmax + 1) / 2 };
    // Both ends below the smallest normal f32 (subnormals included, which a GPU may
    // flush to zero): the data is zero for quantization purposes.
    let scale = if (-min0).max(max0) < f32::MIN_POSITIVE {
        1.0
    } else if symmetric {
        ((-min0).max(max0) / (levels * 0.5)).clamp(MIN_SCALE, MAX_SCALE)
    } else if max0 * 0.5 - min0 * 0.5 >= 1.701_411_8e38 {
        // rmax - rmin overflows f32 (the halves cannot).
        MAX_SCALE
    } else {
        ((max0 - min0) / levels).clamp(MIN_SCALE, MAX_SCALE)
    };
    let zero = if symmetric {
        zsym
    } else {
        let z = (qmin as f32 - min0 / scale).round_ties_even();
        (z.clamp(qmin as f32, qmax as f32)) as i32
    };
    (scale, zero)
}

/// Quantizes one value: `clamp(round_half_even(x / s) + z, qmin, qmax)`. NaN maps to `z`
/// (the code of 0.0); +-infinity saturates.
pub fn quantize_value(x: f32, scale: f32, zero: i32, qmin: i32, qmax: i32) -> i32 {
    if x.is_nan() {
        return zero.clamp(qmin, qmax);
    }
    let r = (x / scale)
        .round_ties_even()
        .clamp(-QUOTIENT_LIMIT, QUOTIENT_LIMIT) as i32;
    (r + zero).clamp(qmin, qmax)
}

/// Dequantizes one value: `s * (q - z)` in f32.
pub fn dequantize_value(q: i32, scale: f32, zero: i32) -> f32 {
    scale * (q - zero) as f32
}

/// Concrete parameters for one tensor shape: a scale and zero point per slot.
///
/// Built only through the checked constructors ([`QuantParams::new`],
/// [`QuantParams::from_ranges`], [`QuantParams::from_data`]), so every value a kernel
/// reads is valid: scales finite, normal and positive; zero points and the code range
/// inside the type; one pair per slot. Read the fields through the accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantParams {
    pub(crate) qtype: QType,
    pub(crate) qmin: i32,
    pub(crate) qmax: i32,
    pub(crate) granularity: Granularity,
    pub(crate) shape: Vec<usize>,
    pub(crate) scales: Vec<f32>,
    pub(crate) zero_points: Vec<i32>,
}

impl QuantParams {
    /// Storage type.
    pub fn qtype(&self) -> QType {
        self.qtype
    }

    /// Smallest code used (the type's, or one more for the restricted range).
    pub fn qmin(&self) -> i32 {
        self.qmin
    }

    /// Largest code used.
    pub fn qmax(&self) -> i32 {
        self.qmax
    }

    /// Which elements share parameters.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// Shape of the tensor these parameters quantize.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// One scale per slot (see [`Granularity`]), each finite, normal and positive.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// One zero point per slot, each in `qmin..=qmax`.
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// The same parameters with codes limited to `qmin..=qmax` (a restricted range,
    /// e.g. -127..=127 for symmetric int8, or the codes of a lower bit width stored in 8
    /// bits). The range must lie inside the type and hold every zero point.
    pub fn with_code_range(mut self, qmin: i32, qmax: i32) -> Result<QuantParams> {
        let op = "QuantParams::with_code_range";
        let (tmin, tmax) = (self.qtype.qmin(), self.qtype.qmax());
        if qmin >= qmax || qmin < tmin || qmax > tmax {
            return Err(Error::invalid(
                op,
                format!(
                    "codes {qmin}..={qmax} must be a range of at least two codes inside the {} \
                     range {tmin}..={tmax}",
                    self.qtype
                ),
            ));
        }
        if let Some((i, z)) = self
            .zero_points
            .iter()
            .enumerate()
            .find(|(_, z)| !(qmin..=qmax).contains(*z))
        {
            return Err(Error::invalid(
                op,
                format!("zero_point[{i}] = {z} is outside the codes {qmin}..={qmax}"),
            ));
        }
        self.qmin = qmin;
        self.qmax = qmax;
        Ok(self)
    }

    /// Parameters given explicitly (from a model file, say). Checks the slot count, that
    /// every scale is finite, normal and positive, and that zero points are in range.
    pub fn new(
        qtype: QType,
        granularity: Granularity,
        shape: &[usize],
        scales: Vec<f32>,
        zero_points: Vec<i32>,
    ) -> Result<QuantParams> {
        let op = "QuantParams::new";
        let slots = granularity.layout(op, shape)?.slots;
        if scales.len() != slots || zero_points.len() != slots {
            return Err(Error::shape(
                op,
                format!(
                    "{granularity:?} over shape {shape:?} needs {slots} scales and zero points, \
                     got {} and {}",
                    scales.len(),
                    zero_points.len()
                ),
            ));
        }
        if let Some((i, s)) = first_not_positive_normal(&scales) {
            return Err(Error::invalid(
                op,
                format!("scale[{i}] = {s:e}: scales must be finite, normal and positive"),
            ));
        }
        let (qmin, qmax) = (qtype.qmin(), qtype.qmax());
        if let Some((i, z)) = zero_points
            .iter()
            .enumerate()
            .find(|(_, z)| !(qmin..=qmax).contains(*z))
        {
            return Err(Error::invalid(
                op,
                format!("zero_point[{i}] = {z} is outside the {qtype} range {qmin}..={qmax}"),
            ));
        }
        Ok(QuantParams {
            qtype,
            qmin,
            qmax,
            granularity,
            shape: shape.to_vec(),
            scales,
            zero_points,
        })
    }

    /// Parameters from per-slot observed ranges (`mins[i]`, `maxs[i]`).
    pub fn from_ranges(
        scheme: &QuantScheme,
        shape: &[usize],
        mins: &[f32],
        maxs: &[f32],
    ) -> Result<QuantParams> {
        let op = "QuantParams::from_ranges";
        let slots = scheme.granularity.layout(op, shape)?.slots;
        if mins.len() != slots || maxs.len() != slots {
            return Err(Error::shape(
                op,
                format!(
                    "{:?} over shape {shape:?} needs {slots} ranges, got {} mins and {} maxs",
                    scheme.granularity,
                    mins.len(),
                    maxs.len()
                ),
            ));
        }
        let (qmin, qmax) = scheme.qrange();
        let (scales, zero_points) = mins
            .iter()
            .zip(maxs)
            .map(|(&lo, &hi)| scheme.params_for_range(lo, hi))
            .unzip();
        Ok(QuantParams {
            qtype: scheme.qtype,
            qmin,
            qmax,
            granularity: scheme.granularity,
            shape: shape.to_vec(),
            scales,
            zero_points,
        })
    }

    /// Parameters from the data itself (min-max per slot, non-finite values ignored): how
    /// weights are quantized.
    pub fn from_data(scheme: &QuantScheme, shape: &[usize], data: &[f32]) -> Result<QuantParams> {
        let op = "QuantParams::from_data";
        let layout = scheme.granularity.layout(op, shape)?;
        check_len(op, shape, data.len())?;
        let (mins, maxs) = slot_min_max(&layout, data);
        Self::from_ranges(scheme, shape, &mins, &maxs)
    }

    /// The slot layout over `self.shape`.
    pub fn layout(&self) -> SlotLayout {
        self.granularity
            .layout("QuantParams", &self.shape)
            .expect("validated at construction")
    }

    /// Number of elements of the tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Reference quantization of `x` (row-major, `self.shape`).
    pub fn quantize(&self, x: &[f32]) -> Result<Vec<i32>> {
        check_len("QuantParams::quantize", &self.shape, x.len())?;
        let layout = self.layout();
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = layout.slot(i);
                quantize_value(v, self.scales[s], self.zero_points[s], self.qmin, self.qmax)
            })
            .collect())
    }

    /// Reference dequantization of `q` (row-major, `self.shape`).
    pub fn dequantize(&self, q: &[i32]) -> Result<Vec<f32>> {
        check_len("QuantParams::dequantize", &self.shape, q.len())?;
        let layout = self.layout();
        Ok(q.iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = layout.slot(i);
                dequantize_value(v, self.scales[s], self.zero_points[s])
            })
            .collect())
    }
}

/// The first value that is not a finite, normal, positive f32, with its index.
pub(crate) fn first_not_positive_normal(v: &[f32]) -> Option<(usize, f32)> {
    v.iter()
        .copied()
        .enumerate()
        .find(|(_, s)| !(s.is_normal() && *s > 0.0))
}

fn check_len(op: &'static str, shape: &[usize], len: usize) -> Result<()> {
    let numel = crate::error::checked_numel(op, shape)?;
    if numel != len {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} holds {numel} elements, data has {len}"),
        ));
    }
    Ok(())
}

/// Per-slot min and max of the finite values (0, 0 for a slot with none).
pub fn slot_min_max(layout: &SlotLayout, data: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let slots = layout.slots;
    let mut mins = vec![f32::INFINITY; slots];
    let mut maxs = vec![f32::NEG_INFINITY; slots];
    for (i, &v) in data.iter().enumerate() {
        if v.is_finite() {
            let s = layout.slot(i);
            mins[s] = mins[s].min(v);
            maxs[s] = maxs[s].max(v);
        }
    }
    for (lo, hi) in mins.iter_mut().zip(maxs.iter_mut()) {
        if lo > hi {
            (*lo, *hi) = (0.0, 0.0);
        }
    }
    (mins, maxs)
}

/// Reference dynamic quantization (ONNX `DynamicQuantizeLinear` generalized): the
/// parameters come from each slot's own finite min and max, then the values are
/// quantized. Returns the codes and the parameters.
pub fn dynamic_quantize_reference(
    scheme: &QuantScheme,
    shape: &[usize],
    x: &[f32],
) -> Result<(Vec<i32>, QuantParams)> {
    let params = QuantParams::from_data(scheme, shape, x)?;
    let q = params.quantize(x)?;
    Ok((q, params))
}
