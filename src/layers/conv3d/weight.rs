//! conv3d's weight-gradient kernels (shaders/conv3d/weight.wgsl, and the subgroup versions of
//! rows and samples in shaders/conv3d/subgroups.wgsl): `channels` and `columns` reduce over
//! row splits in workgroup memory ([`LANES`]); `rows` packs dy into uniform row blocks and
//! `samples` reads each sample's x from a uniform window (both need [`super::tiled::BLOCKS`]).

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Needs, Op, Shader};
use crate::layers::Dims3;

use super::tiled::{BLOCKS, BLOCK_ALIGN, BLOCK_FLOATS, BWD_COLS, OC_TILE};
use super::{subgroups, Conv3d, ConvScratch, WeightKernels, BASE_NEEDS, LAYER};

/// Input channels per vec4 of backward_weight_tiled (`CI4` in shaders/conv3d/weight.wgsl); a workgroup takes
/// two vec4s.
pub(super) const CI4: usize = 4;

/// Output rows (n, od, oh) per backward_weight_tiled workgroup: 16 per lane, so that a lane's
/// loop stays short and large layers still give the GPU many workgroups.
pub(super) const ROWS_PER_SPLIT: usize = 64 * 16;

/// Workgroup memory of the kernels that sum their lanes there (`lanes`: 1024 vec4s).
pub(super) const LANES: Needs = Needs { uniform_binding: 0, invocations: 0, workgroup_storage: 16384, subgroup_lanes: None, f32_activations: false };

/// What each weight-gradient kernel needs of a device: channels and columns their workgroup
/// memory (no more than every WebGPU device has), rows and samples the 64 KiB uniform blocks,
/// and their subgroup versions subgroups of 4 lanes (rows) or 8 (samples: dy's 16 channels
/// come from lanes 0..7).
pub(super) fn needs(k: WeightKernels) -> Needs {
    match k {
        WeightKernels::Channels | WeightKernels::Columns => BASE_NEEDS.and(LANES),
        WeightKernels::Rows => BASE_NEEDS.and(BLOCKS),
        WeightKernels::RowsSubgroups => BASE_NEEDS.and(BLOCKS).and(subgroups(4)),
        WeightKernels::Samples => BASE_NEEDS.and(BLOCKS).and(LANES),
        WeightKernels::SamplesSubgroups => BASE_NEEDS.and(BLOCKS).and(subgroups(8)),
        WeightKernels::Gemm32x32 | WeightKernels::Gemm64x64 | WeightKernels::Gemm128x64 => k.tile().expect("a GEMM kernel").needs(),
    }
}

impl Conv3d {
    pub(super) fn weight_candidates(&self) -> Vec<WeightKernels> {
        let mut w = vec![WeightKernels::Channels, WeightKernels::Columns];
        // The GEMM kernels where their tiles are not mostly padding, the larger tiles first (a
        // smaller one's twin, see crate::tune).
        let gemm = [WeightKernels::Gemm128x64, WeightKernels::Gemm64x64, WeightKernels::Gemm32x32];
        w.extend(gemm.into_iter().filter(|k| k.tile().is_some_and(|t| self.gemm_weight_suits(t))));
        // A row of dy must fit in one uniform block, and a row of fewer than 16 channels would
        // pad the blocks to several times dy's size.
        if (OC_TILE..=BWD_COLS * OC_TILE).contains(&self.c_out) {
            w.push(WeightKernels::Rows);
        }
        if self.sample_len() <= BLOCK_FLOATS && self.output().is_ok_and(|o| o.iter().product::<usize>() % 4 == 0) {
            w.push(WeightKernels::Samples);
        }
        w
    }

    /// Floats past the end of x that let the samples kernel bind each sample's 64 KiB window
    /// of x in place (x allocated by `Gpu::zeros_windowed` with this slack); 0 where it
    /// cannot (not a candidate, or samples not 256-byte aligned).
    pub fn input_slack(&self) -> usize {
        let fits = self.weight_candidates().contains(&WeightKernels::Samples) && self.sample_len().is_multiple_of(BLOCK_ALIGN);
        if fits { BLOCK_FLOATS - self.sample_len() } else { 0 }
    }

    /// x's window for sample `n`, read in place, if x allows it.
    pub(super) fn window(&self, x: &Buffer, n: usize) -> Option<Buffer> {
        if !self.sample_len().is_multiple_of(BLOCK_ALIGN) {
            return None;
        }
        x.uniform_window(n * self.sample_len(), BLOCK_FLOATS, "conv3d x window")
    }

