//! ONNX import: a model file from PyTorch, TensorFlow or Paddle becomes a [`Graph`] with
//! its [`WeightFile`], so it runs on the same kernels as a hand-built model, in FP32 or
//! FP16 ([`Model`]) or quantized after training ([`QModel`], static or dynamic INT8 with
//! the crate's observers and bias correction).
//!
//! The file is decoded with prost into types generated from the vendored `onnx.proto`
//! ([`proto`]); nothing is hand-parsed. Loading resolves everything the GPU need not
//! see: the nodes are ordered topologically (a cycle is an error), every shape is
//! inferred from the input shape, shape arithmetic on constants is folded
//! (`Shape`/`Gather`/`Concat`/`Slice`/...), BatchNormalization and per-channel
//! arithmetic fold into the convolution before them, and ReLU/ReLU6 fuse into its
//! epilogue. The model's NCHW tensors run on the NHWC kernels: weights are rearranged
//! once here, and the layout changes only at the edges ([`OnnxImport::to_model_input`],
//! [`OnnxImport::from_model_output`]). Anything that cannot be imported is one
//! [`Error::Import`] listing every such node (name, op type, reason).
//!
//! docs/ONNX.md has the operator table ([`OPERATORS`]).
//!
//! ```no_run
//! use wgpu_quant::import::OnnxImport;
//! use wgpu_quant::{Context, DType, Tensor};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let onnx = OnnxImport::load("model.onnx", Some(&[1, 3, 224, 224]))?;
//! let model = onnx.model(&ctx, DType::F32)?;
//! let nchw = vec![0.5f32; 3 * 224 * 224];
//! let x = Tensor::from_slice(&ctx, &onnx.input().model_shape, &onnx.to_model_input(&nchw)?)?;
//! let mut enc = ctx.encoder("onnx");
//! let y = model.forward(&ctx, &mut enc, &x)?;
//! ctx.submit_and_wait(enc)?;
//! let logits = onnx.from_model_output(&y.read_blocking::<f32>(&ctx)?)?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use prost::Message;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::model::{Graph, Model, PtqOptions, QModel, Src, WeightFile};
use crate::quant::{Granularity, QuantParams};
use crate::tensor::{DType, Tensor};

mod dynamic;
mod fold;
mod lower;
mod optimize;
#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto;
mod tensor;

use lower::{Act, Lowering, Val};
pub use lower::{Layout, OPERATORS};

/// The oldest and newest default-domain opsets the importer accepts.
pub const OPSETS: std::ops::RangeInclusive<i64> = 6..=25;

/// One end of the imported graph: its ONNX name and shape, and the shape and layout of
/// the tensor the [`Model`] reads or writes there.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// The ONNX value name.
    pub name: String,
    /// The ONNX shape (NCHW for images).
    pub shape: Vec<usize>,
    /// The model tensor's shape (NHWC for images).
    pub model_shape: Vec<usize>,
    /// How the model tensor's order relates to the ONNX order.
    pub layout: Layout,
    /// The layer whose output this is (an output edge: read it with `Model::output` or
    /// `QModel::output` by this name; empty for the input).
    pub node: String,
}

/// An imported ONNX model: the graph, its weights and its edges.
#[derive(Debug, Clone)]
pub struct OnnxImport {
    graph: Graph,
    weights: WeightFile,
    input: Edge,
    output: Edge,
    /// Every graph output, in the file's order (`output` is among them).
    outputs: Vec<Edge>,
    file: String,
    opset: i64,
    ops: BTreeMap<String, usize>,
    nodes: usize,
    qdq: Option<Qdq>,
    /// ONNX Runtime's dynamic format: ConvInteger/MatMulInteger nodes rewritten.
    dynamic: usize,
}

/// What a quantized (QDQ) file decides: the weights' codes and parameters, and each
/// quantized activation's scale and zero point.
#[derive(Debug, Clone)]
struct Qdq {
    weights: BTreeMap<String, (QuantParams, Vec<i32>)>,
    acts: Vec<Option<QuantParams>>,
    input: Option<QuantParams>,
    /// Weights changed after quantization (their codes no longer hold).
    requantized: Vec<String>,
}

