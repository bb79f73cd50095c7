//! Lowering an ONNX graph onto [`Graph`]: every node in topological order either folds
//! (all inputs constant), becomes a view of an activation (`Flatten`, `Reshape`,
//! `Identity`, ...), fuses into the layer that produced its input (`BatchNormalization`,
//! `Relu`/`Clip`, a per-channel `Add`/`Mul` after a convolution, a bias `Add` after a
//! `MatMul`), or becomes a layer of its own.
//!
//! Layout: the ONNX tensors are NCHW; the kernels are NHWC. An activation keeps its ONNX
//! (logical) shape for the rules of each operator and its physical shape (what the
//! layer's tensor holds) separately; weights are rearranged once here (a `Gemm` after a
//! `Flatten` of NCHW features has its columns reordered), so the layout changes only at
//! the graph's edges.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::fold;
use super::proto::attribute_proto::AttributeType;

#[path = "compose.rs"]
mod compose;
#[path = "lift.rs"]
mod lift;
#[path = "rnn.rs"]
mod rnn;
#[path = "synth.rs"]
mod synth;
use super::proto::{AttributeProto, NodeProto};
use super::tensor::{Const, Data};
use crate::desc::conv::{ConvDesc, ConvDims, Padding};
use crate::desc::eltwise::{BinaryOp, Clip, Reduce, UnaryOp};
use crate::desc::gemm::Activation;
use crate::desc::layout::{PadMode, ResizeCoords};
use crate::desc::pool::{PoolDesc, PoolKind};
use crate::model::{Graph, Layer, Src, WeightFile};
use crate::quant::{Granularity, QType, QuantParams};

/// How an activation's physical memory relates to its ONNX shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The same order.
    Plain,
    /// ONNX `[N, C, H, W]`, stored `[N, H, W, C]`.
    Nhwc,
    /// ONNX `[N, C*H*W]` (a flatten of NCHW `[C, H, W]`), stored in NHWC order.
    FlatNhwc([usize; 3]),
}

impl Layout {
    /// Whether the physical order equals the ONNX order for `shape`.
    fn is_ordered(self, shape: &[usize]) -> bool {
        match self {
            Layout::Plain => true,
            Layout::Nhwc => shape[1] == 1 || shape[2] * shape[3] == 1,
            Layout::FlatNhwc([c, h, w]) => c == 1 || h * w == 1,
        }
    }
}

/// An activation: produced by the model input or a layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Act {
    /// The ONNX shape.
    pub shape: Vec<usize>,
    /// The layer tensor's shape.
    pub phys: Vec<usize>,
    pub layout: Layout,
    pub src: Src,
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Const(Const),
    Act(Act),
    /// The output of a node that could not be imported.
    Unknown,
    /// An activation with a zero `Pad` still to apply (`[top, left, bottom, right]`): it
    /// folds into the padding of the convolution that reads it.
    Padded(Act, [usize; 4]),
    /// A step of a layer normalization of `x` over its last axis, spelled out as older
    /// exporters write it (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div): no
    /// layer yet; the Div that completes it becomes one [`Layer::LayerNorm`].
    Norm(Act, NormStep),
}

/// How far a spelled-out layer normalization of `x` has come.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum NormStep {
    /// `mean(x)` over the last axis (kept as 1).
    Mean,
    /// `x - mean(x)`.
    Centered,
    /// `(x - mean(x))^2`.
    Squared,
    /// `mean((x - mean(x))^2)`, the biased variance.
    Var,
    /// The variance plus epsilon.
    VarEps(f32),
    /// `sqrt(var + eps)`.
    Std(f32),
}

/// The pattern a [`Val::Norm`] is part of, for errors.
const NORM_PATTERN: &str = "a layer normalization over the last axis spelled out as \
     ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div";

/// Node attributes by name.
pub(crate) struct Attrs<'a>(pub &'a [AttributeProto]);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.iter().find(|a| a.name() == name)
    }
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i())
    }
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f())
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(a.s()).into_owned())
    }
    pub fn get_floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|a| a.floats.clone())
    }
    pub fn tensor(&self, name: &str) -> Option<&super::proto::TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The ONNX operators the importer knows, with what each becomes (docs/ONNX.md lists
/// the same table; a test keeps them equal).
pub const OPERATORS: &[(&str, &str)] = &[
    ("Abs", "an elementwise map; constants: folded"),
    ("Add", "two activations of one shape, or one broadcast against the other over one contiguous run of axes ([N, C, 1, 1] against [N, C, H, W], a squeeze-excite scale; [.., T, 1] against [.., T, C], a row statistic; lower ranks aligned to the right), either operand first, any other numpy broadcast with the operands expanded first (one shape: a residual add, INT8 in static graphs); a per-channel constant: folded into the producing layer (not where a quantized file rounds between them), else an elementwise affine map (one value), a 1x1 depthwise convolution (NCHW activations) or a channel-affine layer along the last axis (other activations); a constant tensor (a position embedding; either operand first): a layer carrying it, broadcast on the host where it varies over several runs of the stored axes, the activation expanded first where the constant widens it; constants: folded"),
    ("And", "booleans (activations of 0 and 1): a product, as Mul; constants: folded"),
    ("ArgMax", "an activation along one axis (keepdims, select_last_index; NaN counts as the largest): a row layer writing the index as a float (exact in FP32 and INT8 models, which keep it in f32; FP16 refuses rows of more than 2049 values), the axis moved last first where it is not the stored last one"),
    ("ArgMin", "as ArgMax"),
    ("AveragePool", "2-D, strides, pads, auto_pad, count_include_pad; ceil_mode (the last window past the input divides by what it covers; with count_include_pad only where it does not change the output size, and not with auto_pad); 1-D: lifted to 2-D as Conv"),
    ("BatchNormalization", "inference: folded into the convolution before it, else a 1x1 depthwise convolution"),
    ("Cast", "an activation to float: an identity (a boolean activation is 0 and 1); constants: folded"),
    ("CastLike", "an activation to the type of a float: an identity; constants: folded"),
    ("Celu", "alpha: an elementwise map"),
    ("Clip", "[0, 6] and [0, inf) fused into the convolution or linear before it; any bounds fused into an elementwise layer before it; else an elementwise clip"),
    ("Concat", "NCHW activations along any axis (stored NHWC, the axis mapped); other activations, mixed layouts and constant pieces (a class token) along any axis in ONNX order; constants: folded"),
    ("Constant", "value, value_float(s), value_int(s)"),
    ("ConvTranspose", "2-D: strides equal to the kernel, no padding, one group (a feature-pyramid upsampler): a 1x1 convolution, then depth to space; any other (strides, pads, output_padding, output_shape, auto_pad, dilations, groups): zero insertion between the pixels, then a stride-1 convolution by the flipped kernel (pads beyond the kernel's reach: the excess cropped after); 1-D: lifted to 2-D as Conv"),
    ("ConstantOfShape", "folded"),
    ("ConvInteger", "in ONNX Runtime's dynamic format (DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul by the scales): a Conv of the dequantized constant weights, the codes kept; int8-file runs it as dynamic INT8, bit for bit with ONNX Runtime's integer arithmetic"),
    ("Conv", "2-D, groups, depthwise, strides, pads, dilations, auto_pad; the weight constant; 1-D (a [N, C, L] activation): lifted to 2-D with a kernel of height 1"),
    ("Div", "two activations of one shape, or one broadcast against the other over one contiguous run of axes ([N, C, 1, 1] against [N, C, H, W], a squeeze-excite scale; [.., T, 1] against [.., T, C], a row statistic; lower ranks aligned to the right), either operand first, any other numpy broadcast with the operands expanded first; by a per-channel constant: as Mul; one constant divided by an activation: an elementwise map; a constant tensor (a position embedding; either operand first): a layer carrying it, broadcast on the host where it varies over several runs of the stored axes, the activation expanded first where the constant widens it; constants: folded"),
    ("DynamicQuantizeLinear", "in ONNX Runtime's dynamic format only (with ConvInteger/MatMulInteger): the input quantized on the fly, u8 per tensor, by the dynamic INT8 model"),
    ("Equal", "an activation and a constant or another activation (broadcast as for Max): an elementwise layer giving 1 or 0 (a boolean activation, read as 0/1 by Cast and Where); constants: folded (integers compared as integers)"),
    ("DepthToSpace", "an NCHW activation, DCR (channels reordered first) and CRD modes: the NHWC depth-to-space layer"),
    ("DequantizeLinear", "of integer constants: folded, the codes kept for the integer kernels (int8/uint8, per tensor or per output channel, with zero points); of a quantized activation: passes it on"),
    ("Dropout", "inference: identity"),
    ("Elu", "alpha: an elementwise map"),
    ("Erf", "an elementwise map; constants: folded"),
    ("Exp", "an elementwise map; constants: folded"),
    ("Expand", "an activation by a constant shape (numpy broadcasting): a broadcast layer; constants: folded"),
    ("Flatten", "a view; a following Gemm/MatMul reads NHWC order through reordered weights"),
    ("Gather", "an activation by constant indices (any shape, negative ones from the end) along any axis: a gather layer (an image by 1-D indices stays an image); constants (shape arithmetic): folded"),
    ("Gelu", "an elementwise map (opset 20; approximate none or tanh)"),
    ("Gemm", "transA 0/1 (A moved first), transB 0/1, alpha, beta, constant B: a linear layer; C a bias row or scalar folded in, any other C that broadcasts added after it; constants: folded"),
    ("Greater", "as Equal"),
    ("GreaterOrEqual", "as Equal"),
    ("GlobalAveragePool", "2-D; 1-D: lifted to 2-D"),
    ("GlobalMaxPool", "2-D; 1-D: lifted to 2-D"),
    ("GRU", "as LSTM (gates z, r, h; linear_before_reset 0 or 1; outputs Y and Y_h)"),
    ("GroupNormalization", "num_groups, epsilon (stash_type 1); scale and bias per channel (opset 21) or per group (18-20): the activation viewed as [N, G, rest] (copied into ONNX order), a layer normalization over each group, viewed back, then a per-channel affine"),
    ("HardSigmoid", "alpha, beta: an elementwise map (fuses a following Clip)"),
    ("HardSwish", "an elementwise map"),
    ("InstanceNormalization", "epsilon; scale and B per channel: a layer normalization over the spatial axes (the activation copied into ONNX order), then a per-channel affine"),
    ("Identity", "a view"),
    ("LSTM", "unrolled over the sequence (at most 512 steps): per direction one linear layer of the input by W (both biases added), then per step the previous state by R (one weight on the GPU for every step), the gate slices, sigmoids, tanh and the cell and hidden updates as elementwise layers; Y, Y_h and Y_c (only those read) as concatenations; forward, reverse and bidirectional, constant initial states, layout 0 and 1; not peepholes, clip, input_forget, other activations or sequence_lens shorter than the sequence"),
    ("LogSoftmax", "as its function body: ReduceMax, Sub, Exp, ReduceSum, Log, Sub over the axis (before opset 13 the axes from it), so large inputs stay finite where a softmax underflows"),
    ("LRN", "a 4-D NCHW activation of at most 8192 channels (size, alpha, beta, bias > 0): the square, a 1x1 convolution by a banded 0/1 weight (the sum over the channel window), then maps and a product with the input"),
    ("LayerNormalization", "over the axes from `axis` on (opset 17; epsilon, Scale and B constants broadcast to those axes): one layer-norm layer over rows of their size, carrying Scale and B (f32 arithmetic; an NCHW activation is copied into ONNX order first); the Mean and InvStdDev outputs are not supported"),
    ("LeakyRelu", "alpha: an elementwise map"),
    ("Less", "as Equal"),
    ("LessOrEqual", "as Equal"),
    ("Log", "an elementwise map; constants: folded"),
    ("MatMul", "2-D activation times a constant 2-D matrix: a linear layer (a following Add of a constant row is its bias); a row-major activation [.., M, K] times a constant: a linear layer over its rows (a sequence's tokens); two activations, or an activation and a batched or 1-D constant, by numpy's matmul rules (1-D operands, leading dimensions broadcast by expanding the operands): batched matrix products in f32 (attention's Q K^T and P V); two constant matrices: folded"),
    ("MatMulInteger", "in ONNX Runtime's dynamic format, as ConvInteger: a MatMul of the dequantized constant weights (per tensor or per column)"),
    ("Max", "one activation and scalar constants: a clip, fused as Clip is; anything else (activations, constant tensors) taken pairwise in order, broadcast as for Add: an elementwise max layer (NaN where either operand is NaN); constants: folded"),
    ("MaxPool", "2-D, strides, pads, dilations, auto_pad; ceil_mode (not with auto_pad where it changes the output size); no Indices output; 1-D: lifted to 2-D as Conv"),
    ("Mean", "as Sum, then a map by 1/n; constants: folded"),
    ("Min", "as Max"),
    ("Mish", "an elementwise map"),
    ("Mul", "two activations of one shape, or one broadcast against the other over one contiguous run of axes ([N, C, 1, 1] against [N, C, H, W], a squeeze-excite scale; [.., T, 1] against [.., T, C], a row statistic; lower ranks aligned to the right), either operand first, any other numpy broadcast with the operands expanded first; by a per-channel constant: as Add; a constant tensor (a position embedding; either operand first): a layer carrying it, broadcast on the host where it varies over several runs of the stored axes, the activation expanded first where the constant widens it; constants: folded"),
    ("Neg", "an elementwise map (an affine map of -1); constants: folded"),
    ("Not", "a boolean activation: the map 1 - x; constants: folded"),
    ("Or", "booleans: the larger, as Max; constants: folded"),
    ("Pad", "zero, on H and W of an image, before a convolution: folded into its padding; any other (constant value, edge, reflect, wrap; any axes, the axes input): a pad layer; negative pads crop (a slice after); of a QOperator file's codes: constant_value (or 0) is a code, dequantized"),
    ("Pow", "an activation to one constant exponent: an elementwise map (integer exponents by products, defined below zero); a tensor exponent, an activation exponent or a constant base (broadcast as for Max): an elementwise power layer; the square inside a spelled-out layer normalization (see ReduceMean); constants: folded"),
    ("PRelu", "a slope that is a constant (one value, one per channel, any shape that broadcasts to the input) or an activation: an elementwise layer; constants: folded"),
    ("QGemm", "com.microsoft: as Gemm between the dequantized input and weights (int32 bias), its output quantized when y_scale is given"),
    ("QLinearAdd", "com.microsoft: as Add, inputs' and output's scales from the file"),
    ("QLinearAveragePool", "com.microsoft: as AveragePool (channels_last 0)"),
    ("QLinearConcat", "com.microsoft: as Concat, each input's and the output's scales from the file"),
    ("QLinearConv", "as Conv with the file's weight codes and scales (int32 bias), input and output quantized as the file says"),
    ("QLinearGlobalAveragePool", "com.microsoft: as GlobalAveragePool (channels_last 0)"),
    ("QLinearLeakyRelu", "com.microsoft: as LeakyRelu"),
    ("QLinearMatMul", "as MatMul with the file's codes (per tensor or per column); a batched (3-D) B: a batched product in f32 of the dequantized codes, its output quantized as the file says"),
    ("QLinearMul", "com.microsoft: as Mul"),
    ("QLinearSigmoid", "com.microsoft: as Sigmoid"),
    ("QLinearSoftmax", "com.microsoft: as Softmax"),
    ("QuantizeLinear", "of an activation: its uint8/int8 scale and zero point (per tensor) for the static INT8 model (`OnnxImport::qmodel`); a ReLU/ReLU6 the range implies goes back to the layer before; of constants: folded"),
    ("Reciprocal", "an elementwise map; constants: folded"),
    ("ReduceL1", "as ReduceSum of |x| (an elementwise map first)"),
    ("ReduceL2", "as ReduceSum of x^2, then a square root (elementwise maps)"),
    ("ReduceMax", "as ReduceMean: over the spatial axes a global max pool, over the last (or NCHW channel) axis a row-max layer, over any other axes rows copied first"),
    ("ReduceMean", "over the spatial axes [2, 3] of an NCHW activation (keepdims 1 or 0; axes as attribute or, from opset 18, input): a global average pool; over the last axis, or the channel axis of an NCHW activation (its stored last axis): a row-mean layer; a layer normalization spelled out from it as ReduceMean, Sub, Pow 2 (or Mul by itself), ReduceMean, Add eps, Sqrt, Div becomes one layer-norm layer (a Mul and an Add of per-channel constants after it fold into its gamma and beta), and where another node (a QuantizeLinear, say) reads a step, the steps become row-mean, broadcast and map layers in the file's order of operations; any other axes (all when none are given): the activation copied into rows over those axes, then a row-mean layer"),
    ("ReduceMin", "as ReduceMax of -x, negated (elementwise maps)"),
    ("ReduceSum", "over the last axis, or the channel axis of an NCHW activation: a row-sum layer (axes as attribute before opset 13, then as input); any other axes (all when none are given; none with noop_with_empty_axes: an identity): the activation copied into rows over those axes first"),
    ("ReduceSumSquare", "as ReduceSum of x^2 (an elementwise map first)"),
    ("Relu", "fused into the convolution, linear or elementwise layer before it; else an elementwise clip"),
    ("Resize", "nearest to any size, every coordinate mode but tf_crop_and_resize and every nearest_mode: the upsampling layer where each pixel repeats a whole number of times, else one gather layer per axis with ONNX's picks; linear to any size (half_pixel, pytorch_half_pixel, align_corners, asymmetric, half_pixel_symmetric; no antialiased downscaling); scales or sizes, for all four axes or (opset 18) the axes named, batch and channels unscaled; sizes with keep_aspect_ratio_policy not_larger or not_smaller: one scale for the named axes, as ONNX's reference"),
    ("Reshape", "a view where the NHWC order allows (flattening, unit dimensions), else a copy of the NCHW activation into ONNX order, then a view; constants: folded"),
    ("Selu", "alpha, gamma: an elementwise map"),
    ("Shape", "folded from the static shapes"),
    ("Sigmoid", "an elementwise map"),
    ("Slice", "an activation with any steps, negative too (constant starts, ends, axes and steps; an image's NCHW axes too): a slice layer that copies the elements; constants: folded"),
    ("Softmax", "over the channel axis of NCHW or the last axis in place; over any other axis (or, before opset 13, the axes from it) the activation is copied into rows first and moved back after"),
    ("Softplus", "an elementwise map"),
    ("Softsign", "an elementwise map"),
    ("SpaceToDepth", "a 4-D NCHW activation, blocksize dividing H and W: a view [N, C, H/b, b, W/b, b], a transpose, a view [N, C b b, H/b, W/b]"),
    ("Split", "an activation along any axis (sizes from the split input or attribute, num_outputs, or equal parts): one slice layer per output"),
    ("Sqrt", "an elementwise map; the step of a spelled-out layer normalization (see ReduceMean); constants: folded"),
    ("Squeeze", "a view (as Reshape); constants: folded"),
    ("Sub", "two activations of one shape, or one broadcast against the other over one contiguous run of axes ([N, C, 1, 1] against [N, C, H, W], a squeeze-excite scale; [.., T, 1] against [.., T, C], a row statistic; lower ranks aligned to the right), either operand first, any other numpy broadcast with the operands expanded first; a per-channel constant: as Add; the centring step of a spelled-out layer normalization (see ReduceMean); a constant tensor (a position embedding; either operand first): a layer carrying it, broadcast on the host where it varies over several runs of the stored axes, the activation expanded first where the constant widens it; constants: folded"),
    ("Sum", "the inputs pairwise in order, as Add; constants: folded"),
    ("Tanh", "an elementwise map"),
    ("Tile", "constant repeats: per repeated axis the activation viewed as [before, 1, rest], broadcast to [before, k, rest], viewed back; constants: folded"),
    ("Transpose", "an activation: NCHW to NHWC ([0, 2, 3, 1]; no data moves, the graph stores NHWC) and back ([0, 3, 1, 2], also of an NHWC graph input, which is then read as NHWC), and moves of axes of length 1, without moving data; any other perm of rank 6 or less moves the data (a permute layer; an image stays stored NHWC, other activations in ONNX order); constants: folded"),
    ("Upsample", "as Resize (opset 7-9)"),
    ("Where", "any of the three an activation (broadcast as for Max): two selecting layers, x where the condition is nonzero and y where it is zero (an infinite or NaN value of the unpicked branch never leaks), added (one is 0); a branch that is a constant 0 adds nothing; constants: folded (integers stay integers)"),
    ("Xor", "booleans: |a - b| (a difference, then a map); constants: folded"),
    ("Unsqueeze", "a view; constants: folded"),
];

/// The lowering state.
pub(crate) struct Lowering {
    pub graph: Graph,
    pub weights: WeightFile,
    pub vals: HashMap<String, Val>,
    /// How many node inputs (and graph outputs) read each value.
    pub uses: HashMap<String, usize>,
    pub outputs: HashSet<String>,
    pub opset: i64,
    /// Layer names taken.
    names: HashSet<String>,
    /// QDQ: the integer codes behind each dequantized constant, by value name.
    qconst: HashMap<String, QConst>,
    /// QDQ: the file's codes and parameters of each layer weight, by weight name.
    pub qweights: BTreeMap<String, (QuantParams, Vec<i32>)>,
    /// QDQ: the parameters of each quantized activation, by producer (`usize::MAX`: the
    /// model input).
    pub act_q: HashMap<usize, QAnno>,
    /// QDQ: weights whose values changed after quantization (a BatchNorm folded into a
    /// quantized convolution): their codes no longer hold.
    pub requantized: Vec<String>,
    /// Steps of spelled-out layer normalizations already built as layers (read by a node
    /// outside the pattern), by the normalized activation's producer and the step.
    norm_layers: HashMap<(usize, String), Act>,
    /// QDQ: copies the importer made whose parameters are their source's (see
    /// `same_codes`), until the file quantizes them itself.
    inherited_q: HashSet<usize>,
    /// QOperator: the values that hold 8-bit codes (outputs of QuantizeLinear, of the
    /// QLinear nodes and of the operators applied to codes directly, as `MaxPool`).
    qcodes: HashSet<String>,
}

/// ONNX Runtime's QOperator nodes: each is its float operator between a dequantization
/// of its inputs and a quantization of its output (`Lowering::qoperator`).
pub(crate) const QOPERATORS: &[&str] = &[
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QLinearConcat",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
];

/// Operators a QOperator file applies to 8-bit codes directly (ONNX Runtime's "direct
/// 8-bit" operators): they move, select or take the largest of the codes, so their
/// output has the input's scale and zero point.
const CODE_OPS: &[&str] = &[
    "MaxPool",
    "GlobalMaxPool",
    "ReduceMax",
    "ReduceMin",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Identity",
    "Slice",
    "Gather",
    "Split",
    "Pad",
    "Resize",
    "Upsample",
    "DepthToSpace",
    "Expand",
];

/// A QOperator node's quantized input: the indices of its value, scale and zero point.
type QInput = (usize, usize, usize);

/// A layer weight's codes in the layer's layout, and where they came from.
pub(crate) struct QWeight {
    /// The dequantized constant's value name.
    pub value: String,
    /// Codes (as f32, exact), in the layer's layout.
    pub codes: Vec<f32>,
    /// The axis of the file's tensor that became the output axis.
    pub out_axis: usize,
    /// A factor folded into the weights (Gemm's alpha), applied to the scales.
    pub scale_mul: f32,
}

/// The integer codes of a dequantized constant.
#[derive(Debug, Clone)]
pub(crate) struct QConst {
    pub codes: Vec<i64>,
    pub elem: i32,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    /// The axis of per-axis parameters (`None`: one scale).
    pub axis: Option<usize>,
}

/// The quantization of an activation (QuantizeLinear): one scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QAnno {
    pub scale: f32,
    pub zero_point: i32,
    pub qtype: QType,
}

fn src_key(s: Src) -> usize {
    match s {
        Src::Input => usize::MAX,
        Src::Node(i) => i,
    }
}

/// The 8-bit type of an ONNX element type.
fn qtype_of(elem: i32) -> R<QType> {
    use super::proto::tensor_proto::DataType as T;
    match T::try_from(elem) {
        Ok(T::Uint8) => Ok(QType::U8),
        Ok(T::Int8) => Ok(QType::I8),
        _ => Err(format!(
            "{} codes are not supported (int8 and uint8 are)",
            super::tensor::elem_name(elem)
        )),
    }
}

type R<T> = Result<T, String>;

/// The most values a constant folded at load may hold (a `ConstantOfShape` of a huge
/// shape is an error, not an allocation).
const MAX_FOLDED: usize = 1 << 26;

impl Lowering {
    pub fn new(opset: i64, uses: HashMap<String, usize>, outputs: HashSet<String>) -> Lowering {
        Lowering {
            graph: Graph::default(),
            weights: WeightFile::default(),
            vals: HashMap::new(),
            uses,
            outputs,
            opset,
            names: HashSet::new(),
            qconst: HashMap::new(),
            qweights: BTreeMap::new(),
            act_q: HashMap::new(),
            requantized: Vec::new(),
            norm_layers: HashMap::new(),
            inherited_q: HashSet::new(),
            qcodes: HashSet::new(),
        }
    }

