// Inverted dropout with probability p: y = x · keep / (1 − p) — forward and backward.
//
// Layout: any tensor, flat; x, y, dy, dx all hold `n` act values in the same order.
// Invocation: one per element; workgroups on a 2D grid, linear id = wid.y * nwg.x + wid.x.
//
// The mask is not stored: element i is kept when u ≥ p, with u = (h >> 8) · 2⁻²⁴ in [0, 1)
// (exact in f32) and h = hash(seed, step, i), a counter-based hash, so the backward recomputes
// the forward's mask and every (seed, step) draws a fresh one. The hash is MurmurHash3 (x86,
// 32-bit) of the two words [step, i] with `seed` as its seed; src/reference/dropout.rs has
// the same function in wrapping u32 arithmetic, so masks agree bit for bit.
// `step` lives in a 1-element u32 storage buffer (step_buf) rather than in the uniform, so a
// compiled plan replays with a new mask after the host writes the next step number there.
// p.prob is p; p.scale = 1 / (1 − p) from the host (0 when p = 1, where nothing is kept).
//
// forward:  binding 1 step_buf (read), binding 2 x (read), binding 3 y (write)      y = x · keep · scale
// backward: binding 1 step_buf (read), binding 2 dy (read), binding 3 dx (write)    dx = dy · keep · scale

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

struct Params {
    n: u32,
    seed: u32,
    prob: f32,
    scale: f32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> step_buf: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<act>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;

@group(0) @binding(2) var<storage, read> dy: array<act>;
@group(0) @binding(3) var<storage, read_write> dx: array<act>;

fn rotl(v: u32, r: u32) -> u32 {
    return (v << r) | (v >> (32u - r));
}

// One MurmurHash3 body round: scramble the word k and fold it into h.
fn murmur_round(h: u32, k: u32) -> u32 {
    let kk = rotl(k * 0xcc9e2d51u, 15u) * 0x1b873593u;
    return rotl(h ^ kk, 13u) * 5u + 0xe6546b64u;
}

fn hash(seed: u32, s: u32, i: u32) -> u32 {
    var h = murmur_round(murmur_round(seed, s), i);
    h ^= 8u; // the key length in bytes
    h ^= h >> 16u;
    h *= 0x85ebca6bu;
    h ^= h >> 13u;
    h *= 0xc2b2ae35u;
    h ^= h >> 16u;
    return h;
}

// The value v kept and scaled, or exactly 0 when dropped (even if v is inf or NaN).
fn apply(v: f32, i: u32) -> f32 {
    let u = f32(hash(p.seed, step_buf[0], i) >> 8u) * (1.0 / 16777216.0);
    return select(0.0, v * p.scale, u >= p.prob);
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
    y[i] = act(apply(f32(x[i]), i));
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    dx[i] = act(apply(f32(dy[i]), i));
}
