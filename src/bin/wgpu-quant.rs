//! `wgpu-quant`: list adapters and benchmark kernels on them.
//!
//! ```text
//! wgpu-quant adapters                 # every adapter wgpu finds, with capabilities
//! wgpu-quant bench                    # peak, gemm, models and quant suites, every adapter
//! wgpu-quant bench --quick --json b.json --chart b.svg   # the CI subset, under 2 minutes on lavapipe
//! wgpu-quant bench --suite gemm --sizes 512,1024 --shapes 1x4096x4096 --dtypes fp32,w8a8
//! wgpu-quant chart a.json b.json -o chart.svg   # one chart from several runs
//! wgpu-quant sqnr                     # SQNR of each calibration observer (docs/QUANTIZATION.md)
//! wgpu-quant inspect model.onnx --shape 1,3,224,224   # operators, layers, unsupported nodes
//! wgpu-quant run model.onnx --input cat.png --precision int8-dynamic --labels labels.txt
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "wgpu-quant/check.rs"]
mod check;
#[path = "wgpu-quant/onnx.rs"]
mod onnx;
use wgpu_quant::bench::{self, Clock};
use wgpu_quant::context::parse_backends;
use wgpu_quant::ops::gemm::{GemmKernel, RegConfig, SubgroupConfig, TiledConfig};
use wgpu_quant::{Context, RequestOptions};

