//! `wgpu-quant`: list adapters and benchmark kernels on them.
//!
//! ```text
//! wgpu-quant adapters                 # every adapter wgpu finds, with capabilities
//! wgpu-quant bench                    # verified FP32 GEMM/GEMV throughput + FMA peak, every adapter
//! wgpu-quant bench --sizes 512,1024 --gemv 1x4096x4096 --kernel reg:64,4,1,4
//! wgpu-quant sqnr                     # SQNR of each calibration observer (docs/QUANTIZATION.md)
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wgpu_quant::bench::{self, Clock};
use wgpu_quant::context::parse_backends;
use wgpu_quant::ops::gemm::{GemmDesc, GemmKernel, RegConfig, SubgroupConfig, TiledConfig};
use wgpu_quant::{Context, RequestOptions};

#[derive(Parser)]
#[command(
    name = "wgpu-quant",
    version,
    about = "Quantized GPU kernels through wgpu: adapters and benchmarks"
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
    /// Benchmark verified FP32 GEMM and GEMV, next to the measured FMA peak, on every
    /// adapter of the selected backends whose name matches (one table per adapter).
    Bench {
        /// Backends to consider (default: WGPU_QUANT_BACKEND, else all).
        #[arg(long)]
        backend: Option<String>,
        /// Adapter name substring (default: WGPU_QUANT_ADAPTER, else every adapter).
        #[arg(long)]
        adapter: Option<String>,
        /// Square GEMM sizes.
        #[arg(long, value_delimiter = ',', default_values_t = vec![256usize, 512, 1024, 2048])]
        sizes: Vec<usize>,
        /// GEMV / rectangular shapes as MxNxK (B stored K x N).
        #[arg(long, value_delimiter = ',', default_values_t = vec!["1x4096x4096".to_string()])]
        gemv: Vec<String>,
        /// Kernel: auto, tiled64, tiled128, tiled:WGX,WGY,TM,TN,BK, reg:WG,TM,TN4,KU[,SPLITK] or
        /// sg:WG,TM,TN4.
        #[arg(long, default_value = "auto")]
        kernel: String,
        /// Timed runs per case (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Untimed warm-up runs per case.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Skip the FMA peak probe.
        #[arg(long)]
        no_peak: bool,
        /// Also write every case as a JSON record to FILE (an array; fields in the
        /// README and `wgpu_quant::bench::Record`).
        #[arg(long, value_name = "FILE")]
        json: Option<String>,
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
        /// FP32 GEMM shapes as MxNxK (B stored K x N); '' for none.
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
        /// Timed runs per candidate (the median counts).
        #[arg(long, default_value_t = 5)]
        runs: usize,
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
}

fn parse_kernel(s: &str) -> Result<Option<GemmKernel>, String> {
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
        [m, n, k] => Ok((m, n, k)),
        _ => Err(format!("shape '{s}': expected MxNxK")),
    }
}

fn kernel_name(k: GemmKernel) -> String {
    match k {
        GemmKernel::Tiled(c) => format!(
            "tiled {}x{} ({}x{} per inv, bk {})",
            c.wg_y * c.tm,
            c.wg_x * c.tn,
            c.tm,
            c.tn,
            c.bk
        ),
        GemmKernel::Register(c) => format!(
            "reg wg{} {}x{} ku{}{}",
            c.wg,
            c.tm,
            c.tn4 * 4,
            c.ku,
            split_label(c.split_k)
        ),
        GemmKernel::Subgroup(c) => format!("subgroup wg{} {}x{}", c.wg, c.tm, c.tn4 * 4),
    }
}