fn err(file: &str, detail: impl Into<String>) -> Error {
    Error::Import {
        file: file.to_string(),
        detail: detail.into(),
    }
}

impl OnnxImport {
    /// Loads `path` (external data is read beside it). `input_shape` gives the input's
    /// ONNX shape (NCHW for images); `None` takes the shape the file declares, which
    /// must then be fully static.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: impl AsRef<Path>, input_shape: Option<&[usize]>) -> Result<OnnxImport> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| err(&file, e.to_string()))?;
        OnnxImport::from_bytes(&bytes, &file, path.parent(), input_shape)
    }

    /// Imports model bytes; `name` names them in errors, `dir` is where external data
    /// files are (`None`: a model with external data is refused).
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        dir: Option<&Path>,
        input_shape: Option<&[usize]>,
    ) -> Result<OnnxImport> {
        let m = proto::ModelProto::decode(bytes)
            .map_err(|e| err(name, format!("not an ONNX model (protobuf: {e})")))?;
        let opset = default_opset(&m).map_err(|e| err(name, e))?;
        let g = m
            .graph
            .as_ref()
            .ok_or_else(|| err(name, "the model has no graph"))?;
        // ONNX Runtime's dynamic format becomes QDQ on the weights (import/dynamic.rs).
        match dynamic::rewrite(g) {
            Some((g, n)) => {
                let mut imported = import_graph(&g, name, dir, opset, input_shape)?;
                imported.dynamic = n;
                Ok(imported)
            }
            None => import_graph(g, name, dir, opset, input_shape),
        }
    }

    /// Lets the model use NaN or infinite weights (see
    /// [`WeightFile::allow_nonfinite`]; off by default, when such a weight is an error
    /// naming the initializer).
    pub fn allow_nonfinite(&mut self, allow: bool) {
        self.weights.allow_nonfinite(allow);
    }

    /// Every graph output in the file's order, each naming the layer that computes it
    /// ([`Edge::node`]); [`OnnxImport::output`] is the one `forward` returns.
    pub fn outputs(&self) -> &[Edge] {
        &self.outputs
    }

    /// [`OnnxImport::from_model_output`] for `outputs()[k]` (read from the model with
    /// `Model::output(&edge.node)` or `QModel::output`).
    pub fn from_output(&self, k: usize, y: &[f32]) -> Result<Vec<f32>> {
        let edge = self.outputs.get(k).ok_or_else(|| {
            err(
                &self.file,
                format!(
                    "output {k} does not exist (the model has {})",
                    self.outputs.len()
                ),
            )
        })?;
        from_model(edge, y).map_err(|e| err(&self.file, e))
    }

    /// The graph (NHWC activations).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The weights, named `LAYER.weight` / `LAYER.bias`, in the layouts the graph reads
    /// (OIHW convolutions, `[N, K]` linears).
    pub fn weights(&self) -> &WeightFile {
        &self.weights
    }

    /// The input edge.
    pub fn input(&self) -> &Edge {
        &self.input
    }

    /// The output edge.
    pub fn output(&self) -> &Edge {
        &self.output
    }

    /// The default-domain opset of the file.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Operator types in the file, with their counts.
    pub fn op_counts(&self) -> &BTreeMap<String, usize> {
        &self.ops
    }

    /// Uploads the model in `dtype` (F32 or F16) for its input shape.
    pub fn model(&self, ctx: &Context, dtype: DType) -> Result<Model> {
        Model::new(
            ctx,
            &self.graph,
            &self.weights,
            dtype,
            &self.input.model_shape,
        )
    }

    /// Quantizes the model to INT8 after training: calibrated on `batches` (model-layout
    /// tensors, [`OnnxImport::to_model_input`]), see [`QModel::calibrate_with`].
    pub fn quantize(&self, ctx: &Context, batches: &[Tensor], opts: &PtqOptions) -> Result<QModel> {
        QModel::calibrate_with(
            ctx,
            &self.graph,
            &self.weights,
            &self.input.model_shape,
            batches,
            opts,
        )
    }

    /// [`OnnxImport::quantize`] without blocking (the form a browser build uses; see
    /// [`QModel::calibrate_with_async`]).
    pub async fn quantize_async(
        &self,
        ctx: &Context,
        batches: &[Tensor],
        opts: &PtqOptions,
    ) -> Result<QModel> {
        QModel::calibrate_with_async(
            ctx,
            &self.graph,
            &self.weights,
            &self.input.model_shape,
            batches,
            opts,
        )
        .await
    }

    /// Whether the file is quantized (QDQ nodes, or ONNX Runtime's QOperator nodes).
    pub fn is_quantized(&self) -> bool {
        self.qdq.is_some()
    }

    /// The static INT8 model of a quantized (QDQ) file, with the file's own weight codes,
    /// scales and zero points and its activations' scales and zero points, on the
    /// integer kernels. Layers whose weights the file leaves in float run in f32 between
    /// the codes; errors name what else the file leaves unquantized (the input, an
    /// activation that an integer layer would write).
    pub fn qmodel(&self, ctx: &Context) -> Result<QModel> {
        let e = |d: String| err(&self.file, d);
        let q = self.qdq.as_ref().ok_or_else(|| {
            e(
                "the model has no QuantizeLinear/DequantizeLinear nodes; quantize it with \
               OnnxImport::quantize"
                    .into(),
            )
        })?;
        if !q.requantized.is_empty() {
            return Err(e(format!(
                "the quantized weights of {:?} were changed by folding a following \
                 BatchNorm or scale into them; their codes no longer hold",
                q.requantized
            )));
        }
        // Weights the file leaves in float (a ConvTranspose ONNX Runtime does not
        // quantize, nodes excluded from quantization): those layers run in f32.
        let mut float_weights = BTreeMap::new();
        for (w, _, shape) in self
            .graph
            .nodes
            .iter()
            .filter_map(|n| n.layer.weight_spec())
        {
            if !q.weights.contains_key(w) {
                float_weights.insert(w.to_string(), self.weights.tensor(w, &shape)?.to_vec());
            }
        }
        let mut biases = BTreeMap::new();
        for n in &self.graph.nodes {
            if let Some((_, Some(b), shape)) = n.layer.weight_spec() {
                biases.insert(b.to_string(), self.weights.tensor(b, &shape[..1])?.to_vec());
            }
        }
        // ONNX Runtime's dynamic format: activations quantized on the fly, as
        // DynamicQuantizeLinear does (u8, per tensor), the file's weight codes.
        if self.dynamic > 0 && q.input.is_none() && q.acts.iter().all(Option::is_none) {
            if !float_weights.is_empty() {
                return Err(e(format!(
                    "the weights {:?} are float in the file (not DequantizeLinear of integer \
                     codes); a dynamic INT8 model needs every weight's codes",
                    float_weights.keys().collect::<Vec<_>>()
                )));
            }
            return QModel::from_parts_dynamic(
                ctx,
                &self.graph,
                &self.input.model_shape,
                q.weights.clone(),
                biases,
            )
            .map_err(|x| e(x.to_string()));
        }
        let input = q
            .input
            .clone()
            .ok_or_else(|| e(format!("the input '{}' is not quantized", self.input.name)))?;
        QModel::from_parts(
            ctx,
            &self.graph,
            &self.input.model_shape,
            (q.weights.clone(), float_weights),
            biases,
            q.acts.clone(),
            input,
        )
        .map_err(|x| e(x.to_string()))
    }

    /// Records the rearrangement of an input already on the GPU, in ONNX layout (`x` of
    /// [`OnnxImport::input`]'s `shape`, f32 or f16), into the model's (`out` of its
    /// `model_shape`): a transpose for NCHW images, a copy otherwise.
    pub fn record_input(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        x: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        record_edge(ctx, encoder, &self.input, true, x, out)
            .map_err(|e| err(&self.file, e.to_string()))
    }

    /// Records the rearrangement of the model's output (`y` of [`OnnxImport::output`]'s
    /// `model_shape`) into ONNX layout (`out` of its `shape`), on the GPU.
    pub fn record_output(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        y: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        record_edge(ctx, encoder, &self.output, false, y, out)
            .map_err(|e| err(&self.file, e.to_string()))
    }

    /// Rearranges an input in ONNX layout (NCHW) into the model's (NHWC).
    pub fn to_model_input(&self, x: &[f32]) -> Result<Vec<f32>> {
        to_model(&self.input, x).map_err(|e| err(&self.file, e))
    }

    /// Rearranges the model's output into ONNX layout.
    pub fn from_model_output(&self, y: &[f32]) -> Result<Vec<f32>> {
        from_model(&self.output, y).map_err(|e| err(&self.file, e))
    }

    /// A listing: opset, edges, operator counts, layers and parameters.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: opset {}, {} nodes -> {} layers, {} parameters\ninput  '{}' {:?} (model {:?})\noutput '{}' {:?} (model {:?})\n",
            self.file,
            self.opset,
            self.nodes,
            self.graph.nodes.len(),
            self.weights.parameters(),
            self.input.name,
            self.input.shape,
            self.input.model_shape,
            self.output.name,
            self.output.shape,
            self.output.model_shape,
        );
        for o in self.outputs.iter().filter(|o| o.name != self.output.name) {
            s.push_str(&format!(
                "output '{}' {:?} (model {:?}, layer '{}')\n",
                o.name, o.shape, o.model_shape, o.node
            ));
        }
        s.push_str("operators:");
        for (op, n) in &self.ops {
            s.push_str(&format!(" {op} x{n}"));
        }
        s.push('\n');
        if self.dynamic > 0 {
            s.push_str(&format!(
                "ONNX Runtime's dynamic quantization: {} ConvInteger/MatMulInteger nodes \
                 (with their DynamicQuantizeLinear, Cast and Mul) read as Conv/MatMul of \
                 DequantizeLinear weights; int8-file runs them as dynamic INT8\n",
                self.dynamic
            ));
        }
        s
    }

    /// How many `ConvInteger`/`MatMulInteger` nodes of ONNX Runtime's dynamic format the
    /// file had (0 for other files); [`OnnxImport::qmodel`] runs such a file as a
    /// dynamic INT8 model with the file's weight codes.
    pub fn dynamic_quantized(&self) -> usize {
        self.dynamic
    }
}