#[derive(Parser)]
#[command(
    name = "wgpu-quant",
    version,
    about = "Quantized GPU kernels through wgpu: adapters, benchmarks, ONNX models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every adapter on every backend with the capabilities wgpu-quant uses.
    Adapters {
        /// Backends to list (vulkan, metal, dx12, gl, all).
        #[arg(long, default_value = "all")]
        backend: String,
    },
    /// Benchmark verified FP32, FP16 and INT8 kernels on every adapter of the selected
    /// backends whose name matches: one Markdown table per adapter, optionally JSON and
    /// an SVG chart. Every case is checked against the reference before it is timed; a
    /// wrong result is reported as FAILED (exit status 1) and never timed.
    Bench(Box<BenchArgs>),
    /// Draw the speedup chart of one or more `bench --json` files (from different
    /// machines, say) as one SVG, one panel per adapter, and print their speedup table.
    Chart {
        /// The JSON files written by `bench --json`.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// The SVG to write.
        #[arg(long, short)]
        out: String,
    },
    /// Autotune the benchmark shapes on one adapter: every candidate kernel is verified
    /// against the reference, then timed; the winners are saved to a JSON cache (merged
    /// into FILE if it exists) and a Markdown table of tuned vs default is printed.
    Tune {
        /// Backends to consider (default: WGPU_QUANT_BACKEND, else all).
        #[arg(long)]
        backend: Option<String>,
        /// Adapter name substring (default: WGPU_QUANT_ADAPTER, else the best GPU).
        #[arg(long)]
        adapter: Option<String>,
        /// The cache file to write.
        #[arg(long, default_value = "wgpu-quant-tuning.json")]
        out: String,
        /// FP32 GEMM shapes as MxNxK, B in the layout of a linear layer's weight on the
        /// adapter (`plan::linear_weight_transposed`: N x K on CPU adapters when K is a
        /// multiple of 4, else K x N); '' for none.
        #[arg(long, value_delimiter = ',', default_values_t = ["256x256x256", "512x512x512", "128x768x768", "1x4096x4096"].map(String::from).to_vec())]
        gemm: Vec<String>,
        /// W8A8 and weight-only (i8, i4) and FP16 GEMM shapes as MxNxK (weight N x K); ''
        /// for none.
        #[arg(long, value_delimiter = ',', default_values_t = ["1x4096x4096", "128x768x768"].map(String::from).to_vec())]
        linear: Vec<String>,
        /// Convolutions (FP32, FP16 and INT8) as HxCxOCxKxSxPxG: input height = width,
        /// channels, output channels, kernel, stride, padding, groups (batch 1); '' for
        /// none.
        #[arg(long, value_delimiter = ',', default_values_t = ["56x64x64x3x1x1x1", "224x3x32x3x2x1x1"].map(String::from).to_vec())]
        conv: Vec<String>,
        /// FP16 linear shapes as MxNxK (f16 weights N x K) tuned on their own, besides
        /// those of --linear.
        #[arg(long, value_delimiter = ',')]
        fp16: Vec<String>,
        /// Timed runs per candidate (the median counts), interleaved: every candidate once
        /// per round.
        #[arg(long, default_value_t = 9)]
        runs: usize,
        /// Also list every verified candidate's median time.
        #[arg(long)]
        verbose: bool,
    },
    /// Signal-to-quantization-noise ratio of each calibration observer on synthetic
    /// distributions: calibrate on seeded batches on the GPU, quantize a held-out sample
    /// on the GPU, print a Markdown table (the one in docs/QUANTIZATION.md).
    Sqnr {
        /// Backends to consider (default: WGPU_QUANT_BACKEND, else all).
        #[arg(long)]
        backend: Option<String>,
        /// Adapter name substring (default: WGPU_QUANT_ADAPTER, else the best GPU).
        #[arg(long)]
        adapter: Option<String>,
        /// Calibration batches.
        #[arg(long, default_value_t = 4)]
        batches: usize,
        /// Values per calibration batch.
        #[arg(long, default_value_t = 32768)]
        batch_len: usize,
        /// Values in the held-out test sample.
        #[arg(long, default_value_t = 65536)]
        test_len: usize,
    },
    /// Import an ONNX model and list it: opset, input and output, operators, the layers
    /// it becomes, parameters; or every node that cannot be imported, with the reason.
    Inspect {
        /// The ONNX model.
        model: std::path::PathBuf,
        /// The input's ONNX shape, e.g. 1,3,224,224 (needed when the file's is symbolic).
        #[arg(long, value_delimiter = ',')]
        shape: Option<Vec<usize>>,
    },
    /// Run an ONNX model on an image or a .npy tensor in FP32, FP16 or INT8 and print the
    /// top-k outputs and the GPU time.
    Run {
        /// Backends to consider (default: WGPU_QUANT_BACKEND, else all).
        #[arg(long)]
        backend: Option<String>,
        /// Adapter name substring (default: WGPU_QUANT_ADAPTER, else the best GPU).
        #[arg(long)]
        adapter: Option<String>,
        #[command(flatten)]
        args: Box<onnx::RunArgs>,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Backends to consider (default: WGPU_QUANT_BACKEND, else all).
    #[arg(long)]
    backend: Option<String>,
    /// Adapter name substring (default: WGPU_QUANT_ADAPTER, else every adapter).
    #[arg(long)]
    adapter: Option<String>,
    /// Suites: gemm (square sizes and --shapes), models (BERT-base and LLM linears,
    /// ResNet-50 and EfficientNet-Lite0 convolutions), quant (quantization kernels),
    /// peak (FP32/f16 FMA, INT8 dot, bandwidth probes: the base of "% of peak"), train
    /// (the backward kernels of training).
    #[arg(long, value_delimiter = ',', default_values_t = ["peak", "gemm", "models", "quant", "train"].map(String::from).to_vec())]
    suite: Vec<String>,
    /// A subset that runs in under two minutes on lavapipe (the CI check): sizes 256,
    /// four model layers, a 1024x1024 quant tensor, small probes, 3 runs. Options given
    /// explicitly still apply.
    #[arg(long)]
    quick: bool,
    /// Precisions of the linear and convolution cases (convolutions run fp32, fp16 and
    /// w8a8): fp32, fp16, w8a8, w8a8+q, w8a16, w4a16.
    #[arg(long, value_delimiter = ',', default_values_t = ["fp32", "fp16", "w8a8", "w8a8+q", "w8a16", "w4a16"].map(String::from).to_vec())]
    dtypes: Vec<String>,
    /// Square sizes of the gemm suite [default: 256,512,1024,2048; quick: 256].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// More gemm-suite shapes as MxNxK (linear: x [M, K], weights [N, K]).
    #[arg(long, visible_alias = "gemv", value_delimiter = ',')]
    shapes: Vec<String>,
    /// Layers of the models suite, by name (`wgpu-quant bench --list-models`)
    /// [default: all; quick: bert.attn_proj, llm.gemv, r50.conv3x3_512, eff.dw3x3_32].
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Print the models suite's layers and exit.
    #[arg(long)]
    list_models: bool,
    /// Tensor of the quant suite as ROWSxCOLS [default: 4096x1024; quick: 1024x1024].
    #[arg(long)]
    quant_shape: Option<String>,
    /// FP32 GEMM kernel: auto, tiled64, tiled128, tiled:WGX,WGY,TM,TN,BK,
    /// reg:WG,TM,TN4,KU[,SPLITK] or sg:WG,TM,TN4.
    #[arg(long, default_value = "auto")]
    kernel: String,
    /// Timed runs per case; the median is reported [default: 5; quick: 3].
    #[arg(long)]
    runs: Option<usize>,
    /// Untimed warm-up runs per case.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Outputs per case compared with the reference.
    #[arg(long, default_value_t = 1024)]
    samples: usize,
    /// Leave out the peak suite (no "% of peak").
    #[arg(long)]
    no_peak: bool,
    /// Also write every case as a JSON record to FILE (an array; fields in the README
    /// and `wgpu_quant::bench::Record`).
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// Also draw the speedup over FP32 per case and dtype, one panel per adapter, to
    /// FILE (SVG).
    #[arg(long, value_name = "FILE")]
    chart: Option<String>,
}

fn parse_kernel(s: &str) -> Result<Option<GemmKernel>, String> {
    let k = parse_kernel_spec(s)?;
    if let Some(k) = k {
        k.check_config()
            .map_err(|e| format!("--kernel '{s}': {e}"))?;
    }
    Ok(k)
}

