//! Nearest upsampling, zero insertion, depth to space, concatenation, slices, pads,
//! broadcasts, gathers and the general transpose
//! (f32 and f16 each way)
//! against the Rust reference, bit for bit (they copy values), on odd shapes; outputs
//! are poisoned first.

mod common;

use common::float::{poisoned, rand_vec, read, upload};
use rand::SeedableRng;
use wgpu_quant::ops::layout::{
    concat_channels, depth_to_space, permute, resize_bilinear, upsample_nearest, zero_insert,
    ResizeCoords,
};
use wgpu_quant::reference::layout as r;
use wgpu_quant::{DType, Tensor};

/// Odd shapes of ranks 1 to 6.
const RANKS_1_TO_6: [&[usize]; 6] = [
    &[9],
    &[4, 7],
    &[3, 5, 4],
    &[2, 3, 4, 5],
    &[3, 2, 3, 2, 3],
    &[2, 3, 2, 3, 2, 3],
];

/// Smaller ones (with axes of length 1), for ops run many times per shape.
const SMALL_RANKS_1_TO_6: [&[usize]; 6] = [
    &[5],
    &[3, 4],
    &[2, 3, 5],
    &[2, 3, 2, 3],
    &[2, 1, 3, 2, 3],
    &[1, 2, 3, 2, 1, 3],
];

/// The reference as the output stores it: f32, or rounded to f16.
fn stored(v: &[f64], f16_out: bool) -> Vec<f32> {
    v.iter()
        .map(|&x| {
            if f16_out {
                half::f16::from_f64(x).to_f32()
            } else {
                x as f32
            }
        })
        .collect()
}