impl Model {
    /// Imports the ONNX model at `path` ([`OnnxImport::load`]) and uploads it in `dtype`.
    /// The model reads NHWC tensors of [`OnnxImport::input`]'s `model_shape`; use
    /// [`OnnxImport`] directly to rearrange NCHW data.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_onnx(
        ctx: &Context,
        path: impl AsRef<Path>,
        dtype: DType,
        input_shape: Option<&[usize]>,
    ) -> Result<Model> {
        OnnxImport::load(path, input_shape)?.model(ctx, dtype)
    }
}

fn default_opset(m: &proto::ModelProto) -> std::result::Result<i64, String> {
    let v = m
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version())
        .ok_or("the model imports no default-domain (ai.onnx) opset")?;
    if !OPSETS.contains(&v) {
        return Err(format!(
            "opset {v} is not supported (opsets {} to {} are)",
            OPSETS.start(),
            OPSETS.end()
        ));
    }
    Ok(v)
}

fn label(n: &proto::NodeProto, i: usize) -> String {
    match n.name() {
        "" => format!("{}_{i}", n.op_type()),
        s => s.to_string(),
    }
}

/// The nodes in an order where each reads only values made before it.
fn topo_order(
    g: &proto::GraphProto,
    known: &HashSet<&str>,
) -> std::result::Result<Vec<usize>, String> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if known.contains(o.as_str()) || producer.insert(o, i).is_some() {
                return Err(format!(
                    "value '{o}' is produced twice (node {})",
                    label(n, i)
                ));
            }
        }
    }
    let mut pending: Vec<usize> = vec![0; g.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    readers[p].push(i);
                }
                None if known.contains(inp.as_str()) => {}
                None => {
                    return Err(format!(
                    "node '{}' ({}) reads '{inp}', which no node, input or initializer provides",
                    label(n, i),
                    n.op_type()
                ))
                }
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..g.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(g.node.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.push_back(r);
            }
        }
    }
    if order.len() != g.node.len() {
        let stuck: Vec<String> = (0..g.node.len())
            .filter(|&i| pending[i] > 0)
            .take(8)
            .map(|i| format!("'{}' ({})", label(&g.node[i], i), g.node[i].op_type()))
            .collect();
        return Err(format!(
            "the graph has a cycle through nodes {}",
            stuck.join(", ")
        ));
    }
    Ok(order)
}

