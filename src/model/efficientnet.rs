//! EfficientNet-Lite0 (Tan & Le; the "Lite" variant built for integer inference: ReLU6,
//! no squeeze-excitation, fixed stem and head) as a [`Graph`] over the tensors written
//! by `tools/efficientnet_lite0/convert.py` (BatchNorm folded into every convolution).
//!
//! Input: NHWC `[B, 224, 224, 3]`, RGB scaled as `(x - 127) / 128`. Output: softmax
//! probabilities `[B, 1000]` over the ImageNet-1k classes. Padding is TensorFlow's
//! `SAME` (the weights were trained in TF), so strided layers pad one more pixel at the
//! bottom/right.

use super::{Graph, Layer, Src, WeightFile};
use crate::error::{Error, Result};
use crate::ops::conv::{ConvDesc, ConvDims, Padding};
use crate::ops::eltwise::Clip;
use crate::ops::gemm::Activation;
use crate::ops::pool::PoolDesc;

/// `(expansion, kernel, stride, output channels)` of the 16 inverted-residual blocks.
pub const EFFICIENTNET_LITE0_BLOCKS: [(usize, usize, usize, usize); 16] = [
    (1, 3, 1, 16),
    (6, 3, 2, 24),
    (6, 3, 1, 24),
    (6, 5, 2, 40),
    (6, 5, 1, 40),
    (6, 3, 2, 80),
    (6, 3, 1, 80),
    (6, 3, 1, 80),
    (6, 5, 1, 112),
    (6, 5, 1, 112),
    (6, 5, 1, 112),
    (6, 5, 2, 192),
    (6, 5, 1, 192),
    (6, 5, 1, 192),
    (6, 5, 1, 192),
    (6, 3, 1, 320),
];

fn conv(
    g: &mut Graph,
    name: &str,
    (c, oc, k, stride, groups): (usize, usize, usize, usize, usize),
    activation: Activation,
) -> Result<usize> {
    let dims = ConvDims::new(oc, c, [k, k], groups)?;
    let desc = ConvDesc::default()
        .stride(stride)
        .padding(Padding::Same)
        .activation(activation);
    Ok(g.push(
        name,
        Layer::conv(
            &format!("{name}.weight"),
            Some(&format!("{name}.bias")),
            dims,
            desc,
        ),
    ))
}

/// The EfficientNet-Lite0 graph. `weights` is checked to hold the layout of
/// [`EFFICIENTNET_LITE0_BLOCKS`] (the converter's metadata, when present, must agree).
pub fn efficientnet_lite0(weights: &WeightFile) -> Result<Graph> {
    if let Some(blocks) = weights.metadata("blocks") {
        let parsed: Vec<serde_json::Value> = serde_json::from_str(blocks)
            .map_err(|e| Error::invalid("efficientnet_lite0", format!("metadata 'blocks': {e}")))?;
        let ours: Vec<(u64, u64, u64, u64)> = EFFICIENTNET_LITE0_BLOCKS
            .iter()
            .map(|&(e, k, s, o)| (e as u64, k as u64, s as u64, o as u64))
            .collect();
        let theirs: Vec<(u64, u64, u64, u64)> = parsed
            .iter()
            .map(|b| {
                let f = |k: &str| b.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
                (f("expand"), f("kernel"), f("stride"), f("out"))
            })
            .collect();
        if ours != theirs {
            return Err(Error::invalid(
                "efficientnet_lite0",
                format!("the weight file's block layout {theirs:?} is not EfficientNet-Lite0's"),
            ));
        }
    }
    let mut g = Graph::default();
    conv(&mut g, "stem", (3, 32, 3, 2, 1), Activation::Relu6)?;
    let mut c = 32;
    for (i, &(expand, k, stride, out)) in EFFICIENTNET_LITE0_BLOCKS.iter().enumerate() {
        let block_in = g.nodes.len() - 1;
        let e = c * expand;
        if expand != 1 {
            conv(
                &mut g,
                &format!("blocks.{i}.expand"),
                (c, e, 1, 1, 1),
                Activation::Relu6,
            )?;
        }
        conv(
            &mut g,
            &format!("blocks.{i}.dw"),
            (e, e, k, stride, e),
            Activation::Relu6,
        )?;
        let project = conv(
            &mut g,
            &format!("blocks.{i}.project"),
            (e, out, 1, 1, 1),
            Activation::None,
        )?;
        if stride == 1 && c == out {
            g.push_from(
                &format!("blocks.{i}.add"),
                Layer::Add {
                    other: block_in,
                    clip: Clip::NONE,
                },
                Src::Node(project),
            );
        }
        c = out;
    }
    conv(&mut g, "head", (320, 1280, 1, 1, 1), Activation::Relu6)?;
    g.push("pool", Layer::Pool(PoolDesc::global_avg()));
    g.push(
        "fc",
        Layer::linear("fc.weight", Some("fc.bias"), 1000, 1280),
    );
    g.push("prob", Layer::Softmax);
    Ok(g)
}
