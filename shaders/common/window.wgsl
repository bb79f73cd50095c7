// Sliding-window geometry of the convolution and pooling kernels (NHWC images), from the
// kernel's params p.out_h, p.out_w, p.stride_h, p.stride_w, p.pad_t, p.pad_l, p.k_w,
// p.dil_h, p.dil_w, p.in_h and p.in_w.
// #expects p.out_h, p.out_w, p.stride_h, p.stride_w, p.pad_t, p.pad_l, p.k_w, p.dil_h, p.dil_w, p.in_h, p.in_w

// An output pixel's image and the input position of its first tap (signed: it may lie
// in the padding).
struct Origin {
    img: u32,
    y: i32,
    x: i32,
}

fn window_origin(row: u32) -> Origin {
    let plane = p.out_h * p.out_w;
    let rem = row % plane;
    return Origin(
        row / plane,
        i32((rem / p.out_w) * p.stride_h) - i32(p.pad_t),
        i32((rem % p.out_w) * p.stride_w) - i32(p.pad_l),
    );
}

// The input pixel of tap `tap` (row-major over the KH x KW window) and whether it lies
// inside the image; outside, the pixel index is clamped into the image and must not be
// used.
struct Tap {
    pix: u32,
    inside: bool,
}

fn window_tap(o: Origin, tap: u32) -> Tap {
    let iy = o.y + i32((tap / p.k_w) * p.dil_h);
    let ix = o.x + i32((tap % p.k_w) * p.dil_w);
    let inside = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
    return Tap((o.img * p.in_h + u32(max(iy, 0))) * p.in_w + u32(max(ix, 0)), inside);
}
