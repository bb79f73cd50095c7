//! Constant folding: shape arithmetic (`Shape`, `Gather`, `Concat`, `Slice`, `Cast`,
//! `Unsqueeze`, ...) and elementwise ops whose inputs are all constants run here on the
//! host at load, so the GPU graph holds only the layers that touch activations. Every
//! op follows the ONNX operator spec (numpy broadcasting, negative axes, clamped slice
//! bounds); messages say which input and numbers were wrong.

use super::tensor::{Const, Data};

/// Resolves a possibly negative `axis` against `rank` (negative axes count from the
/// back: -1 is `rank - 1`); `allow_end` admits `rank` too, as `Flatten` does (its range
/// is [-rank, rank]).
pub(crate) fn axis(a: i64, rank: usize, allow_end: bool) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r + i64::from(allow_end)).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Picks elements `idx` (flat indices into `c`) into a new constant of shape `dims`.
fn pick(c: &Const, dims: Vec<usize>, idx: impl Iterator<Item = usize>) -> Const {
    let data = match &c.data {
        Data::F32(v) => Data::F32(idx.map(|i| v[i]).collect()),
        Data::I64(v) => Data::I64(idx.map(|i| v[i]).collect()),
    };
    Const {
        dims,
        elem: c.elem,
        data,
    }
}

/// The same values under new dimensions (Reshape, Squeeze, Unsqueeze, Flatten).
pub(crate) fn reshape(c: &Const, dims: Vec<usize>) -> Result<Const, String> {
    if dims.iter().product::<usize>() != c.len() {
        return Err(format!(
            "cannot view {} values of {:?} as {dims:?}",
            c.len(),
            c.dims
        ));
    }
    Ok(Const { dims, ..c.clone() })
}

/// Numpy broadcasting of two shapes.
pub(crate) fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let get = |s: &[usize], i: usize| -> usize { (i + s.len()).checked_sub(r).map_or(1, |j| s[j]) };
    (0..r)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// The values a folded constant may hold (as `Expand` and `ConstantOfShape` allow).
const MAX_VALUES: usize = 1 << 26;

/// The broadcast shape of two constants to fold, bounded: two small constants may
/// broadcast to more values than a host can hold (`[65536, 1]` and `[1, 65536]`).
fn folded_broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let dims = broadcast(a, b)?;
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_VALUES)
        .ok_or_else(|| {
            format!("constants of shapes {a:?} and {b:?} broadcast to {dims:?}, more than {MAX_VALUES} values to fold")
        })?;
    Ok(dims)
}

/// Flat indices into a tensor of shape `from` for every element of the broadcast shape
/// `to`.
pub(crate) fn broadcast_index(from: &[usize], to: &[usize]) -> Vec<usize> {
    let n: usize = to.iter().product();
    let off = to.len() - from.len();
    let st = strides(from);
    let to_st = strides(to);
    (0..n)
        .map(|flat| {
            let mut i = 0;
            for (d, &s) in to_st.iter().enumerate() {
                let coord = flat / s % to[d].max(1);
                if d >= off && from[d - off] != 1 {
                    i += coord * st[d - off];
                }
            }
            i
        })
        .collect()
}

/// `Add`, `Sub`, `Mul`, `Div` (and `Pow`) of two constants, with broadcasting; integer
/// division truncates as ONNX's integer `Div` does.
pub(crate) fn binary(op: &str, a: &Const, b: &Const) -> Result<Const, String> {
    let dims = folded_broadcast(&a.dims, &b.dims)?;
    let ia = broadcast_index(&a.dims, &dims);
    let ib = broadcast_index(&b.dims, &dims);
    match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => {
            let f = |p: i64, q: i64| -> Result<i64, String> {
                Ok(match op {
                    "Add" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    "Div" => p.checked_div(q).ok_or("integer division by zero")?,
                    "Max" => p.max(q),
                    "Min" => p.min(q),
                    "Mask" => {
                        if q != 0 {
                            p
                        } else {
                            0
                        }
                    }
                    "MaskNot" => {
                        if q == 0 {
                            p
                        } else {
                            0
                        }
                    }
                    _ => return Err(format!("{op} of integer constants is not folded")),
                })
            };
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| f(x[i], y[j]))
                .collect::<Result<_, _>>()?;
            Ok(Const {
                dims,
                elem: a.elem,
                data: Data::I64(v),
            })
        }
        _ => {
            let (x, y) = (a.to_f32(), b.to_f32());
            let f = |p: f32, q: f32| match op {
                "Add" => Some(p + q),
                "Sub" => Some(p - q),
                "Mul" => Some(p * q),
                "Div" => Some(p / q),
                "Pow" => Some(p.powf(q)),
                "Max" | "Min" if p.is_nan() || q.is_nan() => Some(f32::NAN),
                "Max" => Some(p.max(q)),
                "Min" => Some(p.min(q)),
                "PRelu" => Some(if p >= 0.0 { p } else { p * q }),
                "Mask" => Some(if q != 0.0 { p } else { 0.0 }),
                "MaskNot" => Some(if q == 0.0 { p } else { 0.0 }),
                _ => None,
            };
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| f(x[i], y[j]).ok_or_else(|| format!("{op} is not folded")))
                .collect::<Result<_, _>>()?;
            Ok(Const::f32(dims, v))
        }
    }
}