    /// `DequantizeLinear` / `QuantizeLinear`: on constants they fold (a dequantized
    /// constant keeps its codes for the integer kernels); on activations they annotate
    /// the producing layer's output with its scale and zero point and pass it through.
    fn qdq(&mut self, n: &NodeProto, attrs: &Attrs) -> R<Val> {
        let scale = self
            .konst(n, 1, "scale")?
            .ok_or("input 1 (scale) is missing")?
            .clone();
        let zp = self.konst(n, 2, "zero_point")?.cloned();
        let zps: Vec<i64> = match &zp {
            Some(z) => z.as_ik()?.to_vec(),
            None => vec![0; scale.len()],
        };
        let scales = scale.to_f32();
        if scales.is_empty() || zps.len() != scales.len() {
            return Err(format!(
                "{} scales and {} zero points",
                scales.len(),
                zps.len()
            ));
        }
        if let Some(i) = scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!(
                "scale[{i}] = {} is not finite and positive",
                scales[i]
            ));
        }
        let dequant = n.op_type() == "DequantizeLinear";
        match self.input(n, 0).cloned() {
            Some(Val::Const(x)) => self.qdq_const(n, attrs, x, (scales, zps, zp), dequant),
            Some(Val::Act(a)) => self.qdq_act(n, a, (scales, zps, zp), dequant),
            // A zero pad still to fold into the next convolution: the codes of its input
            // with zeros around them (0 is the zero point's code), so the pad stays
            // pending through the pair.
            Some(Val::Padded(a, pads)) => match self.qdq_act(n, a, (scales, zps, zp), dequant)? {
                Val::Act(a) => Ok(Val::Padded(a, pads)),
                other => Ok(other),
            },
            Some(Val::Norm(..)) => Err(
                "input 0 is a step inside a spelled-out layer normalization, which is not quantized between its steps"
                    .into(),
            ),
            Some(Val::Unknown) | None => Err("input 0 is missing".into()),
        }
    }

    fn qdq_act(
        &mut self,
        n: &NodeProto,
        a: Act,
        (scales, zps, zp): (Vec<f32>, Vec<i64>, Option<Const>),
        dequant: bool,
    ) -> R<Val> {
        if scales.len() != 1 {
            return Err(format!(
                "{} scales: activations are quantized per tensor only",
                scales.len()
            ));
        }
        let key = src_key(a.src);
        if dequant {
            let Some(q) = self.act_q.get(&key) else {
                return Err("dequantizes an activation that no QuantizeLinear quantized".into());
            };
            if q.scale != scales[0] || i64::from(q.zero_point) != zps[0] {
                return Err(format!(
                    "dequantizes with scale {} and zero point {}; it was quantized with {} and {}",
                    scales[0], zps[0], q.scale, q.zero_point
                ));
            }
            return Ok(Val::Act(a));
        }
        let elem = zp
            .as_ref()
            .map_or(super::proto::tensor_proto::DataType::Uint8 as i32, |z| {
                z.elem
            });
        let anno = QAnno {
            scale: scales[0],
            zero_point: zps[0] as i32,
            qtype: qtype_of(elem)?,
        };
        // The codes saturate at [(qmin - z) s, (qmax - z) s]. Exporters drop a
        // ReLU/ReLU6 that this range implies; give it back to a layer that only
        // this node reads, so its float twin clips as the codes do (the integer
        // results are the same with or without it).
        if let Some(i) = self.fusable(&n.input[0], &a) {
            let (lo, hi) = (
                (anno.qtype.qmin() - anno.zero_point) as f32 * anno.scale,
                (anno.qtype.qmax() - anno.zero_point) as f32 * anno.scale,
            );
            let implied = if lo != 0.0 {
                None
            } else if (hi - 6.0).abs() <= 1e-4 * 6.0 {
                Some(Activation::Relu6)
            } else {
                Some(Activation::Relu)
            };
            match (&mut self.graph.nodes[i].layer, implied) {
                (Layer::Conv { desc, .. }, Some(act)) if desc.activation == Activation::None => {
                    desc.activation = act
                }
                (Layer::Linear { activation, .. }, Some(act))
                    if *activation == Activation::None =>
                {
                    *activation = act
                }
                _ => {}
            }
        }
        // (A copy the importer made keeps its source's parameters until the file
        // quantizes it with its own.)
        let inherited = self.inherited_q.remove(&key);
        if let Some(old) = self.act_q.insert(key, anno) {
            if old != anno && !inherited {
                return Err(format!(
                    "quantizes one activation twice, with {old:?} and {anno:?}"
                ));
            }
        }
        Ok(Val::Act(a))
    }

    fn qdq_const(
        &mut self,
        n: &NodeProto,
        attrs: &Attrs,
        x: Const,
        (scales, zps, zp): (Vec<f32>, Vec<i64>, Option<Const>),
        dequant: bool,
    ) -> R<Val> {
        let r = x.dims.len();
        let axis = if scales.len() > 1 {
            let a = fold::axis(attrs.int("axis", 1), r, false)?;
            if x.dims[a] != scales.len() {
                return Err(format!(
                    "{} scales for axis {a} of {:?}",
                    scales.len(),
                    x.dims
                ));
            }
            Some(a)
        } else {
            None
        };
        let inner: usize = axis.map_or(1, |a| x.dims[a + 1..].iter().product());
        let slot = |e: usize| axis.map_or(0, |a| e / inner % x.dims[a]);
        if dequant {
            let codes = x.as_ik()?.to_vec();
            let v: Vec<f32> = codes
                .iter()
                .enumerate()
                .map(|(e, &q)| ((q - zps[slot(e)]) as f32) * scales[slot(e)])
                .collect();
            if let Some(out) = n.output.first() {
                self.qconst.insert(
                    out.clone(),
                    QConst {
                        codes,
                        elem: x.elem,
                        scales: scales.clone(),
                        zero_points: zps,
                        axis,
                    },
                );
            }
            Ok(Val::Const(Const::f32(x.dims.clone(), v)))
        } else {
            let elem = zp
                .as_ref()
                .map_or(super::proto::tensor_proto::DataType::Uint8 as i32, |z| {
                    z.elem
                });
            let qt = qtype_of(elem)?;
            let xv = x.to_f32();
            let codes = (0..xv.len())
                .map(|e| {
                    i64::from(crate::quant::quantize_value(
                        xv[e],
                        scales[slot(e)],
                        zps[slot(e)] as i32,
                        qt.qmin(),
                        qt.qmax(),
                    ))
                })
                .collect();
            Ok(Val::Const(Const {
                dims: x.dims.clone(),
                elem,
                data: Data::I64(codes),
            }))
        }
    }

    /// ONNX Runtime's QOperator nodes (`QLinearConv`, `QLinearMatMul`, and from the
    /// `com.microsoft` domain `QGemm`, `QLinearAdd`, `QLinearMul`, `QLinearConcat`,
    /// `QLinearAveragePool`, `QLinearGlobalAveragePool`, `QLinearSigmoid`,
    /// `QLinearLeakyRelu`, `QLinearSoftmax`; see `QOPERATORS`): each is its float operator between a dequantization of its
    /// inputs and a quantization of its output, so it is lowered as exactly that, through
    /// the same code as a QDQ model (the inputs' scales checked against their producers',
    /// the weights' codes kept, the output annotated).
    fn qoperator(&mut self, n: &NodeProto, label: &str) -> R<Val> {
        let op = n.op_type();
        let base = format!("{label}::");
        let name = |i: usize| n.input.get(i).cloned().unwrap_or_default();
        // (activation inputs as (value, scale, zero point) indices; output (scale, zero
        // point) indices; the float op and its inputs).
        let (acts, out_q, float_op) = qoperator_spec(n)?;
        if matches!(op, "QLinearGlobalAveragePool" | "QLinearAveragePool")
            && Attrs(&n.attribute).int("channels_last", 0) != 0
        {
            return Err("channels_last = 1 is not supported".into());
        }
        if let Some((sc, _)) = out_q {
            if name(sc).is_empty() {
                return Err(format!("input {sc} (the output scale) is missing"));
            }
        }
        let mut inputs = self.qoperator_inputs(n, &base, &acts)?;
        // Weights (dequantized, their codes kept) and the int32 bias (dequantized with
        // the input's scale times the weight's).
        let weight = |s: &mut Lowering, w: usize, axis: i64| -> R<String> {
            let tmp = format!("{base}w");
            let dq = NodeProto {
                op_type: Some("DequantizeLinear".into()),
                input: vec![name(w), name(w + 1), name(w + 2)],
                output: vec![tmp.clone()],
                attribute: vec![AttributeProto {
                    name: Some("axis".into()),
                    i: Some(axis),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let c = s.qdq(&dq, &Attrs(&dq.attribute))?;
            s.vals.insert(tmp.clone(), c);
            Ok(tmp)
        };
        let bias = |s: &mut Lowering, b: usize, out: usize| -> R<Option<String>> {
            let Some(Val::Const(bq)) = s.input(n, b).cloned() else {
                return Ok(None);
            };
            let xs = s
                .konst(n, 1, "input scale")?
                .and_then(Const::scalar_f32)
                .ok_or("the input scale is not a scalar")?;
            let ws = s
                .konst(n, 4, "weight scale")?
                .ok_or("the weight scale is missing")?
                .to_f32();
            let q = bq.to_f32();
            if q.len() != out || !(ws.len() == 1 || ws.len() == out) {
                return Err(format!(
                    "{} bias values and {} weight scales for {out} outputs",
                    q.len(),
                    ws.len()
                ));
            }
            let v = (0..out)
                .map(|o| q[o] * (xs * ws[if ws.len() == 1 { 0 } else { o }]))
                .collect();
            let tmp = format!("{base}b");
            s.vals
                .insert(tmp.clone(), Val::Const(Const::f32(vec![out], v)));
            Ok(Some(tmp))
        };
        let attrs_in = Attrs(&n.attribute);
        let mut attributes: Vec<AttributeProto> = n.attribute.clone();
        match op {
            "QLinearConv" => {
                let w = weight(self, 3, 0)?;
                let oc = match self.vals.get(&w) {
                    Some(Val::Const(c)) => c.dims.first().copied().unwrap_or(0),
                    _ => 0,
                };
                inputs.push(w);
                if let Some(b) = bias(self, 8, oc)? {
                    inputs.push(b);
                }
            }
            "QLinearMatMul" => inputs.push(weight(self, 3, 1)?),
            "QGemm" => {
                if attrs_in.int("transA", 0) != 0 {
                    return Err("transA = 1 is not supported".into());
                }
                let trans_b = attrs_in.int("transB", 0) != 0;
                let w = weight(self, 3, if trans_b { 0 } else { 1 })?;
                let out = match self.vals.get(&w) {
                    Some(Val::Const(c)) if c.dims.len() == 2 => c.dims[usize::from(!trans_b)],
                    _ => 0,
                };
                inputs.push(w);
                if let Some(b) = bias(self, 6, out)? {
                    inputs.push(b);
                }
                attributes.retain(|a| matches!(a.name(), "alpha" | "transA" | "transB"));
            }
            "QLinearSoftmax" => attributes.retain(|a| a.name() == "axis"),
            "QLinearConcat" => attributes.retain(|a| a.name() == "axis"),
            "QLinearLeakyRelu" => attributes.retain(|a| a.name() == "alpha"),
            "QLinearAveragePool" => attributes.retain(|a| a.name() != "channels_last"),
            _ => attributes.clear(),
        }
        let out = format!("{base}out");
        let float = NodeProto {
            op_type: Some(float_op.into()),
            input: inputs,
            output: vec![out.clone()],
            attribute: attributes,
            ..Default::default()
        };
        let v = self
            .node(&float, label)?
            .into_iter()
            .next()
            .ok_or("the float operator gave no output")?;
        let Some((sc, zp)) = out_q else {
            return Ok(v);
        };
        self.vals.insert(out.clone(), v);
        self.uses.insert(out.clone(), 1);
        let q = NodeProto {
            op_type: Some("QuantizeLinear".into()),
            input: vec![out, name(sc), name(zp)],
            output: vec![format!("{base}q")],
            ..Default::default()
        };
        self.qdq(&q, &Attrs(&[]))
    }

    /// A node of a QOperator file that pads 8-bit codes (`Pad` of a value in
    /// `qcodes`, constant mode): its pad value is a code too, `constant_value` or 0 by
    /// ONNX's default, so it is given to the float `Pad` dequantized with the codes'
    /// scale and zero point (ONNX Runtime writes the zero point there, a real 0). Other
    /// nodes are lowered as they are (`None`).
    pub(crate) fn codes_node(&mut self, n: &NodeProto) -> R<Option<NodeProto>> {
        if n.op_type() != "Pad"
            || !n.input.first().is_some_and(|x| self.qcodes.contains(x))
            || Attrs(&n.attribute)
                .string("mode")
                .unwrap_or_else(|| "constant".into())
                != "constant"
        {
            return Ok(None);
        }
        let Some(Val::Act(x)) = self.input(n, 0).cloned() else {
            return Ok(None);
        };
        let Some(q) = self.act_q.get(&src_key(x.src)).copied() else {
            return Ok(None);
        };
        let code = match self.konst(n, 2, "constant_value")? {
            None => 0.0,
            Some(c) => match c.to_f32().as_slice() {
                [v] => *v,
                v => {
                    return Err(format!(
                        "constant_value of the codes has {} values (one expected)",
                        v.len()
                    ))
                }
            },
        };
        let value = (code - q.zero_point as f32) * q.scale;
        let name = format!("{}::pad_value", n.output.first().map_or("", String::as_str));
        self.vals
            .insert(name.clone(), Val::Const(Const::f32(vec![], vec![value])));
        let mut m = n.clone();
        m.input.resize(m.input.len().max(3), String::new());
        m.input[2] = name;
        Ok(Some(m))
    }

    /// After node `n` (top level, its outputs stored): which of its outputs hold 8-bit
    /// codes of a QOperator file. An operator of `CODE_OPS` applied to codes passes their
    /// scale and zero point on to the layers it made, so a later QLinear node's check
    /// of its input's parameters holds, and the INT8 model keeps the values as codes.
    pub(crate) fn note_codes(&mut self, n: &NodeProto) {
        let op = n.op_type();
        let outputs = n.output.iter().filter(|o| !o.is_empty());
        let codes_in = n.input.first().is_some_and(|x| self.qcodes.contains(x));
        if op == "QuantizeLinear" || (QOPERATORS.contains(&op) && op != "QGemm") {
            self.qcodes.extend(outputs.cloned());
        } else if op == "QGemm" {
            // Its output is codes only when y_scale is given (else f32).
            if n.input.get(7).is_some_and(|s| !s.is_empty()) {
                self.qcodes.extend(outputs.cloned());
            }
        } else if CODE_OPS.contains(&op) && codes_in {
            let Some(Val::Act(x)) = self.input(n, 0).cloned() else {
                return;
            };
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                // (A zero pad still to fold into the next layer is the input itself.)
                if let Some(Val::Act(y) | Val::Padded(y, _)) = self.vals.get(o).cloned() {
                    if let Src::Node(i) = y.src {
                        if y.src != x.src && !self.act_q.contains_key(&i) {
                            self.same_codes(x.src, i);
                        }
                    }
                    self.qcodes.insert(o.clone());
                }
            }
        }
    }

    /// The activation (or constant) inputs of a QOperator node, as value names a float
    /// node can read: an activation's scale checked against its producer's, a
    /// constant's codes dequantized.
    fn qoperator_inputs(&mut self, n: &NodeProto, base: &str, acts: &[QInput]) -> R<Vec<String>> {
        let name = |i: usize| n.input.get(i).cloned().unwrap_or_default();
        let mut inputs = Vec::new();
        for &(v, sc, zp) in acts {
            match self.input(n, v).cloned() {
                Some(Val::Act(_)) => {
                    // The activation's codes must be the ones its producer wrote.
                    let dq = NodeProto {
                        op_type: Some("DequantizeLinear".into()),
                        input: vec![name(v), name(sc), name(zp)],
                        output: vec![format!("{base}in{v}")],
                        ..Default::default()
                    };
                    self.qdq(&dq, &Attrs(&[]))?;
                    inputs.push(name(v));
                }
                Some(Val::Const(_)) => {
                    let tmp = format!("{base}in{v}");
                    let dq = NodeProto {
                        op_type: Some("DequantizeLinear".into()),
                        input: vec![name(v), name(sc), name(zp)],
                        output: vec![tmp.clone()],
                        ..Default::default()
                    };
                    let c = self.qdq(&dq, &Attrs(&[]))?;
                    self.vals.insert(tmp.clone(), c);
                    inputs.push(tmp);
                }
                _ => return Err(format!("input {v} is missing")),
            }
        }
        Ok(inputs)
    }

    /// Records the file's codes of a layer weight made from the dequantized constant
    /// `value` (`[out, ...]` after the same transposition as the weight; `codes` given
    /// as f32 in that layout).
    fn record_qweight(&mut self, weight: &str, shape: &[usize], q: QWeight) -> R<()> {
        let Some(qc) = self.qconst.get(&q.value) else {
            return Ok(());
        };
        let oc = shape[0];
        let scales: Vec<f32> = match qc.axis {
            None => vec![qc.scales[0] * q.scale_mul; oc],
            Some(a) if a == q.out_axis && qc.scales.len() == oc => {
                qc.scales.iter().map(|s| s * q.scale_mul).collect()
            }
            Some(a) => return Err(format!("weight scales along axis {a} (only per output channel, or per tensor, map onto the integer kernels)")),
        };
        let zps: Vec<i32> = match qc.axis {
            None => vec![qc.zero_points[0] as i32; oc],
            Some(_) => qc.zero_points.iter().map(|&z| z as i32).collect(),
        };
        let qt = qtype_of(qc.elem)?;
        let p = QuantParams::new(qt, Granularity::PerChannel { axis: 0 }, shape, scales, zps)
            .map_err(|e| e.to_string())?;
        self.qweights.insert(
            weight.to_string(),
            (p, q.codes.iter().map(|&c| c as i32).collect()),
        );
        Ok(())
    }

    /// The codes of dequantized constant `value` as f32 (exact), if it is one.
    fn codes_of(&self, value: &str) -> Option<Vec<f32>> {
        self.qconst
            .get(value)
            .map(|q| q.codes.iter().map(|&c| c as f32).collect())
    }

    fn input<'v>(&'v self, n: &NodeProto, i: usize) -> Option<&'v Val> {
        n.input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| self.vals.get(s))
    }

    fn konst(&self, n: &NodeProto, i: usize, what: &str) -> R<Option<&Const>> {
        match self.input(n, i) {
            None => Ok(None),
            Some(Val::Const(c)) => Ok(Some(c)),
            Some(_) => Err(format!(
                "input {i} ({what}, '{}') must be a constant (an initializer or folded), not an activation",
                n.input[i]
            )),
        }
    }

    fn act(&self, n: &NodeProto, i: usize) -> R<Act> {
        match self.input(n, i) {
            Some(Val::Act(a)) => Ok(a.clone()),
            Some(Val::Const(_)) => Err(format!(
                "input {i} ('{}') is a constant; an activation was expected",
                n.input[i]
            )),
            Some(Val::Padded(..)) => Err(format!(
                "input {i} ('{}') is a zero Pad, which only a convolution can take (it folds into \
                 the convolution's padding)",
                n.input[i]
            )),
            Some(Val::Norm(_, step)) => Err(format!(
                "input {i} ('{}') is the {step:?} step of {NORM_PATTERN}, not yet built as \
                 layers where this node reads it",
                n.input[i]
            )),
            _ => Err(format!("input {i} is missing")),
        }
    }

    /// Whether the layer behind `a` may be changed in place to absorb a node reading
    /// value `name`: it is read only here, is not a graph output and comes from a layer.
    fn fusable(&self, name: &str, a: &Act) -> Option<usize> {
        let Src::Node(i) = a.src else { return None };
        let single = self.uses.get(name).copied() == Some(1) && !self.outputs.contains(name);
        single.then_some(i)
    }

    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            k += 1;
            name = format!("{base}#{k}");
        }
        name
    }

    fn push(&mut self, label: &str, layer: Layer, input: Src) -> usize {
        let name = self.unique(label);
        self.graph.push_from(&name, layer, input)
    }

    /// Lowers one node whose inputs are all resolved; returns its outputs' values.
    pub fn node(&mut self, n: &NodeProto, label: &str) -> R<Vec<Val>> {
        let op = n.op_type();
        let attrs = Attrs(&n.attribute);
        let all_const = n
            .input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| matches!(self.vals.get(s), Some(Val::Const(_))));
        if op == "Constant" {
            return Ok(vec![Val::Const(constant(&attrs)?)]);
        }
        self.norm_inputs_as_layers(n, &attrs, label)?;
        self.padded_inputs_as_layers(n, label)?;
        if matches!(op, "QuantizeLinear" | "DequantizeLinear") {
            return Ok(vec![self.qdq(n, &attrs)?]);
        }
        if QOPERATORS.contains(&op) {
            return Ok(vec![self.qoperator(n, label)?]);
        }
        if matches!(op, "LSTM" | "GRU") {
            return self.rnn(n, &attrs, label);
        }
        if let Some(v) = self.lift_1d(n, label)? {
            return Ok(v);
        }
        if let Some(v) = self.compose(n, &attrs, label)? {
            return Ok(v);
        }
        if all_const && !n.input.is_empty() {
            if let Some(c) = self.fold(n, &attrs)? {
                return Ok(vec![Val::Const(c)]);
            }
        }
        if let Some(v) = self.norm_step(n, &attrs, label)? {
            return Ok(vec![v]);
        }
        if let Some(v) = self.lower_map(n, &attrs, label)? {
            return Ok(v);
        }
        let one = |a: Act| Ok(vec![Val::Act(a)]);
        match op {
            "LayerNormalization" => one(self.lower_layer_norm(n, &attrs, label)?),
            "Identity" => Ok(vec![self
                .input(n, 0)
                .cloned()
                .ok_or("input 0 is missing")?]),
            "Dropout" => {
                if n.output
                    .get(1)
                    .is_some_and(|m| !m.is_empty() && self.uses.contains_key(m))
                {
                    return Err(
                        "the mask output is read; only inference Dropout (identity) is supported"
                            .into(),
                    );
                }
                Ok(vec![self
                    .input(n, 0)
                    .cloned()
                    .ok_or("input 0 is missing")?])
            }
            "Shape" => {
                let a = self.act(n, 0)?;
                Ok(vec![Val::Const(shape_of(&a.shape, &attrs))])
            }
            "Conv" => one(self.conv(n, &attrs, label)?),
            "BatchNormalization" => self.lower_batch_norm(n, &attrs, label),
            "Relu" => {
                let x = self.act(n, 0)?;
                one(self.clip(&n.input[0], x, 0.0, f32::INFINITY, label)?)
            }
            "Clip" => self.lower_clip_node(n, &attrs, label),
            "Add" | "Sub" | "Mul" | "Div" => one(self.binary(n, op, label)?),
            "Gemm" => self.lower_gemm(n, &attrs, label),
            "MatMul" => self.lower_matmul(n, label),
            "MaxPool" | "AveragePool" => self.lower_pool(n, &attrs, label),
            "ReduceMean" | "ReduceMax" | "ReduceSum" | "ReduceMin" | "ReduceSumSquare"
            | "ReduceL1" | "ReduceL2" => self.lower_reduce(n, &attrs, label),
            "ArgMax" | "ArgMin" => one(self.arg_reduce(n, &attrs, label)?),
            "Slice" => one(self.slice_act(n, &attrs, label)?),
            "Split" => self.split(n, &attrs, label),
            "LRN" => one(self.lrn(n, &attrs, label)?),
            "InstanceNormalization" => one(self.instance_norm(n, &attrs, label)?),
            "GroupNormalization" => one(self.group_norm(n, &attrs, label)?),
            "Transpose" => {
                let x = self.act(n, 0)?;
                let perm: Vec<usize> = match attrs.ints("perm") {
                    Some(p) => p.iter().map(|&v| to_us(v)).collect::<R<_>>()?,
                    None => (0..x.shape.len()).rev().collect(),
                };
                one(self.transpose(x, &perm, label)?)
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let x = self.nhwc(self.act(n, 0)?)?;
                one(self.global_pool(x, op == "GlobalMaxPool", label)?)
            }
            "Softmax" => self.lower_softmax(n, &attrs, label),
            "Resize" | "Upsample" => one(self.resize(n, &attrs, label)?),
            "Concat" => self.lower_concat(n, &attrs, label),
            "ConvTranspose" => one(self.conv_transpose(n, &attrs, label)?),
            "Pad" => self.lower_pad(n, &attrs, label),
            "Expand" => one(self.expand_act(n, label)?),
            "DepthToSpace" => one(self.depth_to_space_act(n, &attrs, label)?),
            "Gather" => one(self.gather_act(n, &attrs, label)?),
            "Flatten" => {
                let x = self.act(n, 0)?;
                let ax = fold::axis(attrs.int("axis", 1), x.shape.len(), true)?;
                let outer: usize = x.shape[..ax].iter().product();
                let inner: usize = x.shape[ax..].iter().product();
                one(self.reshape(x, vec![outer, inner], label)?)
            }
            "Reshape" => {
                let x = self.act(n, 0)?;
                let s = self
                    .konst(n, 1, "shape")?
                    .ok_or("input 1 (shape) is missing")?;
                let dims = reshape_dims(&x.shape, s.as_ik()?, attrs.int("allowzero", 0) != 0)?;
                one(self.reshape(x, dims, label)?)
            }
            "Squeeze" | "Unsqueeze" => {
                let x = self.act(n, 0)?;
                let axes = self.axes(n, &attrs)?;
                let dims = squeeze_dims(op, &x.shape, axes.as_deref())?;
                one(self.reshape(x, dims, label)?)
            }
            "ConvInteger" | "MatMulInteger" | "DynamicQuantizeLinear" => Err(format!(
                "{op} is read only in ONNX Runtime's dynamic format (x -> DynamicQuantizeLinear \
                 -> ConvInteger/MatMulInteger with constant weights -> Cast to float -> Mul by \
                 Mul(x's scale, the weight's constant scale)); this node is outside it"
            )),
            _ => Err(format!("operator {op} is not supported on activations")),
        }
    }

    /// Elementwise functions of one activation, casts, `Sum` and `Min`/`Max`; `None` for
    /// other operators.
    fn lower_map(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Option<Vec<Val>>> {
        let op = n.op_type();
        let one = |a: Act| Ok(vec![Val::Act(a)]);
        let v: R<Vec<Val>> = match op {
            "CastLike" => {
                // Activations are float: the target must be float, and a constant cast
                // like an activation becomes a float constant.
                let target_float = match self.input(n, 1) {
                    Some(Val::Const(t)) => t.elem == 1,
                    Some(Val::Act(_)) => true,
                    _ => false,
                };
                match self.input(n, 0).cloned() {
                    _ if !target_float => {
                        Err("a CastLike to a type other than float is not supported".into())
                    }
                    Some(Val::Const(c)) => Ok(vec![Val::Const(fold::cast(&c, 1)?)]),
                    Some(Val::Act(x)) => one(x),
                    _ => Err("input 0 is missing".into()),
                }
            }
            "Sum" => Ok(vec![self.sum(n, label)?]),
            "Mean" => {
                let count = n.input.len();
                match self.sum(n, label)? {
                    Val::Const(c) => Ok(vec![Val::Const(fold::binary(
                        "Div",
                        &c,
                        &Const::f32(vec![], vec![count as f32]),
                    )?)]),
                    Val::Act(x) if count == 1 => one(x),
                    Val::Act(x) => {
                        let f = UnaryOp::Affine {
                            scale: 1.0 / count as f32,
                            shift: 0.0,
                        };
                        one(self.map(x, f, &format!("{label}.mean"))?)
                    }
                    _ => Err("input 0 is missing".into()),
                }
            }
            "Min" | "Max" => Ok(vec![self.min_max(n, label)?]),
            "PRelu" => one(self.binary(n, op, label)?),
            // Booleans are activations of 0 and 1 (`Cast` to float reads them as such).
            "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Equal" => {
                one(self.binary(n, op, label)?)
            }
            "And" => one(self.binary(n, "Mul", label)?),
            "Or" => one(self.binary(n, "Max", label)?),
            "Xor" => {
                let d = self.binary(n, "Sub", &format!("{label}.sub"))?;
                one(self.map(d, UnaryOp::Abs, label)?)
            }
            "Not" => {
                let f = UnaryOp::Affine {
                    scale: -1.0,
                    shift: 1.0,
                };
                let x = self.act(n, 0)?;
                one(self.map(x, f, label)?)
            }
            "Where" => Ok(vec![self.where_(n, label)?]),
            "Elu" | "Selu" | "Celu" | "Softplus" | "Softsign" | "Mish" => {
                let f = match op {
                    "Elu" => UnaryOp::Elu {
                        alpha: attrs.float("alpha", 1.0),
                        scale: 1.0,
                    },
                    "Selu" => UnaryOp::Elu {
                        alpha: attrs.float("alpha", 1.673_263_2),
                        scale: attrs.float("gamma", 1.050_701),
                    },
                    "Celu" => UnaryOp::Celu {
                        alpha: attrs.float("alpha", 1.0),
                    },
                    "Softplus" => UnaryOp::Softplus,
                    "Softsign" => UnaryOp::Softsign,
                    _ => UnaryOp::Mish,
                };
                let (_, a, b) = f.code();
                if !a.is_finite() || !b.is_finite() || f == (UnaryOp::Celu { alpha: 0.0 }) {
                    return Err(format!(
                        "the parameters of {f:?} must be finite (alpha nonzero for Celu)"
                    ));
                }
                one(self.map(self.act(n, 0)?, f, label)?)
            }
            "Cast" => {
                // Activations are float: a cast to float changes nothing.
                let x = self.act(n, 0)?;
                match attrs.int("to", 0) {
                    1 => one(x),
                    t => Err(format!(
                        "a Cast of an activation to type {t} is not supported (only to float, \
                         an identity)"
                    )),
                }
            }
            "Sigmoid" => one(self.map(self.act(n, 0)?, UnaryOp::Sigmoid, label)?),
            "Tanh" => one(self.map(self.act(n, 0)?, UnaryOp::Tanh, label)?),
            "HardSwish" => one(self.map(self.act(n, 0)?, UnaryOp::HardSwish, label)?),
            "HardSigmoid" => {
                let f = UnaryOp::HardSigmoid {
                    alpha: attrs.float("alpha", 0.2),
                    beta: attrs.float("beta", 0.5),
                };
                one(self.map(self.act(n, 0)?, f, label)?)
            }
            "LeakyRelu" => {
                let f = UnaryOp::LeakyRelu {
                    alpha: attrs.float("alpha", 0.01),
                };
                one(self.map(self.act(n, 0)?, f, label)?)
            }
            "Sqrt" | "Exp" | "Log" | "Abs" | "Neg" | "Reciprocal" | "Erf" => {
                let f = unary_of(op).ok_or("not an elementwise function")?;
                one(self.map(self.act(n, 0)?, f, label)?)
            }
            "Gelu" => {
                let tanh = match attrs.string("approximate").as_deref() {
                    None | Some("none") => false,
                    Some("tanh") => true,
                    Some(other) => return Err(format!("approximate '{other}' (none or tanh)")),
                };
                one(self.map(self.act(n, 0)?, UnaryOp::Gelu { tanh }, label)?)
            }
            "Pow" => match (self.input(n, 0).cloned(), self.input(n, 1).cloned()) {
                (Some(Val::Act(x)), Some(Val::Const(e))) if e.len() == 1 => {
                    let v = e.to_f32()[0];
                    if !v.is_finite() {
                        return Err(format!("the exponent {v} is not finite"));
                    }
                    // One exponent that does not widen x: an elementwise map.
                    if e.dims.len() <= x.shape.len() {
                        one(self.map(x, UnaryOp::Pow { exponent: v }, label)?)
                    } else {
                        one(self.binary(n, op, label)?)
                    }
                }
                // A tensor exponent, an activation exponent or a constant base: a layer.
                _ => one(self.binary(n, op, label)?),
            },
            _ => return Ok(None),
        };
        v.map(Some)
    }

    fn lower_batch_norm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        if attrs.int("training_mode", 0) != 0 || n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err("training mode (running statistics as outputs) is not supported".into());
        }
        let x = self.act(n, 0)?;
        let c = x
            .shape
            .get(1)
            .copied()
            .ok_or("the input has no channel axis")?;
        let get = |i: usize, what: &str| -> R<Vec<f32>> {
            let v = self
                .konst(n, i, what)?
                .ok_or(format!("input {i} ({what}) is missing"))?
                .to_f32();
            if v.len() != c {
                return Err(format!(
                    "{what} has {} values; the input has {c} channels",
                    v.len()
                ));
            }
            Ok(v)
        };
        let (g, b, m, v) = (
            get(1, "scale")?,
            get(2, "B")?,
            get(3, "mean")?,
            get(4, "var")?,
        );
        let eps = attrs.float("epsilon", 1e-5);
        let mut scale = Vec::with_capacity(c);
        let mut shift = Vec::with_capacity(c);
        for i in 0..c {
            let den = f64::from(v[i]) + f64::from(eps);
            if den.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(format!("var[{i}] + epsilon = {den} is not positive"));
            }
            let k = f64::from(g[i]) / den.sqrt();
            scale.push(k);
            shift.push(f64::from(b[i]) - f64::from(m[i]) * k);
        }
        one(self.affine(&n.input[0], x, &scale, &shift, label)?)
    }

    fn lower_clip_node(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        let (lo, hi) = if self.opset < 11 {
            (
                attrs.float("min", f32::NEG_INFINITY),
                attrs.float("max", f32::INFINITY),
            )
        } else {
            let b = |i: usize, d: f32| -> R<f32> {
                Ok(
                    match self.konst(n, i, if i == 1 { "min" } else { "max" })? {
                        Some(c) => c.scalar_f32().ok_or("a bound is not a scalar")?,
                        None => d,
                    },
                )
            };
            (b(1, f32::NEG_INFINITY)?, b(2, f32::INFINITY)?)
        };
        if lo.is_nan() || hi.is_nan() {
            return Err(format!("a NaN bound (min {lo}, max {hi})"));
        }
        // ONNX: with min above max, every value becomes max.
        let lo = lo.min(hi);
        let x = self.act(n, 0)?;
        one(self.clip(&n.input[0], x, lo, hi, label)?)
    }

    fn lower_gemm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        let a = self.act(n, 0)?;
        let a = if attrs.int("transA", 0) != 0 {
            // A is [K, M]: moved to [M, K] first.
            let [k, m] = a.shape[..] else {
                return Err(format!("A has shape {:?}; Gemm needs a matrix", a.shape));
            };
            let x = self.row_major(a, &[k, m], &format!("{label}.a"))?;
            let layer = Layer::Permute {
                view: vec![k, m],
                perm: vec![1, 0],
            };
            let i = self.push(&format!("{label}.at"), layer, x.src);
            self.same_codes(x.src, i);
            Act {
                shape: vec![m, k],
                phys: vec![m, k],
                layout: Layout::Plain,
                src: Src::Node(i),
            }
        } else {
            a
        };
        let b = self
            .konst(n, 1, "B")?
            .ok_or("input 1 (B) is missing")?
            .clone();
        if b.dims.len() != 2 {
            return Err(format!("B has shape {:?}; Gemm needs a matrix", b.dims));
        }
        let trans_b = attrs.int("transB", 0) != 0;
        let (k, nn) = if trans_b {
            (b.dims[1], b.dims[0])
        } else {
            (b.dims[0], b.dims[1])
        };
        let alpha = attrs.float("alpha", 1.0);
        let mut w = b.to_f32();
        let mut codes = self.codes_of(&n.input[1]);
        if !trans_b {
            w = crate::reference::transpose(&w, k, nn);
            codes = codes.map(|c| crate::reference::transpose(&c, k, nn));
        }
        w.iter_mut().for_each(|v| *v *= alpha);
        let q = codes.map(|c| QWeight {
            value: n.input[1].clone(),
            codes: c,
            out_axis: if trans_b { 0 } else { 1 },
            scale_mul: alpha,
        });
        let bias = match self.konst(n, 2, "C")? {
            None => None,
            Some(c) => {
                let beta = attrs.float("beta", 1.0);
                let d = c.dims.clone();
                let per_col = d.iter().product::<usize>() == 1
                    || (d.last() == Some(&nn) && d.iter().rev().skip(1).all(|&x| x == 1));
                if !per_col {
                    // A matrix C: added after the product, scaled by beta.
                    let v: Vec<f32> = c.to_f32().iter().map(|x| x * beta).collect();
                    let c = Const::f32(d, v);
                    let y = self.linear(a, w, None, nn, k, &format!("{label}.ab"), q)?;
                    return one(self.const_binary(y, &c, "Add", false, label)?);
                }
                let v = c.to_f32();
                Some(
                    (0..nn)
                        .map(|j| v[if v.len() == 1 { 0 } else { j }] * beta)
                        .collect(),
                )
            }
        };
        one(self.linear(a, w, bias, nn, k, label, q)?)
    }

    fn lower_matmul(&mut self, n: &NodeProto, label: &str) -> R<Vec<Val>> {
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        let a = match self.input(n, 0).cloned() {
            Some(Val::Const(c)) => {
                // A constant times an activation: both as operands of a product.
                let b = self.act(n, 1)?;
                let ca = self.const_act(&c, b.src, &format!("{label}.a"));
                return one(self.matmul_acts(ca, b, label)?);
            }
            _ => self.act(n, 0)?,
        };
        if let Some(Val::Act(b)) = self.input(n, 1).cloned() {
            return one(self.matmul_acts(a, b, label)?);
        }
        let b = self
            .konst(n, 1, "B")?
            .ok_or("input 1 (B) is missing")?
            .clone();
        let rows = a.layout == Layout::Plain && a.shape.len() > 2;
        if b.dims.len() != 2 || (a.shape.len() != 2 && !rows) {
            // A batched or 1-D constant: a product of two operands.
            let cb = self.const_act(&b, a.src, &format!("{label}.b"));
            return one(self.matmul_acts(a, cb, label)?);
        }
        // [.., M, K] x [K, N]: a linear layer over the rows, read from a tensor whose
        // stored last axis is K.
        let a = if rows && a.phys.last() != a.shape.last() {
            self.materialize(a, &format!("{label}.rows"))
        } else {
            a
        };
        let (k, nn) = (b.dims[0], b.dims[1]);
        let w = crate::reference::transpose(&b.to_f32(), k, nn);
        let q = self.codes_of(&n.input[1]).map(|c| QWeight {
            value: n.input[1].clone(),
            codes: crate::reference::transpose(&c, k, nn),
            out_axis: 1,
            scale_mul: 1.0,
        });
        one(self.linear(a, w, None, nn, k, label, q)?)
    }

    /// `ReduceMean`/`ReduceMax` over the spatial axes of an NCHW activation (how PyTorch
    /// exports `x.mean((2, 3))`): a global average or max pool, viewed as `[N, C]` without
    /// `keepdims`.
    ///
    /// `ReduceSumSquare`, `ReduceL1`, `ReduceL2` and `ReduceMin` are the sum or the max
    /// with maps around it: x^2 or |x| before (and a square root after, for L2), -x
    /// before and after (min).
    fn lower_reduce(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let op = n.op_type();
        let neg = UnaryOp::Affine {
            scale: -1.0,
            shift: 0.0,
        };
        let (before, after) = match op {
            "ReduceSumSquare" => (Some(UnaryOp::Pow { exponent: 2.0 }), None),
            "ReduceL1" => (Some(UnaryOp::Abs), None),
            "ReduceL2" => (Some(UnaryOp::Pow { exponent: 2.0 }), Some(UnaryOp::Sqrt)),
            "ReduceMin" => (Some(neg), Some(neg)),
            _ => (None, None),
        };
        let x = self.act(n, 0)?;
        let x = match before {
            Some(f) => self.map(x, f, &format!("{label}.before"))?,
            None => x,
        };
        let reduced = self.reduce_core(n, attrs, x, label)?;
        Ok(vec![Val::Act(match after {
            Some(f) => self.map(reduced, f, &format!("{label}.after"))?,
            None => reduced,
        })])
    }

    /// The sum (`ReduceSum`, `ReduceSumSquare`, `ReduceL1`, `ReduceL2`), mean or max
    /// (`ReduceMax`, `ReduceMin`) of `x` over the node's axes.
    fn reduce_core(&mut self, n: &NodeProto, attrs: &Attrs, x: Act, label: &str) -> R<Act> {
        let kind = match n.op_type() {
            "ReduceMean" => Reduce::Mean,
            "ReduceMax" | "ReduceMin" => Reduce::Max,
            _ => Reduce::Sum,
        };
        let axes = self.reduce_axes(n, attrs)?;
        if axes.as_ref().is_some_and(Vec::is_empty) && attrs.int("noop_with_empty_axes", 0) != 0 {
            return Ok(x);
        }
        let rank = x.shape.len() as i64;
        let axes: Vec<i64> = axes
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| (0..rank).collect());
        let keep = attrs.int("keepdims", 1) != 0;
        self.reduce_over(x, kind, &axes, keep, label)
    }

    /// `ArgMax`/`ArgMin` of an activation along one axis (`keepdims`,
    /// `select_last_index`): a row layer giving the index as a float.
    fn arg_reduce(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.act(n, 0)?;
        let last = attrs.int("select_last_index", 0) != 0;
        let kind = match n.op_type() {
            "ArgMax" => Reduce::ArgMax { last },
            _ => Reduce::ArgMin { last },
        };
        let keep = attrs.int("keepdims", 1) != 0;
        self.reduce_over(x, kind, &[attrs.int("axis", 0)], keep, label)
    }

    /// `kind` of `x` over `axes` (negative from the end), the axes kept as 1 or dropped.
    fn reduce_over(
        &mut self,
        x: Act,
        kind: Reduce,
        axes: &[i64],
        keep: bool,
        label: &str,
    ) -> R<Act> {
        let rank = x.shape.len() as i64;
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| fold::axis(a, rank as usize, false).map(|v| v as i64))
            .collect::<R<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        let channels = x.layout == Layout::Nhwc && rank == 4 && axes == [1];
        if rank >= 1 && (axes == [rank - 1] || channels) {
            // Over the stored last axis: ONNX's last axis, or the channels of an NCHW
            // activation stored NHWC.
            let x = if channels {
                x
            } else {
                self.last_axis_innermost(x, &format!("{label}.x"))?
            };
            let m = self.row_reduce(x, kind, label);
            if keep {
                return Ok(m);
            }
            let mut dims = m.shape.clone();
            dims.remove(axes[0] as usize);
            return self.reshape(m, dims, label);
        }
        let pooled = rank == 4 && axes == [2, 3] && matches!(kind, Reduce::Mean | Reduce::Max);
        if !pooled || x.layout != Layout::Nhwc {
            // Any other set of axes: the activation copied into rows over those axes,
            // reduced along the rows.
            let ax: Vec<usize> = axes.iter().map(|&a| a as usize).collect();
            let dims: Vec<usize> = (0..x.shape.len())
                .filter_map(|a| match (ax.contains(&a), keep) {
                    (false, _) => Some(x.shape[a]),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect();
            let rows = self.rows_of(x, &ax, label)?;
            let m = self.row_reduce(rows, kind, label);
            return view(m, dims);
        }
        let x = self.nhwc(x)?;
        let pooled = self.global_pool(x, kind == Reduce::Max, label)?;
        let (nb, c) = (pooled.shape[0], pooled.shape[1]);
        Ok(if keep {
            pooled
        } else {
            view(pooled, vec![nb, c])?
        })
    }

    /// A reduction's axes: an attribute before opset 18 (13 for `ReduceSum`), an input
    /// from then on.
    fn reduce_axes(&self, n: &NodeProto, attrs: &Attrs) -> R<Option<Vec<i64>>> {
        let from = if n.op_type() == "ReduceSum" { 13 } else { 18 };
        Ok(if self.opset < from {
            attrs.ints("axes")
        } else {
            self.konst(n, 1, "axes")?
                .map(|c| c.as_ik().map(<[i64]>::to_vec))
                .transpose()?
        })
    }

    /// A global average (or max) pool of NCHW activation `x`: `[N, C, 1, 1]`.
    fn global_pool(&mut self, x: Act, max: bool, label: &str) -> R<Act> {
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let mut d = PoolDesc::new(kind, 1, 1);
        d.kernel = None;
        let out = d.output_shape(&x.phys).map_err(|e| e.to_string())?;
        Ok(self.layer4(Layer::Pool(d), x, out, label))
    }

    fn lower_pool(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let op = n.op_type();
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        if n.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err("the Indices output is not supported".into());
        }
        let x = self.nhwc(self.act(n, 0)?)?;
        let kernel = attrs
            .ints("kernel_shape")
            .ok_or("kernel_shape is missing")?;
        if kernel.len() != 2 {
            return Err(format!(
                "kernel_shape {kernel:?}: only 2-D pooling is supported"
            ));
        }
        let kind = if op == "MaxPool" {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        let mut d = PoolDesc::new(kind, 1, 1);
        d.kernel = Some([to_us(kernel[0])?, to_us(kernel[1])?]);
        d.stride = pair(attrs, "strides", 1)?;
        d.dilation = pair(attrs, "dilations", 1)?;
        d.padding = padding(attrs)?;
        d.count_pad = attrs.int("count_include_pad", 0) != 0;
        let out = d.output_shape(&x.phys).map_err(|e| e.to_string())?;
        let (mut d, mut out) = (d, out);
        if attrs.int("ceil_mode", 0) != 0 {
            let (padding, grown) = ceil_padding(&d, &x.phys)?;
            let mut c = d;
            c.padding = padding;
            let oc = c.output_shape(&x.phys).map_err(|e| e.to_string())?;
            let explicit = matches!(d.padding, Padding::Explicit(_) | Padding::Valid);
            if oc != out && (!explicit || (grown && d.count_pad && kind == PoolKind::Avg)) {
                return Err(format!(
                    "ceil_mode = 1 changes the output from {out:?} to {oc:?}, which is supported \
                     with explicit pads, for max pooling or averages without count_include_pad"
                ));
            }
            // The windows past the input read padding: ignored by a max, not counted
            // by an average without count_include_pad, as ONNX says.
            (d, out) = (c, oc);
        }
        one(self.layer4(Layer::Pool(d), x, out, label))
    }

    fn lower_softmax(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let one = |a: Act| -> R<Vec<Val>> { Ok(vec![Val::Act(a)]) };
        let x = self.act(n, 0)?;
        let r = x.shape.len();
        let default = if self.opset < 13 { 1 } else { -1 };
        let ax = fold::axis(attrs.int("axis", default), r, false)?;
        let mut x = x;
        // A row-major view whose last axis spans several stored axes (a flatten of a
        // permuted tensor, say) is copied into its own shape first.
        if x.layout == Layout::Plain && x.phys != x.shape && x.shape.len() <= 6 {
            let last = x.shape.last().copied().unwrap_or(0);
            if x.phys.last() != Some(&last) {
                x = self.materialize(x, &format!("{label}.view"));
            }
        }
        let last = x.phys.last().copied().unwrap_or(0);
        let reduced: usize = if self.opset < 13 {
            x.shape[ax..].iter().product()
        } else {
            x.shape[ax]
        };
        let trailing_ones = x.shape[ax + 1..].iter().all(|&d| d == 1);
        let ok = match x.layout {
            Layout::Nhwc => ax == 1 && (self.opset >= 13 || trailing_ones),
            l => l.is_ordered(&x.shape) && (ax == r - 1 || trailing_ones),
        } && reduced == last;
        if !ok {
            // Rows over the axis (opset 13 on) or the axes from it (before): copied into
            // rows, the softmax, then moved back into ONNX order.
            let shape = x.shape.clone();
            let axes: Vec<usize> = if self.opset < 13 {
                (ax..r).collect()
            } else {
                vec![ax]
            };
            let rows = self.rows_of(x, &axes, label)?;
            let i = self.push(label, Layer::Softmax, rows.src);
            let y = Act {
                src: Src::Node(i),
                ..rows
            };
            let moved = axes.len() == 1 && ax != r - 1;
            if !moved {
                return one(view(y, shape)?);
            }
            // y holds [other axes.., ax]: axis a of the output is y's axis pos(a).
            let order: Vec<usize> = (0..r).filter(|&a| a != ax).chain([ax]).collect();
            let perm: Vec<usize> = (0..r)
                .map(|a| order.iter().position(|&o| o == a).unwrap_or(0))
                .collect();
            let layer = Layer::Permute {
                view: y.phys.clone(),
                perm,
            };
            let j = self.push(&format!("{label}.back"), layer, y.src);
            self.same_codes(y.src, j);
            return one(Act {
                shape: shape.clone(),
                phys: shape,
                layout: Layout::Plain,
                src: Src::Node(j),
            });
        }
        let i = self.push(label, Layer::Softmax, x.src);
        one(Act {
            src: Src::Node(i),
            ..x
        })
    }

    /// `Concat`: NCHW images along any axis stay NHWC images (the axis mapped to the
    /// stored one); anything else (row-major activations, mixed layouts, constants such
    /// as a class token) is concatenated in ONNX order, constants as [`Layer::Const`]
    /// pieces.
    fn lower_concat(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let mut vals = Vec::with_capacity(n.input.len());
        for i in 0..n.input.len() {
            match self.input(n, i) {
                Some(v @ (Val::Act(_) | Val::Const(_))) => vals.push(v.clone()),
                _ => return Err(format!("input {i} ('{}') is not a tensor", n.input[i])),
            }
        }
        let shape_of = |v: &Val| match v {
            Val::Act(a) => a.shape.clone(),
            Val::Const(c) => c.dims.clone(),
            _ => unreachable!("checked above"),
        };
        let shapes: Vec<Vec<usize>> = vals.iter().map(shape_of).collect();
        let Some(rank) = shapes.first().map(Vec::len) else {
            return Err("no input to concatenate".into());
        };
        let ax = fold::axis(attrs.int("axis", 0), rank, false)?;
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = crate::ops::layout::concat_shape(&refs, ax)
            .map_err(|e| format!("inputs {shapes:?}: {e}"))?;
        let Some(first_act) = vals.iter().find_map(|v| match v {
            Val::Act(a) => Some(a.clone()),
            _ => None,
        }) else {
            return Err("every input is a constant, yet the node did not fold".into());
        };
        let images = vals
            .iter()
            .all(|v| matches!(v, Val::Act(a) if a.layout == Layout::Nhwc && a.phys.len() == 4));
        let mut pieces = Vec::with_capacity(vals.len());
        for (k, v) in vals.into_iter().enumerate() {
            let piece = match v {
                Val::Act(a) if images => a,
                Val::Act(a) => {
                    let s = a.shape.clone();
                    self.row_major(a, &s, &format!("{label}.in{k}"))?
                }
                Val::Const(c) => self.const_act(&c, first_act.src, &format!("{label}.const{k}")),
                _ => unreachable!("checked above"),
            };
            pieces.push(piece);
        }
        let (axis, layout) = if images {
            ([0, 3, 1, 2][ax], Layout::Nhwc)
        } else {
            (ax, Layout::Plain)
        };
        let first = pieces[0].clone();
        let mut others = Vec::new();
        for (k, a) in pieces.iter().enumerate().skip(1) {
            // The model input as another operand: a copy of its stored tensor (an image
            // keeps its NHWC storage).
            let o = match a.src {
                Src::Node(o) => o,
                Src::Input => {
                    let layer = Layer::Permute {
                        view: a.phys.clone(),
                        perm: (0..a.phys.len()).collect(),
                    };
                    let o = self.push(&format!("{label}.in{k}"), layer, a.src);
                    self.same_codes(a.src, o);
                    o
                }
            };
            others.push(o);
        }
        let mut phys = first.phys.clone();
        phys[axis] = pieces.iter().map(|p| p.phys[axis]).sum();
        let i = self.push(label, Layer::Concat { others, axis }, first.src);
        Ok(vec![Val::Act(Act {
            shape,
            phys,
            layout,
            src: Src::Node(i),
        })])
    }

    /// `Pad`: a zero pad of an image's H and W stays a [`Val::Padded`] that the next
    /// convolution folds into its padding (a node of another kind reading it gets a pad
    /// layer); any other (a constant, edge, reflect or wrap; any axes) is a [`Layer::Pad`]
    /// of the stored tensor.
    fn lower_pad(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let x = self.act(n, 0)?;
        let rank = x.shape.len();
        let mode = attrs.string("mode").unwrap_or_else(|| "constant".into());
        let (pads, value) = if self.opset < 11 {
            (
                attrs.ints("pads").ok_or("pads is missing")?,
                attrs.float("value", 0.0),
            )
        } else {
            let p = self
                .konst(n, 1, "pads")?
                .ok_or("input 1 (pads) is missing")?
                .as_ik()?
                .to_vec();
            let v = match self.konst(n, 2, "constant_value")? {
                Some(c) => c.scalar_f32().ok_or("constant_value is not a scalar")?,
                None => 0.0,
            };
            let p = match self.konst(n, 3, "axes")? {
                None => p,
                Some(c) => {
                    let axes = c.as_ik()?;
                    if p.len() != 2 * axes.len() {
                        return Err(format!("pads {p:?} for axes {axes:?}: two per axis"));
                    }
                    let mut full = vec![0i64; 2 * rank];
                    for (k, &a) in axes.iter().enumerate() {
                        let a = fold::axis(a, rank, false)?;
                        full[a] = p[k];
                        full[rank + a] = p[axes.len() + k];
                    }
                    full
                }
            };
            (p, v)
        };
        if pads.len() != 2 * rank {
            return Err(format!(
                "pads {pads:?} for an activation of rank {rank} {:?}: {} values expected",
                x.shape,
                2 * rank
            ));
        }
        // Negative pads crop: the positive ones pad first, then a slice takes the rest.
        let part = |v: i64, neg: bool| -> R<usize> {
            let m = if neg {
                v.min(0).checked_neg()
            } else {
                Some(v.max(0))
            };
            m.and_then(|m| usize::try_from(m).ok())
                .ok_or_else(|| format!("pads {pads:?} out of range"))
        };
        let before: Vec<usize> = pads[..rank]
            .iter()
            .map(|&v| part(v, false))
            .collect::<R<_>>()?;
        let after: Vec<usize> = pads[rank..]
            .iter()
            .map(|&v| part(v, false))
            .collect::<R<_>>()?;
        let cut: Vec<usize> = pads.iter().map(|&v| part(v, true)).collect::<R<_>>()?;
        let pmode = match mode.as_str() {
            "constant" => PadMode::Constant(value),
            "edge" => PadMode::Edge,
            "reflect" => PadMode::Reflect,
            "wrap" => PadMode::Wrap,
            m => {
                return Err(format!(
                    "mode '{m}' (constant, edge, reflect and wrap are supported)"
                ))
            }
        };
        let image = x.layout == Layout::Nhwc && x.phys.len() == 4;
        let spatial_only = rank == 4 && [0, 1].iter().all(|&a| before[a] == 0 && after[a] == 0);
        let crops = cut.iter().any(|&c| c > 0);
        if image && spatial_only && pmode == PadMode::Constant(0.0) && !crops {
            let p = [before[2], before[3], after[2], after[3]];
            return Ok(vec![Val::Padded(x, p)]);
        }
        let x = if image {
            x
        } else {
            let s = x.shape.clone();
            self.row_major(x, &s, &format!("{label}.x"))?
        };
        let stored = |v: &[usize]| -> Vec<usize> {
            if image {
                vec![v[0], v[2], v[3], v[1]]
            } else {
                v.to_vec()
            }
        };
        let shape = crate::ops::layout::padded_shape(&x.shape, &before, &after, pmode)
            .map_err(|e| format!("pad of {:?}: {e}", x.shape))?;
        let grows = before.iter().chain(&after).any(|&p| p > 0);
        let y = if grows {
            let pads = (stored(&before), stored(&after));
            self.pad_layer(x, pads, pmode, shape.clone(), &format!("{label}.pad"))?
        } else {
            x
        };
        if !crops {
            return Ok(vec![Val::Act(y)]);
        }
        let size: Vec<usize> = (0..rank)
            .map(|a| {
                shape[a]
                    .checked_sub(cut[a] + cut[rank + a])
                    .filter(|&v| v > 0)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| format!("pads {pads:?} crop all of {shape:?}"))?;
        let layer = Layer::Crop {
            view: y.phys.clone(),
            start: stored(&cut[..rank]),
            step: vec![1; rank],
            size: stored(&size),
        };
        let i = self.push(label, layer, y.src);
        self.same_codes(y.src, i);
        Ok(vec![Val::Act(Act {
            shape: size.clone(),
            phys: stored(&size),
            layout: y.layout,
            src: Src::Node(i),
        })])
    }

    /// A [`Layer::Pad`] of `x`'s stored tensor by `before`/`after` (stored axes); `shape`
    /// is the ONNX shape of the result.
    fn pad_layer(
        &mut self,
        x: Act,
        (before, after): (Vec<usize>, Vec<usize>),
        mode: PadMode,
        shape: Vec<usize>,
        label: &str,
    ) -> R<Act> {
        let phys = crate::ops::layout::padded_shape(&x.phys, &before, &after, mode)
            .map_err(|e| format!("pad of {:?}: {e}", x.shape))?;
        bounded(&phys, "the padded activation")?;
        let i = self.push(
            label,
            Layer::Pad {
                before,
                after,
                mode,
            },
            x.src,
        );
        self.same_codes(x.src, i);
        Ok(Act {
            shape,
            phys,
            layout: x.layout,
            src: Src::Node(i),
        })
    }

    /// `Gather` of an activation by constant indices (negative ones count from the end):
    /// a gather layer along the stored axis; an image gathered by 1-D indices stays an
    /// image, anything else is gathered in ONNX order.
    fn gather_act(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.act(n, 0)?;
        let idx = self
            .konst(n, 1, "indices")?
            .ok_or("input 1 (indices) is missing")?
            .clone();
        let rank = x.shape.len();
        let axis = fold::axis(attrs.int("axis", 0), rank, false)?;
        let d = x.shape[axis] as i64;
        let picks: Vec<usize> = idx
            .as_ik()?
            .iter()
            .map(|&j| {
                let k = if j < 0 { j + d } else { j };
                usize::try_from(k)
                    .ok()
                    .filter(|&k| (k as i64) < d)
                    .ok_or_else(|| format!("index {j} on axis {axis} of {:?}", x.shape))
            })
            .collect::<R<_>>()?;
        if picks.is_empty() {
            return Err(format!(
                "no indices: the output of {:?} would be empty",
                x.shape
            ));
        }
        let mut shape: Vec<usize> = x.shape[..axis].to_vec();
        shape.extend_from_slice(&idx.dims);
        shape.extend_from_slice(&x.shape[axis + 1..]);
        let image = x.layout == Layout::Nhwc && x.phys.len() == 4 && idx.dims.len() == 1;
        let (x, stored_axis) = if image {
            (x, [0, 3, 1, 2][axis])
        } else {
            let s = x.shape.clone();
            (self.row_major(x, &s, &format!("{label}.x"))?, axis)
        };
        let mut phys = x.phys.clone();
        phys[stored_axis] = picks.len();
        bounded(&phys, "the gathered activation")?;
        let layer = Layer::Gather {
            axis: stored_axis,
            indices: picks,
        };
        let i = self.push(label, layer, x.src);
        self.same_codes(x.src, i);
        Ok(if image {
            nhwc_act(phys, Src::Node(i))
        } else {
            Act {
                shape,
                phys,
                layout: Layout::Plain,
                src: Src::Node(i),
            }
        })
    }

    /// `DepthToSpace` of an NCHW activation: CRD is the NHWC depth-to-space layer; DCR
    /// (the default) first moves each pixel's channels from `(dy, dx, c)` to `(c, dy, dx)`
    /// order.
    fn depth_to_space_act(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.nhwc(self.act(n, 0)?)?;
        let b = to_us(attrs.int("blocksize", 0))?;
        let [nb, h, w, c] = x.phys[..] else {
            unreachable!("an NHWC image")
        };
        let bb = b.checked_mul(b).filter(|&v| v > 0 && v <= c);
        if bb.is_none_or(|v| c % v != 0) {
            return Err(format!(
                "blocksize {b} for {c} channels: a positive block whose square divides them"
            ));
        }
        let cc = c / (b * b);
        let mode = attrs.string("mode").unwrap_or_else(|| "DCR".into());
        let x = match mode.as_str() {
            "CRD" => x,
            "DCR" => {
                let layer = Layer::Permute {
                    view: vec![nb * h * w, b * b, cc],
                    perm: vec![0, 2, 1],
                };
                let i = self.push(&format!("{label}.crd"), layer, x.src);
                self.same_codes(x.src, i);
                let moved = Act {
                    src: Src::Node(i),
                    phys: vec![nb * h * w, cc, b * b],
                    ..x.clone()
                };
                let back = self.flat_copy(moved, x.phys.clone(), &format!("{label}.img"));
                Act { src: back.src, ..x }
            }
            m => return Err(format!("mode '{m}' (DCR and CRD are supported)")),
        };
        Ok(self.layer4(
            Layer::DepthToSpace { block: [b, b] },
            x,
            vec![nb, h * b, w * b, cc],
            label,
        ))
    }

    /// `Expand` of an activation by a constant shape: numpy's broadcast of the row-major
    /// activation ([`Layer::Expand`]); an identity where nothing widens.
    fn expand_act(&mut self, n: &NodeProto, label: &str) -> R<Act> {
        let x = self.act(n, 0)?;
        let to = self
            .konst(n, 1, "shape")?
            .ok_or("input 1 (shape) is missing")?
            .as_ik()?
            .to_vec();
        let to_dims: Vec<usize> = to
            .iter()
            .map(|&d| to_us(d).map_err(|_| format!("shape {to:?} holds a negative value")))
            .collect::<R<_>>()?;
        let out = fold::broadcast(&x.shape, &to_dims)
            .map_err(|e| format!("{:?} expanded by {to:?}: {e}", x.shape))?;
        if out == x.shape {
            return Ok(x);
        }
        bounded(&out, "the expanded activation")?;
        let s = x.shape.clone();
        let x = self.row_major(x, &s, &format!("{label}.x"))?;
        let xs = x.shape.clone();
        crate::ops::layout::expand_strides(&xs, &out)
            .map_err(|e| format!("{xs:?} expanded to {out:?}: {e}"))?;
        let i = self.push(
            label,
            Layer::Expand {
                view: xs,
                to: out.clone(),
            },
            x.src,
        );
        self.same_codes(x.src, i);
        Ok(Act {
            shape: out.clone(),
            phys: out,
            layout: Layout::Plain,
            src: Src::Node(i),
        })
    }

    /// A zero pad (kept for a convolution to fold) read by a node of another kind
    /// becomes a pad layer.
    fn padded_inputs_as_layers(&mut self, n: &NodeProto, label: &str) -> R<()> {
        if matches!(
            n.op_type(),
            "Conv" | "QLinearConv" | "QuantizeLinear" | "DequantizeLinear"
        ) {
            return Ok(());
        }
        for name in &n.input {
            if let Some(Val::Padded(x, [hb, wb, he, we])) = self.vals.get(name).cloned() {
                let mut shape = x.shape.clone();
                shape[2] += hb + he;
                shape[3] += wb + we;
                let pads = (vec![0, hb, wb, 0], vec![0, he, we, 0]);
                let a = self.pad_layer(
                    x,
                    pads,
                    PadMode::Constant(0.0),
                    shape,
                    &format!("{label}.pad"),
                )?;
                self.vals.insert(name.clone(), Val::Act(a));
            }
        }
        Ok(())
    }

    /// Axes of Squeeze/Unsqueeze (an attribute before opset 13, an input since).
    fn axes(&self, n: &NodeProto, attrs: &Attrs) -> R<Option<Vec<i64>>> {
        if self.opset < 13 {
            Ok(attrs.ints("axes"))
        } else {
            Ok(self
                .konst(n, 1, "axes")?
                .map(|c| c.as_ik().map(<[i64]>::to_vec))
                .transpose()?)
        }
    }

    /// Folds `n` when every input is constant; `None` for ops that never fold.
    /// The folds of comparisons, logic, `Where` and matrix products of constants
    /// (`None` for other operators).
    fn fold_logic_and_products(&self, n: &NodeProto, attrs: &Attrs) -> R<Option<Const>> {
        let c = |i: usize| -> R<&Const> {
            match self.input(n, i) {
                Some(Val::Const(c)) => Ok(c),
                _ => Err(format!("input {i} is missing")),
            }
        };
        Ok(Some(match n.op_type() {
            "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "Equal" | "And" | "Or"
            | "Xor" => {
                if self.opset < 7 && attrs.int("broadcast", 0) != 0 {
                    return Err(
                        "legacy broadcasting (opset < 7) of two constants is not supported".into(),
                    );
                }
                fold::compare(n.op_type(), c(0)?, c(1)?)?
            }
            "Not" => fold::not(c(0)?),
            "Where" => fold::where_(c(0)?, c(1)?, c(2)?)?,
            "Gemm" => {
                let cc = match self.input(n, 2) {
                    Some(Val::Const(k)) => Some(k),
                    _ => None,
                };
                fold::gemm(
                    c(0)?,
                    c(1)?,
                    cc,
                    (attrs.int("transA", 0) != 0, attrs.int("transB", 0) != 0),
                    (attrs.float("alpha", 1.0), attrs.float("beta", 1.0)),
                )?
            }
            "MatMul" if c(0)?.dims.len() == 2 && c(1)?.dims.len() == 2 => {
                fold::gemm(c(0)?, c(1)?, None, (false, false), (1.0, 1.0))?
            }
            _ => return Ok(None),
        }))
    }

    fn fold(&self, n: &NodeProto, attrs: &Attrs) -> R<Option<Const>> {
        let c = |i: usize| -> R<&Const> {
            match self.input(n, i) {
                Some(Val::Const(c)) => Ok(c),
                _ => Err(format!("input {i} is missing")),
            }
        };
        let opt_ints = |i: usize| -> R<Option<Vec<i64>>> {
            match self.input(n, i) {
                Some(Val::Const(c)) => Ok(Some(c.as_ik()?.to_vec())),
                _ => Ok(None),
            }
        };
        if let Some(c) = self.fold_logic_and_products(n, attrs)? {
            return Ok(Some(c));
        }
        Ok(Some(match n.op_type() {
            "Identity" | "Dropout" => c(0)?.clone(),
            "Shape" => shape_of(&c(0)?.dims, attrs),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "PRelu" => {
                if self.opset < 7 && attrs.int("broadcast", 0) != 0 {
                    return Err(
                        "legacy broadcasting (opset < 7) of two constants is not supported".into(),
                    );
                }
                fold::binary(n.op_type(), c(0)?, c(1)?)?
            }
            "Gather" => fold::gather(c(0)?, c(1)?, attrs.int("axis", 0))?,
            "Concat" => {
                let parts: Vec<&Const> = (0..n.input.len()).map(c).collect::<R<_>>()?;
                fold::concat(&parts, attrs.int("axis", 0))?
            }
            "Cast" => fold::cast(c(0)?, attrs.int("to", 1) as i32)?,
            "CastLike" => fold::cast(c(0)?, c(1)?.elem)?,
            "Abs" | "Neg" if c(0)?.as_i64().is_some() => {
                // Integer shape arithmetic stays integer.
                let x = c(0)?;
                let v = x.as_ik()?.iter();
                let out = if n.op_type() == "Abs" {
                    v.map(|&i| i.checked_abs()).collect::<Option<Vec<i64>>>()
                } else {
                    v.map(|&i| i.checked_neg()).collect()
                };
                let out = out.ok_or("an integer out of the int64 range")?;
                Const {
                    dims: x.dims.clone(),
                    elem: x.elem,
                    data: super::tensor::Data::I64(out),
                }
            }
            "Sqrt" | "Exp" | "Log" | "Abs" | "Neg" | "Reciprocal" | "Erf" => {
                let x = c(0)?;
                let f = unary_of(n.op_type()).unwrap_or(UnaryOp::Sqrt);
                Const::f32(
                    x.dims.clone(),
                    x.to_f32()
                        .iter()
                        .map(|&v| f.apply(f64::from(v)) as f32)
                        .collect(),
                )
            }
            "Reshape" => {
                let x = c(0)?;
                fold::reshape(
                    x,
                    reshape_dims(&x.dims, c(1)?.as_ik()?, attrs.int("allowzero", 0) != 0)?,
                )?
            }
            "Flatten" => {
                let x = c(0)?;
                let ax = fold::axis(attrs.int("axis", 1), x.dims.len(), true)?;
                let d = vec![x.dims[..ax].iter().product(), x.dims[ax..].iter().product()];
                fold::reshape(x, d)?
            }
            "Squeeze" | "Unsqueeze" => {
                let x = c(0)?;
                let axes = self.axes(n, attrs)?;
                fold::reshape(x, squeeze_dims(n.op_type(), &x.dims, axes.as_deref())?)?
            }
            "Expand" => {
                let x = c(0)?;
                let to: Vec<usize> = c(1)?.as_ik()?.iter().map(|&d| to_us(d)).collect::<R<_>>()?;
                let out = fold::broadcast(&x.dims, &to)?;
                let n: usize = out.iter().product();
                if n > 1 << 26 {
                    return Err(format!(
                        "expanding a constant to {out:?} (too large to fold)"
                    ));
                }
                let idx = fold::broadcast_index(&x.dims, &out);
                match &x.data {
                    Data::F32(v) => Const::f32(out, idx.iter().map(|&i| v[i]).collect()),
                    Data::I64(v) => Const {
                        elem: x.elem,
                        ..Const::i64(out, idx.iter().map(|&i| v[i]).collect())
                    },
                }
            }
            "Transpose" => {
                let x = c(0)?;
                let perm: Vec<usize> = match attrs.ints("perm") {
                    Some(p) => p.iter().map(|&v| to_us(v)).collect::<R<_>>()?,
                    None => (0..x.dims.len()).rev().collect(),
                };
                fold::transpose(x, &perm)?
            }
            "Slice" => {
                let x = c(0)?;
                if self.opset < 10 {
                    let s = attrs.ints("starts").ok_or("starts is missing")?;
                    let e = attrs.ints("ends").ok_or("ends is missing")?;
                    fold::slice(x, &s, &e, attrs.ints("axes").as_deref(), None)?
                } else {
                    let s = opt_ints(1)?.ok_or("starts is missing")?;
                    let e = opt_ints(2)?.ok_or("ends is missing")?;
                    fold::slice(x, &s, &e, opt_ints(3)?.as_deref(), opt_ints(4)?.as_deref())?
                }
            }
            "ConstantOfShape" => {
                let dims: Vec<usize> =
                    c(0)?.as_ik()?.iter().map(|&d| to_us(d)).collect::<R<_>>()?;
                let n = dims
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .filter(|&n| n <= MAX_FOLDED)
                    .ok_or_else(|| {
                        format!("a constant of shape {dims:?} is larger than {MAX_FOLDED} values")
                    })?;
                match attrs.tensor("value") {
                    None => Const::f32(dims, vec![0.0; n]),
                    Some(t) => {
                        let v = super::tensor::decode(t, None)?;
                        let data = match v.data {
                            Data::F32(x) => Data::F32(vec![*x.first().ok_or("empty value")?; n]),
                            Data::I64(x) => Data::I64(vec![*x.first().ok_or("empty value")?; n]),
                        };
                        Const {
                            dims,
                            elem: v.elem,
                            data,
                        }
                    }
                }
            }
            _ => return Ok(None),
        }))
    }

    fn conv(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let (x, pre_pad) = match self.input(n, 0) {
            Some(Val::Padded(a, p)) => (a.clone(), Some(*p)),
            _ => (self.act(n, 0)?, None),
        };
        let x = self.nhwc(x)?;
        let w = self
            .konst(n, 1, "W")?
            .ok_or("input 1 (W) is missing")?
            .clone();
        if w.dims.len() != 4 {
            return Err(format!(
                "W has shape {:?}; only 2-D convolutions (4-D weights) are supported",
                w.dims
            ));
        }
        let groups = to_us(attrs.int("group", 1))?;
        let c = x.shape[1];
        if let Some(k) = attrs.ints("kernel_shape") {
            if k.len() != 2 || to_us(k[0])? != w.dims[2] || to_us(k[1])? != w.dims[3] {
                return Err(format!("kernel_shape {k:?} disagrees with W {:?}", w.dims));
            }
        }
        if w.dims[1].checked_mul(groups) != Some(c) {
            return Err(format!(
                "W has shape {:?}: {} input channels per group x {groups} groups, but the input has {c} channels",
                w.dims, w.dims[1]
            ));
        }
        let dims = ConvDims::new(w.dims[0], c, [w.dims[2], w.dims[3]], groups)
            .map_err(|e| e.to_string())?;
        let mut pad = padding(attrs)?;
        if let Some([t, l, b, r]) = pre_pad {
            pad = match pad {
                Padding::Valid => Padding::Explicit([t, l, b, r]),
                Padding::Explicit([t2, l2, b2, r2]) => {
                    Padding::Explicit([t + t2, l + l2, b + b2, r + r2])
                }
                _ => {
                    return Err(
                        "a Pad before a convolution with auto_pad SAME is not supported".into(),
                    )
                }
            };
        }
        let mut desc = ConvDesc::default().padding(pad);
        desc.stride = pair(attrs, "strides", 1)?;
        desc.dilation = pair(attrs, "dilations", 1)?;
        let bias = match self.konst(n, 2, "B")? {
            Some(b) if b.len() != dims.out_channels => {
                return Err(format!(
                    "B has {} values; W has {} output channels",
                    b.len(),
                    dims.out_channels
                ))
            }
            Some(b) => Some(b.to_f32()),
            None => None,
        };
        let out = desc
            .output_shape(&dims, &x.phys)
            .map_err(|e| e.to_string())?;
        let act = self.conv_layer(label, x, dims, desc, w.to_f32(), bias, out)?;
        if let Some(codes) = self.codes_of(&n.input[1]) {
            let wname = format!(
                "{}.weight",
                self.graph.nodes.last().expect("just pushed").name
            );
            let q = QWeight {
                value: n.input[1].clone(),
                codes,
                out_axis: 0,
                scale_mul: 1.0,
            };
            self.record_qweight(&wname, &dims.oihw(), q)?;
        }
        Ok(act)
    }

    /// `Resize` / `Upsample` of an NCHW activation on H and W: nearest by whole factors
    /// (a repetition), or bilinear to any size.
    fn resize(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.nhwc(self.act(n, 0)?)?;
        let legacy = n.op_type() == "Upsample" || self.opset < 11;
        let mode = attrs.string("mode").unwrap_or_else(|| "nearest".into());
        // Scales (input 1 before opset 11 and in Upsample, else input 2) or sizes.
        let scales = match self.konst(n, if legacy { 1 } else { 2 }, "scales")? {
            Some(c) if c.len() > 0 => Some(c.to_f32()),
            _ => attrs.get_floats("scales"),
        };
        let sizes = if legacy {
            None
        } else {
            self.konst(n, 3, "sizes")?.cloned()
        };
        // Opset 18's axes: the scales or sizes of the axes named, the others kept.
        let (scales, sizes) = match attrs.ints("axes") {
            None => (scales, sizes),
            Some(axes) => {
                let ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| fold::axis(a, 4, false))
                    .collect::<R<_>>()?;
                let place = |given: &[f64], base: Vec<f64>| -> R<Vec<f64>> {
                    if given.len() != ax.len() {
                        return Err(format!("{} values for axes {axes:?}", given.len()));
                    }
                    let mut full = base;
                    ax.iter().zip(given).for_each(|(&a, &v)| full[a] = v);
                    Ok(full)
                };
                let scales = match scales {
                    Some(sc) => {
                        let g: Vec<f64> = sc.iter().map(|&v| f64::from(v)).collect();
                        Some(place(&g, vec![1.0; 4])?.iter().map(|&v| v as f32).collect())
                    }
                    None => None,
                };
                let sizes = match sizes {
                    Some(sz) => {
                        let g: Vec<f64> = sz.as_ik()?.iter().map(|&v| v as f64).collect();
                        let base = x.shape.iter().map(|&d| d as f64).collect();
                        let full = place(&g, base)?;
                        Some(Const::i64(
                            vec![4],
                            full.iter().map(|&v| v as i64).collect(),
                        ))
                    }
                    None => None,
                };
                (scales, sizes)
            }
        };
        let (h, w) = (x.shape[2], x.shape[3]);
        let (out_hw, sc): ([usize; 2], [f32; 2]) = match (scales, sizes) {
            (Some(sc), _) if sc.len() == 4 => {
                if sc[0] != 1.0 || sc[1] != 1.0 {
                    return Err(format!(
                        "scales {sc:?}: only the spatial axes may be scaled"
                    ));
                }
                if sc[2..]
                    .iter()
                    .any(|v| !(v.is_finite() && *v > 0.0 && *v <= 4096.0))
                {
                    return Err(format!("scales {sc:?} must be positive and at most 4096"));
                }
                let o = |d: usize, s: f32| ((d as f64) * f64::from(s)).floor() as usize;
                ([o(h, sc[2]), o(w, sc[3])], [sc[2], sc[3]])
            }
            (_, Some(sz)) if sz.len() == 4 => {
                let v = sz.as_ik()?;
                if v[0] as usize != x.shape[0] || v[1] as usize != x.shape[1] {
                    return Err(format!("sizes {v:?} change the batch or channels"));
                }
                let policy = attrs
                    .string("keep_aspect_ratio_policy")
                    .unwrap_or_else(|| "stretch".into());
                if policy == "stretch" {
                    let (oh, ow) = (to_us(v[2])?, to_us(v[3])?);
                    ([oh, ow], [oh as f32 / h as f32, ow as f32 / w as f32])
                } else {
                    aspect_sizes(&policy, attrs.ints("axes"), v, &x.shape)?
                }
            }
            _ => return Err("neither 4 scales nor 4 sizes are given as constants".into()),
        };
        if out_hw.contains(&0) {
            return Err(format!(
                "resizing {h}x{w} gives {}x{}",
                out_hw[0], out_hw[1]
            ));
        }
        let coords = if legacy {
            "asymmetric".to_string()
        } else {
            attrs
                .string("coordinate_transformation_mode")
                .unwrap_or_else(|| "half_pixel".into())
        };
        let out = vec![x.phys[0], out_hw[0], out_hw[1], x.phys[3]];
        match mode.as_str() {
            "nearest" => {
                let nearest = if legacy {
                    "floor".to_string()
                } else {
                    attrs
                        .string("nearest_mode")
                        .unwrap_or_else(|| "round_prefer_floor".into())
                };
                self.nearest_resize(x, (out_hw, sc), (&coords, &nearest), label)
            }
            "linear" | "bilinear" => {
                let c = match coords.as_str() {
                    "half_pixel" => ResizeCoords::HalfPixel,
                    "pytorch_half_pixel" => ResizeCoords::PytorchHalfPixel,
                    "align_corners" => ResizeCoords::AlignCorners,
                    "asymmetric" => ResizeCoords::Asymmetric,
                    "half_pixel_symmetric" => ResizeCoords::HalfPixelSymmetric,
                    other => return Err(format!("coordinate_transformation_mode '{other}' is not supported for linear resizing")),
                };
                if attrs.int("antialias", 0) != 0 && (out_hw[0] < h || out_hw[1] < w) {
                    return Err("antialiased downscaling is not supported".into());
                }
                let layer = Layer::ResizeBilinear {
                    size: out_hw,
                    coords: c,
                    scales: sc,
                };
                Ok(self.layer4(layer, x, out, label))
            }
            other => Err(format!("mode '{other}': nearest and linear are supported")),
        }
    }

    /// A nearest resize of image `x` to `out_hw`: where the file's coordinate mode and
    /// rounding repeat each pixel a whole number of times (checked with ONNX's formulas,
    /// axis by axis), the upsampling layer; else one gather layer per resized axis with
    /// the input pixel ONNX picks for each output pixel.
    fn nearest_resize(
        &mut self,
        x: Act,
        (out_hw, sc): ([usize; 2], [f32; 2]),
        (coords, nearest): (&str, &str),
        label: &str,
    ) -> R<Act> {
        let (h, w) = (x.phys[1], x.phys[2]);
        let mut picks = Vec::with_capacity(2);
        for (ax, (&n_in, &n_out)) in [h, w].iter().zip(&out_hw).enumerate() {
            if n_out > 1 << 24 {
                return Err(format!("resizing to {out_hw:?} pixels is too large"));
            }
            picks.push(nearest_picks(coords, nearest, n_in, n_out, sc[ax])?);
        }
        bounded(
            &[x.phys[0], out_hw[0], out_hw[1], x.phys[3]],
            "the resized activation",
        )?;
        let whole = [h, w]
            .iter()
            .zip(&out_hw)
            .all(|(&i, &o)| o.is_multiple_of(i));
        let f = [out_hw[0] / h, out_hw[1] / w];
        let repeats =
            whole && (0..2).all(|a| picks[a].iter().enumerate().all(|(o, &i)| i == o / f[a]));
        let out = vec![x.phys[0], out_hw[0], out_hw[1], x.phys[3]];
        if repeats {
            return Ok(self.layer4(Layer::Upsample { factors: f }, x, out, label));
        }
        let mut y = x;
        for (a, p) in picks.into_iter().enumerate() {
            let n_in = y.phys[a + 1];
            if p.len() == n_in && p.iter().enumerate().all(|(o, &i)| i == o) {
                continue;
            }
            let mut phys = y.phys.clone();
            phys[a + 1] = p.len();
            let layer = Layer::Gather {
                axis: a + 1,
                indices: p,
            };
            let name = if a == 0 {
                format!("{label}.h")
            } else {
                format!("{label}.w")
            };
            let i = self.push(&name, layer, y.src);
            self.same_codes(y.src, i);
            y = nhwc_act(phys, Src::Node(i));
        }
        Ok(y)
    }

    /// `ConvTranspose` whose kernel equals its stride (no padding, no output padding,
    /// one group): a 1x1 convolution to `M * kh * kw` channels, then depth to space.
    fn conv_transpose(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.nhwc(self.act(n, 0)?)?;
        let w = self
            .konst(n, 1, "W")?
            .ok_or("input 1 (W) is missing")?
            .clone();
        let [c, m, kh, kw] = w.dims[..] else {
            return Err(format!(
                "W has shape {:?}; only 2-D transposed convolutions are supported",
                w.dims
            ));
        };
        if c != x.shape[1] {
            return Err(format!(
                "W has shape {:?}; the input has {} channels",
                w.dims, x.shape[1]
            ));
        }
        let stride = pair(attrs, "strides", 1)?;
        let zeros = |name: &str| attrs.ints(name).is_none_or(|v| v.iter().all(|&p| p == 0));
        let plain = attrs.int("group", 1) == 1
            && stride == [kh, kw]
            && zeros("pads")
            && zeros("output_padding")
            && pair(attrs, "dilations", 1)? == [1, 1]
            && attrs
                .string("auto_pad")
                .is_none_or(|a| a == "NOTSET" || a == "VALID")
            && attrs.ints("output_shape").is_none();
        if !plain {
            return self.conv_transpose_general(n, attrs, x, &w, label);
        }
        // Pointwise weights [M * kh * kw, C]: output channel (m * kh + dy) * kw + dx.
        let wv = w.to_f32();
        let oc = m * kh * kw;
        let mut pw = vec![0.0f32; oc * c];
        for ci in 0..c {
            for mm in 0..m {
                for dy in 0..kh {
                    for dx in 0..kw {
                        let o = (mm * kh + dy) * kw + dx;
                        pw[o * c + ci] = wv[((ci * m + mm) * kh + dy) * kw + dx];
                    }
                }
            }
        }
        let bias = match self.konst(n, 2, "B")? {
            Some(b) if b.len() != m => {
                return Err(format!(
                    "B has {} values; W has {m} output channels",
                    b.len()
                ))
            }
            Some(b) => {
                let bv = b.to_f32();
                Some((0..oc).map(|o| bv[o / (kh * kw)]).collect())
            }
            None => None,
        };
        let dims = ConvDims::new(oc, c, [1, 1], 1).map_err(|e| e.to_string())?;
        let out = vec![x.phys[0], x.phys[1], x.phys[2], oc];
        let y = self.conv_layer(
            &format!("{label}.pointwise"),
            x,
            dims,
            ConvDesc::default(),
            pw,
            bias,
            out,
        )?;
        let out = vec![y.phys[0], y.phys[1] * kh, y.phys[2] * kw, m];
        Ok(self.layer4(Layer::DepthToSpace { block: [kh, kw] }, y, out, label))
    }

    /// Any 2-D `ConvTranspose` (strides, pads, output padding or shape, auto_pad,
    /// dilations, groups): zeros inserted between the input's pixels (stride - 1 of
    /// them), then a stride-1 convolution by the kernel flipped in space, with its
    /// in/out channels exchanged per group, padded by `dilation (k - 1) - pad` (the
    /// output padding added at the end).
    fn conv_transpose_general(
        &mut self,
        n: &NodeProto,
        attrs: &Attrs,
        x: Act,
        w: &Const,
        label: &str,
    ) -> R<Act> {
        let [c, mg, kh, kw] = w.dims[..] else {
            unreachable!("checked by the caller")
        };
        let groups = to_us(attrs.int("group", 1))?;
        if groups == 0 || c % groups != 0 {
            return Err(format!(
                "group {groups} does not divide the {c} input channels"
            ));
        }
        let m = mg * groups;
        let stride = pair(attrs, "strides", 1)?;
        let dil = pair(attrs, "dilations", 1)?;
        let k = [kh, kw];
        let out_pad = match attrs.ints("output_padding") {
            Some(v) if v.len() == 2 => [to_us(v[0])?, to_us(v[1])?],
            Some(v) => return Err(format!("output_padding {v:?} must have 2 values")),
            None => [0, 0],
        };
        // Small positive numbers keep every size below in range.
        let small = |v: &[usize; 2], lo: usize| v.iter().all(|&d| (lo..=1 << 16).contains(&d));
        if !small(&stride, 1) || !small(&dil, 1) || !small(&k, 1) || !small(&out_pad, 0) {
            return Err(format!(
                "strides {stride:?}, dilations {dil:?}, kernel {k:?} and output_padding \
                 {out_pad:?} must be positive (output_padding may be 0) and at most 65536"
            ));
        }
        let in_hw = [x.shape[2], x.shape[3]];
        if in_hw.iter().any(|&d| d == 0 || d > 1 << 24) {
            return Err(format!("input image {in_hw:?} is empty or too large"));
        }
        // [top, left, bottom, right] of the transposed convolution, from pads, or from
        // output_shape / auto_pad as ONNX computes them.
        let full = |a: usize| (in_hw[a] - 1) * stride[a] + out_pad[a] + dil[a] * (k[a] - 1) + 1;
        let auto = attrs.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
        let target = match (attrs.ints("output_shape"), auto.as_str()) {
            (Some(v), _) if v.len() >= 2 => {
                let v = &v[v.len() - 2..];
                let t = [to_us(v[0])?, to_us(v[1])?];
                if t.iter().any(|&d| d == 0 || d as u64 > 1 << 40) {
                    return Err(format!("output_shape {t:?} is empty or too large"));
                }
                Some(t)
            }
            (_, "SAME_UPPER" | "SAME_LOWER") => Some([in_hw[0] * stride[0], in_hw[1] * stride[1]]),
            _ => None,
        };
        // Signed: an output_shape beyond what the convolution gives pads with negative
        // numbers (more output at the end), as ONNX's reference computes them (floor
        // halves).
        let pads: [i64; 4] = match target {
            Some(t) => {
                let mut p = [0i64; 4];
                for a in 0..2 {
                    let total = full(a) as i64 - t[a] as i64;
                    let (lo, hi) = (total.div_euclid(2), total - total.div_euclid(2));
                    (p[a], p[a + 2]) = if auto == "SAME_UPPER" {
                        (lo, hi)
                    } else {
                        (hi, lo)
                    };
                }
                p
            }
            None => match attrs.ints("pads") {
                Some(v) if v.len() == 4 && v.iter().all(|&p| (0..1 << 40).contains(&p)) => {
                    [v[0], v[1], v[2], v[3]]
                }
                Some(v) => return Err(format!("pads {v:?} must be 4 values from 0 to 2^40")),
                None => [0; 4],
            },
        };
        let reach = [dil[0] * (kh - 1), dil[1] * (kw - 1)];
        // The stride-1 convolution's padding on each side; where the pads exceed the
        // kernel's reach, none there and the excess cropped from its output.
        let side = |r: usize, extra: usize, p: i64| r as i64 + extra as i64 - p;
        let signed = [
            side(reach[0], 0, pads[0]),
            side(reach[1], 0, pads[1]),
            side(reach[0], out_pad[0], pads[2]),
            side(reach[1], out_pad[1], pads[3]),
        ];
        let [pt, pl, pb, pr] = signed.map(|v| v.max(0) as usize);
        let crop = signed.map(|v| (-v).max(0) as usize);
        // OIHW weights [M, C / groups, kh, kw], flipped in space.
        let wt = flipped_weights(&w.to_f32(), [c, mg, kh, kw], groups);
        let bias = match self.konst(n, 2, "B")? {
            Some(b) if b.len() != m => {
                return Err(format!(
                    "B has {} values; W has {m} output channels",
                    b.len()
                ))
            }
            Some(b) => Some(b.to_f32()),
            None => None,
        };
        let x = if stride == [1, 1] {
            x
        } else {
            let [nb, h, wd, ch] = x.phys[..] else {
                unreachable!("an NHWC activation")
            };
            let out = vec![nb, (h - 1) * stride[0] + 1, (wd - 1) * stride[1] + 1, ch];
            let zi = Layer::ZeroInsert { factors: stride };
            self.layer4(zi, x, out, &format!("{label}.zeros"))
        };
        let dims = ConvDims::new(m, c, k, groups).map_err(|e| e.to_string())?;
        let desc = ConvDesc {
            padding: crate::desc::conv::Padding::Explicit([pt, pl, pb, pr]),
            dilation: dil,
            ..ConvDesc::default()
        };
        let sh = desc.shape(&dims, &x.phys).map_err(|e| e.to_string())?;
        let out = vec![sh.batch, sh.out_h, sh.out_w, m];
        if crop == [0; 4] {
            return self.conv_layer(label, x, dims, desc, wt, bias, out);
        }
        let kept = [
            sh.out_h.checked_sub(crop[0] + crop[2]).filter(|&v| v > 0),
            sh.out_w.checked_sub(crop[1] + crop[3]).filter(|&v| v > 0),
        ];
        let [Some(oh), Some(ow)] = kept else {
            return Err(format!(
                "pads {pads:?} leave no output of the {}x{} transposed convolution",
                sh.out_h, sh.out_w
            ));
        };
        let y = self.conv_layer(&format!("{label}.full"), x, dims, desc, wt, bias, out)?;
        let size = vec![sh.batch, oh, ow, m];
        let layer = Layer::Crop {
            view: y.phys.clone(),
            start: vec![0, crop[0], crop[1], 0],
            step: vec![1; 4],
            size: size.clone(),
        };
        let i = self.push(label, layer, y.src);
        self.same_codes(y.src, i);
        Ok(nhwc_act(size, Src::Node(i)))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_layer(
        &mut self,
        label: &str,
        x: Act,
        dims: ConvDims,
        desc: ConvDesc,
        w: Vec<f32>,
        bias: Option<Vec<f32>>,
        out: Vec<usize>,
    ) -> R<Act> {
        let name = self.unique(label);
        let wname = format!("{name}.weight");
        self.weights
            .insert(&wname, &dims.oihw(), w)
            .map_err(|e| e.to_string())?;
        let bname = match bias {
            Some(b) => {
                let bn = format!("{name}.bias");
                self.weights
                    .insert(&bn, &[b.len()], b)
                    .map_err(|e| e.to_string())?;
                Some(bn)
            }
            None => None,
        };
        let layer = Layer::conv(&wname, bname.as_deref(), dims, desc);
        let i = self.graph.push_from(&name, layer, x.src);
        Ok(nhwc_act(out, Src::Node(i)))
    }

    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        a: Act,
        mut w: Vec<f32>,
        bias: Option<Vec<f32>>,
        n: usize,
        k: usize,
        label: &str,
        mut q: Option<QWeight>,
    ) -> R<Act> {
        let rows = a.layout == Layout::Plain && a.shape.len() > 2 && a.phys.last() == Some(&k);
        if !rows && (a.shape.len() != 2 || a.shape[1] != k) {
            return Err(format!(
                "the input has shape {:?}; the weight needs [batch, {k}] (or [.., {k}] rows)",
                a.shape
            ));
        }
        match a.layout {
            Layout::FlatNhwc(chw) if !a.layout.is_ordered(&a.shape) => {
                w = crate::ops::conv::linear_weight_nchw_to_nhwc(&w, n, chw)
                    .map_err(|e| e.to_string())?;
                if let Some(q) = q.as_mut() {
                    q.codes = crate::ops::conv::linear_weight_nchw_to_nhwc(&q.codes, n, chw)
                        .map_err(|e| e.to_string())?;
                }
            }
            Layout::Nhwc => return Err("a 4-D activation cannot feed a matrix product".into()),
            _ => {}
        }
        let name = self.unique(label);
        let wname = format!("{name}.weight");
        self.weights
            .insert(&wname, &[n, k], w)
            .map_err(|e| e.to_string())?;
        if let Some(q) = q {
            self.record_qweight(&wname, &[n, k], q)?;
        }
        let bname = match bias {
            Some(b) => {
                let bn = format!("{name}.bias");
                self.weights
                    .insert(&bn, &[n], b)
                    .map_err(|e| e.to_string())?;
                Some(bn)
            }
            None => None,
        };
        let i = self
            .graph
            .push_from(&name, Layer::linear(&wname, bname.as_deref(), n, k), a.src);
        let phys = crate::model::linear_output_shape(&a.phys, k, n)
            .ok_or_else(|| format!("the input stored as {:?} does not give rows of {k}", a.phys))?;
        let mut shape = a.shape.clone();
        match shape.len() {
            2 => shape[1] = n,
            _ => *shape.last_mut().expect("rank > 2") = n,
        }
        Ok(Act {
            shape,
            phys,
            layout: Layout::Plain,
            src: Src::Node(i),
        })
    }

    /// A pooling (or other shape-changing NHWC) layer.
    fn layer4(&mut self, layer: Layer, x: Act, out: Vec<usize>, label: &str) -> Act {
        let i = self.push(label, layer, x.src);
        nhwc_act(out, Src::Node(i))
    }

    /// An activation in NHWC layout (4-D), or an error.
    /// `x` as an image stored NHWC: itself, or for a 4-D activation stored in ONNX order
    /// (after a reshape or an unsqueeze, a lifted 1-D operator) an NHWC copy.
    fn nhwc(&mut self, x: Act) -> R<Act> {
        if x.layout == Layout::Nhwc && x.phys.len() == 4 {
            return Ok(x);
        }
        if x.shape.len() == 4 && x.layout.is_ordered(&x.shape) {
            let s = x.shape.clone();
            let x = self.row_major(x, &s, "nhwc")?;
            let layer = Layer::Permute {
                view: s.clone(),
                perm: vec![0, 2, 3, 1],
            };
            let i = self.push("nhwc", layer, x.src);
            self.same_codes(x.src, i);
            return Ok(nhwc_act(vec![s[0], s[2], s[3], s[1]], Src::Node(i)));
        }
        Err(format!(
            "the input has shape {:?} (not a 4-D NCHW activation)",
            x.shape
        ))
    }

    /// `y = x * scale[c] + shift[c]` per channel (axis 1 of NCHW, or the last axis of a
    /// 2-D activation): folded into the layer before when only this node reads it, else a
    /// 1x1 depthwise convolution.
    fn affine(&mut self, name: &str, x: Act, scale: &[f64], shift: &[f64], label: &str) -> R<Act> {
        // A quantized file that quantizes x (QuantizeLinear/DequantizeLinear between the
        // layer and this node) rounds it before the map: the map stays a layer of its own
        // (between codes), as the file computes it.
        let quantized = self.act_q.contains_key(&src_key(x.src));
        // After a layer norm or a channel affine layer (of the same channels): into its
        // per-channel parameters.
        if let Some(i) = self.fusable(name, &x).filter(|_| !quantized) {
            if self.fold_into_row_layer(i, &x, scale, shift) {
                return Ok(x);
            }
        }
        if let Some(i) = self.fusable(name, &x).filter(|_| !quantized) {
            let node = &self.graph.nodes[i];
            let act_none = match &node.layer {
                Layer::Conv { desc, .. } => desc.activation == Activation::None,
                Layer::Linear { activation, .. } => *activation == Activation::None,
                _ => false,
            };
            if let (true, Some((wn, bn, wshape))) = (act_none, node.layer.weight_spec()) {
                let (wn, bn) = (wn.to_string(), bn.map(str::to_string));
                let oc = wshape[0];
                if oc == scale.len() {
                    // A pure shift (a bias Add) leaves the weights, and so a quantized
                    // file's weight codes, as they are.
                    if scale.iter().any(|&v| v != 1.0) {
                        let mut w = self
                            .weights
                            .tensor(&wn, &wshape)
                            .map_err(|e| e.to_string())?
                            .to_vec();
                        let per = w.len() / oc;
                        for (o, row) in w.chunks_mut(per).enumerate() {
                            row.iter_mut()
                                .for_each(|v| *v = (f64::from(*v) * scale[o]) as f32);
                        }
                        self.weights
                            .insert(&wn, &wshape, w)
                            .map_err(|e| e.to_string())?;
                        if self.qweights.remove(&wn).is_some() {
                            self.requantized.push(wn.clone());
                        }
                    }
                    let old: Vec<f32> = match &bn {
                        Some(b) => self
                            .weights
                            .tensor(b, &[oc])
                            .map_err(|e| e.to_string())?
                            .to_vec(),
                        None => vec![0.0; oc],
                    };
                    let b: Vec<f32> = (0..oc)
                        .map(|o| (f64::from(old[o]) * scale[o] + shift[o]) as f32)
                        .collect();
                    let bname = bn.unwrap_or_else(|| format!("{}.bias", self.graph.nodes[i].name));
                    self.weights
                        .insert(&bname, &[oc], b)
                        .map_err(|e| e.to_string())?;
                    match &mut self.graph.nodes[i].layer {
                        Layer::Conv { bias, .. } | Layer::Linear { bias, .. } => {
                            *bias = Some(bname)
                        }
                        _ => unreachable!("weight_spec is only for convolutions and linears"),
                    }
                    return Ok(x);
                }
            }
        }
        // One scale and shift for every channel: an elementwise map on any layout.
        if scale.iter().all(|&v| v == scale[0]) && shift.iter().all(|&v| v == shift[0]) {
            let f = UnaryOp::Affine {
                scale: scale[0] as f32,
                shift: shift[0] as f32,
            };
            let i = self.push(
                label,
                Layer::Map {
                    f,
                    clip: Clip::NONE,
                },
                x.src,
            );
            return Ok(Act {
                src: Src::Node(i),
                ..x
            });
        }
        // A row-major activation (a sequence's features, a flattened vector): a
        // per-channel affine layer along its last axis.
        if x.layout != Layout::Nhwc {
            return self.channel_affine(x, scale, shift, label);
        }
        let x = self.nhwc(x)?;
        let c = x.shape[1];
        let dims = ConvDims::new(c, c, [1, 1], c).map_err(|e| e.to_string())?;
        let w = scale.iter().map(|&s| s as f32).collect();
        let b = shift.iter().map(|&s| s as f32).collect();
        let out = x.phys.clone();
        self.conv_layer(label, x, dims, ConvDesc::default(), w, Some(b), out)
    }

    /// A clip `[lo, hi]`: fused into the layer before when only this node reads it (ReLU
    /// and ReLU6 into a convolution or linear, any bounds into an Add), else a 1x1
    /// depthwise identity convolution with the activation.
    fn clip(&mut self, name: &str, x: Act, lo: f32, hi: f32, label: &str) -> R<Act> {
        let act = match (lo, hi) {
            (l, h) if l == 0.0 && h == f32::INFINITY => Some(Activation::Relu),
            (l, h) if l == 0.0 && h == 6.0 => Some(Activation::Relu6),
            _ => None,
        };
        if let Some(i) = self.fusable(name, &x) {
            match (&mut self.graph.nodes[i].layer, act) {
                (Layer::Conv { desc, .. }, Some(a)) if desc.activation == Activation::None => {
                    desc.activation = a;
                    return Ok(x);
                }
                (Layer::Linear { activation, .. }, Some(a)) if *activation == Activation::None => {
                    *activation = a;
                    return Ok(x);
                }
                (
                    Layer::Add { clip, .. } | Layer::Map { clip, .. } | Layer::Binary { clip, .. },
                    _,
                ) if *clip == Clip::NONE => {
                    *clip = Clip { lo, hi };
                    return Ok(x);
                }
                _ => {}
            }
        }
        let i = self.push(
            label,
            Layer::Map {
                f: UnaryOp::IDENTITY,
                clip: Clip { lo, hi },
            },
            x.src,
        );
        Ok(Act {
            src: Src::Node(i),
            ..x
        })
    }

    /// Graph outputs that are the model input itself (an `Identity` or inference
    /// `Dropout` of it) become a copy of it, so that every output is a layer's.
    pub fn copy_input_outputs(&mut self, out_names: &[&str]) {
        for name in out_names {
            if let Some(Val::Act(a)) = self.vals.get(*name).cloned() {
                if a.src == Src::Input {
                    let label = format!("{name}.copy");
                    let layer = Layer::Map {
                        f: UnaryOp::IDENTITY,
                        clip: Clip::NONE,
                    };
                    let i = self.push(&label, layer, a.src);
                    self.same_codes(a.src, i);
                    let copy = Act {
                        src: Src::Node(i),
                        ..a
                    };
                    self.vals.insert((*name).to_string(), Val::Act(copy));
                }
            }
        }
    }

    /// ONNX `Sum` of activations and constants: one `Add` after another (in the file's
    /// order; constants folded together where they meet).
    fn sum(&mut self, n: &NodeProto, label: &str) -> R<Val> {
        let mut acc = n.input.first().ok_or("Sum of no inputs")?.clone();
        let base = n.output.first().ok_or("Sum without an output")?;
        for (k, next) in n.input.iter().enumerate().skip(1) {
            let out = format!("{base}#sum{k}");
            let add = NodeProto {
                op_type: Some("Add".into()),
                input: vec![acc, next.clone()],
                output: vec![out.clone()],
                ..Default::default()
            };
            let v = match (self.input(&add, 0), self.input(&add, 1)) {
                (Some(Val::Const(a)), Some(Val::Const(b))) => {
                    Val::Const(fold::binary("Add", a, b)?)
                }
                _ => Val::Act(self.binary(&add, "Add", &format!("{label}.{k}"))?),
            };
            self.vals.insert(out.clone(), v);
            acc = out;
        }
        match self.vals.get(&acc) {
            Some(v @ (Val::Act(_) | Val::Const(_))) => Ok(v.clone()),
            _ => Err("input 0 is missing".into()),
        }
    }

    /// ONNX `Min`/`Max`: of one activation and scalar constants, a clip; of anything
    /// else, the inputs taken pairwise in order (two activations, or an activation and a
    /// constant tensor, with numpy broadcasting as for `Add`; constants folded).
    fn min_max(&mut self, n: &NodeProto, label: &str) -> R<Val> {
        let op = n.op_type();
        let (mut x, mut lo, mut hi) = (None, f32::NEG_INFINITY, f32::INFINITY);
        let mut clip = true;
        for (i, name) in n.input.iter().enumerate() {
            match self.input(n, i) {
                Some(Val::Act(a)) if x.is_none() => x = Some((name.clone(), a.clone())),
                Some(Val::Const(c)) if c.scalar_f32().is_some() => {
                    let v = c.scalar_f32().unwrap_or(f32::NAN);
                    if op == "Max" {
                        lo = lo.max(v);
                    } else {
                        hi = hi.min(v);
                    }
                    if v.is_nan() {
                        return Err(format!("input {i} is NaN"));
                    }
                }
                Some(_) => clip = false,
                None => return Err(format!("input {i} is missing")),
            }
        }
        if let (true, Some((name, x))) = (clip, x) {
            return Ok(Val::Act(self.clip(&name, x, lo, hi, label)?));
        }
        let mut acc = n.input.first().ok_or(format!("{op} of no inputs"))?.clone();
        let base = n.output.first().ok_or(format!("{op} without an output"))?;
        for (k, next) in n.input.iter().enumerate().skip(1) {
            let out = format!("{base}#{}{k}", op.to_lowercase());
            let step = NodeProto {
                op_type: Some(op.into()),
                input: vec![acc, next.clone()],
                output: vec![out.clone()],
                ..Default::default()
            };
            let v = match (self.input(&step, 0), self.input(&step, 1)) {
                (Some(Val::Const(a)), Some(Val::Const(b))) => Val::Const(fold::binary(op, a, b)?),
                _ => Val::Act(self.binary(&step, op, &format!("{label}.{k}"))?),
            };
            self.vals.insert(out.clone(), v);
            acc = out;
        }
        match self.vals.get(&acc) {
            Some(v @ (Val::Act(_) | Val::Const(_))) => Ok(v.clone()),
            _ => Err("input 0 is missing".into()),
        }
    }

    /// An elementwise function of an activation.
    fn map(&mut self, x: Act, f: UnaryOp, label: &str) -> R<Act> {
        let i = self.push(
            label,
            Layer::Map {
                f,
                clip: Clip::NONE,
            },
            x.src,
        );
        Ok(Act {
            src: Src::Node(i),
            ..x
        })
    }

    fn binary(&mut self, n: &NodeProto, op: &str, label: &str) -> R<Act> {
        let (a, b) = (self.input(n, 0).cloned(), self.input(n, 1).cloned());
        if self.opset < 7
            && Attrs(&n.attribute).int("broadcast", 0) != 0
            && !matches!((&a, &b), (Some(Val::Act(_)), Some(Val::Const(_))))
        {
            return Err("legacy broadcasting (opset < 7, broadcast = 1) is supported for an activation and a constant only".into());
        }
        let plain = matches!(
            op,
            "Max"
                | "Min"
                | "PRelu"
                | "Less"
                | "Greater"
                | "LessOrEqual"
                | "GreaterOrEqual"
                | "Equal"
                | "Pow"
        );
        if plain && self.opset < 7 && Attrs(&n.attribute).int("broadcast", 0) != 0 {
            return Err(format!(
                "legacy broadcasting (opset < 7, broadcast = 1) of {op} is not supported"
            ));
        }
        match (a, b) {
            (Some(Val::Act(x)), Some(Val::Act(y))) => self.binary_acts(op, x, y, label),
            // Not affine in the constant: a layer carrying it.
            (Some(Val::Act(x)), Some(Val::Const(c))) if plain => {
                self.const_binary(x, &c, op, false, label)
            }
            (Some(Val::Const(c)), Some(Val::Act(x))) if plain => {
                self.const_binary(x, &c, op, true, label)
            }
            (Some(Val::Const(x)), Some(Val::Const(c))) if plain => Err(format!(
                "{op} of two constants reached the layer lowering ({:?}, {:?})",
                x.dims, c.dims
            )),
            (Some(Val::Act(x)), Some(Val::Const(mut c))) => {
                let name = n.input[0].clone();
                let attrs = Attrs(&n.attribute);
                if self.opset < 7 && attrs.int("broadcast", 0) != 0 {
                    // Before opset 7, B aligns with A from `axis` (default: the end).
                    let r = x.shape.len();
                    let ax = fold::axis(attrs.int("axis", (r - c.dims.len()) as i64), r, false)?;
                    let trailing = r
                        .checked_sub(ax + c.dims.len())
                        .ok_or("broadcast axis out of range")?;
                    c.dims.extend(std::iter::repeat_n(1, trailing));
                }
                self.per_channel(&name, x, &c, op, false, label)
            }
            (Some(Val::Const(c)), Some(Val::Act(x))) if op == "Div" => {
                let v = c.to_f32();
                if v.len() == 1 && v[0].is_finite() && c.dims.len() <= x.shape.len() {
                    self.map(x, UnaryOp::Rdiv { numerator: v[0] }, label)
                } else {
                    self.const_binary(x, &c, op, true, label)
                }
            }
            (Some(Val::Const(c)), Some(Val::Act(x))) => {
                let name = n.input[1].clone();
                self.per_channel(&name, x, &c, op, true, label)
            }
            _ => Err(format!("{op} of these operands is not supported")),
        }
    }

    /// `a op b` for activations or constants: folded, a layer of two activations
    /// ([`Self::binary_acts`]) or a layer carrying the constant ([`Self::const_binary`]).
    fn pair(&mut self, op: &str, a: Val, b: Val, label: &str) -> R<Val> {
        Ok(match (a, b) {
            (Val::Const(a), Val::Const(b)) => Val::Const(fold::binary(op, &a, &b)?),
            (Val::Act(x), Val::Act(y)) => Val::Act(self.binary_acts(op, x, y, label)?),
            (Val::Act(x), Val::Const(c)) => Val::Act(self.const_binary(x, &c, op, false, label)?),
            (Val::Const(c), Val::Act(x)) => Val::Act(self.const_binary(x, &c, op, true, label)?),
            _ => return Err(format!("{op}: an operand is missing")),
        })
    }

    /// `Where(c, x, y)` with an activation among its inputs: `Mask(x, c) + MaskNot(y, c)`,
    /// each half a select (so an infinite or NaN value of the other branch never
    /// reaches the output) and the sum exact (one of the two is 0); a half whose value is
    /// a constant 0 that does not widen the output is left out.
    fn where_(&mut self, n: &NodeProto, label: &str) -> R<Val> {
        let get = |s: &Self, i: usize| -> R<Val> {
            match s.input(n, i) {
                Some(v @ (Val::Act(_) | Val::Const(_))) => Ok(v.clone()),
                _ => Err(format!("input {i} is missing")),
            }
        };
        let (c, x, y) = (get(self, 0)?, get(self, 1)?, get(self, 2)?);
        let dims = |v: &Val| match v {
            Val::Const(k) => k.dims.clone(),
            Val::Act(a) => a.shape.clone(),
            _ => Vec::new(),
        };
        let out = fold::broadcast(&fold::broadcast(&dims(&c), &dims(&x))?, &dims(&y))?;
        // A zero branch adds nothing where the other half has the output's shape.
        let drop = |v: &Val, other: &Val| -> bool {
            matches!(v, Val::Const(k) if k.to_f32().iter().all(|&f| f == 0.0))
                && fold::broadcast(&dims(other), &dims(&c)).ok().as_deref() == Some(&out[..])
        };
        if drop(&y, &x) {
            return self.pair("Mask", x, c, label);
        }
        if drop(&x, &y) {
            return self.pair("MaskNot", y, c, label);
        }
        let t = self.pair("Mask", x, c.clone(), &format!("{label}.then"))?;
        let e = self.pair("MaskNot", y, c, &format!("{label}.else"))?;
        self.pair("Add", t, e, label)
    }

    /// `x op y` for two activations: of one shape, or one broadcast against the other
    /// over one contiguous run of stored axes (`[N, C, 1, 1]` against `[N, C, H, W]`, a
    /// squeeze-excite scale; `[.., T, 1]` against `[.., T, C]`, a row statistic; an
    /// operand of lower rank is aligned to the right, as ONNX does). Operands stored
    /// differently are first copied into ONNX order.
    fn binary_acts(&mut self, op: &str, x: Act, y: Act, label: &str) -> R<Act> {
        let bop = binary_op_of(op);
        let out = fold::broadcast(&x.shape, &y.shape).map_err(|e| {
            format!(
                "{op} of activations of shapes {:?} and {:?}: {e}",
                x.shape, y.shape
            )
        })?;
        let (mut x, mut y) = (x, y);
        let stored_alike = |x: &Act, y: &Act| {
            x.layout == y.layout
                && x.shape.len() == y.shape.len()
                && x.phys.len() == y.phys.len()
                && (x.layout != Layout::Plain || (x.phys == x.shape && y.phys == y.shape))
        };
        if !stored_alike(&x, &y) {
            x = self.row_major(x, &out, &format!("{label}.a"))?;
            y = self.row_major(y, &out, &format!("{label}.b"))?;
        }
        // The layer reads the full-shaped operand and names the other as its node.
        let (a, b, bop) = if x.phys == y.phys
            || crate::ops::eltwise::broadcast_block(&x.phys, &y.phys).is_some()
        {
            (x, y, bop)
        } else if crate::ops::eltwise::broadcast_block(&y.phys, &x.phys).is_some() {
            (y, x, swapped_op(bop))
        } else {
            // Any other numpy broadcast: each operand expanded to the output's shape.
            let a = self.expand_to(x, &out, &format!("{label}.a"))?;
            let b = self.expand_to(y, &out, &format!("{label}.b"))?;
            (a, b, bop)
        };
        let same = a.phys == b.phys;
        // The other operand must be a layer's output: the model input is copied.
        let (a, b, bop) = match (a.src, b.src) {
            (_, Src::Node(_)) => (a, b, bop),
            (Src::Node(_), Src::Input) if same => (b, a, swapped_op(bop)),
            _ => {
                let copy = self.map(b.clone(), UnaryOp::IDENTITY, &format!("{label}.copy"))?;
                if let Src::Node(i) = copy.src {
                    self.same_codes(b.src, i);
                }
                (a, copy, bop)
            }
        };
        let Src::Node(other) = b.src else {
            unreachable!("made a layer above")
        };
        let layer = if same && bop == BinaryOp::Add {
            Layer::Add {
                other,
                clip: Clip::NONE,
            }
        } else {
            Layer::Binary {
                op: bop,
                other,
                clip: Clip::NONE,
            }
        };
        let i = self.push(label, layer, a.src);
        Ok(Act {
            src: Src::Node(i),
            ..a
        })
    }

    /// `x` in ONNX order broadcast to `out` (an [`Layer::Expand`]; a row-major copy
    /// where `x` has that shape already).
    fn expand_to(&mut self, x: Act, out: &[usize], label: &str) -> R<Act> {
        let stored = x.shape.clone();
        let x = self.row_major(x, out, label)?;
        if x.shape == out {
            return Ok(x);
        }
        bounded(out, "the broadcast operand")?;
        crate::ops::layout::expand_strides(&stored, out)
            .map_err(|e| format!("{stored:?} to {out:?}: {e}"))?;
        let layer = Layer::Expand {
            view: stored,
            to: out.to_vec(),
        };
        let i = self.push(&format!("{label}.expand"), layer, x.src);
        self.same_codes(x.src, i);
        Ok(Act {
            shape: out.to_vec(),
            phys: out.to_vec(),
            layout: Layout::Plain,
            src: Src::Node(i),
        })
    }

    /// `x` stored row-major in its ONNX shape aligned to rank `out.len()` (leading axes
    /// of 1 added): a view where the stored order allows, else a copy.
    fn row_major(&mut self, x: Act, out: &[usize], label: &str) -> R<Act> {
        let mut dims = vec![1; out.len().saturating_sub(x.shape.len())];
        dims.extend_from_slice(&x.shape);
        let x = self.onnx_order(x, &format!("{label}.nchw"))?;
        let x = if x.phys == x.shape {
            x
        } else {
            self.materialize(x, label)
        };
        Ok(Act {
            shape: dims.clone(),
            phys: dims,
            ..x
        })
    }

    /// `x op c` (or `c op x` when `swapped`) for a constant tensor `c` that broadcasts
    /// to `x`'s shape: a [`Layer::BinaryConst`] carrying `c` in `x`'s stored order (an
    /// NCHW activation's constant moved to NHWC on the host).
    fn const_binary(&mut self, x: Act, c: &Const, op: &str, swapped: bool, label: &str) -> R<Act> {
        let what_s = format!(
            "{op} of an activation {:?} and a constant {:?}",
            x.shape, c.dims
        );
        let what = || what_s.clone();
        let out = fold::broadcast(&x.shape, &c.dims).map_err(|e| format!("{}: {e}", what()))?;
        if out != x.shape {
            // The constant widens the activation: the activation broadcast first.
            let x = self.expand_to(x, &out, &format!("{label}.x"))?;
            return self.const_binary(x, c, op, swapped, label);
        }
        let v = c.to_f32();
        if v.iter().any(|f| f.is_nan()) {
            return Err(format!("{}: the constant holds NaN", what()));
        }
        let bop = binary_op_of(op);
        let bop = if swapped { swapped_op(bop) } else { bop };
        let r = x.shape.len();
        let mut cd = vec![1; r - c.dims.len()];
        cd.extend_from_slice(&c.dims);
        let (x, dims, value) = if x.layout == Layout::Nhwc && r == 4 {
            let (n, ch, h, w) = (cd[0], cd[1], cd[2], cd[3]);
            let mut moved = Vec::with_capacity(v.len());
            for b in 0..n {
                for y in 0..h {
                    for z in 0..w {
                        for k in 0..ch {
                            moved.push(v[((b * ch + k) * h + y) * w + z]);
                        }
                    }
                }
            }
            (x, vec![n, h, w, ch], moved)
        } else {
            let shape = x.shape.clone();
            (self.row_major(x, &shape, &format!("{label}.x"))?, cd, v)
        };
        if dims != x.phys && crate::ops::eltwise::broadcast_block(&x.phys, &dims).is_none() {
            // Over several runs of the stored axes: the constant broadcast on the host to
            // the activation's whole shape.
            if c.dims == out {
                return Err(format!("{}: the stored shape {:?} differs", what(), x.phys));
            }
            bounded(&out, "the broadcast constant")?;
            let idx = fold::broadcast_index(&c.dims, &out);
            let v = c.to_f32();
            let full = Const::f32(out.clone(), idx.iter().map(|&i| v[i]).collect());
            return self.const_binary(x, &full, op, swapped, label);
        }
        let i = self.push(
            label,
            Layer::BinaryConst {
                op: bop,
                value,
                dims,
            },
            x.src,
        );
        Ok(Act {
            src: Src::Node(i),
            ..x
        })
    }

    /// `x op c` (or `c op x` when `swapped`) for a constant `c` that is one value per
    /// channel (or a scalar), as an affine map.
    fn per_channel(
        &mut self,
        name: &str,
        x: Act,
        c: &Const,
        op: &str,
        swapped: bool,
        label: &str,
    ) -> R<Act> {
        let Some((_, ch)) = per_channel_axis(&x, &c.dims) else {
            // A whole tensor of constants (a position embedding, say).
            return self.const_binary(x, c, op, swapped, label);
        };
        let v = c.to_f32();
        let at = |i: usize| f64::from(v[if v.len() == 1 { 0 } else { i }]);
        let (scale, shift): (Vec<f64>, Vec<f64>) = (0..ch)
            .map(|i| match (op, swapped) {
                ("Add", _) => (1.0, at(i)),
                ("Sub", false) => (1.0, -at(i)),
                ("Sub", true) => (-1.0, at(i)),
                ("Mul", _) => (at(i), 0.0),
                _ => (1.0 / at(i), 0.0),
            })
            .unzip();
        if scale.iter().chain(&shift).any(|v| !v.is_finite()) {
            return Err(format!(
                "{op} by the constant gives a non-finite scale or shift"
            ));
        }
        self.affine(name, x, &scale, &shift, label)
    }
}

