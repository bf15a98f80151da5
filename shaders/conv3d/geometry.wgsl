// The geometry of a 3D convolution (groups = 1, zero padding, PyTorch's conv3d), shared by
// conv3d's kernel families (one file each, beside its Rust half in src/layers/conv3d/):
//   direct.wgsl     storage buffers only, every geometry          (onto this file)
//   tiled.wgsl      weights in uniform blocks: forward, backward_input   (onto this file)
//   weight.wgsl     the weight gradient's kernels                  (onto tiled.wgsl)
//   subgroups.wgsl  tiled and weight kernels sharing loads across the subgroup (onto weight.wgsl)
//   gemm.wgsl       implicit-GEMM kernels of all three passes          (onto this file)
// No entry points of its own.
//
// Composition (gpu::shaders::compose): a family's shader is the one it is composed onto (itself
// composed, down to this file) without its entry points and without the functions that the
// family's file defines again, followed by the family's file without its stubs. The stubs
// repeat the declarations of the files below that the family uses (structs, bindings and
// constants verbatim, functions by their signature with a placeholder body), so that each file
// is valid WGSL on its own; tests/shaders.rs checks that every stub is such a declaration, and
// that every file and every composition validates.
//
// Layouts, row-major:
//   x, dx   [N, CI, D, H, W]          input and its gradient
//   w, dw   [CO, CI, KD, KH, KW]      weights and their gradient
//   b, db   [CO]                      bias and its gradient
//   y, dy   [N, CO, OD, OH, OW]       output and its gradient
// Along each axis, output position o and kernel tap k read input position
//   i = o·stride − padding + k·dilation   (no term where i falls outside [0, size)).
// Coordinates stay unsigned: o·stride + k·dilation is compared with the padding before
// subtracting it; the Rust side checks that padded sizes and element counts fit in u32.
//
// The geometry reaches a kernel in two forms, both made by src/layers/conv3d/geometry.rs from
// the same values: the uniform `p` (binding 0 of every kernel; p.total is the number of
// invocations or workgroups), so that one pipeline serves every shape, and the pipeline
// constants G_* (below), which the tiled and GEMM kernels read instead.
// Element-wise entry points index linearly as (wid.y·nwg.x + wid.x)·WG + lid; reductions take
// group wid.y·nwg.x + wid.x, so the host may lay workgroups out on a 2D grid.

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

override WG: u32 = 64u;

// Activations and their gradients are stored as `act`: f32, or f16 where a run's precision
// is f16 (the host enables f16 and rewrites this line). Arithmetic and sums stay in f32: reads
// convert with f32(..), writes with act(..).
alias act = f32;

@group(0) @binding(0) var<uniform> p: Params;

fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn x_index(n: u32, ci: u32, id: u32, ih: u32, iw: u32) -> u32 {
    return (((n * p.c_in + ci) * p.in_d + id) * p.in_h + ih) * p.in_w + iw;
}

fn w_index(co: u32, ci: u32, kd: u32, kh: u32, kw: u32) -> u32 {
    return (((co * p.c_in + ci) * p.k_d + kd) * p.k_h + kh) * p.k_w + kw;
}

fn y_index(n: u32, co: u32, od: u32, oh: u32, ow: u32) -> u32 {
    return (((n * p.c_out + co) * p.out_d + od) * p.out_h + oh) * p.out_w + ow;
}

// The input position that output position o and tap k read along one axis, or `size` (out of
// range) when it falls into the padding.
fn in_pos(o: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 {
    let z = o * stride + k * dil;
    if ((z < pad) | (z - pad >= size)) {
        return size;
    }
    return z - pad;
}

// The output position whose tap k reads input position i along one axis, or `size` (none)
// when i + pad − k·dil is negative, not a multiple of the stride, or past the output.
fn out_pos(i: u32, k: u32, stride: u32, pad: u32, dil: u32, size: u32) -> u32 {
    let z = i + pad;
    let off = k * dil;
    if ((z < off) | ((z - off) % stride != 0u)) {
        return size;
    }
    return min((z - off) / stride, size);
}


// The packing, forward and backward_input tiled kernels read the layer's geometry from
// pipeline constants, set by the host to the same values as the parameters: a CPU adapter then
// divides by constants with multiplies, drops the padding tests of unpadded axes and the
// products of unit strides and dilations, which its per-column loop otherwise pays on every
// lane (lavapipe: forward ~20% faster). The backward_weight kernels keep reading p: with
// constants their loops unroll into slower code there.
override G_C_IN: u32 = 1u;
override G_C_OUT: u32 = 1u;
override G_IN_D: u32 = 1u;
override G_IN_H: u32 = 1u;
override G_IN_W: u32 = 1u;
override G_OUT_D: u32 = 1u;
override G_OUT_H: u32 = 1u;
override G_OUT_W: u32 = 1u;
override G_K_D: u32 = 1u;
override G_K_H: u32 = 1u;
override G_K_W: u32 = 1u;
override G_S_D: u32 = 1u;
override G_S_H: u32 = 1u;
override G_S_W: u32 = 1u;
override G_P_D: u32 = 0u;
override G_P_H: u32 = 0u;
override G_P_W: u32 = 0u;
override G_DIL_D: u32 = 1u;
override G_DIL_H: u32 = 1u;
override G_DIL_W: u32 = 1u;