    /// Rows (n, od, oh, ow) of dy in one uniform block of the rows kernels: a row is
    /// ⌈Cout/16⌉ columns of 16 floats.
    pub(super) fn rows_per_block(&self) -> usize {
        (BWD_COLS / self.c_out.div_ceil(OC_TILE)).max(1)
    }

    /// The row blocks of the rows kernels.
    pub(super) fn row_blocks(&self, out: Dims3) -> usize {
        (self.n * out.iter().product::<usize>()).div_ceil(self.rows_per_block())
    }

    /// Tiles of 8 weight columns k = ci·taps + tap (a workgroup's columns in the columns and
    /// samples kernels).
    pub(super) fn column_tiles(&self) -> usize {
        (self.c_in * self.taps()).div_ceil(2 * CI4)
    }

    /// Floats between two samples' windows in the samples kernel's copy of x: 256-byte
    /// multiples, so that each binds as a uniform block.
    pub(super) fn sample_stride(&self) -> usize {
        self.sample_len().div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN
    }

    /// The samples kernel's copy of x: the last window still spans a whole block.
    pub(super) fn samples_len(&self) -> usize {
        (self.n - 1) * self.sample_stride() + BLOCK_FLOATS
    }

    /// backward_weight's row splits.
    pub(super) fn splits(&self, out: Dims3) -> usize {
        (self.n * out[0] * out[1]).div_ceil(ROWS_PER_SPLIT)
    }

    /// backward_weight with the channels or columns kernels: one workgroup per (tap, 8 input
    /// channels (or 8 (channel, tap) columns), 16 output channels, split of the output rows),
    /// then a sum over the splits in split order.
    pub(super) fn backward_weight_split(&self, out: Dims3, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let len = self.weight_len();
        let splits = self.splits(out);
        let part = match (&scratch.part, splits) {
            (_, 1) => dweight,
            (Some(part), _) if part.len() == splits * len => part,
            _ => return Err(Error::shape(LAYER, "backward_weight's scratch was made for another geometry")),
        };
        let (entry, tiles) = match scratch.choice.backward_weight {
            WeightKernels::Channels => ("backward_weight_tiled", self.c_in.div_ceil(2 * CI4) * self.taps()),
            WeightKernels::Columns => ("backward_weight_columns", self.column_tiles()),
            _ => unreachable!("the other kernels are dispatched by Conv3d::backward_weight"),
        };
        let groups = splits * self.c_out.div_ceil(OC_TILE) * tiles;
        let mut p = self.params(out, groups);
        p.rows = ROWS_PER_SPLIT as u32;
        let op = Op::groups("conv3d.backward_weight", Shader::Conv3dWeight, entry, &p, &[x, dy, part], groups)
            .with_cost(self.macs_flops(out), self.cost_bytes(out));
        let mut ops = vec![self.geometry(out, op)];
        if splits > 1 {
            ops.push(self.sum_splits(out, splits, part, dweight));
        }
        Ok(ops)
    }

    /// dweight = Σ over `splits` partial sums in `part` (each a whole weight), in split order.
    pub(super) fn sum_splits(&self, out: Dims3, splits: usize, part: &Buffer, dweight: &Buffer) -> Op {
        let len = self.weight_len();
        let mut p = self.params(out, len);
        p.rows = splits as u32;
        Op::threads("conv3d.backward_weight_sum", Shader::Conv3dWeight, "backward_weight_sum", &p, &[part, dweight], len)
            .with_cost((splits * len) as u64, 4 * ((splits + 1) * len) as u64)
    }

