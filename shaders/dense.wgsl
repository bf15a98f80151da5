// Dense (fully connected, PyTorch's nn.Linear): y = x · weightᵀ + bias — forward and backward.
//
// Layouts (row-major, PyTorch's):
//   x, dx        [n, in_f]
//   weight, dweight [out_f, in_f]
//   bias, dbias  [out_f]
//   y, dy        [n, out_f]
// Element-wise entry points run one invocation per output element on a 2D grid of workgroups
// (linear id = wid.y * nwg.x + wid.x) and gather over their contributors in a fixed order, so
// results are bit-reproducible (no atomics).
//
// forward:         binding 1 x (read), 2 weight (read), 3 y (write), 4 bias (read)
//                  y[s, o] = Σ_k x[s, k] · weight[o, k] + bias[o]      (one per y element)
// forward_no_bias: binding 1 x (read), 2 weight (read), 3 y (write)    the same without bias
// backward_input:  binding 1 dy (read), 2 weight (read), 3 dx (write)
//                  dx[s, k] = Σ_o dy[s, o] · weight[o, k]              (one per dx element)
// backward_weight: binding 1 dy (read), 2 x (read), 3 dweight (write)
//                  dweight[o, k] = Σ_s dy[s, o] · x[s, k]              (one per dweight element)
// backward_bias:   binding 1 dy (read), 2 dbias (write)
//                  dbias[o] = Σ_s dy[s, o]; one workgroup of 256 per output feature o, a
//                  strided partial sum per thread, then a tree reduction in workgroup memory.

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    n: u32,
    in_f: u32,
    out_f: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@group(0) @binding(1) var<storage, read> dy: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;

@group(0) @binding(2) var<storage, read> x_in: array<act>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;

@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Σ_k x[s, k] · weight[o, k], shared by both forward entry points.
fn row_dot(s: u32, o: u32) -> f32 {
    let xs = s * p.in_f;
    let wo = o * p.in_f;
    var acc = 0.0;
    for (var k = 0u; k < p.in_f; k++) {
        acc += f32(x[xs + k]) * weight[wo + k];
    }
    return acc;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n * p.out_f) {
        return;
    }
    let o = i % p.out_f;
    y[i] = act(row_dot(i / p.out_f, o) + bias[o]);
}

@compute @workgroup_size(WG)
fn forward_no_bias(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n * p.out_f) {
        return;
    }
    y[i] = act(row_dot(i / p.out_f, i % p.out_f));
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n * p.in_f) {
        return;
    }
    let s = i / p.in_f;
    let k = i % p.in_f;
    var acc = 0.0;
    for (var o = 0u; o < p.out_f; o++) {
        acc += f32(dy[s * p.out_f + o]) * weight[o * p.in_f + k];
    }
    dx[i] = act(acc);
}

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.out_f * p.in_f) {
        return;
    }
    let o = i / p.in_f;
    let k = i % p.in_f;
    var acc = 0.0;
    for (var s = 0u; s < p.n; s++) {
        acc += f32(dy[s * p.out_f + o]) * f32(x_in[s * p.in_f + k]);
    }
    dweight[i] = acc;
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    // Uniform across the workgroup, so returning before the barriers is allowed.
    if (o >= p.out_f) {
        return;
    }
    var acc = 0.0;
    for (var s = lid; s < p.n; s += 256u) {
        acc += f32(dy[s * p.out_f + o]);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        dbias[o] = partial[0];
    }
}
