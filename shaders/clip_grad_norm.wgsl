// Gradient clipping by the total 2-norm (torch.nn.utils.clip_grad_norm_) over the ONE flat
// gradient buffer g of n f32s (the alignment gaps between tensors hold zeros and add nothing):
//   norm = sqrt(Σ_i g_i²),  coef = min(1, max_norm / (norm + 1e-6)),  g_i ← g_i · coef.
// Three dispatches with a fixed summation order and no atomics, so a run stays
// bit-reproducible on one adapter.
//
// partial: binding 1 g (read), 2 partials (write, [groups])
//          `groups` workgroups of 256: thread t of group w sums g_i² over
//          i = w·256 + t + k·groups·256, k = 0, 1, ... in order, then a tree reduction in
//          workgroup memory → partials[w].
// finish:  binding 1 partials (read, [groups]), 2 coef (write, [2]: coef, norm)
//          ONE workgroup of 256: thread t sums partials t, t + 256, ... in order, then a tree
//          reduction; thread 0 writes coef and norm.
// scale:   binding 1 coef (read), 2 g (read_write)
//          one invocation per element (2D grid, linear id = wid.y * nwg.x + wid.x):
//          g_i ← g_i · coef[0].

struct Params {
    n: u32,
    groups: u32,
    max_norm: f32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> g_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

@group(0) @binding(1) var<storage, read> partials_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef: array<f32>;

@group(0) @binding(1) var<storage, read> coef_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;

var<workgroup> acc: array<f32, 256>;

// Sums acc[0..256] into acc[0], halving the active threads each round (a fixed order).
fn tree_sum(t: u32) {
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (t < s) {
            acc[t] += acc[t + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    var sum = 0.0;
    let stride = p.groups * 256u;
    for (var i = wid.x * 256u + t; i < p.n; i += stride) {
        let v = g_in[i];
        sum += v * v;
    }
    acc[t] = sum;
    tree_sum(t);
    if (t == 0u) {
        partials[wid.x] = acc[0];
    }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) t: u32) {
    var sum = 0.0;
    for (var i = t; i < p.groups; i += 256u) {
        sum += partials_in[i];
    }
    acc[t] = sum;
    tree_sum(t);
    if (t == 0u) {
        let norm = sqrt(acc[0]);
        coef[0] = min(1.0, p.max_norm / (norm + 1e-6));
        coef[1] = norm;
    }
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    g[i] = g[i] * coef_in[0];
}
