// Batch normalisation (PyTorch's BatchNorm1d/2d/3d): training forward with batch statistics
// and running-statistics update, eval forward with running statistics, and the training backward.
//
// Layout: x, y, dy, dx are (N, C, S) flat, element (n, c, s) at (n * C + c) * S + s, where S is
// 1 for (N, C) input or D*H*W for (N, C, D, H, W). Per-channel vectors (gamma, beta,
// running_mean, running_var, mean, invstd, dgamma, dbeta) hold C values. A channel's
// statistics are over M = N * S values.
//
// Invocations:
//   stats, backward_params: one workgroup of 256 per channel c (linear group id
//     wid.y * nwg.x + wid.x), a strided loop over the channel's M values and a tree reduction.
//   forward_train, forward_eval, backward_input: one invocation per element of x (linear
//     index (wid.y * nwg.x + wid.x) * WG + lid).
//
// stats:           1 x (read), 2 mean (write), 3 invstd (write),
//                  4 running_mean (read_write), 5 running_var (read_write)
//                  mean = Σx / M (summed about the channel's first value, so that a large
//                  offset does not swamp the sum), corrected in the second pass by the mean of
//                  d = x − mean; var = (Σd² − (Σd)²/M) / M (biased);
//                  invstd = 1 / sqrt(var + eps);
//                  running_mean = (1 − momentum) · running_mean + momentum · mean;
//                  running_var  = (1 − momentum) · running_var + momentum · var · M / (M − 1).
// forward_train:   1 x, 2 mean, 3 invstd, 4 gamma, 5 beta (read), 6 y (write)
//                  y = (x − mean) · invstd · gamma + beta.
// forward_eval:    1 x, 2 running_mean, 3 running_var, 4 gamma, 5 beta (read), 6 y (write)
//                  y = (x − running_mean) / sqrt(running_var + eps) · gamma + beta.
// backward_params: 1 x, 2 mean, 3 invstd, 4 dy (read), 5 dgamma, 6 dbeta (write)
//                  with xhat = (x − mean) · invstd: dgamma = Σ dy · xhat, dbeta = Σ dy.
// backward_input:  1 x, 2 mean, 3 invstd, 4 dy, 5 dgamma, 6 dbeta, 7 gamma (read), 8 dx (write)
//                  dx = gamma · invstd · (dy − dbeta / M − xhat · dgamma / M), using the sums
//                  that backward_params wrote (so it runs after backward_params).

struct Params {
    // N, C, S and the element count N * C * S.
    n: u32,
    c: u32,
    s: u32,
    total: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

override WG: u32 = 64u;
const RED: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<act>;

// stats
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

// forward_train, backward_params, backward_input: the statistics that stats saved.
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> invstd: array<f32>;

// forward_eval
@group(0) @binding(2) var<storage, read> running_mean_in: array<f32>;
@group(0) @binding(3) var<storage, read> running_var_in: array<f32>;

// forward_train, forward_eval
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<act>;

// backward_params, backward_input
@group(0) @binding(4) var<storage, read> dy: array<act>;
@group(0) @binding(5) var<storage, read_write> dgamma_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(5) var<storage, read> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read> gamma_b: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<act>;

var<workgroup> red: array<f32, RED>;

// Sum of v over the workgroup, returned to every invocation. Call from uniform control flow.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = RED / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            red[lid] = red[lid] + red[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    // Everyone has read the result before a following call overwrites red.
    workgroupBarrier();
    return total;
}

// Flat index of the i-th value (i < M) of channel c.
fn channel_index(c: u32, i: u32) -> u32 {
    let n = i / p.s;
    return (n * p.c + c) * p.s + (i - n * p.s);
}

fn element_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The channel of flat element index i.
fn channel_of(i: u32) -> u32 {
    return (i / p.s) % p.c;
}

@compute @workgroup_size(RED)
fn stats(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    if (c >= p.c) {
        return;
    }
    let m = p.n * p.s;
    // Summing x − x0 (x0 the channel's first value) instead of x keeps the partial sums small
    // when all values share a large offset; those differences are exact in f32 when x and x0
    // are within a factor of two of each other.
    let x0 = f32(x[channel_index(c, 0u)]);
    var acc = 0.0;
    for (var i = lid; i < m; i = i + RED) {
        acc = acc + (f32(x[channel_index(c, i)]) - x0);
    }
    let mu0 = x0 + workgroup_sum(lid, acc) / f32(m);

    // Where the values spread around a mean far from x0, the first pass's partial sums reach
    // ~M·|mean − x0| and its rounding ~u·|mean − x0| (u = 2⁻²⁴), which can exceed the mean
    // itself; the deviations d from that first estimate sum to ~0, so their mean corrects it
    // to about an ulp of the mean (the corrected two-pass algorithm: Chan, Golub & LeVeque).
    var acc1 = 0.0;
    var acc2 = 0.0;
    for (var i = lid; i < m; i = i + RED) {
        let d = f32(x[channel_index(c, i)]) - mu0;
        acc1 = acc1 + d;
        acc2 = acc2 + d * d;
    }
    let sd = workgroup_sum(lid, acc1);
    let mu = mu0 + sd / f32(m);
    let ss = max(workgroup_sum(lid, acc2) - sd * sd / f32(m), 0.0);

    if (lid == 0u) {
        let var_biased = ss / f32(m);
        mean_out[c] = mu;
        invstd_out[c] = 1.0 / sqrt(var_biased + p.eps);
        // M > 1 here: the Rust side refuses training with one value per channel, as PyTorch.
        let var_unbiased = ss / f32(m - 1u);
        running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mu;
        running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * var_unbiased;
    }
}

@compute @workgroup_size(WG)
fn forward_train(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = channel_of(i);
    y[i] = act((f32(x[i]) - mean[c]) * invstd[c] * gamma[c] + beta[c]);
}

@compute @workgroup_size(WG)
fn forward_eval(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = channel_of(i);
    let k = 1.0 / sqrt(running_var_in[c] + p.eps);
    y[i] = act((f32(x[i]) - running_mean_in[c]) * k * gamma[c] + beta[c]);
}

@compute @workgroup_size(RED)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let c = wid.y * nwg.x + wid.x;
    if (c >= p.c) {
        return;
    }
    let m = p.n * p.s;
    let mu = mean[c];
    var acc_dy = 0.0;
    var acc_dyx = 0.0;
    for (var i = lid; i < m; i = i + RED) {
        let j = channel_index(c, i);
        let g = f32(dy[j]);
        acc_dy = acc_dy + g;
        acc_dyx = acc_dyx + g * (f32(x[j]) - mu);
    }
    let sum_dy = workgroup_sum(lid, acc_dy);
    let sum_dyx = workgroup_sum(lid, acc_dyx);
    if (lid == 0u) {
        // invstd is a common factor of every xhat, so it multiplies the sum once.
        dgamma_out[c] = sum_dyx * invstd[c];
        dbeta_out[c] = sum_dy;
    }
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let c = channel_of(i);
    let m = f32(p.n * p.s);
    let k = invstd[c];
    let xhat = (f32(x[i]) - mean[c]) * k;
    dx[i] = act(gamma_b[c] * k * (f32(dy[i]) - dbeta[c] / m - xhat * (dgamma[c] / m)));
}
