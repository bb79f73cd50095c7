//! The catalogue of bad inputs (docs/RELIABILITY.md): every public constructor, op,
//! observer and loader given inputs a careless or hostile caller could pass. Each case
//! must end in an `Err` of the expected variant whose message names the op, the operand
//! and the numbers; a panic, an `Ok` or a vague message fails the case. The test prints
//! a table of cases per category (the figures docs/RELIABILITY.md records) and fails
//! listing every case that misbehaved.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use wgpu_quant::calib::{Observer, ObserverKind};
use wgpu_quant::desc::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::desc::eltwise::Clip;
use wgpu_quant::desc::gemm::Activation;
use wgpu_quant::desc::layout::ResizeCoords;
use wgpu_quant::desc::pool::{PoolDesc, PoolKind};
use wgpu_quant::desc::qgemm::QGemmDesc;
use wgpu_quant::desc::wgemm::WGemmDesc;
use wgpu_quant::model::{lenet, Graph, Layer, Model, PtqOptions, QMode, QModel, WeightFile};
use wgpu_quant::ops::conv::{conv2d, qconv2d, ConvWeight, QConvWeight};
use wgpu_quant::ops::gemm::{gemm, GemmDesc};
use wgpu_quant::ops::layout::{
    concat_channels, depth_to_space, permute, resize_bilinear, transpose_to_nchw,
    transpose_to_nhwc, upsample_nearest,
};
use wgpu_quant::ops::qgemm::{qgemm, QGemmOutput};
use wgpu_quant::ops::wgemm::{wgemm, Weights};
use wgpu_quant::quant::{Granularity, QType, QuantParams, QuantScheme};
use wgpu_quant::{Context, DType, Error, QTensor, Tensor};

type Run = Box<dyn FnOnce() -> wgpu_quant::Result<()>>;

struct Case {
    category: &'static str,
    name: String,
    /// The variant the error must be (its name, as `variant` prints it).
    variant: &'static str,
    /// Substrings the message must contain (the op, the operand, the numbers).
    says: Vec<String>,
    run: Run,
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::NoAdapter { .. } => "NoAdapter",
        Error::RequestDevice { .. } => "RequestDevice",
        Error::Shape { .. } => "Shape",
        Error::DType { .. } => "DType",
        Error::InvalidArgument { .. } => "InvalidArgument",
        Error::LimitExceeded { .. } => "LimitExceeded",
        Error::MissingFeature { .. } => "MissingFeature",
        Error::Validation { .. } => "Validation",
        Error::Readback { .. } => "Readback",
        Error::DeviceLost(_) => "DeviceLost",
        Error::File { .. } => "File",
        Error::Import { .. } => "Import",
        _ => "other",
    }
}

#[derive(Default)]
struct Catalogue {
    cases: Vec<Case>,
}

impl Catalogue {
    fn add(
        &mut self,
        category: &'static str,
        name: impl Into<String>,
        variant: &'static str,
        says: &[&str],
        run: impl FnOnce() -> wgpu_quant::Result<()> + 'static,
    ) {
        self.cases.push(Case {
            category,
            name: name.into(),
            variant,
            says: says.iter().map(|s| s.to_string()).collect(),
            run: Box::new(run),
        });
    }

    /// Runs every case; returns the failures and prints the per-category table.
    fn run(self) -> Vec<String> {
        // WGPU_QUANT_MISUSE_VERBOSE=1 keeps the panic hook (backtraces of panicking cases).
        let hook = std::panic::take_hook();
        if std::env::var_os("WGPU_QUANT_MISUSE_VERBOSE").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
        let mut failures = Vec::new();
        let mut table: std::collections::BTreeMap<&str, [usize; 4]> = Default::default();
        for case in self.cases {
            let row = table.entry(case.category).or_default();
            row[0] += 1;
            let label = format!("[{}] {}", case.category, case.name);
            match catch_unwind(AssertUnwindSafe(case.run)) {
                Err(p) => {
                    row[2] += 1;
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{label}: PANIC {msg}"));
                }
                Ok(Ok(())) if case.variant == "Ok" => row[1] += 1,
                Ok(Ok(())) => {
                    row[3] += 1;
                    failures.push(format!("{label}: accepted (Ok)"));
                }
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    let missing: Vec<&String> = case
                        .says
                        .iter()
                        .filter(|s| !msg.contains(s.as_str()))
                        .collect();
                    if variant(&e) != case.variant || !missing.is_empty() {
                        failures.push(format!(
                            "{label}: {} (want {}), missing {missing:?}: {msg}",
                            variant(&e),
                            case.variant
                        ));
                    } else {
                        row[1] += 1;
                    }
                }
            }
        }
        std::panic::set_hook(hook);
        eprintln!("| category | cases | clear errors | panics | accepted |");
        eprintln!("|---|---:|---:|---:|---:|");
        let mut total = [0usize; 4];
        for (cat, r) in &table {
            eprintln!("| {cat} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
            for i in 0..4 {
                total[i] += r[i];
            }
        }
        eprintln!(
            "| all | {} | {} | {} | {} |",
            total[0], total[1], total[2], total[3]
        );
        failures
    }
}

fn ctx() -> &'static Context {
    common::ctx()
}

fn f32s(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_slice(ctx(), shape, &vec![0.5f32; n]).unwrap()
}

fn qparams(qtype: QType, shape: &[usize]) -> QuantParams {
    QuantParams::new(qtype, Granularity::PerTensor, shape, vec![0.1], vec![0]).unwrap()
}

fn qt(qtype: QType, shape: &[usize]) -> QTensor {
    QTensor::new(ctx(), &qparams(qtype, shape)).unwrap()
}

fn enc() -> wgpu::CommandEncoder {
    ctx().encoder("misuse")
}

const BIG: usize = 1 << 40;

fn tensors(c: &mut Catalogue) {
    let cat = "tensor";
    for shape in [
        vec![usize::MAX, 2],
        vec![1 << 32, 1 << 32],
        vec![BIG, BIG, 4],
    ] {
        let s = format!("{shape:?}");
        let sh = shape.clone();
        c.add(
            cat,
            format!("zeros {s}"),
            "Shape",
            &["Tensor::zeros", "overflows"],
            move || Tensor::zeros(ctx(), &sh, DType::F32).map(drop),
        );
    }
    for (shape, dtype) in [
        (vec![usize::MAX / 2], DType::F32),
        (vec![usize::MAX / 4, 5], DType::F16),
    ] {
        let s = format!("{shape:?} {dtype}");
        c.add(
            cat,
            format!("zeros bytes overflow {s}"),
            "Shape",
            &["Tensor::zeros", "overflow"],
            move || Tensor::zeros(ctx(), &shape, dtype).map(drop),
        );
    }
    c.add(
        cat,
        "zeros over max_buffer_size",
        "LimitExceeded",
        &["Tensor::zeros", "max_buffer_size"],
        || Tensor::zeros(ctx(), &[BIG], DType::F32).map(drop),
    );
    for shape in [vec![usize::MAX / 2], vec![usize::MAX, 3]] {
        let s = format!("{shape:?}");
        c.add(
            cat,
            format!("from_buffer bytes overflow {s}"),
            "Shape",
            &["Tensor::from_buffer", "overflow"],
            move || {
                let b = Tensor::zeros(ctx(), &[4], DType::F32)?.buffer().clone();
                Tensor::from_buffer(b, &shape, DType::F32).map(drop)
            },
        );
    }
    c.add(
        cat,
        "from_slice length",
        "Shape",
        &["Tensor::from_slice", "[2, 3]", "6", "5"],
        || Tensor::from_slice(ctx(), &[2, 3], &[0f32; 5]).map(drop),
    );
    c.add(
        cat,
        "reshape count",
        "Shape",
        &["Tensor::reshape", "[7]"],
        || f32s(&[2, 3]).reshape(&[7]).map(drop),
    );
    c.add(
        cat,
        "reshape overflow",
        "Shape",
        &["Tensor::reshape", "overflows"],
        || f32s(&[2, 3]).reshape(&[usize::MAX, 2]).map(drop),
    );
    c.add(
        cat,
        "write dtype",
        "DType",
        &["Tensor::write", "f32", "i32"],
        || f32s(&[2]).write(ctx(), &[1i32, 2]),
    );
    c.add(
        cat,
        "write length",
        "Shape",
        &["Tensor::write", "2", "3"],
        || f32s(&[2]).write(ctx(), &[1f32, 2.0, 3.0]),
    );
    c.add(
        cat,
        "read dtype",
        "DType",
        &["Tensor::read", "f32", "i32"],
        || f32s(&[2]).read_blocking::<i32>(ctx()).map(drop),
    );
}