/// The input pixel that ONNX's nearest `Resize` reads for each output pixel along one
/// axis of `n_in -> n_out` pixels (`scale` as the file gives it, or `n_out / n_in`).
fn nearest_picks(
    coords: &str,
    rounding: &str,
    n_in: usize,
    n_out: usize,
    scale: f32,
) -> R<Vec<usize>> {
    let (s, len_in) = (f64::from(scale), n_in as f64);
    let source = |o: f64| -> R<f64> {
        Ok(match coords {
            "half_pixel" => (o + 0.5) / s - 0.5,
            "pytorch_half_pixel" if n_out > 1 => (o + 0.5) / s - 0.5,
            "pytorch_half_pixel" | "align_corners" if n_out <= 1 => 0.0,
            "align_corners" => o * (len_in - 1.0) / (len_in * s - 1.0),
            "asymmetric" => o / s,
            "tf_half_pixel_for_nn" => (o + 0.5) / s,
            "half_pixel_symmetric" => {
                let adjust = n_out as f64 / (len_in * s);
                len_in / 2.0 * (1.0 - adjust) + (o + 0.5) / s - 0.5
            }
            other => {
                return Err(format!(
                    "coordinate_transformation_mode '{other}' is not supported for nearest resizing"
                ))
            }
        })
    };
    let round = |x: f64| -> R<f64> {
        let tie = x - x.floor() == 0.5;
        Ok(match rounding {
            "round_prefer_floor" if tie => x.floor(),
            "round_prefer_ceil" if tie => x.ceil(),
            "round_prefer_floor" | "round_prefer_ceil" => x.round(),
            "floor" => x.floor(),
            "ceil" => x.ceil(),
            other => return Err(format!("nearest_mode '{other}' is not one of ONNX's")),
        })
    };
    (0..n_out)
        .map(|o| Ok(round(source(o as f64)?)?.clamp(0.0, len_in - 1.0) as usize))
        .collect()
}

