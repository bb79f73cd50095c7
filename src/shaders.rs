//! The shader registry: every WGSL file, embedded at compile time, and the variants built
//! from it.
//!
//! A variant is a file plus compile-time constants. The registry composes its source as
//! `enable` directives, then one `const NAME: TYPE = VALUE;` line per constant, then the
//! shared snippets the file needs, then the file. WGSL constants (unlike override
//! constants) may size function-local arrays, which the register tiles need, and the
//! compiler folds them, so a variant costs nothing at run time. The shader files never
//! define these names themselves: a missing constant is a compile error, found by the
//! naga test over every variant ([`crate::ops::all_variants`] and the
//! benchmark probes' [`crate::bench::peak_variants`]).
//!
//! Set `WGPU_QUANT_DUMP_SHADERS=<dir>` to write each composed source to that directory
//! when it is compiled, and `WGPU_QUANT_SHADER_DIR=<dir>` to read the kernel files from
//! that directory instead of the embedded copies (for shader development without a
//! rebuild; snippets stay embedded).

use std::fmt::Write as _;

/// A compile-time constant's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Def {
    /// `u32`
    U32(u32),
    /// `bool`
    Bool(bool),
    /// A line of WGSL emitted as is (type aliases and helpers that depend on whether
    /// `f16` is enabled); the name only labels it in the variant's tag.
    Code(&'static str),
}

/// One WGSL file (a kernel family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShaderFile {
    /// `shaders/gemm_tiled.wgsl`: workgroup-memory tiled FP32 GEMM.
    GemmTiled,
    /// `shaders/gemm_reg.wgsl`: register-tiled FP32 GEMM/GEMV without workgroup memory.
    GemmReg,
    /// `shaders/gemm_sg.wgsl`: register-tiled FP32 GEMM sharing A through subgroup
    /// broadcasts, for CPU adapters.
    GemmSubgroup,
    /// `shaders/peak_fma.wgsl`: FP32 or f16 FMA throughput probe.
    PeakFma,
    /// `shaders/peak_dot.wgsl`: packed INT8 dot-product throughput probe.
    PeakDot,
    /// `shaders/peak_copy.wgsl`: memory bandwidth probe.
    PeakCopy,
    /// `shaders/quantize.wgsl`: f32/f16 to packed integers.
    Quantize,
    /// `shaders/dequantize.wgsl`: packed integers to f32/f16.
    Dequantize,
    /// `shaders/qstats.wgsl`: per-channel min/max and histograms for calibration.
    QuantStats,
    /// `shaders/qparams.wgsl`: dynamic quantization parameters from min/max.
    QuantParams,
    /// `shaders/qgemm.wgsl`: W8A8 GEMM with `dot4I8Packed` and fused epilogues.
    QGemm,
    /// `shaders/wgemm.wgsl`: float-activation GEMM/GEMV over int8/int4 or f16 weights.
    WGemm,
    /// `shaders/conv_gemm.wgsl`: float convolution as an implicit GEMM.
    ConvGemm,
    /// `shaders/conv_dw.wgsl`: float depthwise convolution.
    ConvDw,
    /// `shaders/conv_dw_q8.wgsl`: INT8 depthwise convolution with the W8A8 epilogues.
    ConvDwQ8,
    /// `shaders/pool.wgsl`: max and average pooling.
    Pool,
    /// `shaders/eltwise.wgsl`: add, clip, INT8 add with rescaling, softmax.
    Eltwise,
    /// `shaders/layout.wgsl`: nearest upsampling, depth to space, channel concatenation.
    Layout,
    /// `shaders/permute.wgsl`: a general transpose (rank 6 or less).
    Permute,
    /// `shaders/gather.wgsl`: a gather along one axis by u32 indices.
    Gather,
    /// `shaders/train.wgsl`: backward kernels, the softmax cross-entropy and optimizer
    /// steps.
    Train,
    /// `shaders/image.wgsl` reading RGBA8 pixels from a storage buffer.
    ImageBuffer,
    /// `shaders/image.wgsl` reading a texture (`textureLoad`).
    ImageTexture,
    /// `shaders/wgemm.wgsl` reading the activations from a uniform block (small `X`, on
    /// CPU adapters; [`crate::plan::wgemm_uniform_x`]).
    WGemmUniformX,
    /// `shaders/qgemm.wgsl` reading A from a uniform block (small GEMMs on CPU adapters;
    /// [`crate::plan::qgemm_uniform_a`]).
    QGemmUniformA,
    /// `shaders/wgemm_coop.wgsl`: the FP16 GEMM on cooperative matrices (tensor cores;
    /// [`crate::plan::wgemm_coop`]).
    WGemmCoop,
}

