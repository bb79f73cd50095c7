//! A dynamically quantized Linear layer ([`QLinear`]): the W8A8 GEMM of
//! [`crate::ops::qgemm`] with its activations quantized per row on the GPU at every call.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType};
//! use wgpu_quant::model::QLinear;
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! // A PyTorch quantize_dynamic-style Linear: i8 weights per output channel, f32 in and
//! // out, activations quantized per row on the GPU at every call.
//! let (n, k) = (3, 4);
//! let weight = [0.5f32, -1.0, 0.25, 2.0, 1.0, 1.0, 1.0, 1.0, -0.5, 0.0, 0.5, 0.0];
//! let layer = QLinear::from_f32(&ctx, &weight, n, k, Some(&[0.0, 1.0, -1.0]))?;
//! let x = Tensor::from_slice(&ctx, &[2, k], &[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 0.5])?;
//! let y = Tensor::zeros(&ctx, &[2, n], DType::F32)?;
//! let mut enc = ctx.encoder("linear");
//! layer.forward(&ctx, &mut enc, &x, &y)?;
//! ctx.submit_and_wait(enc)?;
//! let y = y.read_blocking::<f32>(&ctx)?;
//! assert!((y[0] - 7.25).abs() < 0.1 && (y[1] - 11.0).abs() < 0.1);
//! # Ok(()) }
//! ```

use crate::context::Context;
use crate::desc::gemm::Activation;
use crate::error::{Error, Result};
use crate::ops::qgemm::{check_8bit, qgemm, row_stride, QGemmDesc, QGemmOutput};
use crate::ops::quant::dynamic_quantize;
use crate::qtensor::{DynamicQuant, QTensor};
use crate::quant::{Granularity, QType, QuantParams, QuantScheme};
use crate::tensor::{DType, Tensor};

/// A Linear layer with int8 weights and dynamically quantized int8 activations, like
/// PyTorch's `quantize_dynamic`: each call quantizes its f32/f16 input per row on the GPU
/// ([`DynamicQuant::per_row_i8`]), runs the W8A8 GEMM and writes f32 or f16.
#[derive(Debug, Clone)]
pub struct QLinear {
    weight: QTensor,
    bias: Option<Tensor>,
    activation: Activation,
    spec: DynamicQuant,
    /// The quantized activations of the last `forward`, reused while the input shape
    /// stays the same (so a layer run every frame allocates nothing after the first).
    scratch: std::sync::Arc<std::sync::Mutex<Option<QTensor>>>,
}

impl QLinear {
    /// Quantizes an f32 `[n, k]` weight (row-major, PyTorch's Linear layout) to i8 with
    /// one symmetric scale per output channel and uploads it with the optional bias.
    pub fn from_f32(
        ctx: &Context,
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Option<&[f32]>,
    ) -> Result<QLinear> {
        const OPL: &str = "QLinear::from_f32";
        if weight.len() != n * k {
            return Err(Error::shape(
                OPL,
                format!(
                    "weight has {} values; [n, k] = [{n}, {k}] needs {}",
                    weight.len(),
                    n * k
                ),
            ));
        }
        let scheme = QuantScheme::symmetric(QType::I8).per_channel(0);
        let params = QuantParams::from_data(&scheme, &[n, k], weight)?;
        let codes = params.quantize(weight)?;
        let weight = QTensor::from_codes(ctx, &params, &codes)?;
        let bias = match bias {
            Some(b) if b.len() != n => {
                return Err(Error::shape(
                    OPL,
                    format!("bias has {} values; expected n = {n}", b.len()),
                ))
            }
            Some(b) => Some(Tensor::from_slice(ctx, &[n], b)?),
            None => None,
        };
        QLinear::new(weight, bias)
    }

    /// A layer from an already quantized `[N, K]` weight (i8 or u8, per tensor or per
    /// output channel) and an optional f32 bias of `N` values.
    pub fn new(weight: QTensor, bias: Option<Tensor>) -> Result<QLinear> {
        const OPL: &str = "QLinear::new";
        check_8bit("weight", &weight)?;
        if weight.shape().len() != 2 {
            return Err(Error::shape(
                OPL,
                format!("weight has shape {:?}; expected [N, K]", weight.shape()),
            ));
        }
        row_stride("weight", "output channel", &weight)?;
        if let Some(b) = &bias {
            if b.numel() != weight.shape()[0] || b.dtype() != DType::F32 {
                return Err(Error::shape(
                    OPL,
                    format!(
                        "bias is {} {:?}; expected f32 with N = {} elements",
                        b.dtype(),
                        b.shape(),
                        weight.shape()[0]
                    ),
                ));
            }
        }
        Ok(QLinear {
            weight,
            bias,
            activation: Activation::None,
            spec: DynamicQuant::per_row_i8(),
            scratch: Default::default(),
        })
    }

    /// The same layer with a fused activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The same layer with another dynamic activation scheme (e.g. ONNX's per-tensor u8,
    /// [`DynamicQuant::onnx`]); per-group schemes are refused when the layer runs.
    pub fn with_activation_quant(mut self, spec: DynamicQuant) -> Self {
        self.spec = spec;
        self
    }

    /// The quantized weight.
    pub fn weight(&self) -> &QTensor {
        &self.weight
    }

    /// `(N, K)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.weight.shape()[0], self.weight.shape()[1])
    }

    /// Records `y = act(dequant(quant(x) * W^T) + bias)`: `x` is f32 or f16 `[.., K]`,
    /// `y` is f32 or f16 `[.., N]`. Allocates the quantized copy of `x` per call.
    pub fn forward(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<()> {
        if matches!(self.spec.scheme.granularity, Granularity::PerGroup { .. }) {
            return Err(Error::invalid(
                "QLinear::forward",
                "activations are quantized per tensor or per row",
            ));
        }
        let xq = {
            let mut slot = self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some(q) if q.shape() == x.shape() => q.clone(),
                _ => {
                    let q = QTensor::for_dynamic(ctx, &self.spec, x.shape())?;
                    *slot = Some(q.clone());
                    q
                }
            }
        };
        dynamic_quantize(ctx, encoder, x, &self.spec, &xq)?;
        let out = match y.dtype() {
            DType::F16 => QGemmOutput::F16(y),
            _ => QGemmOutput::F32(y),
        };
        qgemm(
            ctx,
            encoder,
            &QGemmDesc::default().activation(self.activation),
            &xq,
            &self.weight,
            self.bias.as_ref(),
            out,
        )
    }
}
