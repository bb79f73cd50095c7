//! GPU operations. Each module owns its shaders' variants, its bind group layout (declared
//! in the shader registry) and its dispatch, and exposes one recording function that takes
//! the caller's `CommandEncoder` plus a convenience that submits.

pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod image;
pub mod layout;
pub mod pool;
pub mod qgemm;
pub mod quant;
pub mod train;
pub mod wgemm;
mod wgemm_coop;

use wgpu::util::DeviceExt;

use crate::context::{Context, Kernel};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

pub use crate::desc::rows::RowTile;

/// Every shader variant the ops can compile (the naga test validates them all, with the
/// benchmark probes of [`crate::bench::peak_variants`]).
pub fn all_variants() -> Vec<crate::shaders::ShaderVariant> {
    let mut v = gemm::all_variants();
    v.extend(quant::all_variants());
    v.extend(qgemm::all_variants());
    v.extend(wgemm::all_variants());
    v.extend(wgemm_coop::all_variants());
    v.extend(conv::all_variants());
    v.extend(pool::all_variants());
    v.extend(eltwise::all_variants());
    v.extend(image::all_variants());
    v.extend(layout::all_variants());
    v.extend(train::all_variants());
    v
}

/// The flattened params block of every shader file the ops record, as the Rust side lays
/// it out (the interface test compares each with naga's reflection of the WGSL).
pub fn uniform_layouts() -> Vec<(crate::shaders::ShaderFile, Vec<crate::shaders::Leaf>)> {
    let mut v = gemm::uniforms();
    v.extend(quant::uniforms());
    v.extend(qgemm::uniforms());
    v.extend(wgemm::uniforms());
    v.extend(wgemm_coop::uniforms());
    v.extend(conv::uniforms());
    v.extend(pool::uniforms());
    v.extend(eltwise::uniforms());
    v.extend(image::uniforms());
    v.extend(layout::uniforms());
    v.extend(train::uniforms());
    v
}

/// `v` as a shader index, or an error naming `what` (kernels index with 32 bits).
pub(crate) fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::invalid(
            op,
            format!("{what} = {v} exceeds the 32-bit indexing of the kernels"),
        )
    })
}

/// Whether a float operand is f16 (`true`) or f32 (`false`); any other dtype is an error.
/// Refuses operands made on another device than `ctx`'s (see [`Tensor::check_device`]).
pub(crate) fn check_devices(
    ctx: &Context,
    op: &'static str,
    operands: &[(&str, Option<&Tensor>)],
) -> Result<()> {
    for (name, t) in operands {
        if let Some(t) = t {
            t.check_device(ctx, op, name)?;
        }
    }
    crate::context::note_operands(
        operands
            .iter()
            .filter_map(|(name, t)| t.map(|t| (name.to_string(), t.buffer().clone())))
            .collect(),
    );
    Ok(())
}

pub(crate) fn check_float(op: &'static str, operand: &'static str, t: &Tensor) -> Result<bool> {
    match t.dtype() {
        DType::F32 => Ok(false),
        DType::F16 => Ok(true),
        got => Err(Error::DType {
            op,
            operand,
            expected: DType::F32,
            got,
        }),
    }
}

/// Checks a fused epilogue's bias: f32 with `n` elements.
pub(crate) fn check_bias(op: &'static str, bias: Option<&Tensor>, n: usize) -> Result<()> {
    let Some(bias) = bias else { return Ok(()) };
    if bias.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            operand: "bias",
            expected: DType::F32,
            got: bias.dtype(),
        });
    }
    if bias.shape() != [n] {
        return Err(Error::shape(
            op,
            format!(
                "bias has shape {:?} ({} elements); expected [N] with N = {n}",
                bias.shape(),
                bias.numel()
            ),
        ));
    }
    Ok(())
}

