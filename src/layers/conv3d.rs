//! 3D convolution, groups = 1, zero padding (PyTorch's `conv3d`): forward, and the gradients of
//! input, weight and bias.
//! Shapes: x [N, Cin, D, H, W], weight [Cout, Cin, kd, kh, kw], bias [Cout],
//! y [N, Cout, OD, OH, OW] with each output size from [`window_out`].
//! Shader: `shaders/conv3d.wgsl`.

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Needs, Op, Shader};

use super::{expect_len, expect_positive, u32_of, window_out, Dims3};

/// Output channels per forward invocation; must equal `CO_TILE` in shaders/conv3d.wgsl.
pub const CO_TILE: usize = 4;
/// Input channels per backward_input invocation; must equal `CI_TILE` in shaders/conv3d.wgsl.
pub const CI_TILE: usize = 4;
/// Channels per invocation of the tiled kernels (`OC` in shaders/conv3d.wgsl).
pub const OC_TILE: usize = 16;
/// Input channels per vec4 of backward_weight_tiled (`CI4` in the shader); a workgroup takes
/// two vec4s.
const CI4: usize = 4;
/// Floats in one uniform weight block: 64 KiB, the uniform binding size every WebGPU adapter
/// supports (`BLOCK` vec4s in the shader).
const BLOCK_FLOATS: usize = 16384;
/// Weight columns (reduction channel × tap) of OC_TILE floats per block; the last column's
/// slot holds the bias.
const BLOCK_COLS: usize = BLOCK_FLOATS / OC_TILE - 1;
/// Columns of a backward_input block, which has no bias.
const BWD_COLS: usize = BLOCK_FLOATS / OC_TILE;
/// Output rows (n, od, oh) per backward_weight_tiled workgroup: 16 per lane, so that a lane's
/// loop stays short and large layers still give the GPU many workgroups.
const ROWS_PER_SPLIT: usize = 64 * 16;

const LAYER: &str = "conv3d";

/// What every pass needs: the reductions' workgroups of 256 (RED) with 1 KiB of workgroup
/// memory, as every WebGPU device has.
const BASE_NEEDS: Needs = Needs { uniform_binding: 0, invocations: 256, workgroup_storage: 1024, subgroup_lanes: None };
/// The blocked kernels' 64 KiB uniform blocks.
const BLOCKS: Needs = Needs { uniform_binding: 4 * BLOCK_FLOATS as u64, invocations: 0, workgroup_storage: 0, subgroup_lanes: None };
/// Workgroup memory of the kernels that sum their lanes there (`lanes`: 1024 vec4s).
const LANES: Needs = Needs { uniform_binding: 0, invocations: 0, workgroup_storage: 16384, subgroup_lanes: None };
/// Subgroup operations, broadcasting from lanes 0..n.
const fn subgroups(n: u32) -> Needs {
    Needs { uniform_binding: 0, invocations: 0, workgroup_storage: 0, subgroup_lanes: Some(n) }
}

/// The geometry of one convolution: batch, channels, input size, and kernel, stride, padding
/// and dilation per axis (D, H, W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3d {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub input: Dims3,
    pub kernel: Dims3,
    pub stride: Dims3,
    pub padding: Dims3,
    pub dilation: Dims3,
    pub has_bias: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
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
    c0: u32,
    r0: u32,
    r_n: u32,
    rows: u32,
    tap: u32,
    _pad0: u32,
}


/// The kernels of forward or backward_input: weights in uniform blocks (16 channels × 2
/// or 4 positions an invocation), read by every lane (`Tiled`) or by 4 lanes of each subgroup
/// and broadcast to the others (`Subgroups`, devices with subgroups: a CPU adapter gathers a
/// uniform load lane by lane), or read directly (4 channels an invocation; also the only choice
/// for kernels of more taps than a block holds). The `Wide` kernels take 32 channels an
/// invocation from two groups' blocks at once, so each input an invocation loads serves twice
/// the products, for twice the sums it holds (a CPU adapter's time goes into the loads; on a
/// GPU the sums cost registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    Tiled,
    TiledWide,
    Subgroups,
    SubgroupsWide,
    Direct,
}

impl Kernels {
    fn name(self) -> &'static str {
        match self {
            Kernels::Tiled => "tiled",
            Kernels::TiledWide => "tiled_wide",
            Kernels::Subgroups => "subgroups",
            Kernels::SubgroupsWide => "subgroups_wide",
            Kernels::Direct => "direct",
        }
    }

    /// The shader and entry point of the blocked kernels' forward and backward_input.
    fn blocked(self) -> (Shader, &'static str, &'static str) {
        match self {
            Kernels::Subgroups | Kernels::SubgroupsWide => (Shader::Conv3dSubgroups, "forward_subgroups", "backward_input_subgroups"),
            _ => (Shader::Conv3d, "forward_tiled", "backward_input_tiled"),
        }
    }

    /// What the kernels need of a device (see [`Gpu::meets`]); the direct kernels need no more
    /// than every WebGPU device has.
    pub fn needs(self) -> Needs {
        match self {
            Kernels::Direct => BASE_NEEDS,
            Kernels::Tiled | Kernels::TiledWide => BASE_NEEDS.and(BLOCKS),
            // They broadcast each block column from lanes 0..3.
            Kernels::Subgroups | Kernels::SubgroupsWide => BASE_NEEDS.and(BLOCKS).and(subgroups(4)),
        }
    }

    /// Channel groups (of [`OC_TILE`]) an invocation computes.
    fn groups(self) -> usize {
        match self {
            Kernels::TiledWide | Kernels::SubgroupsWide => 2,
            _ => 1,
        }
    }

    fn subgroups(self) -> bool {
        matches!(self, Kernels::Subgroups | Kernels::SubgroupsWide)
    }

    /// Whether this kernel can pay off for a pass computing `channels` channels: the wide
    /// kernels only where there are two groups.
    pub fn suits(self, channels: usize) -> bool {
        self.groups() == 1 || channels > OC_TILE
    }
}