/// How a kernel declares one binding of group 0 (bindings are numbered 0, 1, ... in
/// the order listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// `var<uniform>`: the op's `#[repr(C)]` params struct.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
    /// A 2-D float texture read with `textureLoad` (not filterable).
    Texture,
}

/// One shader file's entry in the registry: where it is, what it needs and how it binds.
#[derive(Debug)]
pub struct ShaderSpec {
    /// The file.
    pub file: ShaderFile,
    /// Path under `shaders/`.
    pub path: &'static str,
    /// The embedded source.
    pub source: &'static str,
    /// Name used in labels and error messages.
    pub op: &'static str,
    /// The `u32` and `bool` constants every variant defines (a test checks that each
    /// variant defines exactly these; `Def::Code` lines such as type aliases vary by
    /// variant and are checked by compiling every variant).
    pub constants: &'static [&'static str],
    /// Group 0's bindings, in order (checked against naga's reflection by a test).
    pub bindings: &'static [Bind],
}

use Bind::{Read as R, ReadWrite as RW, Texture as TEX, Uniform as U};

macro_rules! spec {
    ($file:ident, $path:literal, $op:literal, [$($c:literal),*], [$($b:expr),*]) => {
        ShaderSpec {
            file: ShaderFile::$file,
            path: $path,
            source: include_str!(concat!("../shaders/", $path)),
            op: $op,
            constants: &[$($c),*],
            bindings: &[$($b),*],
        }
    };
}

