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
// Entry points (binding 0 is the uniform p; p.total is the number of invocations or groups).
// The direct kernels, for kernels of more taps than a uniform block holds (the tiled kernels
// below serve every other convolution):
//   forward          one invocation per output position and CO_TILE output channels: y = Σ x·w
//                    1 x (read), 2 w (read), 3 y (write)
//   forward_bias     the same plus b[co]
//                    1 x (read), 2 w (read), 3 y (write), 4 b (read)
//   backward_input   one invocation per input position and CI_TILE input channels, gathering
//                    over the taps whose output position is whole (divisible by the stride)
//                    and in range, and over CO
//                    1 dy (read), 2 w (read), 3 dx (write)
//   backward_bias    one workgroup of 256 per output channel, reducing dy over N and positions
//                    1 dy (read), 2 db (write); backward_bias4 the same reading vec4s (output
//                    positions a multiple of 4)
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
    // Only the tiled entry points read these (see below): the first channel of the invocation's
    // OC-channel group, the first reduction channel of the uniform block and how many it holds,
    // the rows of one backward_weight_tiled split, and backward_input_tiled's tap.
    c0: u32,
    r0: u32,
    r_n: u32,
    rows: u32,
    tap: u32,
    _pad0: u32,
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
    if ((z < pad) | (z - pad >= size)) {
        return size;
    }
    return z - pad;
}

// The output position whose tap k reads input position i along one axis, or `size` (none)
// when i + pad − k·dil is negative, not a multiple of the stride, or past the output.
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 {
    let z = i + pad;
    let off = k * dil;
    if ((z < off) | ((z - off) % stride != 0u)) {
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
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let co = group_index(wid, nwg);
    if (co >= p.total) {
        return;
    }
    let positions = p.out_d * p.out_h * p.out_w;
    var acc = 0.0;
    // Sample by sample: no division per term (a CPU adapter divides lane by lane).
    for (var n = 0u; n < p.n; n++) {
        let base = (n * p.c_out + co) * positions;
        for (var m = lid; m < positions; m += RED) {
            acc += dy[base + m];
        }
    }
    let sum = workgroup_sum(lid, acc);
    if (lid == 0u) {
        db[co] = sum;
    }
}

// backward_bias where the output positions are a multiple of 4: dy read as vec4s (a CPU adapter
// pays per storage load, whatever its width: lavapipe ~2× faster).
@group(0) @binding(1) var<storage, read> dy4_1: array<vec4<f32>>;

@compute @workgroup_size(RED)
fn backward_bias4(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let co = group_index(wid, nwg);
    if (co >= p.total) {
        return;
    }
    let quads = p.out_d * p.out_h * p.out_w / 4u;
    var acc = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let base = (n * p.c_out + co) * quads;
        for (var m = lid; m < quads; m += RED) {
            acc += dy4_1[base + m];
        }
    }
    let sum = workgroup_sum(lid, (acc.x + acc.y) + (acc.z + acc.w));
    if (lid == 0u) {
        db[co] = sum;
    }
}

// ---------------------------------------------------------------------------------------------
// Tiled kernels. A CPU adapter such as lavapipe runs 8 invocations as one SIMD vector and pays
// per lane for every storage load, while a load from a uniform buffer at an index that is the
// same for the whole workgroup costs one scalar load. So the weights go into uniform blocks of
// 64 KiB (BLOCK vec4s, filled by pack_forward / pack_backward), and each invocation computes OC
// output channels from one storage load of its input per tap: OC products per lane-load instead
// of one. On discrete GPUs the same blocks sit in the constant cache.
//
// A block holds the weights of OC channels (the output channels c0.. for forward, the input
// channels c0.. for backward_input) for r_n reduction channels r0.. and every tap, as
// block[(r·taps + tap)·OC/4 + q] = channels 4q..4q+3, plus (forward) the bias of the OC
// channels in its last OC/4 vec4s. Channels past the tensor's are zero.
//
//   pack_forward         one invocation per float of all blocks: w → forward blocks (bias slots 0)
//                        1 w (read), 2 packed (write)
//   pack_bias            one invocation per channel of the groups: b → the first block's bias
//                        1 b (read), 2 packed (write)
//   pack_backward        the same for backward_input blocks (no bias), only the floats of
//                        the columns in use (p.c0 a block), blocks p.r0 floats apart
//                        1 w (read), 2 packed (write)
//   forward_tiled        one invocation per 2 or 4 output positions (LAYOUT, see Quad) for
//                        channels c0..c0+OC of one block (c0..c0+2·OC of two where WIDE):
//                        y = (y if ACCUMULATE) + Σ x·w (+ bias if ADD_BIAS)
//                        1 x (read), 2 block (uniform), 3 y (read_write), 4 block2 (uniform,
//                        read only where WIDE)
//   zero                 out = 0, one invocation per element
//                        1 out (write)
//   backward_input_tiled one dispatch per (kw, block of output channels r0..r0+r_n); one
//                        invocation per input row (n, id, ih) and 2 or 4 output positions
//                        (LAYOUT), for input channels c0..c0+OC (2·OC where WIDE): dx[the
//                        input positions tap kw of those outputs reads] += Σ over (kd, kh)
//                        and r of dy·w
//                        1 dy (read), 2 block (uniform), 3 dx (read_write), 4 block2 (uniform,
//                        read only where WIDE)
//   backward_weight_tiled one workgroup of 64 per (tap, 8 input channels, OC output
//                        channels, split of `rows` output rows (n, od, oh)); lanes take rows
//                        64 apart and walk ow; the lanes' sums are added in lane order, so the
//                        result does not depend on timing
//                        1 x (read), 2 dy (read), 3 part (write): part[split][co][ci][tap]
//   backward_weight_columns the same for layers of fewer than 8 input channels, with 8 columns
//                        k = ci·taps + tap in place of (tap, 8 input channels)
//   backward_weight_sum  one invocation per weight: dw = Σ over splits of part, in split order
//                        1 part (read), 2 dw (write)
//   backward_weight_samples, pack_samples  one dispatch per sample, x from a uniform window
//                        (see below)

// The packing, forward and backward_input tiled kernels read the layer's geometry from
// pipeline constants, set by the host to the same values as the parameters: a CPU adapter then
// divides by constants with multiplies, drops the padding tests of unpadded axes and the
// products of unit strides and dilations, which its per-column loop otherwise pays on every
// lane (lavapipe: forward ~20% faster). The backward_weight kernels keep reading p: with
// constants their loops unroll into slower code there.
override G_C_IN: u32 = 1u;
override G_C_OUT: u32 = 1u;
override G_IN_D: u32 = 1u;
override G_IN_H: u32 = 1u;
override G_IN_W: u32 = 1u;
override G_OUT_D: u32 = 1u;
override G_OUT_H: u32 = 1u;
override G_OUT_W: u32 = 1u;
override G_K_D: u32 = 1u;
override G_K_H: u32 = 1u;
override G_K_W: u32 = 1u;
override G_S_D: u32 = 1u;
override G_S_H: u32 = 1u;
override G_S_W: u32 = 1u;
override G_P_D: u32 = 0u;
override G_P_H: u32 = 0u;
override G_P_W: u32 = 0u;
override G_DIL_D: u32 = 1u;
override G_DIL_H: u32 = 1u;
override G_DIL_W: u32 = 1u;

