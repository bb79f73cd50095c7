//! The plan without a GPU: kernel and tile choice, split-K, binding-window splits and
//! grid folding, on synthetic capabilities (`Capabilities::synthetic`). Each test states
//! the documented rule (src/plan/mod.rs, docs/DISPATCH.md) and checks it over shapes.

use wgpu_quant::ops::gemm::{GemmDesc, GemmKernel, RegConfig, SubgroupConfig};
use wgpu_quant::ops::wgemm::HalfMath;
use wgpu_quant::plan::split::{fold_grid, gemm_pieces, runs, window_units, SplitK};
use wgpu_quant::plan::{self, SPLIT_K_MAX, SPLIT_K_MIN_SLICE, SPLIT_K_TARGET};
use wgpu_quant::tuning::WeightType;
use wgpu_quant::{Capabilities, Error, KeyLimits};

fn limits() -> KeyLimits {
    KeyLimits::of(&wgpu::Limits::default())
}

fn gpu() -> Capabilities {
    Capabilities::synthetic("gpu", wgpu::DeviceType::DiscreteGpu, limits(), Some(32))
}

fn cpu(subgroup: Option<u32>) -> Capabilities {
    Capabilities::synthetic("cpu", wgpu::DeviceType::Cpu, limits(), subgroup)
}

fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as u64
}

/// Odd and tile-sized dimensions.
const DIMS: [usize; 9] = [1, 2, 3, 7, 17, 33, 128, 129, 1000];

#[test]
fn cpu_gemm_kernels_follow_the_heuristic() {
    let sg = cpu(Some(8));
    let k = |caps: &Capabilities, m| plan::default_gemm_kernel(caps, &GemmDesc::new(m, 512, 512));
    // M = 1: the register kernel, one row by four columns per invocation.
    assert!(matches!(k(&sg, 1), GemmKernel::Register(c) if c.tm == 1 && c.tn4 == 1));
    // M = 2: 2 x 8 on 32 invocations (tuned on lavapipe).
    assert!(matches!(k(&sg, 2), GemmKernel::Register(c) if (c.wg, c.tm, c.tn4) == (32, 2, 2)));
    // Subgroups of 8 or more: the subgroup kernel, 8 rows up to M = 8, else 16.
    assert!(matches!(
        k(&sg, 5),
        GemmKernel::Subgroup(SubgroupConfig { tm: 8, .. })
    ));
    assert!(matches!(
        k(&sg, 64),
        GemmKernel::Subgroup(SubgroupConfig { tm: 16, .. })
    ));
    // A transposed B with K a multiple of 4 (the K-vector loads): tiles one group of 4
    // columns wide, 8 rows up to M = 8, else 16 rows on 16 invocations; K not a multiple
    // of 4 keeps the [K, N] choices.
    let kt =
        |m, k| plan::default_gemm_kernel(&sg, &GemmDesc::new(m, 512, k).transpose(false, true));
    assert_eq!(
        kt(5, 512),
        GemmKernel::Subgroup(SubgroupConfig {
            wg: 64,
            tm: 8,
            tn4: 1
        })
    );
    assert_eq!(
        kt(64, 512),
        GemmKernel::Subgroup(SubgroupConfig {
            wg: 16,
            tm: 16,
            tn4: 1
        })
    );
    assert_eq!(kt(64, 510), k(&sg, 64));
    // The layout of a linear layer's FP32 weight: [N, K] on CPU adapters when K is a
    // multiple of 4, [K, N] on GPUs.
    assert!(plan::linear_weight_transposed(&sg, 768));
    assert!(!plan::linear_weight_transposed(&sg, 27));
    assert!(!plan::linear_weight_transposed(&gpu(), 768));
    // No subgroups, or subgroups of 4: the register kernel.
    for caps in [cpu(None), cpu(Some(4))] {
        assert!(matches!(k(&caps, 4), GemmKernel::Register(c) if c.tm == 4));
        assert!(matches!(k(&caps, 64), GemmKernel::Register(c) if c.tm == 8));
    }
    // CPU adapters never get workgroup-memory kernels.
    for m in DIMS {
        for caps in [cpu(None), cpu(Some(8)), cpu(Some(16))] {
            let kernel = k(&caps, m);
            assert!(
                !matches!(kernel, GemmKernel::Tiled(_)),
                "m = {m}: {kernel:?}"
            );
            assert!(kernel.fits(&caps));
        }
    }
}

#[test]
fn gpu_gemm_kernels_follow_the_heuristic() {
    let caps = gpu();
    let k = |m, n| plan::default_gemm_kernel(&caps, &GemmDesc::new(m, n, 1024));
    // Small M: the register kernel with M rows per invocation (up to 8).
    for m in 1..=8 {
        let GemmKernel::Register(c) = k(m, 4096) else {
            panic!("m = {m}: {:?}", k(m, 4096));
        };
        assert!(c.tm as usize >= m && c.tm <= 8, "m = {m}: {c:?}");
    }
    // Beyond 8 rows the 64x64 tile, whatever the size (the 128x128 one ran 9.9x behind
    // it on an H100; the tuner still offers it).
    for (m, n) in [
        (9, 64),
        (128, 128),
        (1000, 129),
        (127, 4096),
        (4096, 64),
        (4096, 4096),
    ] {
        assert_eq!(k(m, n), GemmKernel::Tiled(GemmKernel::TILED[0]), "{m}x{n}");
    }
    // A tiled kernel that does not fit the workgroup memory gives way to the register
    // kernel.
    let mut small = gpu();
    small.limits.max_compute_workgroup_storage_size = 1024;
    let kernel = plan::default_gemm_kernel(&small, &GemmDesc::new(512, 512, 512));
    assert!(matches!(kernel, GemmKernel::Register(_)), "{kernel:?}");
    assert!(kernel.fits(&small));
}

