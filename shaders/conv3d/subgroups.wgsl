// The tiled forward, backward_input and backward_weight kernels of tiled.wgsl and weight.wgsl
// with their block columns (weights, or dy for rows) shared across the subgroup, on adapters
// with subgroups of at least 4 lanes. Composed onto weight.wgsl (see geometry.wgsl): its
// helpers, with block_column and block_column2 replaced by the broadcasting ones below.
//
// Every lane of a subgroup reads the same block column, but a CPU adapter such as lavapipe
// (Mesa ≤ 22) gathers a uniform-buffer load lane by lane unless its index is a constant. Here
// lane l loads vec4 l % 4 of the column and the four are broadcast from lanes 0..3: one
// gathered vec4 and four broadcasts instead of four gathered vec4s (lavapipe: forward
// 1.24–1.41×, backward_input 1.18× faster). WGSL allows subgroupBroadcast only in control
// flow uniform in the subgroup, which the compilers check (Tint rejects the shader otherwise):
// forward's loops are uniform in the workgroup; backward_input takes each workgroup's input
// row from the workgroup's index (rows padded to whole workgroups); backward_weight_rows aligns
// each group of output channels to the subgroup size (ROW_ALIGN) and takes the subgroup to be
// a run of consecutive invocations starting at a multiple of its size, as lavapipe and the
// common GPU drivers form them for one-dimensional workgroups (Vulkan does not promise it:
// the subgroup layout probe checks it when the device opens, and `cnn3d check` and the tuner
// verify the kernels on the adapter).
//
//   forward_subgroups                as forward_tiled
//   backward_input_subgroups         as backward_input_tiled, one input row a workgroup run
//   backward_weight_rows_subgroups   as backward_weight_rows, with ROW_ALIGN the subgroup size
//   backward_weight_samples_subgroups  backward_weight_samples with dy broadcast (below)

// stubs: begin (weight.wgsl's, tiled.wgsl's and geometry.wgsl's declarations; dropped by the composition)
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
struct Acc {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
}
struct Sums {
    a: Acc,
    b: Acc,
    c: Acc,
    d: Acc,
}
struct Columns {
    d: vec4<u32>,
    h: vec4<u32>,
    w: vec4<u32>,
    ci: vec4<u32>,
}
override WG: u32 = 64u;
alias act = f32;
@group(0) @binding(0) var<uniform> p: Params;
override G_IN_D: u32 = 1u;
override G_IN_H: u32 = 1u;
const OC: u32 = 16u;
@group(0) @binding(2) var<uniform> block: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> block2: array<vec4<f32>, 4096>;
override ROW_ALIGN: u32 = 1u;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<act>>;
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { var r: u32; return r; }
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { var r: u32; return r; }
fn forward_at(i: u32, lane: u32) {}
fn row_invocations() -> u32 { var r: u32; return r; }
fn backward_input_at(row: u32, j: u32, valid: bool, lane: u32) {}
fn columns(k0: u32) -> Columns { var r: Columns; return r; }
fn next_position(o: vec3<u32>) -> vec3<u32> { var r: vec3<u32>; return r; }
fn x_window(cl: Columns, o: vec3<u32>) -> vec4<f32> { var r: vec4<f32>; return r; }
fn add_column(a: ptr<function, Acc>, d: ptr<function, array<vec4<f32>, 16>>, x: vec4<f32>) {}
fn put_columns(g: u32, k: u32, cols: u32, s: Sums) {}
fn backward_weight_rows_at(i: u32, lane: u32) {}
// stubs: end


fn block_column(col: u32, lane: u32) -> array<vec4<f32>, 4> {
    let mine = block[col * (OC / 4u) + lane % 4u];
    return array<vec4<f32>, 4>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
}

fn block_column2(col: u32, lane: u32) -> array<vec4<f32>, 4> {
    let mine = block2[col * (OC / 4u) + lane % 4u];
    return array<vec4<f32>, 4>(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u));
}

@compute @workgroup_size(WG)
fn forward_subgroups(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32,
                     @builtin(subgroup_invocation_id) lane: u32) {
    forward_at(thread_index(wid, nwg, lid), lane);
}

@compute @workgroup_size(WG)
fn backward_input_subgroups(@builtin(workgroup_id) wid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32,
                            @builtin(subgroup_invocation_id) lane: u32) {
    // Each input row padded to whole workgroups (WG a multiple of the subgroup size), its row
    // taken from the workgroup's index: the loops over taps around the broadcasts are then
    // uniform in the workgroup, as WGSL requires, whatever the subgroups' layout.
    let runs = (row_invocations() + WG - 1u) / WG;
    let rows = G_IN_D * G_IN_H;
    let g = group_index(wid, nwg);
    backward_input_at(min(g / runs, rows - 1u), (g % runs) * WG + lid, g < rows * runs, lane);
}

