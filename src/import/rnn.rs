//! ONNX `LSTM`, unrolled over the sequence into the operators the importer lowers
//! already: per direction one matrix product of the whole input by `W^T` (plus both
//! biases), then per step the product of the previous hidden state by `R^T`, the gate
//! slices, sigmoids and tanh, and the cell and hidden updates; `Y`, `Y_h` and `Y_c` are
//! concatenations of the steps. Every step's `R^T` is the same constant, so the model
//! uploads it once (`Model::new` shares equal linear weights).

use super::{Attrs, Lowering, Val, R};
use crate::import::proto::{AttributeProto, NodeProto};
use crate::import::tensor::Const;

/// Unrolled steps are layers: sequences longer than this are refused (each step is
/// about 14 layers per direction).
const MAX_STEPS: usize = 512;

impl Lowering {
    /// `LSTM` (opset 7 to 22): forward, reverse or bidirectional, the default
    /// activations (sigmoid, tanh, tanh), constant weights, optional biases and initial
    /// states, `layout` 0 or 1. Refused, with the reason: peepholes, `clip`,
    /// `input_forget`, other activations, and `sequence_lens` shorter than the sequence.
    pub(super) fn lstm(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let x = self.act(n, 0)?;
        let konst = |s: &Self, i: usize, what: &str| -> R<Option<Const>> {
            Ok(s.konst(n, i, what)?.cloned())
        };
        let w = konst(self, 1, "W")?.ok_or("input 1 (W) is missing")?;
        let r = konst(self, 2, "R")?.ok_or("input 2 (R) is missing")?;
        let b = konst(self, 3, "B")?;
        if n.input.get(7).is_some_and(|s| !s.is_empty()) {
            return Err("peephole weights (input P) are not supported".into());
        }
        if attrs.has("clip") {
            return Err("clip is not supported".into());
        }
        if attrs.int("input_forget", 0) != 0 {
            return Err("input_forget = 1 is not supported".into());
        }
        let dirs: Vec<bool> = match attrs
            .string("direction")
            .unwrap_or_else(|| "forward".into())
            .as_str()
        {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            other => return Err(format!("direction '{other}' is not one of ONNX's")),
        };
        let nd = dirs.len();
        if let Some(acts) = attrs.0.iter().find(|a| a.name() == "activations") {
            let names: Vec<String> = acts
                .strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_lowercase())
                .collect();
            let default = ["sigmoid", "tanh", "tanh"];
            if names.len() != 3 * nd || names.iter().enumerate().any(|(i, a)| a != default[i % 3]) {
                return Err(format!(
                    "activations {names:?}: only the default (Sigmoid, Tanh, Tanh) are supported"
                ));
            }
        }
        let layout = attrs.int("layout", 0);
        if !(0..=1).contains(&layout) {
            return Err(format!("layout {layout} (0 or 1)"));
        }
        if x.shape.len() != 3 {
            return Err(format!("X has shape {:?} (3-D expected)", x.shape));
        }
        let (seq, batch, inp) = if layout == 0 {
            (x.shape[0], x.shape[1], x.shape[2])
        } else {
            (x.shape[1], x.shape[0], x.shape[2])
        };
        if w.dims.len() != 3 || w.dims[0] != nd || w.dims[1] % 4 != 0 || w.dims[2] != inp {
            return Err(format!(
                "W has shape {:?}; [{nd}, 4 * hidden_size, {inp}] expected",
                w.dims
            ));
        }
        let h = w.dims[1] / 4;
        if let Some(hs) = attrs
            .has("hidden_size")
            .then(|| attrs.int("hidden_size", 0))
        {
            if hs != h as i64 {
                return Err(format!("hidden_size {hs}, but W holds {h}"));
            }
        }
        if r.dims != [nd, 4 * h, h] {
            return Err(format!(
                "R has shape {:?}; [{nd}, {}, {h}] expected",
                r.dims,
                4 * h
            ));
        }
        if let Some(b) = &b {
            if b.dims != [nd, 8 * h] {
                return Err(format!(
                    "B has shape {:?}; [{nd}, {}] expected",
                    b.dims,
                    8 * h
                ));
            }
        }
        if seq == 0 || seq > MAX_STEPS {
            return Err(format!(
                "a sequence of {seq} steps (1 to {MAX_STEPS} are unrolled)"
            ));
        }
        if let Some(lens) = konst(self, 4, "sequence_lens")? {
            let v = lens.as_ik()?;
            if v.iter().any(|&l| l != seq as i64) {
                return Err(format!(
                    "sequence_lens {v:?}: only full sequences ({seq} steps) are supported"
                ));
            }
        } else if matches!(self.input(n, 4), Some(Val::Act(_))) {
            return Err("sequence_lens must be a constant".into());
        }
        let state = |s: &Self, i: usize, what: &str| -> R<Option<Const>> {
            let Some(c) = konst(s, i, what)? else {
                return Ok(None);
            };
            let want = if layout == 0 {
                [nd, batch, h]
            } else {
                [batch, nd, h]
            };
            if c.dims != want {
                return Err(format!("{what} has shape {:?}; {want:?} expected", c.dims));
            }
            // Zeros are the default: no layer for them.
            Ok((!c.to_f32().iter().all(|&v| v == 0.0)).then_some(c))
        };
        let (h0, c0) = (state(self, 5, "initial_h")?, state(self, 6, "initial_c")?);