fn import_graph(
    g: &proto::GraphProto,
    file: &str,
    dir: Option<&Path>,
    opset: i64,
    input_shape: Option<&[usize]>,
) -> Result<OnnxImport> {
    let e = |d: String| err(file, d);
    let mut consts: HashMap<String, tensor::Const> = HashMap::new();
    for t in &g.initializer {
        consts.insert(t.name().to_string(), tensor::decode(t, dir).map_err(e)?);
    }
    if !g.sparse_initializer.is_empty() {
        return Err(e("sparse initializers are not supported".into()));
    }
    let inputs: Vec<&proto::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !consts.contains_key(i.name()))
        .collect();
    let [inp] = inputs[..] else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(e(format!(
            "the graph has {} inputs {names:?}; one is supported",
            names.len()
        )));
    };
    if g.output.is_empty() {
        return Err(e("the graph has no output".into()));
    }
    let out_names: Vec<&str> = g.output.iter().map(|o| o.name()).collect();
    let shape = input_dims(inp, input_shape).map_err(e)?;

    let mut known: HashSet<&str> = consts.keys().map(String::as_str).collect();
    known.insert(inp.name());
    let order = topo_order(g, &known).map_err(e)?;
    // Only nodes the outputs depend on are imported.
    let (live, uses) = live_nodes(g, &out_names);
    let outputs: HashSet<String> = out_names.iter().map(|s| s.to_string()).collect();
    let mut low = Lowering::new(opset, uses, outputs);
    for (k, c) in consts {
        low.vals.insert(k, Val::Const(c));
    }
    // A 4-D input is NCHW, stored NHWC inside the graph; unless every live node that
    // reads it first transposes it NHWC -> NCHW (perm [0, 3, 1, 2], TensorFlow's
    // exports): then it is NHWC already, stored as it comes.
    let nhwc_input = shape.len() == 4
        && g.node
            .iter()
            .enumerate()
            .filter(|(i, n)| live[*i] && n.input.iter().any(|x| x == inp.name()))
            .all(|(_, n)| {
                n.op_type() == "Transpose"
                    && n.input.first().map(String::as_str) == Some(inp.name())
                    && n.attribute
                        .iter()
                        .any(|a| a.name() == "perm" && a.ints == [0, 3, 1, 2])
            })
        && g.node
            .iter()
            .enumerate()
            .any(|(i, n)| live[i] && n.input.iter().any(|x| x == inp.name()));
    let (model_shape, layout) = if shape.len() == 4 && !nhwc_input {
        (vec![shape[0], shape[2], shape[3], shape[1]], Layout::Nhwc)
    } else {
        (shape.clone(), Layout::Plain)
    };
    low.vals.insert(
        inp.name().to_string(),
        Val::Act(Act {
            shape: shape.clone(),
            phys: model_shape.clone(),
            layout,
            src: Src::Input,
        }),
    );
    let ops = lower_nodes(&mut low, g, &order, &live).map_err(e)?;
    low.outputs_as_layers(&out_names).map_err(e)?;
    low.copy_input_outputs(&out_names);
    let (edges, output) = output_edges(&low, &out_names).map_err(e)?;
    let input = Edge {
        name: inp.name().to_string(),
        shape,
        model_shape,
        layout,
        node: String::new(),
    };
    let quantized = ops.keys().any(|o| {
        matches!(
            o.as_str(),
            "QuantizeLinear" | "DequantizeLinear" | "QLinearConv" | "QLinearMatMul" | "QGemm"
        )
    });
    // Hard swish spelled out becomes one layer (float files only: in a quantized file
    // the spelled-out steps carry their own scales).
    // (With several outputs the fusion could drop one's layer: it runs with one.)
    if !quantized && edges.len() == 1 {
        optimize::fuse_hard_swish(&mut low.graph);
    }
    // Extra outputs stay readable after the pass (f32 in an INT8 model).
    low.graph.outputs = edges
        .iter()
        .filter(|(_, edge)| edge.node != output.node)
        .filter_map(|(_, edge)| low.graph.nodes.iter().position(|n| n.name == edge.node))
        .collect();
    low.graph.outputs.sort_unstable();
    low.graph.outputs.dedup();
    let outputs: Vec<Edge> = edges.into_iter().map(|(_, edge)| edge).collect();
    let qdq = if quantized {
        Some(collect_qdq(&mut low, &input.model_shape).map_err(|x| e(x.to_string()))?)
    } else {
        None
    };
    Ok(OnnxImport {
        graph: low.graph,
        weights: low.weights,
        input,
        output,
        outputs,
        file: file.to_string(),
        opset,
        ops,
        nodes: g.node.len(),
        qdq,
        dynamic: 0,
    })
}

