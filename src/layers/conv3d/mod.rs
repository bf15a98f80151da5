//! 3D convolution, groups = 1, zero padding (PyTorch's `conv3d`): forward, and the gradients of
//! input, weight and bias.
//! Shapes: x `[N, Cin, D, H, W]`, weight `[Cout, Cin, kd, kh, kw]`, bias `[Cout]`,
//! y `[N, Cout, OD, OH, OW]` with each output size from [`crate::layers::window_out`].
//!
//! A reader's map. Each pass has several kernels, in families that each live in a Rust file
//! here beside the WGSL file of the same name in `shaders/conv3d/`:
//! - `geometry`: the convolution's sizes, validated, and the two forms the kernels read them in
//!   (a uniform per dispatch, pipeline constants for the tiled kernels); no kernels.
//! - `direct`: storage buffers only, every geometry, every device; and backward_bias.
//! - `tiled`: forward and backward_input with the weights in 64 KiB uniform blocks
//!   ([`Kernels::Tiled`], `TiledWide`, and with subgroups `Subgroups`, `SubgroupsWide`).
//! - `weight`: backward_weight's kernels ([`WeightKernels`]).
//! - `gemm`: implicit-GEMM kernels of all three passes, tiled through workgroup memory with a
//!   register block per invocation ([`Kernels::Gemm64x64`] and its siblings, [`GemmTile`]).
//! - `shaders/conv3d/subgroups.wgsl`: the tiled and weight kernels that share their loads
//!   across the subgroup (their Rust halves are in `tiled` and `weight`).
//!
//! Each kernel declares what it needs of a device ([`Kernels::needs`], [`WeightKernels::needs`]);
//! [`Conv3d::candidates`] keeps those the device meets. Which one runs is chosen above the
//! layers, by [`crate::tune`] (timed, or [`Conv3d::default_choice`]), and recorded in the
//! [`ConvScratch`] that every pass takes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Needs, Op, Shader};
use crate::layers::expect_len;

mod direct;
mod gemm;
mod geometry;
mod tiled;
mod weight;

pub use direct::{CI_TILE, CO_TILE};
pub use gemm::{GemmTile, TILE_128X64, TILE_32X32, TILE_64X64};
pub use geometry::Conv3d;
pub use tiled::OC_TILE;

use tiled::{Blocks, BLOCK_COLS, BLOCK_FLOATS, BWD_COLS};
use weight::CI4;

const LAYER: &str = "conv3d";

/// What every pass needs: the reductions' workgroups of 256 (RED) with 1 KiB of workgroup
/// memory, as every WebGPU device has.
const BASE_NEEDS: Needs = Needs { uniform_binding: 0, invocations: 256, workgroup_storage: 1024, subgroup_lanes: None, f32_activations: false };

/// Subgroup operations, broadcasting from lanes 0..n.
const fn subgroups(n: u32) -> Needs {
    Needs { uniform_binding: 0, invocations: 0, workgroup_storage: 0, subgroup_lanes: Some(n), f32_activations: false }
}

/// The kernels of forward or backward_input: weights in uniform blocks (16 channels × 2
/// or 4 positions an invocation), read by every lane (`Tiled`) or by 4 lanes of each subgroup
/// and broadcast to the others (`Subgroups`, devices with subgroups: a CPU adapter gathers a
/// uniform load lane by lane), or read directly (4 channels an invocation; also the only choice
/// for kernels of more taps than a block holds). The `Wide` kernels take 32 channels an
/// invocation from two groups' blocks at once, so each input an invocation loads serves twice
/// the products, for twice the sums it holds (a CPU adapter's time goes into the loads; on a
/// GPU the sums cost registers). The `Gemm` kernels (family `implicit_gemm`) compute the pass
/// as one matrix product tiled through workgroup memory, in three tile configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    Tiled,
    TiledWide,
    Subgroups,
    SubgroupsWide,
    Direct,
    #[serde(rename = "implicit_gemm_32x32")]
    Gemm32x32,
    #[serde(rename = "implicit_gemm_64x64")]
    Gemm64x64,
    #[serde(rename = "implicit_gemm_128x64")]
    Gemm128x64,
}