fn quant_params(c: &mut Catalogue) {
    let cat = "QuantParams";
    let op = "QuantParams::new";
    for (s, what) in [
        (0.0f32, "0e0"),
        (-1.0, "-1e0"),
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (1e-40, "1e-40"),
    ] {
        c.add(
            cat,
            format!("scale {what}"),
            "InvalidArgument",
            &[op, "scale[0]", what],
            move || {
                QuantParams::new(QType::I8, Granularity::PerTensor, &[4], vec![s], vec![0])
                    .map(drop)
            },
        );
    }
    for (qt, z) in [
        (QType::I8, 128),
        (QType::I8, -129),
        (QType::U8, -1),
        (QType::U8, 256),
        (QType::I4, 8),
        (QType::U4, 16),
    ] {
        c.add(
            cat,
            format!("{qt} zero point {z}"),
            "InvalidArgument",
            &[op, "zero_point[0]", &z.to_string()],
            move || {
                QuantParams::new(qt, Granularity::PerTensor, &[4], vec![1.0], vec![z]).map(drop)
            },
        );
    }
    c.add(
        cat,
        "slot count",
        "Shape",
        &[op, "needs 3 scales", "got 2"],
        || {
            QuantParams::new(
                QType::I8,
                Granularity::PerChannel { axis: 0 },
                &[3, 4],
                vec![1.0; 2],
                vec![0; 2],
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "axis out of range",
        "InvalidArgument",
        &["axis 2", "[3, 4]"],
        || {
            QuantParams::new(
                QType::I8,
                Granularity::PerChannel { axis: 2 },
                &[3, 4],
                vec![1.0; 3],
                vec![0; 3],
            )
            .map(drop)
        },
    );
    c.add(cat, "group size 0", "InvalidArgument", &["group"], || {
        QuantParams::new(
            QType::I8,
            Granularity::PerGroup {
                axis: 1,
                group_size: 0,
            },
            &[3, 4],
            vec![1.0; 3],
            vec![0; 3],
        )
        .map(drop)
    });
    c.add(cat, "shape overflow", "Shape", &["overflows"], || {
        QuantParams::new(
            QType::I8,
            Granularity::PerTensor,
            &[usize::MAX, 2],
            vec![1.0],
            vec![0],
        )
        .map(drop)
    });
    c.add(
        cat,
        "from_data NaN length",
        "Shape",
        &["QuantParams::from_data", "6", "5"],
        || QuantParams::from_data(&QuantScheme::symmetric(QType::I8), &[2, 3], &[0.0; 5]).map(drop),
    );
    c.add(
        cat,
        "quantize length",
        "Shape",
        &["QuantParams::quantize", "[4]", "3"],
        || qparams(QType::I8, &[4]).quantize(&[0.0; 3]).map(drop),
    );
}

fn gemms(c: &mut Catalogue) {
    let cat = "gemm";
    c.add(
        cat,
        "m overflow",
        "Shape",
        &["gemm", "A has shape [2, 2]", "m=18446744073709551615"],
        || {
            let a = f32s(&[2, 2]);
            gemm(
                ctx(),
                &mut enc(),
                &GemmDesc::new(usize::MAX, 2, 2),
                &a,
                &a,
                None,
                &a,
            )
        },
    );
    c.add(
        cat,
        "batch stride overflow",
        "Shape",
        &["gemm", "overflow"],
        || {
            let a = f32s(&[2, 2]);
            let d = GemmDesc::new(2, 2, 2)
                .batch(usize::MAX)
                .batch_strides(usize::MAX, 0, 4);
            gemm(ctx(), &mut enc(), &d, &a, &a, None, &a)
        },
    );
    c.add(cat, "k = 0", "Shape", &["gemm", "k"], || {
        let a = f32s(&[2, 0]);
        let b = f32s(&[0, 2]);
        gemm(
            ctx(),
            &mut enc(),
            &GemmDesc::new(2, 2, 0),
            &a,
            &b,
            None,
            &f32s(&[2, 2]),
        )
    });
    c.add(
        cat,
        "alpha NaN",
        "InvalidArgument",
        &["gemm", "alpha", "NaN"],
        || {
            let a = f32s(&[2, 2]);
            gemm(
                ctx(),
                &mut enc(),
                &GemmDesc::new(2, 2, 2).alpha(f32::NAN),
                &a,
                &a,
                None,
                &f32s(&[2, 2]),
            )
        },
    );

    let cat = "qgemm";
    c.add(cat, "k = 0", "Shape", &["qgemm", "K = 0"], || {
        let a = qt(QType::I8, &[2, 0]);
        let w = qt(QType::I8, &[3, 0]);
        qgemm(
            ctx(),
            &mut enc(),
            &QGemmDesc::default(),
            &a,
            &w,
            None,
            QGemmOutput::F32(&f32s(&[2, 3])),
        )
    });
    c.add(
        cat,
        "4-bit activations",
        "InvalidArgument",
        &["qgemm", "A", "i4"],
        || {
            let a = qt(QType::I4, &[2, 8]);
            let w = qt(QType::I8, &[3, 8]);
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &a,
                &w,
                None,
                QGemmOutput::F32(&f32s(&[2, 3])),
            )
        },
    );
}

fn wgemm_sweeps(c: &mut Catalogue) {
    let cat = "wgemm";
    c.add(cat, "k = 0", "Shape", &["wgemm", "K = 0"], || {
        let w = qt(QType::I8, &[3, 0]);
        wgemm(
            ctx(),
            &mut enc(),
            &WGemmDesc::default(),
            &f32s(&[2, 0]),
            Weights::Quantized(&w),
            None,
            &f32s(&[2, 3]),
        )
    });
}

fn convs(c: &mut Catalogue) {
    let cat = "conv";
    c.add(
        cat,
        "ConvDims overflow",
        "Shape",
        &["ConvDims", "overflow"],
        || ConvDims::new(usize::MAX, usize::MAX, [usize::MAX, usize::MAX], 1).map(drop),
    );
    c.add(
        cat,
        "ConvDims groups",
        "Shape",
        &["ConvDims", "3 groups", "(4)", "(8)"],
        || ConvDims::new(8, 4, [3, 3], 3).map(drop),
    );
    c.add(
        cat,
        "stride 0",
        "InvalidArgument",
        &["conv2d", "stride"],
        || {
            let dims = ConvDims::new(4, 3, [3, 3], 1)?;
            let w = ConvWeight::from_oihw(ctx(), dims, &[0.0; 108], DType::F32)?;
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default().stride(0),
                &f32s(&[1, 5, 5, 3]),
                &w,
                None,
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
    c.add(
        cat,
        "kernel larger than input",
        "Shape",
        &["conv2d", "kernel"],
        || {
            let dims = ConvDims::new(4, 3, [7, 7], 1)?;
            let w = ConvWeight::from_oihw(ctx(), dims, &vec![0.0; 4 * 3 * 49], DType::F32)?;
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &f32s(&[1, 5, 5, 3]),
                &w,
                None,
                &f32s(&[1, 1, 1, 4]),
            )
        },
    );
    c.add(
        cat,
        "padding overflow",
        "Shape",
        &["conv2d", "overflow"],
        || {
            let dims = ConvDims::new(4, 3, [3, 3], 1)?;
            let w = ConvWeight::from_oihw(ctx(), dims, &[0.0; 108], DType::F32)?;
            let d = ConvDesc::default().padding(Padding::uniform(usize::MAX));
            conv2d(
                ctx(),
                &mut enc(),
                &d,
                &f32s(&[1, 5, 5, 3]),
                &w,
                None,
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
}

fn qconv_probes(c: &mut Catalogue) {
    let cat = "qconv";
    for qtype in [QType::I4, QType::U4] {
        c.add(
            cat,
            format!("{qtype} activations"),
            "InvalidArgument",
            &["qconv2d", "x", &qtype.to_string()],
            move || {
                let dims = ConvDims::new(4, 8, [1, 1], 1)?;
                let w = QConvWeight::quantize(
                    ctx(),
                    dims,
                    &[0.1; 32],
                    &QuantScheme::symmetric(QType::I8),
                )?;
                let x = qt(qtype, &[1, 2, 2, 8]);
                qconv2d(
                    ctx(),
                    &mut enc(),
                    &ConvDesc::default(),
                    &x,
                    &w,
                    None,
                    QGemmOutput::F32(&f32s(&[1, 2, 2, 4])),
                )
            },
        );
    }
}

fn pools(c: &mut Catalogue) {
    let cat = "pool";
    c.add(
        cat,
        "kernel 0",
        "InvalidArgument",
        &["pool2d", "kernel"],
        || {
            wgpu_quant::ops::pool::pool2d(
                ctx(),
                &mut enc(),
                &PoolDesc::new(PoolKind::Max, 0, 1),
                &f32s(&[1, 4, 4, 2]),
                &f32s(&[1, 4, 4, 2]),
            )
        },
    );
    c.add(
        cat,
        "kernel larger than input names pool",
        "Shape",
        &["pool2d"],
        || {
            wgpu_quant::ops::pool::pool2d(
                ctx(),
                &mut enc(),
                &PoolDesc::new(PoolKind::Max, 9, 1),
                &f32s(&[1, 4, 4, 2]),
                &f32s(&[1, 1, 1, 2]),
            )
        },
    );
}

fn observers(c: &mut Catalogue) {
    let cat = "observer";
    for kind in ObserverKind::standard() {
        c.add(
            cat,
            format!("{} near f32::MAX gives a finite scale", kind.name()),
            "Ok",
            &[],
            move || {
                let mut o = Observer::new(kind, Granularity::PerTensor)?;
                o.observe(
                    ctx(),
                    &Tensor::from_slice(ctx(), &[3], &[-f32::MAX, 0.0, f32::MAX])?,
                )?;
                let p = o.compute_params(&QuantScheme::asymmetric(QType::U8), &[3])?;
                if !p.scales()[0].is_normal() {
                    return Err(Error::InvalidArgument {
                        op: "probe",
                        detail: format!("scale {}", p.scales()[0]),
                    });
                }
                Ok(())
            },
        );
    }
    c.add(
        cat,
        "all-NaN first batch",
        "InvalidArgument",
        &["Observer::observe", "NaN"],
        || {
            let mut o = Observer::new(
                ObserverKind::MovingAverage { momentum: 0.1 },
                Granularity::PerTensor,
            )?;
            o.observe(ctx(), &Tensor::from_slice(ctx(), &[3], &[f32::NAN; 3])?)
        },
    );
    c.add(
        cat,
        "momentum 0",
        "InvalidArgument",
        &["Observer::new", "momentum 0"],
        || {
            Observer::new(
                ObserverKind::MovingAverage { momentum: 0.0 },
                Granularity::PerTensor,
            )
            .map(drop)
        },
    );
    c.add(cat, "no batches", "InvalidArgument", &["no batch"], || {
        let o = Observer::new(ObserverKind::MinMax, Granularity::PerTensor)?;
        o.compute_params(&QuantScheme::asymmetric(QType::U8), &[2])
            .map(drop)
    });
}

fn weight_files(c: &mut Catalogue) {
    let cat = "WeightFile";
    c.add(
        cat,
        "insert overflow",
        "Shape",
        &["'w'", "overflows"],
        || WeightFile::default().insert("w", &[1 << 32, 1 << 32], vec![]),
    );
    c.add(
        cat,
        "tensor() refuses NaN",
        "InvalidArgument",
        &["'w'", "NaN", "index 1"],
        || {
            let mut w = WeightFile::default();
            w.insert("w", &[2], vec![0.0, f32::NAN])?;
            w.tensor("w", &[2]).map(drop)
        },
    );
    c.add(
        cat,
        "garbage bytes",
        "File",
        &["bad.safetensors", "not a safetensors"],
        || WeightFile::from_bytes(b"garbage!garbage!", "bad.safetensors").map(drop),
    );
    c.add(
        cat,
        "model NaN weight",
        "InvalidArgument",
        &["conv1", "NaN"],
        || {
            let g = lenet();
            let mut w = WeightFile::default();
            for (name, shape) in [
                ("conv1.weight", vec![10, 1, 5, 5]),
                ("conv1.bias", vec![10]),
                ("conv2.weight", vec![20, 10, 5, 5]),
                ("conv2.bias", vec![20]),
                ("fc1.weight", vec![50, 320]),
                ("fc1.bias", vec![50]),
                ("fc2.weight", vec![10, 50]),
                ("fc2.bias", vec![10]),
            ] {
                let n: usize = shape.iter().product();
                let mut v = vec![0.01; n];
                if name == "conv1.weight" {
                    v[3] = f32::NAN;
                }
                w.insert(name, &shape, v).ok();
            }
            Model::new(ctx(), &g, &w, DType::F32, &[1, 28, 28, 1]).map(drop)
        },
    );
}

fn models(c: &mut Catalogue) {
    let cat = "model";
    c.add(
        cat,
        "conv with overflowing weights",
        "Shape",
        &["ConvDims::new", "overflows"],
        || {
            let mut g = Graph::default();
            g.push(
                "c",
                Layer::conv(
                    "w",
                    None,
                    ConvDims::new(1 << 32, 1 << 32, [1, 1], 1)?,
                    ConvDesc::default(),
                ),
            );
            Model::new(
                ctx(),
                &g,
                &WeightFile::default(),
                DType::F32,
                &[1, 2, 2, 1 << 32],
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "static calibration on NaN",
        "InvalidArgument",
        &["NaN"],
        || {
            let mut g = Graph::default();
            g.push("fc", Layer::linear("w", None, 2, 4));
            let mut w = WeightFile::default();
            w.insert("w", &[2, 4], vec![0.1; 8])?;
            let x = Tensor::from_slice(ctx(), &[1, 4], &[f32::NAN; 4])?;
            QModel::calibrate_with(
                ctx(),
                &g,
                &w,
                &[1, 4],
                &[x],
                &PtqOptions::new(ObserverKind::MinMax, QMode::Static),
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "tensor from another device",
        "InvalidArgument",
        &["device"],
        || {
            let other = common::context_with(Default::default());
            let a = Tensor::from_slice(&other, &[2, 2], &[1f32; 4])?;
            gemm(
                ctx(),
                &mut enc(),
                &GemmDesc::new(2, 2, 2),
                &a,
                &f32s(&[2, 2]),
                None,
                &f32s(&[2, 2]),
            )
        },
    );
    let _ = (Activation::Relu, Clip::NONE);
}

fn i32s(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_slice(ctx(), shape, &vec![1i32; n]).unwrap()
}

fn f16s(shape: &[usize]) -> Tensor {
    Tensor::zeros(ctx(), shape, DType::F16).unwrap()
}

/// Sweeps over the float GEMM: each operand given the wrong dtype or shape, each
/// dimension zero, bad strides and scalars.
fn gemm_sweeps(c: &mut Catalogue) {
    let cat = "gemm";
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        c.add(
            cat,
            format!("{name} is i32"),
            "DType",
            &["gemm", name, "i32"],
            move || {
                let t = |j: usize| if i == j { i32s(&[4, 4]) } else { f32s(&[4, 4]) };
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4),
                    &t(0),
                    &t(1),
                    None,
                    &t(2),
                )
            },
        );
    }
    for (m, n, k) in [(0, 4, 4), (4, 0, 4), (4, 4, 0)] {
        c.add(
            cat,
            format!("{m}x{n}x{k}"),
            "Shape",
            &["gemm", "at least 1", &format!("m={m} n={n} k={k}")],
            move || {
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(m, n, k),
                    &f32s(&[4, 4]),
                    &f32s(&[4, 4]),
                    None,
                    &f32s(&[4, 4]),
                )
            },
        );
    }
    for (a, b, cc, which) in [
        ([3, 4], [4, 4], [4, 4], "A has shape [3, 4]"),
        ([4, 4], [5, 4], [4, 4], "B has shape [5, 4]"),
        ([4, 4], [4, 4], [4, 5], "[4, 5]"),
    ] {
        c.add(
            cat,
            format!("wrong {which}"),
            "Shape",
            &["gemm", which],
            move || {
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4),
                    &f32s(&a),
                    &f32s(&b),
                    None,
                    &f32s(&cc),
                )
            },
        );
    }
}

fn gemm_operands(c: &mut Catalogue) {
    let cat = "gemm";
    for bias in [vec![3], vec![4, 1], vec![5]] {
        let s = format!("{bias:?}");
        c.add(
            cat,
            format!("bias {s}"),
            "Shape",
            &["gemm", "bias has shape", &s],
            move || {
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4),
                    &f32s(&[4, 4]),
                    &f32s(&[4, 4]),
                    Some(&f32s(&bias)),
                    &f32s(&[4, 4]),
                )
            },
        );
    }
    for alpha in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        c.add(
            cat,
            format!("alpha {alpha}"),
            "InvalidArgument",
            &["gemm", "alpha", &alpha.to_string()],
            move || {
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4).alpha(alpha),
                    &f32s(&[4, 4]),
                    &f32s(&[4, 4]),
                    None,
                    &f32s(&[4, 4]),
                )
            },
        );
    }
    c.add(
        cat,
        "output aliases A",
        "InvalidArgument",
        &["gemm", "C shares its buffer with A"],
        || {
            let a = f32s(&[4, 4]);
            gemm(
                ctx(),
                &mut enc(),
                &GemmDesc::new(4, 4, 4),
                &a,
                &f32s(&[4, 4]),
                None,
                &a,
            )
        },
    );
    for batch in [0usize, 3] {
        c.add(
            cat,
            format!("batch {batch} of 2 matrices"),
            "Shape",
            &["gemm"],
            move || {
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4).batch(batch),
                    &f32s(&[2, 4, 4]),
                    &f32s(&[4, 4]),
                    None,
                    &f32s(&[2, 4, 4]),
                )
            },
        );
    }
    for name in ["A", "B", "C"] {
        c.add(
            cat,
            format!("{name} from another context"),
            "InvalidArgument",
            &["gemm", name, "another context"],
            move || {
                let other = other_ctx();
                let o = Tensor::from_slice(other, &[4, 4], &[1f32; 16])?;
                let t = |n: &str| if n == name { o.clone() } else { f32s(&[4, 4]) };
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4),
                    &t("A"),
                    &t("B"),
                    None,
                    &t("C"),
                )
            },
        );
    }
}

fn other_ctx() -> &'static Context {
    static OTHER: std::sync::OnceLock<Context> = std::sync::OnceLock::new();
    OTHER.get_or_init(|| common::context_with(Default::default()))
}

fn qgemm_sweeps(c: &mut Catalogue) {
    let cat = "qgemm";
    for (qa, qw) in [
        (QType::I4, QType::I8),
        (QType::U4, QType::I8),
        (QType::I8, QType::I4),
        (QType::U8, QType::U4),
    ] {
        let (bad, operand) = if matches!(qa, QType::I4 | QType::U4) {
            (qa, "A")
        } else {
            (qw, "W")
        };
        c.add(
            cat,
            format!("{qa} x {qw}"),
            "InvalidArgument",
            &["qgemm", operand, bad.name()],
            move || {
                let a = qt(qa, &[2, 8]);
                let w = qt(qw, &[3, 8]);
                qgemm(
                    ctx(),
                    &mut enc(),
                    &QGemmDesc::default(),
                    &a,
                    &w,
                    None,
                    QGemmOutput::F32(&f32s(&[2, 3])),
                )
            },
        );
    }
    for (wshape, want) in [(vec![3, 0], "[3, 0]"), (vec![0, 8], "[0, 8]")] {
        c.add(
            cat,
            format!("W {want}"),
            "Shape",
            &["qgemm", "W has shape", want, "at least 1"],
            move || {
                let a = qt(QType::I8, &[2, *wshape.last().unwrap()]);
                let w = qt(QType::I8, &wshape);
                qgemm(
                    ctx(),
                    &mut enc(),
                    &QGemmDesc::default(),
                    &a,
                    &w,
                    None,
                    QGemmOutput::F32(&f32s(&[2, wshape[0]])),
                )
            },
        );
    }
    c.add(
        cat,
        "W 3-D",
        "Shape",
        &["qgemm", "W has shape [3, 8, 1]"],
        || {
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &qt(QType::I8, &[2, 8]),
                &qt(QType::I8, &[3, 8, 1]),
                None,
                QGemmOutput::F32(&f32s(&[2, 3])),
            )
        },
    );
    c.add(
        cat,
        "K mismatch",
        "Shape",
        &["qgemm", "K = 8", "[2, 7]"],
        || {
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &qt(QType::I8, &[2, 7]),
                &qt(QType::I8, &[3, 8]),
                None,
                QGemmOutput::F32(&f32s(&[2, 3])),
            )
        },
    );
}

