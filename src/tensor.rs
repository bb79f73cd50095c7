//! GPU tensors: a storage buffer with a shape and an element type.
//!
//! Buffers are allocated with their byte size rounded up to 16, so that any tensor can be
//! bound as an array of `vec4`s and copied with wgpu's 4-byte copy alignment; the padding
//! is never part of the tensor. Elements are dense and row-major; views with other strides
//! are expressed by the ops' own stride parameters (see `GemmDesc`).

use crate::context::Context;
use crate::error::{Error, Result};

pub(crate) use crate::dtype::padded_bytes;
pub use crate::dtype::{DType, Element};

/// A dense, row-major tensor living in a GPU storage buffer.
///
/// Cloning a `Tensor` is cheap and shares the buffer. When the last clone of a tensor
/// made on a context is dropped, the context's bind-group pool lets go of its buffer
/// too (see [`crate::bindcache`]), so its GPU memory is freed.
#[derive(Debug, Clone)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
    /// Releases the buffer from the context's pool with the last clone (`None` for a
    /// caller's buffer).
    _release: Option<std::sync::Arc<crate::bindcache::Release>>,
    /// The context that made the buffer ([`Context`]'s id; `None` for a caller's
    /// buffer, which the caller vouches for).
    origin: Option<u64>,
}

impl Tensor {
    fn check_shape(op: &'static str, shape: &[usize]) -> Result<usize> {
        crate::error::checked_numel(op, shape)
    }

    fn alloc(ctx: &Context, op: &'static str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let numel = Self::check_shape(op, shape)?;
        crate::error::checked_bytes(op, shape, numel, dtype.size())?;
        let bytes = padded_bytes(numel, dtype);
        let limit = ctx.device().limits().max_buffer_size;
        if bytes > limit {
            return Err(Error::LimitExceeded {
                op,
                what: format!("a {dtype} tensor of shape {shape:?}"),
                needed: bytes,
                limit_name: "max_buffer_size",
                limit,
            });
        }
        crate::context::note_operands(Vec::new());
        let buffer = ctx.scoped(op, || {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-quant tensor"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        ctx.note_tensor();
        Ok(Tensor {
            _release: Some(std::sync::Arc::new(ctx.release_on_drop(&buffer))),
            buffer,
            shape: shape.to_vec(),
            dtype,
            origin: Some(ctx.id()),
        })
    }

    /// A zero-filled tensor.
    pub fn zeros(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Self::alloc(ctx, "Tensor::zeros", shape, dtype)
    }

    /// Uploads `data` (row-major) as a tensor of the given shape.
    ///
    /// ```no_run
    /// # fn main() -> wgpu_quant::Result<()> {
    /// let ctx = wgpu_quant::Context::request_blocking(&Default::default())?;
    /// let t = wgpu_quant::Tensor::from_slice(&ctx, &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// assert_eq!(t.read_blocking::<f32>(&ctx)?, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok(()) }
    /// ```
    pub fn from_slice<T: Element>(ctx: &Context, shape: &[usize], data: &[T]) -> Result<Tensor> {
        let t = Self::alloc(ctx, "Tensor::from_slice", shape, T::DTYPE)?;
        if t.numel() != data.len() {
            return Err(Error::shape(
                "Tensor::from_slice",
                format!(
                    "shape {shape:?} holds {} elements, data has {}",
                    t.numel(),
                    data.len()
                ),
            ));
        }
        t.write(ctx, data)?;
        Ok(t)
    }

    /// Wraps a caller's buffer. It must have `STORAGE` usage (and `COPY_SRC` to be read
    /// back) and hold at least the tensor's bytes.
    pub fn from_buffer(buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let op = "Tensor::from_buffer";
        let numel = Self::check_shape(op, shape)?;
        let need = crate::error::checked_bytes(op, shape, numel, dtype.size())?;
        if buffer.size() < need {
            return Err(Error::shape(
                op,
                format!(
                    "a {dtype} tensor of shape {shape:?} needs {need} bytes, the buffer has {}",
                    buffer.size()
                ),
            ));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(
                op,
                format!("buffer usage {:?} lacks STORAGE", buffer.usage()),
            ));
        }
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
            _release: None,
            origin: None,
        })
    }

    /// The same buffer seen with another shape of as many elements (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel = Self::check_shape("Tensor::reshape", shape)?;
        if numel != self.numel() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!(
                    "shape {:?} ({} elements) cannot be seen as {shape:?} ({numel} elements)",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            _release: self._release.clone(),
            origin: self.origin,
        })
    }

    /// Overwrites the whole tensor from `data` (queued; visible to work submitted after).
    pub fn write<T: Element>(&self, ctx: &Context, data: &[T]) -> Result<()> {
        let op = "Tensor::write";
        if T::DTYPE != self.dtype {
            return Err(Error::DType {
                op,
                operand: "data",
                expected: self.dtype,
                got: T::DTYPE,
            });
        }
        if data.len() != self.numel() {
            return Err(Error::shape(
                op,
                format!(
                    "tensor {:?} holds {} elements, data has {}",
                    self.shape,
                    self.numel(),
                    data.len()
                ),
            ));
        }
        let bytes: &[u8] = bytemuck::cast_slice(data);
        crate::context::note_operands(vec![("the tensor".into(), self.buffer.clone())]);
        // write_buffer needs a multiple of 4 bytes; pad the tail of 1- and 2-byte types.
        ctx.scoped(op, || {
            if bytes.len().is_multiple_of(4) {
                ctx.queue().write_buffer(&self.buffer, 0, bytes);
            } else {
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                ctx.queue().write_buffer(&self.buffer, 0, &padded);
            }
        })
    }

    /// Refuses a tensor made by another [`Context`] than `ctx` or its clones (binding a
    /// buffer of another device fails inside wgpu; wgpu cannot tell two devices apart
    /// from the outside, so the check is per context: share one context per device). A
    /// tensor wrapping a caller's buffer ([`Tensor::from_buffer`]) passes.
    pub fn check_device(&self, ctx: &Context, op: &'static str, operand: &str) -> Result<()> {
        match self.origin {
            Some(id) if id != ctx.id() => Err(Error::invalid(
                op,
                format!(
                    "{operand} (a {} tensor of shape {:?}) was made by another context (another \
                     device) than the one given, on '{}'",
                    self.dtype,
                    self.shape,
                    ctx.capabilities().adapter.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The underlying buffer (to bind it in your own passes).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of tensor data (without the buffer's padding).
    pub fn size_bytes(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }

    /// Copies the tensor back to the CPU.
    ///
    /// On native backends this waits on the device for the copy; in a browser the future
    /// resolves when the buffer is mapped.
    pub async fn read<T: Element>(&self, ctx: &Context) -> Result<Vec<T>> {
        let op = "Tensor::read";
        if T::DTYPE != self.dtype {
            return Err(Error::DType {
                op,
                operand: "output type",
                expected: self.dtype,
                got: T::DTYPE,
            });
        }
        let bytes = ctx
            .read_buffer(&self.buffer, self.size_bytes(), "tensor")
            .await?;
        Ok(bytemuck::pod_collect_to_vec(
            &bytes[..self.size_bytes() as usize],
        ))
    }

    /// Blocking twin of [`Tensor::read`] (not in the web build).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking<T: Element>(&self, ctx: &Context) -> Result<Vec<T>> {
        pollster::block_on(self.read(ctx))
    }
}
