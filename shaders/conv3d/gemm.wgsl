// conv3d's implicit-GEMM kernels: each pass as one matrix product C[M, N] = Σ_k A[m, k]·B[k, n]
// whose operands are read in place from x, w and dy (no im2col copy), for every stride, padding
// and dilation. Layouts and the geometry (the pipeline constants G_*): geometry.wgsl, onto
// which this file is composed.
//
//   forward          M = N·OD·OH·OW output positions, N = CO, K = CI·taps
//                    A[m, (ci, t)] = x at position m's tap t (0 in the padding), B[(ci, t), co] = w[co, ci, t]
//   backward_input   M = N·D·H·W input positions, N = CI, K = CO·taps: a gather, no atomics
//                    A[m, (co, t)] = dy[co] at the output position whose tap t reads input
//                    position m (0 where none: off the stride, or outside), B[(co, t), ci] = w[co, ci, t]
//   backward_weight  M = CO, N = CI·taps, K = the output positions of one split of N·OD·OH·OW
//                    A[co, q] = dy[co] at position q, B[q, (ci, t)] = x at position q's tap t;
//                    part[split][co][ci·taps + t] (the host sums the splits in split order, with
//                    weight.wgsl's backward_weight_sum, or writes dw directly from one split)
//
// Entry points (binding 0 is the uniform p; p.total is the number of workgroups):
//   forward_gemm           1 x (read), 2 w (read), 3 y (write)
//   forward_gemm_bias      the same plus 4 b (read), added to each sum
//   backward_input_gemm    1 dy (read), 2 w (read), 3 dx (write)
//   backward_weight_gemm   1 x (read), 2 dy (read), 3 part (write); p.rows = positions per split
//
// One workgroup computes a TM × TN tile of C, in K-steps of TK: its WG = (TM/RM)·(TN/RN)
// invocations stage A's TM×TK and B's TK×TN block in workgroup memory (consecutive invocations
// reading consecutive addresses of x, w or dy where the layout allows), wait, then each adds
// its RM × RN register block of products from there, and they wait again before the next
// K-step. Invocation lid holds rows ty + i·(TM/RM) and columns tx + j·(TN/RN) of the tile
// (ty = lid mod TM/RM): consecutive invocations read consecutive A elements of workgroup
// memory and write consecutive output positions. Each element of C is one invocation's sum
// over k in order, so results are deterministic. The host sets TM, TN, TK, RM, RN and WG (see
// src/layers/conv3d/gemm.rs) with TM·TK and TN·TK at most STAGE, RM·RN at most MAX_ACC,
// RM and RN at most MAX_R; the defaults below are one such configuration.


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
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { var r: u32; return r; }
fn in_pos(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 { var r: u32; return r; }
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 { var r: u32; return r; }
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
// stubs: end

// Slot 1: x for forward and backward_weight, dy for backward_input.
@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> dy_in: array<act>;
// Slot 2: w for forward and backward_input, dy for backward_weight.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<act>;
// Slot 3: the output of each pass.
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
// Slot 4: the bias, only for forward_gemm_bias.
@group(0) @binding(4) var<storage, read> b: array<f32>;

// The tile: TM rows (m) × TN columns (n) of C a workgroup, K-steps of TK, RM × RN sums an
// invocation (mirrored by GemmTile in src/layers/conv3d/gemm.rs).
override TM: u32 = 32u;
override TN: u32 = 32u;
override TK: u32 = 32u;
override RM: u32 = 4u;
override RN: u32 = 4u;

// Floats of each staged block (8 KiB of workgroup memory for both), the register block's
// largest size and its largest side.
const STAGE: u32 = 1024u;
const MAX_ACC: u32 = 32u;
const MAX_R: u32 = 8u;

// A[m0 + r, k0 + kk] at a_tile[kk·TM + r]; B[k0 + kk, n0 + c] at b_tile[kk·TN + c].
var<workgroup> a_tile: array<f32, STAGE>;
var<workgroup> b_tile: array<f32, STAGE>;

fn taps() -> u32 {
    return G_K_D * G_K_H * G_K_W;
}

fn out_volume() -> u32 {
    return G_OUT_D * G_OUT_H * G_OUT_W;
}

fn in_volume() -> u32 {
    return G_IN_D * G_IN_H * G_IN_W;
}

// Where output position q (of N·OD·OH·OW) reads x with column k = ci·taps + t, or none
// (0xffffffff) in the padding.
fn x_at(q: u32, k: u32) -> u32 {
    var s = q;
    let ow = s % G_OUT_W; s = s / G_OUT_W;
    let oh = s % G_OUT_H; s = s / G_OUT_H;
    let od = s % G_OUT_D;
    let n = s / G_OUT_D;
    var t = k;
    let kw = t % G_K_W; t = t / G_K_W;
    let kh = t % G_K_H; t = t / G_K_H;
    let kd = t % G_K_D;
    let ci = t / G_K_D;
    let id = in_pos(od, kd, G_S_D, G_P_D, G_DIL_D, G_IN_D);
    let ih = in_pos(oh, kh, G_S_H, G_P_H, G_DIL_H, G_IN_H);
    let iw = in_pos(ow, kw, G_S_W, G_P_W, G_DIL_W, G_IN_W);
    if ((id == G_IN_D) | (ih == G_IN_H) | (iw == G_IN_W)) {
        return 0xffffffffu;
    }
    return (((n * G_C_IN + ci) * G_IN_D + id) * G_IN_H + ih) * G_IN_W + iw;
}

// Where input position m (of N·D·H·W) finds dy with column k = co·taps + t: dy's element at
// the output position whose tap t reads m, or none (0xffffffff).
fn dy_at(m: u32, k: u32) -> u32 {
    var s = m;
    let iw = s % G_IN_W; s = s / G_IN_W;
    let ih = s % G_IN_H; s = s / G_IN_H;
    let id = s % G_IN_D;
    let n = s / G_IN_D;
    var t = k;
    let kw = t % G_K_W; t = t / G_K_W;
    let kh = t % G_K_H; t = t / G_K_H;
    let kd = t % G_K_D;
    let co = t / G_K_D;
    let od = out_pos(id, kd, G_S_D, G_P_D, G_DIL_D, G_OUT_D);
    let oh = out_pos(ih, kh, G_S_H, G_P_H, G_DIL_H, G_OUT_H);
    let ow = out_pos(iw, kw, G_S_W, G_P_W, G_DIL_W, G_OUT_W);
    if ((od == G_OUT_D) | (oh == G_OUT_H) | (ow == G_OUT_W)) {
        return 0xffffffffu;
    }
    return (((n * G_C_OUT + co) * G_OUT_D + od) * G_OUT_H + oh) * G_OUT_W + ow;
}

// One K-step of products from the staged blocks into the invocation's register block.
fn multiply(ty: u32, tx: u32, acc: ptr<function, array<f32, MAX_ACC>>) {
    let sm = TM / RM;
    let sn = TN / RN;
    for (var kk = 0u; kk < TK; kk++) {
        var a: array<f32, MAX_R>;
        for (var i = 0u; i < RM; i++) {
            a[i] = a_tile[kk * TM + ty + i * sm];
        }
        for (var j = 0u; j < RN; j++) {
            let bv = b_tile[kk * TN + tx + j * sn];
            for (var i = 0u; i < RM; i++) {
                (*acc)[i * RN + j] = fma(a[i], bv, (*acc)[i * RN + j]);
            }
        }
    }
}

// forward's register block for workgroup g: the sums over every (ci, tap) of the tile's
// output positions (rows) and output channels (columns).
fn forward_sums(g: u32, lid: u32) -> array<f32, MAX_ACC> {
    let tiles_n = (G_C_OUT + TN - 1u) / TN;
    let m0 = (g / tiles_n) * TM;
    let n0 = (g % tiles_n) * TN;
    let m_len = p.n * out_volume();
    let k_len = G_C_IN * taps();
    var acc: array<f32, MAX_ACC>;
    for (var k0 = 0u; k0 < k_len; k0 += TK) {
        // A: consecutive invocations take consecutive output positions (x's addresses along W).
        for (var e = lid; e < TM * TK; e += WG) {
            let m = m0 + e % TM;
            let k = k0 + e / TM;
            var v = 0.0;
            if ((m < m_len) & (k < k_len)) {
                let at = x_at(m, k);
                if (at != 0xffffffffu) {
                    v = f32(x[at]);
                }
            }
            a_tile[e] = v;
        }
        // B: consecutive invocations take consecutive (ci, tap) of one output channel (w's
        // addresses).
        for (var e = lid; e < TN * TK; e += WG) {
            let kk = e % TK;
            let c = e / TK;
            var v = 0.0;
            if ((n0 + c < G_C_OUT) & (k0 + kk < k_len)) {
                v = w[(n0 + c) * k_len + k0 + kk];
            }
            b_tile[kk * TN + c] = v;
        }
        workgroupBarrier();
        multiply(lid % (TM / RM), lid / (TM / RM), &acc);
        workgroupBarrier();
    }
    return acc;
}

// Adds the bias to forward's register block (only forward_gemm_bias binds b).
fn add_bias(g: u32, lid: u32, acc: ptr<function, array<f32, MAX_ACC>>) {
    let n0 = (g % ((G_C_OUT + TN - 1u) / TN)) * TN;
    let tx = lid / (TM / RM);
    for (var j = 0u; j < RN; j++) {
        let co = min(n0 + tx + j * (TN / RN), G_C_OUT - 1u);
        let bias = b[co];
        for (var i = 0u; i < RM; i++) {
            (*acc)[i * RN + j] += bias;
        }
    }
}

// Writes forward's register block to y.
fn forward_store(g: u32, lid: u32, acc: array<f32, MAX_ACC>) {
    let tiles_n = (G_C_OUT + TN - 1u) / TN;
    let m0 = (g / tiles_n) * TM;
    let n0 = (g % tiles_n) * TN;
    let m_len = p.n * out_volume();
    let ty = lid % (TM / RM);
    let tx = lid / (TM / RM);
    for (var i = 0u; i < RM; i++) {
        let m = m0 + ty + i * (TM / RM);
        if (m >= m_len) {
            continue;
        }
        let n = m / out_volume();
        let pos = m % out_volume();
        for (var j = 0u; j < RN; j++) {
            let co = n0 + tx + j * (TN / RN);
            if (co < G_C_OUT) {
                y[(n * G_C_OUT + co) * out_volume() + pos] = act(acc[i * RN + j]);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn forward_gemm(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.total) {
        return;
    }
    forward_store(g, lid, forward_sums(g, lid));
}

@compute @workgroup_size(WG)
fn forward_gemm_bias(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.total) {
        return;
    }
    var acc = forward_sums(g, lid);
    add_bias(g, lid, &acc);
    forward_store(g, lid, acc);
}

@compute @workgroup_size(WG)
fn backward_input_gemm(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.total) {
        return;
    }
    let tiles_n = (G_C_IN + TN - 1u) / TN;
    let m0 = (g / tiles_n) * TM;
    let n0 = (g % tiles_n) * TN;
    let m_len = p.n * in_volume();
    let k_len = G_C_OUT * taps();
    var acc: array<f32, MAX_ACC>;
    for (var k0 = 0u; k0 < k_len; k0 += TK) {
        // A: consecutive invocations take consecutive input positions.
        for (var e = lid; e < TM * TK; e += WG) {
            let m = m0 + e % TM;
            let k = k0 + e / TM;
            var v = 0.0;
            if ((m < m_len) & (k < k_len)) {
                let at = dy_at(m, k);
                if (at != 0xffffffffu) {
                    v = f32(dy_in[at]);
                }
            }
            a_tile[e] = v;
        }
        // B[(co, t), ci] = w[co, ci, t]: consecutive invocations take consecutive taps.
        for (var e = lid; e < TN * TK; e += WG) {
            let kk = e % TK;
            let c = e / TK;
            let k = k0 + kk;
            var v = 0.0;
            if ((n0 + c < G_C_IN) & (k < k_len)) {
                let co = k / taps();
                let t = k % taps();
                v = w[(co * G_C_IN + n0 + c) * taps() + t];
            }
            b_tile[kk * TN + c] = v;
        }
        workgroupBarrier();
        multiply(lid % (TM / RM), lid / (TM / RM), &acc);
        workgroupBarrier();
    }
    let ty = lid % (TM / RM);
    let tx = lid / (TM / RM);
    for (var i = 0u; i < RM; i++) {
        let m = m0 + ty + i * (TM / RM);
        if (m >= m_len) {
            continue;
        }
        let n = m / in_volume();
        let pos = m % in_volume();
        for (var j = 0u; j < RN; j++) {
            let ci = n0 + tx + j * (TN / RN);
            if (ci < G_C_IN) {
                dx[(n * G_C_IN + ci) * in_volume() + pos] = act(acc[i * RN + j]);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn backward_weight_gemm(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wid, nwg);
    if (g >= p.total) {
        return;
    }
    let cols = G_C_IN * taps();
    let tiles_n = (cols + TN - 1u) / TN;
    let tiles = ((G_C_OUT + TM - 1u) / TM) * tiles_n;
    let split = g / tiles;
    let m0 = ((g % tiles) / tiles_n) * TM;
    let n0 = ((g % tiles) % tiles_n) * TN;
    let positions = p.n * out_volume();
    let q0 = split * p.rows;
    let q_end = min(q0 + p.rows, positions);
    var acc: array<f32, MAX_ACC>;
    for (var k0 = q0; k0 < q_end; k0 += TK) {
        // A[co, q] = dy: consecutive invocations take consecutive positions of one channel.
        for (var e = lid; e < TM * TK; e += WG) {
            let kk = e % TK;
            let r = e / TK;
            let q = k0 + kk;
            var v = 0.0;
            if ((m0 + r < G_C_OUT) & (q < q_end)) {
                let n = q / out_volume();
                v = f32(dy[(n * G_C_OUT + m0 + r) * out_volume() + q % out_volume()]);
            }
            a_tile[kk * TM + r] = v;
        }
        // B[q, (ci, t)] = x at q's tap t: consecutive invocations take consecutive positions.
        for (var e = lid; e < TN * TK; e += WG) {
            let kk = e % TK;
            let c = e / TK;
            let q = k0 + kk;
            var v = 0.0;
            if ((n0 + c < cols) & (q < q_end)) {
                let at = x_at(q, n0 + c);
                if (at != 0xffffffffu) {
                    v = f32(x[at]);
                }
            }
            b_tile[kk * TN + c] = v;
        }
        workgroupBarrier();
        multiply(lid % (TM / RM), lid / (TM / RM), &acc);
        workgroupBarrier();
    }
    let ty = lid % (TM / RM);
    let tx = lid / (TM / RM);
    let len = G_C_OUT * cols;
    for (var i = 0u; i < RM; i++) {
        let co = m0 + ty + i * (TM / RM);
        for (var j = 0u; j < RN; j++) {
            let c = n0 + tx + j * (TN / RN);
            if ((co < G_C_OUT) & (c < cols)) {
                part[split * len + co * cols + c] = acc[i * RN + j];
            }
        }
    }
}
