// 3D max pooling as PyTorch's MaxPool3d (ceil_mode = False, return_indices = True).
//
// Layout: x and dx are [N, C, D, H, W]; y, dy and indices are [N, C, OD, OH, OW], all NCDHW,
// flat. An index is the argmax's position (d·H + h)·W + w inside the D·H·W volume of its own
// (n, c), as PyTorch returns it. Window o along an axis has taps o·s − pad + t·dil, t < k;
// taps outside [0, size) are −∞ padding and never win. The host guarantees every window has
// at least one tap inside the input.
// Max: NaN wins (PyTorch's `v > m || isnan(v)`, so the last NaN in the window); ties keep the
// first tap in (kd, kh, kw) scan order.
// Invocation: one per element of the pass's output (forward: y; backward: dx), p.count of
// them; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
//
// forward:  binding 1 x (read), binding 2 y (write), binding 3 indices (write, u32)
// backward: binding 1 indices (read, u32), binding 2 dy (read), binding 3 dx (write)
//           dx[i] = Σ dy[o] over the windows o that contain i and whose index is i: a gather
//           in a fixed order, so overlapping windows need no atomics and sums reproduce.
// When windows do not overlap (stride ≥ dilated kernel on every axis) each input element is
// in at most one window, and the backward pass is a scatter instead, with no per-element
// window search (its divisions dominate on CPU adapters):
// zero:             binding 1 dx (write): dx = 0, one invocation per element of dx
// backward_scatter: binding 1 indices (read, u32), binding 2 dy (read), binding 3 dx (write):
//           one invocation per window o: dx[its argmax] = dy[o]

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
    dil_d: u32,
    dil_h: u32,
    dil_w: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;

@group(0) @binding(1) var<storage, read> indices_in: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx_1: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// On the bits, because WGSL lets implementations assume floats are never NaN.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Taps of window o along one axis that fall inside [0, size): first tap, and one past the
// last tap's position (step by dil from first while below it).
fn taps(o: u32, s: u32, pad: u32, k: u32, dil: u32, size: u32) -> vec2<u32> {
    let start = i32(o * s) - i32(pad);
    let end = min(start + i32((k - 1u) * dil) + 1, i32(size));
    var first = start;
    if (first < 0) {
        first += (-first + i32(dil) - 1) / i32(dil) * i32(dil);
    }
    return vec2<u32>(u32(first), u32(end));
}

// Windows along one axis that can hold position i (some tap o·s − pad + t·dil = i):
// o from ceil((i + pad − (k−1)·dil) / s) to floor((i + pad) / s), clipped to [0, out).
fn windows(i: u32, s: u32, pad: u32, k: u32, dil: u32, out: u32) -> vec2<u32> {
    let hi = (i + pad) / s + 1u;
    let reach = (k - 1u) * dil;
    var lo = 0u;
    if (i + pad > reach) {
        lo = (i + pad - reach + s - 1u) / s;
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
    let td = taps(od, p.s_d, p.p_d, p.k_d, p.dil_d, p.in_d);
    let th = taps(oh, p.s_h, p.p_h, p.k_h, p.dil_h, p.in_h);
    let tw = taps(ow, p.s_w, p.p_w, p.k_w, p.dil_w, p.in_w);
    // Starting from the first tap equals PyTorch's start from −∞ with that tap's index.
    var best = (td.x * p.in_h + th.x) * p.in_w + tw.x;
    var m = x[base + best];
    for (var d = td.x; d < td.y; d += p.dil_d) {
        for (var h = th.x; h < th.y; h += p.dil_h) {
            for (var w = tw.x; w < tw.y; w += p.dil_w) {
                let at = (d * p.in_h + h) * p.in_w + w;
                let v = x[base + at];
                if (is_nan(v) || (!is_nan(m) && v > m)) {
                    m = v;
                    best = at;
                }
            }
        }
    }
    y[i] = m;
    indices[i] = best;
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
    let me = (id * p.in_h + ih) * p.in_w + iw;
    let wd = windows(id, p.s_d, p.p_d, p.k_d, p.dil_d, p.out_d);
    let wh = windows(ih, p.s_h, p.p_h, p.k_h, p.dil_h, p.out_h);
    let ww = windows(iw, p.s_w, p.p_w, p.k_w, p.dil_w, p.out_w);
    var sum = 0.0;
    for (var od = wd.x; od < wd.y; od++) {
        for (var oh = wh.x; oh < wh.y; oh++) {
            let row = ((slice * p.out_d + od) * p.out_h + oh) * p.out_w;
            for (var ow = ww.x; ow < ww.y; ow++) {
                if (indices_in[row + ow] == me) {
                    sum += dy[row + ow];
                }
            }
        }
    }
    dx[i] = sum;
}

@compute @workgroup_size(WG)
fn zero(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.count) {
        dx_1[i] = 0.0;
    }
}

@compute @workgroup_size(WG)
fn backward_scatter(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let o = index(wid, nwg, lid);
    if (o >= p.count) {
        return;
    }
    let slice = o / (p.out_d * p.out_h * p.out_w);
    dx[slice * p.in_d * p.in_h * p.in_w + indices_in[o]] = dy[o];
}