        let mut g = Gen::new(label);
        let xin = n.input[0].clone();
        let x_sbi = if layout == 0 {
            xin
        } else {
            g.node("Transpose", &[&xin], vec![ints("perm", &[1, 0, 2])])
        };
        let (wv, rv) = (w.to_f32(), r.to_f32());
        let bv = b.as_ref().map(Const::to_f32);
        let mut ys = Vec::new();
        let (mut hs_last, mut cs_last) = (Vec::new(), Vec::new());
        for (d, &reverse) in dirs.iter().enumerate() {
            // W[d]^T [I, 4H] and R[d]^T [H, 4H]; the two biases summed.
            let wt = transposed(&wv[d * 4 * h * inp..(d + 1) * 4 * h * inp], 4 * h, inp);
            let rt = transposed(&rv[d * 4 * h * h..(d + 1) * 4 * h * h], 4 * h, h);
            let wt = g.konst(self, Const::f32(vec![inp, 4 * h], wt));
            let rt = g.konst(self, Const::f32(vec![h, 4 * h], rt));
            let mut xw = g.node("MatMul", &[&x_sbi, &wt], vec![]);
            if let Some(bv) = &bv {
                let bb = &bv[d * 8 * h..(d + 1) * 8 * h];
                let sum: Vec<f32> = (0..4 * h).map(|j| bb[j] + bb[4 * h + j]).collect();
                let bias = g.konst(self, Const::f32(vec![4 * h], sum));
                xw = g.node("Add", &[&xw, &bias], vec![]);
            }
            let pick = |c: &Option<Const>| -> Option<Const> {
                c.as_ref().map(|c| {
                    let v = c.to_f32();
                    let per = batch * h;
                    let vals: Vec<f32> = if layout == 0 {
                        v[d * per..(d + 1) * per].to_vec()
                    } else {
                        (0..batch)
                            .flat_map(|bi| v[(bi * nd + d) * h..(bi * nd + d + 1) * h].to_vec())
                            .collect()
                    };
                    Const::f32(vec![batch, h], vals)
                })
            };
            let mut hp = pick(&h0).map(|c| g.konst(self, c));
            let mut cp = pick(&c0).map(|c| g.konst(self, c));
            let mut steps = vec![String::new(); seq];
            for s in 0..seq {
                let t = if reverse { seq - 1 - s } else { s };
                let xt = g.slice(self, &xw, t, t + 1, 0);
                let xt = g.squeeze0(self, &xt);
                let gates = match &hp {
                    Some(hprev) => {
                        let hr = g.node("MatMul", &[hprev, &rt], vec![]);
                        g.node("Add", &[&xt, &hr], vec![])
                    }
                    None => xt,
                };
                let part =
                    |g: &mut Gen, s: &mut Self, k: usize| g.slice(s, &gates, k * h, (k + 1) * h, 1);
                let i_ = part(&mut g, self, 0);
                let o_ = part(&mut g, self, 1);
                let f_ = part(&mut g, self, 2);
                let c_ = part(&mut g, self, 3);
                let i_ = g.node("Sigmoid", &[&i_], vec![]);
                let o_ = g.node("Sigmoid", &[&o_], vec![]);
                let f_ = g.node("Sigmoid", &[&f_], vec![]);
                let c_ = g.node("Tanh", &[&c_], vec![]);
                let ic = g.node("Mul", &[&i_, &c_], vec![]);
                let c = match &cp {
                    Some(cprev) => {
                        let fc = g.node("Mul", &[&f_, cprev], vec![]);
                        g.node("Add", &[&fc, &ic], vec![])
                    }
                    None => ic,
                };
                let tc = g.node("Tanh", &[&c], vec![]);
                let ht = g.node("Mul", &[&o_, &tc], vec![]);
                steps[t] = ht.clone();
                hp = Some(ht);
                cp = Some(c);
            }
            // Y for this direction: [S, 1, B, H].
            let pieces: Vec<String> = steps
                .iter()
                .map(|st| g.unsqueeze(self, st, &[0, 1]))
                .collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            ys.push(g.node("Concat", &refs, vec![int("axis", 0)]));
            hs_last.push(g.unsqueeze(self, hp.as_ref().expect("one step at least"), &[0]));
            cs_last.push(g.unsqueeze(self, cp.as_ref().expect("one step at least"), &[0]));
        }
        let join = |g: &mut Gen, v: &[String], axis: i64| -> String {
            if v.len() == 1 {
                v[0].clone()
            } else {
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                g.node("Concat", &refs, vec![int("axis", axis)])
            }
        };
        let mut y = join(&mut g, &ys, 1);
        let mut yh = join(&mut g, &hs_last, 0);
        let mut yc = join(&mut g, &cs_last, 0);
        if layout == 1 {
            y = g.node("Transpose", &[&y], vec![ints("perm", &[2, 0, 1, 3])]);
            yh = g.node("Transpose", &[&yh], vec![ints("perm", &[1, 0, 2])]);
            yc = g.node("Transpose", &[&yc], vec![ints("perm", &[1, 0, 2])]);
        }
        // Only what the graph reads is lowered.
        let read = |o: &String| !o.is_empty() && self.uses.get(o).is_some_and(|&u| u > 0);
        let wanted: Vec<String> = (0..3)
            .filter(|&k| n.output.get(k).is_some_and(read))
            .map(|k| [&y, &yh, &yc][k].clone())
            .collect();
        let vals = g.lower(self, &wanted)?;
        Ok((0..n.output.len())
            .map(|k| {
                let name = [&y, &yh, &yc].get(k).map(|s| s.as_str());
                name.and_then(|s| vals.iter().find(|(v, _)| v == s))
                    .map_or(Val::Unknown, |(_, v)| v.clone())
            })
            .collect())
    }
}

