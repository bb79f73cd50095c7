//! How an op is cut up: parallel split-K slices ([`SplitK`]), the pieces that keep every
//! operand window within one storage binding ([`gemm_pieces`] for the FP32 GEMM,
//! [`window_units`] along one axis for the other ops) and the folding of a long grid into
//! three dimensions ([`fold_grid`]). Pure functions of the capabilities and the shape.

use crate::caps::Capabilities;
use crate::desc::gemm::{GemmDesc, GemmKernel};
use crate::desc::rows::RowTile;
use crate::error::{Error, Result};

/// A parallel split-K run: `splits` slices of `per` reduction units each, and the bytes
/// of its pooled scratch (`splits` x `outputs` 4-byte partials, rounded up to a power of
/// two so that nearby shapes share one buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitK {
    /// Slices run in parallel.
    pub splits: u32,
    /// Reduction units (K values, words or unrolled steps, as the op counts them) per
    /// slice; the last slice may be shorter.
    pub per: u32,
    /// Bytes of the pooled scratch that holds the partial sums.
    pub bytes: u64,
}

impl SplitK {
    /// Cuts a reduction of `units` into about `requested` slices, each a multiple of
    /// `step` units, with no empty slice; `None` to run unsplit: fewer than two slices,
    /// or scratch for `outputs` partials per slice larger than one binding (or 32-bit
    /// indices).
    pub fn plan(
        caps: &Capabilities,
        requested: u32,
        units: usize,
        step: usize,
        outputs: usize,
    ) -> Option<SplitK> {
        let step = step.max(1);
        let per = units
            .div_ceil(requested.max(1) as usize)
            .div_ceil(step)
            .max(1)
            * step;
        let splits = units.div_ceil(per);
        let words = (splits * outputs) as u64;
        let bytes = (words * 4).next_power_of_two();
        let limit = caps.limits.max_storage_buffer_binding_size;
        (splits > 1 && bytes <= limit && words <= u64::from(u32::MAX)).then_some(SplitK {
            splits: splits as u32,
            per: per as u32,
            bytes,
        })
    }
}

/// One piece of a GEMM split to fit the binding limit: batch entry `b`, rows
/// `m0..m0 + mc`, columns `n0..n0 + nc`, reduction `k0..k0 + kc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Batch entry.
    pub b: usize,
    /// First row.
    pub m0: usize,
    /// Rows.
    pub mc: usize,
    /// First column.
    pub n0: usize,
    /// Columns.
    pub nc: usize,
    /// First reduction index (pieces after the first along K accumulate into C).
    pub k0: usize,
    /// Reduction length.
    pub kc: usize,
}

/// Element ranges (start, length) of A, B, C and the bias that `piece` reads or writes.
pub fn piece_ranges(desc: &GemmDesc, strides: [usize; 3], pc: &Piece) -> [(u64, u64); 4] {
    let (lda, ldb, ldc) = (desc.stored_a().1, desc.stored_b().1, desc.n);
    let [sa, sb, sc] = strides;
    let u = |x: usize| x as u64;
    let a = if desc.trans_a {
        (pc.b * sa + pc.k0 * lda + pc.m0, (pc.kc - 1) * lda + pc.mc)
    } else {
        (pc.b * sa + pc.m0 * lda + pc.k0, (pc.mc - 1) * lda + pc.kc)
    };
    let b = if desc.trans_b {
        (pc.b * sb + pc.n0 * ldb + pc.k0, (pc.nc - 1) * ldb + pc.kc)
    } else {
        (pc.b * sb + pc.k0 * ldb + pc.n0, (pc.kc - 1) * ldb + pc.nc)
    };
    let c = (pc.b * sc + pc.m0 * ldc + pc.n0, (pc.mc - 1) * ldc + pc.nc);
    [
        (u(a.0), u(a.1)),
        (u(b.0), u(b.1)),
        (u(c.0), u(c.1)),
        (u(pc.n0), u(pc.nc)),
    ]
}

