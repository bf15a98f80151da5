// conv3d's weight-gradient kernels, composed onto tiled.wgsl (whose block columns and sums the
// rows kernels share; layouts and geometry: geometry.wgsl).
//
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
//   backward_weight_rows, pack_rows  dy packed into uniform row blocks, one dispatch a block
//                        (see below)

// stubs: begin (tiled.wgsl's and geometry.wgsl's declarations; dropped by the composition)
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
struct Acc {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
}
struct Sums {
    a: Acc,
    b: Acc,
    c: Acc,
    d: Acc,
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
const OC: u32 = 16u;
const BLOCK: u32 = 4096u;
@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> dy: array<act>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;
override WIDE: bool = false;
override ACCUMULATE: bool = false;
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { var r: u32; return r; }
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { var r: u32; return r; }
fn block_column(col: u32, lane: u32) -> array<vec4<f32>, 4> { var r: array<vec4<f32>, 4>; return r; }
fn zero_sums() -> Sums { var r: Sums; return r; }
fn mac4(s: ptr<function, Sums>, v: vec4<f32>, w: array<vec4<f32>, 4>) {}
// stubs: end

// Input channels per vec4 of backward_weight_tiled, two vec4s a workgroup (CI4 in src/layers/conv3d/weight.rs).
const CI4: u32 = 4u;

// Slot 2: dy for backward_weight_tiled and _columns; slot 3: dw, or the per-split sums.
@group(0) @binding(2) var<storage, read> dy_2: array<act>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(1) var<storage, read> part_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw_sum: array<f32>;

var<workgroup> lanes: array<vec4<f32>, 1024>;

// backward_weight_rows' subgroup kernel pads each group of output channels to a multiple of
// ROW_ALIGN invocations (see backward_weight_rows_at).
override ROW_ALIGN: u32 = 1u;

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
            let xv = select(vec4<f32>(0.0), vec4<f32>(f32(x[xi + xo.x]), f32(x[xi + xo.y]), f32(x[xi + xo.z]), f32(x[xi + xo.w])), ok);
            let xv2 = select(vec4<f32>(0.0), vec4<f32>(f32(x[xi + xo2.x]), f32(x[xi + xo2.y]), f32(x[xi + xo2.z]), f32(x[xi + xo2.w])), ok);
            let yi = yrow + ow;
            for (var c = 0u; c < OC; c++) {
                let d = f32(dy_2[yi + min(co0 + c, co_last) * ovol]);
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
    return select(vec4<f32>(0.0), vec4<f32>(f32(x[i.x]), f32(x[i.y]), f32(x[i.z]), f32(x[i.w])), t.ok);
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
                let d = f32(dy_2[yi + min(co0 + c, co_last) * ovol]);
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
// window is f32 whatever the activations' type (a uniform array's stride is 16 bytes): x in
// place where x is f32, else pack_samples' f32 copy.
@group(0) @binding(1) var<uniform> window: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<act>>;

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
            d[c] = vec4<f32>(dy4[yq + min(co0 + c, co_last) * cv]);
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
    packed[f] = select(0.0, f32(x[select(0u, n * per + i, ok)]), ok);
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
    packed[f] = select(0.0, f32(dy[max(s, 0)]), s >= 0);
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
    return select(0.0, f32(x[select(0u, q.xn + c.ci + ((zd - G_P_D) * G_IN_H + zh - G_P_H) * G_IN_W + zw - G_P_W, ok)]), ok);
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

