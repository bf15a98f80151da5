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
// forward_windows: as forward, for windows that tile the input (stride = kernel, no padding
//           or dilation), with the geometry as pipeline constants
// backward_windows: binding 1 indices (read, u32), binding 2 dy (read), binding 3 dx (write),
//           binding 4 x (read): for windows that tile the input (stride = kernel, no padding
//           or dilation), one invocation per window writes every element of it — dy (times
//           the activation's slope) at its argmax, 0 elsewhere — so dx needs no zeroing pass
//           where the windows cover the input. With IN_PLACE, dx may be x's own buffer.
//
// A relu or leaky_relu right before the pool is fused into it (pipeline constant ACT: 0 none,
// 1 relu, 2 leaky_relu with slope p.slope): forward takes the max of f(x) over the window, as
// the two layers do one after the other (the same formulas as shaders/activation.wgsl, so the
// same bits), and the backward passes multiply the routed gradient by f'(x) at its position.
// The activation's output and its gradient are then never written: on a CPU adapter those two
// full-size passes cost as much as the pool. The backward passes bind x at binding 4; without
// an activation it is never read and the host binds any read-only buffer there.

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
    dil_d: u32,
    dil_h: u32,
    dil_w: u32,
    slope: f32,
}

override WG: u32 = 64u;
override ACT: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;

@group(0) @binding(1) var<storage, read> indices_in: array<u32>;
@group(0) @binding(2) var<storage, read> dy: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;
@group(0) @binding(1) var<storage, read_write> dx_1: array<act>;
@group(0) @binding(4) var<storage, read> x_4: array<act>;

// The fused activation (identity when ACT is 0).
fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: { return select(0.0, v, v > 0.0); }
        case 2u: { return select(v * p.slope, v, v > 0.0); }
        default: { return v; }
    }
}

// Its gradient g·f'(xv), from the activation's input as PyTorch's relu and leaky_relu.
fn dact(g: f32, xv: f32) -> f32 {
    switch ACT {
        case 1u: { return select(0.0, g, xv > 0.0); }
        case 2u: { return select(g * p.slope, g, xv > 0.0); }
        default: { return g; }
    }
}

// backward_windows may write dx over x (IN_PLACE): each invocation owns its window and reads x
// at the argmax before it writes that element, so the layer before the pool can keep its output
// and the gradient of it in one buffer. x is then read from dx, and binding 4 is a stand-in.
override IN_PLACE: bool = false;

// x at element i of dx's layout, read only when an activation is fused.
fn x_at(i: u32) -> f32 {
    if (ACT == 0u) {
        return 0.0;
    }
    if (IN_PLACE) {
        return f32(dx[i]);
    }
    return f32(x_4[i]);
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// On the bits, because WGSL lets implementations assume floats are never NaN.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether tap value v replaces the running max m: NaN wins, ties keep the earlier tap.
fn wins(v: f32, m: f32) -> bool {
    return is_nan(v) | (!is_nan(m) & (v > m));
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
    var m = activate(f32(x[base + best]));
    for (var d = td.x; d < td.y; d += p.dil_d) {
        for (var h = th.x; h < th.y; h += p.dil_h) {
            for (var w = tw.x; w < tw.y; w += p.dil_w) {
                let at = (d * p.in_h + h) * p.in_w + w;
                let v = activate(f32(x[base + at]));
                if (wins(v, m)) {
                    m = v;
                    best = at;
                }
            }
        }
    }
    y[i] = act(m);
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
                    sum += f32(dy[row + ow]);
                }
            }
        }
    }
    dx[i] = act(dact(sum, x_at(i)));
}

@compute @workgroup_size(WG)
fn zero(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.count) {
        dx_1[i] = act(0.0);
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
    let at = slice * p.in_d * p.in_h * p.in_w + indices_in[o];
    dx[at] = act(dact(f32(dy[o]), x_at(at)));
}

// The window kernels' geometry as pipeline constants: a CPU adapter divides by a constant with
// a multiply and unrolls loops of constant length, where runtime sizes cost a division per
// lane and a loop per axis. Input IN_D×IN_H×IN_W, output OUT_D×OUT_H×OUT_W, window (and
// stride) KD×KH×KW.
override IN_D: u32 = 1u;
override IN_H: u32 = 1u;
override IN_W: u32 = 1u;
override OUT_D: u32 = 1u;
override OUT_H: u32 = 1u;
override OUT_W: u32 = 1u;
override KD: u32 = 1u;
override KH: u32 = 1u;
override KW: u32 = 1u;