/// `Gather` along `axis` with constant `indices` (negative indices count from the end).
pub(crate) fn gather(data: &Const, indices: &Const, ax: i64) -> Result<Const, String> {
    let ax = axis(ax, data.dims.len(), false)?;
    let n = data.dims[ax];
    let idx: Vec<usize> = indices
        .as_ik()?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < n)
                .ok_or_else(|| format!("index {i} is out of range for dimension {n}"))
        })
        .collect::<Result<_, _>>()?;
    let outer: usize = data.dims[..ax].iter().product();
    let inner: usize = data.dims[ax + 1..].iter().product();
    let mut dims = data.dims[..ax].to_vec();
    dims.extend_from_slice(&indices.dims);
    dims.extend_from_slice(&data.dims[ax + 1..]);
    let order = (0..outer).flat_map(|o| {
        let idx = &idx;
        idx.iter()
            .flat_map(move |&j| (0..inner).map(move |k| (o * n + j) * inner + k))
    });
    Ok(pick(data, dims, order.collect::<Vec<_>>().into_iter()))
}

/// `Concat` of constants along `axis`.
pub(crate) fn concat(parts: &[&Const], ax: i64) -> Result<Const, String> {
    let first = parts.first().ok_or("no inputs")?;
    let ax = axis(ax, first.dims.len(), false)?;
    for p in parts {
        let same = p.dims.len() == first.dims.len()
            && p.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(i, (a, b))| i == ax || a == b);
        if !same {
            return Err(format!(
                "inputs {:?} and {:?} differ outside axis {ax}",
                first.dims, p.dims
            ));
        }
    }
    let outer: usize = first.dims[..ax].iter().product();
    let mut dims = first.dims.clone();
    dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
    let floats = parts.iter().any(|p| matches!(p.data, Data::F32(_)));
    let mut fv = Vec::new();
    let mut iv = Vec::new();
    for o in 0..outer {
        for p in parts {
            let chunk: usize = p.dims[ax..].iter().product();
            let r = o * chunk..(o + 1) * chunk;
            if floats {
                fv.extend_from_slice(&p.to_f32()[r]);
            } else {
                iv.extend_from_slice(&p.as_ik()?[r]);
            }
        }
    }
    Ok(Const {
        dims,
        elem: first.elem,
        data: if floats { Data::F32(fv) } else { Data::I64(iv) },
    })
}

/// `Slice` with constant `starts`, `ends`, `axes` and `steps` (bounds clamped as the
/// spec says; negative steps walk backwards).
/// ONNX `Slice`'s `(start, end, step)` per axis of `dims` (negative indices counted from
/// the end, clamped as ONNX clamps them; axes not named take everything).
pub(crate) fn slice_ranges(
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<(i64, i64, i64)>, String> {
    let rank = dims.len();
    if starts.len() != ends.len() {
        return Err(format!("{} starts and {} ends", starts.len(), ends.len()));
    }
    let mut ranges: Vec<(i64, i64, i64)> = dims.iter().map(|&d| (0, d as i64, 1)).collect();
    for i in 0..starts.len() {
        let ax = match axes {
            Some(a) => axis(*a.get(i).ok_or("fewer axes than starts")?, rank, false)?,
            None => i,
        };
        let step = steps.map_or(Ok(1), |s| {
            s.get(i).copied().ok_or("fewer steps than starts")
        })?;
        if step == 0 {
            return Err("a slice step is 0".into());
        }
        let d = dims[ax] as i64;
        let fix = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(d) } else { v };
            v.clamp(lo, hi)
        };
        let (s, e) = if step > 0 {
            (fix(starts[i], 0, d), fix(ends[i], 0, d))
        } else {
            (fix(starts[i], 0, d - 1), fix(ends[i], -1, d - 1))
        };
        ranges[ax] = (s, e, step);
    }
    Ok(ranges)
}