impl RowTile {
    pub(crate) fn check(self, caps: &crate::Capabilities, op: &'static str) -> Result<()> {
        if self.wg == 0 || self.tm == 0 || self.tn4 == 0 || self.split_k == 0 {
            return Err(Error::invalid(
                op,
                format!("tile {self:?}: every field must be non-zero"),
            ));
        }
        let limit = caps.limits.max_compute_invocations_per_workgroup;
        if self.wg > limit {
            return Err(Error::LimitExceeded {
                op,
                what: format!("tile {self:?} invocations per workgroup"),
                needed: u64::from(self.wg),
                limit_name: "max_compute_invocations_per_workgroup",
                limit: u64::from(limit),
            });
        }
        Ok(())
    }

    /// The folded grid covering `m` rows and `n` columns, and the workgroups per row
    /// block (`groups_x`, which the shaders divide by).
    pub(crate) fn grid(
        self,
        ctx: &Context,
        op: &'static str,
        m: usize,
        n: usize,
    ) -> Result<([u32; 3], u32)> {
        let groups_x = (n as u64).div_ceil(u64::from(self.columns()));
        let groups_y = (m as u64).div_ceil(u64::from(self.tm));
        let grid = grid_for(ctx, op, groups_x * groups_y)?;
        Ok((
            grid,
            to_u32(op, "workgroups per row block", groups_x as usize)?,
        ))
    }
}

/// Fails with [`Error::LimitExceeded`] when `t`'s buffer is larger than one storage
/// binding may be.
pub(crate) fn check_binding(
    ctx: &Context,
    op: &'static str,
    operand: &str,
    t: &Tensor,
) -> Result<()> {
    let limit = ctx.capabilities().limits.max_storage_buffer_binding_size;
    if t.buffer().size() > limit {
        return Err(Error::LimitExceeded {
            op,
            what: format!("operand {operand} (shape {:?})", t.shape()),
            needed: t.buffer().size(),
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    Ok(())
}

/// [`crate::plan::split::window_units`] on this context's limits.
pub(crate) fn piece_units(
    ctx: &Context,
    op: &'static str,
    axis: &str,
    total: usize,
    spans: &[(&str, u64)],
) -> Result<usize> {
    crate::plan::split::window_units(ctx.capabilities(), op, axis, total, spans)
}

pub(crate) use crate::plan::split::{fold_grid, runs};

/// A window of `len` bytes of `buffer` from byte `start`, which the caller has aligned
/// (see [`piece_units`]); the whole buffer when the window is all of it.
pub(crate) fn bytes_window(buffer: &wgpu::Buffer, start: u64, len: u64) -> Res<'_> {
    let end = (start + len).div_ceil(16) * 16;
    let end = end.min(buffer.size());
    if start == 0 && end == buffer.size() {
        return Res::whole(buffer);
    }
    debug_assert!(start.is_multiple_of(16), "unaligned window at byte {start}");
    Res::Buffer(buffer, start, Some(end - start))
}

/// One operand of an op that may run in pieces: its binding, its tensor (checked to fit
/// whole when it grows along neither axis; `None` for an absent optional operand) and its
/// bytes per unit of the row axis (rows, images, elements) and of the column axis
/// (output columns). The output's column unit is its element size: it keeps its row
/// pitch, and a piece's window runs from its first column to the end of its last row.
pub(crate) struct Operand<'a> {
    pub name: &'a str,
    pub buffer: &'a wgpu::Buffer,
    pub tensor: Option<&'a Tensor>,
    pub row: u64,
    pub col: u64,
}

impl<'a> Operand<'a> {
    /// Tensor `t`, growing by `row` bytes per row unit and `col` per column.
    pub fn tensor(name: &'a str, t: &'a Tensor, row: u64, col: u64) -> Self {
        Operand {
            name,
            buffer: t.buffer(),
            tensor: Some(t),
            row,
            col,
        }
    }

    /// An optional tensor; when absent the context's dummy buffer is bound whole.
    pub fn optional(
        ctx: &'a Context,
        name: &'a str,
        t: Option<&'a Tensor>,
        row: u64,
        col: u64,
    ) -> Self {
        Operand {
            name,
            buffer: t.map_or(ctx.dummy_buffer(), Tensor::buffer),
            tensor: t,
            row,
            col,
        }
    }

    /// A buffer of the op's own (parameters, statistics), bound whole in every piece.
    pub fn whole(name: &'a str, buffer: &'a wgpu::Buffer) -> Self {
        Operand {
            name,
            buffer,
            tensor: None,
            row: 0,
            col: 0,
        }
    }
}

/// One piece of a split op: rows `[r0, r0 + rows)`, `cols` columns and the operands'
/// windows, in the order given to [`split`].
pub(crate) struct Split<'a> {
    pub r0: usize,
    pub rows: usize,
    pub cols: usize,
    pub res: Vec<Res<'a>>,
}

