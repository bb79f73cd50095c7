//! ONNX `LSTM` and `GRU`, unrolled over the sequence into the operators the importer
//! lowers already: per direction one matrix product of the whole input by `W^T` (plus
//! the biases), then per step the product of the previous hidden state by `R^T`, the
//! gate slices, sigmoids and tanh, and the state updates; `Y`, `Y_h` (and LSTM's `Y_c`)
//! are concatenations of the steps. Every step's `R^T` is the same constant, so the
//! model uploads it once (`Model::new` shares equal linear weights).

use super::synth::{int, ints, Gen};
use super::{Attrs, Lowering, Val, R};
use crate::import::proto::NodeProto;
use crate::import::tensor::Const;

/// Unrolled steps are layers: sequences longer than this are refused (each step is
/// about 17 layers per direction).
const MAX_STEPS: usize = 512;

/// The recurrent cell.
#[derive(Clone, Copy, PartialEq)]
enum Cell {
    /// Gates i, o, f, c; outputs Y, Y_h, Y_c.
    Lstm,
    /// Gates z, r, h; `linear_before_reset`; outputs Y, Y_h.
    Gru { linear_before_reset: bool },
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

/// One direction's constants: `W^T` `[I, G*H]`, `R^T` `[H, G*H]` as values, the two
/// biases `[2*G*H]` (zeros when the file has none), the initial states `[B, H]`.
struct Dir {
    reverse: bool,
    wt: Vec<f32>,
    rt: Vec<f32>,
    bias: Vec<f32>,
    h0: Option<Const>,
    c0: Option<Const>,
}

/// A checked `LSTM`/`GRU`: its cell, `layout`, sequence length, input and hidden sizes,
/// and each direction's constants.
struct RnnPlan {
    cell: Cell,
    layout: i64,
    seq: usize,
    inp: usize,
    h: usize,
    dirs: Vec<Dir>,
}

impl Lowering {
    /// `LSTM` (opset 7 to 22) and `GRU`: forward, reverse or bidirectional, the default
    /// activations (sigmoid and tanh), constant weights, optional biases and initial
    /// states, `layout` 0 or 1; GRU with either `linear_before_reset`. Refused, with the
    /// reason: LSTM peepholes and `input_forget`, `clip`, other activations, and
    /// `sequence_lens` shorter than the sequence.
    pub(super) fn rnn(&mut self, n: &NodeProto, attrs: &Attrs, label: &str) -> R<Vec<Val>> {
        let plan = self.rnn_plan(n, attrs)?;
        self.rnn_record(n, &plan, label)
    }

