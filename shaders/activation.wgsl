// Element-wise activations: relu, leaky_relu, sigmoid, tanh — forward and backward.
//
// Layout: any tensor, flat; x, y, dy, dx all hold `n` f32 values in the same order.
// Invocation: one per element; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
// p.kind selects the function: 0 relu, 1 leaky_relu (p.slope), 2 sigmoid, 3 tanh.
//
// forward:  binding 1 x (read), binding 2 y (write)            y = f(x)
// backward: binding 1 x, binding 2 y, binding 3 dy (read), binding 4 dx (write)
//           relu/leaky use x (as PyTorch does), sigmoid/tanh use y.

struct Params {
    n: u32,
    kind: u32,
    slope: f32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(2) var<storage, read> y_in: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

fn sigmoid(v: f32) -> f32 {
    // Both branches avoid exp of a large positive number.
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

fn tanh_safe(v: f32) -> f32 {
    // Some backends' tanh returns NaN for large |v|; tanh(±15) is ±1 in f32 already.
    return tanh(clamp(v, -15.0, 15.0));
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let v = x[i];
    var r: f32;
    switch p.kind {
        case 0u: { r = select(0.0, v, v > 0.0); }
        case 1u: { r = select(v * p.slope, v, v > 0.0); }
        case 2u: { r = sigmoid(v); }
        default: { r = tanh_safe(v); }
    }
    y[i] = r;
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let g = dy[i];
    var r: f32;
    switch p.kind {
        case 0u: { r = select(0.0, g, x[i] > 0.0); }
        case 1u: { r = select(g * p.slope, g, x[i] > 0.0); }
        case 2u: { let s = y_in[i]; r = g * s * (1.0 - s); }
        default: { let t = y_in[i]; r = g * (1.0 - t * t); }
    }
    dx[i] = r;
}
