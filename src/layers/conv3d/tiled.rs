//! conv3d's tiled kernels of forward and backward_input (shaders/conv3d/tiled.wgsl, and their
//! subgroup versions in shaders/conv3d/subgroups.wgsl): the weights packed into 64 KiB uniform
//! blocks, each invocation 16 (wide: 32) channels at 2 or 4 output positions. What they need
//! of a device: [`BLOCKS`] (and subgroups of at least 4 lanes for the subgroup versions).

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Needs, Op, Shader};
use crate::layers::Dims3;

use super::{subgroups, Conv3d, ConvScratch, BASE_NEEDS, LAYER};

/// Channels per invocation of the tiled kernels (`OC` in shaders/conv3d/tiled.wgsl).
pub const OC_TILE: usize = 16;

/// Floats in one uniform weight block: 64 KiB, the uniform binding size every WebGPU adapter
/// supports (`BLOCK` vec4s in the shader).
pub(super) const BLOCK_FLOATS: usize = 16384;

/// Weight columns (reduction channel × tap) of OC_TILE floats per block; the last column's
/// slot holds the bias.
pub(super) const BLOCK_COLS: usize = BLOCK_FLOATS / OC_TILE - 1;

/// Columns of a backward_input block, which has no bias.
pub(super) const BWD_COLS: usize = BLOCK_FLOATS / OC_TILE;

/// The blocked kernels' 64 KiB uniform blocks.
pub(super) const BLOCKS: Needs = Needs { uniform_binding: 4 * BLOCK_FLOATS as u64, invocations: 0, workgroup_storage: 0, subgroup_lanes: None, f32_activations: false };

/// How reduction channels split into uniform blocks: `per` channels a block, `blocks` blocks
/// for each group of OC_TILE channels, `groups` groups; `used` floats of each block are read,
/// and block i starts `stride` floats into the buffer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocks {
    per: usize,
    blocks: usize,
    groups: usize,
    used: usize,
    stride: usize,
}

/// Floats between the starts of two backward_input blocks: a multiple of 256 bytes, the largest
/// uniform offset alignment WebGPU allows an adapter to ask for.
pub(super) const BLOCK_ALIGN: usize = 64;

impl Blocks {
    pub(super) fn new(reduce: usize, channels: usize, taps: usize) -> Option<Blocks> {
        let per = (BLOCK_COLS / taps).min(reduce);
        (per > 0).then(|| Blocks {
            per,
            blocks: reduce.div_ceil(per),
            groups: channels.div_ceil(OC_TILE),
            used: BLOCK_FLOATS,
            stride: BLOCK_FLOATS,
        })
    }
    /// backward_input's blocks: for each tap column kw, the (kd, kh, output channel) columns
    /// of `per` output channels a block (as many as fit [`BWD_COLS`], no bias slot), so that
    /// one dispatch (one kw, one chunk of output channels) reads them all from one block;
    /// `blocks` = K_W · chunks. `None` if one (kd, kh) plane of taps does not fit a block.
    /// A block binds 64 KiB but its columns often fill less (a dense layer's: 8 KiB), so the
    /// blocks overlap: each starts after the previous one's used floats, and its binding runs
    /// on into the next blocks' columns, which it never reads.
    pub(super) fn kw_major(c_out: usize, c_in: usize, kernel: Dims3) -> Option<Blocks> {
        let per = (BWD_COLS / (kernel[0] * kernel[1])).min(c_out);
        let used = per * kernel[0] * kernel[1] * OC_TILE;
        (per > 0).then(|| Blocks {
            per,
            blocks: kernel[2] * c_out.div_ceil(per),
            groups: c_in.div_ceil(OC_TILE),
            used,
            stride: used.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN,
        })
    }

    /// The buffer's length: the last block's start plus one binding.
    pub(super) fn floats(&self) -> usize {
        (self.groups * self.blocks - 1) * self.stride + BLOCK_FLOATS
    }
}

/// The workgroup size of backward_input's subgroup kernel, which gives each input row of
/// `per_row` invocations whole workgroups (so that the row, and the loops over taps around the
/// broadcasts, are uniform in the workgroup): a multiple of `align` (whole subgroups) up to 64,
/// the one that pads the rows least, the largest among equals.
pub(super) fn row_workgroup(per_row: usize, align: usize) -> usize {
    let (mut best, mut wg) = (align, align);
    while wg * 2 <= 64 {
        wg *= 2;
        if per_row.next_multiple_of(wg) <= per_row.next_multiple_of(best) {
            best = wg;
        }
    }
    best
}

