//! Quantized tensors on the GPU ([`QTensor`]): packed codes with their scales and zero
//! points, in the formats of [`crate::quant`]. The kernels that fill and read them are
//! [`crate::ops::quant`]; this module only allocates, uploads and reads back.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::quant::{pack, Granularity, PackedLayout, QType, QuantParams, QuantScheme};
use crate::tensor::{DType, Tensor};

/// Whether codes of `qtype` packed in shape `a` and in shape `b` (same element count)
/// lie in the same words: each row (the last dimension) is padded to whole words, so the
/// last dimensions must be equal or both whole words.
pub fn rows_pack_alike(qtype: QType, a: &[usize], b: &[usize]) -> bool {
    let pw = qtype.per_word();
    let (a, b) = (
        a.last().copied().unwrap_or(1),
        b.last().copied().unwrap_or(1),
    );
    a == b || (a.is_multiple_of(pw) && b.is_multiple_of(pw))
}

/// A quantized tensor on the GPU: packed codes (see [`crate::quant::pack`]), one f32
/// scale and one i32 zero point per slot.
#[derive(Debug, Clone)]
pub struct QTensor {
    pub(crate) data: Tensor,
    pub(crate) scales: Tensor,
    pub(crate) zero_points: Tensor,
    pub(crate) shape: Vec<usize>,
    pub(crate) qtype: QType,
    pub(crate) qmin: i32,
    pub(crate) qmax: i32,
    pub(crate) granularity: Granularity,
    /// The parameters as uploaded, for static tensors (requantizing GEMM epilogues read
    /// the output's scale and zero point from here).
    pub(crate) host: Option<std::sync::Arc<QuantParams>>,
    /// Every zero point is known to be 0 (static parameters that say so, or a symmetric
    /// dynamic scheme): the GEMM kernels then skip the zero-point corrections.
    pub(crate) zero_free: bool,
}

impl QTensor {
    pub(crate) fn alloc(
        ctx: &Context,
        op: &'static str,
        qtype: QType,
        (qmin, qmax): (i32, i32),
        granularity: Granularity,
        shape: &[usize],
    ) -> Result<QTensor> {
        let layout = PackedLayout::new(qtype, shape);
        let slots = granularity.layout(op, shape)?.slots;
        Ok(QTensor {
            data: Tensor::zeros(ctx, &[layout.words()], DType::U32)?,
            scales: Tensor::zeros(ctx, &[slots], DType::F32)?,
            zero_points: Tensor::zeros(ctx, &[slots], DType::I32)?,
            shape: shape.to_vec(),
            qtype,
            qmin,
            qmax,
            granularity,
            host: None,
            zero_free: false,
        })
    }

