// The tiled forward, backward_input and backward_weight_rows kernels of conv3d.wgsl with
// their block columns (weights, or dy for rows) shared across the subgroup: compiled as
// conv3d.wgsl with its block_column replaced by the one below (see
// gpu::Shader::Conv3dSubgroups), on adapters with subgroups of at least 4 lanes.
//
// Every lane of a subgroup reads the same block column, but a CPU adapter such as lavapipe
// (Mesa ≤ 22) gathers a uniform-buffer load lane by lane unless its index is a constant. Here
// lane l loads vec4 l % 4 of the column and the four are broadcast from lanes 0..3: one
// gathered vec4 and four broadcasts instead of four gathered vec4s (lavapipe: forward
// 1.24–1.41×, backward_input 1.18× faster). The loops around mac2/mac4 must be uniform in the
// subgroup: forward's are uniform in the workgroup; backward_input aligns each input row, and
// backward_weight_rows each group of output channels, to the subgroup size (ROW_ALIGN). That
// takes a subgroup to be a run of consecutive invocations starting at a multiple of its size,
// as lavapipe and the common GPU drivers form them for one-dimensional workgroups (Vulkan does
// not promise it); `cnn3d check` and the tuner verify the kernels on the adapter.
//
//   forward_subgroups                as forward_tiled
//   backward_input_subgroups         as backward_input_tiled, with ROW_ALIGN the subgroup size
//   backward_weight_rows_subgroups   as backward_weight_rows, with ROW_ALIGN the subgroup size

fn block_column(col: u32, lane: u32) -> array<vec4<f32>, 4> {
    let mine = block[col * (OC / 4u) + lane % 4u];
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
    backward_input_at(thread_index(wid, nwg, lid), lane);
}

@compute @workgroup_size(WG)
fn backward_weight_rows_subgroups(@builtin(workgroup_id) wid: vec3<u32>,
                                  @builtin(num_workgroups) nwg: vec3<u32>,
                                  @builtin(local_invocation_index) lid: u32,
                                  @builtin(subgroup_invocation_id) lane: u32) {
    backward_weight_rows_at(thread_index(wid, nwg, lid), lane);
}