/// The elementwise function of a one-input ONNX operator without attributes.
fn unary_of(op: &str) -> Option<UnaryOp> {
    Some(match op {
        "Sqrt" => UnaryOp::Sqrt,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Affine {
            scale: -1.0,
            shift: 0.0,
        },
        "Reciprocal" => UnaryOp::Rdiv { numerator: 1.0 },
        "Erf" => UnaryOp::Erf,
        _ => return None,
    })
}

/// The layer operation of an ONNX binary operator, or of `Mask`/`MaskNot`, the two
/// halves of `Where` (`Lowering::where_`).
fn binary_op_of(op: &str) -> BinaryOp {
    match op {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        "PRelu" => BinaryOp::PRelu,
        "Less" => BinaryOp::Less,
        "Greater" => BinaryOp::Greater,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "Equal" => BinaryOp::Equal,
        "Mask" => BinaryOp::Mask,
        "MaskNot" => BinaryOp::MaskNot,
        "Pow" => BinaryOp::Pow,
        _ => BinaryOp::Div,
    }
}

/// The operation with its operands exchanged: `a op b` as `b op' a`.
fn swapped_op(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min | BinaryOp::Equal => op,
        BinaryOp::Less => BinaryOp::Greater,
        BinaryOp::Greater => BinaryOp::Less,
        BinaryOp::LessOrEqual => BinaryOp::GreaterOrEqual,
        BinaryOp::GreaterOrEqual => BinaryOp::LessOrEqual,
        BinaryOp::Mask => BinaryOp::RMask,
        BinaryOp::RMask => BinaryOp::Mask,
        BinaryOp::MaskNot => BinaryOp::RMaskNot,
        BinaryOp::RMaskNot => BinaryOp::MaskNot,
        BinaryOp::Pow => BinaryOp::RPow,
        BinaryOp::RPow => BinaryOp::Pow,
        BinaryOp::PRelu => BinaryOp::RPRelu,
        BinaryOp::RPRelu => BinaryOp::PRelu,
        BinaryOp::Sub => BinaryOp::RSub,
        BinaryOp::Div => BinaryOp::RDiv,
        BinaryOp::RSub => BinaryOp::Sub,
        BinaryOp::RDiv => BinaryOp::Div,
    }
}