fn parse_kernel_spec(s: &str) -> Result<Option<GemmKernel>, String> {
    match s {
        "auto" => Ok(None),
        "tiled64" => Ok(Some(GemmKernel::Tiled(GemmKernel::TILED[0]))),
        "tiled128" => Ok(Some(GemmKernel::Tiled(GemmKernel::TILED[1]))),
        _ => {
            if let Some(rest) = s.strip_prefix("reg:") {
                let v: Vec<u32> = rest
                    .split(',')
                    .map(|x| x.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("kernel '{s}': {e}"))?;
                match v[..] {
                    [wg, tm, tn4, ku] => {
                        return Ok(Some(GemmKernel::Register(RegConfig::new(wg, tm, tn4, ku))))
                    }
                    [wg, tm, tn4, ku, ks] => {
                        return Ok(Some(GemmKernel::Register(
                            RegConfig::new(wg, tm, tn4, ku).split_k(ks),
                        )))
                    }
                    _ => {}
                }
            }
            if let Some(rest) = s.strip_prefix("sg:") {
                let v: Vec<u32> = rest
                    .split(',')
                    .map(|x| x.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("kernel '{s}': {e}"))?;
                if let [wg, tm, tn4] = v[..] {
                    return Ok(Some(GemmKernel::Subgroup(SubgroupConfig { wg, tm, tn4 })));
                }
            }
            if let Some(rest) = s.strip_prefix("tiled:") {
                let v: Vec<u32> = rest
                    .split(',')
                    .map(|x| x.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("kernel '{s}': {e}"))?;
                if let [wg_x, wg_y, tm, tn, bk] = v[..] {
                    return Ok(Some(GemmKernel::Tiled(TiledConfig {
                        wg_x,
                        wg_y,
                        tm,
                        tn,
                        bk,
                    })));
                }
            }
            Err(format!(
                "unknown kernel '{s}': expected auto, tiled64, tiled128, tiled:WGX,WGY,TM,TN,BK, reg:WG,TM,TN4,KU[,SPLITK] or sg:WG,TM,TN4"
            ))
        }
    }
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("shape '{s}': {e} (expected MxNxK)"))?;
    match v[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok((m, n, k)),
        [_, _, _] => Err(format!("shape '{s}': M, N and K must be at least 1")),
        _ => Err(format!("shape '{s}': expected MxNxK")),
    }
}

/// A convolution of `tune --conv` as HxCxOCxKxSxPxG (all but the padding at least 1).
fn parse_conv(s: &str) -> Result<[usize; 7], String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("convolution {s:?}: expected HxCxOCxKxSxPxG"))?;
    let Ok(d) = <[usize; 7]>::try_from(v) else {
        return Err(format!("convolution {s:?}: expected HxCxOCxKxSxPxG"));
    };
    if [d[0], d[1], d[2], d[3], d[4], d[6]].contains(&0) {
        return Err(format!(
            "convolution {s:?}: H, C, OC, K, S and G must be at least 1"
        ));
    }
    Ok(d)
}

/// Checks a command's arguments before any work (see `check`).
fn validate(cmd: &Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Bench(a) => {
            if a.list_models {
                return Ok(());
            }
            let set = settings(a)?;
            if let Some(r) = a.runs {
                check::positive("--runs", r)?;
            }
            check::positive("--samples", a.samples)?;
            for job in &set.jobs {
                if let Job::Linear { case, shape, .. } = job {
                    check::memory(&format!("the case {case}"), check::linear_bytes(*shape))?;
                }
            }
            let (r, c) = set.quant_shape;
            check::memory(
                &format!("--quant-shape {r}x{c}"),
                (r as u64)
                    .checked_mul(c as u64)
                    .and_then(|n| n.checked_mul(16)),
            )?;
            for (flag, path) in [("--json", &a.json), ("--chart", &a.chart)] {
                if let Some(p) = path {
                    check::writable(flag, p)?;
                }
            }
            Ok(())
        }
        Cmd::Tune {
            out,
            gemm,
            linear,
            conv,
            fp16,
            runs,
            ..
        } => {
            check::positive("--runs", *runs)?;
            for s in gemm
                .iter()
                .chain(linear)
                .chain(fp16)
                .filter(|s| !s.is_empty())
            {
                let shape = parse_shape(s)?;
                check::memory(&format!("the shape {s}"), check::linear_bytes(shape))?;
            }
            for s in conv.iter().filter(|s| !s.is_empty()) {
                let [h, c, oc, k, _, _, _] = parse_conv(s)?;
                let elems = (h as u64)
                    .checked_mul(h as u64)
                    .and_then(|hw| hw.checked_mul(c.max(oc) as u64))
                    .and_then(|x| x.checked_mul(2))
                    .and_then(|x| {
                        x.checked_add(
                            (oc as u64)
                                .checked_mul(c as u64)?
                                .checked_mul((k as u64).checked_mul(k as u64)?)?,
                        )
                    });
                check::memory(
                    &format!("the convolution {s}"),
                    elems.and_then(|e| e.checked_mul(12)),
                )?;
            }
            check::writable("--out", out)
        }
        Cmd::Sqnr {
            batches,
            batch_len,
            test_len,
            ..
        } => {
            check::positive("--batches", *batches)?;
            check::positive("--batch-len", *batch_len)?;
            check::positive("--test-len", *test_len)?;
            let values = (*batch_len as u64)
                .checked_mul(*batches as u64)
                .and_then(|b| b.checked_add(*test_len as u64));
            check::memory("sqnr", values.and_then(|v| v.checked_mul(16)))
        }
        Cmd::Inspect { model, shape } => {
            check::input_file("the model", model)?;
            if let Some(s) = shape {
                onnx::check_shape(s)?;
            }
            Ok(())
        }
        Cmd::Run { args, .. } => onnx::validate(args),
        Cmd::Chart { inputs, out } => {
            for i in inputs {
                check::input_file("the input", std::path::Path::new(i))?;
            }
            check::writable("--out", out)
        }
        Cmd::Adapters { backend } => parse_backends(backend).map(drop).map_err(|e| e.to_string()),
    }
}