#[test]
fn layout_ops_copy_exactly() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for s in [[1usize, 1, 1, 1], [2, 3, 5, 7], [1, 7, 3, 17], [3, 1, 9, 4]] {
        let n: usize = s.iter().product();
        for bits in 0..4u32 {
            let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
            let (x, x64) = upload(ctx, &s, &rand_vec(n, &mut rng), xf);
            for f in [[1, 1], [2, 2], [3, 1], [2, 5]] {
                let out = poisoned(ctx, &[s[0], s[1] * f[0], s[2] * f[1], s[3]], of);
                let mut enc = ctx.encoder("upsample");
                upsample_nearest(ctx, &mut enc, &x, f, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::upsample_nearest(&x64, s, f), of);
                assert_eq!(
                    read(ctx, &out),
                    want,
                    "upsample {s:?} by {f:?} (f16 in {xf}, out {of})"
                );
                let zs = [s[0], (s[1] - 1) * f[0] + 1, (s[2] - 1) * f[1] + 1, s[3]];
                let out = poisoned(ctx, &zs, of);
                let mut enc = ctx.encoder("zero insertion");
                zero_insert(ctx, &mut enc, &x, f, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::zero_insert(&x64, s, f), of);
                assert_eq!(read(ctx, &out), want, "zero_insert {s:?} by {f:?}");
                if s[3] % (f[0] * f[1]) == 0 {
                    let c = s[3] / (f[0] * f[1]);
                    let out = poisoned(ctx, &[s[0], s[1] * f[0], s[2] * f[1], c], of);
                    let mut enc = ctx.encoder("d2s");
                    depth_to_space(ctx, &mut enc, &x, f, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    let want = stored(&r::depth_to_space(&x64, s, f), of);
                    assert_eq!(read(ctx, &out), want, "depth_to_space {s:?} by {f:?}");
                }
            }
            // x, then a 3-channel image, then x again.
            let s3 = [s[0], s[1], s[2], 3];
            let (y, y64) = upload(ctx, &s3, &rand_vec(s3.iter().product(), &mut rng), !xf);
            let out = poisoned(ctx, &[s[0], s[1], s[2], 2 * s[3] + 3], of);
            let mut enc = ctx.encoder("concat");
            concat_channels(ctx, &mut enc, &[&x, &y, &x], &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = stored(
                &r::concat_channels(&[&x64, &y64, &x64], &[s[3], 3, s[3]]),
                of,
            );
            assert_eq!(
                read(ctx, &out),
                want,
                "concat {s:?} (f16 in {xf}, out {of})"
            );
        }
    }
    // Shapes that do not fit are errors naming the numbers.
    let x = Tensor::zeros(ctx, &[1, 2, 2, 6], DType::F32).unwrap();
    let bad = Tensor::zeros(ctx, &[1, 4, 4, 5], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = upsample_nearest(ctx, &mut enc, &x, [2, 2], &bad).unwrap_err();
    assert!(e.to_string().contains("[1, 4, 4, 6]"), "{e}");
    let e = depth_to_space(ctx, &mut enc, &x, [2, 2], &bad).unwrap_err();
    assert!(e.to_string().contains("multiple of the block"), "{e}");
    let e = zero_insert(ctx, &mut enc, &x, [2, 2], &bad).unwrap_err();
    assert!(e.to_string().contains("[1, 3, 3, 6]"), "{e}");
    let e = upsample_nearest(ctx, &mut enc, &x, [0, 2], &bad).unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
    let out = Tensor::zeros(ctx, &[1, 2, 2, 13], DType::F32).unwrap();
    let e = concat_channels(ctx, &mut enc, &[&x, &x], &out).unwrap_err();
    assert!(e.to_string().contains("12 channels"), "{e}");
    let small = Tensor::zeros(ctx, &[1, 2, 1, 6], DType::F32).unwrap();
    let e = concat_channels(ctx, &mut enc, &[&x, &small], &out).unwrap_err();
    assert!(e.to_string().contains("input 1"), "{e}");
}

#[test]
fn bilinear_resize_matches_the_reference() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let modes = [
        ResizeCoords::HalfPixel,
        ResizeCoords::PytorchHalfPixel,
        ResizeCoords::AlignCorners,
        ResizeCoords::Asymmetric,
        ResizeCoords::HalfPixelSymmetric,
    ];
    for s in [[1usize, 1, 1, 1], [2, 3, 5, 7], [1, 8, 6, 3]] {
        let n: usize = s.iter().product();
        for [oh, ow] in [[1usize, 1], [s[1] * 2, s[2] * 2], [7, 4], [s[1] * 3, 1]] {
            let scales = [oh as f32 / s[1] as f32, ow as f32 / s[2] as f32];
            for xf in [false, true] {
                let (x, x64) = upload(ctx, &s, &rand_vec(n, &mut rng), xf);
                for m in modes {
                    let out = poisoned(ctx, &[s[0], oh, ow, s[3]], false);
                    let mut enc = ctx.encoder("resize");
                    resize_bilinear(ctx, &mut enc, &x, m, scales, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    let want = r::resize_bilinear(&x64, s, [oh, ow], m, scales);
                    // f32 coordinates and weights: a few ulps of the values.
                    common::float::check(
                        &format!("{m:?} {s:?} -> {oh}x{ow} (f16 in {xf})"),
                        &read(ctx, &out),
                        &want,
                        1e-5,
                    );
                }
            }
        }
    }
    let x = Tensor::zeros(ctx, &[1, 2, 2, 3], DType::F32).unwrap();
    let bad = Tensor::zeros(ctx, &[1, 4, 4, 2], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e =
        resize_bilinear(ctx, &mut enc, &x, ResizeCoords::HalfPixel, [2.0, 2.0], &bad).unwrap_err();
    assert!(e.to_string().contains("channels"), "{e}");
}

#[test]
fn transposes_between_nchw_and_nhwc_match_the_host_ones() {
    use wgpu_quant::ops::conv::{nchw_to_nhwc, nhwc_to_nchw};
    use wgpu_quant::ops::layout::{transpose_to_nchw, transpose_to_nhwc};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    for [n, c, h, w] in [[1usize, 1, 1, 1], [2, 3, 5, 7], [1, 17, 2, 9]] {
        for bits in 0..4u32 {
            let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
            let (x, x64) = upload(ctx, &[n, c, h, w], &rand_vec(n * c * h * w, &mut rng), xf);
            let nhwc = poisoned(ctx, &[n, h, w, c], of);
            let back = poisoned(ctx, &[n, c, h, w], of);
            let mut enc = ctx.encoder("transposes");
            transpose_to_nhwc(ctx, &mut enc, &x, &nhwc).unwrap();
            transpose_to_nchw(ctx, &mut enc, &nhwc, &back).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            let want = stored(&nchw_to_nhwc(&x64, [n, c, h, w]), of);
            assert_eq!(
                read(ctx, &nhwc),
                want,
                "to NHWC {:?} (f16 in {xf}, out {of})",
                [n, c, h, w]
            );
            let back_want: Vec<f32> = nhwc_to_nchw(&want, [n, h, w, c]);
            assert_eq!(read(ctx, &back), back_want, "back to NCHW");
        }
    }
}

/// The general transpose against the reference, bit for bit, over ranks 1 to 6, odd
/// shapes, every permutation of rank 3 and 4, f32 and f16 each way; bad permutations
/// and output shapes are errors naming the numbers.
#[test]
fn permute_matches_the_reference_on_every_rank() {
    use wgpu_quant::ops::layout::permuted_shape;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let perms = |r: usize| -> Vec<Vec<usize>> {
        // Every permutation of r axes (Heap's algorithm), for r <= 4; else a few.
        if r > 4 {
            let mut v: Vec<usize> = (0..r).collect();
            let mut out = vec![v.clone()];
            v.reverse();
            out.push(v.clone());
            v.rotate_left(2);
            out.push(v);
            return out;
        }
        let mut out = Vec::new();
        let mut a: Vec<usize> = (0..r).collect();
        fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        heap(r, &mut a, &mut out);
        out
    };
    let shapes: [&[usize]; 6] = [
        &[7],
        &[3, 5],
        &[2, 3, 5],
        &[3, 1, 4, 5],
        &[2, 3, 1, 4, 3],
        &[2, 1, 3, 2, 3, 2],
    ];
    let mut cases = 0;
    for shape in shapes {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        for perm in perms(shape.len()) {
            let want_shape = permuted_shape(shape, &perm).unwrap();
            for bits in 0..4u32 {
                let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                let (x, x64) = upload(ctx, shape, &v, xf);
                let out = poisoned(ctx, &want_shape, of);
                let mut enc = ctx.encoder("permute");
                permute(ctx, &mut enc, &x, &perm, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::permute(&x64, shape, &perm), of);
                assert_eq!(read(ctx, &out), want, "{shape:?} by {perm:?}, bits {bits}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 4 * (1 + 2 + 6 + 24 + 3 + 3));
    // Errors: not a permutation, wrong output shape, rank 7.
    let x = Tensor::zeros(ctx, &[2, 3, 4], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[4, 3, 2], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = permute(ctx, &mut enc, &x, &[2, 2, 0], &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("permute") && e.contains("[2, 2, 0]"), "{e}");
    let e = permute(ctx, &mut enc, &x, &[1, 0, 2], &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[3, 2, 4]") && e.contains("[4, 3, 2]"), "{e}");
    let x7 = Tensor::zeros(ctx, &[1; 7], DType::F32).unwrap();
    let e = permute(ctx, &mut enc, &x7, &[0, 1, 2, 3, 4, 5, 6], &x7)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank 7"), "{e}");
}

/// Crops (blocks of row-major tensors) against the reference, bit for bit, on ranks 1 to
/// 6 at every corner and in the middle, f32 and f16 each way; blocks that do not fit are
/// errors naming the numbers.
#[test]
fn crop_matches_the_reference() {
    use wgpu_quant::ops::layout::crop;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let shapes = RANKS_1_TO_6;
    let mut cases = 0;
    for shape in shapes {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        // The first and last index on every axis, and a middle block.
        let blocks: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (
                vec![0; shape.len()],
                shape.iter().map(|&d| d.div_ceil(2)).collect(),
            ),
            (shape.iter().map(|&d| d - 1).collect(), vec![1; shape.len()]),
            (
                shape.iter().map(|&d| usize::from(d > 2)).collect(),
                shape
                    .iter()
                    .map(|&d| if d > 2 { d - 2 } else { d })
                    .collect(),
            ),
        ];
        for (start, size) in blocks {
            for bits in 0..4u32 {
                let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                let (x, x64) = upload(ctx, shape, &v, xf);
                let out = poisoned(ctx, &size, of);
                let mut enc = ctx.encoder("crop");
                crop(ctx, &mut enc, &x, &start, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::crop(&x64, shape, &start, &size), of);
                assert_eq!(
                    read(ctx, &out),
                    want,
                    "{shape:?} at {start:?} size {size:?}"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 6 * 3 * 4);
    let x = Tensor::zeros(ctx, &[2, 3, 4], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[2, 2, 2], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = crop(ctx, &mut enc, &x, &[0, 2, 0], &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("crop") && e.contains("[2, 2, 2] at [0, 2, 0]") && e.contains("[2, 3, 4]"),
        "{e}"
    );
}

/// Slices with steps (2, 3, -1, -2, mixed) on ranks 1 to 6 against the reference, bit
/// for bit, f32 and f16 each way; a slice that leaves the tensor is an error naming the
/// axis.
#[test]
fn strided_slices_match_the_reference() {
    use wgpu_quant::ops::layout::slice;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let shapes = RANKS_1_TO_6;
    let mut cases = 0;
    for shape in shapes {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        let steps: [isize; 4] = [2, -1, 3, -2];
        for (k, &first) in steps.iter().enumerate() {
            // Alternate the step's sign over the axes; start where the walk fits.
            let step: Vec<isize> = (0..shape.len())
                .map(|a| {
                    if a % 2 == 0 {
                        first
                    } else {
                        steps[(k + 1) % 4]
                    }
                })
                .collect();
            let start: Vec<usize> = shape
                .iter()
                .zip(&step)
                .map(|(&d, &s)| if s > 0 { usize::from(d > 2) } else { d - 1 })
                .collect();
            let size: Vec<usize> = shape
                .iter()
                .zip(&start)
                .zip(&step)
                .map(|((&d, &b), &s)| {
                    let room = if s > 0 { d - 1 - b } else { b };
                    room / s.unsigned_abs() + 1
                })
                .collect();
            for bits in 0..4u32 {
                let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                let (x, x64) = upload(ctx, shape, &v, xf);
                let out = poisoned(ctx, &size, of);
                let mut enc = ctx.encoder("slice");
                slice(ctx, &mut enc, &x, &start, &step, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::slice(&x64, shape, &start, &step, &size), of);
                assert_eq!(
                    read(ctx, &out),
                    want,
                    "{shape:?} {start:?} {step:?} {size:?}"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 6 * 4 * 4);
    let x = Tensor::zeros(ctx, &[2, 5], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = slice(ctx, &mut enc, &x, &[0, 1], &[1, -1], &o)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("slice") && e.contains("axis 1") && e.contains("step -1"),
        "{e}"
    );
    let e = slice(ctx, &mut enc, &x, &[0, 0], &[1, 0], &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("step 0"), "{e}");
}

/// Broadcasts (ONNX `Expand`) against the reference, bit for bit, f32 and f16 each way:
/// ones repeated on leading, trailing and middle axes, ranks raised; shapes that do not
/// broadcast are errors naming them.
#[test]
fn expand_matches_the_reference() {
    use wgpu_quant::ops::layout::expand;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[1], &[7]),
        (&[3, 1], &[3, 5]),
        (&[1, 4], &[3, 4]),
        (&[5], &[2, 3, 5]),
        (&[2, 1, 3], &[4, 2, 5, 3]),
        (&[3, 1, 3, 1, 3], &[2, 3, 2, 3, 2, 3]),
    ];
    for (shape, to) in cases {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        for bits in 0..4u32 {
            let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
            let (x, x64) = upload(ctx, shape, &v, xf);
            let out = poisoned(ctx, to, of);
            let mut enc = ctx.encoder("expand");
            expand(ctx, &mut enc, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            assert_eq!(
                read(ctx, &out),
                stored(&r::expand(&x64, shape, to), of),
                "{shape:?} to {to:?}"
            );
        }
    }
    let x = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[2, 4], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = expand(ctx, &mut enc, &x, &o).unwrap_err().to_string();
    assert!(
        e.contains("expand") && e.contains("[2, 3]") && e.contains("[2, 4]"),
        "{e}"
    );
}

/// Concatenations along every axis of ranks 1 to 6, of two and three inputs of different
/// lengths, against the reference, bit for bit, f32 and f16 each way (the output
/// poisoned first, so a gap shows); mismatched inputs are errors.
#[test]
fn concat_along_any_axis_matches_the_reference() {
    use wgpu_quant::ops::layout::concat;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let shapes = SMALL_RANKS_1_TO_6;
    let mut cases = 0;
    for shape in shapes {
        for axis in 0..shape.len() {
            let lens = [shape[axis], 2, 1];
            for count in [2usize, 3] {
                let ins: Vec<Vec<usize>> = lens[..count]
                    .iter()
                    .map(|&l| {
                        let mut s = shape.to_vec();
                        s[axis] = l;
                        s
                    })
                    .collect();
                for bits in 0..4u32 {
                    let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                    let ups: Vec<(Tensor, Vec<f64>)> = ins
                        .iter()
                        .map(|s| upload(ctx, s, &rand_vec(s.iter().product(), &mut rng), xf))
                        .collect();
                    let mut out_shape = shape.to_vec();
                    out_shape[axis] = lens[..count].iter().sum();
                    let out = poisoned(ctx, &out_shape, of);
                    let ts: Vec<&Tensor> = ups.iter().map(|u| &u.0).collect();
                    let mut enc = ctx.encoder("concat");
                    concat(ctx, &mut enc, &ts, axis, &out).unwrap();
                    ctx.submit_and_wait(enc).unwrap();
                    let xs: Vec<&[f64]> = ups.iter().map(|u| u.1.as_slice()).collect();
                    let ss: Vec<&[usize]> = ins.iter().map(|s| s.as_slice()).collect();
                    let want = stored(&r::concat(&xs, &ss, axis), of);
                    assert_eq!(read(ctx, &out), want, "{ins:?} along {axis}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 21 * 2 * 4);
    let a = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[3, 3], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[2, 6], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = concat(ctx, &mut enc, &[&a, &b], 1, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("concat") && e.contains("input 1 [3, 3]"), "{e}");
    let e = concat(ctx, &mut enc, &[&a, &a], 2, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("axis 2"), "{e}");
}

/// Pads in every mode (a constant, edge, reflect, wrap) on ranks 1 to 6 with unequal
/// pads in front and behind (some 0), against the reference, bit for bit, f32 and f16
/// each way; reflect pads as long as the axis are errors.
#[test]
fn pads_in_every_mode_match_the_reference() {
    use wgpu_quant::ops::layout::{pad, PadMode};
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(26);
    let shapes = SMALL_RANKS_1_TO_6;
    let modes = [
        PadMode::Constant(0.0),
        PadMode::Constant(-1.25),
        PadMode::Edge,
        PadMode::Reflect,
        PadMode::Wrap,
    ];
    let mut cases = 0;
    for shape in shapes {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        // Below the dimension (reflect's limit), different in front and behind.
        let before: Vec<usize> = shape.iter().map(|&d| (d - 1).min(2)).collect();
        let after: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(a, &d)| (d - 1).min(a % 2))
            .collect();
        let out_shape: Vec<usize> = (0..shape.len())
            .map(|a| shape[a] + before[a] + after[a])
            .collect();
        for mode in modes {
            for bits in 0..4u32 {
                let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                let (x, x64) = upload(ctx, shape, &v, xf);
                let out = poisoned(ctx, &out_shape, of);
                let mut enc = ctx.encoder("pad");
                pad(ctx, &mut enc, &x, &before, &after, mode, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::pad(&x64, shape, &before, &after, mode), of);
                assert_eq!(
                    read(ctx, &out),
                    want,
                    "{shape:?} {before:?} {after:?} {mode:?}"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 6 * 5 * 4);
    // Wrap may pad beyond the dimension.
    let (x, x64) = upload(ctx, &[3], &[1.0, 2.0, 3.0], false);
    let out = poisoned(ctx, &[10], false);
    let mut enc = ctx.encoder("wrap");
    pad(ctx, &mut enc, &x, &[4], &[3], PadMode::Wrap, &out).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    assert_eq!(
        read(ctx, &out),
        vec![3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    );
    assert_eq!(
        stored(&r::pad(&x64, &[3], &[4], &[3], PadMode::Wrap), false),
        read(ctx, &out)
    );
    let o = Tensor::zeros(ctx, &[6], DType::F32).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = pad(ctx, &mut enc, &x, &[3], &[0], PadMode::Reflect, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pad") && e.contains("reflect pads 3"), "{e}");
}

/// Gathers along every axis of ranks 1 to 6 (repeated, reversed and skipped indices)
/// against the reference, bit for bit, f32 and f16 each way; bad indices tensors and
/// output shapes are errors.
#[test]
fn gathers_along_any_axis_match_the_reference() {
    use wgpu_quant::ops::layout::gather;
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(27);
    let mut cases = 0;
    for shape in SMALL_RANKS_1_TO_6 {
        let n: usize = shape.iter().product();
        let v = rand_vec(n, &mut rng);
        for axis in 0..shape.len() {
            let d = shape[axis];
            // Every index backwards, then the first twice and the last.
            let picks: Vec<usize> = (0..d).rev().chain([0, 0, d - 1]).collect();
            let idx: Vec<u32> = picks.iter().map(|&j| j as u32).collect();
            let it = Tensor::from_slice(ctx, &[idx.len()], &idx).unwrap();
            let mut out_shape = shape.to_vec();
            out_shape[axis] = picks.len();
            for bits in 0..4u32 {
                let (xf, of) = (bits & 1 != 0, bits & 2 != 0);
                let (x, x64) = upload(ctx, shape, &v, xf);
                let out = poisoned(ctx, &out_shape, of);
                let mut enc = ctx.encoder("gather");
                gather(ctx, &mut enc, &x, axis, &it, &out).unwrap();
                ctx.submit_and_wait(enc).unwrap();
                let want = stored(&r::gather(&x64, shape, axis, &picks), of);
                assert_eq!(read(ctx, &out), want, "{shape:?} axis {axis}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 21 * 4);
    let x = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    let o = Tensor::zeros(ctx, &[2, 2], DType::F32).unwrap();
    let fidx = Tensor::from_slice(ctx, &[2], &[0.0f32, 1.0]).unwrap();
    let mut enc = ctx.encoder("bad");
    let e = gather(ctx, &mut enc, &x, 1, &fidx, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gather") && e.contains("U32"), "{e}");
    let idx = Tensor::from_slice(ctx, &[3], &[0u32, 1, 2]).unwrap();
    let e = gather(ctx, &mut enc, &x, 1, &idx, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 3]") && e.contains("[2, 2]"), "{e}");
}
