// Optimizer updates with torch.optim's rules (single-tensor code of sgd.py and adam.py, no
// amsgrad, no maximize): one dispatch per step over ONE flat parameter buffer.
//
// Layouts: param, grad, momentum_buf, exp_avg, exp_avg_sq all hold `n` f32 values, element i
// of each belonging to the same scalar parameter (the model's flat buffers, tensors in any
// order; alignment padding between tensors holds zeros in param and grad and stays zero).
// Invocation: one per element; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
// Each invocation reads and writes only element i of each buffer: no races, no atomics.
//
// Constant hyper-parameters are in the uniform `p`. Values that change per step are in a
// 4-float storage buffer (binding 1) that the host rewrites before each submit, because a
// compiled plan's uniforms are written once (src/optim.rs, `UpdateRule::hyper`):
//   SGD  (SgdHyper):  [lr, first, 0, 0]   first = 1.0 on step t = 1 (the momentum buffer
//                                         starts as the gradient), else 0.0
//   Adam (AdamHyper): [lr, step_size, bc2_sqrt, decay]
//                     step_size = lr / (1 − β1^t), bc2_sqrt = √(1 − β2^t),
//                     decay = 1 − lr·weight_decay for AdamW, 1 for Adam
// These are computed on the host in f64 (as PyTorch computes them in Python floats) and
// rounded once to f32; in f32 on the GPU, 1 − 0.999^t alone would lose 4 digits.
//
// sgd:          binding 1 sgd_h (read), 2 param (read_write), 3 grad (read)
//               g = grad + wd·param;  param += −lr·g                      (momentum = 0)
// sgd_momentum: binding 1 sgd_h (read), 2 param (read_write), 3 grad (read),
//               4 momentum_buf (read_write)
//               g = grad + wd·param
//               buf = first ? g : buf·momentum + (1 − dampening)·g
//               u = nesterov ? g + momentum·buf : buf;  param += −lr·u
// adam:         binding 1 adam_h (read), 2 param (read_write), 3 grad (read),
//               4 exp_avg (read_write), 5 exp_avg_sq (read_write)
//               param ·= decay (AdamW);  g = grad + wd·param (Adam; wd = 0 for AdamW)
//               exp_avg = lerp(exp_avg, g, 1 − β1);  exp_avg_sq = exp_avg_sq·β2 + (1 − β2)·g·g
//               param += (−step_size · exp_avg) / (√exp_avg_sq / bc2_sqrt + eps)
// The operation order follows PyTorch's CPU kernels (add with alpha, lerp, addcmul, addcdiv)
// so that results agree to the last bits where the hardware rounds as the CPU does.

struct Params {
    n: u32,
    nesterov: u32,
    _pad0: u32,
    _pad1: u32,
    // Added to the gradient (SGD, Adam); 0 for AdamW, whose decay is in adam_h.decay.
    weight_decay: f32,
    momentum: f32,
    one_minus_dampening: f32,
    // The lerp weight 1 − β1, as PyTorch passes it.
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    _pad2: f32,
}

struct SgdHyper {
    lr: f32,
    first: f32,
    _unused0: f32,
    _unused1: f32,
}

struct AdamHyper {
    lr: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decay: f32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> sgd_h: SgdHyper;
@group(0) @binding(1) var<storage, read> adam_h: AdamHyper;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> momentum_buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(5) var<storage, read_write> exp_avg_sq: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let w = param[i];
    let g = grad[i] + p.weight_decay * w;
    param[i] = w + (-sgd_h.lr) * g;
}

@compute @workgroup_size(WG)
fn sgd_momentum(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let w = param[i];
    let g = grad[i] + p.weight_decay * w;
    // On the first step PyTorch creates the buffer as a copy of the gradient (no dampening);
    // `select` also ignores whatever the buffer held before, as PyTorch has none then.
    let buf = select(momentum_buf[i] * p.momentum + p.one_minus_dampening * g, g, sgd_h.first != 0.0);
    momentum_buf[i] = buf;
    let u = select(buf, g + p.momentum * buf, p.nesterov != 0u);
    param[i] = w + (-sgd_h.lr) * u;
}

// PyTorch's lerp: two formulas, picked by the weight, each exact at its own end.
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    if (abs(t) < 0.5) {
        return a + t * (b - a);
    }
    return b - (b - a) * (1.0 - t);
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    // AdamW decays the parameter before anything else (decay = 1 for Adam: exact).
    let w = param[i] * adam_h.decay;
    let g = grad[i] + p.weight_decay * w;
    let m = lerp(exp_avg[i], g, p.one_minus_beta1);
    let v = exp_avg_sq[i] * p.beta2 + p.one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) / adam_h.bc2_sqrt + p.eps;
    param[i] = w + (-adam_h.step_size) * m / denom;
}