/// What the tiled kernels need of a device: the 64 KiB uniform blocks, activations in f32
/// (forward adds each later block's sums to y, backward_input each tap's to dx), and for the
/// subgroup versions subgroups of at least 4 lanes (they broadcast each block column from
/// lanes 0..3).
pub(super) fn needs(with_subgroups: bool) -> Needs {
    let needs = BASE_NEEDS.and(BLOCKS).and(Needs { f32_activations: true, ..Needs::default() });
    if with_subgroups { needs.and(subgroups(4)) } else { needs }
}

impl Conv3d {
    /// The dispatches that pack `weight` (and the bias, forward only) into uniform blocks.
    pub(super) fn pack(&self, out: Dims3, b: Blocks, forward: bool, weight: &Buffer, bias: Option<&Buffer>, blocks: &Buffer) -> Vec<Op> {
        // Only the floats of the columns in use (backward_input's blocks: the (kd, kh) planes of
        // `per` output channels), each block from its start.
        let floats = b.groups * b.blocks * b.used;
        let mut p = self.params(out, floats);
        p.r_n = b.per as u32;
        p.rows = b.blocks as u32;
        p.c0 = b.used as u32;
        p.r0 = b.stride as u32;
        let (label, entry) = if forward {
            ("conv3d.pack_forward", "pack_forward")
        } else {
            ("conv3d.pack_backward_input", "pack_backward")
        };
        let bytes = 4 * (self.weight_len() + floats) as u64;
        let mut ops = vec![self.geometry(out, Op::threads(label, Shader::Conv3dTiled, entry, &p, &[weight, blocks], floats).with_cost(0, bytes))];
        if let Some(bias) = bias {
            let mut p = self.params(out, b.groups * OC_TILE);
            p.rows = b.blocks as u32;
            ops.push(self.geometry(out, Op::threads("conv3d.pack_bias", Shader::Conv3dTiled, "pack_bias", &p, &[bias, blocks], b.groups * OC_TILE)));
        }
        ops
    }