fn print_adapter(ctx: &Context) {
    let c = ctx.capabilities();
    let a = &c.adapter;
    println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    println!("driver:  {} {}", a.driver, a.driver_info);
    println!(
        "caps:    f16={} subgroups={} (size {}..{}) timestamps={} packed_int8_dot={} coop_f16={} max_binding={} MiB",
        c.shader_f16,
        c.subgroups,
        c.subgroup_size.0,
        c.subgroup_size.1,
        c.timestamp_query,
        c.packed_int8_dot,
        c.coop_f16,
        c.limits.max_storage_buffer_binding_size >> 20
    );
    println!(
        "limits:  max_buffer={} MiB workgroup_invocations={} workgroup_storage={} KiB workgroups_per_dim={}",
        c.limits.max_buffer_size >> 20,
        c.limits.max_compute_invocations_per_workgroup,
        c.limits.max_compute_workgroup_storage_size >> 10,
        c.limits.max_compute_workgroups_per_dimension
    );
}

fn sqnr_table(
    ctx: &Context,
    batches: usize,
    batch_len: usize,
    test_len: usize,
) -> Result<(), String> {
    use wgpu_quant::calib::eval::{observer_sqnr, Distribution};
    use wgpu_quant::calib::ObserverKind;
    use wgpu_quant::quant::{QType, QuantScheme};
    let kinds = ObserverKind::standard();
    print!("| distribution | scheme |");
    for k in &kinds {
        print!(" {} |", k.name());
    }
    println!();
    println!("|---|---|{}", "---:|".repeat(kinds.len()));
    for dist in Distribution::ALL {
        let schemes: Vec<(&str, QuantScheme)> = if dist.non_negative() {
            vec![
                ("u8 asymmetric", QuantScheme::asymmetric(QType::U8)),
                ("u4 asymmetric", QuantScheme::asymmetric(QType::U4)),
            ]
        } else {
            vec![
                ("i8 symmetric", QuantScheme::symmetric(QType::I8)),
                ("u8 asymmetric", QuantScheme::asymmetric(QType::U8)),
                ("i4 symmetric", QuantScheme::symmetric(QType::I4)),
            ]
        };
        for (sname, scheme) in schemes {
            print!("| {} | {sname} |", dist.name());
            let mut row = Vec::new();
            for k in &kinds {
                let (db, _) = observer_sqnr(ctx, dist, &scheme, *k, batches, batch_len, test_len)
                    .map_err(|e| e.to_string())?;
                row.push(db);
            }
            let best = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for db in row {
                if db == best {
                    print!(" **{db:.2}** |");
                } else {
                    print!(" {db:.2} |");
                }
            }
            println!();
        }
    }
    println!();
    println!(
        "SQNR in dB of the GPU quantize/dequantize round trip of a held-out sample of {test_len} \
         values, after calibrating on {batches} batches of {batch_len}; best per row in bold."
    );
    Ok(())
}

fn request(backend: Option<String>, adapter: Option<String>) -> Result<Context, String> {
    let backends = backend
        .map(|b| parse_backends(&b))
        .transpose()
        .map_err(|e| e.to_string())?;
    Context::request_blocking(&RequestOptions {
        backends,
        adapter_name: adapter,
        ..Default::default()
    })
    .map_err(|e| e.to_string())
}

fn choice_name(c: wgpu_quant::tuning::Choice) -> String {
    c.label()
}