fn qgemm_outputs(c: &mut Catalogue) {
    let cat = "qgemm";
    for out in [vec![2, 4], vec![3, 3], vec![6]] {
        let s = format!("{out:?}");
        c.add(
            cat,
            format!("output {s}"),
            "Shape",
            &["qgemm", &s],
            move || {
                qgemm(
                    ctx(),
                    &mut enc(),
                    &QGemmDesc::default(),
                    &qt(QType::I8, &[2, 8]),
                    &qt(QType::I8, &[3, 8]),
                    None,
                    QGemmOutput::F32(&f32s(&out)),
                )
            },
        );
    }
    c.add(
        cat,
        "F32 output holding i32",
        "DType",
        &["qgemm", "i32"],
        || {
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &qt(QType::I8, &[2, 8]),
                &qt(QType::I8, &[3, 8]),
                None,
                QGemmOutput::F32(&i32s(&[2, 3])),
            )
        },
    );
    c.add(
        cat,
        "I32 output holding f32",
        "DType",
        &["qgemm", "f32"],
        || {
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &qt(QType::I8, &[2, 8]),
                &qt(QType::I8, &[3, 8]),
                None,
                QGemmOutput::I32(&f32s(&[2, 3])),
            )
        },
    );
    for bias in [vec![2], vec![4]] {
        let s = format!("{bias:?}");
        c.add(
            cat,
            format!("bias {s}"),
            "Shape",
            &["qgemm", "bias", &s],
            move || {
                qgemm(
                    ctx(),
                    &mut enc(),
                    &QGemmDesc::default(),
                    &qt(QType::I8, &[2, 8]),
                    &qt(QType::I8, &[3, 8]),
                    Some(&f32s(&bias)),
                    QGemmOutput::F32(&f32s(&[2, 3])),
                )
            },
        );
    }
    c.add(
        cat,
        "A from another context",
        "InvalidArgument",
        &["qgemm", "A", "another context"],
        || {
            let a = QTensor::new(other_ctx(), &qparams(QType::I8, &[2, 8]))?;
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &a,
                &qt(QType::I8, &[3, 8]),
                None,
                QGemmOutput::F32(&f32s(&[2, 3])),
            )
        },
    );
}

fn wgemm_more(c: &mut Catalogue) {
    let cat = "wgemm";
    c.add(
        cat,
        "N = 0",
        "Shape",
        &["wgemm", "[0, 8]", "at least 1"],
        || {
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 8]),
                Weights::Quantized(&qt(QType::I8, &[0, 8])),
                None,
                &f32s(&[2, 0]),
            )
        },
    );
    c.add(cat, "x is i32", "DType", &["wgemm", "x", "i32"], || {
        wgemm(
            ctx(),
            &mut enc(),
            &WGemmDesc::default(),
            &i32s(&[2, 8]),
            Weights::Quantized(&qt(QType::I8, &[3, 8])),
            None,
            &f32s(&[2, 3]),
        )
    });
    c.add(
        cat,
        "F16 weights given f32",
        "DType",
        &["wgemm", "weight", "f16", "f32"],
        || {
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 8]),
                Weights::F16(&f32s(&[3, 8])),
                None,
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "K mismatch",
        "Shape",
        &["wgemm", "K = 8", "[2, 7]"],
        || {
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 7]),
                Weights::Quantized(&qt(QType::I8, &[3, 8])),
                None,
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "output shape",
        "Shape",
        &["wgemm", "[2, 4]", "[2, 3]"],
        || {
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 8]),
                Weights::Quantized(&qt(QType::I8, &[3, 8])),
                None,
                &f32s(&[2, 4]),
            )
        },
    );
    c.add(
        cat,
        "bias length",
        "Shape",
        &["wgemm", "bias", "[5]"],
        || {
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 8]),
                Weights::Quantized(&qt(QType::I8, &[3, 8])),
                Some(&f32s(&[5])),
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "weight from another context",
        "InvalidArgument",
        &["wgemm", "weight", "another context"],
        || {
            let w = QTensor::new(other_ctx(), &qparams(QType::I8, &[3, 8]))?;
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &f32s(&[2, 8]),
                Weights::Quantized(&w),
                None,
                &f32s(&[2, 3]),
            )
        },
    );
}

fn conv_weight() -> ConvWeight {
    ConvWeight::from_oihw(
        ctx(),
        ConvDims::new(4, 3, [3, 3], 1).unwrap(),
        &[0.1; 108],
        DType::F32,
    )
    .unwrap()
}

