//! GPU operations. Each module owns its shaders' variants, its bind group layout (declared
//! in the shader registry) and its dispatch, and exposes one recording function that takes
//! the caller's `CommandEncoder` plus a convenience that submits.

pub mod gemm;

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