// Channels per invocation of the tiled kernels (OC_TILE in src/layers/conv3d.rs).
const OC: u32 = 16u;
// Input channels per vec4 of backward_weight_tiled, two vec4s a workgroup (CI4 in src/layers/conv3d.rs).
const CI4: u32 = 4u;
// vec4s in one uniform block: 64 KiB, the binding size every WebGPU adapter supports.
const BLOCK: u32 = 4096u;

@group(0) @binding(2) var<uniform> block: array<vec4<f32>, 4096>;
// The wide kernels' second block: the same columns for the next OC channels (see WIDE).
@group(0) @binding(4) var<uniform> block2: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;
@group(0) @binding(1) var<storage, read> w_1: array<f32>;
@group(0) @binding(1) var<storage, read> b_1: array<f32>;
@group(0) @binding(1) var<storage, read> part_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw_sum: array<f32>;
@group(0) @binding(1) var<storage, read_write> out_1: array<f32>;

var<workgroup> lanes: array<vec4<f32>, 1024>;

// Which weight goes into float `f` of the packed blocks, or -1 for a zero. Forward blocks:
// block g·blocks + j holds output channels g·OC.. and input channels j·per.. (per = p.r_n,
// blocks = p.rows), column (r, tap). Backward blocks: block g·blocks + kw·chunks + j (chunks =
// blocks / K_W) holds input channels g·OC.., tap column kw and output channels j·per..,
// column (kd·K_H + kh)·per + r, so that one dispatch of backward_input_tiled (one kw, one
// chunk of output channels) reads every weight it needs from one block.
fn packed_source(f: u32, forward: bool) -> i32 {
    let taps = G_K_D * G_K_H * G_K_W;
    let bi = f / (BLOCK * 4u);
    let within = f % (BLOCK * 4u);
    let col = within / OC;
    let g = bi / p.rows;
    let j = bi % p.rows;
    let ch = g * OC + within % OC;
    if (forward) {
        let r = j * p.r_n + col / taps;
        let tap = col % taps;
        if ((col / taps >= p.r_n) | (r >= G_C_IN) | (ch >= G_C_OUT)) { return -1; }
        return i32((ch * G_C_IN + r) * taps + tap);
    }
    let chunks = p.rows / G_K_W;
    let kw = j / chunks;
    let r = (j % chunks) * p.r_n + col % p.r_n;
    let kh = (col / p.r_n) % G_K_H;
    let kd = col / (p.r_n * G_K_H);
    if ((kd >= G_K_D) | (r >= G_C_OUT) | (ch >= G_C_IN)) { return -1; }
    return i32((r * G_C_IN + ch) * taps + (kd * G_K_H + kh) * G_K_W + kw);
}

@compute @workgroup_size(WG)
fn pack_forward(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let f = thread_index(wid, nwg, lid);
    if (f >= p.total) {
        return;
    }
    let s = packed_source(f, true);
    packed[f] = select(0.0, w_1[max(s, 0)], s >= 0);
}

// The bias of channel group g goes into the last OC floats of the group's first block (the
// only one that adds it); one invocation per (g, channel of the group).
@compute @workgroup_size(WG)
fn pack_bias(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let f = thread_index(wid, nwg, lid);
    if (f >= p.total) {
        return;
    }
    let ch = f;
    let g = ch / OC;
    packed[(g * p.rows + 1u) * BLOCK * 4u - OC + ch % OC] = select(0.0, b_1[min(ch, G_C_OUT - 1u)], ch < G_C_OUT);
}

@compute @workgroup_size(WG)
fn pack_backward(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    // Only the first p.c0 floats of each block, the columns backward_input_tiled reads (a
    // dense layer's use a few of its 16,384); the blocks start p.r0 floats apart and overlap.
    let t = thread_index(wid, nwg, lid);
    if (t >= p.total) {
        return;
    }
    let s = packed_source((t / p.c0) * BLOCK * 4u + t % p.c0, false);
    packed[(t / p.c0) * p.r0 + t % p.c0] = select(0.0, w_1[max(s, 0)], s >= 0);
}

// The OC sums of one invocation at one position, as four vec4s.
struct Acc {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
}

// The OC weights of column `col` of the block (block_column2: of block2), as four vec4s.
// `lane` is the invocation's index in its subgroup where the subgroup kernels run
// (conv3d_subgroups.wgsl replaces these two functions there), else unused.
fn block_column(col: u32, lane: u32) -> array<vec4<f32>, 4> {
    let q = col * (OC / 4u);
    return array<vec4<f32>, 4>(block[q], block[q + 1u], block[q + 2u], block[q + 3u]);
}

fn block_column2(col: u32, lane: u32) -> array<vec4<f32>, 4> {
    let q = col * (OC / 4u);
    return array<vec4<f32>, 4>(block2[q], block2[q + 1u], block2[q + 2u], block2[q + 3u]);
}

// The sums of an invocation's (up to) four positions, OC channels each.
struct Sums {
    a: Acc,
    b: Acc,
    c: Acc,
    d: Acc,
}

fn zero_sums() -> Sums {
    let z = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    return Sums(z, z, z, z);
}

// Adds v·w to the first position's sums and u·w to the second's (w: a block column): the
// block's loads serve both positions.
fn mac2(s: ptr<function, Sums>, v: f32, u: f32, w: array<vec4<f32>, 4>) {
    let w0 = w[0];
    let w1 = w[1];
    let w2 = w[2];
    let w3 = w[3];
    (*s).a.a0 += v * w0;
    (*s).a.a1 += v * w1;
    (*s).a.a2 += v * w2;
    (*s).a.a3 += v * w3;
    (*s).b.a0 += u * w0;
    (*s).b.a1 += u * w1;
    (*s).b.a2 += u * w2;
    (*s).b.a3 += u * w3;
}

// mac2 for four positions: the block's loads, which a CPU adapter pays more for than for the
// products, serve all four (lavapipe: forward ~25% faster than with two).
fn mac4(s: ptr<function, Sums>, v: vec4<f32>, w: array<vec4<f32>, 4>) {
    let w0 = w[0];
    let w1 = w[1];
    let w2 = w[2];
    let w3 = w[3];
    (*s).a.a0 += v.x * w0;
    (*s).a.a1 += v.x * w1;
    (*s).a.a2 += v.x * w2;
    (*s).a.a3 += v.x * w3;
    (*s).b.a0 += v.y * w0;
    (*s).b.a1 += v.y * w1;
    (*s).b.a2 += v.y * w2;
    (*s).b.a3 += v.y * w3;
    (*s).c.a0 += v.z * w0;
    (*s).c.a1 += v.z * w1;
    (*s).c.a2 += v.z * w2;
    (*s).c.a3 += v.z * w3;
    (*s).d.a0 += v.w * w0;
    (*s).d.a1 += v.w * w1;
    (*s).d.a2 += v.w * w2;
    (*s).d.a3 += v.w * w3;
}

// The wide kernels (WIDE): 2·OC channels an invocation, the second OC from block2 (the next
// channel group's block), so that each x (forward) or dy (backward_input) an invocation loads
// serves twice the products. A CPU adapter pays for such per-lane loads more than for the
// products and the extra accumulators (lavapipe: twice the channels for 1.42–1.5× the time).
override WIDE: bool = false;

