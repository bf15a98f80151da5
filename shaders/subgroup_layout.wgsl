// How the device lays subgroups out in a one-dimensional workgroup: each invocation writes its
// lane (subgroup_invocation_id) and its subgroup's size. The subgroup kernels of conv3d take a
// subgroup to be a run of consecutive invocations starting at a multiple of its size (lane =
// local index mod size), as lavapipe, SwiftShader and the common GPU drivers form them; Vulkan,
// Metal and DX12 do not promise it, so the device is checked when it opens (Gpu::new) and the
// subgroup kernels are left out where it does not hold.
//
//   probe    one invocation per item, WG a workgroup: out[2i] = lane, out[2i + 1] = size
//            1 out (read_write)

struct Params {
    total: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn probe(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(local_invocation_index) lid: u32,
          @builtin(subgroup_invocation_id) lane: u32,
          @builtin(subgroup_size) size: u32) {
    let i = wid.x * WG + lid;
    if (i < p.total) {
        out[2u * i] = lane;
        out[2u * i + 1u] = size;
    }
}