/// Synthesized nodes of one unrolled operator, lowered in order.
struct Gen {
    base: String,
    nodes: Vec<NodeProto>,
    count: usize,
}

impl Gen {
    fn new(label: &str) -> Gen {
        Gen {
            base: label.to_string(),
            nodes: Vec::new(),
            count: 0,
        }
    }

    fn fresh(&mut self) -> String {
        self.count += 1;
        format!("{}#{}", self.base, self.count)
    }

    /// A node of `op` on `inputs`; its output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
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
    fn konst(&mut self, low: &mut Lowering, c: Const) -> String {
        let name = self.fresh();
        low.vals.insert(name.clone(), Val::Const(c));
        name
    }

    fn ints1(&mut self, low: &mut Lowering, v: &[i64]) -> String {
        self.konst(low, Const::i64(vec![v.len()], v.to_vec()))
    }

    /// `x[start..end]` along `axis`.
    fn slice(
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

    fn squeeze0(&mut self, low: &mut Lowering, x: &str) -> String {
        let a = self.ints1(low, &[0]);
        self.node("Squeeze", &[x, &a], vec![])
    }

    fn unsqueeze(&mut self, low: &mut Lowering, x: &str, axes: &[i64]) -> String {
        let a = self.ints1(low, axes);
        self.node("Unsqueeze", &[x, &a], vec![])
    }

    /// Lowers the nodes that `wanted` depends on, in order (the uses counted among
    /// them, so fusions see who reads what); the wanted values.
    fn lower(self, low: &mut Lowering, wanted: &[String]) -> R<Vec<(String, Val)>> {
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

/// `m` (`rows x cols`, row-major) transposed.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(crate::import::proto::attribute_proto::AttributeType::Int as i32),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(crate::import::proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    }
}
