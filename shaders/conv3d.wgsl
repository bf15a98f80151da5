// 3D convolution, groups = 1, zero padding (PyTorch's conv3d): forward, and the gradients of
// its input, weight and bias.
//
// Layouts, row-major:
//   x, dx   [N, CI, D, H, W]          input and its gradient
//   w, dw   [CO, CI, KD, KH, KW]      weights and their gradient
//   b, db   [CO]                      bias and its gradient
//   y, dy   [N, CO, OD, OH, OW]       output and its gradient
// Along each axis, output position o and kernel tap k read input position
//   i = o·stride − padding + k·dilation   (no term where i falls outside [0, size)).
// Coordinates stay unsigned: o·stride + k·dilation is compared with the padding before
// subtracting it; the Rust side checks that padded sizes and element counts fit in u32.
//
// Entry points (binding 0 is the uniform p; p.total is the number of invocations or groups):
//   forward          one invocation per output position and CO_TILE output channels: y = Σ x·w
//                    1 x (read), 2 w (read), 3 y (write)
//   forward_bias     the same plus b[co]
//                    1 x (read), 2 w (read), 3 y (write), 4 b (read)
//   backward_input   one invocation per input position and CI_TILE input channels, gathering
//                    over the taps whose output position is whole (divisible by the stride)
//                    and in range, and over CO
//                    1 dy (read), 2 w (read), 3 dx (write)
//   backward_weight  one workgroup of 256 per (co, tap, CI_TILE input channels): each lane sums
//                    whole output rows (n, od, oh) taken with a stride of 256, then a tree
//                    reduction per channel
//                    1 x (read), 2 dy (read), 3 dw (write)
//   backward_bias    one workgroup of 256 per output channel, reducing dy over N and positions
//                    1 dy (read), 2 db (write)
// Element-wise entry points index linearly as (wid.y·nwg.x + wid.x)·WG + lid; reductions take
// group wid.y·nwg.x + wid.x, so the host may lay workgroups out on a 2D grid.