/// Halves a split dimension, keeping pieces of N (and everything above 64) multiples of
/// 64 so that vector loads stay aligned.
fn shrink(d: usize) -> usize {
    if d > 64 {
        (d / 2).div_ceil(64) * 64
    } else {
        (d / 2).max(1)
    }
}

/// The pieces of a GEMM whose operands do not all fit in one binding of `limit` bytes
/// (with offsets aligned to `align`): each batch entry alone, then rows, columns and the
/// reduction halved (the dimension that governs the largest window first) until every
/// window fits. K pieces after the first accumulate into C.
pub fn gemm_pieces(
    desc: &GemmDesc,
    strides: [usize; 3],
    limit: u64,
    align: u64,
) -> Result<Vec<Piece>> {
    let worst = |pc: &Piece| {
        // Bytes a window may take: the span, rounded to 16, plus up to one alignment step.
        piece_ranges(desc, strides, pc).map(|(_, len)| (len * 4).div_ceil(16) * 16 + align)
    };
    let (mut mc, mut nc, mut kc) = (desc.m, desc.n, desc.k);
    loop {
        let pc = Piece {
            b: 0,
            m0: 0,
            mc,
            n0: 0,
            nc,
            k0: 0,
            kc,
        };
        let bytes = worst(&pc);
        let Some((i, _)) = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b > limit)
            .max_by_key(|(_, &b)| b)
        else {
            break;
        };
        // The dimension that multiplies the operand's leading dimension, else the other.
        let (major, minor): (&mut usize, &mut usize) = match i {
            0 if desc.trans_a => (&mut kc, &mut mc),
            0 => (&mut mc, &mut kc),
            1 if desc.trans_b => (&mut nc, &mut kc),
            1 => (&mut kc, &mut nc),
            2 => (&mut mc, &mut nc),
            _ => (&mut nc, &mut mc),
        };
        if *major > 1 {
            *major = shrink(*major);
        } else if *minor > 1 {
            *minor = shrink(*minor);
        } else {
            return Err(Error::LimitExceeded {
                op: "gemm",
                what: "a single element window of a GEMM operand".into(),
                needed: bytes[i],
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
    }
    let mut out = Vec::new();
    for b in 0..desc.batch {
        for m0 in (0..desc.m).step_by(mc) {
            for n0 in (0..desc.n).step_by(nc) {
                for k0 in (0..desc.k).step_by(kc) {
                    out.push(Piece {
                        b,
                        m0,
                        mc: mc.min(desc.m - m0),
                        n0,
                        nc: nc.min(desc.n - n0),
                        k0,
                        kc: kc.min(desc.k - k0),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The split-K run of the FP32 GEMM `kernel` over `desc`, or `None` to run unsplit:
/// kernels other than the register kernel's with `split_k > 1`, a K too short for two
/// slices of at least one unrolled step each, and scratch that would not fit one binding
/// (or 32-bit indices) all run unsplit. Slices are a whole number of unrolled steps long.
pub fn gemm_split_k(caps: &Capabilities, kernel: GemmKernel, desc: &GemmDesc) -> Option<SplitK> {
    let GemmKernel::Register(c) = kernel else {
        return None;
    };
    let outputs = desc.batch * desc.m * desc.n;
    // Slices of a transposed B start on multiples of 4 (the K-vector path loads four).
    let step = if desc.trans_b {
        (c.ku as usize).next_multiple_of(4)
    } else {
        c.ku as usize
    };
    SplitK::plan(caps, c.split_k, desc.k, step, outputs)
}

/// The split-K run of the W8A8 GEMM with `tile` over `m x n x k` (slices of whole words
/// of K), or `None` to run unsplit: `split_k` 1, K too short for two slices of a word,
/// or scratch larger than one binding.
pub fn qgemm_split_k(
    caps: &Capabilities,
    tile: RowTile,
    m: usize,
    n: usize,
    k: usize,
) -> Option<SplitK> {
    let words = k.div_ceil(4);
    SplitK::plan(caps, tile.split_k, words, quad_step(words), m * n)
}

/// The slice step of a split-K run over rows of `words` weight words: 4 (slices on whole
/// vec4s, so the kernels keep their four-word weight loads) where the rows hold a multiple
/// of 4 words and at least two such steps, else 1 (a row of 4 words still splits).
fn quad_step(words: usize) -> usize {
    if words.is_multiple_of(4) && words >= 8 {
        4
    } else {
        1
    }
}

/// The split-K run of the weight-only / FP16 GEMM with `tile` over `m x n` with
/// `words_per_row` weight words per row (ceil(K / values per word)), or `None` to run
/// unsplit: `split_k` 1, fewer than two words, or scratch larger than one binding.
pub fn wgemm_split_k(
    caps: &Capabilities,
    tile: RowTile,
    m: usize,
    n: usize,
    words_per_row: usize,
) -> Option<SplitK> {
    SplitK::plan(
        caps,
        tile.split_k,
        words_per_row,
        quad_step(words_per_row),
        m * n,
    )
}

/// The slices of a split-K run (1: unsplit).
pub fn slices(s: Option<SplitK>) -> u32 {
    s.map_or(1, |s| s.splits)
}
/// How many units (rows, columns, images, elements) of a split axis one piece of an op
/// takes so that every window fits one storage binding and starts where the device lets a
/// binding start. `spans` lists the operands that grow along the axis with their bytes
/// per unit. Returns `total` when the whole op fits; otherwise the largest count that is a
/// multiple of the alignment step of every span (so each piece's windows start at an
/// aligned byte offset and the shaders index them from 0), or [`Error::LimitExceeded`]
/// naming the operand when even one step does not fit.
pub fn window_units(
    caps: &Capabilities,
    op: &'static str,
    axis: &str,
    total: usize,
    spans: &[(&str, u64)],
) -> Result<usize> {
    let limits = &caps.limits;
    let limit = limits.max_storage_buffer_binding_size;
    let align = u64::from(limits.min_storage_buffer_offset_alignment).max(16);
    // The first of the widest operands names the error.
    let Some(&(name, widest)) = spans.iter().rev().max_by_key(|(_, u)| *u) else {
        return Ok(total);
    };
    // Windows round their end up to 16 bytes.
    let bytes = |units: u64| (units * widest).div_ceil(16) * 16;
    if widest == 0 || bytes(total as u64) <= limit {
        return Ok(total);
    }
    let step = spans.iter().fold(1u64, |step, &(_, u)| {
        let s = align / gcd(u.max(1), align);
        step / gcd(step, s) * s
    });
    let count = limit / widest / step * step;
    if count == 0 || bytes(count) > limit {
        return Err(Error::LimitExceeded {
            op,
            what: format!(
                "operand {name}, whose smallest piece ({axis}: {step}, so that windows \
                 start at a {align}-byte aligned offset),"
            ),
            needed: bytes(step),
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    Ok(count as usize)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The pieces `[start, start + len)` of `total` units in runs of `per`.
pub fn runs(total: usize, per: usize) -> impl Iterator<Item = (usize, usize)> {
    let per = per.max(1);
    (0..total.div_ceil(per)).map(move |i| (i * per, per.min(total - i * per)))
}

/// Splits `total` workgroups into a 3-D grid within the per-dimension limit. Shaders
/// recover the linear index as `x + nx * (y + ny * z)` and return early past `total`.
pub fn fold_grid(op: &'static str, total: u64, limit: u32) -> Result<[u32; 3]> {
    let limit = u64::from(limit.max(1));
    let x = total.min(limit).max(1);
    let rest = total.div_ceil(x);
    let y = rest.min(limit).max(1);
    let z = rest.div_ceil(y);
    if z > limit {
        return Err(Error::LimitExceeded {
            op,
            what: format!("a dispatch of {total} workgroups"),
            needed: total,
            limit_name: "max_compute_workgroups_per_dimension^3",
            limit: limit.pow(3),
        });
    }
    Ok([x as u32, y as u32, z as u32])
}