    /// A view of the same codes and parameters with another shape: the element count
    /// must stay, and so must the packing, which pads each row (the last dimension) to
    /// whole words: either the last dimension stays or both the old and the new one are
    /// multiples of the codes per word (4 for 8-bit). The parameters must be per tensor
    /// (e.g. `[1, 1, 1, 1280]` pooled features as `[1, 1280]`).
    pub fn reshape(&self, shape: &[usize]) -> Result<QTensor> {
        const OP: &str = "QTensor::reshape";
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(Error::shape(
                OP,
                format!("{:?} to {shape:?}: the element count must stay", self.shape),
            ));
        }
        if !self.can_view_as(shape) {
            return Err(Error::shape(
                OP,
                format!(
                    "{:?} to {shape:?}: rows are padded to whole words of {} codes, so the \
                     last dimension must stay or both must be multiples of {}",
                    self.shape,
                    self.qtype.per_word(),
                    self.qtype.per_word()
                ),
            ));
        }
        if self.granularity != Granularity::PerTensor {
            return Err(Error::invalid(
                OP,
                format!(
                    "the parameters are {:?}; only per-tensor tensors reshape",
                    self.granularity
                ),
            ));
        }
        let mut q = self.clone();
        q.shape = shape.to_vec();
        if let Some(h) = &self.host {
            let mut p = (**h).clone();
            p.shape = shape.to_vec();
            q.host = Some(std::sync::Arc::new(p));
        }
        Ok(q)
    }

    /// Whether [`QTensor::reshape`] to `shape` (same element count) keeps the packed
    /// layout: the last dimension stays, or both are whole words.
    pub fn can_view_as(&self, shape: &[usize]) -> bool {
        rows_pack_alike(self.qtype, &self.shape, shape)
    }

    /// An output for static quantization with `params` (uploaded now); the codes are
    /// zero until [`crate::ops::quant::quantize`] writes them.
    pub fn new(ctx: &Context, params: &QuantParams) -> Result<QTensor> {
        let mut q = Self::alloc(
            ctx,
            "QTensor::new",
            params.qtype,
            (params.qmin, params.qmax),
            params.granularity,
            &params.shape,
        )?;
        q.zero_free = params.zero_points.iter().all(|&z| z == 0);
        q.host = Some(std::sync::Arc::new(params.clone()));
        q.scales.write(ctx, &params.scales)?;
        q.zero_points.write(ctx, &params.zero_points)?;
        Ok(q)
    }

    /// Uploads codes computed elsewhere (a quantized model's weights).
    pub fn from_codes(ctx: &Context, params: &QuantParams, codes: &[i32]) -> Result<QTensor> {
        // `pack` checks the count and the type's range; the restricted range is checked
        // here. Everything is validated before any buffer is created.
        if let Some((i, c)) = codes
            .iter()
            .enumerate()
            .find(|(_, c)| !(params.qmin..=params.qmax).contains(*c))
        {
            return Err(Error::invalid(
                "QTensor::from_codes",
                format!(
                    "code[{i}] = {c} is outside {}..={}",
                    params.qmin, params.qmax
                ),
            ));
        }
        let words = pack::pack(&PackedLayout::new(params.qtype, &params.shape), codes)
            .map_err(|e| e.with_op("QTensor::from_codes"))?;
        let q = Self::new(ctx, params)?;
        q.data.write(ctx, &words)?;
        Ok(q)
    }

    /// An output for [`crate::ops::quant::dynamic_quantize`] of a tensor of `shape`.
    pub fn for_dynamic(ctx: &Context, spec: &DynamicQuant, shape: &[usize]) -> Result<QTensor> {
        spec.check("QTensor::for_dynamic")?;
        let mut q = Self::alloc(
            ctx,
            "QTensor::for_dynamic",
            spec.scheme.qtype,
            spec.scheme.qrange(),
            spec.scheme.granularity,
            shape,
        )?;
        q.zero_free = spec.scheme.symmetric && spec.scheme.qtype.signed();
        Ok(q)
    }

    /// The packed codes (`u32` words).
    pub fn data(&self) -> &Tensor {
        &self.data
    }

    /// The scales, one f32 per slot.
    pub fn scales(&self) -> &Tensor {
        &self.scales
    }

    /// The zero points, one i32 per slot.
    pub fn zero_points(&self) -> &Tensor {
        &self.zero_points
    }

    /// Logical shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Storage type.
    pub fn qtype(&self) -> QType {
        self.qtype
    }

    /// Granularity of the parameters.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The code range `(qmin, qmax)` (narrower than the type's for restricted schemes).
    pub fn qrange(&self) -> (i32, i32) {
        (self.qmin, self.qmax)
    }

    /// The parameters this tensor was created with, for static tensors
    /// ([`QTensor::new`], [`QTensor::from_codes`]); `None` for dynamic ones, whose
    /// parameters the GPU computes.
    pub fn static_params(&self) -> Option<&QuantParams> {
        self.host.as_deref()
    }

    /// Whether every zero point is known to be 0 (symmetric quantization).
    pub fn is_symmetric(&self) -> bool {
        self.zero_free
    }

    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The packed layout of the codes.
    pub fn layout(&self) -> PackedLayout {
        PackedLayout::new(self.qtype, &self.shape)
    }

    /// Bytes on the GPU: packed codes plus scales and zero points.
    pub fn size_bytes(&self) -> u64 {
        self.data.size_bytes() + self.scales.size_bytes() + self.zero_points.size_bytes()
    }

    /// Reads back and unpacks the codes (row-major, `shape`).
    pub async fn read_codes(&self, ctx: &Context) -> Result<Vec<i32>> {
        let words = self.data.read::<u32>(ctx).await?;
        pack::unpack(&self.layout(), &words)
    }

    /// Reads back the parameters (for dynamic quantization, the ones the GPU computed).
    pub async fn read_params(&self, ctx: &Context) -> Result<QuantParams> {
        Ok(QuantParams {
            qtype: self.qtype,
            qmin: self.qmin,
            qmax: self.qmax,
            granularity: self.granularity,
            shape: self.shape.clone(),
            scales: self.scales.read(ctx).await?,
            zero_points: self.zero_points.read(ctx).await?,
        })
    }

    /// Blocking twin of [`QTensor::read_codes`] (not in the web build).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_codes_blocking(&self, ctx: &Context) -> Result<Vec<i32>> {
        pollster::block_on(self.read_codes(ctx))
    }

    /// Blocking twin of [`QTensor::read_params`] (not in the web build).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_params_blocking(&self, ctx: &Context) -> Result<QuantParams> {
        pollster::block_on(self.read_params(ctx))
    }
}

/// What dynamic quantization computes: a scheme whose granularity is per tensor, per row
/// or per channel (not per group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicQuant {
    /// Type, symmetry, range and granularity.
    pub scheme: QuantScheme,
}

impl DynamicQuant {
    /// ONNX `DynamicQuantizeLinear`: u8, asymmetric, one scale per tensor.
    pub fn onnx() -> Self {
        DynamicQuant {
            scheme: QuantScheme::asymmetric(QType::U8),
        }
    }

    /// Symmetric i8 with one scale per row: the activations of a W8A8 Linear layer
    /// (PyTorch `quantize_dynamic` style, finer than its per-tensor default).
    pub fn per_row_i8() -> Self {
        DynamicQuant {
            scheme: QuantScheme::symmetric(QType::I8).with_granularity(Granularity::PerRow),
        }
    }

    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        if matches!(self.scheme.granularity, Granularity::PerGroup { .. }) {
            return Err(Error::invalid(
                op,
                "dynamic quantization is per tensor, per row or per channel, not per group",
            ));
        }
        Ok(())
    }
}