/// The graph outputs' edges with their layers' indices, and the output the last layer
/// computes (what `Model::forward` returns). Every output is a layer's result or a view
/// of one.
fn output_edges(
    low: &Lowering,
    out_names: &[&str],
) -> std::result::Result<(Vec<(usize, Edge)>, Edge), String> {
    let mut edges = Vec::with_capacity(out_names.len());
    for name in out_names {
        let act = match low.vals.get(*name) {
            Some(Val::Act(a)) => a.clone(),
            Some(Val::Const(_)) => return Err(format!("output '{name}' is a constant")),
            _ => return Err(format!("output '{name}' is not computed")),
        };
        let Src::Node(j) = act.src else {
            return Err(format!("output '{name}' is the input itself"));
        };
        edges.push((
            j,
            Edge {
                name: name.to_string(),
                shape: act.shape.clone(),
                model_shape: act.phys.clone(),
                layout: act.layout,
                node: low.graph.nodes[j].name.clone(),
            },
        ));
    }
    let last = low.graph.nodes.len().saturating_sub(1);
    let output = edges
        .iter()
        .find(|(j, _)| *j == last)
        .map(|(_, edge)| edge.clone())
        .ok_or_else(|| {
            format!(
                "no output {out_names:?} is the last layer's result (the graph has {} layers)",
                low.graph.nodes.len()
            )
        })?;
    Ok((edges, output))
}