/// Every shader file, in [`ShaderFile`] order: one entry each.
pub static SPECS: [ShaderSpec; 26] = [
    spec!(
        GemmTiled,
        "gemm_tiled.wgsl",
        "gemm (tiled)",
        ["WG_X", "WG_Y", "TM", "TN", "BK", "TRANS_A", "TRANS_B"],
        [U, R, R, R, RW]
    ),
    spec!(
        GemmReg,
        "gemm_reg.wgsl",
        "gemm (register)",
        ["WG", "TM", "TN4", "KU", "TRANS_A", "TRANS_B", "VEC_B", "KV", "A4", "SPLIT"],
        [U, R, R, R, RW]
    ),
    spec!(
        GemmSubgroup,
        "gemm_sg.wgsl",
        "gemm (subgroup)",
        ["WG", "TM", "TN4", "TRANS_A", "TRANS_B", "VEC_B", "KV", "A4"],
        [U, R, R, R, RW]
    ),
    spec!(
        PeakFma,
        "peak_fma.wgsl",
        "peak fma",
        ["WG", "CHAINS", "ITERS"],
        [U, RW]
    ),
    spec!(
        PeakDot,
        "peak_dot.wgsl",
        "peak int8 dot",
        ["WG", "CHAINS", "ITERS"],
        [U, RW]
    ),
    spec!(
        PeakCopy,
        "peak_copy.wgsl",
        "peak bandwidth",
        ["WG"],
        [U, R, RW]
    ),
    spec!(
        Quantize,
        "quantize.wgsl",
        "quantize",
        ["BITS", "IN_F16", "SLOTS"],
        [U, R, R, R, RW]
    ),
    spec!(
        Dequantize,
        "dequantize.wgsl",
        "dequantize",
        ["BITS", "SIGNED", "OUT_F16", "SLOTS"],
        [U, R, R, R, RW]
    ),
    spec!(
        QuantStats,
        "qstats.wgsl",
        "quantization statistics",
        ["MODE", "BINS", "IN_F16"],
        [U, R, R, RW]
    ),
    spec!(
        QuantParams,
        "qparams.wgsl",
        "dynamic quantization parameters",
        [],
        [U, R, RW, RW]
    ),
    spec!(
        QGemm,
        "qgemm.wgsl",
        "qgemm (W8A8)",
        ["WG", "TM", "TN4", "DOT4", "ZA", "ZW", "OUT", "CONV", "REDUCE", "W4"],
        [U, R, R, R, R, R, R, R, RW]
    ),
    spec!(
        WGemm,
        "wgemm.wgsl",
        "wgemm (weight-only / FP16)",
        [
            "WG", "TM", "TN4", "QUANT", "W_BITS", "W_SIGNED", "ZW", "A_F16", "PAIRS", "OUT_F16",
            "REDUCE", "W4"
        ],
        [U, R, R, R, R, R, RW]
    ),
    spec!(
        ConvGemm,
        "conv_gemm.wgsl",
        "conv2d (implicit GEMM)",
        ["WG", "TM", "TN4", "X_F16", "W_F16", "OUT_F16", "POINTWISE"],
        [U, R, R, R, RW]
    ),
    spec!(
        ConvDw,
        "conv_dw.wgsl",
        "conv2d (depthwise)",
        ["WG", "X_F16", "W_F16", "OUT_F16"],
        [U, R, R, R, RW]
    ),
    spec!(
        ConvDwQ8,
        "conv_dw_q8.wgsl",
        "qconv2d (depthwise INT8)",
        ["WG", "OUT"],
        [U, R, R, R, R, R, R, R, RW]
    ),
    spec!(
        Pool,
        "pool.wgsl",
        "pool2d",
        ["WG", "MAX", "X_F16", "OUT_F16"],
        [U, R, RW]
    ),
    spec!(
        Eltwise,
        "eltwise.wgsl",
        "elementwise",
        ["WG", "OP", "FUNC", "A_F16", "B_F16", "OUT_F16"],
        [U, R, R, R, RW]
    ),
    spec!(
        Layout,
        "layout.wgsl",
        "layout",
        ["WG", "OP", "X_F16", "OUT_F16"],
        [U, R, RW]
    ),
    spec!(
        Permute,
        "permute.wgsl",
        "permute",
        ["WG", "MODE", "X_F16", "OUT_F16"],
        [U, R, RW]
    ),
    spec!(
        Gather,
        "gather.wgsl",
        "gather",
        ["WG", "X_F16", "OUT_F16"],
        [U, R, R, RW]
    ),
    spec!(
        Train,
        "train.wgsl",
        "train",
        ["WG", "OP"],
        [U, R, R, RW, RW, RW]
    ),
    spec!(
        ImageBuffer,
        "image.wgsl",
        "image input (buffer)",
        ["WG", "OUT_F16"],
        [U, R, RW]
    ),
    spec!(
        ImageTexture,
        "image.wgsl",
        "image input (texture)",
        ["WG", "OUT_F16"],
        [U, TEX, RW]
    ),
    spec!(
        WGemmUniformX,
        "wgemm.wgsl",
        "wgemm (uniform x)",
        [
            "WG", "TM", "TN4", "QUANT", "W_BITS", "W_SIGNED", "ZW", "A_F16", "PAIRS", "OUT_F16",
            "REDUCE", "W4"
        ],
        [U, U, R, R, R, R, RW, R]
    ),
    spec!(
        QGemmUniformA,
        "qgemm.wgsl",
        "qgemm (uniform a)",
        ["WG", "TM", "TN4", "DOT4", "ZA", "ZW", "OUT", "CONV", "REDUCE", "W4"],
        [U, U, R, R, R, R, R, R, RW, R]
    ),
    spec!(
        WGemmCoop,
        "wgemm_coop.wgsl",
        "wgemm (FP16, cooperative matrices)",
        ["WM", "WN", "OUT_F16"],
        [U, R, R, R, RW]
    ),
];

/// The shared snippets a shader file may import with a `// #import common/NAME.wgsl`
/// line (a snippet may import others; each is emitted once, its imports first).
pub static SNIPPETS: [(&str, &str); 8] = [
    (
        "common/gemm_params.wgsl",
        include_str!("../shaders/common/gemm_params.wgsl"),
    ),
    (
        "common/gemm_load_b.wgsl",
        include_str!("../shaders/common/gemm_load_b.wgsl"),
    ),
    (
        "common/quant_math.wgsl",
        include_str!("../shaders/common/quant_math.wgsl"),
    ),
    (
        "common/store_f16.wgsl",
        include_str!("../shaders/common/store_f16.wgsl"),
    ),
    (
        "common/epilogue.wgsl",
        include_str!("../shaders/common/epilogue.wgsl"),
    ),
    (
        "common/q8_epilogue.wgsl",
        include_str!("../shaders/common/q8_epilogue.wgsl"),
    ),
    (
        "common/window.wgsl",
        include_str!("../shaders/common/window.wgsl"),
    ),
    (
        "common/conv_load.wgsl",
        include_str!("../shaders/common/conv_load.wgsl"),
    ),
];