fn print_adapter(ctx: &Context) {
    let c = ctx.capabilities();
    let a = &c.adapter;
    println!("adapter: {} ({:?}, {:?})", a.name, a.backend, a.device_type);
    println!("driver:  {} {}", a.driver, a.driver_info);
    println!(
        "caps:    f16={} subgroups={} (size {}..{}) timestamps={} packed_int8_dot={} max_binding={} MiB",
        c.shader_f16,
        c.subgroups,
        c.subgroup_size.0,
        c.subgroup_size.1,
        c.timestamp_query,
        c.packed_int8_dot,
        c.limits.max_storage_buffer_binding_size >> 20
    );
}

fn sqnr_table(
    ctx: &Context,
    batches: usize,
    batch_len: usize,
    test_len: usize,
) -> Result<(), String> {
    use wgpu_quant::quant::eval::{observer_sqnr, Distribution};
    use wgpu_quant::quant::{ObserverKind, QType, QuantScheme};
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

/// ` split-K N` for a configuration with N > 1 K slices, else nothing.
fn split_label(split_k: u32) -> String {
    if split_k > 1 {
        format!(" split-K {split_k}")
    } else {
        String::new()
    }
}

fn choice_name(c: wgpu_quant::plan::tune::Choice) -> String {
    match c {
        wgpu_quant::plan::tune::Choice::Gemm(k) => kernel_name(k),
        wgpu_quant::plan::tune::Choice::Rows(t) => {
            format!(
                "rows wg{} {}x{}{}",
                t.wg,
                t.tm,
                t.tn4 * 4,
                split_label(t.split_k)
            )
        }
    }
}

fn tune(
    ctx: &Context,
    out: &str,
    gemm: &[String],
    linear: &[String],
    conv: &[String],
    runs: usize,
) -> Result<(), String> {
    use wgpu_quant::plan::tune::{ConvKind, TuneCache, TuneOptions, Tuned, Tuner, WeightKind};
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
        if s.split('x').count() != 7 || s.split('x').any(|p| p.trim().parse::<usize>().is_err()) {
            return Err(format!("convolution {s:?}: expected HxCxOCxKxSxPxG"));
        }
    }
    let mut rows: Vec<(String, String, Tuned)> = Vec::new();
    {
        let mut tuner = Tuner::new(ctx, &mut cache, opts);
        for s in gemm {
            let (m, n, k) = parse_shape(s)?;
            let t = tuner
                .gemm(&wgpu_quant::ops::gemm::GemmDesc::new(m, n, k))
                .map_err(|e| e.to_string())?;
            rows.push(("FP32".into(), s.to_string(), t));
            eprintln!("tuned FP32 {s}");
        }
        for s in linear {
            let (m, n, k) = parse_shape(s)?;
            let t = tuner.qgemm(m, n, k).map_err(|e| e.to_string())?;
            rows.push(("W8A8".into(), s.to_string(), t));
            for (name, kind) in [
                ("W8A32", WeightKind::I8),
                ("W4A32", WeightKind::I4),
                ("FP16", WeightKind::F16),
            ] {
                let t = tuner.wgemm(m, n, k, kind).map_err(|e| e.to_string())?;
                rows.push((name.into(), s.to_string(), t));
            }
            eprintln!("tuned linear {s}");
        }
        for s in conv {
            let v: Vec<usize> = s
                .split('x')
                .map(|p| p.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("convolution {s:?}: expected HxCxOCxKxSxPxG"))?;
            let [h, c, oc, k, stride, pad, groups] = v[..] else {
                return Err(format!("convolution {s:?}: expected HxCxOCxKxSxPxG"));
            };
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
    println!();
    println!(
        "Median of {runs} runs per candidate ({} clock); a candidate replaces the default only \
         when more than {:.0}% faster. Cache written to {out}.",
        rows.first().map(|r| r.2.clock.as_str()).unwrap_or("-"),
        opts.margin * 100.0
    );
    Ok(())
}

fn run() -> Result<bool, String> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Tune {
            backend,
            adapter,
            out,
            gemm,
            linear,
            conv,
            runs,
        } => {
            let ctx = request(backend, adapter)?;
            print_adapter(&ctx);
            println!();
            tune(&ctx, &out, &gemm, &linear, &conv, runs)?;
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
        Cmd::Bench {
            backend,
            adapter,
            sizes,
            gemv,
            kernel,
            runs,
            warmup,
            no_peak,
            json,
        } => {
            let kernel = parse_kernel(&kernel)?;
            // (suite, m, n, k): the square sizes, then the --gemv shapes.
            let mut shapes: Vec<(&str, usize, usize, usize)> =
                sizes.iter().map(|&s| ("gemm", s, s, s)).collect();
            for g in gemv.iter().filter(|g| !g.trim().is_empty()) {
                let (m, n, k) = parse_shape(g)?;
                shapes.push(("gemv", m, n, k));
            }
            let contexts = every_adapter(backend, adapter)?;
            let mut all_ok = true;
            let mut records = Vec::new();
            for (i, ctx) in contexts.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let opts = (runs, warmup, no_peak);
                all_ok &= bench_adapter(ctx, kernel, &shapes, opts, &mut records)?;
            }
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
                std::fs::write(&path, text + "\n").map_err(|e| format!("{path}: {e}"))?;
                eprintln!("wrote {} records to {path}", records.len());
            }
            Ok(all_ok)
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

/// The FP32 GEMM/GEMV table of one adapter (`opts`: runs, warm-up runs, no peak probe),
/// each case also appended to `records`; `Ok(false)` when a case failed verification.
fn bench_adapter(
    ctx: &Context,
    kernel: Option<GemmKernel>,
    shapes: &[(&str, usize, usize, usize)],
    opts: (usize, usize, bool),
    records: &mut Vec<bench::Record>,
) -> Result<bool, String> {
    let (runs, warmup, no_peak) = opts;
    print_adapter(ctx);
    let peak = if no_peak {
        None
    } else {
        let wgs = if ctx.capabilities().is_cpu() {
            256
        } else {
            16384
        };
        let p = bench::fma_peak(ctx, wgs, runs.max(3)).map_err(|e| e.to_string())?;
        println!(
            "fp32 FMA peak: {:.1} GFLOP/s (median of {}, {:?} clock)",
            p.gflops,
            p.timings.ms.len(),
            p.timings.clock
        );
        Some(p.gflops)
    };
    println!();
    println!("| op | M x N x K | kernel | median ms | min..max ms | GFLOP/s | % of peak | rel. error | verified |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---|");
    let mut all_ok = true;
    let mut clock = Clock::Wall;
    for &(suite, m, n, k) in shapes {
        let mut desc = GemmDesc::new(m, n, k);
        desc.kernel = kernel;
        let r = bench::gemm_case(ctx, &desc, 2048, warmup, runs).map_err(|e| e.to_string())?;
        let op = if m <= 8 { "gemv fp32" } else { "gemm fp32" };
        records.push(bench::Record::fp32_gemm(
            ctx,
            suite,
            &r,
            kernel_name(r.kernel),
            peak,
        ));
        match (&r.timings, r.gflops()) {
            (Some(t), Some(g)) => {
                clock = t.clock;
                let (lo, hi) = t.range();
                let pct = peak
                    .map(|p| format!("{:.1}%", 100.0 * g / p))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "| {op} | {m}x{n}x{k} | {} | {:.3} | {:.3}..{:.3} | {:.2} | {pct} | {:.1e} | yes ({} entries) |",
                    kernel_name(r.kernel), t.median(), lo, hi, g, r.rel_error, r.checked
                );
            }
            _ => {
                all_ok = false;
                println!(
                    "| {op} | {m}x{n}x{k} | {} | - | - | - | - | {:.1e} | FAILED |",
                    kernel_name(r.kernel),
                    r.rel_error
                );
            }
        }
    }
    println!();
    println!("clock: {clock:?}; runs per case: {runs} after {warmup} warm-up");
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run() {
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