fn tune(
    ctx: &Context,
    out: &str,
    gemm: &[String],
    linear: &[String],
    conv: &[String],
    (fp16, runs, verbose): (&[String], usize, bool),
) -> Result<(), String> {
    use wgpu_quant::tuning::{ConvKind, TuneCache, TuneOptions, Tuned, Tuner, WeightKind};
    let mut cache = TuneCache::load_or_default(out).map_err(|e| e.to_string())?;
    let opts = TuneOptions {
        runs,
        ..Default::default()
    };
    // An empty value (`--linear ''`) tunes none of that kind; every shape is checked
    // before anything is timed.
    let gemm: Vec<&String> = gemm.iter().filter(|s| !s.is_empty()).collect();
    let linear: Vec<&String> = linear.iter().filter(|s| !s.is_empty()).collect();
    let conv: Vec<&String> = conv.iter().filter(|s| !s.is_empty()).collect();
    for s in gemm.iter().chain(&linear) {
        parse_shape(s)?;
    }
    for s in &conv {
        parse_conv(s)?;
    }
    let mut rows: Vec<(String, String, Tuned)> = Vec::new();
    {
        let mut tuner = Tuner::new(ctx, &mut cache, opts);
        for s in gemm {
            let (m, n, k) = parse_shape(s)?;
            // The layout a linear layer's weight takes on this adapter (the bench's too).
            let trans = wgpu_quant::plan::linear_weight_transposed(ctx.capabilities(), k);
            let desc = wgpu_quant::ops::gemm::GemmDesc::new(m, n, k).transpose(false, trans);
            let t = tuner.gemm(&desc).map_err(|e| e.to_string())?;
            rows.push(("FP32".into(), s.to_string(), t));
            eprintln!("tuned FP32 {s}");
        }
        for s in linear {
            let (m, n, k) = parse_shape(s)?;
            let t = tuner.qgemm(m, n, k).map_err(|e| e.to_string())?;
            rows.push(("W8A8".into(), s.to_string(), t));
            for (name, kind) in [
                ("W8A16", WeightKind::I8),
                ("W4A16", WeightKind::I4),
                ("FP16", WeightKind::F16),
            ] {
                let t = tuner.wgemm(m, n, k, kind).map_err(|e| e.to_string())?;
                rows.push((name.into(), s.to_string(), t));
            }
            eprintln!("tuned linear {s}");
        }
        for s in fp16.iter().filter(|s| !s.is_empty()) {
            let (m, n, k) = parse_shape(s)?;
            let t = tuner
                .wgemm(m, n, k, WeightKind::F16)
                .map_err(|e| e.to_string())?;
            rows.push(("FP16".into(), s.to_string(), t));
            eprintln!("tuned FP16 {s}");
        }
        for s in conv {
            let [h, c, oc, k, stride, pad, groups] = parse_conv(s)?;
            let dims = wgpu_quant::ops::conv::ConvDims::new(oc, c, [k, k], groups)
                .map_err(|e| e.to_string())?;
            let desc = wgpu_quant::ops::conv::ConvDesc::default()
                .stride(stride)
                .padding(wgpu_quant::ops::conv::Padding::uniform(pad));
            for (name, kind) in [
                ("conv FP32", ConvKind::F32),
                ("conv FP16", ConvKind::F16),
                ("conv INT8", ConvKind::W8A8),
            ] {
                let t = tuner
                    .conv(&desc, dims, [1, h, h, c], kind)
                    .map_err(|e| e.to_string())?;
                rows.push((name.into(), s.to_string(), t));
            }
            eprintln!("tuned conv {s}");
        }
    }
    cache.save(out).map_err(|e| e.to_string())?;
    println!("| dtype | shape | default | ms | tuned | ms | tuned/default speedup | candidates verified | rejected |");
    println!("|---|---|---|---:|---|---:|---:|---:|---:|");
    for (dtype, shape, t) in &rows {
        println!(
            "| {dtype} | {shape} | {} | {:.3} | {} | {:.3} | {:.2}x | {} | {} |",
            choice_name(t.default),
            t.default_ms,
            if t.choice == t.default {
                "(default)".to_string()
            } else {
                choice_name(t.choice)
            },
            t.median_ms,
            t.speedup(),
            t.verified,
            t.rejected.len()
        );
    }
    if verbose {
        println!();
        println!("Every verified candidate (median ms):");
        println!();
        for (dtype, shape, t) in &rows {
            let list: Vec<String> = t
                .timings
                .iter()
                .map(|(c, ms)| format!("{} {ms:.3}", choice_name(*c)))
                .collect();
            println!("- {dtype} {shape}: {}", list.join("; "));
        }
    }
    println!();
    println!(
        "Median of {runs} runs per candidate ({} clock); a candidate replaces the default only \
         when more than {:.0}% faster. Cache written to {out}.",
        rows.first().map(|r| r.2.clock.as_str()).unwrap_or("-"),
        opts.margin * 100.0
    );
    Ok(())
}

fn run(cli: Cli) -> Result<bool, String> {
    match cli.cmd {
        Cmd::Inspect { model, shape } => {
            onnx::inspect(&model, shape.as_deref())?;
            Ok(true)
        }
        Cmd::Run {
            backend,
            adapter,
            args,
        } => {
            let ctx = request(backend, adapter)?;
            onnx::run(&ctx, &args)?;
            Ok(true)
        }
        Cmd::Tune {
            backend,
            adapter,
            out,
            gemm,
            linear,
            conv,
            fp16,
            runs,
            verbose,
        } => {
            let ctx = request(backend, adapter)?;
            print_adapter(&ctx);
            println!();
            tune(&ctx, &out, &gemm, &linear, &conv, (&fp16, runs, verbose))?;
            Ok(true)
        }
        Cmd::Sqnr {
            backend,
            adapter,
            batches,
            batch_len,
            test_len,
        } => {
            let ctx = request(backend, adapter)?;
            print_adapter(&ctx);
            println!();
            sqnr_table(&ctx, batches, batch_len, test_len)?;
            Ok(true)
        }
        Cmd::Adapters { backend } => {
            let backends = parse_backends(&backend).map_err(|e| e.to_string())?;
            let adapters = pollster::block_on(Context::adapters(backends));
            if adapters.is_empty() {
                return Err(wgpu_quant::Error::NoAdapter {
                    request: format!("backends {backends:?}"),
                    hint: "install a Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers) or try --backend gl".into(),
                }
                .to_string());
            }
            for adapter in adapters {
                let ctx = pollster::block_on(Context::from_adapter(&adapter))
                    .map_err(|e| e.to_string())?;
                print_adapter(&ctx);
                println!();
            }
            Ok(true)
        }
        Cmd::Bench(args) => bench_cmd(*args),
        Cmd::Chart { inputs, out } => {
            let mut records: Vec<bench::Record> = Vec::new();
            for path in &inputs {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                let mut r: Vec<bench::Record> = serde_json::from_str(&text)
                    .map_err(|e| format!("{path}: not a `bench --json` file: {e}"))?;
                records.append(&mut r);
            }
            std::fs::write(&out, bench::chart_svg(&records)).map_err(|e| format!("{out}: {e}"))?;
            eprintln!("wrote the chart of {} records to {out}", records.len());
            print!("{}", bench::speedup_table(&records));
            Ok(true)
        }
    }
}