/// The axis and length of `x`'s channels (axis 1 of NCHW, else the last) when constant
/// dims `cd` hold one value per channel or one value; `None` otherwise.
fn per_channel_axis(x: &Act, cd: &[usize]) -> Option<(usize, usize)> {
    let ch_axis = if x.layout == Layout::Nhwc {
        1
    } else {
        x.shape.len().saturating_sub(1)
    };
    let ch = x.shape.get(ch_axis).copied().unwrap_or(1);
    let r = x.shape.len();
    let per = cd.len() <= r
        && cd
            .iter()
            .rev()
            .enumerate()
            .all(|(j, &d)| d == 1 || (r - 1 - j == ch_axis && d == ch));
    let fits = fold::broadcast(&x.shape, cd).ok().as_deref() == Some(&x.shape[..]);
    (per && fits).then_some((ch_axis, ch))
}

fn nhwc_act(phys: Vec<usize>, src: Src) -> Act {
    let shape = vec![phys[0], phys[3], phys[1], phys[2]];
    Act {
        shape,
        phys,
        layout: Layout::Nhwc,
        src,
    }
}

/// A transpose of activation `x` that moves no data: NCHW to NHWC of an activation stored
/// NHWC (its logical order becomes the stored one), NHWC to NCHW of one stored in its
/// own order, and any permutation that keeps the axes longer than 1 in their order.
pub(crate) fn transpose_act(x: Act, perm: &[usize]) -> R<Act> {
    fold::check_perm(perm, x.shape.len())?;
    let dims: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    match (x.layout, perm) {
        (Layout::Nhwc, [0, 2, 3, 1]) => {
            return Ok(Act {
                shape: dims,
                layout: Layout::Plain,
                ..x
            })
        }
        (Layout::Plain, [0, 3, 1, 2]) if x.phys == x.shape => {
            return Ok(Act {
                shape: dims,
                layout: Layout::Nhwc,
                ..x
            })
        }
        _ => {}
    }
    // The axes longer than 1, in their new order: unchanged means no data moves.
    let long: Vec<usize> = perm.iter().copied().filter(|&p| x.shape[p] > 1).collect();
    if long.windows(2).all(|w| w[0] < w[1]) {
        return view(x, dims);
    }
    Err(format!(
        "perm {perm:?} of an activation of shape {:?} would reorder its data (supported: \
         NCHW to NHWC and back, and moves of axes of length 1)",
        x.shape
    ))
}