pub(crate) fn slice(
    data: &Const,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Const, String> {
    let ranges = slice_ranges(&data.dims, starts, ends, axes, steps)?;
    let picks: Vec<Vec<usize>> = ranges
        .iter()
        .map(|&(s, e, st)| {
            let mut v = Vec::new();
            let mut i = s;
            while (st > 0 && i < e) || (st < 0 && i > e) {
                v.push(i as usize);
                i += st;
            }
            v
        })
        .collect();
    let dims: Vec<usize> = picks.iter().map(Vec::len).collect();
    let st = strides(&data.dims);
    let mut idx = vec![0usize];
    for (d, p) in picks.iter().enumerate() {
        idx = idx
            .iter()
            .flat_map(|&base| {
                let s = st[d];
                p.iter().map(move |&i| base + i * s)
            })
            .collect();
    }
    Ok(pick(data, dims, idx.into_iter()))
}

/// Checks that `perm` is a permutation of `rank` axes.
pub(crate) fn check_perm(perm: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
    }
    Ok(())
}

/// `Transpose` of a constant by `perm`.
pub(crate) fn transpose(data: &Const, perm: &[usize]) -> Result<Const, String> {
    check_perm(perm, data.dims.len())?;
    let dims: Vec<usize> = perm.iter().map(|&p| data.dims[p]).collect();
    let st = strides(&data.dims);
    let mut idx = vec![0usize];
    for &p in perm {
        idx = idx
            .iter()
            .flat_map(|&base| {
                let s = st[p];
                (0..data.dims[p]).map(move |i| base + i * s)
            })
            .collect();
    }
    Ok(pick(data, dims, idx.into_iter()))
}

/// `Cast` to ONNX element type `to`: float types keep f32 values (rounded through f16 or
/// bf16 when the target is), integer types truncate toward zero and saturate.
/// A boolean constant (ONNX `BOOL`, stored as 0/1).
fn boolean(dims: Vec<usize>, v: Vec<bool>) -> Const {
    Const {
        elem: super::proto::tensor_proto::DataType::Bool as i32,
        ..Const::i64(dims, v.into_iter().map(i64::from).collect())
    }
}