/// A context on every adapter of `backend` (default: `WGPU_QUANT_BACKEND`, else all)
/// whose name contains `adapter` (default: `WGPU_QUANT_ADAPTER`, else any), in the
/// order wgpu lists them; an error with a hint when there is none.
fn every_adapter(backend: Option<String>, adapter: Option<String>) -> Result<Vec<Context>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let backend = backend.or_else(|| env("WGPU_QUANT_BACKEND"));
    let name = adapter.or_else(|| env("WGPU_QUANT_ADAPTER"));
    let backends =
        parse_backends(backend.as_deref().unwrap_or("all")).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for a in pollster::block_on(Context::adapters(backends)) {
        let info = a.get_info();
        if let Some(n) = &name {
            if !info.name.to_lowercase().contains(&n.to_lowercase()) {
                continue;
            }
        }
        out.push(pollster::block_on(Context::from_adapter(&a)).map_err(|e| e.to_string())?);
    }
    if out.is_empty() {
        return Err(wgpu_quant::Error::NoAdapter {
            request: format!("backends {backends:?}, adapter name containing {name:?}"),
            hint: "install a Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers), \
                   try --backend gl, or run `wgpu-quant adapters` to see the names"
                .into(),
        }
        .to_string());
    }
    Ok(out)
}

/// One unit of a bench run on an adapter.
enum Job {
    Probe(bench::Probe),
    Linear {
        suite: &'static str,
        case: String,
        shape: (usize, usize, usize),
    },
    Conv(bench::ConvLayer),
    Quant {
        op: bench::QuantOp,
        dtype: &'static str,
        granularity: &'static str,
        scheme: wgpu_quant::quant::QuantScheme,
    },
    Train(bench::TrainCase),
}

/// The bench options after `--quick` and the explicit flags are resolved.
struct Settings {
    jobs: Vec<Job>,
    dtypes: Vec<bench::Precision>,
    quick: bool,
    quant_shape: (usize, usize),
    opts: bench::CaseOptions,
    runs: usize,
    warmup: usize,
}

impl Settings {
    fn cases(&self) -> usize {
        self.jobs
            .iter()
            .map(|j| match j {
                Job::Linear { .. } => self.dtypes.len(),
                Job::Conv(_) => self.dtypes.iter().filter(|d| d.has_conv()).count(),
                _ => 1,
            })
            .sum()
    }
}

const QUICK_MODELS: [&str; 4] = [
    "bert.attn_proj",
    "llm.gemv",
    "r50.conv3x3_512",
    "eff.dw3x3_32",
];

fn settings(a: &BenchArgs) -> Result<Settings, String> {
    let q = a.quick;
    let known = ["peak", "gemm", "models", "quant", "train"];
    let mut suites: Vec<&str> = Vec::new();
    for s in a.suite.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some(k) = known.iter().find(|k| **k == s) else {
            return Err(format!(
                "unknown suite '{s}': expected {}",
                known.join(", ")
            ));
        };
        suites.push(k);
    }
    if a.no_peak {
        suites.retain(|s| *s != "peak");
    }
    let dtypes = a
        .dtypes
        .iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| bench::Precision::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes = a.sizes.clone().unwrap_or_else(|| {
        if q {
            vec![256]
        } else {
            vec![256, 512, 1024, 2048]
        }
    });
    if let Some(z) = sizes.iter().find(|&&n| n == 0) {
        return Err(format!("--sizes {z}: a size must be at least 1"));
    }
    let mut extra = Vec::new();
    for s in a.shapes.iter().filter(|s| !s.trim().is_empty()) {
        extra.push((s.trim().to_string(), parse_shape(s)?));
    }
    let models: Vec<String> = match &a.models {
        Some(v) => v
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None if q => QUICK_MODELS.map(String::from).to_vec(),
        None => bench::MODEL_LINEARS
            .iter()
            .map(|l| l.0.to_string())
            .chain(bench::CONV_LAYERS.iter().map(|l| l.name.to_string()))
            .collect(),
    };
    for m in &models {
        let linear = bench::MODEL_LINEARS.iter().any(|l| l.0 == m);
        let conv = bench::CONV_LAYERS.iter().any(|l| l.name == m);
        if !linear && !conv {
            return Err(format!(
                "unknown model layer '{m}' (see `wgpu-quant bench --list-models`)"
            ));
        }
    }
    let quant_shape = match &a.quant_shape {
        Some(s) => {
            let v: Vec<usize> = s
                .split('x')
                .map(|p| p.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--quant-shape '{s}': {e} (expected ROWSxCOLS)"))?;
            match v[..] {
                [r, c] if r > 0 && c > 0 => (r, c),
                _ => return Err(format!("--quant-shape '{s}': expected ROWSxCOLS, both > 0")),
            }
        }
        None if q => (1024, 1024),
        None => (4096, 1024),
    };
    let mut jobs = Vec::new();
    for s in &suites {
        match *s {
            "peak" => jobs.extend(bench::Probe::ALL.map(Job::Probe)),
            "gemm" => {
                for &n in &sizes {
                    jobs.push(Job::Linear {
                        suite: "gemm",
                        case: format!("{n}x{n}x{n}"),
                        shape: (n, n, n),
                    });
                }
                for (name, shape) in &extra {
                    jobs.push(Job::Linear {
                        suite: "gemm",
                        case: name.clone(),
                        shape: *shape,
                    });
                }
            }
            "models" => {
                for (name, m, n, k) in bench::MODEL_LINEARS {
                    if models.iter().any(|x| x == name) {
                        jobs.push(Job::Linear {
                            suite: "models",
                            case: name.to_string(),
                            shape: (m, n, k),
                        });
                    }
                }
                for l in bench::CONV_LAYERS {
                    if models.iter().any(|x| x == l.name) {
                        jobs.push(Job::Conv(l));
                    }
                }
            }
            "train" => jobs.extend(bench::train_cases(q).into_iter().map(Job::Train)),
            _ => {
                for (op, dtype, granularity, scheme) in bench::quant_cases() {
                    jobs.push(Job::Quant {
                        op,
                        dtype,
                        granularity,
                        scheme,
                    });
                }
            }
        }
    }
    Ok(Settings {
        jobs,
        dtypes,
        quick: q,
        quant_shape,
        opts: bench::CaseOptions {
            samples: a.samples.max(1),
            fp32_kernel: parse_kernel(&a.kernel)?,
            ..bench::CaseOptions::default()
        },
        runs: a.runs.unwrap_or(if q { 3 } else { 5 }).max(1),
        warmup: a.warmup,
    })
}