@compute @workgroup_size(WG)
fn backward_weight_rows_subgroups(@builtin(workgroup_id) wid: vec3<u32>,
                                  @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32,
                                  @builtin(subgroup_invocation_id) lane: u32) {
    backward_weight_rows_at(thread_index(wid, nwg, lid), lane);
}

// backward_weight_samples with dy broadcast across the subgroup instead of loaded by every
// lane: lane l of a subgroup loads dy's vec4s of channels co0 + l % 8 and co0 + 8 + l % 8 at
// the current 4 positions and subgroupBroadcast hands all 16 to every lane (2 loads a lane
// instead of 16; needs subgroups of at least 8 lanes). Each invocation takes 4 columns
// k = ci·taps + tap and the 16 output channels of its group over all of the sample's
// positions, in order, so it writes its sums itself: no workgroup reduction. Invocations are
// ordered group-slowest, each group padded to ROW_ALIGN (the subgroup size) so that a
// subgroup shares the group. One dispatch per sample (p.r0), adding to dw from the second on
// (ACCUMULATE), as backward_weight_samples.
//   1 window (uniform), 2 dy (read, vec4s), 3 dw (read_write)
@compute @workgroup_size(WG)
fn backward_weight_samples_subgroups(@builtin(workgroup_id) wid: vec3<u32>,
                                     @builtin(num_workgroups) nwg: vec3<u32>,
                                     @builtin(local_invocation_index) lid: u32,
                                     @builtin(subgroup_invocation_id) lane: u32) {
    let i = thread_index(wid, nwg, lid);
    let cols = p.c_in * p.k_d * p.k_h * p.k_w;
    let quads = (cols + 3u) / 4u;
    let padded = (quads + ROW_ALIGN - 1u) / ROW_ALIGN * ROW_ALIGN;
    let count = padded * ((p.c_out + OC - 1u) / OC);
    // Lanes past the end or in a group's padding repeat an invocation (their sums are not
    // written), so that every lane takes part in the broadcasts.
    let t = min(i, count - 1u);
    let g = t / padded;
    let co0 = g * OC;
    let k0 = min(t % padded, quads - 1u) * 4u;
    let cl = columns(k0);
    let cv = (p.out_d * p.out_h * p.out_w) / 4u;
    let y4 = p.r0 * p.c_out * cv;
    let ya = y4 + min(co0 + lane % 8u, p.c_out - 1u) * cv;
    let yb = y4 + min(co0 + 8u + lane % 8u, p.c_out - 1u) * cv;
    var s0 = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var s1 = s0;
    var s2 = s0;
    var s3 = s0;
    var o0 = vec3<u32>(0u);
    for (var q = 0u; q < cv; q++) {
        let o1 = next_position(o0);
        let o2 = next_position(o1);
        let o3 = next_position(o2);
        let x0 = x_window(cl, o0);
        let x1 = x_window(cl, o1);
        let x2 = x_window(cl, o2);
        let x3 = x_window(cl, o3);
        let ma = vec4<f32>(dy4[ya + q]);
        let mb = vec4<f32>(dy4[yb + q]);
        var d = array<vec4<f32>, 16>(
            subgroupBroadcast(ma, 0u), subgroupBroadcast(ma, 1u), subgroupBroadcast(ma, 2u), subgroupBroadcast(ma, 3u),
            subgroupBroadcast(ma, 4u), subgroupBroadcast(ma, 5u), subgroupBroadcast(ma, 6u), subgroupBroadcast(ma, 7u),
            subgroupBroadcast(mb, 0u), subgroupBroadcast(mb, 1u), subgroupBroadcast(mb, 2u), subgroupBroadcast(mb, 3u),
            subgroupBroadcast(mb, 4u), subgroupBroadcast(mb, 5u), subgroupBroadcast(mb, 6u), subgroupBroadcast(mb, 7u));
        add_column(&s0, &d, vec4<f32>(x0.x, x1.x, x2.x, x3.x));
        add_column(&s1, &d, vec4<f32>(x0.y, x1.y, x2.y, x3.y));
        add_column(&s2, &d, vec4<f32>(x0.z, x1.z, x2.z, x3.z));
        add_column(&s3, &d, vec4<f32>(x0.w, x1.w, x2.w, x3.w));
        o0 = next_position(o3);
    }
    if ((i < count) & (t % padded < quads)) {
        put_columns(g, k0, cols, Sums(s0, s1, s2, s3));
    }
}