// The output positions of an invocation of the tiled kernels: 2 or 4 positions k, each
// pos_w(k) further along W and pos_n(k) samples further on than the first, (n, ·, ·, ow). LAYOUT
// (set by the host to the one that leaves the fewest positions idle, 4 positions where that
// costs little; see Conv3d::layout):
//   0  two neighbours along W          2  two along W in two samples      4  four along W
//   1  two samples                     3  four samples
// Positions past the row or the batch do not exist (has[k] false; their sums are computed and
// dropped). Invocations past the end are clamped to the last one so that every lane stays
// active (stores are masked by `valid`), which keeps the block's index uniform.
override LAYOUT: u32 = 0u;

fn four() -> bool {
    return LAYOUT >= 2u;
}

// The extent of an invocation's positions along W and along N.
fn extent_w() -> u32 {
    return select(select(1u, 2u, (LAYOUT == 0u) | (LAYOUT == 2u)), 4u, LAYOUT == 4u);
}

fn extent_n() -> u32 {
    return select(select(1u, 2u, (LAYOUT == 1u) | (LAYOUT == 2u)), 4u, LAYOUT == 3u);
}

fn pos_w(k: u32) -> u32 {
    return k % extent_w();
}

fn pos_n(k: u32) -> u32 {
    return k / extent_w();
}

// How far position k's element lies from the first's in an output-shaped tensor of `channels`
// channels of `vol` positions (y, dy).
fn pos_offset(k: u32, channels: u32, vol: u32) -> u32 {
    return pos_w(k) + pos_n(k) * channels * vol;
}

struct Quad {
    n: u32,
    od: u32,
    oh: u32,
    ow: u32,
    has: vec4<bool>,
    valid: bool,
}

// The positions that exist of an invocation starting at sample n, position ow along W.
fn has_of(n: u32, ow: u32) -> vec4<bool> {
    var h = vec4<bool>(false);
    for (var k = 0u; k < 4u; k++) {
        h[k] = ((k < 2u) | four()) & (ow + pos_w(k) < G_OUT_W) & (n + pos_n(k) < p.n);
    }
    return h;
}

fn out_quad(i: u32) -> Quad {
    var t = min(i, p.total - 1u);
    let ws = (G_OUT_W + extent_w() - 1u) / extent_w();
    let ow = (t % ws) * extent_w(); t = t / ws;
    let oh = t % G_OUT_H; t = t / G_OUT_H;
    let od = t % G_OUT_D;
    let n = (t / G_OUT_D) * extent_n();
    return Quad(n, od, oh, ow, has_of(n, ow), i < p.total);
}

// Whether forward_tiled adds to y (every block of a channel group but the first) and whether
// it adds the block's bias (the first, with a bias): pipeline constants, so that the common
// case neither reads y nor tests flags per element.
override ACCUMULATE: bool = false;
override ADD_BIAS: bool = false;

// y[at] = (y[at] if ACCUMULATE) + v (+ the bias of channel c0 + j if ADD_BIAS), if channel
// c0 + j exists; channels from OC on are the wide kernels' second block's.
fn put1(at: u32, j: u32, v: f32) {
    if (p.c0 + j < G_C_OUT) {
        var s = v;
        if (ADD_BIAS) {
            let q = BLOCK - OC / 4u + (j % OC) / 4u;
            s += select(block[q], block2[q], j >= OC)[j % 4u];
        }
        if (ACCUMULATE) {
            s += y[at];
        }
        y[at] = s;
    }
}

fn put4(at: u32, stride: u32, j: u32, v: vec4<f32>) {
    put1(at, j, v.x);
    put1(at + stride, j + 1u, v.y);
    put1(at + 2u * stride, j + 2u, v.z);
    put1(at + 3u * stride, j + 3u, v.w);
}

// Writes the OC sums of `acc` (channels c0 + j0..) to y[at + j·stride], j = 0..OC.
fn put_forward(at: u32, stride: u32, j0: u32, acc: Acc) {
    put4(at, stride, j0, acc.a0);
    put4(at + 4u * stride, stride, j0 + 4u, acc.a1);
    put4(at + 8u * stride, stride, j0 + 8u, acc.a2);
    put4(at + 12u * stride, stride, j0 + 12u, acc.a3);
}

// Writes the sums of the positions of `o` that exist, channels c0 + j0.. (y's index `at` of
// the first position and channel c0 + j0).
fn put_sums(o: Quad, at: u32, j0: u32, s: Sums) {
    let ovol = G_OUT_D * G_OUT_H * G_OUT_W;
    if (o.has.x) { put_forward(at, ovol, j0, s.a); }
    if (o.has.y) { put_forward(at + pos_offset(1u, G_C_OUT, ovol), ovol, j0, s.b); }
    if (o.has.z) { put_forward(at + pos_offset(2u, G_C_OUT, ovol), ovol, j0, s.c); }
    if (o.has.w) { put_forward(at + pos_offset(3u, G_C_OUT, ovol), ovol, j0, s.d); }
}

@compute @workgroup_size(WG)
fn forward_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    forward_at(thread_index(wid, nwg, lid), 0u);
}

// Whether forward's taps along W slide its positions' window by one input (stride and dilation
// 1, two or four positions along W): then tap kw + 1 of position k reads what tap kw of
// position k + 1 of the same sample read, so each (channel, kd, kh) loads all positions once
// and then only each sample's last position per further tap — for 3 taps and two positions
// along W, 8 loads instead of 12 (a CPU adapter's forward time is mostly these loads).
fn slides() -> bool {
    return (extent_w() > 1u) & (G_S_W == 1u) & (G_DIL_W == 1u);
}

// The x value position k of invocation `o` reads at tap kw of input row `row` (x's index of
// (n, c, id, ih, 0), `vh` whether that row lies inside the padding), 0 in the padding or past
// the batch. Positions past OW read too (only their sums are dropped): a slid window hands
// their values to the positions before them.
fn x_at(o: Quad, row: u32, vh: bool, k: u32, kw: u32) -> f32 {
    let vol = G_IN_D * G_IN_H * G_IN_W;
    let zw = (o.ow + pos_w(k)) * G_S_W + kw * G_DIL_W;
    let ok = vh & (o.n + pos_n(k) < p.n) & (zw >= G_P_W) & (zw < G_IN_W + G_P_W);
    return select(0.0, x[select(0u, row + zw - G_P_W + pos_n(k) * G_C_IN * vol, ok)], ok);
}

// mac4, or mac2 on v's first two values where LAYOUT has two positions.
fn mac(s: ptr<function, Sums>, v: vec4<f32>, w: array<vec4<f32>, 4>) {
    if (four()) {
        mac4(s, v, w);
    } else {
        mac2(s, v.x, v.y, w);
    }
}

// mac with column `col` of the block into lo and, in the wide kernels, of block2 into hi.
fn mac_wide(lo: ptr<function, Sums>, hi: ptr<function, Sums>, v: vec4<f32>, col: u32, lane: u32) {
    mac(lo, v, block_column(col, lane));
    if (WIDE) {
        mac(hi, v, block_column2(col, lane));
    }
}

// The positions' x values at tap kw > 0 of input row `row`, given v, their values at tap kw − 1.
fn next_window(o: Quad, row: u32, vh: bool, v: vec4<f32>, kw: u32) -> vec4<f32> {
    var u = v;
    for (var k = 0u; k < select(2u, 4u, four()); k++) {
        if (slides() & (pos_w(k) + 1u < extent_w())) {
            u[k] = v[k + 1u];
        } else {
            u[k] = x_at(o, row, vh, k, kw);
        }
    }
    return u;
}