/// `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`, `Equal` of two constants with
/// broadcasting (integers compared as integers), and the logic operators `And`, `Or`,
/// `Xor` of two booleans (any nonzero value is true): a boolean constant.
pub(crate) fn compare(op: &str, a: &Const, b: &Const) -> Result<Const, String> {
    let dims = folded_broadcast(&a.dims, &b.dims)?;
    let ia = broadcast_index(&a.dims, &dims);
    let ib = broadcast_index(&b.dims, &dims);
    let ord = |i: usize, j: usize| -> Option<std::cmp::Ordering> {
        match (&a.data, &b.data) {
            (Data::I64(x), Data::I64(y)) => Some(x[i].cmp(&y[j])),
            (Data::F32(x), Data::F32(y)) => x[i].partial_cmp(&y[j]),
            (Data::I64(x), Data::F32(y)) => (x[i] as f32).partial_cmp(&y[j]),
            (Data::F32(x), Data::I64(y)) => x[i].partial_cmp(&(y[j] as f32)),
        }
    };
    let truth = |c: &Const, i: usize| match &c.data {
        Data::I64(v) => v[i] != 0,
        Data::F32(v) => v[i] != 0.0,
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    let v = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| {
            let o = ord(i, j);
            Ok(match op {
                "Less" => o == Some(Less),
                "Greater" => o == Some(Greater),
                "LessOrEqual" => matches!(o, Some(Less | Equal)),
                "GreaterOrEqual" => matches!(o, Some(Greater | Equal)),
                "Equal" => o == Some(Equal),
                "And" => truth(a, i) && truth(b, j),
                "Or" => truth(a, i) || truth(b, j),
                "Xor" => truth(a, i) != truth(b, j),
                _ => return Err(format!("{op} is not a comparison")),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(boolean(dims, v))
}

/// The product of two 2-D constants, `alpha * op(a) op(b) + beta * c` (ONNX `Gemm`,
/// `c` broadcast to the output; `MatMul` of matrices is alpha 1, no `c`), in f64 sums
/// rounded to f32: the first step of an unrolled recurrent cell whose state starts as
/// constant zeros. Bounded at 2^26 output values and 2^32 multiply-adds.
pub(crate) fn gemm(
    a: &Const,
    b: &Const,
    c: Option<&Const>,
    (trans_a, trans_b): (bool, bool),
    (alpha, beta): (f32, f32),
) -> Result<Const, String> {
    let (&[ra, ca], &[rb, cb]) = (a.dims.as_slice(), b.dims.as_slice()) else {
        return Err(format!(
            "constant operands of shapes {:?} and {:?} (2-D matrices are folded)",
            a.dims, b.dims
        ));
    };
    let (m, k) = if trans_a { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if trans_b { (cb, rb) } else { (rb, cb) };
    if k != k2 {
        return Err(format!(
            "constant operands of shapes {:?} and {:?} do not multiply",
            a.dims, b.dims
        ));
    }
    // (Counted in u64: usize is 32 bits on the web.)
    let work = (m as u64)
        .checked_mul(n as u64)
        .filter(|&mn| mn <= MAX_VALUES as u64)
        .and_then(|mn| mn.checked_mul(k.max(1) as u64))
        .filter(|&w| w <= 1u64 << 32);
    if work.is_none() {
        return Err(format!(
            "the product of constants {:?} and {:?} is too large to fold",
            a.dims, b.dims
        ));
    }
    if a.as_i64().is_some() || b.as_i64().is_some() {
        return Err("integer matrix products are not folded".into());
    }
    let (x, y) = (a.to_f32(), b.to_f32());
    let av = |i: usize, p: usize| -> f64 {
        f64::from(if trans_a {
            x[p * ca + i]
        } else {
            x[i * ca + p]
        })
    };
    let bv = |p: usize, j: usize| -> f64 {
        f64::from(if trans_b {
            y[j * cb + p]
        } else {
            y[p * cb + j]
        })
    };
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|p| av(i, p) * bv(p, j)).sum();
            out.push((f64::from(alpha) * s) as f32);
        }
    }
    let mut r = Const::f32(vec![m, n], out);
    if let Some(c) = c {
        let bc = binary("Mul", c, &Const::f32(vec![], vec![beta]))?;
        let sum = binary("Add", &r, &bc)?;
        if sum.dims != r.dims {
            return Err(format!(
                "C of shape {:?} does not broadcast to the product's {:?}",
                c.dims, r.dims
            ));
        }
        r = sum;
    }
    Ok(r)
}

/// `Not` of a boolean constant.
pub(crate) fn not(a: &Const) -> Const {
    let v = match &a.data {
        Data::I64(v) => v.iter().map(|&x| x == 0).collect(),
        Data::F32(v) => v.iter().map(|&x| x == 0.0).collect(),
    };
    boolean(a.dims.clone(), v)
}

/// `Where(c, x, y)` of three constants with broadcasting: `x`'s element type (integer
/// shape arithmetic stays integer).
pub(crate) fn where_(c: &Const, x: &Const, y: &Const) -> Result<Const, String> {
    let dims = folded_broadcast(&folded_broadcast(&c.dims, &x.dims)?, &y.dims)?;
    let n: usize = dims.iter().product();
    let (ic, ix, iy) = (
        broadcast_index(&c.dims, &dims),
        broadcast_index(&x.dims, &dims),
        broadcast_index(&y.dims, &dims),
    );
    debug_assert_eq!(ic.len(), n);
    let cond: Vec<bool> = match &c.data {
        Data::I64(v) => ic.iter().map(|&i| v[i] != 0).collect(),
        Data::F32(v) => ic.iter().map(|&i| v[i] != 0.0).collect(),
    };
    Ok(match (&x.data, &y.data) {
        (Data::I64(a), Data::I64(b)) => Const {
            elem: x.elem,
            ..Const::i64(
                dims,
                (0..n)
                    .map(|k| if cond[k] { a[ix[k]] } else { b[iy[k]] })
                    .collect(),
            )
        },
        _ => {
            let (a, b) = (x.to_f32(), y.to_f32());
            Const::f32(
                dims,
                (0..n)
                    .map(|k| if cond[k] { a[ix[k]] } else { b[iy[k]] })
                    .collect(),
            )
        }
    })
}

pub(crate) fn cast(data: &Const, to: i32) -> Result<Const, String> {
    use super::proto::tensor_proto::DataType as T;
    let t = T::try_from(to).map_err(|_| format!("unknown target type {to}"))?;
    let out = match t {
        T::Float | T::Double => Data::F32(data.to_f32()),
        T::Float16 => Data::F32(
            data.to_f32()
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect(),
        ),
        T::Bfloat16 => Data::F32(
            data.to_f32()
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
        ),
        T::Bool => Data::I64(match &data.data {
            Data::F32(v) => v.iter().map(|&x| i64::from(x != 0.0)).collect(),
            Data::I64(v) => v.iter().map(|&x| i64::from(x != 0)).collect(),
        }),
        T::Int8 | T::Uint8 | T::Int16 | T::Uint16 | T::Int32 | T::Uint32 | T::Int64 | T::Uint64 => {
            let (lo, hi): (i64, i64) = match t {
                T::Int8 => (-128, 127),
                T::Uint8 => (0, 255),
                T::Int16 => (-32768, 32767),
                T::Uint16 => (0, 65535),
                T::Int32 => (i32::MIN.into(), i32::MAX.into()),
                T::Uint32 => (0, u32::MAX.into()),
                _ => (i64::MIN, i64::MAX),
            };
            Data::I64(match &data.data {
                Data::F32(v) => v
                    .iter()
                    .map(|&x| (x.trunc() as i64).clamp(lo, hi))
                    .collect(),
                Data::I64(v) => v.iter().map(|&x| x.clamp(lo, hi)).collect(),
            })
        }
        other => return Err(format!("cast to {} is not supported", other.as_str_name())),
    };
    Ok(Const {
        dims: data.dims.clone(),
        elem: to,
        data: out,
    })
}

impl Const {
    /// Integer values, or an error naming the tensor as float.
    pub(crate) fn as_ik(&self) -> Result<&[i64], String> {
        self.as_i64().ok_or_else(|| {
            format!(
                "expected an integer tensor, got {}",
                super::tensor::elem_name(self.elem)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(dims: &[usize], v: &[i64]) -> Const {
        Const::i64(dims.to_vec(), v.to_vec())
    }

    #[test]
    fn gather_concat_slice_transpose_follow_the_spec() {
        let shape = iv(&[4], &[1, 3, 224, 224]);
        let g = gather(&shape, &iv(&[], &[0]), 0).unwrap();
        assert_eq!(
            (g.dims.clone(), g.as_i64().unwrap().to_vec()),
            (vec![], vec![1])
        );
        let g = gather(&shape, &iv(&[2], &[-1, 1]), 0).unwrap();
        assert_eq!(g.as_i64().unwrap(), &[224, 3]);
        let c = concat(&[&iv(&[1], &[1]), &iv(&[1], &[-1])], 0).unwrap();
        assert_eq!(c.as_i64().unwrap(), &[1, -1]);
        let m = iv(&[2, 3], &[0, 1, 2, 3, 4, 5]);
        let s = slice(&m, &[1], &[i64::MAX], Some(&[1]), None).unwrap();
        assert_eq!(
            (s.dims.clone(), s.as_i64().unwrap().to_vec()),
            (vec![2, 2], vec![1, 2, 4, 5])
        );
        let s = slice(&m, &[-1], &[i64::MIN], Some(&[1]), Some(&[-2])).unwrap();
        assert_eq!(s.as_i64().unwrap(), &[2, 0, 5, 3]);
        let t = transpose(&m, &[1, 0]).unwrap();
        assert_eq!(
            (t.dims.clone(), t.as_i64().unwrap().to_vec()),
            (vec![3, 2], vec![0, 3, 1, 4, 2, 5])
        );
        let b = binary("Mul", &m, &iv(&[3], &[1, 10, 100])).unwrap();
        assert_eq!(b.as_i64().unwrap(), &[0, 10, 200, 3, 40, 500]);
        assert!(binary("Add", &m, &iv(&[2], &[1, 2])).is_err());
        assert!(gather(&shape, &iv(&[1], &[4]), 0)
            .unwrap_err()
            .contains("out of range"));
        // Flatten's axis lies in [-rank, rank]: -1 is the last axis, rank the end.
        assert_eq!(axis(-1, 2, true), Ok(1));
        assert_eq!(axis(2, 2, true), Ok(2));
        assert_eq!(axis(-2, 2, true), Ok(0));
        assert!(axis(-3, 2, true).is_err() && axis(2, 2, false).is_err());
        let f = cast(&Const::f32(vec![3], vec![-1.7, 2.5, 300.0]), 3).unwrap();
        assert_eq!(f.as_i64().unwrap(), &[-1, 2, 127]);
    }
}