    /// The tiled forward for `pair` (1 or 2) channel groups from g on and block j of input
    /// channels; its cost is its share of the pass's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_tiled(&self, out: Dims3, b: Blocks, (g, pair, j): (usize, usize, usize), x: &Buffer, blocks: &Buffer, y: &Buffer, scratch: &ConvScratch) -> Op {
        let (shader, entry, _) = scratch.choice.forward.blocked();
        let threads = self.invocations(out, out[0] * out[1]);
        let r0 = j * b.per;
        let mut p = self.params(out, threads);
        p.c0 = (g * OC_TILE) as u32;
        p.r0 = r0 as u32;
        p.r_n = b.per.min(self.c_in - r0) as u32;
        let view = |g: usize| blocks.view((g * b.blocks + j) * BLOCK_FLOATS, BLOCK_FLOATS, "conv3d weight block");
        let f = pair as f64 / b.groups as f64 * p.r_n as f64 / self.c_in as f64;
        // The shader reads block2 only when WIDE; a lone group binds its block there again.
        let op = Op::threads_spread("conv3d.forward", shader, entry, &p, &[x, &view(g), y, &view(g + pair - 1)], threads, scratch.min_workgroup())
            .with_cost((self.macs_flops(out) as f64 * f) as u64, (self.cost_bytes(out) as f64 * f) as u64);
        self.geometry(out, op).with_constant("LAYOUT", self.layout(out).0).with_constant("WIDE", u32::from(pair == 2))
    }

    /// forward with the tiled kernels: pack the weights (and bias) into `blocks`, then one
    /// dispatch per (channel group or pair of groups, block of input channels).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_blocked(&self, out: Dims3, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer, blocks: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let b = match Blocks::new(self.c_in, self.c_out, self.taps()) {
            Some(b) if blocks.len() == b.floats() => b,
            _ => return Err(Error::shape(LAYER, "forward's weight blocks were made for another geometry")),
        };
        let mut ops = self.pack(out, b, true, weight, bias, blocks);
        // The first block of a group writes y (with the bias), the later ones add to it. A wide
        // kernel takes two groups a dispatch (a last odd one alone).
        let per = scratch.choice.forward.groups();
        for g in (0..b.groups).step_by(per) {
            let pair = per.min(b.groups - g);
            for j in 0..b.blocks {
                let op = self.forward_tiled(out, b, (g, pair, j), x, blocks, y, scratch);
                ops.push(op.with_constant("ACCUMULATE", u32::from(j > 0)).with_constant("ADD_BIAS", u32::from(j == 0 && bias.is_some())));
            }
        }
        Ok(ops)
    }

    /// backward_input with the tiled kernels: pack the weights into `blocks` (kw-major), zero dx,
    /// then one dispatch per (channel group or pair, kw, chunk of output channels).
    pub(super) fn backward_input_blocked(&self, out: Dims3, dy: &Buffer, weight: &Buffer, dx: &Buffer, blocks: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let b = match Blocks::kw_major(self.c_out, self.c_in, self.kernel) {
            Some(b) if blocks.len() == b.floats() => b,
            _ => return Err(Error::shape(LAYER, "backward_input's weight blocks were made for another geometry")),
        };
        let mut ops = self.pack(out, b, false, weight, None, blocks);
        // dx = 0, then one dispatch per (group, kw, chunk of output channels) adds its
        // contributions.
        ops.push(Op::threads("conv3d.backward_input", Shader::Conv3dTiled, "zero", &self.params(out, dx.len()), &[dx], dx.len()).with_cost(0, 4 * dx.len() as u64));
        // One invocation per input row (id, ih) and 2 or 4 output positions (the layout's); the
        // subgroup kernel gives each row whole workgroups (of `wg`: see row_workgroup).
        let (shader, _, entry) = scratch.choice.backward_input.blocked();
        let per_row = self.invocations(out, 1);
        let wg = row_workgroup(per_row, scratch.min_workgroup() as usize);
        let subgroups = scratch.choice.backward_input.subgroups();
        let threads = if subgroups { per_row.next_multiple_of(wg) } else { per_row } * self.input[0] * self.input[1];
        let chunks = b.blocks / self.kernel[2];
        // A wide kernel takes two groups of input channels a dispatch (a last odd one alone).
        let per = scratch.choice.backward_input.groups();
        for g in (0..b.groups).step_by(per) {
            let pair = per.min(b.groups - g);
            for kw in 0..self.kernel[2] {
                for j in 0..chunks {
                    let r0 = j * b.per;
                    let mut p = self.params(out, threads);
                    p.c0 = (g * OC_TILE) as u32;
                    p.r0 = r0 as u32;
                    p.r_n = b.per.min(self.c_out - r0) as u32;
                    p.rows = b.per as u32;
                    p.tap = kw as u32;
                    let view = |g: usize| blocks.view((g * b.blocks + kw * chunks + j) * b.stride, BLOCK_FLOATS, "conv3d weight block");
                    let f = (pair * p.r_n as usize) as f64 / (self.c_out * self.kernel[2] * b.groups) as f64;
                    let buffers = [dy, &view(g), dx, &view(g + pair - 1)];
                    let op = if subgroups {
                        Op::groups("conv3d.backward_input", shader, entry, &p, &buffers, threads / wg).with_constant("WG", wg as u32)
                    } else {
                        Op::threads_spread("conv3d.backward_input", shader, entry, &p, &buffers, threads, scratch.min_workgroup())
                    };
                    let op = op.with_cost((self.macs_flops(out) as f64 * f) as u64, (self.cost_bytes(out) as f64 * f) as u64);
                    let op = self.geometry(out, op).with_constant("LAYOUT", self.layout(out).0);
                    ops.push(op.with_constant("WIDE", u32::from(pair == 2)));
                }
            }
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_input_rows_take_whole_workgroups_with_little_padding() {
        // Whole subgroups, at most 64, padding the row least, the largest among equals.
        assert_eq!(row_workgroup(13, 8), 16);
        assert_eq!(row_workgroup(17, 8), 8);
        assert_eq!(row_workgroup(64, 8), 64);
        assert_eq!(row_workgroup(100, 32), 64);
        assert_eq!(row_workgroup(3, 8), 8);
        assert_eq!(row_workgroup(5, 128), 128);
        for per_row in 1..300 {
            for align in [4, 8, 16, 32, 64] {
                let wg = row_workgroup(per_row, align);
                assert!(wg.is_multiple_of(align) && wg <= 64);
                let other = (0..).map(|k| align << k).take_while(|&w| w <= 64);
                assert!(other.clone().all(|w| per_row.next_multiple_of(wg) <= per_row.next_multiple_of(w)), "{per_row} {align}: {wg}");
            }
        }
    }
}