// forward_tiled's invocation i (`lane`: see block_column).
fn forward_at(i: u32, lane: u32) {
    let o = out_quad(i);
    let vol = G_IN_D * G_IN_H * G_IN_W;
    var lo = zero_sums();
    var hi = lo;
    let npos = select(2u, 4u, four());
    // One loop over the block's rows of columns (channel, kd, kh), kd and kh counted along, and
    // the taps kw inside: a CPU adapter pays per loop level and iteration.
    let rows = p.r_n * G_K_D * G_K_H;
    var kd = 0u;
    var kh = 0u;
    var xc = (o.n * G_C_IN + p.r0) * vol;
    for (var rc = 0u; rc < rows; rc++) {
        // Along each axis z = o·stride + k·dilation is the coordinate in the padded input.
        let zd = o.od * G_S_D + kd * G_DIL_D;
        let zh = o.oh * G_S_H + kh * G_DIL_H;
        let vh = (zd >= G_P_D) & (zd < G_IN_D + G_P_D) & (zh >= G_P_H) & (zh < G_IN_H + G_P_H);
        let row = xc + ((zd - G_P_D) * G_IN_H + zh - G_P_H) * G_IN_W;
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < npos; k++) {
            v[k] = x_at(o, row, vh, k, 0u);
        }
        // Taps 1 and 2 written out (their conditions are constants: no branch), the rest in a
        // loop: with all taps in a loop lavapipe ran this kernel 0.82× (conv2) as fast. Their
        // loads come first, so that their products run back to back (lavapipe: fewer masked
        // writes of the sums; conv1 1.07×).
        var v1 = v;
        var v2 = v;
        if (G_K_W > 1u) {
            v1 = next_window(o, row, vh, v, 1u);
        }
        if (G_K_W > 2u) {
            v2 = next_window(o, row, vh, v1, 2u);
        }
        mac_wide(&lo, &hi, v, rc * G_K_W, lane);
        if (G_K_W > 1u) {
            mac_wide(&lo, &hi, v1, rc * G_K_W + 1u, lane);
        }
        if (G_K_W > 2u) {
            mac_wide(&lo, &hi, v2, rc * G_K_W + 2u, lane);
            v = v2;
        }
        for (var kw = 3u; kw < G_K_W; kw++) {
            v = next_window(o, row, vh, v, kw);
            mac_wide(&lo, &hi, v, rc * G_K_W + kw, lane);
        }
        kh++;
        if (kh == G_K_H) {
            kh = 0u;
            kd++;
            if (kd == G_K_D) {
                kd = 0u;
                xc += vol;
            }
        }
    }
    if (o.valid) {
        let ovol = G_OUT_D * G_OUT_H * G_OUT_W;
        let at = (o.n * G_C_OUT + p.c0) * ovol + (o.od * G_OUT_H + o.oh) * G_OUT_W + o.ow;
        put_sums(o, at, 0u, lo);
        if (WIDE) {
            put_sums(o, at + OC * ovol, OC, hi);
        }
    }
}

@compute @workgroup_size(WG)
fn zero(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i < p.total) {
        out_1[i] = 0.0;
    }
}

// dx[at] += v if input channel c0 + j exists.
fn add1(at: u32, j: u32, v: f32) {
    if (p.c0 + j < G_C_IN) {
        dx[at] = dx[at] + v;
    }
}

fn add4(at: u32, stride: u32, j: u32, v: vec4<f32>) {
    add1(at, j, v.x);
    add1(at + stride, j + 1u, v.y);
    add1(at + 2u * stride, j + 2u, v.z);
    add1(at + 3u * stride, j + 3u, v.w);
}

// Adds the OC sums of `acc` (channels c0 + j0..) to dx[at + j·stride], j = 0..OC.
fn add_dx(at: u32, stride: u32, j0: u32, acc: Acc) {
    add4(at, stride, j0, acc.a0);
    add4(at + 4u * stride, stride, j0 + 4u, acc.a1);
    add4(at + 8u * stride, stride, j0 + 8u, acc.a2);
    add4(at + 12u * stride, stride, j0 + 12u, acc.a3);
}

// The invocations of one input row (n-major runs of output positions along W, `LAYOUT`'s 2 or
// 4 an invocation) in backward_input.
fn row_invocations() -> u32 {
    let ws = (G_OUT_W + extent_w() - 1u) / extent_w();
    let ns = (p.n + extent_n() - 1u) / extent_n();
    return ws * ns;
}

// The positions of invocation j of input row `row` = id·IN_H + ih in backward_input: the
// output positions of `LAYOUT` from (n, ow) on (as forward's, in Quad's od and oh: id and ih).
// Invocations past the row's (a row padded to whole workgroups) repeat its last one and are
// not valid.
fn in_quad(row: u32, j: u32, valid: bool) -> Quad {
    let ws = (G_OUT_W + extent_w() - 1u) / extent_w();
    let q = min(j, row_invocations() - 1u);
    let ow = (q % ws) * extent_w();
    let n = (q / ws) * extent_n();
    return Quad(n, row / G_IN_H, row % G_IN_H, ow, has_of(n, ow), valid & (j < row_invocations()));
}

// backward_weight_rows' subgroup kernel pads each group of output channels to a multiple of
// ROW_ALIGN invocations (see backward_weight_rows_at).
override ROW_ALIGN: u32 = 1u;

// Adds position k's sums (channels c0 + j0..) to dx at the input position that tap p.tap (kw)
// of it reads, if both exist; xrow: the first position's input row, channel c0 + j0.
fn add_at(o: Quad, k: u32, xrow: u32, j0: u32, acc: Acc) {
    let vol = G_IN_D * G_IN_H * G_IN_W;
    let zw = (o.ow + pos_w(k)) * G_S_W + p.tap * G_DIL_W;
    if (o.valid & o.has[k] & (zw >= G_P_W) & (zw < G_IN_W + G_P_W)) {
        add_dx(xrow + zw - G_P_W + pos_n(k) * G_C_IN * vol, vol, j0, acc);
    }
}

fn add_sums(o: Quad, xrow: u32, j0: u32, s: Sums) {
    add_at(o, 0u, xrow, j0, s.a);
    add_at(o, 1u, xrow, j0, s.b);
    add_at(o, 2u, xrow, j0, s.c);
    add_at(o, 3u, xrow, j0, s.d);
}

@compute @workgroup_size(WG)
fn backward_input_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    // Input rows one after the other, row_invocations() invocations each.
    let i = thread_index(wid, nwg, lid);
    let j = min(i, p.total - 1u);
    backward_input_at(j / row_invocations(), j % row_invocations(), i < p.total, 0u);
}

// dy at the invocation's positions from index yi on (`off`: each position's offset).
fn dy_at(yi: u32, off: vec4<u32>) -> vec4<f32> {
    var v = vec4<f32>(dy[yi], dy[yi + off.y], 0.0, 0.0);
    if (four()) {
        v.z = dy[yi + off.z];
        v.w = dy[yi + off.w];
    }
    return v;
}

