//! The elementwise functions ([`UnaryOp`], [`BinaryOp`]) and the clip that ends them.
//! Plain data; the ops are [`crate::ops::eltwise`].

use crate::desc::gemm::Activation;
use crate::error::{Error, Result};

/// A clip `[lo, hi]` applied after an elementwise op (ReLU is `[0, inf]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// Lower bound.
    pub lo: f32,
    /// Upper bound.
    pub hi: f32,
}

impl Clip {
    /// No clipping.
    pub const NONE: Clip = Clip {
        lo: f32::NEG_INFINITY,
        hi: f32::INFINITY,
    };
    /// `max(x, 0)`.
    pub const RELU: Clip = Clip {
        lo: 0.0,
        hi: f32::INFINITY,
    };
    /// `clamp(x, 0, 6)`.
    pub const RELU6: Clip = Clip { lo: 0.0, hi: 6.0 };

    /// The clip of an [`Activation`].
    pub fn from_activation(a: Activation) -> Clip {
        match a {
            Activation::None => Clip::NONE,
            Activation::Relu => Clip::RELU,
            Activation::Relu6 => Clip::RELU6,
        }
    }

    /// `clamp(v, lo, hi)` (the reference's twin of the shader).
    pub fn apply(self, v: f32) -> f32 {
        v.max(self.lo).min(self.hi)
    }

    pub(crate) fn check(self, op: &'static str) -> Result<()> {
        if self.lo.is_nan() || self.hi.is_nan() || self.lo > self.hi {
            return Err(Error::invalid(
                op,
                format!("clip [{}, {}] is empty or NaN", self.lo, self.hi),
            ));
        }
        Ok(())
    }
}

/// A one-input elementwise function, followed by a [`Clip`] (ONNX's names and formulas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `max(0, min(1, alpha * x + beta))` (ONNX defaults 0.2 and 0.5).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 1 / 2))`.
    HardSwish,
    /// `tanh(x)`.
    Tanh,
    /// `x` where `x >= 0`, else `alpha * x`.
    LeakyRelu {
        /// Slope below zero.
        alpha: f32,
    },
    /// `scale * x + shift` (with the clip: ReLU, ReLU6 or any bounds on their own).
    Affine {
        /// Factor.
        scale: f32,
        /// Offset.
        shift: f32,
    },
    /// `sqrt(x)` (NaN below zero).
    Sqrt,
    /// `x ^ exponent`: integer exponents up to 16 in magnitude by repeated products
    /// (defined for negative `x`; `x ^ 2` is `x * x`), others as `pow` (NaN below zero).
    Pow {
        /// The exponent.
        exponent: f32,
    },
    /// `exp(x)`.
    Exp,
    /// `ln(x)` (NaN below zero, -inf at zero).
    Log,
    /// `|x|`.
    Abs,
    /// `numerator / x` (ONNX `Reciprocal` is a numerator of 1).
    Rdiv {
        /// The constant divided by `x`.
        numerator: f32,
    },
    /// The error function `erf(x)` (in f32: a series below 1, above it `1 - erfc` with
    /// the Chebyshev fit of Numerical Recipes' `erfcc`, relative error of erfc 1.2e-7).
    Erf,
    /// `x * (1 + erf(x / sqrt 2)) / 2` (ONNX `Gelu`), or its tanh form
    /// `x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2` when `tanh`.
    Gelu {
        /// The tanh approximation.
        tanh: bool,
    },
    /// `x` where `x >= 0`, else `alpha * (exp(x) - 1)` (ONNX `Elu`; ONNX `Selu` is
    /// `gamma` times this with its own `alpha`, `scale` here).
    Elu {
        /// The limit below zero is `-alpha`.
        alpha: f32,
        /// The factor of both branches (1 for `Elu`, `gamma` for `Selu`).
        scale: f32,
    },
    /// `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))` (ONNX `Celu`).
    Celu {
        /// The limit below zero is `-alpha` (not zero).
        alpha: f32,
    },
    /// `ln(1 + exp(x))`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x * tanh(ln(1 + exp(x)))`.
    Mish,
}

impl UnaryOp {
    /// The identity (an [`UnaryOp::Affine`] of 1 and 0), for a clip on its own.
    pub const IDENTITY: UnaryOp = UnaryOp::Affine {
        scale: 1.0,
        shift: 0.0,
    };