/// The kernels of backward_weight: 8 input channels at one tap a workgroup, or 8 consecutive
/// (channel, tap) columns (no idle lanes when there are fewer than 8 input channels), both
/// reducing over row splits; or `Rows`: dy packed into uniform blocks of rows, one dispatch a
/// block, each invocation 16 output channels × 4 columns (as forward computes); or `Samples`:
/// one dispatch per sample, its x read from a uniform block and dy as vec4s (layers whose
/// sample's x fits a block and whose output positions are a multiple of 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightKernels {
    Channels,
    Columns,
    Rows,
    /// `Rows` with each dy column loaded by 4 lanes and broadcast across the subgroup (see
    /// [`Kernels::Subgroups`]).
    RowsSubgroups,
    Samples,
    /// `Samples` with dy's 16 channels loaded by 2 lanes each and broadcast across the
    /// subgroup, each invocation 4 columns over all of the sample's positions (subgroups of
    /// at least 8 lanes).
    SamplesSubgroups,
}

impl WeightKernels {
    /// What the kernel needs of a device (see [`Gpu::meets`]); channels and columns need no
    /// more than every WebGPU device has.
    pub fn needs(self) -> Needs {
        match self {
            WeightKernels::Channels | WeightKernels::Columns => BASE_NEEDS.and(LANES),
            WeightKernels::Rows => BASE_NEEDS.and(BLOCKS),
            WeightKernels::RowsSubgroups => BASE_NEEDS.and(BLOCKS).and(subgroups(4)),
            WeightKernels::Samples => BASE_NEEDS.and(BLOCKS).and(LANES),
            // dy's 16 channels come from lanes 0..7.
            WeightKernels::SamplesSubgroups => BASE_NEEDS.and(BLOCKS).and(subgroups(8)),
        }
    }

    /// The same kernel with its dy shared across the subgroup, where there is one.
    pub fn with_subgroups(self) -> Option<WeightKernels> {
        match self {
            WeightKernels::Rows => Some(WeightKernels::RowsSubgroups),
            WeightKernels::Samples => Some(WeightKernels::SamplesSubgroups),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WeightKernels::Channels => "channels",
            WeightKernels::Columns => "columns",
            WeightKernels::Rows => "rows",
            WeightKernels::RowsSubgroups => "rows_subgroups",
            WeightKernels::Samples => "samples",
            WeightKernels::SamplesSubgroups => "samples_subgroups",
        }
    }
}

/// Which kernels each pass of one convolution runs with (see [`crate::tune`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvChoice {
    pub forward: Kernels,
    pub backward_input: Kernels,
    pub backward_weight: WeightKernels,
}

impl std::fmt::Display for ConvChoice {
    /// `forward/backward_input/backward_weight` kernels, e.g. `tiled/tiled/columns`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.forward.name(), self.backward_input.name(), self.backward_weight.name())
    }
}

/// Which kernels a convolution runs with, and the device memory they need, for one layer;
/// made by [`Conv3d::scratch`] once and passed to every pass.
#[derive(Clone, Debug)]
pub struct ConvScratch {
    pub choice: ConvChoice,
    /// Uniform weight blocks of forward and of backward_input, when they run tiled.
    forward_blocks: Option<Buffer>,
    backward_blocks: Option<Buffer>,
    /// backward_weight's per-split sums, when the rows are split.
    part: Option<Buffer>,
    /// backward_weight's row blocks of dy (the rows kernels).
    row_blocks: Option<Buffer>,
    /// x with each sample in its own uniform block (the samples kernel).
    samples: Option<Buffer>,
    /// The device's largest subgroup (1 without subgroups): the subgroup kernels of
    /// backward_input and backward_weight align their invocations to it.
    subgroup_size: usize,
}

impl ConvScratch {
    /// The smallest workgroup the tiled and rows kernels may take where few invocations
    /// spread over more workgroups (see Op::threads_spread): 8, or the subgroup size where
    /// larger (the subgroup kernels need whole subgroups).
    fn min_workgroup(&self) -> u32 {
        self.subgroup_size.max(8) as u32
    }
}

/// How reduction channels split into uniform blocks: `per` channels a block, `blocks` blocks
/// for each group of OC_TILE channels, `groups` groups; `used` floats of each block are read,
/// and block i starts `stride` floats into the buffer.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    per: usize,
    blocks: usize,
    groups: usize,
    used: usize,
    stride: usize,
}

/// Floats between the starts of two backward_input blocks: a multiple of 256 bytes, the largest
/// uniform offset alignment WebGPU allows an adapter to ask for.
const BLOCK_ALIGN: usize = 64;