fn bench_cmd(a: BenchArgs) -> Result<bool, String> {
    if a.list_models {
        println!("| layer | kind | shape |");
        println!("|---|---|---|");
        for (name, m, n, k) in bench::MODEL_LINEARS {
            println!("| {name} | linear | {m}x{n}x{k} |");
        }
        for l in bench::CONV_LAYERS {
            println!("| {} | conv | {} |", l.name, bench::Shape::conv(&l));
        }
        return Ok(true);
    }
    let set = settings(&a)?;
    let contexts = every_adapter(a.backend.clone(), a.adapter.clone())?;
    let mut all_ok = true;
    let mut records = Vec::new();
    for (i, ctx) in contexts.iter().enumerate() {
        if i > 0 {
            println!();
        }
        all_ok &= bench_adapter(ctx, &set, &mut records)?;
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote {} records to {path}", records.len());
    }
    if let Some(path) = &a.chart {
        std::fs::write(path, bench::chart_svg(&records)).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("wrote the chart to {path}");
    }
    Ok(all_ok)
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

/// A table row of `r`.
fn row(r: &bench::Record) -> String {
    let range = match (r.min_ms, r.max_ms) {
        (Some(lo), Some(hi)) => format!("{lo:.3}..{hi:.3}"),
        _ => "-".into(),
    };
    let err = if r.verified && r.budget == 0.0 {
        "exact".to_string()
    } else {
        format!("{:.1e}", r.max_rel_error)
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.suite,
        r.case,
        r.op,
        r.dtype,
        r.shape,
        r.kernel,
        fmt_opt(r.median_ms, 3),
        range,
        fmt_opt(r.gops, 2),
        fmt_opt(r.gbps, 2),
        r.speedup_vs_fp32
            .map_or_else(|| "-".into(), |s| format!("{s:.2}x")),
        r.pct_of_peak
            .map_or_else(|| "-".into(), |p| format!("{p:.1}%")),
        err,
        if r.verified { "yes" } else { "FAILED" }
    )
}

/// Times a prepared case (`(warmup, runs)`; an unverified case is not timed) and makes
/// its record; an error comes back with the case's table label.
fn timed(
    ctx: &Context,
    id: bench::CaseId,
    prep: wgpu_quant::Result<bench::Prepared<'_>>,
    (warmup, runs): (usize, usize),
    peaks: &bench::Peaks,
) -> Result<bench::Record, (String, String)> {
    let label = format!("{} | {} | {} | {}", id.suite, id.case, id.op, id.dtype);
    prep.and_then(|p| {
        let t = p.time(ctx, warmup, runs)?;
        Ok(bench::Record::from_case(ctx, id, &p, t.as_ref(), peaks))
    })
    .map_err(|e| (label, e.to_string()))
}

/// Runs every job of `set` on one adapter, printing its table and appending its records;
/// `Ok(false)` when a case failed its check or its op returned an error.
/// The progress message, record id and prepared case of a one-case job (quant, train).
fn single_case<'a>(
    ctx: &'a Context,
    set: &Settings,
    job: &Job,
) -> (
    String,
    bench::CaseId,
    wgpu_quant::Result<bench::Prepared<'a>>,
) {
    match job {
        Job::Quant {
            op,
            dtype,
            granularity,
            scheme,
        } => {
            let (rows, cols) = set.quant_shape;
            let id = bench::CaseId {
                suite: "quant".into(),
                op: op.name().into(),
                dtype: dtype.to_string(),
                case: granularity.to_string(),
                shape: bench::Shape::Tensor { rows, cols },
            };
            let msg = format!("{} {dtype} {granularity}", op.name());
            (msg, id, op.prepare(ctx, scheme, rows, cols))
        }
        Job::Train(tc) => {
            let id = bench::CaseId {
                suite: "train".into(),
                op: tc.op.name().into(),
                dtype: "fp32".into(),
                case: tc.name.into(),
                shape: tc.shape.clone(),
            };
            let msg = format!("{} {}", tc.name, tc.op.name());
            (msg, id, tc.prepare(ctx, set.opts.samples))
        }
        _ => unreachable!("only quant and train jobs are one case"),
    }
}

