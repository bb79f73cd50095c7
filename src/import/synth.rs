//! Operators lowered through others: a [`Gen`] collects synthesized ONNX nodes (with
//! constants stored under fresh names) and lowers them in order through
//! `Lowering::node`, as if the file had spelled them out (`rnn.rs`, `lift.rs`,
//! `compose.rs`).

use super::{Lowering, Val, R};
use crate::import::proto::{AttributeProto, NodeProto};
use crate::import::tensor::Const;

/// Synthesized nodes of one operator lowered through others, lowered in order.
pub(super) struct Gen {
    base: String,
    nodes: Vec<NodeProto>,
    count: usize,
}

impl Gen {
    pub(super) fn new(label: &str) -> Gen {
        Gen {
            base: label.to_string(),
            nodes: Vec::new(),
            count: 0,
        }
    }

    pub(super) fn fresh(&mut self) -> String {
        self.count += 1;
        format!("{}#{}", self.base, self.count)
    }

    /// A node of `op` on `inputs`; its output's name.
    pub(super) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh();
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(out.clone()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    /// A constant value, stored now under a fresh name.
    pub(super) fn konst(&mut self, low: &mut Lowering, c: Const) -> String {
        let name = self.fresh();
        low.vals.insert(name.clone(), Val::Const(c));
        name
    }

    pub(super) fn ints1(&mut self, low: &mut Lowering, v: &[i64]) -> String {
        self.konst(low, Const::i64(vec![v.len()], v.to_vec()))
    }

    /// `x[start..end]` along `axis`.
    pub(super) fn slice(
        &mut self,
        low: &mut Lowering,
        x: &str,
        start: usize,
        end: usize,
        axis: i64,
    ) -> String {
        let s = self.ints1(low, &[start as i64]);
        let e = self.ints1(low, &[end as i64]);
        let a = self.ints1(low, &[axis]);
        self.node("Slice", &[x, &s, &e, &a], vec![])
    }

    /// `x` `[S, B, I]` times `wt` `[I, N]`, plus `bias` `[N]` unless it is all zeros.
    pub(super) fn product_plus(
        &mut self,
        low: &mut Lowering,
        x: &str,
        wt: &str,
        bias: Vec<f32>,
    ) -> String {
        let xw = self.node("MatMul", &[x, wt], vec![]);
        if bias.iter().all(|&v| v == 0.0) {
            return xw;
        }
        let n = bias.len();
        let b = self.konst(low, Const::f32(vec![n], bias));
        self.node("Add", &[&xw, &b], vec![])
    }

    /// Step `t` of `x` `[S, B, N]`: `[B, N]`.
    pub(super) fn step(&mut self, low: &mut Lowering, x: &str, t: usize) -> String {
        let xt = self.slice(low, x, t, t + 1, 0);
        self.squeeze0(low, &xt)
    }

    /// `op` (`ReduceMax`, `ReduceSum`, ...) of `x` over `axes`, kept as 1: the axes an
    /// attribute or an input as the lowering's opset (at least 13) wants.
    pub(super) fn reduce(&mut self, low: &mut Lowering, op: &str, x: &str, axes: &[i64]) -> String {
        let opset = low.opset.max(13);
        let as_input = op == "ReduceSum" || opset >= 18;
        if as_input {
            let a = self.ints1(low, axes);
            self.node(op, &[x, &a], vec![int("keepdims", 1)])
        } else {
            self.node(op, &[x], vec![ints("axes", axes), int("keepdims", 1)])
        }
    }

    pub(super) fn squeeze(&mut self, low: &mut Lowering, x: &str, axes: &[i64]) -> String {
        let a = self.ints1(low, axes);
        self.node("Squeeze", &[x, &a], vec![])
    }

    pub(super) fn squeeze0(&mut self, low: &mut Lowering, x: &str) -> String {
        let a = self.ints1(low, &[0]);
        self.node("Squeeze", &[x, &a], vec![])
    }

    pub(super) fn unsqueeze(&mut self, low: &mut Lowering, x: &str, axes: &[i64]) -> String {
        let a = self.ints1(low, axes);
        self.node("Unsqueeze", &[x, &a], vec![])
    }

    /// Lowers the nodes that `wanted` depends on, in order (the uses counted among
    /// them, so fusions see who reads what); the wanted values.
    pub(super) fn lower(self, low: &mut Lowering, wanted: &[String]) -> R<Vec<(String, Val)>> {
        // Live nodes: those the wanted values depend on.
        let mut live = vec![false; self.nodes.len()];
        let mut need: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
        for (i, nd) in self.nodes.iter().enumerate().rev() {
            if need.contains(nd.output[0].as_str()) {
                live[i] = true;
                need.extend(nd.input.iter().map(String::as_str));
            }
        }
        for (nd, _) in self.nodes.iter().zip(&live).filter(|(_, l)| **l) {
            for i in &nd.input {
                *low.uses.entry(i.clone()).or_default() += 1;
            }
        }
        for w in wanted {
            *low.uses.entry(w.clone()).or_default() += 1;
        }
        // The opset of the synthesized nodes (axes as inputs, as from 13).
        let opset = low.opset;
        low.opset = opset.max(13);
        let result = (|| -> R<()> {
            for (nd, _) in self.nodes.iter().zip(&live).filter(|(_, l)| **l) {
                let v = low.node(nd, nd.name())?;
                let v = v.into_iter().next().ok_or("a step gave no value")?;
                low.vals.insert(nd.output[0].clone(), v);
            }
            Ok(())
        })();
        low.opset = opset;
        result?;
        Ok(wanted
            .iter()
            .map(|w| (w.clone(), low.vals.get(w).cloned().unwrap_or(Val::Unknown)))
            .collect())
    }
}

pub(super) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(crate::import::proto::attribute_proto::AttributeType::Int as i32),
        ..Default::default()
    }
}

pub(super) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(crate::import::proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    }
}
