//! The shader registry: every WGSL file, embedded at compile time, and the variants built
//! from it.
//!
//! A variant is a file plus compile-time constants. The registry composes its source as
//! `enable` directives, then one `const NAME: TYPE = VALUE;` line per constant, then the
//! shared snippets the file needs, then the file. WGSL constants (unlike override
//! constants) may size function-local arrays, which the register tiles need, and the
//! compiler folds them, so a variant costs nothing at run time. The shader files never
//! define these names themselves: a missing constant is a compile error, found by the
//! naga test over [`all_variants`].
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
    /// `shaders/image.wgsl` reading RGBA8 pixels from a storage buffer.
    ImageBuffer,
    /// `shaders/image.wgsl` reading a texture (`textureLoad`).
    ImageTexture,
}

const GEMM_PARAMS: &str = include_str!("../shaders/common/gemm_params.wgsl");
const GEMM_LOAD_B: &str = include_str!("../shaders/common/gemm_load_b.wgsl");
const QUANT_MATH: &str = include_str!("../shaders/common/quant_math.wgsl");
const STORE_F16: &str = include_str!("../shaders/common/store_f16.wgsl");
const EPILOGUE: &str = include_str!("../shaders/common/epilogue.wgsl");
const Q8_EPILOGUE: &str = include_str!("../shaders/common/q8_epilogue.wgsl");
const WINDOW: &str = include_str!("../shaders/common/window.wgsl");
const CONV_LOAD: &str = include_str!("../shaders/common/conv_load.wgsl");

impl ShaderFile {
    /// Every shader file.
    pub const ALL: [ShaderFile; 19] = [
        ShaderFile::GemmTiled,
        ShaderFile::GemmReg,
        ShaderFile::GemmSubgroup,
        ShaderFile::PeakFma,
        ShaderFile::PeakDot,
        ShaderFile::PeakCopy,
        ShaderFile::Quantize,
        ShaderFile::Dequantize,
        ShaderFile::QuantStats,
        ShaderFile::QuantParams,
        ShaderFile::QGemm,
        ShaderFile::WGemm,
        ShaderFile::ConvGemm,
        ShaderFile::ConvDw,
        ShaderFile::ConvDwQ8,
        ShaderFile::Pool,
        ShaderFile::Eltwise,
        ShaderFile::ImageBuffer,
        ShaderFile::ImageTexture,
    ];

