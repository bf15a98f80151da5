// Element-wise activations: relu, leaky_relu, sigmoid, tanh — forward and backward.
//
// Layout: any tensor, flat; x, y, dy, dx all hold `n` act values in the same order.
// Invocation: one per element, or (the *4 entry points, when n is a multiple of 4) one per
// four elements read and written as vec4s — a CPU adapter pays per load instruction, so this
// is ~4× fewer loads; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
// The pipeline constant KIND selects the function: 0 relu, 1 leaky_relu (p.slope), 2 sigmoid,
// 3 tanh. A constant, not a parameter: a CPU adapter would evaluate every case of a switch.
//
// forward, forward4:   binding 1 x (read), binding 2 y (write)            y = f(x)
// backward, backward4: binding 1 x, binding 2 y, binding 3 dy (read), binding 4 dx (write)
//                      relu/leaky use x (as PyTorch does), sigmoid/tanh use y.
// p.n counts the elements (forward, backward) or the vec4s (forward4, backward4).

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    n: u32,
    slope: f32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;
override KIND: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<act>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;
@group(0) @binding(2) var<storage, read> y_in: array<act>;
@group(0) @binding(3) var<storage, read> dy: array<act>;
@group(0) @binding(4) var<storage, read_write> dx: array<act>;

@group(0) @binding(1) var<storage, read> x4: array<vec4<act>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<act>>;
@group(0) @binding(2) var<storage, read> y4_in: array<vec4<act>>;
@group(0) @binding(3) var<storage, read> dy4: array<vec4<act>>;
@group(0) @binding(4) var<storage, read_write> dx4: array<vec4<act>>;

// f on four values at once (a scalar is the same function on a splat).
fn f4(v: vec4<f32>) -> vec4<f32> {
    switch KIND {
        case 0u: { return select(vec4<f32>(0.0), v, v > vec4<f32>(0.0)); }
        case 1u: { return select(v * p.slope, v, v > vec4<f32>(0.0)); }
        case 2u: {
            // e = exp(−|v|) ≤ 1 never overflows: σ(v) = 1/(1+e) for v ≥ 0, e/(1+e) below.
            let e = exp(-abs(v));
            return select(e, vec4<f32>(1.0), v >= vec4<f32>(0.0)) / (1.0 + e);
        }
        default: {
            // Some backends' tanh returns NaN for large |v|; tanh(±15) is ±1 in f32 already.
            return tanh(clamp(v, vec4<f32>(-15.0), vec4<f32>(15.0)));
        }
    }
}

// dx from dy, and x (relu, leaky_relu) or y (sigmoid, tanh).
fn df4(g: vec4<f32>, xv: vec4<f32>, yv: vec4<f32>) -> vec4<f32> {
    switch KIND {
        case 0u: { return select(vec4<f32>(0.0), g, xv > vec4<f32>(0.0)); }
        case 1u: { return select(g * p.slope, g, xv > vec4<f32>(0.0)); }
        case 2u: { return g * yv * (1.0 - yv); }
        default: { return g * (1.0 - yv * yv); }
    }
}

// Which of x and y the backward pass reads (a pipeline constant, so the other is not loaded).
override USES_X: bool = KIND < 2u;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y[i] = act(f4(vec4<f32>(f32(x[i]))).x);
    }
}

@compute @workgroup_size(WG)
fn forward4(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y4[i] = vec4<act>(f4(vec4<f32>(x4[i])));
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        var xv = 0.0;
        var yv = 0.0;
        if (USES_X) {
            xv = f32(x[i]);
        } else {
            yv = f32(y_in[i]);
        }
        dx[i] = act(df4(vec4<f32>(f32(dy[i])), vec4<f32>(xv), vec4<f32>(yv)).x);
    }
}

@compute @workgroup_size(WG)
fn backward4(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        var xv = vec4<f32>(0.0);
        var yv = vec4<f32>(0.0);
        if (USES_X) {
            xv = vec4<f32>(x4[i]);
        } else {
            yv = vec4<f32>(y4_in[i]);
        }
        dx4[i] = vec4<act>(df4(vec4<f32>(dy4[i]), xv, yv));
    }
}
