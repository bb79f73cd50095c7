//! # wgpu-quant
//!
//! Quantized neural-network kernels for any GPU that wgpu reaches (Vulkan, Metal, DX12,
//! GL): WGSL compute shaders for FP32, FP16 and INT8 GEMM, a dispatcher that picks a
//! kernel per shape and adapter, and a benchmark runner that measures what each
//! precision gains on your GPU.
//!
//! The library borrows the caller's device: a renderer wraps its own `wgpu::Device` and
//! `wgpu::Queue` in a [`Context`], records ops into its own `CommandEncoder`, and keeps
//! the results in GPU buffers.
//!
//! ```no_run
//! use wgpu_quant::{Context, Tensor, DType, ops::gemm::{gemm, GemmDesc}};
//!
//! # async fn run(device: wgpu::Device, queue: wgpu::Queue) -> wgpu_quant::Result<()> {
//! let ctx = Context::new(device, queue); // the engine's device, shared
//! let a = Tensor::from_slice(&ctx, &[64, 128], &vec![0.5f32; 64 * 128])?;
//! let b = Tensor::from_slice(&ctx, &[128, 32], &vec![0.25f32; 128 * 32])?;
//! let c = Tensor::zeros(&ctx, &[64, 32], DType::F32)?;
//!
//! let mut encoder = ctx.encoder("frame");
//! gemm(&ctx, &mut encoder, &GemmDesc::new(64, 32, 128), &a, &b, None, &c)?;
//! // ... the engine's own passes, reading `c.buffer()` ...
//! ctx.queue().submit([encoder.finish()]);
//! # Ok(()) }
//! ```
//!
//! Quantization ([`quant`] for the formats and the CPU reference, [`QTensor`] for
//! quantized tensors on the GPU, [`ops::quant`] for the kernels, [`calib`] for the
//! calibration observers) follows ONNX's rounding bit for bit; docs/QUANTIZATION.md has
//! the details. Low-precision matrix products: [`ops::qgemm`] (W8A8 with `dot4I8Packed`,
//! exact int32, fused dequantize/requantize epilogues; the dynamic [`model::QLinear`])
//! and [`ops::wgemm`] (int8/int4 weight-only and FP16 GEMM/GEMV); docs/GEMM.md.
//! Convolution as an implicit GEMM in FP32/FP16/INT8 with depthwise and pointwise paths
//! ([`ops::conv`]), pooling ([`ops::pool`]), add/clip/softmax/layer norm and the INT8
//! residual add ([`ops::eltwise`]) and image input from a buffer or texture ([`ops::image`]);
//! docs/CONV.md.
//!
//! The dispatcher ([`plan`], [`tuning`], [`bindcache`]) picks kernels per shape and
//! adapter, tunes them on request with a shippable JSON cache, holds back features and
//! limits on request ([`Overrides`]), splits every op whose operands exceed a binding,
//! and pools bind groups so that a frame allocates nothing after warm-up;
//! docs/DISPATCH.md.
//!
//! The modules form layers that only point down (data, device, plan, ops, measure,
//! model; docs/ARCHITECTURE.md has the map and `tests/architecture.rs` enforces it).
//!
//! Errors are values: a shape or dtype mismatch, an operand over a binding limit or a
//! missing feature comes back as an [`Error`] that names the op and the numbers.

#![warn(missing_docs)]
// In a browser wgpu's handles are neither Send nor Sync (a page runs on one thread), so
// the context's shared state is too; natively it is both.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

// The README's examples are compiled (and its `no_run` ones type-checked) as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// So are the examples in docs/QUANTIZATION.md, docs/GEMM.md and docs/CONV.md.
#[doc = include_str!("../docs/QUANTIZATION.md")]
#[cfg(doctest)]
pub struct QuantizationDocDoctests;

#[doc = include_str!("../docs/GEMM.md")]
#[cfg(doctest)]
pub struct GemmDocDoctests;

#[doc = include_str!("../docs/CONV.md")]
#[cfg(doctest)]
pub struct ConvDocDoctests;

#[doc = include_str!("../docs/DISPATCH.md")]
#[cfg(doctest)]
pub struct DispatchDocDoctests;

#[doc = include_str!("../docs/ONNX.md")]
#[cfg(doctest)]
pub struct OnnxDocDoctests;

#[doc = include_str!("../docs/QAT.md")]
#[cfg(doctest)]
pub struct QatDocDoctests;

#[doc = include_str!("../docs/WEB.md")]
#[cfg(doctest)]
pub struct WebDocDoctests;

// Layers, bottom to top (docs/ARCHITECTURE.md; tests/architecture.rs checks that every
// module imports only from its own layer's earlier modules or from the layers below):
// data: dtype, error, caps, quant (formats), desc (descriptors, tiles, tuning keys),
//       reference (CPU twins)
// device: bindcache, shaders, context, tensor, qtensor
// plan
// ops
// measure: bench, tuning, calib
// model
// train (training on the GPU, quantization-aware training)
// import (ONNX files become model graphs)
pub mod caps;
pub mod desc;
pub mod dtype;
pub mod error;
pub mod quant;
pub mod reference;

pub mod bindcache;
pub mod context;
pub mod qtensor;
pub mod shaders;
pub mod tensor;

pub mod plan;

pub mod ops;

pub mod bench;
pub mod calib;
pub mod tuning;

pub mod model;

pub mod train;

pub mod import;

pub use caps::{Capabilities, KeyLimits, Overrides};
pub use context::{Context, ContextStats, RequestOptions};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use qtensor::QTensor;
pub use tensor::Tensor;
