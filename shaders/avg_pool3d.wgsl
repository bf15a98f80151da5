// 3D average pooling as PyTorch's AvgPool3d (ceil_mode = False, count_include_pad = True).
//
// Layout: x and dx are [N, C, D, H, W]; y and dy are [N, C, OD, OH, OW], all NCDHW, flat.
// Window o along an axis covers [o·s − pad, o·s − pad + k); positions outside [0, size) are
// zero padding. Divisor: the product over axes of min(start + k, size + pad) − start, the
// window clipped to the padded input, as PyTorch's pool_size (the whole kernel volume
// whenever ceil_mode is off).
// Invocation: one per element of the pass's output (forward: y; backward: dx), p.count of
// them; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
//
// forward:  binding 1 x (read), binding 2 y (write)      y[o] = Σ window / divisor(o)
// backward: binding 1 dy (read), binding 2 dx (write)    dx[i] = Σ dy[o] / divisor(o) over
//           the windows o that contain i: a gather in a fixed order, so overlapping windows
//           need no atomics and sums reproduce.

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    count: u32,
    in_d: u32,
    in_h: u32,
    in_w: u32,
    out_d: u32,
    out_h: u32,
    out_w: u32,
    k_d: u32,
    k_h: u32,
    k_w: u32,
    s_d: u32,
    s_h: u32,
    s_w: u32,
    p_d: u32,
    p_h: u32,
    p_w: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;

@group(0) @binding(1) var<storage, read> dy: array<act>;
@group(0) @binding(2) var<storage, read_write> dx: array<act>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Window o along one axis: (first position inside the input, one past the last, divisor
// factor of this axis).
fn span(o: u32, s: u32, pad: u32, k: u32, size: u32) -> vec3<u32> {
    let start = i32(o * s) - i32(pad);
    let end = min(start + i32(k), i32(size + pad));
    return vec3<u32>(u32(max(start, 0)), u32(min(end, i32(size))), u32(end - start));
}

// Windows along one axis that contain position i (o·s − pad ≤ i < o·s − pad + k):
// o from ceil((i + pad + 1 − k) / s) to floor((i + pad) / s), clipped to [0, out).
fn windows(i: u32, s: u32, pad: u32, k: u32, out: u32) -> vec2<u32> {
    let hi = (i + pad) / s + 1u;
    var lo = 0u;
    if (i + pad + 1u > k) {
        lo = (i + pad + 1u - k + s - 1u) / s;
    }
    return vec2<u32>(lo, min(hi, out));
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.count) {
        return;
    }
    let ow = i % p.out_w;
    var r = i / p.out_w;
    let oh = r % p.out_h;
    r = r / p.out_h;
    let od = r % p.out_d;
    let base = (r / p.out_d) * p.in_d * p.in_h * p.in_w;
    let sd = span(od, p.s_d, p.p_d, p.k_d, p.in_d);
    let sh = span(oh, p.s_h, p.p_h, p.k_h, p.in_h);
    let sw = span(ow, p.s_w, p.p_w, p.k_w, p.in_w);
    var sum = 0.0;
    for (var d = sd.x; d < sd.y; d++) {
        for (var h = sh.x; h < sh.y; h++) {
            let row = base + (d * p.in_h + h) * p.in_w;
            for (var w = sw.x; w < sw.y; w++) {
                sum += f32(x[row + w]);
            }
        }
    }
    y[i] = act(sum / f32(sd.z * sh.z * sw.z));
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.count) {
        return;
    }
    let iw = i % p.in_w;
    var r = i / p.in_w;
    let ih = r % p.in_h;
    r = r / p.in_h;
    let id = r % p.in_d;
    let slice = r / p.in_d;
    let wd = windows(id, p.s_d, p.p_d, p.k_d, p.out_d);
    let wh = windows(ih, p.s_h, p.p_h, p.k_h, p.out_h);
    let ww = windows(iw, p.s_w, p.p_w, p.k_w, p.out_w);
    var sum = 0.0;
    for (var od = wd.x; od < wd.y; od++) {
        let fd = span(od, p.s_d, p.p_d, p.k_d, p.in_d).z;
        for (var oh = wh.x; oh < wh.y; oh++) {
            let fh = span(oh, p.s_h, p.p_h, p.k_h, p.in_h).z;
            let row = ((slice * p.out_d + od) * p.out_h + oh) * p.out_w;
            for (var ow = ww.x; ow < ww.y; ow++) {
                let fw = span(ow, p.s_w, p.p_w, p.k_w, p.in_w).z;
                sum += f32(dy[row + ow]) / f32(fd * fh * fw);
            }
        }
    }
    dx[i] = act(sum);
}
