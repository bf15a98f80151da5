// Softmax cross-entropy over classes (PyTorch's nn.CrossEntropyLoss, mean reduction), the
// count of correct predictions, and the gradient of the mean loss with respect to the logits.
//
// Layouts: logits, dlogits [n, k] row-major; labels [n] u32; loss [1] f32; correct [1] u32.
// Per sample s, with m = max_j logits[s, j] (log-softmax is shifted by m, so large logits do
// not overflow exp):
//   lse_s  = log Σ_j exp(logits[s, j] − m)
//   loss   = (1/n) Σ_s (lse_s − (logits[s, label_s] − m))
//   correct = #{s : argmax_j logits[s, j] == label_s}, ties going to the first maximum (torch.argmax)
// Labels are validated on the host; a label ≥ k is only guarded here, so it reads nothing out
// of bounds: the sample then adds nothing to loss or correct, and its one-hot term is zero.
//
// forward:  binding 1 logits (read), 2 labels (read), 3 loss (write), 4 correct (write)
//           ONE workgroup of 256: thread t handles samples t, t + 256, ... in order, then a tree
//           reduction in workgroup memory — a fixed summation order, no atomics.
// backward: binding 1 logits (read), 2 labels (read), 3 dlogits (write)
//           one invocation per element (2D grid, linear id = wid.y * nwg.x + wid.x):
//           dlogits[s, j] = (softmax(logits[s])_j − [j == label_s]) / n
// accumulate: binding 1 loss (read), 2 correct (read), 3 loss_sum (read_write),
//           4 correct_sum (read_write); one invocation: loss_sum += loss · n and
//           correct_sum += correct — the epoch's metric sums stay on the GPU between read-backs.

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    n: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> logits: array<act>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> correct: array<u32>;

@group(0) @binding(3) var<storage, read_write> dlogits: array<act>;

@group(0) @binding(1) var<storage, read> loss_in: array<f32>;
@group(0) @binding(2) var<storage, read> correct_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss_sum: array<f32>;
@group(0) @binding(4) var<storage, read_write> correct_sum: array<u32>;

fn row_max(row: u32) -> f32 {
    var m = f32(logits[row]);
    for (var j = 1u; j < p.k; j++) {
        m = max(m, f32(logits[row + j]));
    }
    return m;
}

// Σ_j exp(logits[row + j] − m), in class order.
fn row_sum_exp(row: u32, m: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.k; j++) {
        sum += exp(f32(logits[row + j]) - m);
    }
    return sum;
}

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<u32, 256>;

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    var hits = 0u;
    for (var s = lid; s < p.n; s += 256u) {
        let row = s * p.k;
        // The first index of the maximum, as torch.argmax.
        var m = f32(logits[row]);
        var arg = 0u;
        for (var j = 1u; j < p.k; j++) {
            let v = f32(logits[row + j]);
            if (v > m) {
                m = v;
                arg = j;
            }
        }
        let label = labels[s];
        if (label < p.k) {
            acc += log(row_sum_exp(row, m)) - (f32(logits[row + label]) - m);
            hits += select(0u, 1u, arg == label);
        }
    }
    part_loss[lid] = acc;
    part_correct[lid] = hits;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            part_loss[lid] += part_loss[lid + stride];
            part_correct[lid] += part_correct[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        loss[0] = part_loss[0] / f32(p.n);
        correct[0] = part_correct[0];
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n * p.k) {
        return;
    }
    let s = i / p.k;
    let j = i % p.k;
    let row = s * p.k;
    let m = row_max(row);
    let prob = exp(f32(logits[i]) - m) / row_sum_exp(row, m);
    let onehot = select(0.0, 1.0, labels[s] == j);
    dlogits[i] = act((prob - onehot) / f32(p.n));
}

@compute @workgroup_size(1)
fn accumulate() {
    loss_sum[0] += loss_in[0] * f32(p.n);
    correct_sum[0] += correct_in[0];
}