#[test]
fn every_default_fits_the_invocation_limit() {
    for lim in [32u32, 64, 256] {
        for caps in [gpu(), cpu(Some(8)), cpu(None)] {
            let mut caps = caps;
            caps.limits.max_compute_invocations_per_workgroup = lim;
            for m in DIMS {
                for n in DIMS {
                    let g = plan::default_gemm_kernel(&caps, &GemmDesc::new(m, n, 300));
                    assert!(g.fits(&caps), "{lim}: {m}x{n}: {g:?}");
                    for t in [
                        plan::default_qgemm_config(&caps, m, n, 300),
                        plan::default_wgemm_config(&caps, m, n, 300, WeightType::I8),
                        plan::default_qconv_config(&caps, m, n),
                        plan::default_conv_config(&caps, m, n),
                    ] {
                        assert!(t.wg <= lim && t.wg > 0, "{lim}: {m}x{n}: {t:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn split_k_heuristic() {
    let g = gpu();
    for workgroups in [1u64, 3, 8, 64, 255, 256, 1000] {
        for k in [1usize, 255, 256, 511, 512, 4096, 11008, 1 << 20] {
            let s = plan::default_split_k(&g, workgroups, k);
            assert!(
                s.is_power_of_two() && s <= SPLIT_K_MAX,
                "{workgroups}, {k}: {s}"
            );
            if workgroups >= SPLIT_K_TARGET {
                assert_eq!(s, 1, "a filled GPU is not split");
            }
            // Slices keep at least SPLIT_K_MIN_SLICE values of K.
            assert!(s == 1 || k / s as usize >= SPLIT_K_MIN_SLICE, "{k} / {s}");
            // Never more workgroups than the target.
            assert!(s == 1 || workgroups * u64::from(s) <= SPLIT_K_TARGET);
            // The closest power of two below the target: doubling would overshoot, run
            // short slices, or pass the maximum.
            let d = u64::from(s) * 2;
            assert!(
                workgroups * d > SPLIT_K_TARGET
                    || (k as u64) / d < SPLIT_K_MIN_SLICE as u64
                    || d > u64::from(SPLIT_K_MAX),
                "{workgroups}, {k}: {s} could double"
            );
        }
    }
    // A GEMV of 1 workgroup over K = 4096 takes the most slices K allows.
    assert_eq!(plan::default_split_k(&g, 1, 4096), 16);
    // CPU adapters aim at 4 workgroups per core.
    let c = cpu(Some(8));
    assert_eq!(plan::split_k_target(&c), 4 * cores());
    assert_eq!(plan::default_split_k(&c, 4 * cores(), 1 << 20), 1);
    // ... with slices of at least SPLIT_K_MIN_SLICE_CPU: K = 768 stays whole, K = 4096
    // takes at most 4 slices.
    assert_eq!(plan::default_split_k(&c, 1, 768), 1);
    assert_eq!(
        plan::default_split_k(&c, 1, 4096),
        (4 * cores() as u32).min(4)
    );
    // The row GEMMs split on GPUs only; the FP32 register kernel everywhere.
    assert_eq!(plan::default_qgemm_config(&c, 1, 768, 768).split_k, 1);
    assert_eq!(
        plan::default_wgemm_config(&c, 1, 768, 768, WeightType::I8).split_k,
        1
    );
    assert!(plan::default_qgemm_config(&g, 1, 768, 4096).split_k > 1);
    assert!(plan::default_wgemm_config(&g, 1, 768, 4096, WeightType::I8).split_k > 1);
}

/// The CPU adapters' row tiles for linear layers beyond M = 2 (the lavapipe and GL
/// sweeps): W8A8 4x4 then 4x8 (8x4 without subgroups), 4-bit weights 4x4 (4x8 without
/// subgroups), 8-bit weights 4x8; GPUs and GEMVs keep the shared rule.
#[test]
fn cpu_row_tiles_for_linear_layers() {
    let (c, g) = (cpu(Some(8)), gpu());
    let q = |caps: &Capabilities, m| plan::default_qgemm_config(caps, m, 4096, 4096);
    let w = |caps: &Capabilities, m, t| plan::default_wgemm_config(caps, m, 4096, 4096, t);
    let shape = |t: wgpu_quant::ops::RowTile| (t.wg, t.tm, t.tn4);
    assert_eq!(shape(q(&c, 3)), (64, 4, 1));
    assert_eq!(shape(q(&c, 128)), (64, 4, 2));
    assert_eq!(shape(q(&c, 8)), (64, 4, 2));
    assert_eq!(shape(q(&cpu(None), 3)), (64, 4, 1));
    assert_eq!(shape(q(&cpu(None), 128)), (64, 8, 1));
    // ... on 32 or 16 invocations where 64 would leave more columns idle (the widest of
    // equals).
    let q768 = |caps: &Capabilities| shape(plan::default_qgemm_config(caps, 128, 768, 768));
    assert_eq!(q768(&c), (32, 4, 2));
    assert_eq!(q768(&cpu(None)), (64, 8, 1));
    for (n, wg) in [
        (512, 64),
        (1000, 64),
        (1024, 64),
        (3072, 64),
        (768, 32),
        (1792, 32),
        (640, 16),
        (896, 16),
        (1100, 16),
        (300, 16),
        (200, 32),
    ] {
        let t = plan::default_qgemm_config(&c, 128, n, 768);
        assert_eq!(shape(t), (wg, 4, 2), "{n}");
        // No workgroup width of the three covers fewer columns.
        let covered = |w: u32| n.div_ceil(w as usize * 8) * w as usize * 8;
        assert!(
            [64, 32, 16].iter().all(|&w| covered(w) >= covered(t.wg)),
            "{n}"
        );
    }
    // The same for every CPU tile: weight-only 4x8 and 4x4, GL's 8x4.
    let wq = |caps: &Capabilities, m, n, t| shape(plan::default_wgemm_config(caps, m, n, 768, t));
    assert_eq!(wq(&c, 64, 768, WeightType::I8), (32, 4, 2));
    assert_eq!(wq(&c, 32, 640, WeightType::I8), (16, 4, 2));
    assert_eq!(wq(&c, 32, 640, WeightType::I4), (32, 4, 1));
    assert_eq!(wq(&c, 32, 768, WeightType::I4), (64, 4, 1));
    assert_eq!(wq(&cpu(None), 64, 768, WeightType::I8), (32, 4, 2));
    assert_eq!(wq(&cpu(None), 64, 640, WeightType::U4), (16, 4, 2));
    assert_eq!(wq(&c, 3, 640, WeightType::F16), (32, 4, 1));
    assert_eq!(
        shape(plan::default_qgemm_config(&cpu(None), 32, 640, 1024)),
        (32, 8, 1)
    );
    assert_eq!(
        shape(plan::default_qgemm_config(&cpu(None), 32, 768, 1024)),
        (64, 8, 1)
    );
    // GPUs keep their tiles.
    for n in [640, 768] {
        assert_eq!(wq(&g, 64, n, WeightType::I8), (64, 4, 2), "{n}");
        assert_eq!(
            shape(plan::default_qgemm_config(&g, 64, n, 768)),
            (64, 4, 2),
            "{n}"
        );
    }
    assert_eq!(shape(q(&g, 128)), (64, 4, 2));
    assert_eq!(shape(q(&c, 1)), shape(q(&g, 1)));
    for m in [3, 8, 128] {
        assert_eq!(shape(w(&c, m, WeightType::I4)), (64, 4, 1), "m = {m}");
        assert_eq!(shape(w(&c, m, WeightType::I8)), (64, 4, 2), "m = {m}");
    }
    // f16 weights with up to HALF_ROWS_MAX_M rows keep the row kernel there: 3-4 rows on
    // 4x4 tiles, 2 rows 2x8, 1 row 1x8.
    for m in 1..=plan::HALF_ROWS_MAX_M {
        assert_eq!(plan::half_gemm_kernel(&c, m, 4096, 4096), None, "m = {m}");
    }
    for m in 3..=plan::HALF_ROWS_MAX_M {
        assert_eq!(shape(w(&c, m, WeightType::F16)), (64, 4, 1), "m = {m}");
    }
    assert_eq!(shape(w(&c, 2, WeightType::F16)), (64, 2, 2));
    assert_eq!(shape(w(&c, 1, WeightType::F16)), (64, 1, 2));
    assert!(plan::half_gemm_kernel(&c, plan::HALF_ROWS_MAX_M + 1, 4096, 4096).is_some());
    // Without subgroups up to HALF_ROWS_MAX_M_NO_SUBGROUPS rows.
    let gl_max = plan::HALF_ROWS_MAX_M_NO_SUBGROUPS;
    for m in 1..=gl_max {
        assert_eq!(
            plan::half_gemm_kernel(&cpu(None), m, 4096, 4096),
            None,
            "m = {m}"
        );
    }
    assert!(plan::half_gemm_kernel(&cpu(None), gl_max + 1, 4096, 4096).is_some());
    // On every CPU adapter a K of at most CPU_ROWS_MAX_K keeps the row kernel (4x8 beyond
    // 2 rows), with or without subgroups; one more takes the route from the row counts
    // above.
    let kmax = plan::CPU_ROWS_MAX_K;
    for m in [1, 8, 2048] {
        for caps in [cpu(None), c.clone()] {
            assert_eq!(plan::half_gemm_kernel(&caps, m, 512, kmax), None, "m = {m}");
        }
        assert_eq!(
            plan::half_gemm_kernel(&cpu(None), m, 512, kmax + 1).is_some(),
            m > gl_max,
            "m = {m}"
        );
        assert!(plan::half_gemm_kernel(&g, m, 512, kmax).is_none());
    }
    assert!(plan::half_gemm_kernel(&c, 2048, 512, 8).is_none());
    assert!(plan::half_gemm_kernel(&c, 2048, 512, kmax + 1).is_some());
    assert_eq!(
        shape(plan::default_wgemm_config(
            &cpu(None),
            2048,
            512,
            8,
            WeightType::F16
        )),
        (64, 4, 2)
    );
    assert!(plan::half_gemm_kernel(&g, 1, 4096, 4096).is_none());
    // W8A8 with 33-64 output columns: the INT8 convolution's 4x8 tile, narrowed; up to
    // 32 columns 8x4.
    assert_eq!(
        shape(plan::default_qgemm_config(&c, 3136, 64, 576)),
        (8, 4, 2)
    );
    assert_eq!(
        shape(plan::default_qgemm_config(&c, 4096, 32, 64)),
        (8, 8, 1)
    );
    // From 65 columns 4x8 with subgroups, 8x4 without (the workgroup narrowed to the
    // columns).
    assert_eq!(
        shape(plan::default_qgemm_config(&c, 3136, 65, 576)),
        (16, 4, 2)
    );
    assert_eq!(
        shape(plan::default_qgemm_config(&cpu(None), 3136, 65, 576)),
        (32, 8, 1)
    );
    assert_eq!(shape(w(&g, 8, WeightType::I8)), (64, 8, 1));
    // Without subgroups (llvmpipe through GL) 4-bit weights take 4x8, as 8-bit ones.
    let gl = cpu(None);
    for m in [3, 8, 128] {
        assert_eq!(shape(w(&gl, m, WeightType::I4)), (64, 4, 2), "m = {m}");
        assert_eq!(shape(w(&gl, m, WeightType::I8)), (64, 4, 2), "m = {m}");
    }
    assert_eq!(shape(w(&g, 128, WeightType::I4)), (64, 4, 2));
    // At most 32 columns: one group of 4 columns per invocation, on 8 invocations.
    let narrow = |t| shape(plan::default_wgemm_config(&c, 4096, 16, 64, t));
    assert_eq!(narrow(WeightType::I4), (8, 4, 1));
    assert_eq!(narrow(WeightType::I8), (8, 8, 1));
    assert_eq!(
        shape(plan::default_qgemm_config(&c, 3136, 16, 64)),
        (8, 8, 1)
    );
    // Float convolutions likewise at most 32 channels per group on CPU adapters.
    assert_eq!(shape(plan::default_conv_config(&c, 12544, 32)), (8, 4, 1));
    assert_eq!(shape(plan::default_conv_config(&c, 12544, 64)), (8, 4, 2));
    assert_eq!(shape(plan::default_conv_config(&g, 12544, 32)), (8, 4, 2));
    // And the INT8 convolution.
    assert_eq!(shape(plan::default_qconv_config(&c, 12544, 32)), (8, 4, 1));
    assert_eq!(shape(plan::default_qconv_config(&g, 12544, 32)), (8, 4, 2));
}

#[test]
fn split_k_slices_cover_the_reduction() {
    let caps = gpu();
    for units in [1usize, 2, 3, 17, 255, 1031, 4096] {
        for requested in [1u32, 2, 3, 7, 16] {
            for step in [1usize, 2, 4] {
                match SplitK::plan(&caps, requested, units, step, 100) {
                    None => {
                        // Unsplit only when fewer than two slices of whole steps result.
                        let per = units.div_ceil(requested as usize).div_ceil(step).max(1) * step;
                        assert!(units.div_ceil(per) < 2, "{units}/{requested}/{step}");
                    }
                    Some(s) => {
                        let per = s.per as usize;
                        assert_eq!(per % step, 0);
                        assert!(s.splits >= 2 && s.splits <= requested.max(1));
                        // Every slice non-empty, together exactly the reduction.
                        assert!((s.splits as usize - 1) * per < units);
                        assert!(s.splits as usize * per >= units);
                        assert!(s.bytes >= u64::from(s.splits) * 100 * 4);
                        assert!(s.bytes.is_power_of_two());
                    }
                }
            }
        }
    }
    // Scratch over one binding: unsplit.
    let mut tight = gpu();
    tight.limits.max_storage_buffer_binding_size = 1024;
    assert_eq!(SplitK::plan(&tight, 4, 4096, 1, 1000), None);
}

#[test]
fn gemm_pieces_partition_the_product_within_the_limit() {
    for (m, n, k, batch) in [
        (33, 70, 129, 1),
        (7, 1000, 17, 3),
        (129, 3, 1031, 2),
        (1, 1, 1, 1),
    ] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let desc = GemmDesc::new(m, n, k).batch(batch).transpose(ta, tb);
            let (ar, ac) = desc.stored_a();
            let (br, bc) = desc.stored_b();
            let strides = [ar * ac, br * bc, m * n];
            for limit in [512u64, 1024, 4096, 1 << 20] {
                let pieces = gemm_pieces(&desc, strides, limit, 256).unwrap();
                // Each output element gets each k exactly once.
                let mut cover = vec![0usize; batch * m * n];
                for p in &pieces {
                    for r in p.m0..p.m0 + p.mc {
                        for c in p.n0..p.n0 + p.nc {
                            cover[p.b * m * n + r * n + c] += p.kc;
                        }
                    }
                    // Every window fits the binding (rounded to 16, plus one alignment).
                    for (_, len) in plan::split::piece_ranges(&desc, strides, p) {
                        assert!(
                            (len * 4).div_ceil(16) * 16 + 256 <= limit,
                            "{desc:?} limit {limit}: {p:?} window of {len} elements"
                        );
                    }
                }
                assert!(cover.iter().all(|&c| c == k), "{desc:?} limit {limit}");
                // Within each (b, m0, n0) the K pieces run in order from 0.
                let whole = strides
                    .iter()
                    .all(|&s| ((s * batch * 4) as u64).div_ceil(16) * 16 + 256 <= limit);
                if whole {
                    assert_eq!(
                        pieces.len(),
                        batch,
                        "{desc:?} fits: one piece per batch entry"
                    );
                }
            }
        }
    }
    // Not even one element fits: a clear error.
    let desc = GemmDesc::new(4, 4, 4);
    let err = gemm_pieces(&desc, [16, 16, 16], 16, 256).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn binding_windows_are_aligned_and_fit() {
    let mut caps = gpu();
    caps.limits.max_storage_buffer_binding_size = 64 << 10;
    caps.limits.min_storage_buffer_offset_alignment = 256;
    let limit = caps.limits.max_storage_buffer_binding_size;
    for total in [1usize, 7, 129, 1000, 100_000] {
        for spans in [
            vec![("x", 4u64)],
            vec![("x", 12), ("y", 4)],
            vec![("a", 2 * 33), ("b", 4)],
        ] {
            let per = window_units(&caps, "op", "rows", total, &spans).unwrap();
            let widest = spans.iter().map(|s| s.1).max().unwrap();
            if (total as u64 * widest).div_ceil(16) * 16 <= limit {
                assert_eq!(per, total, "fits whole");
                continue;
            }
            assert!(per > 0 && per < total);
            for (_, unit) in &spans {
                assert_eq!(
                    per as u64 * unit % 256,
                    0,
                    "{spans:?}: {per} units not aligned"
                );
            }
            assert!((per as u64 * widest).div_ceil(16) * 16 <= limit);
            // The runs cover the total once, in order.
            let r: Vec<_> = runs(total, per).collect();
            assert_eq!(r.iter().map(|x| x.1).sum::<usize>(), total);
            assert!(r.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }
    // One aligned step larger than the binding: the error names the operand and unit.
    let err = window_units(&caps, "op", "rows", 1 << 20, &[("wide", 70_000)]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::LimitExceeded { .. }) && msg.contains("wide") && msg.contains("bytes"),
        "{msg}"
    );
}

#[test]
fn grids_fold_within_the_dimension_limit() {
    for limit in [1u32, 7, 65535] {
        for total in [1u64, 2, 7, 65535, 65536, 1 << 20, 49 * 49 * 7] {
            match fold_grid("op", total, limit) {
                Ok([x, y, z]) => {
                    let l = u64::from(limit);
                    assert!(u64::from(x) <= l && u64::from(y) <= l && u64::from(z) <= l);
                    let n = u64::from(x) * u64::from(y) * u64::from(z);
                    assert!(n >= total, "{total} in {x}x{y}x{z}");
                    // At most one partly used x*y layer.
                    assert!(
                        n - total < u64::from(x) * u64::from(y),
                        "{total} in {x}x{y}x{z}"
                    );
                }
                Err(e) => {
                    assert!(total > u64::from(limit).pow(3), "{total} / {limit}: {e}");
                    assert!(e.to_string().contains("workgroups"), "{e}");
                }
            }
        }
    }
}

#[test]
fn row_tiles_and_half_math() {
    let g = gpu();
    // One row: 1 x 8 per invocation (GEMV); narrowed for narrow outputs.
    let t = plan::default_qgemm_config(&g, 1, 4096, 256);
    assert_eq!((t.tm, t.columns()), (1, 64 * 8));
    let narrow = plan::default_qconv_config(&g, 3136, 16);
    assert!(narrow.columns() >= 16 && narrow.wg < 64, "{narrow:?}");
    // GEMV tiles of the weight-only GEMM cover every row in one pass.
    for m in 1..=8 {
        assert!(plan::wgemm_rows(m).tm as usize >= m);
    }
    // f16 products on GPUs with SHADER_F16 only, and only for f16 activations.
    assert_eq!(plan::half_math(&g), HalfMath::F16AccF32);
    assert_eq!(plan::half_math(&cpu(Some(8))), HalfMath::F32);
    let mut no_f16 = gpu();
    no_f16.shader_f16 = false;
    assert_eq!(plan::half_math(&no_f16), HalfMath::F32);
    assert_eq!(
        plan::resolve_half_math(&g, HalfMath::Auto, false),
        HalfMath::F32
    );
    assert_eq!(
        plan::resolve_half_math(&g, HalfMath::Auto, true),
        HalfMath::F16AccF32
    );
    assert_eq!(
        plan::resolve_half_math(&g, HalfMath::F16, false),
        HalfMath::F16
    );
    // The register config the GPU GEMV takes carries the split-K of the heuristic.
    let k = plan::default_gemm_kernel(&g, &GemmDesc::new(1, 4096, 4096));
    let want = RegConfig::new(64, 1, 1, 4).split_k(plan::default_split_k(&g, 16, 4096));
    assert_eq!(k, GemmKernel::Register(want));
}

/// Shape classes are typed keys whose text form (the JSON cache's keys) parses back to
/// the same key; a cache saved by an earlier build (the H100 run in docs/bench) loads and
/// saves again byte for byte; malformed keys are errors.
#[test]
fn shape_classes_round_trip_through_their_text() {
    use wgpu_quant::ops::conv::{ConvDesc, ConvDims};
    use wgpu_quant::tuning::{ConvKind, ShapeClass, TuneCache, WeightType};
    let conv = ConvDesc::default()
        .stride(2)
        .shape(&ConvDims::new(64, 32, [3, 3], 2).unwrap(), &[1, 17, 9, 32])
        .unwrap();
    let mut classes = vec![
        ShapeClass::gemm(&GemmDesc::new(3, 1000, 33)),
        ShapeClass::gemm(&GemmDesc::new(129, 7, 1).batch(2).transpose(true, false)),
        ShapeClass::qgemm(1, 4096, 4096),
    ];
    classes.extend(ConvKind::ALL.map(|k| ShapeClass::conv(&conv, k)));
    classes.extend(WeightType::ALL.map(|w| ShapeClass::wgemm(17, 33, 129, w)));
    for c in &classes {
        let text = c.to_string();
        assert_eq!(&text.parse::<ShapeClass>().unwrap(), c, "{text}");
    }
    assert_eq!(classes[0].to_string(), "gemm f32 m3 n1024 k64 nn");
    assert_eq!(classes[1].to_string(), "gemm f32 m256 n8 k1 tn batched");
    assert_eq!(
        classes[3].to_string(),
        "conv f32 m32 n32 c16 k3x3 s2x2 grouped"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench/h100-tuning.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let cache = TuneCache::from_json(&text, "h100-tuning.json").unwrap();
    assert!(cache.len() > 10);
    assert_eq!(cache.to_json().trim_end(), text.trim_end());
    for bad in [
        "gemm f32 m3 n4",
        "conv f64 m1 n1 c1 k1x1 s1x1",
        "wgemm i3 m1 n1 k1",
        "qgemm w8a8 m1 n1 kx",
        "",
    ] {
        assert!(bad.parse::<ShapeClass>().is_err(), "{bad:?} parsed");
    }
}

/// The W8A8 launch plan is a value resolved from the capabilities alone.
#[test]
fn w8a8_launch_plans_without_a_gpu() {
    use wgpu_quant::ops::qgemm::{plan_launch, QGemmDesc};
    let g = gpu();
    let tile = plan::default_qgemm_config(&g, 1, 4096, 4096);
    assert!(tile.split_k > 1);
    let desc = QGemmDesc::default();
    let l = plan_launch(
        &g,
        &desc,
        tile,
        (true, false),
        0,
        (1, 4096, 4096),
        false,
        false,
    )
    .unwrap();
    assert!(l.packed_dot && l.zero_a && !l.zero_w);
    let sk = l.split_k.expect("a GEMV on a GPU splits K");
    assert_eq!(sk.splits, tile.split_k);
    // The main pass writes partial sums (output form 2); the reduce pass the epilogue.
    assert!(l.variant().tag().contains("OUT=2"), "{}", l.variant().tag());
    assert!(l.reduce_variant().unwrap().tag().contains("REDUCE=1"));
    // Convolutions never split K, and refuse a split tile.
    let t = plan::default_qconv_config(&g, 3136, 64);
    let c = plan_launch(
        &g,
        &desc,
        t,
        (false, false),
        3,
        (3136, 64, 576),
        true,
        false,
    )
    .unwrap();
    assert!(c.split_k.is_none() && c.reduce_variant().is_none());
    assert!(
        c.variant().tag().contains("CONV=1_REDUCE=0"),
        "{}",
        c.variant().tag()
    );
    // A convolution reads its windows from storage: pinning the uniform copy is refused.
    let err = plan_launch(
        &g,
        &desc.uniform_a(true),
        t,
        (false, false),
        0,
        (3136, 64, 576),
        true,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("uniform_a"), "{err}");
    // Rows of a multiple of 4 words read W four words at a time, split or not; the
    // GEMV's A comes from a uniform copy on a CPU adapter only.
    assert!(l.quad_w && !l.uniform_a);
    let c = cpu(Some(8));
    let lc = plan_launch(
        &c,
        &desc,
        plan::default_qgemm_config(&c, 1, 4096, 4096),
        (false, false),
        0,
        (1, 4096, 4096),
        false,
        false,
    )
    .unwrap();
    assert!(lc.quad_w && lc.uniform_a, "{lc:?}");
    assert!(
        lc.variant().tag().contains("W4=1"),
        "{}",
        lc.variant().tag()
    );
    let odd = plan_launch(
        &c,
        &desc,
        plan::default_qgemm_config(&c, 1, 4096, 4090),
        (false, false),
        0,
        (1, 4096, 4090),
        false,
        false,
    )
    .unwrap();
    assert!(!odd.quad_w, "{odd:?}");
    assert!(plan_launch(
        &g,
        &desc,
        t.split_k(2),
        (false, false),
        0,
        (3136, 64, 576),
        true,
        false
    )
    .is_err());
    // The packed dot product: used where the adapter has it, refused where it is asked
    // for and missing, the unpacked fallback otherwise.
    let mut old = gpu();
    old.packed_int8_dot = false;
    let l = plan_launch(
        &old,
        &desc,
        tile,
        (false, false),
        0,
        (1, 4096, 4096),
        false,
        false,
    )
    .unwrap();
    assert!(!l.packed_dot);
    let err = plan_launch(
        &old,
        &desc.packed_dot(true),
        tile,
        (false, false),
        0,
        (1, 4096, 4096),
        false,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, Error::MissingFeature { .. }), "{err}");
    // A tile over the invocation limit is an error naming the limit and its unit.
    let mut small = gpu();
    small.limits.max_compute_invocations_per_workgroup = 32;
    let err = plan_launch(
        &small,
        &desc,
        tile,
        (false, false),
        0,
        (1, 4096, 4096),
        false,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("invocations"), "{err}");
}

/// Narrow outputs get a narrower FP32 workgroup, never below a subgroup, always covering
/// the columns; wide outputs keep theirs.
#[test]
fn narrow_outputs_narrow_the_fp32_workgroup() {
    for caps in [cpu(Some(8)), cpu(None), gpu()] {
        let min_wg = plan::min_gemm_wg(&caps);
        for (m, n) in [(3136, 64), (1, 3), (17, 7), (256, 256), (128, 768), (9, 33)] {
            let k = plan::default_gemm_kernel(&caps, &GemmDesc::new(m, n, 576));
            let (_, cols) = k.tile();
            match k {
                GemmKernel::Register(RegConfig { wg, tn4, .. })
                | GemmKernel::Subgroup(SubgroupConfig { wg, tn4, .. }) => {
                    assert!(wg >= min_wg.min(64), "{m}x{n}: {k:?} below a subgroup");
                    // Covers the columns, or is as wide as any (64), or one subgroup of
                    // 8 (the tall, narrow tile of CPU adapters).
                    assert!(cols as usize >= n || wg == 64 || wg == 8, "{m}x{n}: {k:?}");
                    // Not wider than needed: half the workgroup would still cover n.
                    let half = wg / 2;
                    assert!(
                        half < min_wg || half < 8 || (half * tn4 * 4) < n as u32,
                        "{m}x{n}: {k:?} could be narrower"
                    );
                }
                GemmKernel::Tiled(_) => {}
            }
        }
    }
    // A CPU adapter without subgroups (llvmpipe through GL) narrows the register kernel
    // down to 8 invocations whatever subgroup sizes it reports.
    let mut gl = cpu(None);
    gl.subgroup_size = (4, 128);
    assert_eq!(plan::min_gemm_wg(&gl), 8);
    let k = plan::default_gemm_kernel(&gl, &GemmDesc::new(3136, 64, 576));
    assert!(
        matches!(k, GemmKernel::Register(c) if c.wg == 16 && c.tm == 8),
        "{k:?}"
    );
    // The implicit-GEMM shape that fell off the cliff on lavapipe: 8 invocations, not 64,
    // with the tall 32x4 tile; a short narrow output keeps the 16x8 tile, narrowed.
    let cpu8 = cpu(Some(8));
    let k = plan::default_gemm_kernel(&cpu8, &GemmDesc::new(3136, 64, 576));
    assert_eq!(
        k,
        GemmKernel::Subgroup(SubgroupConfig {
            wg: 8,
            tm: 32,
            tn4: 1
        })
    );
    let k = plan::default_gemm_kernel(&cpu8, &GemmDesc::new(33, 64, 576));
    assert_eq!(
        k,
        GemmKernel::Subgroup(SubgroupConfig {
            wg: 8,
            tm: 16,
            tn4: 2
        })
    );
    // GPUs never take it.
    let k = plan::default_gemm_kernel(&gpu(), &GemmDesc::new(3136, 64, 576));
    assert!(matches!(k, GemmKernel::Tiled(_)), "{k:?}");
}

#[test]
fn quantized_weights_take_the_fp32_kernels_from_many_rows_on_cpu_adapters() {
    let min = plan::DEQUANT_MIN_M;
    {
        let caps = cpu(Some(8));
        for wtype in [
            WeightType::I8,
            WeightType::U8,
            WeightType::I4,
            WeightType::U4,
        ] {
            for &n in &DIMS {
                // Below the threshold (GEMVs included) the row kernel reads each code once.
                assert_eq!(plan::wgemm_fp32_kernel(&caps, min - 1, n, 768, wtype), None);
                assert_eq!(plan::wgemm_fp32_kernel(&caps, 1, n, 768, wtype), None);
                // From it, the FP32 kernel the plan gives the same product.
                let want = plan::default_gemm_kernel(
                    &caps,
                    &GemmDesc::new(min, n, 768).transpose(false, true),
                );
                assert_eq!(
                    plan::wgemm_fp32_kernel(&caps, min, n, 768, wtype),
                    Some(want)
                );
                assert!(!matches!(want, GemmKernel::Tiled(_)));
            }
        }
        // The dequantized weight (f32) must fit one binding.
        let limit = caps.limits.max_storage_buffer_binding_size as usize;
        let k = limit / 4 / 1024 + 1;
        assert_eq!(plan::dequant_gemm_kernel(&caps, 4 * min, 1024, k), None);
        assert!(plan::dequant_gemm_kernel(&caps, 4 * min, 1024, k - 1).is_some());
        // A K of at most CPU_ROWS_MAX_K keeps the row kernel at any row count.
        let kmax = plan::CPU_ROWS_MAX_K;
        for m in [min, 2048, 8192] {
            assert_eq!(
                plan::dequant_gemm_kernel(&caps, m, 512, kmax),
                None,
                "m = {m}"
            );
            assert_eq!(plan::dequant_gemm_kernel(&caps, m, 512, 8), None, "m = {m}");
            assert!(plan::dequant_gemm_kernel(&caps, m, 512, kmax + 1).is_some());
        }
    }
    // GPUs keep the row kernel, whose point there is reading the codes, and so do CPU
    // adapters without subgroups (their FP32 kernel is the register one).
    for m in [1, min, 4096] {
        assert_eq!(plan::dequant_gemm_kernel(&gpu(), m, 4096, 4096), None);
        assert_eq!(plan::dequant_gemm_kernel(&cpu(None), m, 768, 768), None);
        assert_eq!(
            plan::wgemm_fp32_kernel(&cpu(None), m, 768, 768, WeightType::I4),
            None
        );
        assert_eq!(
            plan::wgemm_fp32_kernel(&gpu(), m, 4096, 4096, WeightType::I8),
            None
        );
    }
}

/// The weight-only / FP16 row kernel reads its activations from a uniform copy on CPU
/// adapters where they fit the 64 KiB block (rounded up to whole words) and the device's
/// uniform bindings reach that size; GPUs keep the storage binding.
#[test]
fn row_kernel_activations_come_from_a_uniform_block_on_cpu_adapters() {
    let block = plan::X_UNIFORM_BYTES as usize;
    for caps in [cpu(Some(8)), cpu(None)] {
        // GEMVs of the bench: 4096 f16 or f32 values, 11008 f32 ones (44 KiB).
        assert!(plan::wgemm_uniform_x(&caps, 1, 4096, 2));
        assert!(plan::wgemm_uniform_x(&caps, 1, 4096, 4));
        assert!(plan::wgemm_uniform_x(&caps, 1, 11008, 4));
        // Exactly the block, and one element past it.
        assert!(plan::wgemm_uniform_x(&caps, 8, 4096, 2));
        assert!(plan::wgemm_uniform_x(&caps, 1, block / 4, 4));
        assert!(!plan::wgemm_uniform_x(&caps, 1, block / 4 + 1, 4));
        assert!(!plan::wgemm_uniform_x(&caps, 1, block / 2 + 1, 2));
        // An odd count of f16 values rounds up to whole words.
        assert!(plan::wgemm_uniform_x(&caps, 1, block / 2 - 1, 2));
        assert!(!plan::wgemm_uniform_x(&caps, 128, 768, 4));
        // Sizes whose product overflows saturate rather than wrap.
        assert!(!plan::wgemm_uniform_x(&caps, usize::MAX, usize::MAX, 4));
    }
    for &m in &DIMS {
        assert!(!plan::wgemm_uniform_x(&gpu(), m, 64, 4), "GPU, M = {m}");
    }
    // A device with smaller uniform bindings (WebGL2's 16 KiB) never takes it.
    let small = KeyLimits {
        max_uniform_buffer_binding_size: 16 << 10,
        ..limits()
    };
    let caps = Capabilities::synthetic("cpu", wgpu::DeviceType::Cpu, small, Some(8));
    assert!(!plan::wgemm_uniform_x(&caps, 1, 16, 4));
    assert!(!plan::x_uniform_fits(&caps, 1, 16, 4));
}

/// The FP16 GEMM on cooperative matrices (`plan::wgemm_coop`, `plan::coop_tile`): only on
/// a GPU whose adapter lists 16x16x16 f16 matrices with f32 sums and has subgroups of
/// exactly 32, from `COOP_MIN_M` rows; 128 x 128 blocks where they make 64 workgroups or
/// more, else 64 x 128 from 64 rows, else 32 x 128; never a block over the workgroup
/// limits; K not split by default. `plan::coop_split` (the tuner's offer): none from 128
/// workgroups, else towards 256 in slices of at least 128 values of K.
#[test]
fn cooperative_fp16_rule() {
    use wgpu_quant::ops::wgemm::CoopTile;
    let coop = |mut caps: Capabilities| {
        caps.coop_f16 = true;
        caps
    };
    // NVIDIA's Vulkan limits: 48 KiB of workgroup memory, 1024 invocations.
    let nv = limits_with(|l| {
        l.max_compute_workgroup_storage_size = 48 << 10;
        l.max_compute_invocations_per_workgroup = 1024;
    });
    let gpu32 = coop(Capabilities::synthetic(
        "gpu",
        wgpu::DeviceType::DiscreteGpu,
        nv,
        Some(32),
    ));
    let rule = |caps: &Capabilities, m, n| plan::wgemm_coop(caps, m, n, 512);
    assert_eq!(rule(&gpu32, 4096, 4096), Some(CoopTile::new(4, 2)));
    assert_eq!(rule(&gpu32, 1024, 1024), Some(CoopTile::new(4, 2)));
    // 128 rows by 768 columns: 6 blocks of 128 x 128, too few; 64 x 128 instead.
    assert_eq!(rule(&gpu32, 128, 768), Some(CoopTile::new(2, 2)));
    assert_eq!(rule(&gpu32, 63, 4096), Some(CoopTile::new(1, 2)));
    for m in 1..plan::COOP_MIN_M {
        assert_eq!(
            rule(&gpu32, m, 4096),
            None,
            "M = {m} stays on the row kernel"
        );
    }
    assert!(rule(&gpu32, plan::COOP_MIN_M, 4096).is_some());
    // Not listed, other subgroup widths, CPU adapters: never.
    let mut plain = gpu32.clone();
    plain.coop_f16 = false;
    assert_eq!(rule(&plain, 4096, 4096), None);
    for sg in [Some(16), Some(64), None] {
        let caps = coop(Capabilities::synthetic(
            "gpu",
            wgpu::DeviceType::DiscreteGpu,
            nv,
            sg,
        ));
        assert_eq!(rule(&caps, 4096, 4096), None, "subgroups {sg:?}");
    }
    let cpu32 = coop(Capabilities::synthetic(
        "cpu",
        wgpu::DeviceType::Cpu,
        nv,
        Some(32),
    ));
    assert_eq!(rule(&cpu32, 4096, 4096), None);
    // WebGPU's default 16 KiB of workgroup memory: only the 32 x 128 block fits.
    let small = coop(Capabilities::synthetic(
        "gpu",
        wgpu::DeviceType::DiscreteGpu,
        limits(),
        Some(32),
    ));
    assert_eq!(rule(&small, 4096, 4096), Some(CoopTile::new(1, 2)));
    for t in CoopTile::TILES {
        assert!(t.is_valid(), "{t:?}");
        assert_eq!(
            plan::coop_tile_fits(&small, t),
            t.wm == 1,
            "{t:?}: {} bytes",
            t.workgroup_bytes()
        );
        assert!(!plan::coop_tile_fits(
            &gpu32,
            t.split_k(plan::SPLIT_K_MAX + 1)
        ));
        assert!(!plan::coop_tile_fits(&gpu32, t.split_k(0)));
    }
    for &m in &DIMS {
        for &n in &DIMS {
            if let Some(t) = rule(&gpu32, m, n) {
                assert!(
                    plan::coop_tile_fits(&gpu32, t) && t.split_k == 1,
                    "{m}x{n}: {t:?}"
                );
            }
        }
    }
    // The tuner's split: 1024 x 1024 in 128 x 128 blocks (64) splits 4 ways when K has
    // 16 slices of 128 or more; 4096 x 4096 (1024 blocks) never; a short K not below 128.
    let big = CoopTile::new(4, 2);
    assert_eq!(plan::coop_split(big, 1024, 1024, 4096), 4);
    assert_eq!(plan::coop_split(big, 1024, 1024, 256), 2);
    assert_eq!(plan::coop_split(big, 1024, 1024, 100), 1);
    assert_eq!(plan::coop_split(big, 4096, 4096, 4096), 1);
    assert_eq!(plan::coop_split(CoopTile::new(1, 2), 32, 4096, 4096), 8);
    for k in [1, 31, 128, 129, 4096, 1 << 20] {
        let s = plan::coop_split(CoopTile::new(1, 2), 9, 64, k);
        assert!(
            (1..=plan::SPLIT_K_MAX).contains(&s) && (s == 1 || k.div_ceil(32) >= 4 * s as usize)
        );
    }
}

fn limits_with(f: impl FnOnce(&mut wgpu::Limits)) -> KeyLimits {
    let mut l = wgpu::Limits::default();
    f(&mut l);
    KeyLimits::of(&l)
}
