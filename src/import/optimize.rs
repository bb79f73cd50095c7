//! Rewrites of the lowered graph: exporters spell hard swish as four nodes, `x *
//! clip(x + 3, 0, 6) / 6` (or `x * HardSigmoid(x)`), which lower to three or two
//! elementwise passes; they become one [`UnaryOp::HardSwish`] map. Layers nothing reads
//! any more (and that are not the output) are then dropped and the indices renumbered.

use crate::desc::eltwise::{BinaryOp, Clip, UnaryOp};
use crate::model::{Graph, Layer, Src};

/// The nodes each node's output is read by.
fn readers(g: &Graph) -> Vec<Vec<usize>> {
    let mut r = vec![Vec::new(); g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        if let Src::Node(j) = n.input {
            r[j].push(i);
        }
        match &n.layer {
            Layer::Add { other, .. } | Layer::Binary { other, .. } | Layer::MatMul { other } => {
                r[*other].push(i)
            }
            Layer::Concat { others, .. } => others.iter().for_each(|&o| r[o].push(i)),
            _ => {}
        }
    }
    r
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// `clip(x + 3, 0, 6)`.
fn is_relu6_plus3(l: &Layer) -> bool {
    matches!(l, Layer::Map { f: UnaryOp::Affine { scale, shift }, clip }
        if close(*scale, 1.0) && close(*shift, 3.0) && *clip == Clip::RELU6)
}

/// `clamp(x / 6 + 1 / 2, 0, 1)`.
fn is_hard_sigmoid_of_swish(l: &Layer) -> bool {
    matches!(l, Layer::Map { f: UnaryOp::HardSigmoid { alpha, beta }, clip }
        if close(*alpha, 1.0 / 6.0) && close(*beta, 0.5) && *clip == Clip::NONE)
}

/// Fuses hard swish spelled out, then drops the layers left unread. Returns how many
/// layers went away.
pub(crate) fn fuse_hard_swish(g: &mut Graph) -> usize {
    let last = g.nodes.len().saturating_sub(1);
    let mut dead = vec![false; g.nodes.len()];
    let r = readers(g);
    for c in 0..g.nodes.len() {
        // The multiply `x * gate(x)`: `gate` read only here.
        let mul_of = |b: usize| -> Option<(usize, Src)> {
            let n = &g.nodes[b];
            let Layer::Binary {
                op: BinaryOp::Mul,
                other,
                clip,
            } = &n.layer
            else {
                return None;
            };
            let gate = &g.nodes[*other];
            (*clip == Clip::NONE && gate.input == n.input && r[*other] == [b] && *other != last)
                .then_some((*other, n.input))
        };
        // x * hard_sigmoid(x): one multiply.
        if let Some((a, x)) = mul_of(c) {
            if is_hard_sigmoid_of_swish(&g.nodes[a].layer) && !dead[a] {
                g.nodes[c].layer = Layer::Map {
                    f: UnaryOp::HardSwish,
                    clip: Clip::NONE,
                };
                g.nodes[c].input = x;
                dead[a] = true;
                continue;
            }
        }
        // x * clip(x + 3, 0, 6) / 6: the divide (a map by 1/6) reading the multiply.
        let Layer::Map {
            f: UnaryOp::Affine { scale, shift },
            clip,
        } = &g.nodes[c].layer
        else {
            continue;
        };
        let Src::Node(b) = g.nodes[c].input else {
            continue;
        };
        if !(close(*scale, 1.0 / 6.0) && *shift == 0.0 && *clip == Clip::NONE)
            || r[b] != [c]
            || b == last
        {
            continue;
        }
        if let Some((a, x)) = mul_of(b) {
            if is_relu6_plus3(&g.nodes[a].layer) && !dead[a] && !dead[b] {
                g.nodes[c].layer = Layer::Map {
                    f: UnaryOp::HardSwish,
                    clip: Clip::NONE,
                };
                g.nodes[c].input = x;
                dead[a] = true;
                dead[b] = true;
            }
        }
    }
    let removed = dead.iter().filter(|&&d| d).count();
    if removed > 0 {
        drop_nodes(g, &dead);
    }
    removed
}

/// Removes the nodes marked `dead` (none of them read by a live node) and renumbers the
/// references of the others.
fn drop_nodes(g: &mut Graph, dead: &[bool]) {
    let mut index = vec![usize::MAX; dead.len()];
    let mut k = 0;
    for (i, &d) in dead.iter().enumerate() {
        if !d {
            index[i] = k;
            k += 1;
        }
    }
    let map = |j: usize| index[j];
    let nodes = std::mem::take(&mut g.nodes);
    for (i, mut n) in nodes.into_iter().enumerate() {
        if dead[i] {
            continue;
        }
        if let Src::Node(j) = n.input {
            n.input = Src::Node(map(j));
        }
        match &mut n.layer {
            Layer::Add { other, .. } | Layer::Binary { other, .. } | Layer::MatMul { other } => {
                *other = map(*other)
            }
            Layer::Concat { others, .. } => others.iter_mut().for_each(|o| *o = map(*o)),
            _ => {}
        }
        g.nodes.push(n);
    }
    g.outputs = g
        .outputs
        .iter()
        .filter(|&&o| !dead[o])
        .map(|&o| map(o))
        .collect();
}
