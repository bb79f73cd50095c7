//! LeNet for MNIST digits, the classic small convolutional network:
//! conv 1->10 k5, max-pool 2, ReLU, conv 10->20 k5, max-pool 2, ReLU, linear 320->50,
//! ReLU, linear 50->10, softmax. ReLU after a max-pool equals ReLU before it, so the
//! graph fuses it into the convolutions.
//!
//! Input: NHWC `[B, 28, 28, 1]`, pixels scaled as `x / 255`. Output: softmax
//! probabilities `[B, 10]`. Weights (`tools/lenet_mnist/train.py` writes them):
//! `conv1.weight [10, 1, 5, 5]`, `conv2.weight [20, 10, 5, 5]` (OIHW), `fc1.weight
//! [50, 320]` with its inputs in NHWC order, `fc2.weight [10, 50]`, and a bias for each.
//!
//! ```
//! use wgpu_quant::model::{lenet, Model, WeightFile};
//! use wgpu_quant::{Context, DType};
//! # fn main() -> wgpu_quant::Result<()> {
//! let ctx = Context::request_blocking(&Default::default())?;
//! let w = WeightFile::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/mnist/lenet.safetensors"))?;
//! let model = Model::new(&ctx, &lenet(), &w, DType::F32, &[8, 28, 28, 1])?;
//! assert_eq!(model.weight_bytes(), 4 * 21_840);
//! # Ok(()) }
//! ```

use super::{Graph, Layer};
use crate::ops::conv::{ConvDesc, ConvDims};
use crate::ops::gemm::Activation;
use crate::ops::pool::{PoolDesc, PoolKind};

/// The LeNet graph (see the module docs).
pub fn lenet() -> Graph {
    let mut g = Graph::default();
    for (name, c, oc) in [("conv1", 1, 10), ("conv2", 10, 20)] {
        let dims = ConvDims::new(oc, c, [5, 5], 1).expect("valid LeNet dimensions");
        g.push(
            name,
            Layer::conv(
                &format!("{name}.weight"),
                Some(&format!("{name}.bias")),
                dims,
                ConvDesc::default().activation(Activation::Relu),
            ),
        );
        g.push(
            &format!("{name}.pool"),
            Layer::Pool(PoolDesc::new(PoolKind::Max, 2, 2)),
        );
    }
    g.push(
        "fc1",
        Layer::linear("fc1.weight", Some("fc1.bias"), 50, 320).activation(Activation::Relu),
    );
    g.push("fc2", Layer::linear("fc2.weight", Some("fc2.bias"), 10, 50));
    g.push("prob", Layer::Softmax);
    g
}
