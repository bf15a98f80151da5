// conv3d's direct kernels: forward, and the gradients of input and bias, for every geometry,
// with nothing but storage buffers (the kernels of more taps than a uniform block holds; the
// tiled kernels serve every other convolution, and backward_bias every one). Layouts and the
// geometry: geometry.wgsl, onto which this file is composed.
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
//   backward_bias    one workgroup of 256 per output channel, reducing dy over N and positions
//                    1 dy (read), 2 db (write); backward_bias4 the same reading vec4s (output
//                    positions a multiple of 4)


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
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { var r: u32; return r; }
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { var r: u32; return r; }
fn x_index(n: u32, ci: u32, id: u32, ih: u32, iw: u32) -> u32 { var r: u32; return r; }
fn w_index(co: u32, ci: u32, kd: u32, kh: u32, kw: u32) -> u32 { var r: u32; return r; }
fn y_index(n: u32, co: u32, od: u32, oh: u32, ow: u32) -> u32 { var r: u32; return r; }
fn in_pos(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 { var r: u32; return r; }
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 { var r: u32; return r; }
// stubs: end

// Threads per workgroup of the reductions; the size of `partial`.
const RED: u32 = 256u;

// Slot 1: x for forward, dy for backward_input and backward_bias.
@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> dy: array<act>;
// Slot 2: w for forward and backward_input, db for backward_bias.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
// Slot 3: the output of each pass.
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;
// Slot 4: the bias, only for forward_bias.
@group(0) @binding(4) var<storage, read> b: array<f32>;

var<workgroup> partial: array<f32, RED>;

// Output channels per forward invocation (mirrored by CO_TILE in src/layers/conv3d/direct.rs): each
// x value loaded and each index computed serves CO_TILE products, which is what a CPU
// adapter's time goes into.
const CO_TILE: u32 = 4u;
// Input channels per backward_input invocation (CI_TILE in src/layers/conv3d/direct.rs).
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
                    acc += f32(x[xi]) * wv;
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
            y[y_index(r.n, co, r.od, r.oh, r.ow)] = act(r.acc[j]);
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
            y[y_index(r.n, co, r.od, r.oh, r.ow)] = act(r.acc[j] + b[co]);
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
    // CI_TILE input channels per invocation (mirrored in src/layers/conv3d/direct.rs): each dy value
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
                    acc += f32(dy[yi]) * wv;
                    yi += y_co;
                    wi += w_co;
                }
            }
        }
    }
    for (var j = 0u; j < CI_TILE; j++) {
        let ci = ci0 + j;
        if (ci < p.c_in) {
            dx[x_index(n, ci, id, ih, iw)] = act(acc[j]);
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
            acc += f32(dy[base + m]);
        }
    }
    let sum = workgroup_sum(lid, acc);
    if (lid == 0u) {
        db[co] = sum;
    }
}

// backward_bias where the output positions are a multiple of 4: dy read as vec4s (a CPU adapter
// pays per storage load, whatever its width: lavapipe ~2× faster).
@group(0) @binding(1) var<storage, read> dy4_1: array<vec4<act>>;

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
            acc += vec4<f32>(dy4_1[base + m]);
        }
    }
    let sum = workgroup_sum(lid, (acc.x + acc.y) + (acc.z + acc.w));
    if (lid == 0u) {
        db[co] = sum;
    }
}

