//! Operators composed of others, as their ONNX function bodies spell them: `LogSoftmax`
//! (`x - max - log(sum(exp(x - max)))`, stable where a softmax underflows), `Tile` (per
//! repeated axis a view, a broadcast, a view back) and `SpaceToDepth` (a view, a
//! transpose, a view).

use super::synth::{ints, Gen};
use super::{fold, Attrs, Lowering, Val, R};
use crate::import::proto::NodeProto;

impl Lowering {
    /// `LogSoftmax`, `Tile` and `SpaceToDepth` of an activation or a constant; `None`
    /// for other nodes.
    pub(super) fn compose(
        &mut self,
        n: &NodeProto,
        attrs: &Attrs,
        label: &str,
    ) -> R<Option<Vec<Val>>> {
        let op = n.op_type();
        if !matches!(op, "LogSoftmax" | "Tile" | "SpaceToDepth") {
            return Ok(None);
        }
        let dims = match self.input(n, 0) {
            Some(Val::Act(a)) => a.shape.clone(),
            Some(Val::Const(c)) => c.dims.clone(),
            _ => return Err("input 0 is missing".into()),
        };
        let r = dims.len();
        let x = n.input[0].clone();
        let mut g = Gen::new(label);
        let y = match op {
            "LogSoftmax" => {
                // Before opset 13 the input is seen as 2-D from `axis` (default 1).
                let default = if self.opset < 13 { 1 } else { -1 };
                let a = fold::axis(attrs.int("axis", default), r, false)?;
                let axes: Vec<i64> = if self.opset < 13 {
                    (a as i64..r as i64).collect()
                } else {
                    vec![a as i64]
                };
                let m = g.reduce(self, "ReduceMax", &x, &axes);
                let d = g.node("Sub", &[&x, &m], vec![]);
                let e = g.node("Exp", &[&d], vec![]);
                let s = g.reduce(self, "ReduceSum", &e, &axes);
                let l = g.node("Log", &[&s], vec![]);
                g.node("Sub", &[&d, &l], vec![])
            }
            "Tile" => {
                let reps = self
                    .konst(n, 1, "repeats")?
                    .ok_or("input 1 (repeats) is missing")?
                    .as_ik()?
                    .to_vec();
                if reps.len() != r || reps.iter().any(|&v| v < 1) {
                    return Err(format!(
                        "repeats {reps:?} for an input of rank {r} (one positive count per axis)"
                    ));
                }
                // Axis by axis: the block from axis a on ([P, Q], P the elements
                // before it) repeated k times is [P, k, Q], viewed back.
                let mut cur = x.clone();
                let mut shape: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
                for (a, &k) in reps.iter().enumerate() {
                    if k == 1 {
                        continue;
                    }
                    let p: i64 = shape[..a].iter().product();
                    let q: i64 = shape[a..].iter().product();
                    shape[a] = shape[a].checked_mul(k).ok_or("the tiled shape overflows")?;
                    let v = g.ints1(self, &[p, 1, q]);
                    let w = g.ints1(self, &[p, k, q]);
                    let o = g.ints1(self, &shape);
                    let x3 = g.node("Reshape", &[&cur, &v], vec![]);
                    let e = g.node("Expand", &[&x3, &w], vec![]);
                    cur = g.node("Reshape", &[&e, &o], vec![]);
                }
                if cur == x {
                    // Every count 1: an identity.
                    cur = g.node("Identity", &[&x], vec![]);
                }
                cur
            }
            _ => {
                let b = attrs.int("blocksize", 0);
                let &[nb, c, h, w] = dims.as_slice() else {
                    return Err(format!("the input has shape {dims:?} (4-D NCHW expected)"));
                };
                if b < 1 || h % b as usize != 0 || w % b as usize != 0 {
                    return Err(format!(
                        "blocksize {b} does not divide the height {h} and width {w}"
                    ));
                }
                let b = b as usize;
                let six: Vec<i64> = [nb, c, h / b, b, w / b, b]
                    .iter()
                    .map(|&v| v as i64)
                    .collect();
                let four: Vec<i64> = [nb, c * b * b, h / b, w / b]
                    .iter()
                    .map(|&v| v as i64)
                    .collect();
                let s6 = g.ints1(self, &six);
                let s4 = g.ints1(self, &four);
                let x6 = g.node("Reshape", &[&x, &s6], vec![]);
                let t = g.node("Transpose", &[&x6], vec![ints("perm", &[0, 3, 5, 1, 2, 4])]);
                g.node("Reshape", &[&t, &s4], vec![])
            }
        };
        let vals = g.lower(self, std::slice::from_ref(&y))?;
        Ok(Some(vals.into_iter().map(|(_, v)| v).collect()))
    }
}