/// Whether WGSL source calls a subgroup built-in or reads a subgroup built-in value
/// (`subgroupAdd`, `subgroup_size`, ...), not merely mentions subgroups in a comment.
#[cfg(target_arch = "wasm32")]
fn uses_subgroups(source: &str) -> bool {
    source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .any(|code| {
            code.match_indices("subgroup").any(|(i, _)| {
                matches!(code[i + 8..].chars().next(), Some(c) if c == '_' || c.is_ascii_uppercase())
            })
        })
}

/// The `// #import PATH` lines of a WGSL source, in order.
pub fn imports(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("// #import "))
        .map(str::trim)
        .collect()
}

/// The names a snippet uses from the kernel that imports it, from its
/// `// #expects NAME, NAME.FIELD, ...` lines (a test checks that every importer has
/// them and that the snippet uses no other of the importer's globals).
pub fn expects(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("// #expects "))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Appends `path`'s imports (recursively, each once) and then `path` itself.
fn push_snippet(path: &str, done: &mut Vec<String>, out: &mut String) {
    if done.iter().any(|d| d == path) {
        return;
    }
    done.push(path.to_string());
    match SNIPPETS.iter().find(|(p, _)| *p == path) {
        Some((_, src)) => {
            for dep in imports(src) {
                push_snippet(dep, done, out);
            }
            out.push_str(src);
            out.push('\n');
        }
        // Not valid WGSL: the naga test (and pipeline creation) fails on it and names
        // the missing import.
        None => {
            let _ = writeln!(out, "#error unknown import {path}");
        }
    }
}

impl ShaderFile {
    /// Every shader file.
    pub const ALL: [ShaderFile; 21] = {
        let mut all = [ShaderFile::GemmTiled; 21];
        let mut i = 0;
        while i < 21 {
            all[i] = SPECS[i].file;
            i += 1;
        }
        all
    };

    /// The registry entry.
    pub fn spec(self) -> &'static ShaderSpec {
        &SPECS[self as usize]
    }

    /// The file name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        self.spec().path
    }

    /// Name used in labels and error messages.
    pub fn op_name(self) -> &'static str {
        self.spec().op
    }

    /// The explicit bind group layout of every variant of this file.
    pub(crate) fn layout_entries(self) -> Vec<wgpu::BindGroupLayoutEntry> {
        let buffer = |ty| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        self.spec()
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Uniform => buffer(wgpu::BufferBindingType::Uniform),
                    Bind::Read => buffer(wgpu::BufferBindingType::Storage { read_only: true }),
                    Bind::ReadWrite => {
                        buffer(wgpu::BufferBindingType::Storage { read_only: false })
                    }
                    Bind::Texture => wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                },
                count: None,
            })
            .collect()
    }
}

/// Identity of a compiled pipeline in the context's cache.
pub(crate) type KernelKey = ShaderVariant;

/// A shader file with values for its compile-time constants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShaderVariant {
    /// The file.
    pub file: ShaderFile,
    /// Constants, in the order they are emitted.
    pub defs: Vec<(&'static str, Def)>,
    /// Whether the source needs `enable f16;`.
    pub f16: bool,
}