// Where window o of the window kernels starts: the first element of its (n, c) volume, and
// its first tap inside that volume.
fn window_start(o: u32) -> vec2<u32> {
    let ow = o % OUT_W;
    var r = o / OUT_W;
    let oh = r % OUT_H;
    r = r / OUT_H;
    let od = r % OUT_D;
    let base = (r / OUT_D) * IN_D * IN_H * IN_W;
    return vec2<u32>(base, (od * KD * IN_H + oh * KH) * IN_W + ow * KW);
}

// forward for windows that tile the input (the same scan order and tie rules as forward).
@compute @workgroup_size(WG)
fn forward_windows(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let o = index(wid, nwg, lid);
    if (o >= p.count) {
        return;
    }
    let s = window_start(o);
    var best = s.y;
    var m = activate(f32(x[s.x + best]));
    for (var d = 0u; d < KD; d++) {
        for (var h = 0u; h < KH; h++) {
            for (var w = 0u; w < KW; w++) {
                let at = s.y + (d * IN_H + h) * IN_W + w;
                let v = activate(f32(x[s.x + at]));
                if (wins(v, m)) {
                    m = v;
                    best = at;
                }
            }
        }
    }
    y[o] = act(m);
    indices[o] = best;
}

@compute @workgroup_size(WG)
fn backward_windows(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let o = index(wid, nwg, lid);
    if (o >= p.count) {
        return;
    }
    let s = window_start(o);
    let best = s.x + indices_in[o];
    let g = f32(dy[o]);
    for (var d = 0u; d < KD; d++) {
        for (var h = 0u; h < KH; h++) {
            for (var w = 0u; w < KW; w++) {
                let at = s.x + s.y + (d * IN_H + h) * IN_W + w;
                var v = 0.0;
                if (at == best) {
                    v = dact(g, x_at(at));
                }
                dx[at] = act(v);
            }
        }
    }
}

// forward_windows2 / backward_windows2: the window kernels for windows 2 wide along W over an
// even IN_W, reading and writing x and dx in pairs along W (a CPU adapter pays per storage
// access, whatever its width). Every pair starts at an even element: volumes and rows have even
// sizes and windows start at even W.
//   forward_windows2:  1 x (read, pairs), 2 y, 3 indices (write)
//   backward_windows2: 1 indices, 2 dy (read), 3 dx (write, pairs), 4 x (read)
@group(0) @binding(1) var<storage, read> x2: array<vec2<act>>;
@group(0) @binding(3) var<storage, read_write> dx2: array<vec2<act>>;

@compute @workgroup_size(WG)
fn forward_windows2(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let o = index(wid, nwg, lid);
    if (o >= p.count) {
        return;
    }
    let s = window_start(o);
    var best = s.y;
    var m = activate(f32(x2[(s.x + best) / 2u].x));
    for (var d = 0u; d < KD; d++) {
        for (var h = 0u; h < KH; h++) {
            let at = s.y + (d * IN_H + h) * IN_W;
            let v2 = vec2<f32>(x2[(s.x + at) / 2u]);
            let a = activate(v2.x);
            if (wins(a, m)) {
                m = a;
                best = at;
            }
            let b = activate(v2.y);
            if (wins(b, m)) {
                m = b;
                best = at + 1u;
            }
        }
    }
    y[o] = act(m);
    indices[o] = best;
}

@compute @workgroup_size(WG)
fn backward_windows2(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let o = index(wid, nwg, lid);
    if (o >= p.count) {
        return;
    }
    let s = window_start(o);
    let best = s.x + indices_in[o];
    // x at the argmax, read before this window is overwritten (dx may be x): x_at's reads,
    // with dx through its pairs view (one binding cannot be declared twice in an entry point).
    var xb = 0.0;
    if (ACT != 0u) {
        if (IN_PLACE) {
            xb = f32(dx2[best / 2u][best % 2u]);
        } else {
            xb = f32(x_4[best]);
        }
    }
    let v = dact(f32(dy[o]), xb);
    for (var d = 0u; d < KD; d++) {
        for (var h = 0u; h < KH; h++) {
            let at = s.x + s.y + (d * IN_H + h) * IN_W;
            dx2[at / 2u] = vec2<act>(vec2<f32>(select(0.0, v, at == best), select(0.0, v, at + 1u == best)));
        }
    }
}