/// The pieces that an op of `rows` x `cols` units runs in so that every operand's window
/// fits one storage binding (see [`piece_units`]); one piece binding whole buffers when
/// everything fits. Counts split dispatches in [`Context::stats`].
pub(crate) fn split<'a>(
    ctx: &Context,
    op: &'static str,
    axes: [&str; 2],
    (rows, cols): (usize, usize),
    operands: &[Operand<'a>],
) -> Result<Vec<Split<'a>>> {
    for o in operands {
        if let (0, 0, Some(t)) = (o.row, o.col, o.tensor) {
            check_binding(ctx, op, o.name, t)?;
        }
    }
    let spans = |unit: fn(&Operand) -> u64| -> Vec<(&str, u64)> {
        operands
            .iter()
            .filter(|o| o.tensor.is_some() && unit(o) > 0)
            .map(|o| (o.name, unit(o)))
            .collect()
    };
    let per_row = piece_units(ctx, op, axes[0], rows, &spans(|o| o.row))?;
    let per_col = piece_units(ctx, op, axes[1], cols, &spans(|o| o.col))?;
    let mut out = Vec::new();
    for (r0, rc) in runs(rows, per_row) {
        for (c0, cc) in runs(cols, per_col) {
            let whole = rc == rows && cc == cols;
            if !whole {
                ctx.note_split();
            }
            let res = operands
                .iter()
                .map(|o| {
                    if whole || o.tensor.is_none() || (o.row == 0 && o.col == 0) {
                        return Res::whole(o.buffer);
                    }
                    let start = r0 as u64 * o.row + c0 as u64 * o.col;
                    let len = if o.row > 0 {
                        rc as u64 * o.row - c0 as u64 * o.col
                    } else {
                        cc as u64 * o.col
                    };
                    bytes_window(o.buffer, start, len)
                })
                .collect();
            out.push(Split {
                r0,
                rows: rc,
                cols: cc,
                res,
            });
        }
    }
    Ok(out)
}

/// The words a resource binds (`whole` bytes for a whole buffer).
pub(crate) fn bound_words(r: &Res, whole: u64) -> u64 {
    match r {
        Res::Buffer(_, _, Some(len)) => len / 4,
        _ => whole / 4,
    }
}

/// Copies the first `bytes` of `source` (an operand bound whole as `res[0]`) into the
/// context's pooled uniform block ([`crate::plan::X_UNIFORM_BYTES`], one for every op:
/// work on a queue runs in order) and returns it, for [`bind_uniform_copy`].
pub(crate) fn uniform_copy(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    source: &wgpu::Buffer,
    bytes: u64,
) -> Result<wgpu::Buffer> {
    let block = ctx.uniform_scratch("wgpu-quant uniform operand", crate::plan::X_UNIFORM_BYTES)?;
    encoder.copy_buffer_to_buffer(source, 0, &block, 0, bytes);
    Ok(block)
}

/// Binds the uniform `block` in place of `res[0]` and the operand it copies after the
/// last resource, where the kernel declares it unused: binding still validates the
/// operand (a destroyed buffer is an error) as it does every other.
pub(crate) fn bind_uniform_copy<'a>(res: &mut Vec<Res<'a>>, block: &'a wgpu::Buffer) {
    let source = std::mem::replace(&mut res[0], Res::whole(block));
    res.push(source);
}

