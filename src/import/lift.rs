//! 1-D convolutions and pools, lifted to 2-D: the `[N, C, L]` activation viewed as
//! `[N, C, 1, L]`, the 2-D operator with a kernel of height 1 (its attributes given a
//! leading 1 or 0, the weight a unit axis), then the unit axis squeezed out.

use super::synth::Gen;
use super::{Lowering, Val, R};
use crate::import::proto::{AttributeProto, NodeProto};
use crate::import::tensor::Const;

impl Lowering {
    /// `Conv`, `ConvTranspose`, `MaxPool`, `AveragePool`, `GlobalAveragePool` and
    /// `GlobalMaxPool` of a rank-3 activation, through their 2-D forms; `None` for any
    /// other node.
    pub(super) fn lift_1d(&mut self, n: &NodeProto, label: &str) -> R<Option<Vec<Val>>> {
        let op = n.op_type();
        if !matches!(
            op,
            "Conv"
                | "ConvTranspose"
                | "MaxPool"
                | "AveragePool"
                | "GlobalAveragePool"
                | "GlobalMaxPool"
        ) {
            return Ok(None);
        }
        match self.input(n, 0) {
            Some(Val::Act(x)) if x.shape.len() == 3 => {}
            _ => return Ok(None),
        }
        if n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err("a second output (Indices) is not supported".into());
        }
        let mut g = Gen::new(label);
        let mut inputs = vec![g.unsqueeze(self, &n.input[0], &[2])];
        if matches!(op, "Conv" | "ConvTranspose") {
            let w = self
                .konst(n, 1, "W")?
                .ok_or("input 1 (W) is missing")?
                .clone();
            let &[a, b, k] = w.dims.as_slice() else {
                return Err(format!(
                    "W has shape {:?} (3-D for a 1-D convolution)",
                    w.dims
                ));
            };
            inputs.push(g.konst(
                self,
                Const {
                    dims: vec![a, b, 1, k],
                    ..w
                },
            ));
            if let Some(bias) = n.input.get(2).filter(|s| !s.is_empty()) {
                inputs.push(bias.clone());
            }
        }
        let attrs = n
            .attribute
            .iter()
            .map(lifted)
            .collect::<R<Vec<AttributeProto>>>()?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let y4 = g.node(op, &refs, attrs);
        let y = g.squeeze(self, &y4, &[2]);
        let vals = g.lower(self, std::slice::from_ref(&y))?;
        Ok(Some(vals.into_iter().map(|(_, v)| v).collect()))
    }
}

/// A 1-D operator's attribute for its 2-D form: the height axis leads with a kernel,
/// stride and dilation of 1, no padding and no output padding.
fn lifted(a: &AttributeProto) -> R<AttributeProto> {
    let mut a = a.clone();
    let one = |a: &AttributeProto, lead: i64| -> R<Vec<i64>> {
        match a.ints.as_slice() {
            [v] => Ok(vec![lead, *v]),
            v => Err(format!(
                "{} has {} values; a 1-D operator takes 1",
                a.name(),
                v.len()
            )),
        }
    };
    match a.name() {
        "kernel_shape" | "strides" | "dilations" | "output_shape" => a.ints = one(&a, 1)?,
        "output_padding" => a.ints = one(&a, 0)?,
        "pads" => match a.ints.as_slice() {
            [b, e] => a.ints = vec![0, *b, 0, *e],
            v => {
                return Err(format!(
                    "pads has {} values; a 1-D operator takes 2",
                    v.len()
                ))
            }
        },
        _ => {}
    }
    Ok(a)
}