fn bench_adapter(
    ctx: &Context,
    set: &Settings,
    records: &mut Vec<bench::Record>,
) -> Result<bool, String> {
    use bench::{CaseId, Record};
    print_adapter(ctx);
    println!();
    println!("| suite | case | op | dtype | shape | kernel | median ms | min..max ms | GOP/s | GB/s | vs FP32 | % of peak | rel. error | verified |");
    println!("|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let pb = indicatif::ProgressBar::new(set.cases() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    pb.set_prefix(ctx.capabilities().adapter.name.clone());
    let start = records.len();
    let mut peaks = bench::Peaks::default();
    let mut all_ok = true;
    let mut clock = Clock::Wall;
    let (runs, warmup) = (set.runs, set.warmup);
    // Prints a finished case (or its error) and appends its record.
    let mut emit = |res: Result<Record, (String, String)>,
                    records: &mut Vec<Record>,
                    pb: &indicatif::ProgressBar| {
        match res {
            Ok(mut rec) => {
                all_ok &= rec.verified;
                if rec.clock == "Timestamps" {
                    clock = Clock::Timestamps;
                }
                records.push(rec.clone());
                bench::fill_speedups(&mut records[start..]);
                rec.speedup_vs_fp32 = records.last().and_then(|r| r.speedup_vs_fp32);
                pb.suspend(|| println!("{}", row(&rec)));
            }
            Err((what, e)) => {
                all_ok = false;
                pb.suspend(|| println!("| {what} | ERROR: {e} | | | | | | | | | | | | FAILED |"));
            }
        }
        pb.inc(1);
    };
    for job in &set.jobs {
        match job {
            Job::Probe(p) => {
                pb.set_message(format!("peak {} {}", p.dtype(), p.op()));
                if let Some(why) = p.unsupported(ctx) {
                    pb.suspend(|| {
                        println!(
                            "| peak | {} {} | {} | {} | - | not run: {why} | | | | | | | | - |",
                            p.dtype(),
                            p.op(),
                            p.op(),
                            p.dtype()
                        )
                    });
                    pb.inc(1);
                    continue;
                }
                let size = p.default_size(ctx, set.quick);
                let res = match bench::probe(ctx, *p, size, runs.max(3)) {
                    Ok(Some(r)) => {
                        peaks.set(&r);
                        Ok(Record::from_probe(ctx, &r))
                    }
                    Ok(None) => {
                        // Unsupported: reported above, so not reached.
                        pb.inc(1);
                        continue;
                    }
                    Err(e) => Err((format!("peak | {} {}", p.dtype(), p.op()), e.to_string())),
                };
                emit(res, records, &pb);
            }
            Job::Linear { suite, case, shape } => {
                let (m, n, k) = *shape;
                let data = bench::LinearData::new(m, n, k);
                for &d in &set.dtypes {
                    pb.set_message(format!("{case} {}", d.name()));
                    let id = CaseId {
                        suite: suite.to_string(),
                        op: "linear".into(),
                        dtype: d.name().into(),
                        case: case.clone(),
                        shape: bench::Shape::Gemm { m, n, k },
                    };
                    let prep = data.prepare(ctx, d, &set.opts);
                    emit(timed(ctx, id, prep, (warmup, runs), &peaks), records, &pb);
                }
            }
            Job::Conv(l) => {
                let data = bench::ConvData::new(*l).map_err(|e| format!("{}: {e}", l.name))?;
                for &d in set.dtypes.iter().filter(|d| d.has_conv()) {
                    pb.set_message(format!("{} {}", l.name, d.name()));
                    let id = CaseId {
                        suite: "models".into(),
                        op: "conv".into(),
                        dtype: d.name().into(),
                        case: l.name.into(),
                        shape: bench::Shape::conv(l),
                    };
                    let prep = data.prepare(ctx, d, &set.opts);
                    emit(timed(ctx, id, prep, (warmup, runs), &peaks), records, &pb);
                }
            }
            Job::Quant { .. } | Job::Train(_) => {
                let (msg, id, prep) = single_case(ctx, set, job);
                pb.set_message(msg);
                emit(timed(ctx, id, prep, (warmup, runs), &peaks), records, &pb);
            }
        }
    }
    pb.finish_and_clear();
    if records[start..]
        .iter()
        .any(|r| r.speedup_vs_fp32.is_some() && r.dtype != "fp32")
    {
        println!();
        println!("Speedup over FP32 (FP32 median over each dtype's, same case and run):");
        println!();
        print!("{}", bench::speedup_table(&records[start..]));
    }
    println!();
    println!(
        "clock: {clock:?}; {runs} timed runs per case after {warmup} warm-up; GOP/s counts a \
         multiply-add as 2 (quant: elements/s); GB/s: inputs read once, output written once; \
         vs FP32: the FP32 median over this one, same case; % of peak: of this run's probe \
         of the same arithmetic (quant: of the copy bandwidth); rel. error: sampled \
         ||got - ref|| / ||ref|| (exact: bit for bit)."
    );
    Ok(all_ok)
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away
    // (`wgpu-quant inspect model.onnx | head`) instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = validate(&cli.cmd) {
        // Like clap's own usage errors: status 2, with a hint.
        eprintln!("wgpu-quant: error: {e}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    // The argument fuzzer (tests/loader_fuzz.rs) stops here: the arguments were valid.
    if std::env::var_os("WGPU_QUANT_CLI_CHECK_ONLY").is_some() {
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("wgpu-quant: some results were wrong (FAILED rows above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wgpu-quant: {e}");
            ExitCode::FAILURE
        }
    }
}