// backward_input_tiled's invocation j of input row `row` (`valid`: whether it is one; `lane`:
// see block_column). The loops over taps depend on the row alone: uniform wherever the row is
// (backward_input_subgroups).
fn backward_input_at(row: u32, j: u32, valid: bool, lane: u32) {
    // One dispatch per kw (and block of output channels): the invocation of input row
    // (n, id, ih) and its output positions along W gathers Σ dy·w over the taps (kd, kh)
    // whose output row reads its row, and adds the sums to the input positions that tap kw of
    // those outputs reads. No two invocations share such a position, so the dispatch adds to
    // dx without races (dx is zeroed first; the kw follow in order).
    let o = in_quad(row, j, valid);
    let id = row / G_IN_H;
    let ih = row % G_IN_H;
    let ovol = G_OUT_D * G_OUT_H * G_OUT_W;
    // Where each position's dy lies from the first's (0 for positions that do not exist).
    var off = vec4<u32>(0u);
    for (var k = 0u; k < 4u; k++) {
        off[k] = select(0u, pos_offset(k, G_C_OUT, ovol), o.has[k]);
    }
    var lo = zero_sums();
    var hi = lo;
    for (var kd = 0u; kd < G_K_D; kd++) {
        let od = out_pos(id, kd, G_S_D, G_P_D, G_DIL_D, G_OUT_D);
        if (od >= G_OUT_D) {
            continue;
        }
        for (var kh = 0u; kh < G_K_H; kh++) {
            let oh = out_pos(ih, kh, G_S_H, G_P_H, G_DIL_H, G_OUT_H);
            if (oh >= G_OUT_H) {
                continue;
            }
            // Output channels r0.. of tap (kd, kh) sit in consecutive columns, p.rows apart per tap.
            let col = (kd * G_K_H + kh) * p.rows;
            var yi = (o.n * G_C_OUT + p.r0) * ovol + (od * G_OUT_H + oh) * G_OUT_W + o.ow;
            // Two channels an iteration, their loads first: their products then run back to
            // back (lavapipe: fewer masked writes of the sums).
            var r = 0u;
            for (; r + 1u < p.r_n; r += 2u) {
                let v = dy_at(yi, off);
                let u = dy_at(yi + ovol, off);
                mac_wide(&lo, &hi, v, col + r, lane);
                mac_wide(&lo, &hi, u, col + r + 1u, lane);
                yi += 2u * ovol;
            }
            if (r < p.r_n) {
                mac_wide(&lo, &hi, dy_at(yi, off), col + r, lane);
            }
        }
    }
    let vol = G_IN_D * G_IN_H * G_IN_W;
    let xrow = (o.n * G_C_IN + p.c0) * vol + (o.od * G_IN_H + o.oh) * G_IN_W;
    add_sums(o, xrow, 0u, lo);
    if (WIDE) {
        add_sums(o, xrow + OC * vol, OC, hi);
    }
}

// backward_weight's reduction, shared by its two entry points: lane l adds up the tile's
// output (l / 4, 4·half + l % 4) over the 64 lanes, in lane order, one round per vec4 half of
// the tile, and returns the two sums.
fn reduce_tile(lid: u32, acc: ptr<function, array<vec4<f32>, 16>>, acc2: ptr<function, array<vec4<f32>, 16>>) -> vec2<f32> {
    var out = vec2<f32>(0.0);
    let c = lid / 4u;
    let k = lid % 4u;
    for (var half = 0u; half < 2u; half++) {
        for (var q = 0u; q < OC; q++) {
            lanes[q * 64u + lid] = select((*acc)[q], (*acc2)[q], half == 1u);
        }
        workgroupBarrier();
        var s = 0.0;
        for (var l = 0u; l < 64u; l++) {
            s += lanes[c * 64u + l][k];
        }
        out[half] = s;
        // The next round overwrites `lanes`: every lane must have read this one.
        workgroupBarrier();
    }
    return out;
}

@compute @workgroup_size(64)
fn backward_weight_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wid, nwg);
    // Uniform across the workgroup, so returning keeps the barriers below uniform.
    if (j >= p.total) {
        return;
    }
    let taps = p.k_d * p.k_h * p.k_w;
    let ci_tiles = (p.c_in + 2u * CI4 - 1u) / (2u * CI4);
    let co_tiles = (p.c_out + OC - 1u) / OC;
    var t = j;
    let tap = t % taps; t = t / taps;
    let ci0 = (t % ci_tiles) * 2u * CI4; t = t / ci_tiles;
    let co0 = (t % co_tiles) * OC;
    let split = t / co_tiles;
    let kw = tap % p.k_w;
    let kh = (tap / p.k_w) % p.k_h;
    let kd = tap / (p.k_w * p.k_h);
    let vol = p.in_d * p.in_h * p.in_w;
    let ovol = p.out_d * p.out_h * p.out_w;
    // Channels past the tensor's read the last one (their sums are not written).
    let last = p.c_in - 1u - ci0;
    let xo = vec4<u32>(0u, min(1u, last), min(2u, last), min(3u, last)) * vol;
    let xo2 = vec4<u32>(min(4u, last), min(5u, last), min(6u, last), min(7u, last)) * vol;
    let co_last = p.c_out - 1u;
    var acc: array<vec4<f32>, 16>;
    var acc2: array<vec4<f32>, 16>;
    let all_rows = p.n * p.out_d * p.out_h;
    let end = min(all_rows, (split + 1u) * p.rows);
    for (var r = split * p.rows + lid; r < end; r += 64u) {
        let oh = r % p.out_h;
        let od = (r / p.out_h) % p.out_d;
        let n = r / (p.out_h * p.out_d);
        let zd = od * p.s_d + kd * p.dil_d;
        let zh = oh * p.s_h + kh * p.dil_h;
        let vrow = (zd >= p.p_d) & (zd < p.in_d + p.p_d) & (zh >= p.p_h) & (zh < p.in_h + p.p_h);
        let xrow = (n * p.c_in + ci0) * vol + ((zd - p.p_d) * p.in_h + zh - p.p_h) * p.in_w;
        let yrow = n * p.c_out * ovol + (od * p.out_h + oh) * p.out_w;
        for (var ow = 0u; ow < p.out_w; ow++) {
            let zw = ow * p.s_w + kw * p.dil_w;
            let ok = vrow & (zw >= p.p_w) & (zw < p.in_w + p.p_w);
            let xi = select(0u, xrow + zw - p.p_w, ok);
            let xv = select(vec4<f32>(0.0), vec4<f32>(x[xi + xo.x], x[xi + xo.y], x[xi + xo.z], x[xi + xo.w]), ok);
            let xv2 = select(vec4<f32>(0.0), vec4<f32>(x[xi + xo2.x], x[xi + xo2.y], x[xi + xo2.z], x[xi + xo2.w]), ok);
            let yi = yrow + ow;
            for (var c = 0u; c < OC; c++) {
                let d = dy_2[yi + min(co0 + c, co_last) * ovol];
                acc[c] += d * xv;
                acc2[c] += d * xv2;
            }
        }
    }
    let s = reduce_tile(lid, &acc, &acc2);
    let c = co0 + lid / 4u;
    for (var half = 0u; half < 2u; half++) {
        let ci = ci0 + half * 4u + lid % 4u;
        if ((c < p.c_out) & (ci < p.c_in)) {
            dw[((split * p.c_out + c) * p.c_in + ci) * taps + tap] = s[half];
        }
    }
}