    /// The shader's function code and its two parameters.
    pub(crate) fn code(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Sigmoid => (0, 0.0, 0.0),
            UnaryOp::HardSigmoid { alpha, beta } => (1, alpha, beta),
            UnaryOp::HardSwish => (2, 1.0 / 6.0, 0.5),
            UnaryOp::Tanh => (3, 0.0, 0.0),
            UnaryOp::LeakyRelu { alpha } => (4, alpha, 0.0),
            UnaryOp::Affine { scale, shift } => (5, scale, shift),
            UnaryOp::Sqrt => (6, 0.0, 0.0),
            UnaryOp::Pow { exponent } => (7, exponent, 0.0),
            UnaryOp::Exp => (8, 0.0, 0.0),
            UnaryOp::Log => (9, 0.0, 0.0),
            UnaryOp::Abs => (10, 0.0, 0.0),
            UnaryOp::Rdiv { numerator } => (11, numerator, 0.0),
            UnaryOp::Erf => (12, 0.0, 0.0),
            UnaryOp::Gelu { tanh } => (13, if tanh { 1.0 } else { 0.0 }, 0.0),
            UnaryOp::Elu { alpha, scale } => (14, alpha, scale),
            UnaryOp::Celu { alpha } => (15, alpha, 0.0),
            UnaryOp::Softplus => (16, 0.0, 0.0),
            UnaryOp::Softsign => (17, 0.0, 0.0),
            UnaryOp::Mish => (18, 0.0, 0.0),
        }
    }

    /// The function in f64 (the reference's twin of the shader).
    pub fn apply(self, x: f64) -> f64 {
        if x.is_nan() {
            // As the shader: NaN in, NaN out, whatever the function.
            return x;
        }
        let hs = |a: f64, b: f64| (a * x + b).clamp(0.0, 1.0);
        match self {
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::HardSigmoid { alpha, beta } => hs(f64::from(alpha), f64::from(beta)),
            UnaryOp::HardSwish => x * hs(1.0 / 6.0, 0.5),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    f64::from(alpha) * x
                }
            }
            UnaryOp::Affine { scale, shift } => f64::from(scale) * x + f64::from(shift),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Pow { exponent } => power(x, f64::from(exponent)),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Rdiv { numerator } => f64::from(numerator) / x,
            UnaryOp::Erf => libm::erf(x),
            // 1 + erf(u) = erfc(-u), and (1 + tanh(z)) / 2 = 1 / (1 + exp(-2z)), without
            // the cancellation of the sums for large negative x.
            UnaryOp::Gelu { tanh: false } => x * libm::erfc(-x / 2f64.sqrt()) / 2.0,
            UnaryOp::Gelu { tanh: true } => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                x / (1.0 + (-2.0 * k * (x + 0.044715 * x * x * x)).exp())
            }
            UnaryOp::Elu { alpha, scale } => {
                let y = if x >= 0.0 {
                    x
                } else {
                    f64::from(alpha) * x.exp_m1()
                };
                f64::from(scale) * y
            }
            UnaryOp::Celu { alpha } => {
                let a = f64::from(alpha);
                x.max(0.0) + (a * (x / a).exp_m1()).min(0.0)
            }
            UnaryOp::Softplus => softplus(x),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::Mish => x * softplus(x).tanh(),
        }
    }

    pub(crate) fn check(self, op: &'static str) -> Result<()> {
        let (_, a, b) = self.code();
        if !a.is_finite() || !b.is_finite() {
            return Err(Error::invalid(
                op,
                format!("{self:?} has a non-finite parameter"),
            ));
        }
        if let UnaryOp::Celu { alpha: 0.0 } = self {
            return Err(Error::invalid(
                op,
                "Celu with alpha = 0 (it divides by alpha)",
            ));
        }
        Ok(())
    }
}

/// `x` at or above zero, else `x * slope`.
/// `x ^ e` as the shader computes it: integer exponents by products (a negative `x`
/// allowed), others by `powf`.
fn power(x: f64, e: f64) -> f64 {
    if e.fract() == 0.0 {
        x.powi(e as i32)
    } else {
        x.powf(e)
    }
}

/// `v` where `keep`, else 0.
fn pick(keep: bool, v: f64) -> f64 {
    if keep {
        v
    } else {
        0.0
    }
}

fn prelu(x: f64, slope: f64) -> f64 {
    if x >= 0.0 {
        x
    } else {
        x * slope
    }
}

/// `ln(1 + exp(x))` without overflow: `max(x, 0) + ln(1 + exp(-|x|))`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A reduction along the last axis ([`crate::ops::eltwise::row_reduce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The mean (an f32 sum, then divided by the length).
    Mean,
    /// The sum.
    Sum,
    /// The largest value (NaN if any is).
    Max,
    /// The index of the largest value, as a float (ONNX `ArgMax`; NaN counts as the
    /// largest, as numpy's argmax does): the first such index, or the last when `last`
    /// (`select_last_index`). Exact in f32 outputs; in f16 up to 2048 values a row.
    ArgMax {
        /// The last index among equal values.
        last: bool,
    },
    /// The index of the smallest value (NaN counts as the smallest), as `ArgMax`.
    ArgMin {
        /// The last index among equal values.
        last: bool,
    },
}

impl Reduce {
    pub(crate) fn code(self) -> u32 {
        match self {
            Reduce::Mean => 0,
            Reduce::Sum => 1,
            Reduce::Max => 2,
            Reduce::ArgMax { last } => 3 + u32::from(last),
            Reduce::ArgMin { last } => 5 + u32::from(last),
        }
    }

