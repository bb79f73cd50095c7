//! GPU operations. Each module owns its shaders' variants, its bind group layout (declared
//! in the shader registry) and its dispatch, and exposes one recording function that takes
//! the caller's `CommandEncoder` plus a convenience that submits.

pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod image;
pub mod pool;
pub mod qgemm;
pub mod quant;
pub mod wgemm;

use wgpu::util::DeviceExt;

use crate::context::{Context, Kernel};
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};

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
    if bias.numel() != n {
        return Err(Error::shape(
            op,
            format!(
                "bias has shape {:?} ({} elements); expected N = {n}",
                bias.shape(),
                bias.numel()
            ),
        ));
    }
    Ok(())
}

/// Tile of the row kernels ([`qgemm`], [`wgemm`]): `wg` invocations along N, each
/// computing `tm` rows by `4 * tn4` consecutive-by-four columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RowTile {
    /// Invocations per workgroup, all along N.
    pub wg: u32,
    /// Rows per invocation.
    pub tm: u32,
    /// Groups of 4 columns per invocation.
    pub tn4: u32,
}

impl RowTile {
    /// A tile.
    pub const fn new(wg: u32, tm: u32, tn4: u32) -> RowTile {
        RowTile { wg, tm, tn4 }
    }

    /// The workgroup sizes a tile may be narrowed to by [`RowTile::fit`].
    pub const NARROW_WG: [u32; 3] = [8, 16, 32];

    /// This tile with its workgroup narrowed (to 8, 16 or 32 invocations) when `ncols`
    /// output columns would leave most of a 64-wide workgroup idle: invocations past the
    /// last column still run the whole reduction on clamped columns, so a 64-channel layer
    /// on a 512-column workgroup would waste 7/8 of the work.
    pub fn fit(self, ncols: usize) -> RowTile {
        let need = (ncols as u64).div_ceil(u64::from(self.tn4) * 4).max(1);
        let wg = Self::NARROW_WG
            .into_iter()
            .find(|&w| u64::from(w) >= need)
            .unwrap_or(self.wg)
            .min(self.wg);
        RowTile { wg, ..self }
    }

    /// Output columns one workgroup covers.
    pub fn columns(self) -> u32 {
        self.wg * self.tn4 * 4
    }

    pub(crate) fn check(self, ctx: &Context, op: &'static str) -> Result<()> {
        if self.wg == 0 || self.tm == 0 || self.tn4 == 0 {
            return Err(Error::invalid(
                op,
                format!("tile {self:?}: every field must be non-zero"),
            ));
        }
        let limit = ctx
            .capabilities()
            .limits
            .max_compute_invocations_per_workgroup;
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

    fn key(&self) -> crate::pool::ResKey {
        match self {
            Res::Buffer(b, o, s) => crate::pool::ResKey::Buffer((*b).clone(), *o, s.unwrap_or(0)),
            Res::View(v) => crate::pool::ResKey::View((*v).clone()),
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
        let key = crate::pool::BindKey {
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

/// Splits `total` workgroups into a 3-D grid within the per-dimension limit. Shaders
/// recover the linear index as `x + nx * (y + ny * z)` and return early past `total`.
pub(crate) fn fold_grid(op: &'static str, total: u64, limit: u32) -> crate::Result<[u32; 3]> {
    let limit = u64::from(limit.max(1));
    let x = total.min(limit).max(1);
    let rest = total.div_ceil(x);
    let y = rest.min(limit).max(1);
    let z = rest.div_ceil(y);
    if z > limit {
        return Err(crate::Error::LimitExceeded {
            op,
            what: format!("a dispatch of {total} workgroups"),
            needed: total,
            limit_name: "max_compute_workgroups_per_dimension^3",
            limit: limit.pow(3),
        });
    }
    Ok([x as u32, y as u32, z as u32])
}