/// A bound resource: a whole buffer, a window of one (`offset`, `size` in bytes), or a
/// texture view.
#[derive(Debug, Clone)]
pub(crate) enum Res<'a> {
    Buffer(&'a wgpu::Buffer, u64, Option<u64>),
    View(&'a wgpu::TextureView),
}

impl<'a> Res<'a> {
    /// The whole buffer.
    pub fn whole(b: &'a wgpu::Buffer) -> Res<'a> {
        Res::Buffer(b, 0, None)
    }

    fn key(&self) -> crate::bindcache::ResKey {
        match self {
            Res::Buffer(b, o, s) => {
                crate::bindcache::ResKey::Buffer((*b).clone(), *o, s.unwrap_or(0))
            }
            Res::View(v) => crate::bindcache::ResKey::View((*v).clone()),
        }
    }

    fn binding(&self) -> wgpu::BindingResource<'a> {
        match *self {
            Res::Buffer(b, 0, None) => b.as_entire_binding(),
            Res::Buffer(b, offset, size) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: b,
                offset,
                size: size.and_then(wgpu::BufferSize::new),
            }),
            Res::View(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// A window of `buffer` covering elements `[start, start + len)` of `elem` bytes each,
/// bound from the closest offset below that the device's alignment allows. Returns the
/// resource and the element index of `start` inside the window (the shader's offset).
pub(crate) fn window<'a>(
    ctx: &Context,
    buffer: &'a wgpu::Buffer,
    elem: u64,
    start: u64,
    len: u64,
) -> (Res<'a>, u64) {
    let align = u64::from(
        ctx.capabilities()
            .limits
            .min_storage_buffer_offset_alignment,
    )
    .max(16);
    let first = start * elem;
    let offset = first - first % align;
    // Whole 16-byte granules (bindings of vec4 arrays need them), within the buffer, which
    // tensors pad to 16 bytes.
    let end = ((start + len) * elem).div_ceil(16) * 16;
    let end = end.min(buffer.size());
    (
        Res::Buffer(buffer, offset, Some(end - offset)),
        (first - offset) / elem,
    )
}

/// Records one dispatch of `kernel`: a uniform buffer holding `params` at binding 0, then
/// `buffers` at bindings 1.., over a `grid` of workgroups. Runs in an error scope.
pub(crate) fn record(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    kernel: &Kernel,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    grid: [u32; 3],
) -> Result<()> {
    let resources: Vec<Res> = buffers.iter().map(|b| Res::whole(b)).collect();
    record_resources(ctx, encoder, op, kernel, params, &resources, grid)
}

/// [`record`] with any resources (buffer windows, textures) at bindings 1... The bind
/// group (with its uniform buffer) comes from the context's pool when the same kernel,
/// parameters and resources were recorded before.
pub(crate) fn record_resources(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    op: &'static str,
    kernel: &Kernel,
    params: &[u8],
    resources: &[Res],
    grid: [u32; 3],
) -> Result<()> {
    let device = ctx.device();
    ctx.scoped(op, || {
        let key = crate::bindcache::BindKey {
            pipeline: kernel.pipeline.clone(),
            params: params.to_vec(),
            resources: resources.iter().map(Res::key).collect(),
        };
        let bind = ctx.bind_group(key, || {
            let ubuf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(op),
                contents: params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(ubuf.as_entire_binding())
                .chain(resources.iter().map(Res::binding))
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
                .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(op),
                layout: &kernel.layout,
                entries: &entries,
            })
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(op),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
    })
}

/// The folded grid for `total` workgroups on this device.
pub(crate) fn grid_for(ctx: &Context, op: &'static str, total: u64) -> Result<[u32; 3]> {
    fold_grid(
        op,
        total,
        ctx.capabilities()
            .limits
            .max_compute_workgroups_per_dimension,
    )
}

/// The pooled scratch of a split-K run's partial sums (per `tag` and size); counts the run
/// in [`crate::ContextStats::split_k_runs`].
pub(crate) fn split_scratch(
    ctx: &Context,
    s: &crate::plan::split::SplitK,
    tag: &'static str,
) -> Result<wgpu::Buffer> {
    ctx.note_split_k();
    ctx.scratch(tag, s.bytes)
}
