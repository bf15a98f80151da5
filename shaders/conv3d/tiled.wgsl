// conv3d's tiled kernels of forward and backward_input, composed onto geometry.wgsl (layouts,
// geometry). The weight gradient's kernels (weight.wgsl) and the subgroup kernels
// (subgroups.wgsl) build on these.
//
// A CPU adapter such as lavapipe runs 8 invocations as one SIMD vector and pays
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

// stubs: begin (geometry.wgsl's declarations; dropped by the composition)
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
    // Only the tiled entry points read these (tiled.wgsl, weight.wgsl): the first channel of the invocation's
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
alias act = f32;
@group(0) @binding(0) var<uniform> p: Params;
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
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { var r: u32; return r; }
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 { var r: u32; return r; }
// stubs: end

// Channels per invocation of the tiled kernels (OC_TILE in src/layers/conv3d/tiled.rs).
const OC: u32 = 16u;
// vec4s in one uniform block: 64 KiB, the binding size every WebGPU adapter supports.
const BLOCK: u32 = 4096u;

// Slot 1: x for forward_tiled, dy for backward_input_tiled; slot 3: their outputs.
@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> dy: array<act>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;
@group(0) @binding(2) var<uniform> block: array<vec4<f32>, 4096>;
// The wide kernels' second block: the same columns for the next OC channels (see WIDE).
@group(0) @binding(4) var<uniform> block2: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;
@group(0) @binding(1) var<storage, read> w_1: array<f32>;
@group(0) @binding(1) var<storage, read> b_1: array<f32>;
@group(0) @binding(1) var<storage, read_write> out_1: array<act>;

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
// (subgroups.wgsl replaces these two functions there), else unused.
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
            s += f32(y[at]);
        }
        y[at] = act(s);
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
    return select(0.0, f32(x[select(0u, row + zw - G_P_W + pos_n(k) * G_C_IN * vol, ok)]), ok);
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
        out_1[i] = act(0.0);
    }
}

// dx[at] += v if input channel c0 + j exists.
fn add1(at: u32, j: u32, v: f32) {
    if (p.c0 + j < G_C_IN) {
        dx[at] = act(f32(dx[at]) + v);
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
    var v = vec4<f32>(f32(dy[yi]), f32(dy[yi + off.y]), 0.0, 0.0);
    if (four()) {
        v.z = f32(dy[yi + off.z]);
        v.w = f32(dy[yi + off.w]);
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