/// Lowers the live nodes in `order`; returns the count of each operator type, or every
/// node that cannot be imported, listed at once.
fn lower_nodes(
    low: &mut Lowering,
    g: &proto::GraphProto,
    order: &[usize],
    live: &[bool],
) -> std::result::Result<BTreeMap<String, usize>, String> {
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    for &i in order.iter().filter(|&&i| live[i]) {
        let n = &g.node[i];
        *ops.entry(n.op_type().to_string()).or_default() += 1;
        let name = label(n, i);
        let blocked = n
            .input
            .iter()
            .any(|s| matches!(low.vals.get(s), Some(Val::Unknown)));
        let domain_ok = matches!(n.domain(), "" | "ai.onnx")
            || (n.domain() == "com.microsoft"
                && lower::QOPERATORS.contains(&n.op_type())
                && !matches!(n.op_type(), "QLinearConv" | "QLinearMatMul"));
        let result = if !domain_ok {
            Err(format!("domain '{}' is not supported", n.domain()))
        } else if blocked {
            // Its input failed already; list it only if its op is unknown as well.
            if OPERATORS.iter().any(|(o, _)| *o == n.op_type()) {
                Ok(vec![Val::Unknown])
            } else {
                Err(format!("operator {} is not supported", n.op_type()))
            }
        } else {
            low.codes_node(n)
                .and_then(|rewritten| low.node(rewritten.as_ref().unwrap_or(n), &name))
        };
        let vals = match result {
            Ok(v) => v,
            Err(reason) => {
                problems.push(format!("node '{name}' ({}): {reason}", n.op_type()));
                vec![Val::Unknown]
            }
        };
        for (k, o) in n.output.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
            let v = vals.get(k).cloned().unwrap_or(Val::Unknown);
            low.vals.insert(o.clone(), v);
        }
        low.note_codes(n);
    }
    if !problems.is_empty() {
        return Err(format!(
            "{} node(s) cannot be imported:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ));
    }
    Ok(ops)
}

/// Which nodes the output `out` depends on, and how many of their inputs (and graph
/// outputs) read each value.
fn live_nodes(g: &proto::GraphProto, outs: &[&str]) -> (Vec<bool>, HashMap<String, usize>) {
    let producer: HashMap<&str, usize> = g
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut live = vec![false; g.node.len()];
    let mut stack: Vec<&str> = outs.to_vec();
    while let Some(v) = stack.pop() {
        if let Some(&p) = producer.get(v) {
            if !std::mem::replace(&mut live[p], true) {
                stack.extend(g.node[p].input.iter().map(String::as_str));
            }
        }
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for n in g
        .node
        .iter()
        .enumerate()
        .filter(|(i, _)| live[*i])
        .map(|(_, n)| n)
    {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for out in outs {
        *uses.entry(out.to_string()).or_default() += 1;
    }
    (live, uses)
}

/// The file's quantization of the lowered graph: weights' codes, and each quantized
/// activation's parameters for the shapes the layers write.
fn collect_qdq(low: &mut Lowering, input_shape: &[usize]) -> Result<Qdq> {
    let shapes = crate::model::infer_shapes(&low.graph, input_shape)?;
    let params = |key: usize, shape: &[usize]| -> Result<Option<QuantParams>> {
        low.act_q
            .get(&key)
            .map(|a| {
                QuantParams::new(
                    a.qtype,
                    Granularity::PerTensor,
                    shape,
                    vec![a.scale],
                    vec![a.zero_point],
                )
            })
            .transpose()
    };
    let acts = (0..low.graph.nodes.len())
        .map(|i| params(i, &shapes[i]))
        .collect::<Result<Vec<_>>>()?;
    let input = params(usize::MAX, input_shape)?;
    Ok(Qdq {
        weights: std::mem::take(&mut low.qweights),
        acts,
        input,
        requantized: std::mem::take(&mut low.requantized),
    })
}

/// The input's static shape: `given` checked against the declared dimensions, or the
/// declared ones when all are fixed.
fn input_dims(
    v: &proto::ValueInfoProto,
    given: Option<&[usize]>,
) -> std::result::Result<Vec<usize>, String> {
    use proto::tensor_shape_proto::dimension::Value as D;
    use proto::type_proto::Value as T;
    let Some(T::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("input '{}' is not a tensor", v.name()));
    };
    if t.elem_type() != proto::tensor_proto::DataType::Float as i32 {
        return Err(format!(
            "input '{}' is {}; float inputs are supported",
            v.name(),
            tensor::elem_name(t.elem_type())
        ));
    }
    let declared: Option<Vec<Option<i64>>> = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(D::DimValue(x)) if *x > 0 => Some(*x),
                _ => None,
            })
            .collect()
    });
    if let Some(g) = given {
        check_nonzero(v.name(), g)?;
    }
    match (given, declared) {
        (Some(g), Some(d)) => {
            if g.len() != d.len() {
                return Err(format!(
                    "input '{}' has rank {}; the given shape {g:?} has {}",
                    v.name(),
                    d.len(),
                    g.len()
                ));
            }
            if let Some(i) = (0..g.len()).find(|&i| d[i].is_some_and(|x| x as usize != g[i])) {
                return Err(format!(
                    "input '{}' fixes dimension {i} to {}; the given shape {g:?} says {}",
                    v.name(),
                    d[i].unwrap_or_default(),
                    g[i]
                ));
            }
            check_nonzero(v.name(), g)
        }
        (Some(g), None) => check_nonzero(v.name(), g),
        (None, Some(d)) => match d.iter().position(Option::is_none) {
            Some(i) => Err(format!(
                "input '{}' has a symbolic or unknown dimension {i}; give the input shape",
                v.name()
            )),
            None => Ok(d.iter().map(|x| x.unwrap_or(1) as usize).collect()),
        },
        (None, None) => Err(format!(
            "input '{}' declares no shape; give the input shape",
            v.name()
        )),
    }
}

