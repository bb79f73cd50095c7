//! Max, average and global average pooling against the Rust reference (`reference::
//! pool_f64`): padding, stride, dilation, count_pad, f32 and f16 in and out. Outputs are
//! poisoned first.

mod common;

use common::float::{check, poisoned, rand_vec, read, upload, F16_OUT, F32_BUDGET};
use rand::SeedableRng;
use wgpu_quant::ops::conv::{ConvDesc, ConvDims, Padding};
use wgpu_quant::ops::pool::{pool2d, PoolDesc, PoolKind};
use wgpu_quant::reference;

#[test]
fn pooling_sweep() {
    let ctx = common::ctx();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // (input NHWC, desc)
    let mut cases: Vec<([usize; 4], PoolDesc)> = vec![
        ([1, 7, 7, 5], PoolDesc::new(PoolKind::Max, 2, 2)),
        (
            [2, 13, 13, 3],
            PoolDesc::new(PoolKind::Max, 3, 2).padding(Padding::uniform(1)),
        ),
        (
            [1, 13, 13, 6],
            PoolDesc::new(PoolKind::Avg, 3, 1).padding(Padding::Same),
        ),
        ([1, 33, 33, 2], PoolDesc::new(PoolKind::Avg, 5, 3)),
        ([1, 7, 7, 9], PoolDesc::global_avg()),
        ([2, 1, 1, 7], PoolDesc::global_avg()),
        ([1, 28, 28, 10], PoolDesc::new(PoolKind::Max, 2, 2)),
    ];
    let mut count_pad = PoolDesc::new(PoolKind::Avg, 3, 2).padding(Padding::uniform(1));
    count_pad.count_pad = true;
    cases.push(([1, 7, 7, 3], count_pad));
    let mut dilated = PoolDesc::new(PoolKind::Max, 3, 1).padding(Padding::SameLower);
    dilated.dilation = [2, 2];
    cases.push(([1, 13, 13, 4], dilated));
    let mut global_max = PoolDesc::global_avg();
    global_max.kind = PoolKind::Max;
    cases.push(([1, 7, 13, 3], global_max));
    for (i, (xs, desc)) in cases.iter().enumerate() {
        for (x16, o16) in [(false, false), (true, true), (false, true)] {
            let xv = rand_vec(xs.iter().product(), &mut rng);
            let (x, x64) = upload(ctx, xs, &xv, x16);
            let oshape = desc.output_shape(xs).unwrap();
            let out = poisoned(ctx, &oshape, o16);
            let mut enc = ctx.encoder("pool test");
            pool2d(ctx, &mut enc, desc, &x, &out).unwrap();
            ctx.submit_and_wait(enc).unwrap();
            // The geometry the reference uses comes from the conv rules independently.
            let kernel = desc.kernel.unwrap_or([xs[1], xs[2]]);
            let s = ConvDesc {
                stride: desc.stride,
                padding: desc.padding,
                dilation: desc.dilation,
                ..ConvDesc::default()
            }
            .shape(&ConvDims::new(1, xs[3], kernel, 1).unwrap(), xs)
            .unwrap();
            let want = reference::pool_f64(
                &x64,
                *xs,
                desc.kind == PoolKind::Max,
                kernel,
                desc.stride,
                desc.dilation,
                [s.pad[0], s.pad[1]],
                (s.out_h, s.out_w),
                desc.count_pad,
            );
            let budget = F32_BUDGET + if o16 { F16_OUT } else { 0.0 };
            check(
                &format!("case {i} {xs:?} {desc:?} f16 {x16}/{o16}"),
                &read(ctx, &out),
                &want,
                budget,
            );
        }
    }
}