    /// The checks of [`Self::rnn`] and its per-direction constants.
    fn rnn_plan(&self, n: &NodeProto, attrs: &Attrs) -> R<RnnPlan> {
        let cell = match n.op_type() {
            "LSTM" => Cell::Lstm,
            _ => Cell::Gru {
                linear_before_reset: attrs.int("linear_before_reset", 0) != 0,
            },
        };
        let gn = cell.gates();
        let x = self.act(n, 0)?;
        let konst = |s: &Self, i: usize, what: &str| -> R<Option<Const>> {
            Ok(s.konst(n, i, what)?.cloned())
        };
        let w = konst(self, 1, "W")?.ok_or("input 1 (W) is missing")?;
        let r = konst(self, 2, "R")?.ok_or("input 2 (R) is missing")?;
        let b = konst(self, 3, "B")?;
        if cell == Cell::Lstm && n.input.get(7).is_some_and(|s| !s.is_empty()) {
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
        check_activations(attrs, cell, nd)?;
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
        if w.dims.len() != 3 || w.dims[0] != nd || w.dims[1] % gn != 0 || w.dims[2] != inp {
            return Err(format!(
                "W has shape {:?}; [{nd}, {gn} * hidden_size, {inp}] expected",
                w.dims
            ));
        }
        let h = w.dims[1] / gn;
        if let Some(hs) = attrs
            .has("hidden_size")
            .then(|| attrs.int("hidden_size", 0))
        {
            if hs != h as i64 {
                return Err(format!("hidden_size {hs}, but W holds {h}"));
            }
        }
        if h == 0 {
            return Err("hidden_size 0".into());
        }
        if r.dims != [nd, gn * h, h] {
            return Err(format!(
                "R has shape {:?}; [{nd}, {}, {h}] expected",
                r.dims,
                gn * h
            ));
        }
        if let Some(b) = &b {
            if b.dims != [nd, 2 * gn * h] {
                return Err(format!(
                    "B has shape {:?}; [{nd}, {}] expected",
                    b.dims,
                    2 * gn * h
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
        let h0 = state(self, 5, "initial_h")?;
        let c0 = match cell {
            Cell::Lstm => state(self, 6, "initial_c")?,
            Cell::Gru { .. } => None,
        };
        let pick = |c: &Option<Const>, d: usize| {
            c.as_ref()
                .map(|c| direction_state(c, d, (nd, batch, h), layout))
        };
        let (wv, rv) = (w.to_f32(), r.to_f32());
        let bv = b.as_ref().map(Const::to_f32);
        let gh = gn * h;
        let dir_consts: Vec<Dir> = dirs
            .iter()
            .enumerate()
            .map(|(d, &reverse)| Dir {
                reverse,
                wt: transposed(&wv[d * gh * inp..(d + 1) * gh * inp], gh, inp),
                rt: transposed(&rv[d * gh * h..(d + 1) * gh * h], gh, h),
                bias: bv.as_ref().map_or_else(
                    || vec![0.0; 2 * gh],
                    |b| b[d * 2 * gh..(d + 1) * 2 * gh].to_vec(),
                ),
                h0: pick(&h0, d),
                c0: pick(&c0, d),
            })
            .collect();
        Ok(RnnPlan {
            cell,
            layout,
            seq,
            inp,
            h,
            dirs: dir_consts,
        })
    }

    /// Records the unrolled steps of a planned `LSTM`/`GRU` and lowers what is read.
    fn rnn_record(&mut self, n: &NodeProto, plan: &RnnPlan, label: &str) -> R<Vec<Val>> {
        let RnnPlan {
            cell,
            layout,
            seq,
            inp,
            h,
            ref dirs,
        } = *plan;
        let dir_consts = dirs;
        let mut g = Gen::new(label);
        let xin = n.input[0].clone();
        let x_sbi = if layout == 0 {
            xin
        } else {
            g.node("Transpose", &[&xin], vec![ints("perm", &[1, 0, 2])])
        };
        let mut ys = Vec::new();
        let (mut hs_last, mut cs_last) = (Vec::new(), Vec::new());
        for dc in dir_consts {
            let mut steps = vec![String::new(); seq];
            let (hl, cl) = match cell {
                Cell::Lstm => self.lstm_dir(&mut g, dc, &x_sbi, (seq, inp, h), &mut steps),
                Cell::Gru {
                    linear_before_reset,
                } => self.gru_dir(
                    &mut g,
                    dc,
                    &x_sbi,
                    (seq, inp, h),
                    linear_before_reset,
                    &mut steps,
                ),
            };
            // Y for this direction: [S, 1, B, H].
            let pieces: Vec<String> = steps
                .iter()
                .map(|st| g.unsqueeze(self, st, &[0, 1]))
                .collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            ys.push(g.node("Concat", &refs, vec![int("axis", 0)]));
            hs_last.push(g.unsqueeze(self, &hl, &[0]));
            if let Some(cl) = cl {
                cs_last.push(g.unsqueeze(self, &cl, &[0]));
            }
        }
        let join = |g: &mut Gen, v: &[String], axis: i64| -> String {
            if v.len() == 1 {
                v[0].clone()
            } else {
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                g.node("Concat", &refs, vec![int("axis", axis)])
            }
        };
        let mut outs = vec![join(&mut g, &ys, 1), join(&mut g, &hs_last, 0)];
        if !cs_last.is_empty() {
            outs.push(join(&mut g, &cs_last, 0));
        }
        if layout == 1 {
            outs[0] = g.node("Transpose", &[&outs[0]], vec![ints("perm", &[2, 0, 1, 3])]);
            for o in outs.iter_mut().skip(1) {
                *o = g.node("Transpose", &[o.as_str()], vec![ints("perm", &[1, 0, 2])]);
            }
        }
        // Only what the graph reads is lowered.
        let read = |o: &String| !o.is_empty() && self.uses.get(o).is_some_and(|&u| u > 0);
        let wanted: Vec<String> = (0..outs.len())
            .filter(|&k| n.output.get(k).is_some_and(read))
            .map(|k| outs[k].clone())
            .collect();
        let vals = g.lower(self, &wanted)?;
        Ok((0..n.output.len())
            .map(|k| {
                outs.get(k)
                    .and_then(|s| vals.iter().find(|(v, _)| v == s))
                    .map_or(Val::Unknown, |(_, v)| v.clone())
            })
            .collect())
    }

    /// One LSTM direction: the hidden state of each step into `steps` (time order); the
    /// last hidden and cell states.
    fn lstm_dir(
        &mut self,
        g: &mut Gen,
        dc: &Dir,
        x: &str,
        (seq, inp, h): (usize, usize, usize),
        steps: &mut [String],
    ) -> (String, Option<String>) {
        let wt = g.konst(self, Const::f32(vec![inp, 4 * h], dc.wt.clone()));
        let rt = g.konst(self, Const::f32(vec![h, 4 * h], dc.rt.clone()));
        let sum: Vec<f32> = (0..4 * h)
            .map(|j| dc.bias[j] + dc.bias[4 * h + j])
            .collect();
        let xw = g.product_plus(self, x, &wt, sum);
        let mut hp = dc.h0.clone().map(|c| g.konst(self, c));
        let mut cp = dc.c0.clone().map(|c| g.konst(self, c));
        for s in 0..seq {
            let t = if dc.reverse { seq - 1 - s } else { s };
            let xt = g.step(self, &xw, t);
            let gates = match &hp {
                Some(hprev) => {
                    let hr = g.node("MatMul", &[hprev, &rt], vec![]);
                    g.node("Add", &[&xt, &hr], vec![])
                }
                None => xt,
            };
            let i_ = g.slice(self, &gates, 0, h, 1);
            let o_ = g.slice(self, &gates, h, 2 * h, 1);
            let f_ = g.slice(self, &gates, 2 * h, 3 * h, 1);
            let c_ = g.slice(self, &gates, 3 * h, 4 * h, 1);
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
        (
            hp.expect("one step at least"),
            Some(cp.expect("one step at least")),
        )
    }

    /// One GRU direction (gates z, r, h): as [`Self::lstm_dir`]; no cell state.
    fn gru_dir(
        &mut self,
        g: &mut Gen,
        dc: &Dir,
        x: &str,
        (seq, inp, h): (usize, usize, usize),
        linear_before_reset: bool,
        steps: &mut [String],
    ) -> (String, Option<String>) {
        let wt = g.konst(self, Const::f32(vec![inp, 3 * h], dc.wt.clone()));
        // R^T's z and r columns, and its h columns.
        let rt_zr: Vec<f32> = (0..h)
            .flat_map(|k| dc.rt[k * 3 * h..k * 3 * h + 2 * h].to_vec())
            .collect();
        let rt_h: Vec<f32> = (0..h)
            .flat_map(|k| dc.rt[k * 3 * h + 2 * h..(k + 1) * 3 * h].to_vec())
            .collect();
        let rt_zr = g.konst(self, Const::f32(vec![h, 2 * h], rt_zr));
        let rt_h = g.konst(self, Const::f32(vec![h, h], rt_h));
        let (wb, rb) = (&dc.bias[..3 * h], &dc.bias[3 * h..]);
        // Both biases of z and r, W's of h, and R's of h too unless it goes inside the
        // reset product.
        let sum: Vec<f32> = (0..3 * h)
            .map(|j| {
                if j < 2 * h || !linear_before_reset {
                    wb[j] + rb[j]
                } else {
                    wb[j]
                }
            })
            .collect();
        let rbh: Vec<f32> = rb[2 * h..].to_vec();
        let rbh_zero = rbh.iter().all(|&v| v == 0.0);
        let rbh = g.konst(self, Const::f32(vec![h], rbh));
        let xw = g.product_plus(self, x, &wt, sum);
        let mut hp = dc.h0.clone().map(|c| g.konst(self, c));
        for s in 0..seq {
            let t = if dc.reverse { seq - 1 - s } else { s };
            let xt = g.step(self, &xw, t);
            let xzr = g.slice(self, &xt, 0, 2 * h, 1);
            let xh = g.slice(self, &xt, 2 * h, 3 * h, 1);
            let zr = match &hp {
                Some(hprev) => {
                    let hr = g.node("MatMul", &[hprev, &rt_zr], vec![]);
                    g.node("Add", &[&xzr, &hr], vec![])
                }
                None => xzr,
            };
            let zr = g.node("Sigmoid", &[&zr], vec![]);
            let z = g.slice(self, &zr, 0, h, 1);
            let r = g.slice(self, &zr, h, 2 * h, 1);
            // The candidate's recurrent term.
            let rec = match (&hp, linear_before_reset) {
                (Some(hprev), true) => {
                    let hr = g.node("MatMul", &[hprev, &rt_h], vec![]);
                    let hr = if rbh_zero {
                        hr
                    } else {
                        g.node("Add", &[&hr, &rbh], vec![])
                    };
                    Some(g.node("Mul", &[&r, &hr], vec![]))
                }
                (Some(hprev), false) => {
                    let rh = g.node("Mul", &[&r, hprev], vec![]);
                    Some(g.node("MatMul", &[&rh, &rt_h], vec![]))
                }
                (None, true) if !rbh_zero => Some(g.node("Mul", &[&r, &rbh], vec![])),
                (None, _) => None,
            };
            let pre = match rec {
                Some(rec) => g.node("Add", &[&xh, &rec], vec![]),
                None => xh,
            };
            let cand = g.node("Tanh", &[&pre], vec![]);
            // h = (1 - z) * cand + z * h_prev = cand + z * (h_prev - cand).
            let ht = match &hp {
                Some(hprev) => {
                    let d = g.node("Sub", &[hprev, &cand], vec![]);
                    let zd = g.node("Mul", &[&z, &d], vec![]);
                    g.node("Add", &[&cand, &zd], vec![])
                }
                None => {
                    let zc = g.node("Mul", &[&z, &cand], vec![]);
                    g.node("Sub", &[&cand, &zc], vec![])
                }
            };
            steps[t] = ht.clone();
            hp = Some(ht);
        }
        (hp.expect("one step at least"), None)
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

/// Only the default activations (sigmoid, tanh[, tanh]) for every direction.
fn check_activations(attrs: &Attrs, cell: Cell, nd: usize) -> R<()> {
    if let Some(acts) = attrs.0.iter().find(|a| a.name() == "activations") {
        let names: Vec<String> = acts
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_lowercase())
            .collect();
        let default: &[&str] = match cell {
            Cell::Lstm => &["sigmoid", "tanh", "tanh"],
            Cell::Gru { .. } => &["sigmoid", "tanh"],
        };
        let k = default.len();
        if names.len() != k * nd || names.iter().enumerate().any(|(i, a)| a != default[i % k]) {
            return Err(format!(
                "activations {names:?}: only the default ({default:?}) are supported"
            ));
        }
    }
    Ok(())
}

/// Direction `d`'s state `[B, H]` out of `[dirs, B, H]` (`[B, dirs, H]` in layout 1).
fn direction_state(
    c: &Const,
    d: usize,
    (nd, batch, h): (usize, usize, usize),
    layout: i64,
) -> Const {
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
}
