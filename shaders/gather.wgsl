// Gather: the samples of one batch from the device copy of a dataset, through a colormap or raw,
// and their labels.
//
// Layouts: data (N, C, S) f32, S = D·H·W voxels, NCDHW per sample (raw). For a colormap, codes
//   (N, ⌈S/4⌉) u32: each voxel's table entry e (0..255, computed on the host from the value
//   min-max scaled per sample in f32, as matplotlib: e = min(floor(t · 256), 255), 0 for t <= 0
//   or NaN), four to a word, voxel s in byte s % 4 of word s / 4.
//   labels (N) u32; indices (B) u32, the samples of this batch; lut (256, 3) f32 RGB.
//   x (B, C_out, S) act: the batch's input activations; y (B) u32: its labels.
// Invocation: one per element of x; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
//   Invocations i < B also write y[i] = labels[indices[i]].
//   An index >= N gives zeros and label 0 instead of reading out of bounds.
//
// forward (C_out = 3):
//   p.article = 0: x[b, c, s] = lut[e(n, s), c]        channels-last RGB moved to channels first
//   p.article = 1: x[b, o]    = lut[e(n, o / 3), o % 3] the article's plain reshape of it
// forward_raw (C_out = C): x[b, c, s] = data[n, c, s]
//
// forward:     binding 1 codes, 2 labels, 3 indices (read), 4 x, 5 y (write), 6 lut (read)
// forward_raw: binding 1 data, 2 labels, 3 indices (read), 4 x, 5 y (write)

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    batch: u32,
    samples: u32,
    // Values per sample in data (C·S) and in x (C_out·S).
    in_len: u32,
    out_len: u32,
    article: u32,
    // Words of codes per sample (forward).
    words: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<u32>;
@group(0) @binding(6) var<storage, read> lut: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn gather_label(i: u32) {
    if (i < p.batch) {
        let n = indices[i];
        var label = 0u;
        if (n < p.samples) {
            label = labels[n];
        }
        y[i] = label;
    }
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    gather_label(i);
    if (i >= p.batch * p.out_len) {
        return;
    }
    let b = i / p.out_len;
    let o = i % p.out_len;
    let n = indices[b];
    if (n >= p.samples) {
        x[i] = act(0.0);
        return;
    }
    var voxel: u32;
    var c: u32;
    if (p.article == 1u) {
        voxel = o / 3u;
        c = o % 3u;
    } else {
        voxel = o % p.in_len;
        c = o / p.in_len;
    }
    let e = (codes[n * p.words + voxel / 4u] >> (8u * (voxel % 4u))) & 0xffu;
    x[i] = act(lut[e * 3u + c]);
}

// forward4: forward (p.article = 0) for 4 voxels an invocation where S is a multiple of 4: one
// word of codes, one index and one vec4 store instead of four of each (a CPU adapter pays per
// storage access, whatever its width). Invocation q writes x[4q .. 4q + 3], all in one channel
// of one sample.
// forward4: binding 1 codes, 2 labels, 3 indices (read), 4 x (write, vec4s), 5 y (write), 6 lut (read)
@group(0) @binding(4) var<storage, read_write> x4: array<vec4<act>>;

@compute @workgroup_size(WG)
fn forward4(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let q = index(wid, nwg, lid);
    gather_label(q);
    if (q >= p.batch * (p.out_len / 4u)) {
        return;
    }
    let b = q / (p.out_len / 4u);
    let o = (q % (p.out_len / 4u)) * 4u;
    let n = indices[b];
    if (n >= p.samples) {
        x4[q] = vec4<act>(0.0);
        return;
    }
    let voxel = o % p.in_len;
    let c = o / p.in_len;
    let word = codes[n * p.words + voxel / 4u];
    let e = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    x4[q] = vec4<act>(vec4<f32>(lut[e.x * 3u + c], lut[e.y * 3u + c], lut[e.z * 3u + c], lut[e.w * 3u + c]));
}

@compute @workgroup_size(WG)
fn forward_raw(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    gather_label(i);
    if (i >= p.batch * p.out_len) {
        return;
    }
    let b = i / p.out_len;
    let o = i % p.out_len;
    let n = indices[b];
    var v = 0.0;
    if (n < p.samples) {
        v = data[n * p.in_len + o];
    }
    x[i] = act(v);
}