    /// An index, not a value (ArgMax, ArgMin).
    pub fn is_index(self) -> bool {
        matches!(self, Reduce::ArgMax { .. } | Reduce::ArgMin { .. })
    }

    /// The reduction of `row` in f64 (the reference's twin of the shader).
    pub fn apply(self, row: &[f64]) -> f64 {
        match self {
            Reduce::Mean => row.iter().sum::<f64>() / row.len() as f64,
            Reduce::Sum => row.iter().sum(),
            Reduce::Max => row.iter().fold(f64::NEG_INFINITY, |m, &v| {
                if v.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.max(v)
                }
            }),
            Reduce::ArgMax { last } | Reduce::ArgMin { last } => {
                let max = matches!(self, Reduce::ArgMax { .. });
                let mut best = 0;
                for (j, &v) in row.iter().enumerate().skip(1) {
                    let b = row[best];
                    let take = if b.is_nan() {
                        last && v.is_nan()
                    } else if v.is_nan() {
                        true
                    } else if max {
                        v > b || (last && v == b)
                    } else {
                        v < b || (last && v == b)
                    };
                    if take {
                        best = j;
                    }
                }
                best as f64
            }
        }
    }
}

/// A two-input elementwise operation, followed by a [`Clip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `b - a` (ONNX `Sub` whose second operand is the larger one).
    RSub,
    /// `b / a`.
    RDiv,
    /// The larger of `a` and `b` (NaN if either is).
    Max,
    /// The smaller of `a` and `b` (NaN if either is).
    Min,
    /// `a` where `a >= 0`, else `a * b` (ONNX `PRelu`: `b` is the slope).
    PRelu,
    /// `b` where `b >= 0`, else `b * a` (`PRelu` with the slope first).
    RPRelu,
    /// 1 where `a < b`, else 0 (ONNX `Less`: a boolean as 0/1; false with NaN).
    Less,
    /// 1 where `a > b`, else 0.
    Greater,
    /// 1 where `a <= b`, else 0.
    LessOrEqual,
    /// 1 where `a >= b`, else 0.
    GreaterOrEqual,
    /// 1 where `a == b`, else 0.
    Equal,
    /// `a` where `b != 0`, else 0 (taken by a select: an infinite or NaN `a` does not
    /// leak where `b` is 0). `Mask(x, c) + MaskNot(y, c)` is ONNX `Where(c, x, y)`.
    Mask,
    /// `b` where `a != 0`, else 0 (`Mask` with the condition first).
    RMask,
    /// `a` where `b == 0`, else 0.
    MaskNot,
    /// `b` where `a == 0`, else 0 (`MaskNot` with the condition first).
    RMaskNot,
    /// `a` to the power `b` (ONNX `Pow` with a tensor exponent): integer exponents up to
    /// 16 in magnitude by products (defined for a negative `a`), others by `pow`.
    Pow,
    /// `b` to the power `a`.
    RPow,
}

impl BinaryOp {
    pub(crate) fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::RSub => 4,
            BinaryOp::RDiv => 5,
            BinaryOp::Max => 6,
            BinaryOp::Min => 7,
            BinaryOp::PRelu => 8,
            BinaryOp::RPRelu => 9,
            BinaryOp::Less => 10,
            BinaryOp::Greater => 11,
            BinaryOp::LessOrEqual => 12,
            BinaryOp::GreaterOrEqual => 13,
            BinaryOp::Equal => 14,
            BinaryOp::Mask => 15,
            BinaryOp::RMask => 16,
            BinaryOp::MaskNot => 17,
            BinaryOp::RMaskNot => 18,
            BinaryOp::Pow => 19,
            BinaryOp::RPow => 20,
        }
    }

    /// The operation in f64 (the reference's twin of the shader).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::RSub => b - a,
            BinaryOp::RDiv => b / a,
            BinaryOp::Max if a.is_nan() || b.is_nan() => f64::NAN,
            BinaryOp::Max => a.max(b),
            BinaryOp::Min if a.is_nan() || b.is_nan() => f64::NAN,
            BinaryOp::Min => a.min(b),
            BinaryOp::PRelu => prelu(a, b),
            BinaryOp::RPRelu => prelu(b, a),
            BinaryOp::Less => f64::from(u8::from(a < b)),
            BinaryOp::Greater => f64::from(u8::from(a > b)),
            BinaryOp::LessOrEqual => f64::from(u8::from(a <= b)),
            BinaryOp::GreaterOrEqual => f64::from(u8::from(a >= b)),
            BinaryOp::Equal => f64::from(u8::from(a == b)),
            BinaryOp::Mask => pick(b != 0.0, a),
            BinaryOp::RMask => pick(a != 0.0, b),
            BinaryOp::MaskNot => pick(b == 0.0, a),
            BinaryOp::RMaskNot => pick(a == 0.0, b),
            BinaryOp::Pow => power(a, b),
            BinaryOp::RPow => power(b, a),
        }
    }
}