    /// The file name under `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            ShaderFile::GemmTiled => "gemm_tiled.wgsl",
            ShaderFile::GemmReg => "gemm_reg.wgsl",
            ShaderFile::GemmSubgroup => "gemm_sg.wgsl",
            ShaderFile::PeakFma => "peak_fma.wgsl",
            ShaderFile::PeakDot => "peak_dot.wgsl",
            ShaderFile::PeakCopy => "peak_copy.wgsl",
            ShaderFile::Quantize => "quantize.wgsl",
            ShaderFile::Dequantize => "dequantize.wgsl",
            ShaderFile::QuantStats => "qstats.wgsl",
            ShaderFile::QuantParams => "qparams.wgsl",
            ShaderFile::QGemm => "qgemm.wgsl",
            ShaderFile::WGemm => "wgemm.wgsl",
            ShaderFile::ConvGemm => "conv_gemm.wgsl",
            ShaderFile::ConvDw => "conv_dw.wgsl",
            ShaderFile::ConvDwQ8 => "conv_dw_q8.wgsl",
            ShaderFile::Pool => "pool.wgsl",
            ShaderFile::Eltwise => "eltwise.wgsl",
            ShaderFile::ImageBuffer | ShaderFile::ImageTexture => "image.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            ShaderFile::GemmTiled => include_str!("../shaders/gemm_tiled.wgsl"),
            ShaderFile::GemmReg => include_str!("../shaders/gemm_reg.wgsl"),
            ShaderFile::GemmSubgroup => include_str!("../shaders/gemm_sg.wgsl"),
            ShaderFile::PeakFma => include_str!("../shaders/peak_fma.wgsl"),
            ShaderFile::PeakDot => include_str!("../shaders/peak_dot.wgsl"),
            ShaderFile::PeakCopy => include_str!("../shaders/peak_copy.wgsl"),
            ShaderFile::Quantize => include_str!("../shaders/quantize.wgsl"),
            ShaderFile::Dequantize => include_str!("../shaders/dequantize.wgsl"),
            ShaderFile::QuantStats => include_str!("../shaders/qstats.wgsl"),
            ShaderFile::QuantParams => include_str!("../shaders/qparams.wgsl"),
            ShaderFile::QGemm => include_str!("../shaders/qgemm.wgsl"),
            ShaderFile::WGemm => include_str!("../shaders/wgemm.wgsl"),
            ShaderFile::ConvGemm => include_str!("../shaders/conv_gemm.wgsl"),
            ShaderFile::ConvDw => include_str!("../shaders/conv_dw.wgsl"),
            ShaderFile::ConvDwQ8 => include_str!("../shaders/conv_dw_q8.wgsl"),
            ShaderFile::Pool => include_str!("../shaders/pool.wgsl"),
            ShaderFile::Eltwise => include_str!("../shaders/eltwise.wgsl"),
            ShaderFile::ImageBuffer | ShaderFile::ImageTexture => {
                include_str!("../shaders/image.wgsl")
            }
        }
    }

    fn snippets(self) -> &'static [&'static str] {
        match self {
            ShaderFile::GemmTiled => &[GEMM_PARAMS, EPILOGUE],
            ShaderFile::GemmReg | ShaderFile::GemmSubgroup => &[GEMM_PARAMS, GEMM_LOAD_B, EPILOGUE],
            ShaderFile::PeakFma | ShaderFile::PeakDot | ShaderFile::PeakCopy => &[],
            ShaderFile::Pool => &[STORE_F16, WINDOW],
            ShaderFile::ImageBuffer | ShaderFile::ImageTexture => &[STORE_F16],
            ShaderFile::Eltwise => &[QUANT_MATH, STORE_F16],
            ShaderFile::Quantize
            | ShaderFile::Dequantize
            | ShaderFile::QuantStats
            | ShaderFile::QuantParams => &[QUANT_MATH],
            ShaderFile::QGemm | ShaderFile::ConvDwQ8 => {
                &[QUANT_MATH, STORE_F16, EPILOGUE, Q8_EPILOGUE, WINDOW]
            }
            ShaderFile::WGemm => &[STORE_F16, EPILOGUE],
            ShaderFile::ConvGemm | ShaderFile::ConvDw => &[STORE_F16, EPILOGUE, WINDOW, CONV_LOAD],
        }
    }

    /// Name used in labels and error messages.
    pub fn op_name(self) -> &'static str {
        match self {
            ShaderFile::GemmTiled => "gemm (tiled)",
            ShaderFile::GemmReg => "gemm (register)",
            ShaderFile::GemmSubgroup => "gemm (subgroup)",
            ShaderFile::PeakFma => "peak fma",
            ShaderFile::PeakDot => "peak int8 dot",
            ShaderFile::PeakCopy => "peak bandwidth",
            ShaderFile::Quantize => "quantize",
            ShaderFile::Dequantize => "dequantize",
            ShaderFile::QuantStats => "quantization statistics",
            ShaderFile::QuantParams => "dynamic quantization parameters",
            ShaderFile::QGemm => "qgemm (W8A8)",
            ShaderFile::WGemm => "wgemm (weight-only / FP16)",
            ShaderFile::ConvGemm => "conv2d (implicit GEMM)",
            ShaderFile::ConvDw => "conv2d (depthwise)",
            ShaderFile::ConvDwQ8 => "qconv2d (depthwise INT8)",
            ShaderFile::Pool => "pool2d",
            ShaderFile::Eltwise => "elementwise",
            ShaderFile::ImageBuffer => "image input (buffer)",
            ShaderFile::ImageTexture => "image input (texture)",
        }
    }

    /// The explicit bind group layout of every variant of this file.
    pub(crate) fn layout_entries(self) -> Vec<wgpu::BindGroupLayoutEntry> {
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let uniform = wgpu::BufferBindingType::Uniform;
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        match self {
            // params, a, b, bias, c (conv: params, x, w, bias, out)
            ShaderFile::GemmTiled
            | ShaderFile::GemmReg
            | ShaderFile::GemmSubgroup
            | ShaderFile::ConvGemm
            | ShaderFile::ConvDw => vec![
                entry(0, uniform),
                entry(1, ro),
                entry(2, ro),
                entry(3, ro),
                entry(4, rw),
            ],
            // params, out
            ShaderFile::PeakFma | ShaderFile::PeakDot => vec![entry(0, uniform), entry(1, rw)],
            // params, src, dst
            ShaderFile::PeakCopy => vec![entry(0, uniform), entry(1, ro), entry(2, rw)],
            // params, x, out (image: params, pixels, out)
            ShaderFile::Pool | ShaderFile::ImageBuffer => {
                vec![entry(0, uniform), entry(1, ro), entry(2, rw)]
            }
            // params, texture, out
            ShaderFile::ImageTexture => vec![
                entry(0, uniform),
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                entry(2, rw),
            ],
            // params, input, scales, zero points, output (eltwise: params, a, b,
            // quantization parameters, out)
            ShaderFile::Quantize | ShaderFile::Dequantize | ShaderFile::Eltwise => vec![
                entry(0, uniform),
                entry(1, ro),
                entry(2, ro),
                entry(3, ro),
                entry(4, rw),
            ],
            // params, x, ranges, out
            ShaderFile::QuantStats => {
                vec![entry(0, uniform), entry(1, ro), entry(2, ro), entry(3, rw)]
            }
            // params, stats, scales, zero points
            ShaderFile::QuantParams => {
                vec![entry(0, uniform), entry(1, ro), entry(2, rw), entry(3, rw)]
            }
            // params, a, a scales, a zero points, w, w scales, w zero points, bias, out
            ShaderFile::QGemm | ShaderFile::ConvDwQ8 => (0..9)
                .map(|i| match i {
                    0 => entry(0, uniform),
                    8 => entry(8, rw),
                    i => entry(i, ro),
                })
                .collect(),
            // params, x, w, w scales, w zero points, bias, out
            ShaderFile::WGemm => (0..7)
                .map(|i| match i {
                    0 => entry(0, uniform),
                    6 => entry(6, rw),
                    i => entry(i, ro),
                })
                .collect(),
        }
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
        for snippet in self.file.snippets() {
            s.push_str(snippet);
            s.push('\n');
        }
        match std::env::var("WGPU_QUANT_SHADER_DIR") {
            Ok(dir) => {
                let path = std::path::Path::new(&dir).join(self.file.file_name());
                match std::fs::read_to_string(&path) {
                    Ok(body) => s.push_str(&body),
                    Err(e) => {
                        eprintln!(
                            "wgpu-quant: {}: {e}; using the built-in shader",
                            path.display()
                        );
                        s.push_str(self.file.body());
                    }
                }
            }
            Err(_) => s.push_str(self.file.body()),
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
        if let Ok(dir) = std::env::var("WGPU_QUANT_DUMP_SHADERS") {
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

/// Every variant the library can compile: what the naga test validates.
pub fn all_variants() -> Vec<ShaderVariant> {
    let mut v = crate::ops::gemm::all_variants();
    v.extend(crate::bench::peak_variants());
    v.extend(crate::ops::quant::all_variants());
    v.extend(crate::ops::qgemm::all_variants());
    v.extend(crate::ops::wgemm::all_variants());
    v.extend(crate::ops::conv::all_variants());
    v.extend(crate::ops::pool::all_variants());
    v.extend(crate::ops::eltwise::all_variants());
    v.extend(crate::ops::image::all_variants());
    v
}