    /// backward_weight with the rows kernels: pack dy into row blocks, then one dispatch per
    /// block, the first writing dweight and the others adding to it.
    pub(super) fn backward_weight_rows(&self, out: Dims3, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let blocks = match &scratch.row_blocks {
            Some(b) if b.len() == self.row_blocks(out) * BLOCK_FLOATS => b,
            _ => return Err(Error::shape(LAYER, "backward_weight's row blocks were made for another geometry")),
        };
        let per = self.rows_per_block();
        let rows = self.n * out.iter().product::<usize>();
        let mut p = self.params(out, blocks.len());
        p.rows = per as u32;
        let pack = Op::threads("conv3d.pack_rows", Shader::Conv3dWeight, "pack_rows", &p, &[dy, blocks], blocks.len())
            .with_cost(0, 4 * (dy.len() + blocks.len()) as u64);
        let mut ops = vec![self.geometry(out, pack)];
        // The subgroup kernel pads each group's invocations to a multiple of the subgroup size.
        let (entry, shader, align) = match scratch.choice.backward_weight {
            WeightKernels::RowsSubgroups => ("backward_weight_rows_subgroups", Shader::Conv3dSubgroups, scratch.subgroup_size),
            _ => ("backward_weight_rows", Shader::Conv3dWeight, 1),
        };
        // Two groups of output channels an invocation where there are two (the second a block
        // column further), as the wide kernels of forward and backward_input: on lavapipe
        // twice the channels for 1.47× the time (the loads of x dominate). Not a separate
        // tuner candidate, which would cost start-up; channels and columns remain for
        // adapters where the sums cost more.
        let wide = self.c_out > OC_TILE;
        let cols = self.c_in * self.taps();
        let threads = cols.div_ceil(4).next_multiple_of(align) * self.c_out.div_ceil(OC_TILE).div_ceil(if wide { 2 } else { 1 });
        for j in 0..self.row_blocks(out) {
            let r0 = j * per;
            let mut p = self.params(out, threads);
            p.r0 = r0 as u32;
            p.r_n = per.min(rows - r0) as u32;
            let view = blocks.view(j * BLOCK_FLOATS, BLOCK_FLOATS, "conv3d dy row block");
            let f = p.r_n as f64 / rows as f64;
            let op = Op::threads_spread("conv3d.backward_weight", shader, entry, &p, &[x, &view, dweight], threads, scratch.min_workgroup())
                .with_cost((self.macs_flops(out) as f64 * f) as u64, (self.cost_bytes(out) as f64 * f) as u64)
                .with_constant("ACCUMULATE", u32::from(j > 0))
                .with_constant("ROW_ALIGN", align as u32)
                .with_constant("WIDE", u32::from(wide));
            ops.push(self.geometry(out, op));
        }
        Ok(ops)
    }

    /// backward_weight with the samples kernel: one dispatch per sample, the first writing
    /// dweight and the others adding to it, each reading its sample's window of x in place or,
    /// where x does not allow that, of a copy made first.
    pub(super) fn backward_weight_samples(&self, out: Dims3, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let mut ops = vec![];
        let windows: Vec<Buffer> = match &scratch.samples {
            Some(copy) if copy.len() == self.samples_len() => {
                let stride = self.sample_stride();
                let mut p = self.params(out, copy.len());
                p.rows = stride as u32;
                ops.push(
                    Op::threads("conv3d.pack_samples", Shader::Conv3dWeight, "pack_samples", &p, &[x, copy], copy.len())
                        .with_cost(0, 4 * (x.len() + copy.len()) as u64),
                );
                (0..self.n).map(|n| copy.view(n * stride, BLOCK_FLOATS, "conv3d x window")).collect()
            }
            Some(_) => return Err(Error::shape(LAYER, "backward_weight's sample windows were made for another geometry")),
            None => (0..self.n)
                .map(|n| self.window(x, n))
                .collect::<Option<_>>()
                .ok_or_else(|| Error::shape(LAYER, "backward_weight's scratch reads x in place, but this x cannot be bound in windows"))?,
        };
        let groups = self.column_tiles() * self.c_out.div_ceil(OC_TILE);
        // samples_subgroups: 4 columns an invocation, each group's padded to the subgroup size.
        let align = scratch.subgroup_size;
        let threads = (self.c_in * self.taps()).div_ceil(4).next_multiple_of(align) * self.c_out.div_ceil(OC_TILE);
        let f = 1.0 / self.n as f64;
        for (n, window) in windows.iter().enumerate() {
            let mut p = self.params(out, groups);
            p.r0 = n as u32;
            let op = match scratch.choice.backward_weight {
                // x_window and put_dw read the geometry's constants.
                WeightKernels::SamplesSubgroups => self.geometry(
                    out,
                    Op::threads_spread(
                        "conv3d.backward_weight",
                        Shader::Conv3dSubgroups,
                        "backward_weight_samples_subgroups",
                        &p,
                        &[window, dy, dweight],
                        threads,
                        scratch.min_workgroup(),
                    )
                    .with_constant("ROW_ALIGN", align as u32),
                ),
                // x_window reads the geometry's constants.
                _ => self.geometry(out, Op::groups("conv3d.backward_weight", Shader::Conv3dWeight, "backward_weight_samples", &p, &[window, dy, dweight], groups)),
            };
            ops.push(
                op.with_cost((self.macs_flops(out) as f64 * f) as u64, (self.cost_bytes(out) as f64 * f) as u64)
                    .with_constant("ACCUMULATE", u32::from(n > 0)),
            );
        }
        Ok(ops)
    }
}