struct Params {
    n: u32,
    c_in: u32,
    c_out: u32,
    total: u32,
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
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;
// Threads per workgroup of the reductions; the size of `partial`.
const RED: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// Slot 1: x for forward and backward_weight, dy for backward_input and backward_bias.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// Slot 2: w for forward and backward_input, dy for backward_weight, db for backward_bias.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy_2: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
// Slot 3: the output of each pass.
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
// Slot 4: the bias, only for forward_bias.
@group(0) @binding(4) var<storage, read> b: array<f32>;

var<workgroup> partial: array<f32, RED>;

fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn x_index(n: u32, ci: u32, id: u32, ih: u32, iw: u32) -> u32 {
    return (((n * p.c_in + ci) * p.in_d + id) * p.in_h + ih) * p.in_w + iw;
}

fn w_index(co: u32, ci: u32, kd: u32, kh: u32, kw: u32) -> u32 {
    return (((co * p.c_in + ci) * p.k_d + kd) * p.k_h + kh) * p.k_w + kw;
}

fn y_index(n: u32, co: u32, od: u32, oh: u32, ow: u32) -> u32 {
    return (((n * p.c_out + co) * p.out_d + od) * p.out_h + oh) * p.out_w + ow;
}

// The input position that output position o and tap k read along one axis, or `size` (out of
// range) when it falls into the padding.
fn in_pos(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 {
    let z = o * stride + k * dil;
    if (z < pad || z - pad >= size) {
        return size;
    }
    return z - pad;
}

// The output position whose tap k reads input position i along one axis, or `size` (none)
// when i + pad − k·dil is negative, not a multiple of the stride, or past the output.
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 {
    let z = i + pad;
    let off = k * dil;
    if (z < off || (z - off) % stride != 0u) {
        return size;
    }
    return min((z - off) / stride, size);
}

// Output channels per forward invocation (mirrored by CO_TILE in src/layers/conv3d.rs): each
// x value loaded and each index computed serves CO_TILE products, which is what a CPU
// adapter's time goes into.
const CO_TILE: u32 = 4u;
// Input channels per backward_input invocation (CI_TILE in src/layers/conv3d.rs).
const CI_TILE: u32 = 4u;

// What one forward invocation computed: the sums of channels co0 .. co0 + CO_TILE − 1 at y's
// element (n, ·, od, oh, ow).
struct Block {
    acc: vec4<f32>,
    n: u32,
    co0: u32,
    od: u32,
    oh: u32,
    ow: u32,
}

// Forward for invocation i: the CO_TILE channels co0.. of one output position. Each channel's
// sum runs over the taps and CI in the same order as a one-channel loop would.
fn conv_block(i: u32) -> Block {
    let blocks = (p.c_out + CO_TILE - 1u) / CO_TILE;
    var t = i;
    let ow = t % p.out_w; t = t / p.out_w;
    let oh = t % p.out_h; t = t / p.out_h;
    let od = t % p.out_d; t = t / p.out_d;
    let co0 = (t % blocks) * CO_TILE;
    let n = t / blocks;
    // Stepping through CI moves x by one input volume and w by one kernel volume; the
    // channels of the tile are w_co apart (a channel past C_out reads the last one, unused).
    let x_ci = p.in_d * p.in_h * p.in_w;
    let w_ci = p.k_d * p.k_h * p.k_w;
    let w_co = p.c_in * w_ci;
    let last = p.c_out - 1u - co0;
    let o = vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * w_co;
    var acc = vec4<f32>(0.0);
    for (var kd = 0u; kd < p.k_d; kd++) {
        let id = in_pos(od, kd, p.s_d, p.p_d, p.dil_d, p.in_d);
        if (id == p.in_d) { continue; }
        for (var kh = 0u; kh < p.k_h; kh++) {
            let ih = in_pos(oh, kh, p.s_h, p.p_h, p.dil_h, p.in_h);
            if (ih == p.in_h) { continue; }
            for (var kw = 0u; kw < p.k_w; kw++) {
                let iw = in_pos(ow, kw, p.s_w, p.p_w, p.dil_w, p.in_w);
                if (iw == p.in_w) { continue; }
                var xi = x_index(n, 0u, id, ih, iw);
                var wi = w_index(co0, 0u, kd, kh, kw);
                for (var ci = 0u; ci < p.c_in; ci++) {
                    let wv = vec4<f32>(w[wi + o.x], w[wi + o.y], w[wi + o.z], w[wi + o.w]);
                    acc += x[xi] * wv;
                    xi += x_ci;
                    wi += w_ci;
                }
            }
        }
    }
    return Block(acc, n, co0, od, oh, ow);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let r = conv_block(i);
    for (var j = 0u; j < CO_TILE; j++) {
        let co = r.co0 + j;
        if (co < p.c_out) {
            y[y_index(r.n, co, r.od, r.oh, r.ow)] = r.acc[j];
        }
    }
}

@compute @workgroup_size(WG)
fn forward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let r = conv_block(i);
    for (var j = 0u; j < CO_TILE; j++) {
        let co = r.co0 + j;
        if (co < p.c_out) {
            y[y_index(r.n, co, r.od, r.oh, r.ow)] = r.acc[j] + b[co];
        }
    }
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    // CI_TILE input channels per invocation (mirrored in src/layers/conv3d.rs): each dy value
    // loaded serves all of them; their weights are one kernel volume apart.
    let blocks = (p.c_in + CI_TILE - 1u) / CI_TILE;
    var t = i;
    let iw = t % p.in_w; t = t / p.in_w;
    let ih = t % p.in_h; t = t / p.in_h;
    let id = t % p.in_d; t = t / p.in_d;
    let ci0 = (t % blocks) * CI_TILE;
    let n = t / blocks;
    let y_co = p.out_d * p.out_h * p.out_w;
    let w_ci = p.k_d * p.k_h * p.k_w;
    let w_co = p.c_in * w_ci;
    // A channel past C_in reads the last one's weights; its sum is not written.
    let last = p.c_in - 1u - ci0;
    let o = vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * w_ci;
    var acc = vec4<f32>(0.0);
    for (var kd = 0u; kd < p.k_d; kd++) {
        let od = out_pos(id, kd, p.s_d, p.p_d, p.dil_d, p.out_d);
        if (od == p.out_d) { continue; }
        for (var kh = 0u; kh < p.k_h; kh++) {
            let oh = out_pos(ih, kh, p.s_h, p.p_h, p.dil_h, p.out_h);
            if (oh == p.out_h) { continue; }
            for (var kw = 0u; kw < p.k_w; kw++) {
                let ow = out_pos(iw, kw, p.s_w, p.p_w, p.dil_w, p.out_w);
                if (ow == p.out_w) { continue; }
                // Stepping through CO moves dy by one output volume and w by CI kernel volumes.
                var yi = y_index(n, 0u, od, oh, ow);
                var wi = w_index(0u, ci0, kd, kh, kw);
                for (var co = 0u; co < p.c_out; co++) {
                    let wv = vec4<f32>(w[wi + o.x], w[wi + o.y], w[wi + o.z], w[wi + o.w]);
                    acc += dy[yi] * wv;
                    yi += y_co;
                    wi += w_co;
                }
            }
        }
    }
    for (var j = 0u; j < CI_TILE; j++) {
        let ci = ci0 + j;
        if (ci < p.c_in) {
            dx[x_index(n, ci, id, ih, iw)] = acc[j];
        }
    }
}

// Tree sum of every lane's `v`. Must be reached by all lanes of the workgroup (uniform flow).
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = RED / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(RED)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wid, nwg);
    // Uniform across the workgroup, so returning here keeps the barriers below uniform.
    if (j >= p.total) {
        return;
    }
    // A workgroup owns one tap (kd, kh, kw) of output channel co for CI_TILE input channels
    // ci0..: each dy value loaded serves all of them.
    let taps = p.k_d * p.k_h * p.k_w;
    let blocks = (p.c_in + CI_TILE - 1u) / CI_TILE;
    var t = j;
    let tap = t % taps; t = t / taps;
    let ci0 = (t % blocks) * CI_TILE;
    let co = t / blocks;
    let kw = tap % p.k_w;
    let kh = (tap / p.k_w) % p.k_h;
    let kd = tap / (p.k_w * p.k_h);
    // A channel past C_in reads the last one's x; its sum is not written.
    let x_ci = p.in_d * p.in_h * p.in_w;
    let last = p.c_in - 1u - ci0;
    let o = vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * x_ci;
    // Lanes take whole output rows (n, od, oh): the row's input row is found once, and its
    // output positions ow are walked with a running index instead of divisions per term.
    let rows = p.n * p.out_d * p.out_h;
    var acc = vec4<f32>(0.0);
    for (var r = lid; r < rows; r += RED) {
        let oh = r % p.out_h;
        let od = (r / p.out_h) % p.out_d;
        let n = r / (p.out_h * p.out_d);
        let id = in_pos(od, kd, p.s_d, p.p_d, p.dil_d, p.in_d);
        let ih = in_pos(oh, kh, p.s_h, p.p_h, p.dil_h, p.in_h);
        if (id == p.in_d || ih == p.in_h) { continue; }
        let x_row = x_index(n, ci0, id, ih, 0u);
        var yi = y_index(n, co, od, oh, 0u);
        for (var ow = 0u; ow < p.out_w; ow++) {
            let iw = in_pos(ow, kw, p.s_w, p.p_w, p.dil_w, p.in_w);
            if (iw < p.in_w) {
                let xi = x_row + iw;
                acc += dy_2[yi] * vec4<f32>(x[xi + o.x], x[xi + o.y], x[xi + o.z], x[xi + o.w]);
            }
            yi += 1u;
        }
    }
    for (var c = 0u; c < CI_TILE; c++) {
        let sum = workgroup_sum(lid, acc[c]);
        if (lid == 0u && ci0 + c < p.c_in) {
            dw[(co * p.c_in + ci0 + c) * taps + tap] = sum;
        }
        // The next channel's sum reuses `partial`: every lane must have read this one first.
        workgroupBarrier();
    }
}

@compute @workgroup_size(RED)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let co = group_index(wid, nwg);
    if (co >= p.total) {
        return;
    }
    let positions = p.out_d * p.out_h * p.out_w;
    var acc = 0.0;
    for (var m = lid; m < p.n * positions; m += RED) {
        acc += dy[((m / positions) * p.c_out + co) * positions + m % positions];
    }
    let sum = workgroup_sum(lid, acc);
    if (lid == 0u) {
        db[co] = sum;
    }
}
