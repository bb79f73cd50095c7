//! What the examples that compare precisions share: a float or an INT8 model behind one
//! type, and where the bundled data is.

use half::f16;
use wgpu_quant::model::{Model, QModel};
use wgpu_quant::{Context, DType, Result, Tensor};

/// A float ([`Model`], FP32 or FP16) or an INT8 ([`QModel`]) model.
pub enum Net {
    Float(Model),
    Int8(Box<QModel>),
}

impl Net {
    /// Bytes of its weights.
    pub fn weight_bytes(&self) -> u64 {
        match self {
            Net::Float(m) => m.weight_bytes(),
            Net::Int8(q) => q.weight_bytes(),
        }
    }

    /// The dtype of the input it takes (an INT8 model quantizes f32 itself).
    pub fn input_dtype(&self) -> DType {
        match self {
            Net::Float(m) => m.dtype(),
            Net::Int8(_) => DType::F32,
        }
    }

    /// Records the forward pass of `x` into `enc`; returns the output.
    pub fn forward<'a>(
        &'a self,
        ctx: &Context,
        enc: &mut wgpu::CommandEncoder,
        x: &Tensor,
    ) -> Result<&'a Tensor> {
        match self {
            Net::Float(m) => m.forward(ctx, enc, x),
            Net::Int8(q) => q.forward(ctx, enc, x),
        }
    }
}

/// Reads an f32 or f16 output as f32.
pub fn read_f32(ctx: &Context, y: &Tensor) -> Result<Vec<f32>> {
    if y.dtype() == DType::F16 {
        Ok(y.read_blocking::<f16>(ctx)?
            .iter()
            .map(|v| v.to_f32())
            .collect())
    } else {
        y.read_blocking::<f32>(ctx)
    }
}

/// The bundled data: `$WGPU_QUANT_DATA` if set, else this checkout's `examples/data`,
/// else `examples/data` below the current directory (a binary copied to another
/// machine, run from a copy of the repository).
pub fn data_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("WGPU_QUANT_DATA") {
        return d.into();
    }
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    if built.is_dir() {
        built
    } else {
        "examples/data".into()
    }
}