fn conv_sweeps(c: &mut Catalogue) {
    let cat = "conv";
    for (oc, ic, k, g) in [
        (0, 3, [3, 3], 1),
        (4, 0, [3, 3], 1),
        (4, 3, [0, 3], 1),
        (4, 3, [3, 0], 1),
        (4, 3, [3, 3], 0),
    ] {
        c.add(
            cat,
            format!("ConvDims {oc} {ic} {k:?} {g}"),
            "Shape",
            &["ConvDims::new", "at least 1"],
            move || ConvDims::new(oc, ic, k, g).map(drop),
        );
    }
    for (oc, ic, g) in [(4, 6, 4), (6, 4, 4), (5, 5, 2)] {
        c.add(
            cat,
            format!("groups {g} for {ic}->{oc}"),
            "Shape",
            &["ConvDims::new", &format!("{g} groups")],
            move || ConvDims::new(oc, ic, [1, 1], g).map(drop),
        );
    }
    c.add(
        cat,
        "from_oihw length",
        "Shape",
        &["ConvWeight::from_oihw", "108", "107"],
        || {
            ConvWeight::from_oihw(
                ctx(),
                ConvDims::new(4, 3, [3, 3], 1)?,
                &[0.1; 107],
                DType::F32,
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "from_oihw dtype i32",
        "DType",
        &["ConvWeight::from_oihw", "i32"],
        || {
            ConvWeight::from_oihw(
                ctx(),
                ConvDims::new(4, 3, [3, 3], 1)?,
                &[0.1; 108],
                DType::I32,
            )
            .map(drop)
        },
    );
    for (name, x, out) in [
        ("input 3-D", vec![5, 5, 3], vec![1, 3, 3, 4]),
        ("input channels", vec![1, 5, 5, 2], vec![1, 3, 3, 4]),
        ("output shape", vec![1, 5, 5, 3], vec![1, 5, 5, 4]),
        ("output channels", vec![1, 5, 5, 3], vec![1, 3, 3, 5]),
        (
            "input smaller than kernel",
            vec![1, 2, 2, 3],
            vec![1, 1, 1, 4],
        ),
    ] {
        let xs = if name.contains("kernel") {
            "extent 2".to_string()
        } else {
            format!("{x:?}")
        };
        c.add(cat, name, "Shape", &["conv2d", &xs], move || {
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &f32s(&x),
                &conv_weight(),
                None,
                &f32s(&out),
            )
        });
    }
}

fn conv_options(c: &mut Catalogue) {
    let cat = "conv";
    for (name, desc) in [
        ("stride 0", ConvDesc::default().stride(0)),
        ("dilation 0", ConvDesc::default().dilation(0)),
    ] {
        c.add(
            cat,
            name,
            "InvalidArgument",
            &["conv2d", "at least 1"],
            move || {
                conv2d(
                    ctx(),
                    &mut enc(),
                    &desc,
                    &f32s(&[1, 5, 5, 3]),
                    &conv_weight(),
                    None,
                    &f32s(&[1, 3, 3, 4]),
                )
            },
        );
    }
    c.add(
        cat,
        "dilation overflow",
        "Shape",
        &["conv2d", "overflows"],
        || {
            let d = ConvDesc::default().dilation(usize::MAX);
            conv2d(
                ctx(),
                &mut enc(),
                &d,
                &f32s(&[1, 5, 5, 3]),
                &conv_weight(),
                None,
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
    c.add(cat, "x is i32", "DType", &["conv2d", "x", "i32"], || {
        conv2d(
            ctx(),
            &mut enc(),
            &ConvDesc::default(),
            &i32s(&[1, 5, 5, 3]),
            &conv_weight(),
            None,
            &f32s(&[1, 3, 3, 4]),
        )
    });
    c.add(
        cat,
        "bias length",
        "Shape",
        &["conv2d", "bias", "[3]"],
        || {
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &f32s(&[1, 5, 5, 3]),
                &conv_weight(),
                Some(&f32s(&[3])),
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
    c.add(
        cat,
        "x from another context",
        "InvalidArgument",
        &["conv2d", "x", "another context"],
        || {
            let x = Tensor::from_slice(other_ctx(), &[1, 5, 5, 3], &[0f32; 75])?;
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &x,
                &conv_weight(),
                None,
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
}

fn qconv_sweeps(c: &mut Catalogue) {
    let cat = "qconv";
    let qw = || {
        QConvWeight::quantize(
            ctx(),
            ConvDims::new(4, 8, [1, 1], 1).unwrap(),
            &[0.1; 32],
            &QuantScheme::symmetric(QType::I8),
        )
        .unwrap()
    };
    c.add(
        cat,
        "4-bit weights",
        "InvalidArgument",
        &["QConvWeight::from_codes", "i4", "i8 or u8"],
        || {
            let w = QConvWeight::quantize(
                ctx(),
                ConvDims::new(4, 8, [1, 1], 1)?,
                &[0.1; 32],
                &QuantScheme::symmetric(QType::I4),
            )?;
            qconv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &qt(QType::I8, &[1, 2, 2, 8]),
                &w,
                None,
                QGemmOutput::F32(&f32s(&[1, 2, 2, 4])),
            )
        },
    );
    c.add(
        cat,
        "quantize length",
        "Shape",
        &["QConvWeight::quantize", "32", "31"],
        || {
            QConvWeight::quantize(
                ctx(),
                ConvDims::new(4, 8, [1, 1], 1)?,
                &[0.1; 31],
                &QuantScheme::symmetric(QType::I8),
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "from_codes params for another shape",
        "Shape",
        &["QConvWeight::from_codes", "[4, 8, 1, 1]"],
        || {
            QConvWeight::from_codes(
                ctx(),
                ConvDims::new(4, 8, [1, 1], 1)?,
                &[0; 32],
                &qparams(QType::I8, &[32]),
            )
            .map(drop)
        },
    );
    for (name, x, out) in [
        ("input channels", vec![1, 2, 2, 7], vec![1, 2, 2, 4]),
        ("output shape", vec![1, 2, 2, 8], vec![1, 2, 2, 5]),
        ("input 2-D", vec![4, 8], vec![4, 4]),
    ] {
        let xs = format!("{x:?}");
        c.add(cat, name, "Shape", &["qconv2d", &xs], move || {
            qconv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &qt(QType::I8, &x),
                &qw(),
                None,
                QGemmOutput::F32(&f32s(&out)),
            )
        });
    }
    c.add(
        cat,
        "stride 0",
        "InvalidArgument",
        &["qconv2d", "at least 1"],
        move || {
            qconv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default().stride(0),
                &qt(QType::I8, &[1, 2, 2, 8]),
                &qw(),
                None,
                QGemmOutput::F32(&f32s(&[1, 2, 2, 4])),
            )
        },
    );
}

fn pool_sweeps(c: &mut Catalogue) {
    use wgpu_quant::ops::pool::pool2d;
    let cat = "pool";
    for kind in [PoolKind::Max, PoolKind::Avg] {
        c.add(
            cat,
            format!("{kind:?} stride 0"),
            "InvalidArgument",
            &["pool2d", "at least 1"],
            move || {
                pool2d(
                    ctx(),
                    &mut enc(),
                    &PoolDesc::new(kind, 2, 0),
                    &f32s(&[1, 4, 4, 2]),
                    &f32s(&[1, 2, 2, 2]),
                )
            },
        );
        c.add(
            cat,
            format!("{kind:?} input 3-D"),
            "Shape",
            &["pool2d", "[4, 4, 2]"],
            move || {
                pool2d(
                    ctx(),
                    &mut enc(),
                    &PoolDesc::new(kind, 2, 2),
                    &f32s(&[4, 4, 2]),
                    &f32s(&[1, 2, 2, 2]),
                )
            },
        );
        c.add(
            cat,
            format!("{kind:?} output shape"),
            "Shape",
            &["pool2d", "[1, 3, 3, 2]"],
            move || {
                pool2d(
                    ctx(),
                    &mut enc(),
                    &PoolDesc::new(kind, 2, 2),
                    &f32s(&[1, 4, 4, 2]),
                    &f32s(&[1, 3, 3, 2]),
                )
            },
        );
        c.add(
            cat,
            format!("{kind:?} i32 input"),
            "DType",
            &["pool2d", "x", "i32"],
            move || {
                pool2d(
                    ctx(),
                    &mut enc(),
                    &PoolDesc::new(kind, 2, 2),
                    &i32s(&[1, 4, 4, 2]),
                    &f32s(&[1, 2, 2, 2]),
                )
            },
        );
        c.add(
            cat,
            format!("{kind:?} padding overflow"),
            "Shape",
            &["pool2d", "overflows"],
            move || {
                let d = PoolDesc::new(kind, 2, 2).padding(Padding::uniform(usize::MAX));
                pool2d(
                    ctx(),
                    &mut enc(),
                    &d,
                    &f32s(&[1, 4, 4, 2]),
                    &f32s(&[1, 2, 2, 2]),
                )
            },
        );
    }
}

fn eltwise_sweeps(c: &mut Catalogue) {
    use wgpu_quant::desc::eltwise::{BinaryOp, UnaryOp};
    use wgpu_quant::ops::eltwise::{
        add, binary, cast, channel_affine, clip, layer_norm, map, qadd, row_reduce, softmax, Reduce,
    };
    let cat = "eltwise";
    c.add(
        cat,
        "add shapes",
        "Shape",
        &["add", "[2, 3]", "[3, 2]"],
        || {
            add(
                ctx(),
                &mut enc(),
                &f32s(&[2, 3]),
                &f32s(&[3, 2]),
                Clip::NONE,
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(cat, "add dtypes", "DType", &["add", "i32"], || {
        add(
            ctx(),
            &mut enc(),
            &f32s(&[2, 3]),
            &i32s(&[2, 3]),
            Clip::NONE,
            &f32s(&[2, 3]),
        )
    });
    for (lo, hi) in [(1.0f32, 0.0f32), (f32::NAN, 1.0), (0.0, f32::NAN)] {
        c.add(
            cat,
            format!("clip {lo}..{hi}"),
            "InvalidArgument",
            &["clip", &lo.to_string(), &hi.to_string()],
            move || clip(ctx(), &mut enc(), &f32s(&[4]), Clip { lo, hi }, &f32s(&[4])),
        );
        c.add(
            cat,
            format!("add clip {lo}..{hi}"),
            "InvalidArgument",
            &["add", &lo.to_string()],
            move || {
                add(
                    ctx(),
                    &mut enc(),
                    &f32s(&[4]),
                    &f32s(&[4]),
                    Clip { lo, hi },
                    &f32s(&[4]),
                )
            },
        );
    }
    c.add(cat, "cast i32", "DType", &["cast", "i32"], || {
        cast(ctx(), &mut enc(), &i32s(&[4]), &f32s(&[4]))
    });
    c.add(cat, "cast shapes", "Shape", &["cast", "[4]", "[5]"], || {
        cast(ctx(), &mut enc(), &f32s(&[4]), &f16s(&[5]))
    });
    for f in [UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::HardSwish] {
        c.add(
            cat,
            format!("map {f:?} shapes"),
            "Shape",
            &["map", "[4]", "[3]"],
            move || map(ctx(), &mut enc(), f, Clip::NONE, &f32s(&[4]), &f32s(&[3])),
        );
    }
    c.add(
        cat,
        "map HardSigmoid alpha NaN",
        "InvalidArgument",
        &["map", "NaN"],
        || {
            map(
                ctx(),
                &mut enc(),
                UnaryOp::HardSigmoid {
                    alpha: f32::NAN,
                    beta: 0.5,
                },
                Clip::NONE,
                &f32s(&[4]),
                &f32s(&[4]),
            )
        },
    );
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        c.add(
            cat,
            format!("binary {op:?} broadcast"),
            "Shape",
            &["binary", "[1, 2, 2, 3]", "[1, 1, 1, 2]"],
            move || {
                binary(
                    ctx(),
                    &mut enc(),
                    op,
                    &f32s(&[1, 2, 2, 3]),
                    &f32s(&[1, 1, 1, 2]),
                    Clip::NONE,
                    &f32s(&[1, 2, 2, 3]),
                )
            },
        );
    }
    c.add(
        cat,
        "softmax shapes",
        "Shape",
        &["softmax", "[2, 5]", "[2, 4]"],
        || softmax(ctx(), &mut enc(), &f32s(&[2, 5]), &f32s(&[2, 4])),
    );
    c.add(
        cat,
        "channel affine scale length",
        "Shape",
        &["channel_affine", "scale", "[4]", "F32 [5]"],
        || {
            channel_affine(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                &f32s(&[4]),
                &f32s(&[5]),
                &f32s(&[2, 5]),
            )
        },
    );
    c.add(
        cat,
        "channel affine shift type",
        "Shape",
        &["channel_affine", "shift", "I32"],
        || {
            channel_affine(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                &f32s(&[5]),
                &i32s(&[5]),
                &f32s(&[2, 5]),
            )
        },
    );
    c.add(
        cat,
        "channel affine output shape",
        "Shape",
        &["channel_affine", "[2, 5]", "[5, 2]"],
        || {
            channel_affine(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                &f32s(&[5]),
                &f32s(&[5]),
                &f32s(&[5, 2]),
            )
        },
    );
    c.add(
        cat,
        "layer norm shapes",
        "Shape",
        &["layer_norm", "[2, 5]", "[2, 4]"],
        || {
            layer_norm(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                None,
                None,
                1e-5,
                &f32s(&[2, 4]),
            )
        },
    );
    c.add(
        cat,
        "layer norm gamma length",
        "Shape",
        &["layer_norm", "gamma", "[4]", "F32 [5]"],
        || {
            layer_norm(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                Some(&f32s(&[4])),
                None,
                1e-5,
                &f32s(&[2, 5]),
            )
        },
    );
    c.add(
        cat,
        "layer norm beta type",
        "Shape",
        &["layer_norm", "beta", "I32"],
        || {
            layer_norm(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                None,
                Some(&i32s(&[5])),
                1e-5,
                &f32s(&[2, 5]),
            )
        },
    );
    // Row means: the output must be x with its last axis 1.
    for (x, out) in [
        (vec![2usize, 5], vec![2usize, 5]),
        (vec![2, 5], vec![5, 1]),
        (vec![3, 4, 2], vec![3, 1, 1]),
    ] {
        let says = format!("{out:?}");
        c.add(
            cat,
            format!("row mean {x:?} into {out:?}"),
            "Shape",
            &["row_reduce", &says],
            move || row_reduce(ctx(), &mut enc(), Reduce::Mean, &f32s(&x), &f32s(&out)),
        );
    }
    c.add(
        cat,
        "row mean of i32",
        "DType",
        &["row_reduce", "x", "i32"],
        || {
            row_reduce(
                ctx(),
                &mut enc(),
                Reduce::Max,
                &i32s(&[2, 5]),
                &f32s(&[2, 1]),
            )
        },
    );
    // Broadcasts over two separate runs of axes, or none.
    for b in [vec![2usize, 1, 4, 1], vec![1, 3, 1, 5], vec![2, 3, 4]] {
        let says = format!("{b:?}");
        c.add(
            cat,
            format!("binary broadcast {b:?} against [2, 3, 4, 5]"),
            "Shape",
            &["binary", &says, "[2, 3, 4, 5]"],
            move || {
                binary(
                    ctx(),
                    &mut enc(),
                    BinaryOp::RSub,
                    &f32s(&[2, 3, 4, 5]),
                    &f32s(&b),
                    Clip::NONE,
                    &f32s(&[2, 3, 4, 5]),
                )
            },
        );
    }
    for f in [
        UnaryOp::Pow { exponent: f32::NAN },
        UnaryOp::Rdiv {
            numerator: f32::INFINITY,
        },
    ] {
        c.add(
            cat,
            format!("map {f:?}"),
            "InvalidArgument",
            &["map", "non-finite"],
            move || map(ctx(), &mut enc(), f, Clip::NONE, &f32s(&[4]), &f32s(&[4])),
        );
    }
    for eps in [-1.0f32, f32::NAN, f32::INFINITY] {
        c.add(
            cat,
            format!("layer norm epsilon {eps}"),
            "InvalidArgument",
            &["layer_norm", "epsilon", &format!("{eps}")],
            move || {
                layer_norm(
                    ctx(),
                    &mut enc(),
                    &f32s(&[2, 5]),
                    None,
                    None,
                    eps,
                    &f32s(&[2, 5]),
                )
            },
        );
    }
    c.add(
        cat,
        "qadd 4-bit",
        "InvalidArgument",
        &["qadd", "i4"],
        || {
            qadd(
                ctx(),
                &mut enc(),
                &qt(QType::I4, &[8]),
                &qt(QType::I8, &[8]),
                Clip::NONE,
                &qt(QType::I8, &[8]),
            )
        },
    );
    c.add(cat, "qadd shapes", "Shape", &["qadd", "[8]", "[9]"], || {
        qadd(
            ctx(),
            &mut enc(),
            &qt(QType::I8, &[8]),
            &qt(QType::I8, &[9]),
            Clip::NONE,
            &qt(QType::I8, &[8]),
        )
    });
}

fn layout_sweeps(c: &mut Catalogue) {
    let cat = "layout";
    for f in [[0, 2], [2, 0]] {
        c.add(
            cat,
            format!("upsample {f:?}"),
            "InvalidArgument",
            &["upsample_nearest", &format!("{f:?}")],
            move || {
                upsample_nearest(
                    ctx(),
                    &mut enc(),
                    &f32s(&[1, 2, 2, 3]),
                    f,
                    &f32s(&[1, 4, 4, 3]),
                )
            },
        );
    }
    c.add(
        cat,
        "upsample output",
        "Shape",
        &["upsample_nearest", "[1, 4, 5, 3]"],
        || {
            upsample_nearest(
                ctx(),
                &mut enc(),
                &f32s(&[1, 2, 2, 3]),
                [2, 2],
                &f32s(&[1, 4, 5, 3]),
            )
        },
    );
    c.add(
        cat,
        "upsample overflow",
        "Shape",
        &["upsample_nearest", "overflow"],
        || {
            upsample_nearest(
                ctx(),
                &mut enc(),
                &f32s(&[1, 2, 2, 3]),
                [usize::MAX, 2],
                &f32s(&[1, 4, 4, 3]),
            )
        },
    );
}

fn layout_resize(c: &mut Catalogue) {
    let cat = "layout";
    for scales in [[0.0f32, 1.0], [f32::NAN, 1.0], [-1.0, 1.0]] {
        c.add(
            cat,
            format!("resize scales {scales:?}"),
            "InvalidArgument",
            &["resize_bilinear", "scale"],
            move || {
                resize_bilinear(
                    ctx(),
                    &mut enc(),
                    &f32s(&[1, 2, 2, 3]),
                    ResizeCoords::HalfPixel,
                    scales,
                    &f32s(&[1, 4, 4, 3]),
                )
            },
        );
    }
    c.add(
        cat,
        "transpose_to_nhwc shapes",
        "Shape",
        &[
            "transpose_to_nhwc",
            "[1, 2, 2, 2]",
            "[1, 2, 2, 3] is needed",
        ],
        || {
            transpose_to_nhwc(
                ctx(),
                &mut enc(),
                &f32s(&[1, 3, 2, 2]),
                &f32s(&[1, 2, 2, 2]),
            )
        },
    );
    c.add(
        cat,
        "transpose_to_nchw shapes",
        "Shape",
        &[
            "transpose_to_nchw",
            "[1, 3, 2, 3]",
            "[1, 3, 2, 2] is needed",
        ],
        || {
            transpose_to_nchw(
                ctx(),
                &mut enc(),
                &f32s(&[1, 2, 2, 3]),
                &f32s(&[1, 3, 2, 3]),
            )
        },
    );
    for b in [[0, 2], [2, 0]] {
        c.add(
            cat,
            format!("depth_to_space {b:?}"),
            "InvalidArgument",
            &["depth_to_space", &format!("{b:?}")],
            move || {
                depth_to_space(
                    ctx(),
                    &mut enc(),
                    &f32s(&[1, 2, 2, 8]),
                    b,
                    &f32s(&[1, 4, 4, 2]),
                )
            },
        );
    }
    for b in [[3, 3], [1, 3]] {
        c.add(
            cat,
            format!("depth_to_space {b:?} of 8 channels"),
            "Shape",
            &["depth_to_space", "8 channels", &format!("{b:?}")],
            move || {
                depth_to_space(
                    ctx(),
                    &mut enc(),
                    &f32s(&[1, 2, 2, 8]),
                    b,
                    &f32s(&[1, 4, 4, 2]),
                )
            },
        );
    }
    c.add(
        cat,
        "concat heights",
        "Shape",
        &["concat_channels", "[1, 3, 2, 2]"],
        || {
            concat_channels(
                ctx(),
                &mut enc(),
                &[&f32s(&[1, 2, 2, 2]), &f32s(&[1, 3, 2, 2])],
                &f32s(&[1, 2, 2, 4]),
            )
        },
    );
    c.add(
        cat,
        "concat none",
        "InvalidArgument",
        &["concat_channels", "no input"],
        || concat_channels(ctx(), &mut enc(), &[], &f32s(&[1, 2, 2, 4])),
    );
    // (what, x's shape, perm, the output's shape, the variant, what the message names)
    type PermCase = (
        &'static str,
        &'static [usize],
        &'static [usize],
        &'static [usize],
        &'static str,
        &'static [&'static str],
    );
    let perm_cases: [PermCase; 6] = [
        (
            "repeated axis",
            &[2, 3, 4],
            &[0, 0, 1],
            &[2, 2, 3],
            "InvalidArgument",
            &["[0, 0, 1]", "not a permutation"],
        ),
        (
            "axis out of range",
            &[2, 3, 4],
            &[0, 3, 1],
            &[2, 4, 3],
            "InvalidArgument",
            &["[0, 3, 1]", "3 axes"],
        ),
        (
            "too few axes",
            &[2, 3, 4],
            &[1, 0],
            &[3, 2, 4],
            "InvalidArgument",
            &["[1, 0]", "not a permutation"],
        ),
        (
            "rank 7",
            &[1, 1, 1, 1, 1, 1, 2],
            &[0, 1, 2, 3, 4, 5, 6],
            &[1, 1, 1, 1, 1, 1, 2],
            "InvalidArgument",
            &["rank 7", "1 to 6"],
        ),
        (
            "wrong output",
            &[2, 3, 4],
            &[2, 1, 0],
            &[2, 3, 4],
            "Shape",
            &["[4, 3, 2]", "[2, 3, 4]"],
        ),
        (
            "output elements",
            &[2, 3],
            &[1, 0],
            &[3, 3],
            "Shape",
            &["[3, 2]", "[3, 3]"],
        ),
    ];
    for (what, xs, perm, os, variant, needles) in perm_cases {
        let mut n = vec!["permute"];
        n.extend_from_slice(needles);
        c.add(cat, format!("permute {what}"), variant, &n, move || {
            permute(ctx(), &mut enc(), &f32s(xs), perm, &f32s(os))
        });
    }
    type CropCase = (
        &'static str,
        &'static [usize],
        &'static [usize],
        &'static [usize],
        &'static [&'static str],
    );
    let crop_cases: [CropCase; 4] = [
        (
            "past the end",
            &[2, 3, 4],
            &[0, 2, 0],
            &[2, 2, 2],
            &["[2, 2, 2] at [0, 2, 0]", "[2, 3, 4]"],
        ),
        (
            "start rank",
            &[2, 3, 4],
            &[0, 0],
            &[2, 2, 2],
            &["[2, 2, 2] at [0, 0]", "does not fit"],
        ),
        (
            "size rank",
            &[2, 3, 4],
            &[0, 0, 0],
            &[2, 2],
            &["[2, 2] at [0, 0, 0]", "does not fit"],
        ),
        (
            "start overflow",
            &[2, 3, 4],
            &[0, usize::MAX, 0],
            &[2, 2, 2],
            &["18446744073709551615", "does not fit"],
        ),
    ];
    for (what, xs, start, os, needles) in crop_cases {
        let mut n = vec!["crop"];
        n.extend_from_slice(needles);
        c.add(cat, format!("crop {what}"), "Shape", &n, move || {
            wgpu_quant::ops::layout::crop(ctx(), &mut enc(), &f32s(xs), start, &f32s(os))
        });
    }
    c.add(
        cat,
        "permute i32",
        "DType",
        &["permute", "x", "i32"],
        || {
            let x = Tensor::zeros(ctx(), &[2, 3], DType::I32)?;
            permute(ctx(), &mut enc(), &x, &[1, 0], &f32s(&[3, 2]))
        },
    );
    strided_op_cases(c, cat);
}

/// Slices with steps, broadcasts, concatenations, pads and gathers of row-major tensors.
fn strided_op_cases(c: &mut Catalogue, cat: &'static str) {
    use wgpu_quant::ops::layout::{concat, expand, gather, pad, slice, PadMode};
    c.add(cat, "slice step 0", "Shape", &["slice", "step 0"], || {
        slice(
            ctx(),
            &mut enc(),
            &f32s(&[2, 5]),
            &[0, 0],
            &[1, 0],
            &f32s(&[2, 3]),
        )
    });
    c.add(
        cat,
        "slice walks out backwards",
        "Shape",
        &["slice", "axis 1", "step -2"],
        || {
            slice(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                &[0, 2],
                &[1, -2],
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "slice rank",
        "Shape",
        &["slice", "one value per axis"],
        || {
            slice(
                ctx(),
                &mut enc(),
                &f32s(&[2, 5]),
                &[0],
                &[1],
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "expand a non-unit axis",
        "Shape",
        &["expand", "[2, 3]", "[2, 4]"],
        || expand(ctx(), &mut enc(), &f32s(&[2, 3]), &f32s(&[2, 4])),
    );
    c.add(
        cat,
        "expand to a lower rank",
        "Shape",
        &["expand", "[2, 3]", "[3]"],
        || expand(ctx(), &mut enc(), &f32s(&[2, 3]), &f32s(&[3])),
    );
    c.add(
        cat,
        "concat nothing",
        "Shape",
        &["concat", "no input"],
        || concat(ctx(), &mut enc(), &[], 0, &f32s(&[2])),
    );
    c.add(
        cat,
        "concat mismatch",
        "Shape",
        &["concat", "input 1 [3, 3]", "outside axis 1"],
        || {
            concat(
                ctx(),
                &mut enc(),
                &[&f32s(&[2, 3]), &f32s(&[3, 3])],
                1,
                &f32s(&[2, 6]),
            )
        },
    );
    c.add(cat, "concat axis", "Shape", &["concat", "axis 2"], || {
        concat(ctx(), &mut enc(), &[&f32s(&[2, 3])], 2, &f32s(&[2, 3]))
    });
    c.add(
        cat,
        "concat output",
        "Shape",
        &["concat", "[2, 6]", "[2, 5]"],
        || {
            concat(
                ctx(),
                &mut enc(),
                &[&f32s(&[2, 3]), &f32s(&[2, 3])],
                1,
                &f32s(&[2, 5]),
            )
        },
    );
    c.add(
        cat,
        "reflect pad too long",
        "Shape",
        &["pad", "reflect pads 3"],
        || {
            let mode = PadMode::Reflect;
            pad(
                ctx(),
                &mut enc(),
                &f32s(&[3]),
                &[3],
                &[0],
                mode,
                &f32s(&[6]),
            )
        },
    );
    c.add(
        cat,
        "pad count",
        "Shape",
        &["pad", "one pad per axis"],
        || {
            let mode = PadMode::Edge;
            pad(
                ctx(),
                &mut enc(),
                &f32s(&[2, 3]),
                &[1],
                &[1],
                mode,
                &f32s(&[4, 3]),
            )
        },
    );
    c.add(
        cat,
        "pad output",
        "Shape",
        &["pad", "[4, 5]", "[4, 4]"],
        || {
            let mode = PadMode::Constant(0.0);
            pad(
                ctx(),
                &mut enc(),
                &f32s(&[2, 3]),
                &[1, 1],
                &[1, 1],
                mode,
                &f32s(&[4, 4]),
            )
        },
    );
    c.add(
        cat,
        "gather f32 indices",
        "InvalidArgument",
        &["gather", "U32"],
        || {
            let idx = f32s(&[2]);
            gather(ctx(), &mut enc(), &f32s(&[2, 3]), 1, &idx, &f32s(&[2, 2]))
        },
    );
    c.add(cat, "gather axis", "Shape", &["gather", "axis 2"], || {
        let idx = Tensor::from_slice(ctx(), &[2], &[0u32, 1])?;
        gather(ctx(), &mut enc(), &f32s(&[2, 3]), 2, &idx, &f32s(&[2, 2]))
    });
    c.add(
        cat,
        "gather output",
        "Shape",
        &["gather", "[2, 2]", "[2, 3]"],
        || {
            let idx = Tensor::from_slice(ctx(), &[2], &[0u32, 1])?;
            gather(ctx(), &mut enc(), &f32s(&[2, 3]), 1, &idx, &f32s(&[2, 3]))
        },
    );
}

/// The training kernels: shapes, dtypes, aliasing and hyperparameters.
fn train_sweeps(c: &mut Catalogue) {
    use wgpu_quant::ops::train::{
        adam_step, clip_backward, column_sums, linear_backward, sgd_step, softmax_cross_entropy,
        Adam, Sgd,
    };
    let cat = "train";
    c.add(
        cat,
        "clip backward shapes",
        "Shape",
        &["clip_backward", "[4]"],
        || {
            clip_backward(
                ctx(),
                &mut enc(),
                &f32s(&[3]),
                &f32s(&[4]),
                Clip::RELU,
                &f32s(&[3]),
            )
        },
    );
    c.add(
        cat,
        "clip backward f16",
        "InvalidArgument",
        &["clip_backward", "f32"],
        || {
            let h = Tensor::zeros(ctx(), &[3], DType::F16)?;
            clip_backward(ctx(), &mut enc(), &h, &f32s(&[3]), Clip::RELU, &f32s(&[3]))
        },
    );
    c.add(
        cat,
        "cross-entropy labels",
        "Shape",
        &["softmax_cross_entropy", "labels [2]"],
        || {
            let labels = Tensor::from_slice(ctx(), &[3], &[0u32, 1, 2])?;
            softmax_cross_entropy(
                ctx(),
                &mut enc(),
                &f32s(&[2, 4]),
                &labels,
                &f32s(&[2, 4]),
                &f32s(&[2]),
            )
        },
    );
    c.add(
        cat,
        "cross-entropy f32 labels",
        "Shape",
        &["softmax_cross_entropy", "U32"],
        || {
            softmax_cross_entropy(
                ctx(),
                &mut enc(),
                &f32s(&[2, 4]),
                &f32s(&[2]),
                &f32s(&[2, 4]),
                &f32s(&[2]),
            )
        },
    );
    c.add(
        cat,
        "sgd NaN rate",
        "InvalidArgument",
        &["sgd_step", "lr = NaN"],
        || {
            let opt = Sgd {
                lr: f32::NAN,
                momentum: 0.0,
                weight_decay: 0.0,
            };
            sgd_step(
                ctx(),
                &mut enc(),
                &opt,
                &f32s(&[3]),
                &f32s(&[3]),
                &f32s(&[3]),
            )
        },
    );
    c.add(cat, "sgd shapes", "Shape", &["sgd_step", "[4]"], || {
        let opt = Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
        };
        sgd_step(
            ctx(),
            &mut enc(),
            &opt,
            &f32s(&[3]),
            &f32s(&[4]),
            &f32s(&[3]),
        )
    });
    c.add(
        cat,
        "adam beta",
        "InvalidArgument",
        &["adam_step", "beta2 = 1"],
        || {
            let opt = Adam {
                beta2: 1.0,
                ..Adam::default()
            };
            adam_step(
                ctx(),
                &mut enc(),
                &opt,
                1,
                &f32s(&[3]),
                &f32s(&[3]),
                (&f32s(&[3]), &f32s(&[3])),
            )
        },
    );
    c.add(cat, "column sums", "Shape", &["column_sums", "[3]"], || {
        column_sums(ctx(), &mut enc(), &f32s(&[2, 3]), &f32s(&[2]))
    });
    c.add(
        cat,
        "oihw conv weight shape",
        "Shape",
        &["conv2d_oihw", "w"],
        || {
            use wgpu_quant::ops::conv::{ConvDesc, ConvDims};
            let dims = ConvDims::new(4, 3, [3, 3], 1)?;
            let desc = ConvDesc::default();
            let (x, w) = (f32s(&[1, 5, 5, 3]), f32s(&[4, 3, 3]));
            wgpu_quant::ops::train::conv2d_oihw(
                ctx(),
                &mut enc(),
                (&dims, &desc),
                &x,
                (&w, None),
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
    c.add(
        cat,
        "pool backward dy shape",
        "Shape",
        &["pool2d_backward", "dy"],
        || {
            use wgpu_quant::desc::pool::{PoolDesc, PoolKind};
            let desc = PoolDesc::new(PoolKind::Max, 2, 2);
            let (x, dy) = (f32s(&[1, 4, 4, 3]), f32s(&[1, 3, 3, 3]));
            wgpu_quant::ops::train::pool2d_backward(
                ctx(),
                &mut enc(),
                &desc,
                &x,
                &dy,
                &f32s(&[1, 4, 4, 3]),
            )
        },
    );
    c.add(
        cat,
        "conv backward dy shape",
        "Shape",
        &["conv2d_backward_input", "dy"],
        || {
            use wgpu_quant::ops::conv::{ConvDesc, ConvDims};
            let dims = ConvDims::new(4, 3, [3, 3], 1)?;
            let (dy, w) = (f32s(&[1, 5, 5, 4]), f32s(&[4, 3, 3, 3]));
            let desc = ConvDesc::default();
            wgpu_quant::ops::train::conv2d_backward_input(
                ctx(),
                &mut enc(),
                (&dims, &desc),
                &dy,
                &w,
                &f32s(&[1, 5, 5, 3]),
            )
        },
    );
    c.add(
        cat,
        "conv backward weight shape",
        "Shape",
        &["conv2d_backward_weight", "dw"],
        || {
            use wgpu_quant::ops::conv::{ConvDesc, ConvDims};
            let dims = ConvDims::new(4, 3, [3, 3], 1)?;
            let (x, dy) = (f32s(&[1, 5, 5, 3]), f32s(&[1, 3, 3, 4]));
            let desc = ConvDesc::default();
            wgpu_quant::ops::train::conv2d_backward_weight(
                ctx(),
                &mut enc(),
                (&dims, &desc),
                &x,
                &dy,
                &f32s(&[4, 3, 3]),
            )
        },
    );
    c.add(
        cat,
        "fake quant one code",
        "InvalidArgument",
        &["fake_quantize", "[3, 3]"],
        || {
            use wgpu_quant::ops::train::{fake_quant_params, fake_quantize, FakeQuant};
            let qp = fake_quant_params(ctx(), &[0.5], &[0])?;
            let fq = FakeQuant {
                channels: 1,
                inner: 4,
                qmin: 3,
                qmax: 3,
            };
            fake_quantize(ctx(), &mut enc(), &fq, &f32s(&[4]), &qp, &f32s(&[4]))
        },
    );
    c.add(
        cat,
        "fake quant NaN scale",
        "InvalidArgument",
        &["fake_quant_params", "scale NaN"],
        || wgpu_quant::ops::train::fake_quant_params(ctx(), &[f32::NAN], &[0]).map(|_| ()),
    );
    c.add(
        cat,
        "linear backward",
        "Shape",
        &["linear_backward", "[4, 5]"],
        || {
            let (x, w, dy) = (f32s(&[2, 3]), f32s(&[4, 5]), f32s(&[2, 4]));
            linear_backward(ctx(), &mut enc(), (&x, &w, &dy), None, &f32s(&[4, 3]), None)
        },
    );
}

fn quant_op_sweeps(c: &mut Catalogue) {
    use wgpu_quant::ops::quant::{dequantize, dynamic_quantize, quantize};
    use wgpu_quant::qtensor::DynamicQuant;
    let cat = "quantize ops";
    c.add(
        cat,
        "quantize shapes",
        "Shape",
        &["quantize", "[4]", "[5]"],
        || quantize(ctx(), &mut enc(), &f32s(&[4]), &qt(QType::I8, &[5])),
    );
    c.add(
        cat,
        "quantize i32",
        "DType",
        &["quantize", "x", "i32"],
        || quantize(ctx(), &mut enc(), &i32s(&[4]), &qt(QType::I8, &[4])),
    );
    c.add(
        cat,
        "dequantize shapes",
        "Shape",
        &["dequantize", "[4]", "[5]"],
        || dequantize(ctx(), &mut enc(), &qt(QType::I8, &[4]), &f32s(&[5])),
    );
    c.add(
        cat,
        "dequantize i32",
        "DType",
        &["dequantize", "i32"],
        || dequantize(ctx(), &mut enc(), &qt(QType::I8, &[4]), &i32s(&[4])),
    );
    c.add(
        cat,
        "dynamic scheme mismatch",
        "InvalidArgument",
        &["dynamic_quantize"],
        || {
            let q = QTensor::for_dynamic(ctx(), &DynamicQuant::onnx(), &[4])?;
            dynamic_quantize(
                ctx(),
                &mut enc(),
                &f32s(&[4]),
                &DynamicQuant {
                    scheme: QuantScheme::symmetric(QType::I8),
                },
                &q,
            )
        },
    );
    c.add(
        cat,
        "dynamic shapes",
        "Shape",
        &["dynamic_quantize", "[4]", "[5]"],
        || {
            let q = QTensor::for_dynamic(ctx(), &DynamicQuant::onnx(), &[5])?;
            dynamic_quantize(ctx(), &mut enc(), &f32s(&[4]), &DynamicQuant::onnx(), &q)
        },
    );
    c.add(
        cat,
        "from_codes out of range",
        "InvalidArgument",
        &["QTensor::from_codes", "300"],
        || QTensor::from_codes(ctx(), &qparams(QType::U8, &[2]), &[0, 300]).map(drop),
    );
    c.add(
        cat,
        "from_codes length",
        "Shape",
        &["QTensor::from_codes", "3"],
        || QTensor::from_codes(ctx(), &qparams(QType::I8, &[2]), &[0, 1, 2]).map(drop),
    );
    c.add(
        cat,
        "reshape count",
        "Shape",
        &["QTensor::reshape", "[3]"],
        || qt(QType::I8, &[4]).reshape(&[3]).map(drop),
    );
    for (qtype, lo, hi) in [
        (QType::I8, -129, 127),
        (QType::U8, 0, 256),
        (QType::I8, 5, 5),
        (QType::I4, -8, 8),
    ] {
        c.add(
            cat,
            format!("{qtype} code range {lo}..={hi}"),
            "InvalidArgument",
            &["QuantParams::with_code_range", &format!("{lo}..={hi}")],
            move || qparams(qtype, &[2]).with_code_range(lo, hi).map(drop),
        );
    }
}

fn observer_sweeps(c: &mut Catalogue) {
    let cat = "observer";
    for m in [0.0f32, -0.5, 1.5, f32::NAN] {
        c.add(
            cat,
            format!("momentum {m}"),
            "InvalidArgument",
            &["Observer::new", "momentum", &m.to_string()],
            move || {
                Observer::new(
                    ObserverKind::MovingAverage { momentum: m },
                    Granularity::PerTensor,
                )
                .map(drop)
            },
        );
    }
    for p in [0.0f32, 50.0, 100.5, f32::NAN] {
        c.add(
            cat,
            format!("percentile {p}"),
            "InvalidArgument",
            &["Observer::new", "percentile", &p.to_string()],
            move || {
                Observer::new(
                    ObserverKind::Percentile { percentile: p },
                    Granularity::PerTensor,
                )
                .map(drop)
            },
        );
    }
    for g in [
        Granularity::PerRow,
        Granularity::PerGroup {
            axis: 0,
            group_size: 2,
        },
    ] {
        c.add(
            cat,
            format!("granularity {g:?}"),
            "InvalidArgument",
            &["Observer::new", "per tensor or per channel"],
            move || Observer::new(ObserverKind::MinMax, g).map(drop),
        );
    }
    for kind in ObserverKind::standard() {
        for (what, v) in [
            ("NaN", f32::NAN),
            ("inf", f32::INFINITY),
            ("-inf", f32::NEG_INFINITY),
        ] {
            c.add(
                cat,
                format!("{} batch with {what}", kind.name()),
                "InvalidArgument",
                &["Observer::observe", what, "index 2", "allow_nonfinite"],
                move || {
                    let mut o = Observer::new(kind, Granularity::PerTensor)?;
                    o.observe(
                        ctx(),
                        &Tensor::from_slice(ctx(), &[4], &[1.0, 2.0, v, 3.0])?,
                    )
                },
            );
        }
        c.add(
            cat,
            format!("{} all-NaN batch skipped when allowed", kind.name()),
            "Ok",
            &[],
            move || {
                let mut o = Observer::new(kind, Granularity::PerTensor)?;
                o.allow_nonfinite(true);
                o.observe(ctx(), &Tensor::from_slice(ctx(), &[3], &[f32::NAN; 3])?)?;
                o.observe(ctx(), &Tensor::from_slice(ctx(), &[3], &[-1.0, 0.5, 2.0])?)?;
                let (lo, hi) = o.min_max();
                if (lo[0], hi[0]) != (-1.0, 2.0) || o.nonfinite() != 3 {
                    return Err(Error::InvalidArgument {
                        op: "probe",
                        detail: format!("range {lo:?}..{hi:?}, {} skipped", o.nonfinite()),
                    });
                }
                Ok(())
            },
        );
    }
    c.add(
        cat,
        "empty batch",
        "Shape",
        &["Observer::observe", "empty"],
        || {
            let mut o = Observer::new(ObserverKind::MinMax, Granularity::PerTensor)?;
            o.observe(ctx(), &Tensor::zeros(ctx(), &[0, 3], DType::F32)?)
        },
    );
    c.add(
        cat,
        "channels change",
        "Shape",
        &["Observer::observe", "3 channels", "earlier ones had 2"],
        || {
            let mut o = Observer::new(ObserverKind::MinMax, Granularity::PerChannel { axis: 1 })?;
            o.observe(ctx(), &f32s(&[2, 2]))?;
            o.observe(ctx(), &f32s(&[2, 3]))
        },
    );
    c.add(
        cat,
        "scheme granularity differs",
        "InvalidArgument",
        &["Observer::compute_params", "PerChannel"],
        || {
            let mut o = Observer::new(ObserverKind::MinMax, Granularity::PerTensor)?;
            o.observe(ctx(), &f32s(&[2, 2]))?;
            o.compute_params(&QuantScheme::symmetric(QType::I8).per_channel(0), &[2, 2])
                .map(drop)
        },
    );
    c.add(cat, "i32 batch", "DType", &["i32"], || {
        let mut o = Observer::new(ObserverKind::MinMax, Granularity::PerTensor)?;
        o.observe(ctx(), &i32s(&[4]))
    });
}

fn lenet_file() -> WeightFile {
    WeightFile::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/mnist/lenet.safetensors"
    ))
    .unwrap()
}

fn file_sweeps(c: &mut Catalogue) {
    let cat = "WeightFile";
    let good = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/mnist/lenet.safetensors"
    ))
    .unwrap();
    for cut in [0usize, 4, 8, 20, 200] {
        let b = good[..cut.min(good.len())].to_vec();
        c.add(
            cat,
            format!("truncated to {cut} bytes"),
            "File",
            &["cut.safetensors", "not a safetensors file"],
            move || WeightFile::from_bytes(&b, "cut.safetensors").map(drop),
        );
    }
    let b = good[..good.len() - 3].to_vec();
    c.add(
        cat,
        "data cut short",
        "File",
        &["short.safetensors"],
        move || WeightFile::from_bytes(&b, "short.safetensors").map(drop),
    );
    c.add(
        cat,
        "missing file",
        "File",
        &["/nonexistent/w.safetensors"],
        || WeightFile::load("/nonexistent/w.safetensors").map(drop),
    );
    for (dtype, size) in [("I32", 4usize), ("I8", 1), ("F64", 8), ("BOOL", 1)] {
        let header = format!(
            "{{\"w\":{{\"dtype\":\"{dtype}\",\"shape\":[2],\"data_offsets\":[0,{}]}}}}",
            2 * size
        );
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(vec![0u8; 2 * size]);
        c.add(
            cat,
            format!("dtype {dtype}"),
            "File",
            &["x.safetensors", "'w'", "F32, F16 or BF16"],
            move || WeightFile::from_bytes(&b, "x.safetensors").map(drop),
        );
    }
    c.add(
        cat,
        "tensor missing",
        "InvalidArgument",
        &["'nope'", "missing", "lenet.safetensors"],
        || lenet_file().tensor("nope", &[1]).map(drop),
    );
    c.add(
        cat,
        "tensor shape",
        "Shape",
        &["'conv1.weight'", "[10, 1, 5, 5]", "[10, 1, 3, 3]"],
        || {
            lenet_file()
                .tensor("conv1.weight", &[10, 1, 3, 3])
                .map(drop)
        },
    );
    for (what, v) in [
        ("inf", f32::INFINITY),
        ("-inf", f32::NEG_INFINITY),
        ("NaN", f32::NAN),
    ] {
        c.add(
            cat,
            format!("bias holding {what}"),
            "InvalidArgument",
            &["'fc2.bias'", what, "index 7", "allow_nonfinite"],
            move || {
                let mut w = lenet_file();
                let mut b = w.tensor("fc2.bias", &[10])?.to_vec();
                b[7] = v;
                w.insert("fc2.bias", &[10], b)?;
                Model::new(ctx(), &lenet(), &w, DType::F32, &[1, 28, 28, 1]).map(drop)
            },
        );
    }
    c.add(cat, "NaN accepted with allow_nonfinite", "Ok", &[], || {
        let mut w = lenet_file();
        let mut b = w.tensor("fc2.bias", &[10])?.to_vec();
        b[7] = f32::NAN;
        w.insert("fc2.bias", &[10], b)?;
        w.allow_nonfinite(true);
        Model::new(ctx(), &lenet(), &w, DType::F32, &[1, 28, 28, 1]).map(drop)
    });
    c.add(
        cat,
        "insert length",
        "Shape",
        &["'w'", "[2, 3]", "6", "5"],
        || WeightFile::default().insert("w", &[2, 3], vec![0.0; 5]),
    );
}

fn model_sweeps(c: &mut Catalogue) {
    let cat = "model";
    // Matrix products of activations and permutes whose shapes do not fit.
    type GraphCase = (
        &'static str,
        &'static [usize],
        Layer,
        &'static [&'static str],
    );
    let graph_cases: [GraphCase; 5] = [
        (
            "crop outside its view",
            &[2, 3, 4],
            Layer::Crop {
                view: vec![6, 4],
                start: vec![5, 0],
                step: vec![1, 1],
                size: vec![2, 4],
            },
            &["'mm'", "axis 0: 2 elements from 5", "[6, 4]"],
        ),
        (
            "matmul inner dimensions",
            &[2, 3, 4],
            Layer::MatMul { other: 0 },
            &["'mm'", "[2, 3, 4]", "[.., K, N]"],
        ),
        (
            "matmul of a later node",
            &[2, 4, 4],
            Layer::MatMul { other: 1 },
            &["'mm'", "node 1", "not before it"],
        ),
        (
            "permute view",
            &[2, 3, 4],
            Layer::Permute {
                view: vec![5, 5],
                perm: vec![1, 0],
            },
            &["'mm'", "[2, 3, 4]", "[5, 5]"],
        ),
        (
            "permute perm",
            &[2, 3, 4],
            Layer::Permute {
                view: vec![6, 4],
                perm: vec![0, 0],
            },
            &["'mm'", "[0, 0]", "not a permutation"],
        ),
    ];
    for (what, input, layer, needles) in graph_cases {
        c.add(
            cat,
            what.to_string(),
            "InvalidArgument",
            needles,
            move || {
                let mut g = Graph::default();
                g.push(
                    "id",
                    Layer::Permute {
                        view: input.to_vec(),
                        perm: (0..input.len()).collect(),
                    },
                );
                g.push("mm", layer.clone());
                Model::new(ctx(), &g, &WeightFile::default(), DType::F32, input).map(drop)
            },
        );
    }
    c.add(
        cat,
        "dtype i8",
        "InvalidArgument",
        &["model", "F32 or F16", "I8"],
        || Model::new(ctx(), &lenet(), &lenet_file(), DType::I8, &[1, 28, 28, 1]).map(drop),
    );
    for (shape, says) in [
        (vec![1, 28, 28], "[1, 28, 28]"),
        (vec![1, 28, 28, 3], "[1, 28, 28, 3]"),
        (vec![1, 4, 4, 1], "extent 4"),
    ] {
        c.add(
            cat,
            format!("input {shape:?}"),
            "InvalidArgument",
            &["'conv1'", "conv2d", says],
            move || Model::new(ctx(), &lenet(), &lenet_file(), DType::F32, &shape).map(drop),
        );
    }
    c.add(
        cat,
        "missing weight",
        "InvalidArgument",
        &["'conv1.weight'", "missing"],
        || {
            Model::new(
                ctx(),
                &lenet(),
                &WeightFile::default(),
                DType::F32,
                &[1, 28, 28, 1],
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "add of a later node",
        "InvalidArgument",
        &["add"],
        || {
            let mut g = Graph::default();
            g.push(
                "a",
                Layer::Add {
                    other: 5,
                    clip: Clip::NONE,
                },
            );
            Model::new(ctx(), &g, &WeightFile::default(), DType::F32, &[1, 4]).map(drop)
        },
    );
    c.add(
        cat,
        "forward input shape",
        "Shape",
        &["[1, 27, 28, 1]"],
        || {
            let m = Model::new(ctx(), &lenet(), &lenet_file(), DType::F32, &[1, 28, 28, 1])?;
            let mut e = enc();
            m.forward(ctx(), &mut e, &f32s(&[1, 27, 28, 1])).map(drop)
        },
    );
}

fn qmodel_sweeps(c: &mut Catalogue) {
    let cat = "model";
    c.add(
        cat,
        "static calibration without batches",
        "InvalidArgument",
        &["static", "batch"],
        || {
            QModel::calibrate(
                ctx(),
                &lenet(),
                &lenet_file(),
                &[1, 28, 28, 1],
                &[],
                ObserverKind::MinMax,
                QMode::Static,
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "calibration batch with inf",
        "InvalidArgument",
        &["QModel::calibrate", "batch 1", "input", "inf"],
        || {
            let good = f32s(&[1, 28, 28, 1]);
            let mut v = vec![0.5f32; 784];
            v[100] = f32::INFINITY;
            let bad = Tensor::from_slice(ctx(), &[1, 28, 28, 1], &v)?;
            QModel::calibrate(
                ctx(),
                &lenet(),
                &lenet_file(),
                &[1, 28, 28, 1],
                &[good, bad],
                ObserverKind::MinMax,
                QMode::Static,
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "dynamic calibration batch with NaN",
        "InvalidArgument",
        &["QModel::calibrate", "batch 0", "NaN"],
        || {
            let bad = Tensor::from_slice(ctx(), &[1, 28, 28, 1], &[f32::NAN; 784])?;
            QModel::calibrate(
                ctx(),
                &lenet(),
                &lenet_file(),
                &[1, 28, 28, 1],
                &[bad],
                ObserverKind::MinMax,
                QMode::Dynamic,
            )
            .map(drop)
        },
    );
    for (name, at) in [
        ("a weight code", 0.25f64),
        ("a scale", 0.6),
        ("the last byte", 1.0),
    ] {
        c.add(
            cat,
            format!("QModel::load with {name} changed"),
            "File",
            &["CRC-32", "changed or damaged"],
            move || {
                let q = QModel::calibrate(
                    ctx(),
                    &lenet(),
                    &lenet_file(),
                    &[1, 28, 28, 1],
                    &[],
                    ObserverKind::MinMax,
                    QMode::Dynamic,
                )?;
                let path = std::env::temp_dir().join(format!(
                    "misuse-crc-{}-{at}.safetensors",
                    std::process::id()
                ));
                q.save(&path)?;
                let mut b = std::fs::read(&path).unwrap();
                let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
                let i = (header + ((b.len() - header) as f64 * at) as usize).min(b.len() - 1);
                b[i] ^= 0x10;
                std::fs::write(&path, &b).unwrap();
                let r = QModel::load(ctx(), &lenet(), &path, &[1, 28, 28, 1]).map(drop);
                std::fs::remove_file(&path).ok();
                r
            },
        );
    }
    c.add(
        cat,
        "QModel::load missing file",
        "File",
        &["/nonexistent/q.safetensors"],
        || {
            QModel::load(
                ctx(),
                &lenet(),
                "/nonexistent/q.safetensors",
                &[1, 28, 28, 1],
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "QModel::load a float file",
        "File",
        &["lenet.safetensors", "not a wgpu-quant INT8 model"],
        || {
            QModel::load(
                ctx(),
                &lenet(),
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/examples/data/mnist/lenet.safetensors"
                ),
                &[1, 28, 28, 1],
            )
            .map(drop)
        },
    );
    c.add(
        cat,
        "forward input from another context",
        "InvalidArgument",
        &["another context"],
        || {
            let m = Model::new(ctx(), &lenet(), &lenet_file(), DType::F32, &[1, 28, 28, 1])?;
            let x = Tensor::from_slice(other_ctx(), &[1, 28, 28, 1], &[0f32; 784])?;
            let mut e = enc();
            m.forward(ctx(), &mut e, &x).map(drop)
        },
    );
}

fn onnx_sweeps(c: &mut Catalogue) {
    use wgpu_quant::import::OnnxImport;
    let cat = "onnx";
    let eff = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/efficientnet_lite0/efficientnet_lite0.onnx"
    );
    c.add(
        cat,
        "missing file",
        "Import",
        &["/nonexistent/m.onnx"],
        || OnnxImport::load("/nonexistent/m.onnx", None).map(drop),
    );
    for (name, bytes) in [
        ("empty", vec![]),
        ("text", b"hello world".to_vec()),
        ("zeros", vec![0u8; 64]),
    ] {
        c.add(
            cat,
            format!("{name} bytes"),
            "Import",
            &["bad.onnx"],
            move || OnnxImport::from_bytes(&bytes, "bad.onnx", None, None).map(drop),
        );
    }
    for shape in [
        vec![1, 3, 224],
        vec![1, 4, 224, 224],
        vec![0, 3, 224, 224],
        vec![1, 3, 2, 2],
    ] {
        let s = format!("{shape:?}");
        c.add(
            cat,
            format!("input shape {s}"),
            "Import",
            &["efficientnet_lite0.onnx"],
            move || OnnxImport::load(eff, Some(&shape)).map(drop),
        );
    }
    let bytes = std::fs::read(eff).unwrap();
    for cut in [10usize, 1000, 20_000] {
        let b = bytes[..cut].to_vec();
        c.add(
            cat,
            format!("cut at {cut}"),
            "Import",
            &["cut.onnx"],
            move || OnnxImport::from_bytes(&b, "cut.onnx", None, Some(&[1, 3, 224, 224])).map(drop),
        );
    }
    c.add(
        cat,
        "NaN initializer",
        "InvalidArgument",
        &["'MatMul_0.weight'", "NaN", "index 1", "allow_nonfinite"],
        || {
            use prost::Message;
            use wgpu_quant::import::proto::{
                GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
                TensorShapeProto, TypeProto, ValueInfoProto,
            };
            let dim = |v: i64| wgpu_quant::import::proto::tensor_shape_proto::Dimension {
                value: Some(
                    wgpu_quant::import::proto::tensor_shape_proto::dimension::Value::DimValue(v),
                ),
                ..Default::default()
            };
            let vi = |name: &str, dims: &[i64]| ValueInfoProto {
                name: Some(name.into()),
                r#type: Some(TypeProto {
                    value: Some(wgpu_quant::import::proto::type_proto::Value::TensorType(
                        wgpu_quant::import::proto::type_proto::Tensor {
                            elem_type: Some(1),
                            shape: Some(TensorShapeProto {
                                dim: dims.iter().map(|&d| dim(d)).collect(),
                            }),
                        },
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let m = ModelProto {
                ir_version: Some(8),
                opset_import: vec![OperatorSetIdProto {
                    domain: Some(String::new()),
                    version: Some(13),
                }],
                graph: Some(GraphProto {
                    node: vec![NodeProto {
                        op_type: Some("MatMul".into()),
                        input: vec!["x".into(), "w".into()],
                        output: vec!["y".into()],
                        ..Default::default()
                    }],
                    initializer: vec![TensorProto {
                        name: Some("w".into()),
                        dims: vec![2, 2],
                        data_type: Some(1),
                        float_data: vec![1.0, 2.0, f32::NAN, 4.0],
                        ..Default::default()
                    }],
                    input: vec![vi("x", &[1, 2])],
                    output: vec![vi("y", &[1, 2])],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut onnx = OnnxImport::from_bytes(&m.encode_to_vec(), "nan.onnx", None, None)?;
            let refused = onnx.model(ctx(), DType::F32).map(drop);
            onnx.allow_nonfinite(true);
            onnx.model(ctx(), DType::F32)?;
            refused
        },
    );
}

/// Runs `wgpu-quant args`: status 2 becomes the `Err` its message describes (the CLI
/// refused the arguments), 0 is `Ok` (accepted), anything else a panic (a crash).
fn cli(args: &[&str]) -> wgpu_quant::Result<()> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpu-quant"))
        .args(args)
        .env("WGPU_QUANT_CLI_MEMORY_LIMIT", (4u64 << 30).to_string())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(()),
        Some(2) => Err(Error::InvalidArgument {
            op: "cli",
            detail: stderr,
        }),
        other => panic!("wgpu-quant {args:?} exited {other:?}: {stderr}"),
    }
}

/// Bad arguments of `bench`, `tune` and `sqnr`: the words the message must hold.
fn cli_bench_cases() -> Vec<(Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            vec!["bench", "--sizes", "100000"],
            vec!["100000x100000x100000", "GiB", "limit"],
        ),
        (
            vec!["bench", "--shapes", "4294967296x1x1"],
            vec!["4294967296x1x1", "GiB"],
        ),
        (
            vec!["bench", "--shapes", "65536x65536x65536"],
            vec!["65536x65536x65536", "GiB"],
        ),
        (
            vec!["bench", "--sizes", "0"],
            vec!["--sizes 0", "at least 1"],
        ),
        (
            vec!["bench", "--shapes", "0x4x4"],
            vec!["'0x4x4'", "at least 1"],
        ),
        (vec!["bench", "--shapes", "4x4"], vec!["'4x4'", "MxNxK"]),
        (vec!["bench", "--shapes", "axbxc"], vec!["'axbxc'", "MxNxK"]),
        (vec!["bench", "--runs", "0"], vec!["--runs 0", "at least 1"]),
        (
            vec!["bench", "--samples", "0"],
            vec!["--samples 0", "at least 1"],
        ),
        (
            vec!["bench", "--suite", "bogus"],
            vec!["unknown suite 'bogus'"],
        ),
        (vec!["bench", "--dtypes", "int3"], vec!["int3"]),
        (
            vec!["bench", "--models", "nope"],
            vec!["unknown model layer 'nope'"],
        ),
        (
            vec!["bench", "--quant-shape", "0x5"],
            vec!["'0x5'", "both > 0"],
        ),
        (
            vec!["bench", "--quant-shape", "100000x100000"],
            vec!["--quant-shape 100000x100000", "GiB"],
        ),
        (
            vec!["bench", "--kernel", "reg:0,0,0,0"],
            vec!["reg:0,0,0,0"],
        ),
        (vec!["bench", "--kernel", "bogus"], vec!["bogus"]),
        (
            vec!["bench", "--json", "/nonexistent/dir/b.json"],
            vec!["--json /nonexistent/dir/b.json", "cannot write"],
        ),
        (
            vec!["bench", "--chart", "/nonexistent/dir/b.svg"],
            vec!["--chart /nonexistent/dir/b.svg", "cannot write"],
        ),
        (
            vec!["bench", "--json", "/tmp"],
            vec!["--json /tmp", "folder"],
        ),
        (vec!["bench", "--runs", "-1"], vec!["-1"]),
        (vec!["tune", "--runs", "0"], vec!["--runs 0"]),
        (
            vec!["tune", "--gemm", "0x5x5"],
            vec!["'0x5x5'", "at least 1"],
        ),
        (
            vec!["tune", "--linear", "1x0x5"],
            vec!["'1x0x5'", "at least 1"],
        ),
        (
            vec!["tune", "--conv", "56x64x64x3x1x1"],
            vec!["HxCxOCxKxSxPxG"],
        ),
        (
            vec!["tune", "--conv", "56x64x64x3x0x1x1"],
            vec!["56x64x64x3x0x1x1", "at least 1"],
        ),
        (
            vec!["tune", "--linear", "100000x100000x100000"],
            vec!["100000x100000x100000", "GiB"],
        ),
        (
            vec!["tune", "--out", "/nonexistent/t.json"],
            vec!["--out /nonexistent/t.json", "cannot write"],
        ),
        (vec!["sqnr", "--batches", "0"], vec!["--batches 0"]),
        (vec!["sqnr", "--batch-len", "0"], vec!["--batch-len 0"]),
        (vec!["sqnr", "--test-len", "0"], vec!["--test-len 0"]),
        (
            vec!["sqnr", "--test-len", "100000000000"],
            vec!["sqnr", "GiB"],
        ),
    ]
}

/// Bad arguments of `inspect`, `run`, `chart`, `adapters` and unknown commands.
fn cli_run_cases(
    eff: &'static str,
    photo: &'static str,
) -> Vec<(Vec<&'static str>, Vec<&'static str>)> {
    vec![
        (
            vec!["inspect", "/nonexistent/m.onnx"],
            vec!["/nonexistent/m.onnx"],
        ),
        (
            vec!["inspect", eff, "--shape", "1,3,0,4"],
            vec!["--shape [1, 3, 0, 4]", "at least 1"],
        ),
        (
            vec!["inspect", eff, "--shape", "100000,100000,100000"],
            vec!["--shape", "GiB"],
        ),
        (
            vec!["run", "/nonexistent/m.onnx", "--input", photo],
            vec!["/nonexistent/m.onnx"],
        ),
        (
            vec!["run", eff, "--input", "/nonexistent/p.png"],
            vec!["--input /nonexistent/p.png"],
        ),
        (
            vec!["run", eff, "--input", photo, "--runs", "0"],
            vec!["--runs 0"],
        ),
        (
            vec!["run", eff, "--input", photo, "--top", "0"],
            vec!["--top 0"],
        ),
        (
            vec!["run", eff, "--input", photo, "--resize", "0"],
            vec!["--resize 0"],
        ),
        (
            vec!["run", eff, "--input", photo, "--std", "0,1,1"],
            vec!["--std", "divisor of 0"],
        ),
        (
            vec!["run", eff, "--input", photo, "--mean", "1,2"],
            vec!["--mean", "3 values", "got 2"],
        ),
        (
            vec!["run", eff, "--input", photo, "--mean", "nan,1,1"],
            vec!["--mean", "NaN"],
        ),
        (
            vec!["run", eff, "--input", photo, "--precision", "int8-static"],
            vec!["int8-static", "--calibrate"],
        ),
        (
            vec![
                "run",
                eff,
                "--input",
                photo,
                "--calibrate",
                "/nonexistent/dir",
            ],
            vec!["--calibrate /nonexistent/dir"],
        ),
        (
            vec!["run", eff, "--input", photo, "--calibrate", photo],
            vec!["--calibrate", "not a folder"],
        ),
        (
            vec![
                "run",
                eff,
                "--input",
                photo,
                "--labels",
                "/nonexistent/l.txt",
            ],
            vec!["--labels /nonexistent/l.txt"],
        ),
        (
            vec!["run", eff, "--input", photo, "--precision", "int4"],
            vec!["int4"],
        ),
        (
            vec!["run", eff, "--input", photo, "--shape", "1,3,0,224"],
            vec!["--shape [1, 3, 0, 224]"],
        ),
        (
            vec!["chart", "/nonexistent/b.json", "--out", "/tmp/c.svg"],
            vec!["/nonexistent/b.json"],
        ),
        (
            vec!["chart", eff, "--out", "/nonexistent/c.svg"],
            vec!["--out /nonexistent/c.svg"],
        ),
        (
            vec!["adapters", "--backend", "bogus"],
            vec!["unknown backend 'bogus'"],
        ),
        (vec!["bogus"], vec!["bogus"]),
    ]
}

fn cli_sweeps(c: &mut Catalogue) {
    let cat = "cli";
    let eff = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/efficientnet_lite0/efficientnet_lite0.onnx"
    );
    let photo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/photos/coffee.png"
    );
    let cases = cli_bench_cases()
        .into_iter()
        .chain(cli_run_cases(eff, photo));
    c.add(
        cat,
        "no command",
        "InvalidArgument",
        &["Usage: wgpu-quant <COMMAND>"],
        || cli(&[]),
    );
    for (args, says) in cases {
        let mut says_all = vec!["error"];
        says_all.extend(says);
        c.add(
            cat,
            args.join(" "),
            "InvalidArgument",
            &says_all,
            move || cli(&args),
        );
    }
}

/// A tensor whose buffer the caller destroyed: the op names it, and the context goes on.
fn destroyed_sweeps(c: &mut Catalogue) {
    use wgpu_quant::ops::pool::pool2d;
    let cat = "destroyed buffer";
    let gone = |shape: &[usize]| {
        let t = f32s(shape);
        t.buffer().destroy();
        t
    };
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        c.add(
            cat,
            format!("gemm {name}"),
            "InvalidArgument",
            &["gemm", name, "destroyed"],
            move || {
                let t = |j: usize| if i == j { gone(&[4, 4]) } else { f32s(&[4, 4]) };
                gemm(
                    ctx(),
                    &mut enc(),
                    &GemmDesc::new(4, 4, 4),
                    &t(0),
                    &t(1),
                    None,
                    &t(2),
                )
            },
        );
    }
    c.add(
        cat,
        "conv2d x",
        "InvalidArgument",
        &["conv2d", "x", "destroyed"],
        move || {
            conv2d(
                ctx(),
                &mut enc(),
                &ConvDesc::default(),
                &gone(&[1, 5, 5, 3]),
                &conv_weight(),
                None,
                &f32s(&[1, 3, 3, 4]),
            )
        },
    );
    c.add(
        cat,
        "pool2d output",
        "InvalidArgument",
        &["pool2d", "output", "destroyed"],
        move || {
            pool2d(
                ctx(),
                &mut enc(),
                &PoolDesc::new(PoolKind::Max, 2, 2),
                &f32s(&[1, 4, 4, 2]),
                &gone(&[1, 2, 2, 2]),
            )
        },
    );
    c.add(
        cat,
        "qgemm A",
        "InvalidArgument",
        &["A", "destroyed"],
        move || {
            let a = qt(QType::I8, &[2, 8]);
            a.data().buffer().destroy();
            qgemm(
                ctx(),
                &mut enc(),
                &QGemmDesc::default(),
                &a,
                &qt(QType::I8, &[3, 8]),
                None,
                QGemmOutput::F32(&f32s(&[2, 3])),
            )
        },
    );
    c.add(
        cat,
        "wgemm x",
        "InvalidArgument",
        &["x", "destroyed"],
        move || {
            let w = qt(QType::I8, &[3, 8]);
            wgemm(
                ctx(),
                &mut enc(),
                &WGemmDesc::default(),
                &gone(&[2, 8]),
                Weights::Quantized(&w),
                None,
                &f32s(&[2, 3]),
            )
        },
    );
    c.add(
        cat,
        "read",
        "InvalidArgument",
        &["readback", "tensor", "destroyed"],
        move || gone(&[4]).read_blocking::<f32>(ctx()).map(drop),
    );
    c.add(
        cat,
        "write",
        "InvalidArgument",
        &["Tensor::write", "destroyed"],
        move || gone(&[4]).write(ctx(), &[1f32; 4]),
    );
    c.add(cat, "the context works after", "Ok", &[], move || {
        let _ = gone(&[4]).read_blocking::<f32>(ctx());
        let out = f32s(&[2, 2]);
        let mut e = enc();
        gemm(
            ctx(),
            &mut e,
            &GemmDesc::new(2, 2, 2),
            &f32s(&[2, 2]),
            &f32s(&[2, 2]),
            None,
            &out,
        )?;
        ctx().submit_and_wait(e)?;
        let v = out.read_blocking::<f32>(ctx())?;
        if v != [0.5f32; 4] {
            return Err(Error::InvalidArgument {
                op: "probe",
                detail: format!("{v:?}"),
            });
        }
        Ok(())
    });
}

/// Entry points of the model and import layers beyond construction: profiling, saving,
/// the edges' host and GPU rearrangements.
fn model_use_sweeps(c: &mut Catalogue) {
    use wgpu_quant::import::OnnxImport;
    let cat = "model use";
    let eff = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/efficientnet_lite0/efficientnet_lite0.onnx"
    );
    c.add(
        cat,
        "profile with 0 runs",
        "InvalidArgument",
        &["profile", "runs = 0"],
        || {
            let m = Model::new(ctx(), &lenet(), &lenet_file(), DType::F32, &[1, 28, 28, 1])?;
            m.profile(ctx(), &f32s(&[1, 28, 28, 1]), 0).map(drop)
        },
    );
    c.add(
        cat,
        "QModel::save to a missing folder",
        "File",
        &["/nonexistent/dir/q.safetensors"],
        || {
            let q = QModel::calibrate(
                ctx(),
                &lenet(),
                &lenet_file(),
                &[1, 28, 28, 1],
                &[],
                ObserverKind::MinMax,
                QMode::Dynamic,
            )?;
            q.save("/nonexistent/dir/q.safetensors").map(drop)
        },
    );
    c.add(
        cat,
        "to_model_input length",
        "Import",
        &["efficientnet_lite0.onnx", "150528"],
        move || {
            let onnx = OnnxImport::load(eff, Some(&[1, 3, 224, 224]))?;
            onnx.to_model_input(&[0.0; 10]).map(drop)
        },
    );
    c.add(
        cat,
        "from_model_output length",
        "Import",
        &["efficientnet_lite0.onnx", "1000"],
        move || {
            let onnx = OnnxImport::load(eff, Some(&[1, 3, 224, 224]))?;
            onnx.from_model_output(&[0.0; 999]).map(drop)
        },
    );
    c.add(
        cat,
        "record_input shapes",
        "Import",
        &["efficientnet_lite0.onnx"],
        move || {
            let onnx = OnnxImport::load(eff, Some(&[1, 3, 224, 224]))?;
            onnx.record_input(
                ctx(),
                &mut enc(),
                &f32s(&[1, 3, 20, 20]),
                &f32s(&[1, 224, 224, 3]),
            )
        },
    );
    c.add(
        cat,
        "forward on another context",
        "InvalidArgument",
        &["another context"],
        || {
            let m = Model::new(ctx(), &lenet(), &lenet_file(), DType::F32, &[1, 28, 28, 1])?;
            let x = Tensor::zeros(other_ctx(), &[1, 28, 28, 1], DType::F32)?;
            m.forward(other_ctx(), &mut other_ctx().encoder("x"), &x)
                .map(drop)
        },
    );
}

#[test]
fn every_bad_input_is_a_clear_error() {
    let mut c = Catalogue::default();
    tensors(&mut c);
    quant_params(&mut c);
    gemms(&mut c);
    convs(&mut c);
    pools(&mut c);
    observers(&mut c);
    weight_files(&mut c);
    models(&mut c);
    gemm_sweeps(&mut c);
    gemm_operands(&mut c);
    qgemm_sweeps(&mut c);
    qgemm_outputs(&mut c);
    wgemm_more(&mut c);
    conv_sweeps(&mut c);
    conv_options(&mut c);
    pool_sweeps(&mut c);
    eltwise_sweeps(&mut c);
    layout_sweeps(&mut c);
    layout_resize(&mut c);
    quant_op_sweeps(&mut c);
    train_sweeps(&mut c);
    trainer_sweeps(&mut c);
    observer_sweeps(&mut c);
    file_sweeps(&mut c);
    model_sweeps(&mut c);
    onnx_sweeps(&mut c);
    cli_sweeps(&mut c);
    qconv_probes(&mut c);
    wgemm_sweeps(&mut c);
    qconv_sweeps(&mut c);
    qmodel_sweeps(&mut c);
    model_use_sweeps(&mut c);
    destroyed_sweeps(&mut c);
    let failures = c.run();
    assert!(
        failures.is_empty(),
        "{} cases misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A small trainable graph: conv 1->2 k3 on 6x6, ReLU, linear 32->3, softmax.
fn tiny_graph() -> Graph {
    let mut g = Graph::default();
    g.push(
        "c",
        Layer::conv(
            "c.weight",
            Some("c.bias"),
            ConvDims::new(2, 1, [3, 3], 1).unwrap(),
            ConvDesc::default().activation(Activation::Relu),
        ),
    );
    g.push("fc", Layer::linear("fc.weight", Some("fc.bias"), 3, 32));
    g.push("prob", Layer::Softmax);
    g
}

fn tiny_weights() -> WeightFile {
    wgpu_quant::train::Trainer::init_weights(&tiny_graph(), [6, 6, 1], 0).unwrap()
}

fn tiny_cfg() -> wgpu_quant::train::TrainConfig {
    wgpu_quant::train::TrainConfig {
        batch: 4,
        ..Default::default()
    }
}

fn tiny_data(n: usize, label: u32) -> wgpu_quant::train::Dataset {
    wgpu_quant::train::Dataset::new(vec![0.5; n * 36], vec![label; n], [6, 6, 1]).unwrap()
}

/// The trainer, quantization-aware training and their inputs.
fn trainer_sweeps(c: &mut Catalogue) {
    use wgpu_quant::desc::eltwise::UnaryOp;
    use wgpu_quant::ops::train::{Adam, Sgd};
    use wgpu_quant::train::{Dataset, Optimizer, QatConfig, TrainConfig, Trainer};
    let cat = "trainer";
    let new = |g: Graph, cfg: TrainConfig| -> wgpu_quant::Result<()> {
        Trainer::new(ctx(), &g, &tiny_weights(), [6, 6, 1], cfg).map(|_| ())
    };
    let with = |f: fn(&mut TrainConfig)| {
        let mut cfg = tiny_cfg();
        f(&mut cfg);
        cfg
    };
    c.add(
        cat,
        "layer without a backward",
        "InvalidArgument",
        &["Trainer", "'sig'", "no backward"],
        move || {
            let mut g = tiny_graph();
            g.nodes.insert(
                1,
                wgpu_quant::model::Node {
                    name: "sig".into(),
                    layer: Layer::Map {
                        f: UnaryOp::Sigmoid,
                        clip: Clip::NONE,
                    },
                    input: wgpu_quant::model::Src::Node(0),
                },
            );
            g.nodes[2].input = wgpu_quant::model::Src::Node(1);
            new(g, tiny_cfg())
        },
    );
    c.add(
        cat,
        "softmax before the end",
        "InvalidArgument",
        &["Trainer", "'prob'", "last node"],
        move || {
            let mut g = tiny_graph();
            g.push("fc2", Layer::linear("fc.weight", None, 3, 3));
            new(g, tiny_cfg())
        },
    );
    c.add(
        cat,
        "missing weight",
        "InvalidArgument",
        &["c.weight", "missing"],
        move || {
            let mut w = WeightFile::default();
            w.insert("fc.weight", &[3, 32], vec![0.0; 96])?;
            Trainer::new(ctx(), &tiny_graph(), &w, [6, 6, 1], tiny_cfg()).map(|_| ())
        },
    );
    c.add(
        cat,
        "sample shape that does not fit",
        "InvalidArgument",
        &["'fc'", "[4, 5, 5, 2]", "[B, 32]"],
        move || {
            Trainer::new(ctx(), &tiny_graph(), &tiny_weights(), [7, 7, 1], tiny_cfg()).map(|_| ())
        },
    );
    type ConfigCase = (&'static str, fn(&mut TrainConfig), &'static [&'static str]);
    let configs: Vec<ConfigCase> = vec![
        ("batch 0", |c| c.batch = 0, &["batch = 0"]),
        ("epochs 0", |c| c.epochs = 0, &["epochs = 0"]),
        (
            "learning rate 0",
            |c| {
                c.optimizer = Optimizer::Sgd(Sgd {
                    lr: 0.0,
                    momentum: 0.0,
                    weight_decay: 0.0,
                })
            },
            &["learning rate 0"],
        ),
        (
            "learning rate NaN",
            |c| {
                c.optimizer = Optimizer::Sgd(Sgd {
                    lr: f32::NAN,
                    momentum: 0.0,
                    weight_decay: 0.0,
                })
            },
            &["learning rate NaN"],
        ),
        (
            "learning rate 100",
            |c| {
                c.optimizer = Optimizer::Sgd(Sgd {
                    lr: 100.0,
                    momentum: 0.0,
                    weight_decay: 0.0,
                })
            },
            &["learning rate 100"],
        ),
        (
            "momentum 1",
            |c| {
                c.optimizer = Optimizer::Sgd(Sgd {
                    lr: 0.1,
                    momentum: 1.0,
                    weight_decay: 0.0,
                })
            },
            &["momentum 1"],
        ),
        (
            "negative weight decay",
            |c| {
                c.optimizer = Optimizer::Sgd(Sgd {
                    lr: 0.1,
                    momentum: 0.0,
                    weight_decay: -1.0,
                })
            },
            &["weight decay -1"],
        ),
        (
            "Adam beta2 1",
            |c| {
                c.optimizer = Optimizer::Adam(Adam {
                    beta2: 1.0,
                    ..Adam::default()
                })
            },
            &["beta2 1"],
        ),
        (
            "Adam eps 0",
            |c| {
                c.optimizer = Optimizer::Adam(Adam {
                    eps: 0.0,
                    ..Adam::default()
                })
            },
            &["eps 0"],
        ),
        (
            "lr step factor 0",
            |c| c.lr_step = Some((2, 0.0)),
            &["lr_step (2, 0)"],
        ),
        (
            "lr step every 0",
            |c| c.lr_step = Some((0, 0.5)),
            &["lr_step (0, 0.5)"],
        ),
        (
            "QAT weight bits 1",
            |c| c.qat = Some(QatConfig::new(1, 8)),
            &["weight_bits = 1", "2 to 8"],
        ),
        (
            "QAT activation bits 9",
            |c| c.qat = Some(QatConfig::new(8, 9)),
            &["act_bits = 9", "2 to 8"],
        ),
        (
            "QAT EMA decay 1",
            |c| {
                c.qat = Some(QatConfig {
                    ema_decay: 1.0,
                    ..QatConfig::new(4, 4)
                })
            },
            &["ema_decay = 1"],
        ),
        (
            "QAT no calibration",
            |c| {
                c.qat = Some(QatConfig {
                    calibration_per_class: 0,
                    ..QatConfig::new(4, 4)
                })
            },
            &["calibration_per_class = 0"],
        ),
    ];
    for (name, f, says) in configs {
        c.add(cat, name, "InvalidArgument", says, move || {
            new(tiny_graph(), with(f))
        });
    }
    let fit = |data: Dataset, cfg: TrainConfig| -> wgpu_quant::Result<()> {
        let mut t = Trainer::new(ctx(), &tiny_graph(), &tiny_weights(), [6, 6, 1], cfg)?;
        t.fit(ctx(), &data, |_| {}).map(|_| ())
    };
    c.add(
        cat,
        "label past the classes",
        "InvalidArgument",
        &["label 3", "sample 0", "3 classes"],
        move || fit(tiny_data(8, 3), tiny_cfg()),
    );
    c.add(
        cat,
        "samples of another shape",
        "Shape",
        &["[5, 5, 1]", "[6, 6, 1]"],
        move || {
            let d = Dataset::new(vec![0.5; 8 * 25], vec![0; 8], [5, 5, 1])?;
            fit(d, tiny_cfg())
        },
    );
    c.add(
        cat,
        "fewer samples than a batch",
        "InvalidArgument",
        &["3 samples", "batch of 4"],
        move || fit(tiny_data(3, 0), tiny_cfg()),
    );
    c.add(
        cat,
        "NaN loss",
        "InvalidArgument",
        &["step 1", "loss", "'fc'", "training stopped"],
        move || {
            let d = Dataset::new(vec![3e38; 8 * 36], vec![0; 8], [6, 6, 1])?;
            fit(d, tiny_cfg())
        },
    );
    c.add(
        cat,
        "dataset of too few values",
        "Shape",
        &["Dataset", "4 labels", "144 values", "100"],
        || Dataset::new(vec![0.0; 100], vec![0; 4], [6, 6, 1]).map(|_| ()),
    );
    c.add(
        cat,
        "dataset NaN pixel",
        "InvalidArgument",
        &["Dataset", "sample 1", "NaN", "index 2"],
        || {
            let mut x = vec![0.0; 72];
            x[38] = f32::NAN;
            Dataset::new(x, vec![0; 2], [6, 6, 1]).map(|_| ())
        },
    );
    c.add(
        cat,
        "empty dataset",
        "Shape",
        &["Dataset", "0 labels"],
        || Dataset::new(vec![], vec![], [6, 6, 1]).map(|_| ()),
    );
    c.add(
        cat,
        "calibrate without QAT",
        "InvalidArgument",
        &["calibrate", "TrainConfig::qat"],
        move || {
            let mut t = Trainer::new(ctx(), &tiny_graph(), &tiny_weights(), [6, 6, 1], tiny_cfg())?;
            t.calibrate(ctx(), &tiny_data(8, 0))
        },
    );
    c.add(
        cat,
        "to_qmodel without QAT",
        "InvalidArgument",
        &["to_qmodel", "TrainConfig::qat"],
        move || {
            let t = Trainer::new(ctx(), &tiny_graph(), &tiny_weights(), [6, 6, 1], tiny_cfg())?;
            t.to_qmodel(ctx(), &[4, 6, 6, 1]).map(|_| ())
        },
    );
    c.add(
        cat,
        "QAT step before calibration",
        "InvalidArgument",
        &["activation ranges are not set", "calibrate"],
        move || {
            let cfg = TrainConfig {
                qat: Some(QatConfig::new(4, 4)),
                ..tiny_cfg()
            };
            let mut t = Trainer::new(ctx(), &tiny_graph(), &tiny_weights(), [6, 6, 1], cfg)?;
            t.record_step(ctx(), &mut enc())
        },
    );
    c.add(
        cat,
        "PTQ bits 9",
        "InvalidArgument",
        &["9 bits", "2 to 8"],
        || {
            let opts = PtqOptions::new(ObserverKind::MinMax, QMode::Static).bits(8, 9);
            let x = f32s(&[4, 6, 6, 1]);
            QModel::calibrate_with(
                ctx(),
                &tiny_graph(),
                &tiny_weights(),
                &[4, 6, 6, 1],
                &[x],
                &opts,
            )
            .map(|_| ())
        },
    );
    c.add(
        cat,
        "scheme bits 1",
        "InvalidArgument",
        &["with_bits", "1 bits"],
        || QuantScheme::symmetric(QType::I8).with_bits(1).map(|_| ()),
    );
    c.add(
        cat,
        "im2col of groups",
        "InvalidArgument",
        &["im2col", "2 groups"],
        || {
            let dims = ConvDims::new(2, 2, [3, 3], 2)?;
            let desc = ConvDesc::default();
            wgpu_quant::ops::train::im2col(
                ctx(),
                &mut enc(),
                (&dims, &desc),
                &f32s(&[1, 5, 5, 2]),
                &f32s(&[9, 18]),
            )
        },
    );
    c.add(
        cat,
        "im2col columns shape",
        "Shape",
        &["im2col", "[9, 9]"],
        || {
            let dims = ConvDims::new(2, 1, [3, 3], 1)?;
            let desc = ConvDesc::default();
            wgpu_quant::ops::train::im2col(
                ctx(),
                &mut enc(),
                (&dims, &desc),
                &f32s(&[1, 5, 5, 1]),
                &f32s(&[9, 8]),
            )
        },
    );
    c.add(cat, "col2im dx shape", "Shape", &["col2im"], || {
        let dims = ConvDims::new(2, 1, [3, 3], 1)?;
        let desc = ConvDesc::default();
        wgpu_quant::ops::train::col2im(
            ctx(),
            &mut enc(),
            (&dims, &desc),
            &f32s(&[9, 9]),
            &f32s(&[1, 5, 5, 2]),
        )
    });
}