// The input coordinates of the tile's 4 columns k0.. (k = ci·taps + tap) along one axis
// relative to the output's: tap·dilation, and their input-channel offsets.
struct Columns {
    d: vec4<u32>,
    h: vec4<u32>,
    w: vec4<u32>,
    ci: vec4<u32>,
}

fn columns(k0: u32) -> Columns {
    let taps = p.k_d * p.k_h * p.k_w;
    let vol = p.in_d * p.in_h * p.in_w;
    // Columns past the end repeat the last one (their sums are not written).
    let k = min(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c_in * taps - 1u));
    let tap = k % taps;
    return Columns((tap / (p.k_w * p.k_h)) * p.dil_d, ((tap / p.k_w) % p.k_h) * p.dil_h, (tap % p.k_w) * p.dil_w, (k / taps) * vol);
}

// Where column set `cl` reads x for output (od, oh, ow), counted from the start of its sample
// (0 where the tap falls in the padding), and whether it falls inside the input. From the
// geometry's pipeline constants: a CPU adapter then drops the padding tests and unit strides
// from this index math, which it repeats per lane and position (lavapipe: samples_subgroups on
// the article's conv1 1.72–1.76× faster than with p's values).
struct Taps {
    at: vec4<u32>,
    ok: vec4<bool>,
}

fn column_taps(cl: Columns, od: u32, oh: u32, ow: u32) -> Taps {
    let zd = vec4<u32>(od * G_S_D) + cl.d;
    let zh = vec4<u32>(oh * G_S_H) + cl.h;
    let zw = vec4<u32>(ow * G_S_W) + cl.w;
    // Inside along an axis: pad ≤ z < size + pad, one unsigned comparison (z − pad wraps past
    // size below pad). The axes combine as u32 masks: naga's GLSL output writes each operand
    // of a vec4<bool> `&` out again, so a chain of them grows exponentially (llvmpipe's GL
    // driver then took 40 s and 4 GB to compile this kernel).
    let in_d = vec4<u32>(zd - vec4<u32>(G_P_D) < vec4<u32>(G_IN_D));
    let in_h = vec4<u32>(zh - vec4<u32>(G_P_H) < vec4<u32>(G_IN_H));
    let in_w = vec4<u32>(zw - vec4<u32>(G_P_W) < vec4<u32>(G_IN_W));
    let ok = (in_d & in_h & in_w) != vec4<u32>(0u);
    return Taps(select(vec4<u32>(0u), cl.ci + ((zd - G_P_D) * G_IN_H + zh - G_P_H) * G_IN_W + zw - G_P_W, ok), ok);
}

// x at column set `cl` for output (n, od, oh, ow), the sample starting at xn: zero where the
// tap falls in the padding.
fn x_columns(cl: Columns, xn: u32, od: u32, oh: u32, ow: u32) -> vec4<f32> {
    let t = column_taps(cl, od, oh, ow);
    let i = vec4<u32>(xn) + t.at;
    return select(vec4<f32>(0.0), vec4<f32>(x[i.x], x[i.y], x[i.z], x[i.w]), t.ok);
}

// backward_weight for layers of fewer than 8 input channels (the article's first layer has
// 3): a workgroup takes 8 consecutive columns k = ci·taps + tap instead of 8 channels at one
// tap, so no lane computes channels that do not exist.
@compute @workgroup_size(64)
fn backward_weight_columns(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wid, nwg);
    if (j >= p.total) {
        return;
    }
    let cols = p.c_in * p.k_d * p.k_h * p.k_w;
    let k_tiles = (cols + 7u) / 8u;
    let co_tiles = (p.c_out + OC - 1u) / OC;
    var t = j;
    let k0 = (t % k_tiles) * 8u; t = t / k_tiles;
    let co0 = (t % co_tiles) * OC;
    let split = t / co_tiles;
    let c1 = columns(k0);
    let c2 = columns(k0 + 4u);
    let ovol = p.out_d * p.out_h * p.out_w;
    let co_last = p.c_out - 1u;
    var acc: array<vec4<f32>, 16>;
    var acc2: array<vec4<f32>, 16>;
    let all_rows = p.n * p.out_d * p.out_h;
    let end = min(all_rows, (split + 1u) * p.rows);
    for (var r = split * p.rows + lid; r < end; r += 64u) {
        let oh = r % p.out_h;
        let od = (r / p.out_h) % p.out_d;
        let n = r / (p.out_h * p.out_d);
        let xn = n * p.c_in * p.in_d * p.in_h * p.in_w;
        let yrow = n * p.c_out * ovol + (od * p.out_h + oh) * p.out_w;
        for (var ow = 0u; ow < p.out_w; ow++) {
            let xv = x_columns(c1, xn, od, oh, ow);
            let xv2 = x_columns(c2, xn, od, oh, ow);
            let yi = yrow + ow;
            for (var c = 0u; c < OC; c++) {
                let d = dy_2[yi + min(co0 + c, co_last) * ovol];
                acc[c] += d * xv;
                acc2[c] += d * xv2;
            }
        }
    }
    let s = reduce_tile(lid, &acc, &acc2);
    let c = co0 + lid / 4u;
    for (var half = 0u; half < 2u; half++) {
        let k = k0 + half * 4u + lid % 4u;
        if ((c < p.c_out) & (k < cols)) {
            // dw[co][ci][tap] is dw[co][k]: k = ci·taps + tap.
            dw[(split * p.c_out + c) * cols + k] = s[half];
        }
    }
}

// backward_weight_samples, for layers where one sample's x fits a uniform block and
// OD·OH·OW is a multiple of 4: one dispatch per sample (p.r0), each adding its sums to dw in
// sample order (ACCUMULATE from the second on). x comes from the sample's 64 KiB window of the
// packed copy (pack_samples) and dy 4 positions at a time as vec4s: a CPU adapter gathers
// per-lane uniform loads and vec4 storage loads at a fraction of the cost of scalar storage
// loads, which bound backward_weight_columns (lavapipe: ~4× and ~2× cheaper per float). A
// workgroup takes 8 columns k = ci·taps + tap and OC output channels; lane l takes the
// sample's positions 4l.., 4l + 256.., and the lanes' sums are added in lane order.
//   1 window (uniform), 2 dy (read, vec4s), 3 dw (read_write)
@group(0) @binding(1) var<uniform> window: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;

// The output position (od, oh, ow) after `o` in a sample.
fn next_position(o: vec3<u32>) -> vec3<u32> {
    if (o.z + 1u < G_OUT_W) {
        return vec3<u32>(o.x, o.y, o.z + 1u);
    }
    if (o.y + 1u < G_OUT_H) {
        return vec3<u32>(o.x, o.y + 1u, 0u);
    }
    return vec3<u32>(o.x + 1u, 0u, 0u);
}

// x of the window at column set `cl` for output o = (od, oh, ow): zero where the tap falls in the
// padding.
fn x_window(cl: Columns, o: vec3<u32>) -> vec4<f32> {
    let t = column_taps(cl, o.x, o.y, o.z);
    let i = t.at;
    let v = vec4<f32>(window[i.x / 4u][i.x % 4u], window[i.y / 4u][i.y % 4u], window[i.z / 4u][i.z % 4u], window[i.w / 4u][i.w % 4u]);
    return select(vec4<f32>(0.0), v, t.ok);
}