fn check_nonzero(name: &str, g: &[usize]) -> std::result::Result<Vec<usize>, String> {
    if g.is_empty() || g.contains(&0) {
        return Err(format!(
            "input '{name}': shape {g:?} must have positive dimensions"
        ));
    }
    Ok(g.to_vec())
}

fn expect_len(e: &Edge, len: usize, what: &str) -> std::result::Result<(), String> {
    let n: usize = e.shape.iter().product();
    if len != n {
        return Err(format!(
            "{what} '{}' {:?} holds {n} values; got {len}",
            e.name, e.shape
        ));
    }
    Ok(())
}

/// The GPU twin of [`to_model`] (`into_model`) and [`from_model`].
fn record_edge(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    e: &Edge,
    into_model: bool,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    use crate::ops::layout::{transpose_to_nchw, transpose_to_nhwc};
    let (from, to) = if into_model {
        (&e.shape, &e.model_shape)
    } else {
        (&e.model_shape, &e.shape)
    };
    let what = if into_model { "input" } else { "output" };
    if x.shape() != from.as_slice() || out.shape() != to.as_slice() {
        return Err(Error::shape(
            "onnx edge",
            format!(
                "the {what} '{}' goes from {from:?} to {to:?}; the tensors are {:?} and {:?}",
                e.name,
                x.shape(),
                out.shape()
            ),
        ));
    }
    match (e.layout, into_model) {
        (Layout::Nhwc, true) => transpose_to_nhwc(ctx, encoder, x, out),
        (Layout::Nhwc, false) => transpose_to_nchw(ctx, encoder, x, out),
        (Layout::FlatNhwc([c, h, w]), false) if c > 1 && h * w > 1 => {
            let n = e.shape[0];
            transpose_to_nchw(
                ctx,
                encoder,
                &x.reshape(&[n, h, w, c])?,
                &out.reshape(&[n, c, h, w])?,
            )
        }
        // The same order: an elementwise copy (converting f32 and f16 if they differ).
        _ => crate::ops::eltwise::cast(ctx, encoder, &x.reshape(out.shape())?, out),
    }
}

fn to_model(e: &Edge, x: &[f32]) -> std::result::Result<Vec<f32>, String> {
    expect_len(e, x.len(), "input")?;
    Ok(match e.layout {
        Layout::Nhwc => {
            let s = &e.shape;
            crate::ops::conv::nchw_to_nhwc(x, [s[0], s[1], s[2], s[3]])
        }
        _ => x.to_vec(),
    })
}

fn from_model(e: &Edge, y: &[f32]) -> std::result::Result<Vec<f32>, String> {
    expect_len(e, y.len(), "output")?;
    Ok(match e.layout {
        Layout::Nhwc => {
            let s = &e.shape;
            crate::ops::conv::nhwc_to_nchw(y, [s[0], s[2], s[3], s[1]])
        }
        Layout::FlatNhwc([c, h, w]) => crate::ops::conv::nhwc_to_nchw(y, [e.shape[0], h, w, c]),
        Layout::Plain => y.to_vec(),
    })
}