impl Lowering {
    /// `MatMul` of two activations (`[.., M, K] x [.., K, N]`, the same leading
    /// dimensions or a single right-hand matrix): a [`Layer::MatMul`] on row-major
    /// tensors of their ONNX shapes (copied into them first where a view differs).
    /// A constant as an activation: a [`Layer::Const`] node (reading `src`, which it
    /// ignores).
    fn const_act(&mut self, c: &Const, src: Src, label: &str) -> Act {
        let layer = Layer::Const {
            value: c.to_f32(),
            dims: c.dims.clone(),
        };
        let i = self.push(label, layer, src);
        Act {
            shape: c.dims.clone(),
            phys: c.dims.clone(),
            layout: Layout::Plain,
            src: Src::Node(i),
        }
    }

    /// The product of two activations by numpy's `matmul` rules: a 1-D operand is a row
    /// (left) or a column (right), dropped from the result; leading dimensions broadcast
    /// (the operands expanded where they differ); then a [`Layer::MatMul`] in f32.
    fn matmul_acts(&mut self, a: Act, b: Act, label: &str) -> R<Act> {
        let what = format!("multiplies {:?} by {:?}", a.shape, b.shape);
        let mut ops = [a, b];
        for (k, x) in ops.iter_mut().enumerate() {
            if x.shape.len() > crate::ops::layout::MAX_PERMUTE_RANK {
                return Err(format!("{what}: operand {k} has rank above 6"));
            }
            let s = x.shape.clone();
            *x = self.row_major(x.clone(), &s, &format!("{label}.operand{k}"))?;
        }
        let [a, b] = ops;
        if a.shape.is_empty() || b.shape.is_empty() {
            return Err(format!("{what}: a scalar operand"));
        }
        let (a1, b1) = (a.shape.len() == 1, b.shape.len() == 1);
        let sa = if a1 {
            vec![1, a.shape[0]]
        } else {
            a.shape.clone()
        };
        let sb = if b1 {
            vec![b.shape[0], 1]
        } else {
            b.shape.clone()
        };
        let (ra, rb) = (sa.len(), sb.len());
        if sa[ra - 1] != sb[rb - 2] {
            return Err(format!("{what}: the inner dimensions differ"));
        }
        let (la, lb) = (&sa[..ra - 2], &sb[..rb - 2]);
        let lead = fold::broadcast(la, lb).map_err(|e| format!("{what}: {e}"))?;
        let one_matrix = lb.iter().product::<usize>() == 1;
        let want_a: Vec<usize> = lead.iter().chain(&sa[ra - 2..]).copied().collect();
        let want_b: Vec<usize> = if one_matrix {
            sb[rb - 2..].to_vec()
        } else {
            lead.iter().chain(&sb[rb - 2..]).copied().collect()
        };
        let a = self.stored_as(a, &sa, &want_a, &format!("{label}.a"))?;
        let b = self.stored_as(b, &sb, &want_b, &format!("{label}.b"))?;
        let shape = crate::model::matmul_shape(&a.phys, &b.phys)?;
        let other = match b.src {
            Src::Node(j) => j,
            Src::Input => match self.materialize(b, &format!("{label}.b")).src {
                Src::Node(j) => j,
                Src::Input => unreachable!("a copy is a node"),
            },
        };
        let i = self.push(label, Layer::MatMul { other }, a.src);
        let mut dims = shape.clone();
        if b1 {
            dims.pop();
        }
        if a1 {
            dims.remove(dims.len() - if b1 { 1 } else { 2 });
        }
        Ok(Act {
            phys: shape,
            shape: dims,
            layout: Layout::Plain,
            src: Src::Node(i),
        })
    }