// Lanes of a backward_weight_samples workgroup, one per channel of its tile: few, since the
// lanes' sums are added up in workgroup memory once per dispatch, one dispatch per sample.
const SL: u32 = 16u;

@compute @workgroup_size(16)
fn backward_weight_samples(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wid, nwg);
    if (j >= p.total) {
        return;
    }
    let cols = p.c_in * p.k_d * p.k_h * p.k_w;
    let k_tiles = (cols + 7u) / 8u;
    let k0 = (j % k_tiles) * 8u;
    let co0 = (j / k_tiles) * OC;
    let c1 = columns(k0);
    let c2 = columns(k0 + 4u);
    let ovol = p.out_d * p.out_h * p.out_w;
    let co_last = p.c_out - 1u;
    // dy of this sample, in vec4s (ovol is a multiple of 4), and each channel's offset.
    let y4 = (p.r0 * p.c_out * ovol) / 4u;
    let cv = ovol / 4u;
    // One Acc (the OC channels) per column.
    var s0 = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var s1 = s0;
    var s2 = s0;
    var s3 = s0;
    var s4 = s0;
    var s5 = s0;
    var s6 = s0;
    var s7 = s0;
    for (var q = lid * 4u; q < ovol; q += 4u * SL) {
        // The 4 positions (od, oh, ow), each the next one of the last along the sample.
        let o0 = vec3<u32>(q / (p.out_w * p.out_h), (q / p.out_w) % p.out_h, q % p.out_w);
        let o1 = next_position(o0);
        let o2 = next_position(o1);
        let o3 = next_position(o2);
        let xa0 = x_window(c1, o0);
        let xa1 = x_window(c1, o1);
        let xa2 = x_window(c1, o2);
        let xa3 = x_window(c1, o3);
        let xb0 = x_window(c2, o0);
        let xb1 = x_window(c2, o1);
        let xb2 = x_window(c2, o2);
        let xb3 = x_window(c2, o3);
        // dy of the OC channels at the 4 positions: one vec4 a channel.
        let yq = y4 + q / 4u;
        var d: array<vec4<f32>, 16>;
        for (var c = 0u; c < OC; c++) {
            d[c] = dy4[yq + min(co0 + c, co_last) * cv];
        }
        add_column(&s0, &d, vec4<f32>(xa0.x, xa1.x, xa2.x, xa3.x));
        add_column(&s1, &d, vec4<f32>(xa0.y, xa1.y, xa2.y, xa3.y));
        add_column(&s2, &d, vec4<f32>(xa0.z, xa1.z, xa2.z, xa3.z));
        add_column(&s3, &d, vec4<f32>(xa0.w, xa1.w, xa2.w, xa3.w));
        add_column(&s4, &d, vec4<f32>(xb0.x, xb1.x, xb2.x, xb3.x));
        add_column(&s5, &d, vec4<f32>(xb0.y, xb1.y, xb2.y, xb3.y));
        add_column(&s6, &d, vec4<f32>(xb0.z, xb1.z, xb2.z, xb3.z));
        add_column(&s7, &d, vec4<f32>(xb0.w, xb1.w, xb2.w, xb3.w));
    }
    // The lanes' sums, added in lane order: lane c takes channel co0 + c, columns k0..k0 + 7.
    for (var c = 0u; c < OC; c++) {
        lanes[(c * SL + lid) * 2u] = vec4<f32>(acc_at(s0, c), acc_at(s1, c), acc_at(s2, c), acc_at(s3, c));
        lanes[(c * SL + lid) * 2u + 1u] = vec4<f32>(acc_at(s4, c), acc_at(s5, c), acc_at(s6, c), acc_at(s7, c));
    }
    workgroupBarrier();
    for (var c = lid; c < OC; c += SL) {
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        for (var l = 0u; l < SL; l++) {
            lo += lanes[(c * SL + l) * 2u];
            hi += lanes[(c * SL + l) * 2u + 1u];
        }
        let co = co0 + c;
        if (co < p.c_out) {
            for (var t = 0u; t < 8u; t++) {
                let k = k0 + t;
                if (k < cols) {
                    let at = co * cols + k;
                    var v = select(lo[t % 4u], hi[t % 4u], t >= 4u);
                    if (ACCUMULATE) {
                        v += dw[at];
                    }
                    dw[at] = v;
                }
            }
        }
    }
}

// a += (dy · x) for each of the OC channels: d[c] and x hold 4 positions.
fn add_column(a: ptr<function, Acc>, d: ptr<function, array<vec4<f32>, 16>>, x: vec4<f32>) {
    (*a).a0 += vec4<f32>(dot((*d)[0], x), dot((*d)[1], x), dot((*d)[2], x), dot((*d)[3], x));
    (*a).a1 += vec4<f32>(dot((*d)[4], x), dot((*d)[5], x), dot((*d)[6], x), dot((*d)[7], x));
    (*a).a2 += vec4<f32>(dot((*d)[8], x), dot((*d)[9], x), dot((*d)[10], x), dot((*d)[11], x));
    (*a).a3 += vec4<f32>(dot((*d)[12], x), dot((*d)[13], x), dot((*d)[14], x), dot((*d)[15], x));
}

fn acc_at(a: Acc, c: u32) -> f32 {
    switch c / 4u {
        case 0u: { return a.a0[c % 4u]; }
        case 1u: { return a.a1[c % 4u]; }
        case 2u: { return a.a2[c % 4u]; }
        default: { return a.a3[c % 4u]; }
    }
}

// pack_samples: x → one window per sample, p.rows floats apart (a multiple of 64, so that each
// binds as a uniform block), zeros between and after; one invocation per float.
//   1 x (read), 2 packed (write)
@compute @workgroup_size(WG)
fn pack_samples(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let f = thread_index(wid, nwg, lid);
    if (f >= p.total) {
        return;
    }
    let per = p.c_in * p.in_d * p.in_h * p.in_w;
    let n = f / p.rows;
    let i = f % p.rows;
    let ok = (n < p.n) & (i < per);
    packed[f] = select(0.0, w_1[select(0u, n * per + i, ok)], ok);
}

// backward_weight as the forward kernels compute: dy goes into uniform blocks of rows
// (pack_rows), and each invocation accumulates 16 output channels × 4 weight columns
// k = ci·taps + tap over the block's rows (n, od, oh, ow), reading one x value per column and
// row and the 16 dy values of the row from the block at a workgroup-uniform index. One
// dispatch per block, in order; every one after the first adds to dw (ACCUMULATE), so the
// sums keep one order.
// A block's column (r, g) (16 floats) holds dy of output channels g·OC.. at row r0 + r, for
// groups = ⌈CO/OC⌉ columns a row and p.rows rows a block.
fn rows_source(f: u32) -> i32 {
    let groups = (G_C_OUT + OC - 1u) / OC;
    let positions = G_OUT_D * G_OUT_H * G_OUT_W;
    let b = f / (BLOCK * 4u);
    let within = f % (BLOCK * 4u);
    let r = within / (groups * OC);
    let co = within % (groups * OC);
    let row = b * p.rows + r;
    if ((r >= p.rows) | (co >= G_C_OUT) | (row >= p.n * positions)) { return -1; }
    return i32(((row / positions) * G_C_OUT + co) * positions + row % positions);
}

