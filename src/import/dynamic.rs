//! ONNX Runtime's dynamic quantization format (`quantize_dynamic`), rewritten into the
//! QDQ form the importer already lowers. ONNX Runtime writes each quantized convolution
//! or matrix product as
//!
//! ```text
//! x -> DynamicQuantizeLinear -> (xq, xs, xz)
//! ConvInteger(xq, wq, xz, wz) -> Cast(to float) -> Mul(., Mul(xs, ws)) -> y
//! ```
//!
//! (`MatMulInteger` likewise), which computes `y = conv(x, (wq - wz) * ws)` with `x`
//! quantized per tensor (u8, asymmetric) on the fly. That is a `Conv` (or `MatMul`) of
//! `x` with `DequantizeLinear(wq, ws, wz)`: the weight codes are kept for the integer
//! kernels, and [`crate::import::OnnxImport::qmodel`] runs the file as a dynamic INT8
//! model, whose activations are quantized on the GPU exactly as `DynamicQuantizeLinear`
//! does and whose epilogue, `f32(acc) * f32(xs * ws) + bias`, is ONNX Runtime's
//! `Cast`/`Mul`/`Add`. A node that does not fit the pattern is left as it is (and
//! reported as unsupported).

use std::collections::{HashMap, HashSet};

use super::proto::{AttributeProto, GraphProto, NodeProto};

/// ONNX's `TensorProto.FLOAT`.
const FLOAT: i64 = 1;

/// The rewritten graph and the number of `ConvInteger`/`MatMulInteger` nodes rewritten,
/// or `None` when the graph has none in the pattern.
pub(crate) fn rewrite(g: &GraphProto) -> Option<(GraphProto, usize)> {
    let consts: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut uses: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
        for x in n.input.iter().filter(|x| !x.is_empty()) {
            uses.entry(x).or_default().push(i);
        }
    }
    let graph_outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    // The single reader of `value` (not a graph output), if that is all there is.
    let only_reader = |value: &str| -> Option<usize> {
        match uses.get(value).map(Vec::as_slice) {
            Some([r]) if !graph_outputs.contains(value) => Some(*r),
            _ => None,
        }
    };
    let mut nodes = g.node.clone();
    let mut drop = vec![false; nodes.len()];
    let mut added = Vec::new();
    let mut rewritten = 0;
    for (i, n) in g.node.iter().enumerate() {
        let op = n.op_type();
        if !matches!(op, "ConvInteger" | "MatMulInteger") || n.input.len() < 2 {
            continue;
        }
        let (xq, wq) = (n.input[0].as_str(), n.input[1].as_str());
        let xz = n.input.get(2).map_or("", String::as_str);
        let wz = n.input.get(3).map_or("", String::as_str);
        // x's codes and zero point from one DynamicQuantizeLinear.
        let Some(&d) = producer.get(xq) else { continue };
        let dql = &g.node[d];
        if dql.op_type() != "DynamicQuantizeLinear"
            || dql.output.len() != 3
            || dql.output[0] != xq
            || (!xz.is_empty() && dql.output[2] != xz)
            || !consts.contains(wq)
            || (!wz.is_empty() && !consts.contains(wz))
        {
            continue;
        }
        // -> Cast(to float) -> Mul(., s), s = Mul(xs, ws) with ws a constant.
        let Some(c) = n.output.first().and_then(|o| only_reader(o)) else {
            continue;
        };
        let cast = &g.node[c];
        let to = cast
            .attribute
            .iter()
            .find(|a| a.name() == "to")
            .and_then(|a| a.i);
        if cast.op_type() != "Cast" || to != Some(FLOAT) || cast.output.len() != 1 {
            continue;
        }
        let Some(m) = only_reader(&cast.output[0]) else {
            continue;
        };
        let mul = &g.node[m];
        if mul.op_type() != "Mul" || mul.input.len() != 2 || mul.output.len() != 1 {
            continue;
        }
        let s = if mul.input[0] == cast.output[0] {
            &mul.input[1]
        } else {
            &mul.input[0]
        };
        let Some(&sm) = producer.get(s.as_str()) else {
            continue;
        };
        let smul = &g.node[sm];
        let xs = dql.output[1].as_str();
        let ws = match smul.input.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [a, b] if a == xs && consts.contains(b) => b.to_string(),
            [a, b] if b == xs && consts.contains(a) => a.to_string(),
            _ => continue,
        };
        if smul.op_type() != "Mul" {
            continue;
        }
        // The weight, dequantized: per output channel (conv: axis 0 of OIHW) or per
        // column (matmul: axis 1 of [K, N]); DequantizeLinear ignores the axis for a
        // scalar scale.
        let wdq = format!("{}_dequantized_weight", n.output[0]);
        let axis = if op == "ConvInteger" { 0 } else { 1 };
        let mut inputs = vec![wq.to_string(), ws];
        if !wz.is_empty() {
            inputs.push(wz.to_string());
        }
        added.push(NodeProto {
            input: inputs,
            output: vec![wdq.clone()],
            name: Some(format!("{}_weight_dequantize", n.name())),
            op_type: Some("DequantizeLinear".into()),
            attribute: vec![AttributeProto {
                name: Some("axis".into()),
                i: Some(axis),
                r#type: Some(2), // INT
                ..Default::default()
            }],
            ..Default::default()
        });
        let x = dql.input.first().cloned().unwrap_or_default();
        let node = &mut nodes[i];
        node.op_type = Some(
            if op == "ConvInteger" {
                "Conv"
            } else {
                "MatMul"
            }
            .into(),
        );
        node.input = vec![x, wdq];
        node.output = mul.output.clone();
        drop[c] = true;
        drop[m] = true;
        rewritten += 1;
    }
    if rewritten == 0 {
        return None;
    }
    let mut out = g.clone();
    out.node = nodes
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(n, _)| n)
        .chain(added)
        .collect();
    Some((out, rewritten))
}