    /// Row-major `x` (of ONNX shape `view`, the same elements) stored as `want`: itself
    /// where it is stored so, else broadcast (an [`Layer::Expand`]) or copied.
    fn stored_as(&mut self, x: Act, view: &[usize], want: &[usize], label: &str) -> R<Act> {
        if x.phys == want {
            return Ok(x);
        }
        let same = view.iter().product::<usize>() == want.iter().product::<usize>();
        let layer = if same {
            Layer::Permute {
                view: want.to_vec(),
                perm: (0..want.len()).collect(),
            }
        } else {
            crate::ops::layout::expand_strides(view, want)
                .map_err(|e| format!("{view:?} to {want:?}: {e}"))?;
            Layer::Expand {
                view: view.to_vec(),
                to: want.to_vec(),
            }
        };
        let i = self.push(label, layer, x.src);
        self.same_codes(x.src, i);
        Ok(Act {
            shape: want.to_vec(),
            phys: want.to_vec(),
            layout: Layout::Plain,
            src: Src::Node(i),
        })
    }

    /// `Slice` of an activation with step 1 (constant starts, ends, axes): a
    /// [`Layer::Crop`] of the stored tensor (an image's NCHW axes mapped to its NHWC
    /// storage), or nothing when the slice takes everything.
    fn slice_act(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.act(n, 0)?;
        let ints = |s: &mut Lowering, i: usize, what: &str| -> R<Option<Vec<i64>>> {
            s.konst(n, i, what)?
                .map(|c| c.as_ik().map(<[i64]>::to_vec))
                .transpose()
        };
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                attrs.ints("starts"),
                attrs.ints("ends"),
                attrs.ints("axes"),
                None,
            )
        } else {
            (
                ints(self, 1, "starts")?,
                ints(self, 2, "ends")?,
                ints(self, 3, "axes")?,
                ints(self, 4, "steps")?,
            )
        };
        let (starts, ends) = (
            starts.ok_or("starts is missing")?,
            ends.ok_or("ends is missing")?,
        );
        let ranges =
            fold::slice_ranges(&x.shape, &starts, &ends, axes.as_deref(), steps.as_deref())?;
        self.crop(x, &ranges, label)
    }

    /// The elements of `x` in `ranges` (start, end, step per axis, as
    /// [`fold::slice_ranges`] gives them): a crop layer, or `x` itself when the ranges
    /// cover it.
    fn crop(&mut self, x: Act, ranges: &[(i64, i64, i64)], label: &str) -> R<Act> {
        let start: Vec<usize> = ranges.iter().map(|r| r.0.max(0) as usize).collect();
        let step: Vec<isize> = ranges.iter().map(|r| r.2 as isize).collect();
        let size: Vec<usize> = ranges
            .iter()
            .map(|&(s, e, st)| {
                let span = if st > 0 { e - s } else { s - e };
                usize::try_from(span.max(0))
                    .unwrap_or(0)
                    .div_ceil(st.unsigned_abs() as usize)
            })
            .collect();
        if size.contains(&0) {
            return Err(format!("the slice of {:?} is empty", x.shape));
        }
        if size == x.shape && step.iter().all(|&k| k == 1) {
            return Ok(x);
        }
        let (view, pstart, pstep, psize) = match x.layout {
            Layout::Plain => (x.shape.clone(), start, step, size.clone()),
            Layout::Nhwc => {
                let p = |v: &[usize]| vec![v[0], v[2], v[3], v[1]];
                let k = vec![step[0], step[2], step[3], step[1]];
                (x.phys.clone(), p(&start), k, p(&size))
            }
            Layout::FlatNhwc(_) => {
                return Err(format!(
                    "a slice of a flattened NCHW activation {:?} is not supported",
                    x.shape
                ))
            }
        };
        if view.len() > crate::ops::layout::MAX_PERMUTE_RANK {
            return Err(format!(
                "a slice of an activation of rank {} (at most {})",
                view.len(),
                crate::ops::layout::MAX_PERMUTE_RANK
            ));
        }
        crate::ops::layout::check_slice(&view, &pstart, &pstep, &psize)
            .map_err(|e| format!("slice of {:?}: {e}", x.shape))?;
        let layer = Layer::Crop {
            view,
            start: pstart,
            step: pstep,
            size: psize.clone(),
        };
        let i = self.push(label, layer, x.src);
        Ok(Act {
            shape: size,
            phys: psize,
            layout: x.layout,
            src: Src::Node(i),
        })
    }

    /// Input 0 of `n`, an activation with N, C and at least one spatial axis.
    fn spatial_act(&self, n: &NodeProto) -> R<Act> {
        let x = self.act(n, 0)?;
        if x.shape.len() < 3 {
            return Err(format!(
                "the input has shape {:?} (N, C and at least one spatial axis)",
                x.shape
            ));
        }
        Ok(x)
    }

    /// ONNX `InstanceNormalization`: a layer normalization over the spatial axes (axis 2
    /// on) of each image and channel, then `scale` and `B` per channel.
    fn instance_norm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.spatial_act(n)?;
        let (r, c) = (x.shape.len(), x.shape[1]);
        let per_channel = |s: &mut Lowering, i: usize, what: &str| -> R<Const> {
            let k = s
                .konst(n, i, what)?
                .ok_or(format!("input {i} ({what}) is missing"))?;
            let v = k.to_f32();
            if v.len() != c {
                return Err(format!(
                    "{what} has {} values; the input has {c} channels",
                    v.len()
                ));
            }
            let mut dims = vec![c];
            dims.resize(r - 1, 1);
            Ok(Const::f32(dims, v))
        };
        let (scale, shift) = (per_channel(self, 1, "scale")?, per_channel(self, 2, "B")?);
        let base = n
            .output
            .first()
            .ok_or("InstanceNormalization without an output")?;
        let eps = attrs.float("epsilon", 1e-5);
        let input = n.input[0].clone();
        let y = self.norm_from_axis_2(input, &format!("{base}#instance_norm"), eps, label)?;
        self.scale_shift(y, base, scale, shift, label)
    }

    /// A layer normalization over axes 2 on of the value named `input`, as ONNX's
    /// `LayerNormalization` node `out` would be lowered (the normalizations built from it).
    fn norm_from_axis_2(&mut self, input: String, out: &str, eps: f32, label: &str) -> R<Act> {
        let attr = |name: &str, i: Option<i64>, f: Option<f32>| AttributeProto {
            name: Some(name.into()),
            i,
            f,
            r#type: Some(if i.is_some() {
                AttributeType::Int as i32
            } else {
                AttributeType::Float as i32
            }),
            ..Default::default()
        };
        let norm = NodeProto {
            op_type: Some("LayerNormalization".into()),
            input: vec![input],
            output: vec![out.to_string()],
            attribute: vec![
                attr("axis", Some(2), None),
                attr("epsilon", None, Some(eps)),
            ],
            ..Default::default()
        };
        self.lower_layer_norm(&norm, &Attrs(&norm.attribute), &format!("{label}.norm"))
    }

    /// `y * scale + shift` with constants of one value per channel (axis 1) of `y`
    /// (`base` names the intermediate values).
    fn scale_shift(
        &mut self,
        y: Act,
        base: &str,
        scale: Const,
        shift: Const,
        label: &str,
    ) -> R<Act> {
        let normed = format!("{base}#normed");
        self.vals.insert(normed.clone(), Val::Act(y.clone()));
        let y = self.per_channel(&normed, y, &scale, "Mul", false, &format!("{label}.scale"))?;
        let scaled = format!("{base}#scaled");
        self.vals.insert(scaled.clone(), Val::Act(y.clone()));
        self.per_channel(&scaled, y, &shift, "Add", false, label)
    }

    /// ONNX `GroupNormalization` (opset 18 on): the activation viewed as `[N, G, rest]`
    /// (copied into ONNX order where stored NHWC), a layer normalization over each
    /// group's values, viewed back, then `scale` and `bias` per channel (opset 21) or per
    /// group (opset 18-20, each group's value for its channels).
    fn group_norm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.spatial_act(n)?;
        let (r, c) = (x.shape.len(), x.shape[1]);
        let g = usize::try_from(attrs.int("num_groups", 0))
            .ok()
            .filter(|&g| g >= 1 && c.is_multiple_of(g))
            .ok_or_else(|| {
                format!(
                    "num_groups {} must be positive and divide the {c} channels",
                    attrs.int("num_groups", 0)
                )
            })?;
        if attrs.int("stash_type", 1) != 1 {
            return Err("stash_type other than 1 (f32) is not supported".into());
        }
        let per = if self.opset >= 21 { c } else { g };
        // Per-group values are spread over the channels on the host: bounded as folded
        // constants are (2^26).
        if c > 1 << 26 {
            return Err(format!("{c} channels (at most 2^26)"));
        }
        let values = |s: &mut Lowering, i: usize, what: &str| -> R<Vec<f32>> {
            let v = s
                .konst(n, i, what)?
                .ok_or(format!("input {i} ({what}) is missing"))?
                .to_f32();
            if v.len() != per {
                return Err(format!(
                    "{what} has {} values; {per} expected (opset {})",
                    v.len(),
                    s.opset
                ));
            }
            // One value per channel.
            Ok((0..c)
                .map(|ch| v[if per == c { ch } else { ch / (c / g) }])
                .collect())
        };
        let (scale, shift) = (values(self, 1, "scale")?, values(self, 2, "bias")?);
        let rest: usize = x.shape[1..].iter().product::<usize>() / g;
        let shape = x.shape.clone();
        let grouped = self.reshape(x, vec![shape[0], g, rest], &format!("{label}.groups"))?;
        let base = n
            .output
            .first()
            .ok_or("GroupNormalization without an output")?;
        let grouped_name = format!("{base}#group_rows");
        self.vals.insert(grouped_name.clone(), Val::Act(grouped));
        let eps = attrs.float("epsilon", 1e-5);
        let y = self.norm_from_axis_2(grouped_name, &format!("{base}#group_norm"), eps, label)?;
        let y = self.reshape(y, shape, &format!("{label}.back"))?;
        let mut dims = vec![c];
        dims.resize(r - 1, 1);
        let (scale, shift) = (Const::f32(dims.clone(), scale), Const::f32(dims, shift));
        self.scale_shift(y, base, scale, shift, label)
    }

    /// ONNX `LRN` (local response normalization across channels) of an NCHW activation,
    /// `x / (bias + alpha / size * sum of x^2 over the channel window)^beta`, from layers
    /// the importer has: the square (a map), the window sum (a 1x1 convolution by a
    /// banded 0/1 weight), `bias + alpha / size * s` and its power `-beta` (maps), and the
    /// product with `x`.
    fn lrn(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        let x = self.act(n, 0)?;
        if x.shape.len() != 4 {
            return Err(format!(
                "the input has shape {:?} (not a 4-D NCHW activation)",
                x.shape
            ));
        }
        let size = usize::try_from(attrs.int("size", 0))
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| {
                format!(
                    "size {} (a positive window is required)",
                    attrs.int("size", 0)
                )
            })?;
        let (alpha, beta, bias) = (
            attrs.float("alpha", 1e-4),
            attrs.float("beta", 0.75),
            attrs.float("bias", 1.0),
        );
        if !(alpha.is_finite()
            && beta.is_finite()
            && bias.is_finite()
            && bias > 0.0
            && alpha >= 0.0)
        {
            return Err(format!(
                "alpha {alpha}, beta {beta}, bias {bias}: finite values with bias > 0 and alpha >= 0 are supported"
            ));
        }
        let c = x.shape[1];
        // The window weight holds c^2 values: bounded as folded constants are (2^26).
        if c.checked_mul(c).is_none_or(|v| v > 1 << 26) {
            return Err(format!(
                "{c} channels: the window's 1x1 weight would hold {c}^2 values (at most 2^26)"
            ));
        }
        // Channel o sums channels o - floor((size - 1) / 2) ..= o + ceil((size - 1) / 2).
        let (below, above) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
        let weight: Vec<f32> = (0..c)
            .flat_map(|o| {
                (0..c).map(move |i| f32::from(u8::from(i + below >= o && i <= o + above)))
            })
            .collect();
        let base = n.output.first().ok_or("LRN without an output")?.clone();
        let sq = self.map(
            x.clone(),
            UnaryOp::Pow { exponent: 2.0 },
            &format!("{label}.square"),
        )?;
        let (sq_name, w_name) = (format!("{base}#lrn_square"), format!("{base}#lrn_window"));
        self.vals.insert(sq_name.clone(), Val::Act(sq));
        self.vals.insert(
            w_name.clone(),
            Val::Const(Const::f32(vec![c, c, 1, 1], weight)),
        );
        let window = NodeProto {
            op_type: Some("Conv".into()),
            input: vec![sq_name, w_name],
            output: vec![format!("{base}#lrn_sum")],
            ..Default::default()
        };
        let sum = self.conv(&window, &Attrs(&window.attribute), &format!("{label}.sum"))?;
        let den = UnaryOp::Affine {
            scale: alpha / size as f32,
            shift: bias,
        };
        let den = self.map(sum, den, &format!("{label}.den"))?;
        let inv = self.map(
            den,
            UnaryOp::Pow { exponent: -beta },
            &format!("{label}.pow"),
        )?;
        self.binary_acts("Mul", x, inv, label)
    }

    /// ONNX `Split` of an activation along `axis`: one crop layer per output, the part
    /// sizes from the `split` input (opset 13 on) or attribute, else `num_outputs`
    /// (opset 18: parts of ceil(length / num_outputs), the last smaller), else equal
    /// parts, one per output.
    fn split(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let x = match self.input(n, 0) {
            Some(Val::Act(a)) => a.clone(),
            Some(Val::Const(_)) => return Err("a Split of a constant is not supported".into()),
            _ => return Err("input 0 is missing".into()),
        };
        let ax = fold::axis(attrs.int("axis", 0), x.shape.len(), false)?;
        let len = x.shape[ax];
        let outs = n.output.len();
        if outs == 0 {
            return Err("Split without outputs".into());
        }
        let given = if self.opset >= 13 {
            self.konst(n, 1, "split")?
                .map(|c| c.as_ik().map(<[i64]>::to_vec))
                .transpose()?
        } else {
            attrs.ints("split")
        };
        let sizes: Vec<usize> = match (given, attrs.get("num_outputs")) {
            (Some(v), _) => v
                .iter()
                .map(|&s| usize::try_from(s).map_err(|_| format!("a negative part size {s}")))
                .collect::<R<_>>()?,
            (None, Some(_)) => {
                let k = usize::try_from(attrs.int("num_outputs", 0))
                    .ok()
                    .filter(|&k| k == outs)
                    .ok_or_else(|| {
                        format!(
                            "num_outputs {} for {outs} outputs",
                            attrs.int("num_outputs", 0)
                        )
                    })?;
                let part = len.div_ceil(k);
                (0..k)
                    .map(|i| part.min(len.saturating_sub(i * part)))
                    .collect()
            }
            (None, None) => {
                if !len.is_multiple_of(outs) {
                    return Err(format!(
                        "length {len} of axis {ax} does not split into {outs} equal parts"
                    ));
                }
                vec![len / outs; outs]
            }
        };
        if sizes.len() != outs {
            return Err(format!("{} part sizes for {outs} outputs", sizes.len()));
        }
        let total = sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b));
        if total != Some(len) {
            return Err(format!(
                "part sizes {sizes:?} do not add up to the length {len} of axis {ax}"
            ));
        }
        let mut vals = Vec::with_capacity(outs);
        let mut at = 0usize;
        for (k, &size) in sizes.iter().enumerate() {
            let mut ranges: Vec<(i64, i64, i64)> =
                x.shape.iter().map(|&d| (0, d as i64, 1)).collect();
            ranges[ax] = (at as i64, (at + size) as i64, 1);
            at += size;
            let out = &n.output[k];
            if out.is_empty() || !self.uses.contains_key(out) {
                // Nothing reads this part: no layer for it.
                vals.push(Val::Unknown);
                continue;
            }
            vals.push(Val::Act(self.crop(
                x.clone(),
                &ranges,
                &format!("{label}.{k}"),
            )?));
        }
        Ok(vals)
    }

    /// Folds `y = x * scale + shift` (per channel of the last axis) into layer `i`, a layer
    /// norm or channel affine layer that wrote the row-major `x`; false where it cannot.
    fn fold_into_row_layer(&mut self, i: usize, x: &Act, scale: &[f64], shift: &[f64]) -> bool {
        let c = scale.len();
        if x.layout == Layout::Nhwc || x.phys.last() != Some(&c) {
            return false;
        }
        // (p * x + q) * scale + shift, with p = 1 and q = 0 where absent.
        let compose = |p: Option<&[f32]>, q: Option<&[f32]>| -> (Vec<f32>, Vec<f32>) {
            (0..c)
                .map(|j| {
                    let (pj, qj) = (
                        p.map_or(1.0, |p| f64::from(p[j])),
                        q.map_or(0.0, |q| f64::from(q[j])),
                    );
                    ((pj * scale[j]) as f32, (qj * scale[j] + shift[j]) as f32)
                })
                .unzip()
        };
        match &mut self.graph.nodes[i].layer {
            Layer::LayerNorm { gamma, beta, .. } => {
                let (g, b) = compose(gamma.as_deref(), beta.as_deref());
                if gamma.is_some() || scale.iter().any(|&v| v != 1.0) {
                    *gamma = Some(g);
                }
                if beta.is_some() || shift.iter().any(|&v| v != 0.0) {
                    *beta = Some(b);
                }
                true
            }
            Layer::ChannelAffine {
                scale: s0,
                shift: t0,
            } if s0.len() == c => {
                (*s0, *t0) = compose(Some(s0), Some(t0));
                true
            }
            _ => false,
        }
    }

    /// `x * scale + shift` per channel of the last axis of row-major `x`: a
    /// [`Layer::ChannelAffine`] (after `x` is stored in ONNX order with that axis
    /// innermost).
    fn channel_affine(&mut self, x: Act, scale: &[f64], shift: &[f64], label: &str) -> R<Act> {
        let x = self.last_axis_innermost(x, label)?;
        let layer = Layer::ChannelAffine {
            scale: scale.iter().map(|&v| v as f32).collect(),
            shift: shift.iter().map(|&v| v as f32).collect(),
        };
        let i = self.push(label, layer, x.src);
        Ok(Act {
            src: Src::Node(i),
            ..x
        })
    }

    /// `x` stored in ONNX order with its last axis innermost, for layers that read the
    /// stored last axis: moved out of NHWC, or a view copied into its own shape.
    fn last_axis_innermost(&mut self, x: Act, label: &str) -> R<Act> {
        let x = self.onnx_order(x, &format!("{label}.nchw"))?;
        if x.phys.last() == x.shape.last() {
            return Ok(x);
        }
        if x.shape.len() > crate::ops::layout::MAX_PERMUTE_RANK {
            return Err(format!(
                "a per-channel layer over the last axis of a view {:?} of rank above {}",
                x.shape,
                crate::ops::layout::MAX_PERMUTE_RANK
            ));
        }
        Ok(self.materialize(x, &format!("{label}.view")))
    }

    /// A reshape of `x` to `dims`: a view where the stored order allows ([`view`]), else
    /// of a copy of `x` moved into ONNX order first (an NCHW activation stored NHWC whose
    /// reshape mixes channels with pixels, such as `[N, C, 1, W]` to `[N, C, W]`).
    fn reshape(&mut self, x: Act, dims: Vec<usize>, label: &str) -> R<Act> {
        match view(x.clone(), dims.clone()) {
            Ok(a) => Ok(a),
            Err(e) if matches!(x.layout, Layout::Nhwc | Layout::FlatNhwc(_)) => {
                let x = self.onnx_order(x, &format!("{label}.nchw"))?;
                view(x, dims).map_err(|e2| format!("{e}; in ONNX order: {e2}"))
            }
            Err(e) => Err(e),
        }
    }

    /// `x` stored in its ONNX order: itself where the stored order is that already, else
    /// a copy of the NHWC data moved to NCHW (a [`Layer::Permute`]).
    fn onnx_order(&mut self, x: Act, label: &str) -> R<Act> {
        if x.layout.is_ordered(&x.shape) {
            return Ok(Act {
                layout: Layout::Plain,
                ..x
            });
        }
        let nhwc = match x.layout {
            Layout::Nhwc => x.phys.clone(),
            Layout::FlatNhwc([c, h, w]) => vec![x.shape[0], h, w, c],
            Layout::Plain => unreachable!("plain activations are ordered"),
        };
        let i = self.push(
            label,
            Layer::Permute {
                view: nhwc.clone(),
                perm: vec![0, 3, 1, 2],
            },
            x.src,
        );
        self.same_codes(x.src, i);
        Ok(Act {
            phys: vec![nhwc[0], nhwc[3], nhwc[1], nhwc[2]],
            layout: Layout::Plain,
            src: Src::Node(i),
            ..x
        })
    }

    /// A [`Layer::LayerNorm`] of `x` over its last ONNX axis: `x` is first stored in ONNX
    /// order with that axis innermost (moved or copied where it is not).
    fn layer_norm(&mut self, x: Act, eps: f32, label: &str) -> R<Act> {
        let x = self.last_axis_innermost(x, label)?;
        let layer = Layer::LayerNorm {
            eps,
            gamma: None,
            beta: None,
        };
        let i = self.push(label, layer, x.src);
        Ok(Act {
            src: Src::Node(i),
            ..x
        })
    }

    /// ONNX `LayerNormalization` (opset 17) over the axes from `axis` on (rows of their
    /// size), its Scale and B constants broadcast to those axes and carried by the layer.
    fn lower_layer_norm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Act> {
        if n.output
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.uses.contains_key(o))
        {
            return Err(
                "the Mean and InvStdDev outputs are read (training); only Y is supported".into(),
            );
        }
        let x = self.act(n, 0)?;
        let r = x.shape.len();
        let ax = fold::axis(attrs.int("axis", -1), r, false)?;
        let eps = attrs.float("epsilon", 1e-5);
        if !eps.is_finite() || eps < 0.0 {
            return Err(format!("epsilon {eps} must be finite and not negative"));
        }
        // Normalized over axes ax.. : rows of `inner` values, Scale and B broadcast
        // to those axes.
        let normalized = x.shape[ax..].to_vec();
        let inner: usize = normalized.iter().product();
        let outer: usize = x.shape[..ax].iter().product();
        let per_element = |i: usize, what: &str| -> R<Option<Vec<f32>>> {
            let Some(k) = self.konst(n, i, what)? else {
                return Ok(None);
            };
            broadcast_to(&k.dims, &k.to_f32(), &normalized)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "{what} {:?} does not broadcast to the normalized axes {normalized:?}",
                        k.dims
                    )
                })
        };
        let gamma = per_element(1, "Scale")?;
        let beta = per_element(2, "B")?;
        let shape = x.shape.clone();
        let x = self.onnx_order(x, &format!("{label}.nchw"))?;
        let rows = view(x, vec![outer, inner])?;
        let y = self.layer_norm(rows, eps, label)?;
        let Src::Node(i) = y.src else {
            unreachable!("a layer's output")
        };
        self.graph.nodes[i].layer = Layer::LayerNorm { eps, gamma, beta };
        view(y, shape)
    }

    /// One step of a spelled-out layer normalization ([`Val::Norm`]), or `None` when node
    /// `n` is not one (it is lowered as usual).
    fn norm_step(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Option<Val>> {
        Ok(match self.next_norm_step(n, attrs)? {
            None => None,
            Some((x, None)) => {
                let eps = match self.input(n, 1) {
                    Some(Val::Norm(_, NormStep::Std(eps))) => *eps,
                    _ => unreachable!("the Div step reads the standard deviation"),
                };
                Some(Val::Act(self.layer_norm(x, eps, label)?))
            }
            Some((x, Some(step))) => Some(Val::Norm(x, step)),
        })
    }

    /// The step of a spelled-out layer normalization that node `n` makes (`None` inside:
    /// the Div that completes it), or `None` when it makes none.
    #[allow(clippy::type_complexity)]
    fn next_norm_step(&self, n: &NodeProto, attrs: &Attrs) -> R<Option<(Act, Option<NormStep>)>> {
        let op = n.op_type();
        let val = |i: usize| self.input(n, i).cloned();
        let same = |a: &Act, b: &Act| a.src == b.src && a.shape == b.shape && a.layout == b.layout;
        let scalar = |v: &Option<Val>| match v {
            Some(Val::Const(c)) if c.dims.iter().product::<usize>() == 1 => {
                c.to_f32().first().copied()
            }
            _ => None,
        };
        let last_axis_mean = |x: &Act| -> R<bool> {
            let r = x.shape.len() as i64;
            let axes = self.reduce_axes(n, attrs)?;
            let last = matches!(axes.as_deref(), Some([a]) if *a == -1 || *a == r - 1);
            Ok(last && attrs.int("keepdims", 1) != 0 && r >= 1)
        };
        let step = |x: Act, s: NormStep| Ok(Some((x, Some(s))));
        match (op, val(0), val(1)) {
            ("ReduceMean", Some(Val::Act(x)), _) if last_axis_mean(&x)? => step(x, NormStep::Mean),
            ("ReduceMean", Some(Val::Norm(x, NormStep::Squared)), _) if last_axis_mean(&x)? => {
                step(x, NormStep::Var)
            }
            ("Sub", Some(Val::Act(x)), Some(Val::Norm(m, NormStep::Mean))) if same(&x, &m) => {
                step(x, NormStep::Centered)
            }
            ("Pow", Some(Val::Norm(x, NormStep::Centered)), ref e) if scalar(e) == Some(2.0) => {
                step(x, NormStep::Squared)
            }
            (
                "Mul",
                Some(Val::Norm(x, NormStep::Centered)),
                Some(Val::Norm(y, NormStep::Centered)),
            ) if same(&x, &y) => step(x, NormStep::Squared),
            ("Add", Some(Val::Norm(x, NormStep::Var)), ref e)
            | ("Add", ref e, Some(Val::Norm(x, NormStep::Var)))
                if scalar(e).is_some_and(|v| v.is_finite() && v >= 0.0) =>
            {
                step(x, NormStep::VarEps(scalar(e).unwrap_or(0.0)))
            }
            ("Sqrt", Some(Val::Norm(x, NormStep::VarEps(eps))), _) => step(x, NormStep::Std(eps)),
            (
                "Div",
                Some(Val::Norm(x, NormStep::Centered)),
                Some(Val::Norm(y, NormStep::Std(_))),
            ) if same(&x, &y) => Ok(Some((x, None))),
            _ => Ok(None),
        }
    }

    /// Builds as layers the spelled-out layer-normalization steps ([`Val::Norm`]) that
    /// node `n` reads without continuing the pattern (a QuantizeLinear of the variance,
    /// a Sub of the mean from another value, ...): row means, broadcast binary ops and
    /// maps, in the file's order of operations. Nothing when `n` continues the pattern.
    /// Graph outputs still pending (a zero pad waiting for a convolution, a step of a
    /// spelled-out layer normalization) become layers, as for a node that reads them.
    pub(crate) fn outputs_as_layers(&mut self, names: &[&str]) -> R<()> {
        for name in names {
            let n = NodeProto {
                op_type: Some("Identity".into()),
                input: vec![name.to_string()],
                ..Default::default()
            };
            let label = format!("{name}.output");
            self.norm_inputs_as_layers(&n, &Attrs(&[]), &label)?;
            self.padded_inputs_as_layers(&n, &label)?;
        }
        Ok(())
    }

    fn norm_inputs_as_layers(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<()> {
        let reads_norm = n
            .input
            .iter()
            .any(|s| matches!(self.vals.get(s), Some(Val::Norm(..))));
        if !reads_norm || self.next_norm_step(n, attrs)?.is_some() {
            return Ok(());
        }
        for name in &n.input {
            if let Some(Val::Norm(x, step)) = self.vals.get(name).cloned() {
                let a = self.norm_layers_of(&x, step, label)?;
                self.vals.insert(name.clone(), Val::Act(a));
            }
        }
        Ok(())
    }

    /// Step `step` of the layer normalization of `x` as layers (each step built once).
    fn norm_layers_of(&mut self, x: &Act, step: NormStep, label: &str) -> R<Act> {
        let key = (src_key(x.src), format!("{:?} {step:?}", x.shape));
        if let Some(a) = self.norm_layers.get(&key) {
            return Ok(a.clone());
        }
        let a = match step {
            NormStep::Mean => {
                let xr = self.last_axis_innermost(x.clone(), &format!("{label}.x"))?;
                self.row_reduce(xr, Reduce::Mean, &format!("{label}.mean"))
            }
            NormStep::Centered => {
                let m = self.norm_layers_of(x, NormStep::Mean, label)?;
                let xr = self.last_axis_innermost(x.clone(), &format!("{label}.x"))?;
                self.binary_acts("Sub", xr, m, &format!("{label}.centered"))?
            }
            NormStep::Squared => {
                let c = self.norm_layers_of(x, NormStep::Centered, label)?;
                self.binary_acts("Mul", c.clone(), c, &format!("{label}.squared"))?
            }
            NormStep::Var => {
                let sq = self.norm_layers_of(x, NormStep::Squared, label)?;
                self.row_reduce(sq, Reduce::Mean, &format!("{label}.var"))
            }
            NormStep::VarEps(eps) => {
                let v = self.norm_layers_of(x, NormStep::Var, label)?;
                let f = UnaryOp::Affine {
                    scale: 1.0,
                    shift: eps,
                };
                self.map(v, f, &format!("{label}.var_eps"))?
            }
            NormStep::Std(eps) => {
                let v = self.norm_layers_of(x, NormStep::VarEps(eps), label)?;
                self.map(v, UnaryOp::Sqrt, &format!("{label}.std"))?
            }
        };
        self.norm_layers.insert(key, a.clone());
        Ok(a)
    }

    /// `x` in ONNX order copied into a row-major tensor `[other axes.., R]`: rows over
    /// `axes` (sorted; `R` their product), one row per index of the other axes (`K` rows,
    /// in order). No copy where that is the stored order already.
    fn rows_of(&mut self, x: Act, axes: &[usize], label: &str) -> R<Act> {
        let r = x.shape.len();
        let rest: Vec<usize> = (0..r).filter(|a| !axes.contains(a)).collect();
        let k: usize = rest.iter().map(|&a| x.shape[a]).product();
        let rr: usize = axes.iter().map(|&a| x.shape[a]).product();
        let trailing = axes
            .iter()
            .enumerate()
            .all(|(i, &a)| a == r - axes.len() + i);
        let s = x.shape.clone();
        let x = self.row_major(x, &s, &format!("{label}.x"))?;
        let (src, phys) = if trailing {
            (x.src, x.phys.clone())
        } else {
            if r > crate::ops::layout::MAX_PERMUTE_RANK {
                return Err(format!(
                    "axes {axes:?} of an activation of rank {r} (at most {})",
                    crate::ops::layout::MAX_PERMUTE_RANK
                ));
            }
            let perm: Vec<usize> = rest.iter().chain(axes).copied().collect();
            let phys = perm.iter().map(|&a| x.shape[a]).collect();
            let layer = Layer::Permute {
                view: x.shape.clone(),
                perm,
            };
            let i = self.push(&format!("{label}.rows"), layer, x.src);
            self.same_codes(x.src, i);
            (Src::Node(i), phys)
        };
        let a = Act {
            shape: phys.clone(),
            phys: phys.clone(),
            layout: Layout::Plain,
            src,
        };
        // The row layers read the stored last axis: one reduced axis is that already,
        // several are copied into [the other axes.., R] (not [K, R]: a linear layer
        // after a reduction reads its stored leading axis as the batch).
        let want: Vec<usize> = rest.iter().map(|&a| x.shape[a]).chain([rr]).collect();
        if phys == want {
            return Ok(a);
        }
        debug_assert_eq!(want.iter().product::<usize>(), k * rr);
        Ok(self.flat_copy(a, want, &format!("{label}.flat")))
    }

    /// A copy of row-major `x` (stored as `x.phys`) into a tensor of `dims` (the same
    /// elements).
    fn flat_copy(&mut self, x: Act, dims: Vec<usize>, label: &str) -> Act {
        let layer = Layer::Permute {
            view: dims.clone(),
            perm: (0..dims.len()).collect(),
        };
        let i = self.push(label, layer, x.src);
        self.same_codes(x.src, i);
        Act {
            shape: dims.clone(),
            phys: dims,
            layout: Layout::Plain,
            src: Src::Node(i),
        }
    }

    /// A [`Layer::RowReduce`] of `x` over its last stored axis (kept as 1): ONNX's last
    /// axis of a row-major activation, the channel axis of an NCHW one stored NHWC.
    fn row_reduce(&mut self, x: Act, kind: Reduce, label: &str) -> Act {
        let i = self.push(label, Layer::RowReduce(kind), x.src);
        let mut shape = x.shape.clone();
        let mut phys = x.phys.clone();
        let ax = if x.layout == Layout::Nhwc {
            1
        } else {
            shape.len() - 1
        };
        shape[ax] = 1;
        if let Some(l) = phys.last_mut() {
            *l = 1;
        }
        Act {
            shape,
            phys,
            layout: x.layout,
            src: Src::Node(i),
        }
    }

    /// A row-major activation copied into a tensor of its own ONNX shape (an identity
    /// [`Layer::Permute`] of the view), for layers that read the stored last axis.
    fn materialize(&mut self, x: Act, label: &str) -> Act {
        let r = x.shape.len();
        let layer = Layer::Permute {
            view: x.shape.clone(),
            perm: (0..r).collect(),
        };
        let i = self.push(label, layer, x.src);
        self.same_codes(x.src, i);
        Act {
            phys: x.shape.clone(),
            src: Src::Node(i),
            ..x
        }
    }

    /// Layer `i` only moves or copies the values of `from`: a quantized file's
    /// parameters of `from` hold for its output too (so the codes stay codes).
    fn same_codes(&mut self, from: Src, i: usize) {
        if let Some(&q) = self.act_q.get(&src_key(from)) {
            self.act_q.insert(i, q);
            self.inherited_q.insert(i);
        }
    }

    /// `Transpose` of an activation: a relabelling where no data moves
    /// ([`transpose_act`]), else a [`Layer::Permute`] of the stored tensor. The output is
    /// stored as the input is: a 4-D image (stored NHWC) gives a 4-D image stored NHWC,
    /// anything else is stored in ONNX order (so attention's `[B, heads, T, d]` stays
    /// row-major for the matrix products that read it).
    fn transpose(&mut self, x: Act, perm: &[usize], label: &str) -> R<Act> {
        fold::check_perm(perm, x.shape.len())?;
        let mut x = x;
        // NCHW from a row-major view whose tensor is not 4-D ([N, W, C] reshaped to
        // [N, 1, W, C], say): a copy in its own shape first, then it is NHWC as stored.
        if x.layout == Layout::Plain && perm == [0, 3, 1, 2] && x.phys != x.shape {
            x = self.materialize(x, &format!("{label}.view"));
        }
        if let Ok(a) = transpose_act(x.clone(), perm) {
            return Ok(a);
        }
        let r = x.shape.len();
        // Stored axis of each ONNX axis of x, and the stored shape read.
        let (stored_of, view): (Vec<usize>, Vec<usize>) = match x.layout {
            Layout::Nhwc => (vec![0, 3, 1, 2], x.phys.clone()),
            Layout::Plain => ((0..r).collect(), x.shape.clone()),
            Layout::FlatNhwc(_) => {
                return Err(format!(
                    "perm {perm:?} of a flattened NCHW activation {:?} is not supported",
                    x.shape
                ))
            }
        };
        if r > crate::ops::layout::MAX_PERMUTE_RANK || (x.layout == Layout::Nhwc && r != 4) {
            return Err(format!(
                "perm {perm:?} of an activation of rank {r} (at most {} are supported)",
                crate::ops::layout::MAX_PERMUTE_RANK
            ));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
        let image = x.layout == Layout::Nhwc;
        // The output's ONNX axes in the order they are stored.
        let out_order: Vec<usize> = if image {
            vec![0, 2, 3, 1]
        } else {
            (0..r).collect()
        };
        let stored_perm: Vec<usize> = out_order.iter().map(|&j| stored_of[perm[j]]).collect();
        let phys: Vec<usize> = out_order.iter().map(|&j| shape[j]).collect();
        let layer = Layer::Permute {
            view,
            perm: stored_perm,
        };
        let i = self.push(label, layer, x.src);
        Ok(Act {
            shape,
            phys,
            layout: if image { Layout::Nhwc } else { Layout::Plain },
            src: Src::Node(i),
        })
    }
}

/// `v` (of shape `dims`) broadcast to `target` as ONNX broadcasts (dimensions aligned at
/// the end, 1 repeats), row-major; `None` when it does not broadcast.
fn broadcast_to(dims: &[usize], v: &[f32], target: &[usize]) -> Option<Vec<f32>> {
    if dims.len() > target.len() || v.len() != dims.iter().product::<usize>() {
        return None;
    }
    let lead = target.len() - dims.len();
    let full: Vec<usize> = std::iter::repeat_n(1, lead)
        .chain(dims.iter().copied())
        .collect();
    if full.iter().zip(target).any(|(&d, &t)| d != t && d != 1) {
        return None;
    }
    let n: usize = target.iter().product();
    let mut out = Vec::with_capacity(n);
    for e in 0..n {
        // The source index: each target coordinate, 0 where the source has 1.
        let (mut rem, mut src, mut stride) = (e, 0usize, 1usize);
        for k in (0..target.len()).rev() {
            let c = rem % target[k];
            rem /= target[k];
            if full[k] != 1 {
                src += c * stride;
            }
            stride *= full[k];
        }
        out.push(v[src]);
    }
    Some(out)
}

/// A reshape of activation `x` to the ONNX shape `dims`, where the stored order allows.
/// A transposed convolution's weights `[C, M / groups, kh, kw]` as the OIHW weights
/// `[M, C / groups, kh, kw]` of the equivalent stride-1 convolution, flipped in space.
fn flipped_weights(wv: &[f32], [c, mg, kh, kw]: [usize; 4], groups: usize) -> Vec<f32> {
    let m = mg * groups;
    let cg = c / groups;
    let mut wt = vec![0.0f32; m * cg * kh * kw];
    for g in 0..groups {
        for ci in 0..cg {
            for mo in 0..mg {
                for y in 0..kh {
                    for z in 0..kw {
                        let src = (((g * cg + ci) * mg + mo) * kh + y) * kw + z;
                        let dst =
                            (((g * mg + mo) * cg + ci) * kh + (kh - 1 - y)) * kw + (kw - 1 - z);
                        wt[dst] = wv[src];
                    }
                }
            }
        }
    }
    wt
}

/// Refuses a shape of more than 2^31 elements (what one storage binding can index).
fn bounded(shape: &[usize], what: &str) -> R<()> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= 1 << 31 => Ok(()),
        _ => Err(format!("{what} {shape:?} has more than 2^31 elements")),
    }
}