// pack_rows: one invocation per float of all blocks: dy → row blocks.
//   1 dy (read), 2 packed (write)
@compute @workgroup_size(WG)
fn pack_rows(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let f = thread_index(wid, nwg, lid);
    if (f >= p.total) {
        return;
    }
    let s = rows_source(f);
    packed[f] = select(0.0, w_1[max(s, 0)], s >= 0);
}

// Where column k = ci·taps + tap reads x, relative to an output position: its input
// channel's offset and its tap's coordinates times the dilation.
struct Col {
    ci: u32,
    d: u32,
    h: u32,
    w: u32,
}

fn col_of(k: u32) -> Col {
    let taps = G_K_D * G_K_H * G_K_W;
    let tap = k % taps;
    return Col((k / taps) * G_IN_D * G_IN_H * G_IN_W, (tap / (G_K_W * G_K_H)) * G_DIL_D, ((tap / G_K_W) % G_K_H) * G_DIL_H,
               (tap % G_K_W) * G_DIL_W);
}

// x at column c for output position (od, oh, ow) of the sample starting at xn; 0 in the padding.
fn x_col(c: Col, q: Row) -> f32 {
    let zd = q.od * G_S_D + c.d;
    let zh = q.oh * G_S_H + c.h;
    let zw = q.ow * G_S_W + c.w;
    let ok = (zd >= G_P_D) & (zd < G_IN_D + G_P_D) & (zh >= G_P_H) & (zh < G_IN_H + G_P_H) & (zw >= G_P_W) & (zw < G_IN_W + G_P_W);
    return select(0.0, x[select(0u, q.xn + c.ci + ((zd - G_P_D) * G_IN_H + zh - G_P_H) * G_IN_W + zw - G_P_W, ok)], ok);
}

// A row (n, od, oh, ow) of the rows kernels; xn: x's index of sample n.
struct Row {
    od: u32,
    oh: u32,
    ow: u32,
    xn: u32,
}

// The row after q (`vol`: x's floats per sample).
fn next_row(q: Row, vol: u32) -> Row {
    var t = q;
    t.ow++;
    if (t.ow == G_OUT_W) {
        t.ow = 0u;
        t.oh++;
        if (t.oh == G_OUT_H) {
            t.oh = 0u;
            t.od++;
            if (t.od == G_OUT_D) {
                t.od = 0u;
                t.xn += vol;
            }
        }
    }
    return t;
}

// Adds x at a row's 4 columns (v) times the row's dy of group g (block column `at` + g) to s
// and, where WIDE, of group g + 1 to hi.
fn mac_rows(s: ptr<function, Sums>, hi: ptr<function, Sums>, v: vec4<f32>, at: u32, g: u32, lane: u32) {
    let groups = (G_C_OUT + OC - 1u) / OC;
    mac4(s, v, block_column(at + g, lane));
    if (WIDE) {
        mac4(hi, v, block_column(at + min(g + 1u, groups - 1u), lane));
    }
}

// dw[co·cols + k] = (dw[…] if ACCUMULATE) + v, for the channels of group g that exist.
fn put_dw(g: u32, k: u32, cols: u32, acc: Acc) {
    for (var j = 0u; j < OC; j++) {
        let co = g * OC + j;
        if (co < G_C_OUT) {
            var v = acc_at(acc, j);
            let at = co * cols + k;
            if (ACCUMULATE) {
                v += dw[at];
            }
            dw[at] = v;
        }
    }
}

// put_dw for the columns k.. k + 3 that exist.
fn put_columns(g: u32, k: u32, cols: u32, s: Sums) {
    put_dw(g, k, cols, s.a);
    if (k + 1u < cols) {
        put_dw(g, k + 1u, cols, s.b);
    }
    if (k + 2u < cols) {
        put_dw(g, k + 2u, cols, s.c);
    }
    if (k + 3u < cols) {
        put_dw(g, k + 3u, cols, s.d);
    }
}

// backward_weight_rows: one invocation per (4 columns, group of OC output channels; two
// groups where WIDE), for
// the block's p.r_n rows from row p.r0 on.
//   1 x (read), 2 block (uniform), 3 dw (read_write)
@compute @workgroup_size(WG)
fn backward_weight_rows(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    backward_weight_rows_at(thread_index(wid, nwg, lid), 0u);
}

// backward_weight_rows' invocation i (`lane`: see block_column). The group g is the slowest
// index, each group's invocations padded to a multiple of ROW_ALIGN, so that a subgroup
// shares g (the block column it reads).
fn backward_weight_rows_at(i: u32, lane: u32) {
    let groups = (G_C_OUT + OC - 1u) / OC;
    // WIDE: groups g and g + 1 an invocation (the second the next column of the row block).
    let units = select(groups, (groups + 1u) / 2u, WIDE);
    let cols = G_C_IN * G_K_D * G_K_H * G_K_W;
    let per_group = (cols + 3u) / 4u;
    let padded = (per_group + ROW_ALIGN - 1u) / ROW_ALIGN * ROW_ALIGN;
    let count = padded * units;
    // Lanes past the end or in a group's padding repeat an invocation (their sums are not
    // written), so that every lane stays active.
    let t = min(i, count - 1u);
    let g = select(t / padded, 2u * (t / padded), WIDE);
    let k = min(t % padded, per_group - 1u) * 4u;
    let c1 = col_of(k);
    let c2 = col_of(min(k + 1u, cols - 1u));
    let c3 = col_of(min(k + 2u, cols - 1u));
    let c4 = col_of(min(k + 3u, cols - 1u));
    let positions = G_OUT_D * G_OUT_H * G_OUT_W;
    let vol = G_C_IN * G_IN_D * G_IN_H * G_IN_W;
    let first = p.r0 % positions;
    var q = Row(first / (G_OUT_W * G_OUT_H), (first / G_OUT_W) % G_OUT_H, first % G_OUT_W, (p.r0 / positions) * vol);
    // One Acc per column k.. k + 3 (mac4's four "positions"); hi: group g + 1's (a last odd
    // group's pair reads its own column again and writes nothing).
    var s = zero_sums();
    var hi = s;
    // Two rows an iteration, their loads first: their products then run back to back
    // (lavapipe: fewer masked writes of the sums).
    var r = 0u;
    for (; r + 1u < p.r_n; r += 2u) {
        let v = vec4<f32>(x_col(c1, q), x_col(c2, q), x_col(c3, q), x_col(c4, q));
        q = next_row(q, vol);
        let u = vec4<f32>(x_col(c1, q), x_col(c2, q), x_col(c3, q), x_col(c4, q));
        q = next_row(q, vol);
        mac_rows(&s, &hi, v, r * groups, g, lane);
        mac_rows(&s, &hi, u, (r + 1u) * groups, g, lane);
    }
    if (r < p.r_n) {
        mac_rows(&s, &hi, vec4<f32>(x_col(c1, q), x_col(c2, q), x_col(c3, q), x_col(c4, q)), r * groups, g, lane);
    }
    if ((i < count) & (t % padded < per_group)) {
        put_columns(g, k, cols, s);
        if (WIDE) {
            put_columns(g + 1u, k, cols, hi);
        }
    }
}

@compute @workgroup_size(WG)
fn backward_weight_sum(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    // p.rows holds the number of splits here.
    var s = 0.0;
    for (var k = 0u; k < p.rows; k++) {
        s += part_in[k * p.total + i];
    }
    dw_sum[i] = s;
}