impl ShaderVariant {
    /// A variant without `f16`.
    pub fn new(file: ShaderFile, defs: Vec<(&'static str, Def)>) -> Self {
        ShaderVariant {
            file,
            defs,
            f16: false,
        }
    }

    pub(crate) fn key(&self) -> KernelKey {
        self.clone()
    }

    pub(crate) fn needs_f16(&self) -> bool {
        self.f16
    }

    /// The composed WGSL source.
    pub fn source(&self) -> String {
        let mut s = String::new();
        if self.f16 {
            s.push_str("enable f16;\n");
        }
        let _ = writeln!(s, "// {} {}", self.file.file_name(), self.tag());
        for (name, def) in &self.defs {
            let _ = match def {
                Def::U32(v) => writeln!(s, "const {name}: u32 = {v}u;"),
                Def::Bool(v) => writeln!(s, "const {name}: bool = {v};"),
                Def::Code(code) => writeln!(s, "{code}"),
            };
        }
        let body = match crate::caps::env_var("WGPU_QUANT_SHADER_DIR") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(self.file.file_name());
                std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    eprintln!(
                        "wgpu-quant: {}: {e}; using the built-in shader",
                        path.display()
                    );
                    self.file.spec().source.to_string()
                })
            }
            None => self.file.spec().source.to_string(),
        };
        let mut done = Vec::new();
        for path in imports(&body) {
            push_snippet(path, &mut done, &mut s);
        }
        s.push_str(&body);
        // Browsers require WGSL's `enable subgroups;` before subgroup built-ins; naga 30
        // rejects the directive (it treats subgroups as always there), so only the web
        // build writes it.
        #[cfg(target_arch = "wasm32")]
        if uses_subgroups(&s) {
            s.insert_str(0, "enable subgroups;\n");
        }
        s
    }

    /// A short tag naming the constants, e.g. `WG=64_TM=4`.
    pub fn tag(&self) -> String {
        self.defs
            .iter()
            .map(|(n, d)| match d {
                Def::U32(v) => format!("{n}={v}"),
                Def::Bool(v) => format!("{n}={}", u8::from(*v)),
                Def::Code(_) => n.to_string(),
            })
            .collect::<Vec<_>>()
            .join("_")
    }

    pub(crate) fn dump_if_requested(&self, source: &str) {
        if let Some(dir) = crate::caps::env_var("WGPU_QUANT_DUMP_SHADERS") {
            let stem = self.file.file_name().trim_end_matches(".wgsl");
            let path = std::path::Path::new(&dir).join(format!("{stem}_{}.wgsl", self.tag()));
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, source))
            {
                eprintln!("wgpu-quant: could not dump {}: {e}", path.display());
            }
        }
    }
}

/// The scalar type of one uniform member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// `u32`
    U32,
    /// `i32`
    I32,
    /// `f32`
    F32,
}

/// One scalar of a uniform block, flattened: nested structs and arrays are expanded, so
/// that the Rust struct and the WGSL struct compare member by member whatever their
/// nesting (`win.in_h` in Rust is `in_h` in a flat WGSL struct).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// The member's own name (padding starts with `_`).
    pub name: &'static str,
    /// Byte offset in the block.
    pub offset: usize,
    /// Its type.
    pub scalar: Scalar,
}

/// A type that can sit in a uniform params block: a 4-byte scalar, an array of them, or
/// a struct declared with the crate's `uniform!` macro.
pub trait UniformField {
    /// Appends this field's scalars, named `name`, at `offset`.
    fn leaves(name: &'static str, offset: usize, out: &mut Vec<Leaf>);
}

macro_rules! scalar_field {
    ($t:ty, $s:ident) => {
        impl UniformField for $t {
            fn leaves(name: &'static str, offset: usize, out: &mut Vec<Leaf>) {
                out.push(Leaf {
                    name,
                    offset,
                    scalar: Scalar::$s,
                });
            }
        }
    };
}
scalar_field!(u32, U32);
scalar_field!(i32, I32);
scalar_field!(f32, F32);

impl<T: UniformField, const N: usize> UniformField for [T; N] {
    fn leaves(name: &'static str, offset: usize, out: &mut Vec<Leaf>) {
        for i in 0..N {
            T::leaves(name, offset + i * std::mem::size_of::<T>(), out);
        }
    }
}

/// The flattened members of the params block `T`, in memory order.
pub fn uniform_layout<T: UniformField>() -> Vec<Leaf> {
    let mut out = Vec::new();
    T::leaves("", 0, &mut out);
    out
}

/// Declares a `#[repr(C)]` Pod params struct and its [`UniformField`] reflection, which
/// the interface test compares with naga's view of the WGSL struct it mirrors.
macro_rules! uniform {
    (
        $(#[$m:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fm])* $fvis $field: $ty),*
        }

        impl $crate::shaders::UniformField for $name {
            fn leaves(
                _name: &'static str,
                offset: usize,
                out: &mut Vec<$crate::shaders::Leaf>,
            ) {
                $(
                    <$ty as $crate::shaders::UniformField>::leaves(
                        stringify!($field),
                        offset + std::mem::offset_of!($name, $field),
                        out,
                    );
                )*
            }
        }
    };
}
pub(crate) use uniform;