fn view(x: Act, dims: Vec<usize>) -> R<Act> {
    if dims.iter().product::<usize>() != x.shape.iter().product::<usize>() {
        return Err(format!("cannot view {:?} as {dims:?}", x.shape));
    }
    let layout = match x.layout {
        Layout::Nhwc if dims.len() == 2 && dims[0] == x.shape[0] => {
            Layout::FlatNhwc([x.shape[1], x.shape[2], x.shape[3]])
        }
        Layout::FlatNhwc(chw) if dims.len() == 4 && dims[0] == x.shape[0] && dims[1..] == chw => Layout::Nhwc,
        Layout::Nhwc if dims == x.shape => Layout::Nhwc,
        Layout::Plain if dims == x.shape || dims == x.phys => Layout::Plain,
        l if l.is_ordered(&x.shape) && (dims.len() != 4 || x.phys.len() != 4) => Layout::Plain,
        l if l.is_ordered(&x.shape) && x.phys.len() == 4 && x.phys == [dims[0], dims[2], dims[3], dims[1]] => Layout::Nhwc,
        _ => {
            return Err(format!(
                "reshaping {:?} to {dims:?} would reorder NCHW data stored as NHWC inside the graph (unsupported)",
                x.shape
            ))
        }
    };
    Ok(Act {
        shape: dims,
        layout,
        ..x
    })
}

fn shape_of(dims: &[usize], attrs: &Attrs) -> Const {
    let r = dims.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = clampi(attrs.int("start", 0));
    let e = clampi(attrs.int("end", r));
    let v: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
    Const::i64(vec![v.len()], v)
}

fn constant(attrs: &Attrs) -> R<Const> {
    if let Some(t) = attrs.tensor("value") {
        return super::tensor::decode(t, None);
    }
    if attrs.has("value_float") {
        return Ok(Const::f32(vec![], vec![attrs.float("value_float", 0.0)]));
    }
    if attrs.has("value_int") {
        return Ok(Const::i64(vec![], vec![attrs.int("value_int", 0)]));
    }
    if let Some(a) = attrs.get("value_floats") {
        return Ok(Const::f32(vec![a.floats.len()], a.floats.clone()));
    }
    if let Some(v) = attrs.ints("value_ints") {
        return Ok(Const::i64(vec![v.len()], v));
    }
    Err(
        "a Constant without a supported value attribute (value, value_float(s), value_int(s))"
            .into(),
    )
}

/// Reshape's target: 0 copies the input dimension (unless `allowzero`), -1 is inferred.
fn reshape_dims(input: &[usize], shape: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or(format!(
                "shape {shape:?} copies dimension {i}, which {input:?} lacks"
            ))?),
            s if s >= 0 => out.push(s as usize),
            _ => return Err(format!("shape {shape:?} is not a valid Reshape target")),
        }
    }
    if let Some(i) = infer {
        let rest: usize = out.iter().product();
        if rest == 0 || !total.is_multiple_of(rest) {
            return Err(format!("cannot reshape {input:?} to {shape:?}"));
        }
        out[i] = total / rest;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} values) to {shape:?}"
        ));
    }
    Ok(out)
}

fn squeeze_dims(op: &str, dims: &[usize], axes: Option<&[i64]>) -> R<Vec<usize>> {
    if op == "Squeeze" {
        let ax: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&v| fold::axis(v, dims.len(), false))
                .collect::<R<_>>()?,
            None => (0..dims.len()).filter(|&i| dims[i] == 1).collect(),
        };
        if let Some(&i) = ax.iter().find(|&&i| dims[i] != 1) {
            return Err(format!("squeezes axis {i} of {dims:?}, which is not 1"));
        }
        Ok(dims
            .iter()
            .enumerate()
            .filter(|(i, _)| !ax.contains(i))
            .map(|(_, &d)| d)
            .collect())
    } else {
        let a = axes.ok_or("Unsqueeze needs axes")?;
        let r = dims.len() + a.len();
        let mut ax: Vec<usize> = a
            .iter()
            .map(|&v| fold::axis(v, r, false))
            .collect::<R<_>>()?;
        ax.sort_unstable();
        ax.dedup();
        if ax.len() != a.len() {
            return Err(format!("axes {a:?} repeat"));
        }
        let mut src = dims.iter();
        Ok((0..r)
            .map(|i| {
                if ax.contains(&i) {
                    1
                } else {
                    *src.next().expect("rank counted")
                }
            })
            .collect())
    }
}

fn to_us(v: i64) -> R<usize> {
    usize::try_from(v).map_err(|_| format!("{v} is negative"))
}

fn pair(attrs: &Attrs, name: &str, default: usize) -> R<[usize; 2]> {
    match attrs.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("{name} {v:?}: two positive values expected (2-D)")),
    }
}

fn padding(attrs: &Attrs) -> R<Padding> {
    match attrs.string("auto_pad").as_deref().unwrap_or("NOTSET") {
        "NOTSET" => match attrs.ints("pads") {
            None => Ok(Padding::Explicit([0; 4])),
            Some(p) if p.len() == 4 => {
                let u = p.iter().map(|&v| to_us(v)).collect::<R<Vec<_>>>()?;
                // ONNX orders pads [top, left, bottom, right] as this crate does.
                Ok(Padding::Explicit([u[0], u[1], u[2], u[3]]))
            }
            Some(p) => Err(format!("pads {p:?}: four values expected (2-D)")),
        },
        "VALID" => Ok(Padding::Valid),
        "SAME_UPPER" => Ok(Padding::Same),
        "SAME_LOWER" => Ok(Padding::SameLower),
        other => Err(format!(
            "auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
        )),
    }
}

/// Explicit padding widened at the bottom/right so that floor rounding gives ceil_mode's
/// output size (used only to compare the two sizes).
/// ONNX's `ceil_mode` as padding: the output size rounded up, less one where the last
/// window would start past the input and its padding in front (ONNX's and PyTorch's
/// rule), reached by growing the bottom/right padding. Also says whether it grew (a
/// window then reaches past the file's padding).
fn ceil_padding(d: &PoolDesc, x: &[usize]) -> R<(Padding, bool)> {
    let [t, l, b, r] = match d.padding {
        Padding::Explicit(p) => p,
        Padding::Valid => [0; 4],
        _ => return Ok((d.padding, false)),
    };
    let k = d.kernel.unwrap_or([1, 1]);
    let grow = |size: usize, lo: usize, hi: usize, k: usize, s: usize, dil: usize| -> R<usize> {
        let eff = dil
            .checked_mul(k - 1)
            .and_then(|v| v.checked_add(1))
            .ok_or("the pooling window overflows")?;
        let total = size + lo + hi;
        if total < eff || s == 0 {
            return Ok(hi);
        }
        let mut out = (total - eff).div_ceil(s) + 1;
        if (out - 1) * s >= size + lo {
            out -= 1;
        }
        Ok(hi.max(((out - 1) * s + eff).saturating_sub(size + lo)))
    };
    let bh = grow(x[1], t, b, k[0], d.stride[0], d.dilation[0])?;
    let bw = grow(x[2], l, r, k[1], d.stride[1], d.dilation[1])?;
    Ok((Padding::Explicit([t, l, bh, bw]), bh > b || bw > r))
}

/// A QOperator node's activation inputs as (value, scale, zero point) indices, its
/// output's (scale, zero point) indices, and its float operator.
type QSpec = (Vec<QInput>, Option<(usize, usize)>, &'static str);

/// The [`QSpec`] of QOperator node `n`.
fn qoperator_spec(n: &NodeProto) -> R<QSpec> {
    let op = n.op_type();
    let name = |i: usize| n.input.get(i).cloned().unwrap_or_default();
    Ok(match op {
        "QLinearConv" => (vec![(0, 1, 2)], Some((6, 7)), "Conv"),
        "QLinearMatMul" => (vec![(0, 1, 2)], Some((6, 7)), "MatMul"),
        "QGemm" => (
            vec![(0, 1, 2)],
            (n.input.len() > 7 && !name(7).is_empty()).then_some((7, 8)),
            "Gemm",
        ),
        "QLinearAdd" => (vec![(0, 1, 2), (3, 4, 5)], Some((6, 7)), "Add"),
        "QLinearMul" => (vec![(0, 1, 2), (3, 4, 5)], Some((6, 7)), "Mul"),
        "QLinearConcat" => {
            // Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input.
            let k = n.input.len().saturating_sub(2);
            if k == 0 || !k.is_multiple_of(3) {
                return Err(format!(
                    "{} inputs: expected Y_scale, Y_zero_point and a (value, scale, zero point) triple per input",
                    n.input.len()
                ));
            }
            let acts = (0..k / 3).map(|t| (2 + 3 * t, 3 + 3 * t, 4 + 3 * t));
            (acts.collect(), Some((0, 1)), "Concat")
        }
        "QLinearAveragePool" => (vec![(0, 1, 2)], Some((3, 4)), "AveragePool"),
        "QLinearGlobalAveragePool" => (vec![(0, 1, 2)], Some((3, 4)), "GlobalAveragePool"),
        "QLinearSigmoid" => (vec![(0, 1, 2)], Some((3, 4)), "Sigmoid"),
        "QLinearLeakyRelu" => (vec![(0, 1, 2)], Some((3, 4)), "LeakyRelu"),
        "QLinearSoftmax" => (vec![(0, 1, 2)], Some((3, 4)), "Softmax"),
        _ => return Err(format!("{op} is not a QOperator node")),
    })
}

/// The output size and scales of a resize to `sizes` (`[N, C, H, W]`) under
/// `keep_aspect_ratio_policy` `policy` (not `stretch`).
fn aspect_sizes(
    policy: &str,
    axes: Option<Vec<i64>>,
    v: &[i64],
    shape: &[usize],
) -> R<([usize; 2], [f32; 2])> {
    let (h, w) = (shape[2], shape[3]);
    // One scale for the axes named (all four without `axes`, whose
    // batch and channel ratios are 1): the smallest or largest ratio;
    // those axes become round(scale * length), as ONNX's reference does.
    let named: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| fold::axis(a, 4, false))
            .collect::<R<_>>()?,
        None => (0..4).collect(),
    };
    let ratio = |a: usize| v[a] as f64 / shape[a] as f64;
    let ratios = named.iter().map(|&a| ratio(a));
    let s = match policy {
        "not_larger" => ratios.fold(f64::INFINITY, f64::min),
        "not_smaller" => ratios.fold(0.0, f64::max),
        other => {
            return Err(format!(
                "keep_aspect_ratio_policy '{other}' is not one of ONNX's"
            ))
        }
    };
    if !(s.is_finite() && s > 0.0 && s <= 4096.0) {
        return Err(format!("sizes {v:?} give the scale {s}"));
    }
    let side = |a: usize, d: usize| -> (usize, f32) {
        if named.contains(&a) {
            ((s * d as f64 + 0.5).floor() as usize, s as f32)
        } else {
            (d, 1.0)
        }
    };
    let ((oh, sh), (ow, sw)) = (side(2, h), side(3, w));
    Ok(([oh, ow], [sh, sw]))
}
