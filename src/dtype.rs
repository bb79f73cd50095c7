//! Element types: what a tensor holds on the GPU and the Rust types that map to them.

use std::fmt;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float (`half::f16` on the CPU).
    F16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::U8 => 1,
        }
    }

    /// Lower-case name, as used in messages, JSON and file names.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that can be stored in a [`crate::Tensor`]: `f32`, `half::f16`, `i8`, `u8`, `i32`,
/// `u32`.
pub trait Element: bytemuck::Pod + sealed::Sealed {
    /// The matching dtype.
    const DTYPE: DType;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = $d;
        }
    };
}
element!(f32, DType::F32);
element!(half::f16, DType::F16);
element!(i8, DType::I8);
element!(u8, DType::U8);
element!(i32, DType::I32);
element!(u32, DType::U32);

/// Byte size of a buffer holding `numel` elements of `dtype`, padded to 16 bytes (at least
/// 16, since wgpu rejects empty bindings).
pub(crate) fn padded_bytes(numel: usize, dtype: DType) -> u64 {
    let raw = (numel as u64) * dtype.size() as u64;
    raw.div_ceil(16).max(1) * 16
}
