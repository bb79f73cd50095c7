//! The GPU storage layout of quantized values.
//!
//! A quantized tensor of shape `[d0, ..., dn]` is stored as `rows = d0 * ... * d(n-1)`
//! rows of `cols = dn` values (the last axis is the reduction axis `K` of a weight or an
//! activation), each row packed into `words_per_row = ceil(cols / per_word)` little-endian
//! `u32` words: value `j` of a row sits in word `j / per_word` at bits
//! `bits * (j % per_word)` (INT8: byte `j % 4`, which is the lane order of WGSL's
//! `dot4I8Packed`; INT4: nibble `j % 8`). Signed values are stored in two's complement.
//! Padding values at the end of a row are raw 0 bits, so an integer dot product over the
//! padded length equals the one over `cols` (the GEMM kernels rely on this; they use the
//! true `cols` for zero-point corrections). Scales (`f32`) and zero points (`i32`) live
//! in separate buffers, one entry per slot (see [`super::Granularity`]).

use super::QType;
use crate::error::{Error, Result};

/// Compile-time checks of the layout arithmetic the kernels hard-code.
const _: () = {
    assert!(QType::I4.per_word() == 8 && QType::U4.per_word() == 8);
    assert!(QType::I8.per_word() == 4 && QType::U8.per_word() == 4);
    assert!(QType::I16.per_word() == 2 && QType::U16.per_word() == 2);
    assert!(QType::I8.qmin() == -128 && QType::I8.qmax() == 127);
    assert!(QType::U8.qmax() == 255 && QType::I4.qmin() == -8 && QType::U4.qmax() == 15);
    assert!(std::mem::size_of::<u32>() * 8 == 32);
};

/// Rows, columns and words of a packed tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedLayout {
    /// The storage type.
    pub qtype: QType,
    /// Number of rows (product of all dims but the last; 1 for a 0-d or 1-d tensor).
    pub rows: usize,
    /// Values per row (the last dim).
    pub cols: usize,
    /// `u32` words per row, `ceil(cols / per_word)`.
    pub words_per_row: usize,
}

impl PackedLayout {
    /// The layout of a tensor of `shape`.
    pub fn new(qtype: QType, shape: &[usize]) -> PackedLayout {
        let cols = shape.last().copied().unwrap_or(1);
        let rows = shape
            .iter()
            .product::<usize>()
            .checked_div(cols)
            .unwrap_or(0);
        PackedLayout {
            qtype,
            rows,
            cols,
            words_per_row: cols.div_ceil(qtype.per_word()),
        }
    }

    /// Total `u32` words.
    pub fn words(&self) -> usize {
        self.rows * self.words_per_row
    }

    /// Bytes of packed data.
    pub fn bytes(&self) -> usize {
        self.words() * 4
    }

    /// Index of the word holding element `(row, col)` and the bit shift inside it.
    pub fn locate(&self, row: usize, col: usize) -> (usize, u32) {
        let pw = self.qtype.per_word();
        (
            row * self.words_per_row + col / pw,
            self.qtype.bits() * (col % pw) as u32,
        )
    }
}

/// Packs integer codes (row-major, `rows * cols` of them) into words. Every code must be
/// in the type's range.
pub fn pack(layout: &PackedLayout, q: &[i32]) -> Result<Vec<u32>> {
    let op = "quant::pack";
    if q.len() != layout.rows * layout.cols {
        return Err(Error::shape(
            op,
            format!(
                "{} rows of {} values need {} codes, got {}",
                layout.rows,
                layout.cols,
                layout.rows * layout.cols,
                q.len()
            ),
        ));
    }
    let (lo, hi) = (layout.qtype.qmin(), layout.qtype.qmax());
    if let Some((i, v)) = q.iter().enumerate().find(|(_, v)| !(lo..=hi).contains(*v)) {
        return Err(Error::invalid(
            op,
            format!(
                "code[{i}] = {v} is outside the {} range {lo}..={hi}",
                layout.qtype
            ),
        ));
    }
    let mask = (1u64 << layout.qtype.bits()) as u32 - 1;
    let mut words = vec![0u32; layout.words()];
    for row in 0..layout.rows {
        for col in 0..layout.cols {
            let (w, shift) = layout.locate(row, col);
            words[w] |= (q[row * layout.cols + col] as u32 & mask) << shift;
        }
    }
    Ok(words)
}

/// Unpacks words into integer codes (sign-extended for signed types).
pub fn unpack(layout: &PackedLayout, words: &[u32]) -> Result<Vec<i32>> {
    if words.len() < layout.words() {
        return Err(Error::shape(
            "quant::unpack",
            format!(
                "{} rows of {} words need {} words, got {}",
                layout.rows,
                layout.words_per_row,
                layout.words(),
                words.len()
            ),
        ));
    }
    let bits = layout.qtype.bits();
    let mask = (1u64 << bits) as u32 - 1;
    let mut out = Vec::with_capacity(layout.rows * layout.cols);
    for row in 0..layout.rows {
        for col in 0..layout.cols {
            let (w, shift) = layout.locate(row, col);
            let raw = (words[w] >> shift) & mask;
            out.push(if layout.qtype.signed() {
                ((raw << (32 - bits)) as i32) >> (32 - bits)
            } else {
                raw as i32
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_type_and_odd_widths() {
        for qtype in QType::ALL {
            for cols in [1usize, 3, 4, 5, 7, 8, 9, 17] {
                let layout = PackedLayout::new(qtype, &[3, cols]);
                let span = (qtype.qmax() - qtype.qmin() + 1) as usize;
                let q: Vec<i32> = (0..3 * cols)
                    .map(|i| qtype.qmin() + ((i * 7919) % span) as i32)
                    .collect();
                let words = pack(&layout, &q).unwrap();
                assert_eq!(words.len(), 3 * cols.div_ceil(qtype.per_word()));
                assert_eq!(unpack(&layout, &words).unwrap(), q, "{qtype} cols {cols}");
            }
        }
    }

    #[test]
    fn int8_byte_order_and_int4_nibbles() {
        let l = PackedLayout::new(QType::I8, &[5]);
        assert_eq!(
            pack(&l, &[1, -1, 2, -128, 3]).unwrap(),
            vec![0x80_02_ff_01, 3]
        );
        let l = PackedLayout::new(QType::I4, &[3]);
        assert_eq!(pack(&l, &[1, -1, -8]).unwrap(), vec![0x0000_08f1]);
        assert!(pack(&l, &[1, 8, 0]).is_err());
    }
}