impl Kernels {
    /// Every kernel of forward and backward_input.
    pub const ALL: [Kernels; 8] = [
        Kernels::Tiled,
        Kernels::TiledWide,
        Kernels::Subgroups,
        Kernels::SubgroupsWide,
        Kernels::Direct,
        Kernels::Gemm32x32,
        Kernels::Gemm64x64,
        Kernels::Gemm128x64,
    ];

    /// The kernel's name in `check`, profiles and the tuning cache.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Tiled => "tiled",
            Kernels::TiledWide => "tiled_wide",
            Kernels::Subgroups => "subgroups",
            Kernels::SubgroupsWide => "subgroups_wide",
            Kernels::Direct => "direct",
            Kernels::Gemm32x32 => "implicit_gemm_32x32",
            Kernels::Gemm64x64 => "implicit_gemm_64x64",
            Kernels::Gemm128x64 => "implicit_gemm_128x64",
        }
    }

    /// The tile configuration of an implicit-GEMM kernel.
    pub fn tile(self) -> Option<GemmTile> {
        match self {
            Kernels::Gemm32x32 => Some(TILE_32X32),
            Kernels::Gemm64x64 => Some(TILE_64X64),
            Kernels::Gemm128x64 => Some(TILE_128X64),
            _ => None,
        }
    }

    /// The shader and entry point of the blocked kernels' forward and backward_input.
    fn blocked(self) -> (Shader, &'static str, &'static str) {
        match self {
            Kernels::Subgroups | Kernels::SubgroupsWide => (Shader::Conv3dSubgroups, "forward_subgroups", "backward_input_subgroups"),
            _ => (Shader::Conv3dTiled, "forward_tiled", "backward_input_tiled"),
        }
    }

    /// What the kernels need of a device (see [`Gpu::meets`]); the direct kernels need no more
    /// than every WebGPU device has.
    pub fn needs(self) -> Needs {
        match self {
            Kernels::Direct => direct::needs(),
            Kernels::Tiled | Kernels::TiledWide => tiled::needs(false),
            Kernels::Subgroups | Kernels::SubgroupsWide => tiled::needs(true),
            Kernels::Gemm32x32 | Kernels::Gemm64x64 | Kernels::Gemm128x64 => self.tile().expect("a GEMM kernel").needs(),
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
    /// kernels only where there are two groups; the GEMM kernels always (whether they are
    /// candidates at all, by their tiles' padding, is [`Conv3d::candidates`]' rule).
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
    /// The implicit GEMM (see [`Kernels::Gemm64x64`]): output channels × (input channel, tap)
    /// columns, reducing over splits of the batch's output positions.
    #[serde(rename = "implicit_gemm_32x32")]
    Gemm32x32,
    #[serde(rename = "implicit_gemm_64x64")]
    Gemm64x64,
    #[serde(rename = "implicit_gemm_128x64")]
    Gemm128x64,
}

impl WeightKernels {
    /// What the kernel needs of a device (see [`Gpu::meets`]); channels and columns need no
    /// more than every WebGPU device has.
    pub fn needs(self) -> Needs {
        weight::needs(self)
    }

    /// The same kernel with its dy shared across the subgroup, where there is one.
    pub fn with_subgroups(self) -> Option<WeightKernels> {
        match self {
            WeightKernels::Rows => Some(WeightKernels::RowsSubgroups),
            WeightKernels::Samples => Some(WeightKernels::SamplesSubgroups),
            _ => None,
        }
    }

    /// Every kernel of backward_weight.
    pub const ALL: [WeightKernels; 9] = [
        WeightKernels::Channels,
        WeightKernels::Columns,
        WeightKernels::Rows,
        WeightKernels::RowsSubgroups,
        WeightKernels::Samples,
        WeightKernels::SamplesSubgroups,
        WeightKernels::Gemm32x32,
        WeightKernels::Gemm64x64,
        WeightKernels::Gemm128x64,
    ];

    /// The kernel's name in `check`, profiles and the tuning cache.
    pub fn name(self) -> &'static str {
        match self {
            WeightKernels::Channels => "channels",
            WeightKernels::Columns => "columns",
            WeightKernels::Rows => "rows",
            WeightKernels::RowsSubgroups => "rows_subgroups",
            WeightKernels::Samples => "samples",
            WeightKernels::SamplesSubgroups => "samples_subgroups",
            WeightKernels::Gemm32x32 => "implicit_gemm_32x32",
            WeightKernels::Gemm64x64 => "implicit_gemm_64x64",
            WeightKernels::Gemm128x64 => "implicit_gemm_128x64",
        }
    }

    /// The tile configuration of an implicit-GEMM kernel.
    pub fn tile(self) -> Option<GemmTile> {
        match self {
            WeightKernels::Gemm32x32 => Some(TILE_32X32),
            WeightKernels::Gemm64x64 => Some(TILE_64X64),
            WeightKernels::Gemm128x64 => Some(TILE_128X64),
            _ => None,
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
/// made by [`crate::tune::scratch`] once and passed to every pass.
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
    /// The device's loop limit ([`Gpu::loop_limit`]): the GEMM weight gradient's splits keep
    /// within it.
    loop_limit: Option<u64>,
}

impl ConvScratch {
    /// The smallest workgroup the tiled and rows kernels may take where few invocations
    /// spread over more workgroups (see Op::threads_spread): 8, or the subgroup size where
    /// larger (the subgroup kernels need whole subgroups).
    fn min_workgroup(&self) -> u32 {
        self.subgroup_size.max(8) as u32
    }
}

impl Conv3d {
    /// The kernels that usually win: tiled where the kernel's taps fit a uniform block (the
    /// subgroup kernels where the device has subgroups); for the weight gradient, from 8 input
    /// channels on the rows kernels (16 output channels or more; rows_subgroups where the
    /// device has subgroups) or channels, below that samples where it can run (samples_subgroups
    /// where the device has subgroups of 8 lanes or more), else columns (lavapipe, the
    /// article's conv2: rows 108 ms, channels 182 ms; conv1 (3 input channels): samples
    /// 210–224 ms a step, columns 403–427 ms, rows 212+ ms on a faster machine; later
    /// samples 228–241 ms, samples_subgroups 121–130 ms).
    /// The implicit-GEMM kernels are never a default: they run where the tuner measured them
    /// faster (no GPU has measured them yet).
    pub fn default_choice(&self, gpu: &Gpu) -> ConvChoice {
        let (k, w) = self.candidates(gpu);
        // The first that suits each pass: wide where it has two channel groups.
        let first = |channels: usize| *k.iter().find(|k| k.tile().is_none() && k.suits(channels)).expect("direct suits every pass");
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
        // The GEMM kernels the larger tiles first (a smaller one's twin, see crate::tune).
        let gemm = [Kernels::Gemm128x64, Kernels::Gemm64x64, Kernels::Gemm32x32];
        let k = [Kernels::SubgroupsWide, Kernels::Subgroups, Kernels::TiledWide, Kernels::Tiled]
            .into_iter()
            .filter(|&k| blocked && (k.groups() == 1 || wide) && gpu.meets(&k.needs()))
            .chain(gemm.into_iter().filter(|k| gpu.meets(&k.needs()) && self.gemm_fits(gpu, *k) && k.tile().is_some_and(|t| self.gemm_suits(t))))
            .chain([Kernels::Direct])
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

    /// Whether the GEMM kernel `k` runs both forward's and backward_input's reductions within
    /// `gpu`'s loop limit (see [`Gpu::loop_limit`]; the weight gradient splits its own).
    fn gemm_fits(&self, gpu: &Gpu, k: Kernels) -> bool {
        let reduce = self.c_in.max(self.c_out) * self.taps();
        k.tile().is_none_or(|t| t.fits(reduce, gpu.loop_limit()))
    }

    /// The buffers `choice` needs on `gpu`; an error if it cannot run this geometry.
    pub fn scratch_with(&self, gpu: &Gpu, choice: ConvChoice) -> Result<ConvScratch> {
        self.scratch_for(gpu, choice, None)
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
        for k in [choice.forward, choice.backward_input] {
            if !self.gemm_fits(gpu, k) {
                let limit = gpu.loop_limit().unwrap_or_default();
                return Err(Error::shape(LAYER, format!("the {} kernels would loop past this device's limit of {limit} iterations an invocation", k.name())));
            }
        }
        let taps = self.taps();
        let blocks = |k: Kernels, b: Option<Blocks>, what: &str| -> Result<Option<Buffer>> {
            match (k, b) {
                (Kernels::Direct | Kernels::Gemm32x32 | Kernels::Gemm64x64 | Kernels::Gemm128x64, _) => Ok(None),
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
        let splits = match choice.backward_weight.tile() {
            Some(tile) => self.gemm_splits(out, tile, gpu.loop_limit()).0,
            None if matches!(choice.backward_weight, WeightKernels::Channels | WeightKernels::Columns) => self.splits(out),
            None => 1,
        };
        let part = if splits > 1 { Some(gpu.zeros("conv3d dweight per split", splits * self.weight_len(), crate::gpu::DType::F32)?) } else { None };
        Ok(ConvScratch {
            choice,
            forward_blocks: blocks(choice.forward, Blocks::new(self.c_in, self.c_out, taps), "forward")?,
            backward_blocks: blocks(choice.backward_input, Blocks::kw_major(self.c_out, self.c_in, self.kernel), "backward_input")?,
            part,
            row_blocks,
            samples,
            subgroup_size: gpu.subgroup_size().unwrap_or(1) as usize,
            loop_limit: gpu.loop_limit(),
        })
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
        if let Some(tile) = scratch.choice.forward.tile() {
            return Ok(vec![self.forward_gemm(out, tile, x, weight, bias, y)]);
        }
        match &scratch.forward_blocks {
            None => Ok(vec![self.forward_direct(out, x, weight, bias, y)]),
            Some(blocks) => self.forward_blocked(out, x, weight, bias, y, blocks, scratch),
        }
    }

    /// dx = the gradient of x: for each input element, Σ over Cout and the taps that read it of
    /// dy·weight.
    pub fn backward_input(&self, dy: &Buffer, weight: &Buffer, dx: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let out = self.check("dx", dx, "dy", dy)?;
        expect_len(LAYER, "weight", weight, self.weight_len())?;
        if let Some(tile) = scratch.choice.backward_input.tile() {
            return Ok(vec![self.backward_input_gemm(out, tile, dy, weight, dx)]);
        }
        match &scratch.backward_blocks {
            None => Ok(vec![self.backward_input_direct(out, dy, weight, dx)]),
            Some(blocks) => self.backward_input_blocked(out, dy, weight, dx, blocks, scratch),
        }
    }

    /// dweight = Σ over N and output positions of x·dy, with the kernels of `scratch` (see
    /// [`WeightKernels`]).
    pub fn backward_weight(&self, x: &Buffer, dy: &Buffer, dweight: &Buffer, scratch: &ConvScratch) -> Result<Vec<Op>> {
        let out = self.check("x", x, "dy", dy)?;
        expect_len(LAYER, "dweight", dweight, self.weight_len())?;
        match scratch.choice.backward_weight {
            WeightKernels::Rows | WeightKernels::RowsSubgroups => self.backward_weight_rows(out, x, dy, dweight, scratch),
            WeightKernels::Samples | WeightKernels::SamplesSubgroups => self.backward_weight_samples(out, x, dy, dweight, scratch),
            WeightKernels::Channels | WeightKernels::Columns => self.backward_weight_split(out, x, dy, dweight, scratch),
            WeightKernels::Gemm32x32 | WeightKernels::Gemm64x64 | WeightKernels::Gemm128x64 => {
                let tile = scratch.choice.backward_weight.tile().expect("a GEMM kernel");
                self.backward_weight_gemm(out, tile, x, dy, dweight, scratch)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_kernels_suit_passes_of_two_channel_groups() {
        assert!(Kernels::SubgroupsWide.suits(17) && Kernels::TiledWide.suits(64));
        assert!(!Kernels::SubgroupsWide.suits(16) && !Kernels::TiledWide.suits(3));
        assert!(Kernels::Subgroups.suits(3) && Kernels::Tiled.suits(64) && Kernels::Direct.suits(1));
    }
}