impl Blocks {
    fn new(reduce: usize, channels: usize, taps: usize) -> Option<Blocks> {
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
    fn kw_major(c_out: usize, c_in: usize, kernel: Dims3) -> Option<Blocks> {
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
    fn floats(&self) -> usize {
        (self.groups * self.blocks - 1) * self.stride + BLOCK_FLOATS
    }
}

/// The workgroup size of backward_input's subgroup kernel, which gives each input row of
/// `per_row` invocations whole workgroups (so that the row, and the loops over taps around the
/// broadcasts, are uniform in the workgroup): a multiple of `align` (whole subgroups) up to 64,
/// the one that pads the rows least, the largest among equals.
fn row_workgroup(per_row: usize, align: usize) -> usize {
    let (mut best, mut wg) = (align, align);
    while wg * 2 <= 64 {
        wg *= 2;
        if per_row.next_multiple_of(wg) <= per_row.next_multiple_of(best) {
            best = wg;
        }
    }
    best
}

/// The product of `dims`, or `None` on overflow.
fn count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Conv3d {
    /// A convolution with PyTorch's defaults: stride 1, no padding, dilation 1, with bias.
    pub fn new(n: usize, c_in: usize, c_out: usize, input: Dims3, kernel: Dims3) -> Conv3d {
        Conv3d { n, c_in, c_out, input, kernel, stride: [1; 3], padding: [0; 3], dilation: [1; 3], has_bias: true }
    }

    pub fn with_stride(self, stride: Dims3) -> Conv3d {
        Conv3d { stride, ..self }
    }

    pub fn with_padding(self, padding: Dims3) -> Conv3d {
        Conv3d { padding, ..self }
    }

    pub fn with_dilation(self, dilation: Dims3) -> Conv3d {
        Conv3d { dilation, ..self }
    }

    pub fn with_bias(self, has_bias: bool) -> Conv3d {
        Conv3d { has_bias, ..self }
    }

    /// Validates the geometry and returns the output size (OD, OH, OW). Fails with
    /// [`Error::Shape`] for zero sizes, a dilated kernel larger than the padded input along
    /// some axis, or sizes the shader's 32-bit indices cannot address.
    pub fn output(&self) -> Result<Dims3> {
        expect_positive(LAYER, "batch and channels (n, c_in, c_out)", &[self.n, self.c_in, self.c_out])?;
        expect_positive(LAYER, "input size", &self.input)?;
        expect_positive(LAYER, "kernel size", &self.kernel)?;
        expect_positive(LAYER, "stride", &self.stride)?;
        expect_positive(LAYER, "dilation", &self.dilation)?;
        // Every single size fits in u32 first, so the arithmetic below cannot overflow usize.
        for (what, v) in [
            ("input size", self.input),
            ("kernel size", self.kernel),
            ("stride", self.stride),
            ("padding", self.padding),
            ("dilation", self.dilation),
        ] {
            for x in v {
                u32_of(LAYER, what, x)?;
            }
        }
        let mut out = [0; 3];
        for a in 0..3 {
            let (i, k, s, p, d) = (self.input[a], self.kernel[a], self.stride[a], self.padding[a], self.dilation[a]);
            out[a] = window_out(i, k, s, p, d).ok_or_else(|| {
                Error::shape(
                    LAYER,
                    format!(
                        "along axis {} the kernel spans {} (kernel {k}, dilation {d}) but the padded input is only {} \
                         (input {i}, padding {p} on each side)",
                        ["D", "H", "W"][a],
                        d * (k - 1) + 1,
                        i + 2 * p
                    ),
                )
            })?;
            u32_of(LAYER, "padded input size", i + 2 * p)?;
        }
        for (what, dims) in [
            ("x", self.x_shape()),
            ("y", self.y_dims(out)),
            ("weight", self.weight_shape()),
        ] {
            let len = count(&dims).ok_or_else(|| Error::shape(LAYER, format!("{what} {dims:?} has too many elements")))?;
            u32_of(LAYER, &format!("{what} element count"), len)?;
        }
        Ok(out)
    }

    fn y_dims(&self, out: Dims3) -> [usize; 5] {
        [self.n, self.c_out, out[0], out[1], out[2]]
    }

    /// x's shape [N, Cin, D, H, W].
    pub fn x_shape(&self) -> [usize; 5] {
        [self.n, self.c_in, self.input[0], self.input[1], self.input[2]]
    }

    /// y's shape [N, Cout, OD, OH, OW].
    pub fn y_shape(&self) -> Result<[usize; 5]> {
        Ok(self.y_dims(self.output()?))
    }

    /// The weight's shape [Cout, Cin, kd, kh, kw].
    pub fn weight_shape(&self) -> [usize; 5] {
        [self.c_out, self.c_in, self.kernel[0], self.kernel[1], self.kernel[2]]
    }

    /// The bias's length: Cout, or 0 without a bias.
    pub fn bias_len(&self) -> usize {
        if self.has_bias { self.c_out } else { 0 }
    }

    /// Validates the geometry and `x`'s and `y`'s lengths; returns the output size.
    fn check(&self, x_what: &str, x: &Buffer, y_what: &str, y: &Buffer) -> Result<Dims3> {
        let out = self.output()?;
        expect_len(LAYER, x_what, x, self.x_shape().iter().product())?;
        expect_len(LAYER, y_what, y, self.y_dims(out).iter().product())?;
        Ok(out)
    }

    fn params(&self, out: Dims3, total: usize) -> Params {
        // output() has checked that every size, and every count used as `total`, fits in u32.
        let u = |v: usize| v as u32;
        let [k_d, k_h, k_w] = self.kernel.map(u);
        let [s_d, s_h, s_w] = self.stride.map(u);
        let [p_d, p_h, p_w] = self.padding.map(u);
        let [dil_d, dil_h, dil_w] = self.dilation.map(u);
        let [in_d, in_h, in_w] = self.input.map(u);
        let [out_d, out_h, out_w] = out.map(u);
        Params {
            n: u(self.n),
            c_in: u(self.c_in),
            c_out: u(self.c_out),
            total: u(total),
            in_d,
            in_h,
            in_w,
            out_d,
            out_h,
            out_w,
            k_d,
            k_h,
            k_w,
            s_d,
            s_h,
            s_w,
            p_d,
            p_h,
            p_w,
            dil_d,
            dil_h,
            dil_w,
            c0: 0,
            r0: 0,
            r_n: 0,
            rows: 0,
            tap: 0,
            _pad0: 0,
        }
    }

    /// The kernels that usually win: tiled where the kernel's taps fit a uniform block (the
    /// subgroup kernels where the device has subgroups); for the weight gradient, from 8 input
    /// channels on the rows kernels (16 output channels or more; rows_subgroups where the
    /// device has subgroups) or channels, below that samples where it can run (samples_subgroups
    /// where the device has subgroups of 8 lanes or more), else columns (lavapipe, the
    /// article's conv2: rows 108 ms, channels 182 ms; conv1 (3 input channels): samples
    /// 210–224 ms a step, columns 403–427 ms, rows 212+ ms on a faster machine; later
    /// samples 228–241 ms, samples_subgroups 121–130 ms).
    pub fn default_choice(&self, gpu: &Gpu) -> ConvChoice {
        let (k, w) = self.candidates(gpu);
        // The first that suits each pass: wide where it has two channel groups.
        let first = |channels: usize| *k.iter().find(|k| k.suits(channels)).expect("direct suits every pass");
        let rows = if w.contains(&WeightKernels::RowsSubgroups) { WeightKernels::RowsSubgroups } else { WeightKernels::Rows };
        let weight = match (self.c_in >= 2 * CI4, w.contains(&WeightKernels::Rows), w.contains(&WeightKernels::Samples)) {
            (true, true, _) => rows,
            (true, false, _) => WeightKernels::Channels,
            (false, _, true) if w.contains(&WeightKernels::SamplesSubgroups) => WeightKernels::SamplesSubgroups,
            (false, _, true) => WeightKernels::Samples,
            (false, _, false) => WeightKernels::Columns,
        };
        ConvChoice { forward: first(self.c_out), backward_input: first(self.c_in), backward_weight: weight }
    }

    /// The kernels that can run this geometry on `gpu`, per pass (forward and backward_input
    /// share), the usual winners first: those whose needs the device meets (the direct and
    /// the channels and columns kernels always remain).
    pub fn candidates(&self, gpu: &Gpu) -> (Vec<Kernels>, Vec<WeightKernels>) {
        // The blocked kernels where the taps fit a block; the wide ones where a pass (forward or
        // backward_input) suits them. The subgroup kernels before their plain twins (the tuner
        // tries those only if the twins were close).
        let blocked = self.taps() <= BLOCK_COLS;
        let wide = Kernels::TiledWide.suits(self.c_in.max(self.c_out));
        let k = [Kernels::SubgroupsWide, Kernels::Subgroups, Kernels::TiledWide, Kernels::Tiled, Kernels::Direct]
            .into_iter()
            .filter(|&k| k == Kernels::Direct || (blocked && (k.groups() == 1 || wide) && gpu.meets(&k.needs())))
            .collect();
        let mut w = vec![];
        for k in self.weight_candidates() {
            w.extend(k.with_subgroups().filter(|t| gpu.meets(&t.needs())));
            if matches!(k, WeightKernels::Channels | WeightKernels::Columns) || gpu.meets(&k.needs()) {
                w.push(k);
            }
        }
        (k, w)
    }

    fn weight_candidates(&self) -> Vec<WeightKernels> {
        let mut w = vec![WeightKernels::Channels, WeightKernels::Columns];
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

    /// The buffers `choice` needs on `gpu`; an error if it cannot run this geometry.
    pub fn scratch_with(&self, gpu: &Gpu, choice: ConvChoice) -> Result<ConvScratch> {
        self.scratch_for(gpu, choice, None)
    }

    /// Floats past the end of x that let the samples kernel bind each sample's 64 KiB window
    /// of x in place (x allocated by [`Gpu::zeros_windowed`] with this slack); 0 where it
    /// cannot (not a candidate, or samples not 256-byte aligned).
    pub fn input_slack(&self) -> usize {
        let fits = self.weight_candidates().contains(&WeightKernels::Samples) && self.sample_len() % BLOCK_ALIGN == 0;
        if fits { BLOCK_FLOATS - self.sample_len() } else { 0 }
    }

    /// x's window for sample `n`, read in place, if x allows it.
    fn window(&self, x: &Buffer, n: usize) -> Option<Buffer> {
        if self.sample_len() % BLOCK_ALIGN != 0 {
            return None;
        }
        x.uniform_window(n * self.sample_len(), BLOCK_FLOATS, "conv3d x window")
    }

    /// The buffers `choice` needs on `gpu` (an error if it cannot run this geometry there).
    /// `x`: the input buffer the passes will read, if known: the samples kernel then reads its
    /// windows in place where it can (see [`Conv3d::input_slack`]) instead of a copy. The
    /// choice itself comes from [`crate::tune::scratch`] (tuned or default), which calls this.
    pub fn scratch_for(&self, gpu: &Gpu, choice: ConvChoice, x: Option<&Buffer>) -> Result<ConvScratch> {
        let out = self.output()?;
        for (name, needs) in [
            (choice.forward.name(), choice.forward.needs()),
            (choice.backward_input.name(), choice.backward_input.needs()),
            (choice.backward_weight.name(), choice.backward_weight.needs()),
        ] {
            if let Some(why) = gpu.unmet(&needs) {
                return Err(Error::shape(LAYER, format!("the {name} kernels need {why}")));
            }
        }
        let taps = self.taps();
        let blocks = |k: Kernels, b: Option<Blocks>, what: &str| -> Result<Option<Buffer>> {
            match (k, b) {
                (Kernels::Direct, _) => Ok(None),
                (_, Some(b)) => Ok(Some(gpu.zeros_uniform(&format!("conv3d {what} weight blocks"), b.floats())?)),
                (_, None) => Err(Error::shape(
                    LAYER,
                    format!("the tiled {what} kernels hold at most {BLOCK_COLS} taps, this kernel has {taps}"),
                )),
            }
        };
        let row_blocks = match choice.backward_weight {
            WeightKernels::Rows | WeightKernels::RowsSubgroups if self.c_out.div_ceil(OC_TILE) > BWD_COLS => {
                return Err(Error::shape(LAYER, format!("the rows kernels hold at most {} output channels, this layer has {}", BWD_COLS * OC_TILE, self.c_out)))
            }
            WeightKernels::Rows | WeightKernels::RowsSubgroups => Some(gpu.zeros_uniform("conv3d dy row blocks", self.row_blocks(out) * BLOCK_FLOATS)?),
            _ => None,
        };
        let samples = match choice.backward_weight {
            WeightKernels::Samples | WeightKernels::SamplesSubgroups if !self.weight_candidates().contains(&WeightKernels::Samples) => {
                return Err(Error::shape(
                    LAYER,
                    format!(
                        "the samples kernel needs one sample's x within {BLOCK_FLOATS} floats (this layer's: {}) and output positions a multiple of 4",
                        self.sample_len()
                    ),
                ))
            }
            // The last sample's window is the last to fit.
            WeightKernels::Samples | WeightKernels::SamplesSubgroups if x.is_some_and(|x| self.window(x, self.n - 1).is_some()) => None,
            WeightKernels::Samples | WeightKernels::SamplesSubgroups => Some(gpu.zeros_uniform("conv3d x per sample", self.samples_len())?),
            _ => None,
        };
        let splits = self.splits(out);
        let part = if splits > 1 && matches!(choice.backward_weight, WeightKernels::Channels | WeightKernels::Columns) {
            Some(gpu.zeros("conv3d dweight per split", splits * self.weight_len(), crate::gpu::DType::F32)?)
        } else {
            None
        };
        Ok(ConvScratch {
            choice,
            forward_blocks: blocks(choice.forward, Blocks::new(self.c_in, self.c_out, taps), "forward")?,
            backward_blocks: blocks(choice.backward_input, Blocks::kw_major(self.c_out, self.c_in, self.kernel), "backward_input")?,
            part,
            row_blocks,
            samples,
            subgroup_size: gpu.subgroup_size().unwrap_or(1) as usize,
        })
    }

    fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    fn weight_len(&self) -> usize {
        self.weight_shape().iter().product()
    }

    /// Rows (n, od, oh, ow) of dy in one uniform block of the rows kernels: a row is
    /// ⌈Cout/16⌉ columns of 16 floats.
    fn rows_per_block(&self) -> usize {
        (BWD_COLS / self.c_out.div_ceil(OC_TILE)).max(1)
    }

    /// The row blocks of the rows kernels.
    fn row_blocks(&self, out: Dims3) -> usize {
        (self.n * out.iter().product::<usize>()).div_ceil(self.rows_per_block())
    }

    /// Tiles of 8 weight columns k = ci·taps + tap (a workgroup's columns in the columns and
    /// samples kernels).
    fn column_tiles(&self) -> usize {
        (self.c_in * self.taps()).div_ceil(2 * CI4)
    }

    /// Floats of x per sample.
    fn sample_len(&self) -> usize {
        self.c_in * self.input.iter().product::<usize>()
    }

    /// Floats between two samples' windows in the samples kernel's copy of x: 256-byte
    /// multiples, so that each binds as a uniform block.
    fn sample_stride(&self) -> usize {
        self.sample_len().div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN
    }

    /// The samples kernel's copy of x: the last window still spans a whole block.
    fn samples_len(&self) -> usize {
        (self.n - 1) * self.sample_stride() + BLOCK_FLOATS
    }

    /// backward_weight's row splits.
    fn splits(&self, out: Dims3) -> usize {
        (self.n * out[0] * out[1]).div_ceil(ROWS_PER_SPLIT)
    }

    /// 2·N·Cout·positions·Cin·taps: the multiply-adds of forward, and of each gradient.
    fn macs_flops(&self, out: Dims3) -> u64 {
        2 * (self.n * self.c_out * out.iter().product::<usize>() * self.c_in * self.taps()) as u64
    }

    fn cost_bytes(&self, out: Dims3) -> u64 {
        4 * (self.x_shape().iter().product::<usize>() + self.weight_len() + self.y_dims(out).iter().product::<usize>()) as u64
    }

    /// The dispatches that pack `weight` (and the bias, forward only) into uniform blocks.
    fn pack(&self, out: Dims3, b: Blocks, forward: bool, weight: &Buffer, bias: Option<&Buffer>, blocks: &Buffer) -> Vec<Op> {
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
        let mut ops = vec![self.geometry(out, Op::threads(label, Shader::Conv3d, entry, &p, &[weight, blocks], floats).with_cost(0, bytes))];
        if let Some(bias) = bias {
            let mut p = self.params(out, b.groups * OC_TILE);
            p.rows = b.blocks as u32;
            ops.push(self.geometry(out, Op::threads("conv3d.pack_bias", Shader::Conv3d, "pack_bias", &p, &[bias, blocks], b.groups * OC_TILE)));
        }
        ops
    }

    /// The geometry as the tiled kernels' pipeline constants (`G_*` in shaders/conv3d.wgsl),
    /// the same values as [`Conv3d::params`].
    fn geometry(&self, out: Dims3, op: Op) -> Op {
        let p = self.params(out, 0);
        let values = [
            ("G_C_IN", p.c_in),
            ("G_C_OUT", p.c_out),
            ("G_IN_D", p.in_d),
            ("G_IN_H", p.in_h),
            ("G_IN_W", p.in_w),
            ("G_OUT_D", p.out_d),
            ("G_OUT_H", p.out_h),
            ("G_OUT_W", p.out_w),
            ("G_K_D", p.k_d),
            ("G_K_H", p.k_h),
            ("G_K_W", p.k_w),
            ("G_S_D", p.s_d),
            ("G_S_H", p.s_h),
            ("G_S_W", p.s_w),
            ("G_P_D", p.p_d),
            ("G_P_H", p.p_h),
            ("G_P_W", p.p_w),
            ("G_DIL_D", p.dil_d),
            ("G_DIL_H", p.dil_h),
            ("G_DIL_W", p.dil_w),
        ];
        values.into_iter().fold(op, |op, (k, v)| op.with_constant(k, v))
    }

    /// How the tiled kernels lay out an invocation's output positions (`LAYOUT` in the
    /// shader): (layout, extent along W, extent along N). Four positions per invocation where
    /// that leaves at most 1/16 more positions idle than the best two-position layout (each
    /// weight load then serves four products; lavapipe: forward ~25% faster), else two; among
    /// equals the first listed.
    fn layout(&self, out: Dims3) -> (u32, usize, usize) {
        let slots = |(_, w, n): (u32, usize, usize)| out[2].div_ceil(w) * w * self.n.div_ceil(n) * n;
        let best = |options: &[(u32, usize, usize)]| *options.iter().min_by_key(|&&o| slots(o)).expect("options");
        let two = best(&[(0, 2, 1), (1, 1, 2)]);
        let four = best(&[(2, 2, 2), (3, 1, 4), (4, 4, 1)]);
        if slots(four) * 16 <= slots(two) * 17 { four } else { two }
    }

    /// The smallest batch (at most 4) whose tiled kernels lay their positions out as this
    /// batch's: checking a kernel on it runs the pipelines this batch runs.
    pub fn check_batch(&self) -> usize {
        let Ok(out) = self.output() else { return 1 };
        (1..=self.n.min(4)).find(|&n| Conv3d { n, ..*self }.layout(out) == self.layout(out)).unwrap_or(1)
    }

    /// Invocations of the tiled kernels over `rows` rows of OW output positions per sample.
    fn invocations(&self, out: Dims3, rows: usize) -> usize {
        let (_, w, n) = self.layout(out);
        out[2].div_ceil(w) * rows * self.n.div_ceil(n)
    }

    /// The tiled forward for `pair` (1 or 2) channel groups from g on and block j of input
    /// channels; its cost is its share of the pass's.
    #[allow(clippy::too_many_arguments)]
    fn forward_tiled(&self, out: Dims3, b: Blocks, (g, pair, j): (usize, usize, usize), x: &Buffer, blocks: &Buffer, y: &Buffer, scratch: &ConvScratch) -> Op {
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

    /// y = conv(x, weight) (+ bias). `bias` must be given exactly when `has_bias`.
    pub fn forward(&self, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let out = self.check("x", x, "y", y)?;
        expect_len(LAYER, "weight", weight, self.weight_len())?;
        match (bias, self.has_bias) {
            (Some(b), true) => expect_len(LAYER, "bias", b, self.c_out)?,
            (None, false) => {}
            (Some(_), false) => return Err(Error::shape(LAYER, "a bias buffer was given to a convolution without bias")),
            (None, true) => return Err(Error::shape(LAYER, "the convolution has a bias but no bias buffer was given")),
        }
        let Some(blocks) = &scratch.forward_blocks else {
            return Ok(vec![self.forward_direct(out, x, weight, bias, y)]);
        };
        let b = Blocks::new(self.c_in, self.c_out, self.taps()).expect("scratch was made for this geometry");
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

    /// One invocation per output position and block of [`CO_TILE`] output channels.
    fn forward_direct(&self, out: Dims3, x: &Buffer, weight: &Buffer, bias: Option<&Buffer>, y: &Buffer) -> Op {
        let threads = self.n * self.c_out.div_ceil(CO_TILE) * out.iter().product::<usize>();
        let p = self.params(out, threads);
        let op = match bias {
            Some(b) => Op::threads("conv3d.forward", Shader::Conv3d, "forward_bias", &p, &[x, weight, y, b], threads),
            None => Op::threads("conv3d.forward", Shader::Conv3d, "forward", &p, &[x, weight, y], threads),
        };
        op.with_cost(self.macs_flops(out), self.cost_bytes(out))
    }

    /// dx = the gradient of x: for each input element, Σ over Cout and the taps that read it of
    /// dy·weight.
    pub fn backward_input(&self, dy: &Buffer, weight: &Buffer, dx: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let out = self.check("dx", dx, "dy", dy)?;
        expect_len(LAYER, "weight", weight, self.weight_len())?;
        let Some(blocks) = &scratch.backward_blocks else {
            // One invocation per input position and block of CI_TILE input channels.
            let threads = self.n * self.c_in.div_ceil(CI_TILE) * self.input.iter().product::<usize>();
            let p = self.params(out, threads);
            return Ok(vec![Op::threads("conv3d.backward_input", Shader::Conv3d, "backward_input", &p, &[dy, weight, dx], threads)
                .with_cost(self.macs_flops(out), self.cost_bytes(out))]);
        };
        let b = Blocks::kw_major(self.c_out, self.c_in, self.kernel).expect("scratch was made for this geometry");
        if blocks.len() != b.floats() {
            return Err(Error::shape(LAYER, "backward_input's weight blocks were made for another geometry"));
        }
        let mut ops = self.pack(out, b, false, weight, None, blocks);
        // dx = 0, then one dispatch per (group, kw, chunk of output channels) adds its
        // contributions.
        ops.push(Op::threads("conv3d.backward_input", Shader::Conv3d, "zero", &self.params(out, dx.len()), &[dx], dx.len()).with_cost(0, 4 * dx.len() as u64));
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

    /// dweight = Σ over N and output positions of x·dy: one workgroup per (tap, 8 input
    /// channels (or 8 (channel, tap) columns), 16 output channels, split of the output rows), then a sum over the splits
    /// in split order.
    pub fn backward_weight(&self, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let out = self.check("x", x, "dy", dy)?;
        let len = self.weight_len();
        expect_len(LAYER, "dweight", dweight, len)?;
        match scratch.choice.backward_weight {
            WeightKernels::Rows | WeightKernels::RowsSubgroups => return self.backward_weight_rows(out, x, dy, dweight, scratch),
            WeightKernels::Samples | WeightKernels::SamplesSubgroups => return self.backward_weight_samples(out, x, dy, dweight, scratch),
            _ => {}
        }
        let splits = self.splits(out);
        let part = match (&scratch.part, splits) {
            (_, 1) => dweight,
            (Some(part), _) if part.len() == splits * len => part,
            _ => return Err(Error::shape(LAYER, "backward_weight's scratch was made for another geometry")),
        };
        let (entry, tiles) = match scratch.choice.backward_weight {
            WeightKernels::Channels => ("backward_weight_tiled", self.c_in.div_ceil(2 * CI4) * self.taps()),
            WeightKernels::Columns => ("backward_weight_columns", self.column_tiles()),
            WeightKernels::Rows | WeightKernels::RowsSubgroups | WeightKernels::Samples | WeightKernels::SamplesSubgroups => unreachable!("handled above"),
        };
        let groups = splits * self.c_out.div_ceil(OC_TILE) * tiles;
        let mut p = self.params(out, groups);
        p.rows = ROWS_PER_SPLIT as u32;
        let op = Op::groups("conv3d.backward_weight", Shader::Conv3d, entry, &p, &[x, dy, part], groups)
            .with_cost(self.macs_flops(out), self.cost_bytes(out));
        let mut ops = vec![self.geometry(out, op)];
        if splits > 1 {
            let mut p = self.params(out, len);
            p.rows = splits as u32;
            ops.push(
                Op::threads("conv3d.backward_weight_sum", Shader::Conv3d, "backward_weight_sum", &p, &[part, dweight], len)
                    .with_cost((splits * len) as u64, 4 * ((splits + 1) * len) as u64),
            );
        }
        Ok(ops)
    }

    /// backward_weight with the rows kernels: pack dy into row blocks, then one dispatch per
    /// block, the first writing dweight and the others adding to it.
    fn backward_weight_rows(&self, out: Dims3, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let blocks = match &scratch.row_blocks {
            Some(b) if b.len() == self.row_blocks(out) * BLOCK_FLOATS => b,
            _ => return Err(Error::shape(LAYER, "backward_weight's row blocks were made for another geometry")),
        };
        let per = self.rows_per_block();
        let rows = self.n * out.iter().product::<usize>();
        let mut p = self.params(out, blocks.len());
        p.rows = per as u32;
        let pack = Op::threads("conv3d.pack_rows", Shader::Conv3d, "pack_rows", &p, &[dy, blocks], blocks.len())
            .with_cost(0, 4 * (dy.len() + blocks.len()) as u64);
        let mut ops = vec![self.geometry(out, pack)];
        // The subgroup kernel pads each group's invocations to a multiple of the subgroup size.
        let (entry, shader, align) = match scratch.choice.backward_weight {
            WeightKernels::RowsSubgroups => ("backward_weight_rows_subgroups", Shader::Conv3dSubgroups, scratch.subgroup_size),
            _ => ("backward_weight_rows", Shader::Conv3d, 1),
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
    fn backward_weight_samples(&self, out: Dims3, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let mut ops = vec![];
        let windows: Vec<Buffer> = match &scratch.samples {
            Some(copy) if copy.len() == self.samples_len() => {
                let stride = self.sample_stride();
                let mut p = self.params(out, copy.len());
                p.rows = stride as u32;
                ops.push(
                    Op::threads("conv3d.pack_samples", Shader::Conv3d, "pack_samples", &p, &[x, copy], copy.len())
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
                _ => self.geometry(out, Op::groups("conv3d.backward_weight", Shader::Conv3d, "backward_weight_samples", &p, &[window, dy, dweight], groups)),
            };
            ops.push(
                op.with_cost((self.macs_flops(out) as f64 * f) as u64, (self.cost_bytes(out) as f64 * f) as u64)
                    .with_constant("ACCUMULATE", u32::from(n > 0)),
            );
        }
        Ok(ops)
    }

    /// dbias = Σ over N and output positions of dy; one workgroup per output channel.
    pub fn backward_bias(&self, dy: &Buffer, dbias: &Buffer) -> Result<Op> {
        if !self.has_bias {
            return Err(Error::shape(LAYER, "backward_bias asked of a convolution without bias"));
        }
        let out = self.output()?;
        expect_len(LAYER, "dy", dy, self.y_dims(out).iter().product())?;
        expect_len(LAYER, "dbias", dbias, self.c_out)?;
        let p = self.params(out, self.c_out);
        let terms = self.n * out.iter().product::<usize>() * self.c_out;
        let entry = if out.iter().product::<usize>() % 4 == 0 { "backward_bias4" } else { "backward_bias" };
        Ok(Op::groups("conv3d.backward_bias", Shader::Conv3d, entry, &p, &[dy, dbias], self.c_out)
            .with_cost(terms as u64, 4 * (terms + self.c_out) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_err(c: Conv3d) -> String {
        match c.output() {
            Err(e @ Error::Shape { .. }) => e.to_string(),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn output_size_follows_pytorch() {
        let c = Conv3d::new(2, 3, 4, [5, 7, 9], [3, 2, 3])
            .with_stride([1, 2, 2])
            .with_padding([1, 0, 2])
            .with_dilation([1, 2, 1]);
        assert_eq!(c.output().unwrap(), [5, 3, 6]);
        assert_eq!(c.y_shape().unwrap(), [2, 4, 5, 3, 6]);
        // Stride larger than the kernel.
        let c = Conv3d::new(1, 1, 1, [7, 8, 10], [2, 2, 2]).with_stride([3, 3, 3]).with_padding([0, 2, 1]);
        assert_eq!(c.output().unwrap(), [2, 4, 4]);
    }

    #[test]
    fn layouts_leave_few_positions_idle() {
        let layout = |n: usize, input: Dims3, kernel: Dims3| {
            let c = Conv3d::new(n, 2, 3, input, kernel);
            c.layout(c.output().unwrap()).0
        };
        // The article's conv1 (OW 14): two along W in two samples; conv2 (OW 5): four samples.
        assert_eq!(layout(100, [16, 16, 16], [3, 3, 3]), 2);
        assert_eq!(layout(100, [7, 7, 7], [3, 3, 3]), 3);
        // One sample: four along W where OW is a multiple of 4, two where it is 2.
        assert_eq!(layout(1, [1, 1, 512], [1, 1, 1]), 4);
        assert_eq!(layout(1, [2, 1, 3], [1, 1, 2]), 0);
        // Two samples of one position: the two samples.
        assert_eq!(layout(2, [3, 4, 2], [2, 2, 2]), 1);
        // cnn3d check's cases hold every layout (see src/check/conv3d.rs).
        assert_eq!(layout(4, [7, 6, 5], [3, 3, 3]), 3);
        assert_eq!(layout(3, [8, 9, 10], [3, 3, 3]), 4);
    }

    #[test]
    fn the_check_batch_lays_positions_out_as_the_batch() {
        let batch = |n: usize, input: Dims3| Conv3d::new(n, 2, 3, input, [3, 3, 3]).check_batch();
        // The article's conv1 (two along W in two samples) and conv2 (four samples).
        assert_eq!(batch(100, [16, 16, 16]), 2);
        assert_eq!(batch(100, [7, 7, 7]), 4);
        // Three samples of conv2's shape take two positions along W: one sample does too.
        assert_eq!(batch(3, [7, 7, 7]), 1);
        for (n, input) in [(100, [16, 16, 16]), (100, [7, 7, 7]), (9, [5, 6, 7])] {
            let c = Conv3d::new(n, 2, 3, input, [3, 3, 3]);
            let out = c.output().unwrap();
            assert_eq!(Conv3d { n: c.check_batch(), ..c }.layout(out), c.layout(out));
        }
    }

    #[test]
    fn wide_kernels_suit_passes_of_two_channel_groups() {
        assert!(Kernels::SubgroupsWide.suits(17) && Kernels::TiledWide.suits(64));
        assert!(!Kernels::SubgroupsWide.suits(16) && !Kernels::TiledWide.suits(3));
        assert!(Kernels::Subgroups.suits(3) && Kernels::Tiled.suits(64) && Kernels::Direct.suits(1));
    }

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
                assert!(wg % align == 0 && wg <= 64);
                let other = (0..).map(|k| align << k).take_while(|&w| w <= 64);
                assert!(other.clone().all(|w| per_row.next_multiple_of(wg) <= per_row.next_multiple_of(w)), "{per_row} {align}: {wg}");
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        // Kernel larger than the padded input along H: 2·(4−1)+1 = 7 > 5 + 2·0.
        let e = shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [3, 4, 3]).with_dilation([1, 2, 1]));
        assert!(e.contains("axis H") && e.contains("spans 7"), "{e}");
        // Padding can make it fit.
        assert!(Conv3d::new(1, 1, 1, [5, 5, 5], [3, 4, 3]).with_dilation([1, 2, 1]).with_padding([0, 1, 0]).output().is_ok());
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [6, 1, 1])).contains("axis D"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 0, 1])).contains("kernel size"));
        assert!(shape_err(Conv3d::new(1, 0, 1, [5, 5, 5], [1, 1, 1])).contains("channels"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 0, 5], [1, 1, 1])).contains("input size"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_stride([1, 0, 1])).contains("stride"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_dilation([0, 1, 1])).contains("dilation"));
        assert!(shape_err(Conv3d::new(1, 1, 1, [5, 5, 5], [1, 1, 1]).with_padding([usize::MAX, 0, 0])).contains("padding"));
        assert!(shape_err(Conv3d::new(1 << 20, 64, 1, [64, 64, 64], [1, 1, 1])).contains("x"));
    }
}
