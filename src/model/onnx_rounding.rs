//! ONNX's requantization for the layers of a quantized file's [`super::QModel`].
//!
//! A quantized ONNX file states integer arithmetic: `QLinearConv`/`QLinearMatMul` (and
//! the QDQ pattern ONNX Runtime fuses into them) add an int32 bias to the int32
//! accumulator and round `(acc + bias) * (sa * sw / sy) + zy` half to even
//! ([`crate::desc::qgemm::QGemmDesc::onnx_requant`]). A model built from such a file runs
//! every convolution and linear that reads and writes codes with that rule when the
//! layer allows it:
//!
//! - its bias (if any) is integer codes in units of `f32(sa * sw)` per output channel:
//!   the importer dequantized the file's int32 bias into f32 with those units, so the
//!   f32 value divided by them is an integer again (checked to a few ulps, and only below
//!   2^22 where f32 holds such integers apart);
//! - its activation is none, ReLU or ReLU6. Rounding is monotone and maps 0 to the zero
//!   point, so `quantize(relu(v))` is `max(quantize(v), zy)` and ReLU6 also clamps at the
//!   code of 6: the activation becomes a narrower code range for the output.
//!
//! A layer that does not qualify (a float bias in other units, say) keeps the library's
//! default rule (f32 bias and activation, then quantization of the value); the two
//! agree except at and near rounding ties.

use crate::desc::gemm::Activation;
use crate::quant::QuantParams;

/// How one layer requantizes the ONNX way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnnxLayer {
    /// The bias as int32 codes in units of `f32(sa * sw)`, if the layer has a bias.
    pub bias: Option<Vec<i32>>,
    /// The output's code range: the type's, narrowed by the activation.
    pub range: (i32, i32),
}

/// Largest bias code (in magnitude) recovered from its f32 value: f32 keeps neighbouring
/// integers below 2^22 apart by more than two ulps after scaling.
const MAX_BIAS_CODE: f64 = (1u32 << 22) as f64;

/// The ONNX plan of a layer with input parameters `x` (per tensor), weight parameters
/// `w` (per tensor or per output channel), f32 `bias`, `activation` and output `y`;
/// `None` when the layer must keep the default rule.
pub(crate) fn plan(
    x: &QuantParams,
    w: &QuantParams,
    bias: Option<&[f32]>,
    activation: Activation,
    y: &QuantParams,
) -> Option<OnnxLayer> {
    let (sa, sy, zy) = (
        *x.scales().first()?,
        *y.scales().first()?,
        *y.zero_points().first()?,
    );
    if x.scales().len() != 1 || y.scales().len() != 1 {
        return None;
    }
    let (qmin, qmax) = (y.qmin(), y.qmax());
    let range = match activation {
        Activation::None => (qmin, qmax),
        Activation::Relu => (qmin.max(zy), qmax),
        Activation::Relu6 => {
            // QuantizeLinear of 6: f32 division, half to even, plus the zero point.
            let six = f64::from((6.0f32 / sy).round_ties_even()) + f64::from(zy);
            (qmin.max(zy), six.min(f64::from(qmax)) as i32)
        }
    };
    if range.0 >= range.1 {
        return None;
    }
    let bias = match bias {
        None => None,
        Some(b) => {
            let ws = w.scales();
            let mut codes = Vec::with_capacity(b.len());
            for (o, &v) in b.iter().enumerate() {
                let sw = if ws.len() == 1 { ws[0] } else { *ws.get(o)? };
                // The kernel's scale of the accumulator: the f32 product.
                let unit = f64::from(sa * sw);
                let code = (f64::from(v) / unit).round();
                let tol = 4.0 * f64::from(f32::EPSILON) * f64::from(v).abs();
                if !(code.abs() < MAX_BIAS_CODE && (code * unit - f64::from(v)).abs() <= tol) {
                    return None;
                }
                codes.push(code as i32);
            }
            Some(codes)
        }
    };
    Some(OnnxLayer { bias, range })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Granularity, QType};

    fn per_tensor(qt: QType, s: f32, z: i32) -> QuantParams {
        QuantParams::new(qt, Granularity::PerTensor, &[1, 4], vec![s], vec![z]).unwrap()
    }

    fn weights(scales: Vec<f32>) -> QuantParams {
        let n = scales.len();
        QuantParams::new(
            QType::I8,
            Granularity::PerChannel { axis: 0 },
            &[n, 3],
            scales,
            vec![0; n],
        )
        .unwrap()
    }

    #[test]
    fn integer_biases_are_recovered_and_float_ones_refused() {
        let x = per_tensor(QType::U8, 0.013, 120);
        let w = weights(vec![0.002, 0.0007, 0.05]);
        let y = per_tensor(QType::U8, 0.1, 3);
        let codes = [-40_000, 7, 4_000_000];
        let b: Vec<f32> = (0..3)
            .map(|o| codes[o] as f32 * (0.013f32 * w.scales()[o]))
            .collect();
        let p = plan(&x, &w, Some(&b), Activation::None, &y).unwrap();
        assert_eq!(p.bias.unwrap(), codes);
        assert_eq!(p.range, (0, 255));
        // A bias that is not a whole number of units keeps the default rule.
        let mut off = b.clone();
        off[1] += 0.3 * 0.013 * 0.0007;
        assert_eq!(plan(&x, &w, Some(&off), Activation::None, &y), None);
        // No bias: nothing to recover.
        assert_eq!(plan(&x, &w, None, Activation::None, &y).unwrap().bias, None);
    }

    #[test]
    fn activations_narrow_the_code_range() {
        let x = per_tensor(QType::I8, 0.5, 0);
        let w = weights(vec![0.25]);
        let y = per_tensor(QType::I8, 0.05, -10);
        assert_eq!(
            plan(&x, &w, None, Activation::Relu, &y).unwrap().range,
            (-10, 127)
        );
        // 6 / 0.05 = 120 (in f32, 119.99999 or 120.00001 rounds to 120), + (-10).
        assert_eq!(
            plan(&x, &w, None, Activation::Relu6, &y).unwrap().range,
            (-10, 110)
        );
        // A zero point at the top leaves ReLU one code: refused.
        let top = per_tensor(QType::I8, 0.05, 127);
        assert_eq!(plan(&x, &w, None, Activation::Relu, &top), None);
    }
}
