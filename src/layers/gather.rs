//! Gather: a batch's input activations from the device copy of a dataset, through the colormap
//! (or raw), and the batch's labels. Shader: `shaders/gather.wgsl`.
//!
//! Shapes: data (N, C, S) f32 with S = D·H·W, raw, or for a colormap (N, ⌈S/4⌉) u32 of table
//! entries four to a word ([`crate::data::colormap::pack_codes`]); labels (N); indices (B); lut (256, 3);
//! x (B, C_out, S) with C_out = 3 for a colormap and C raw; y (B).

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Op, Shader};

use super::{expect_len, u32_of};

const LAYER: &str = "gather";

/// How voxel values become input channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The values as they are, C channels.
    Raw,
    /// Through the lookup table, RGB moved to channels first (correct).
    Colormap,
    /// Through the lookup table, then the article's plain reshape of channels-last RGB.
    ArticleReshape,
}

/// One gather: `batch` samples out of `samples`, each `channels` × `voxels` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    pub batch: usize,
    pub samples: usize,
    pub channels: usize,
    pub voxels: usize,
    pub mode: Mode,
}

impl Gather {
    pub fn out_channels(&self) -> usize {
        match self.mode {
            Mode::Raw => self.channels,
            Mode::Colormap | Mode::ArticleReshape => 3,
        }
    }

    /// Elements of x: B · C_out · S.
    pub fn out_len(&self) -> usize {
        self.batch * self.out_channels() * self.voxels
    }

    /// u32 words per sample in the device copy of the data: C·S f32 values raw, ⌈S/4⌉ words of
    /// table entries for a colormap.
    pub fn data_len(&self) -> usize {
        match self.mode {
            Mode::Raw => self.channels * self.voxels,
            Mode::Colormap | Mode::ArticleReshape => self.voxels.div_ceil(4),
        }
    }

    /// The kernel's name in reports and profiles.
    pub fn kernel(&self) -> &'static str {
        match self.mode {
            Mode::Raw => "gather.forward_raw",
            Mode::Colormap => "gather.forward",
            Mode::ArticleReshape => "gather.forward_article",
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    samples: u32,
    in_len: u32,
    out_len: u32,
    article: u32,
    words: u32,
    _pad: [u32; 2],
}

/// `x[b]` = input of sample `indices[b]`, `y[b] = labels[indices[b]]`. `lut` (256 × 3 RGB) is needed
/// by the colormap modes and ignored by `Raw`.
pub fn forward(g: &Gather, data: &Buffer, labels: &Buffer, indices: &Buffer, lut: Option<&Buffer>, x: &Buffer, y: &Buffer) -> Result<Op> {
    if g.batch == 0 || g.voxels == 0 || g.channels == 0 {
        return Err(Error::shape(LAYER, format!("batch, channels and voxels must be positive, got {g:?}")));
    }
    expect_len(LAYER, "data", data, g.samples * g.data_len())?;
    let want = if g.mode == Mode::Raw { crate::gpu::DType::F32 } else { crate::gpu::DType::U32 };
    if data.dtype() != want {
        return Err(Error::shape(LAYER, format!("the data of a {} gather must be {want:?}, got {:?}", g.kernel(), data.dtype())));
    }
    expect_len(LAYER, "labels", labels, g.samples)?;
    expect_len(LAYER, "indices", indices, g.batch)?;
    expect_len(LAYER, "x", x, g.out_len())?;
    expect_len(LAYER, "y", y, g.batch)?;
    u32_of(LAYER, "data elements", g.samples * g.data_len())?;
    let p = Params {
        batch: u32_of(LAYER, "batch", g.batch)?,
        samples: u32_of(LAYER, "samples", g.samples)?,
        in_len: u32_of(LAYER, "values per sample", g.channels * g.voxels)?,
        out_len: u32_of(LAYER, "outputs per sample", g.out_channels() * g.voxels)?,
        article: (g.mode == Mode::ArticleReshape) as u32,
        words: u32_of(LAYER, "words per sample", g.data_len())?,
        _pad: [0; 2],
    };
    u32_of(LAYER, "batch outputs", g.out_len())?;
    let label = g.kernel().to_string();
    // Reads the chosen samples and writes the batch; the colormap bins each value and reads
    // its table entry (a few flops and one table read per output value).
    let (out, read) = (g.out_len() as u64, (g.batch * g.data_len()) as u64);
    let (flops, lut_bytes) = match g.mode {
        Mode::Raw => (0, 0),
        Mode::Colormap | Mode::ArticleReshape => (2 * out, 4 * out),
    };
    let bytes = 4 * (read + out + 2 * g.batch as u64) + lut_bytes;
    match g.mode {
        Mode::Raw => Ok(Op::threads(label, Shader::Gather, "forward_raw", &p, &[data, labels, indices, x, y], g.out_len()).with_cost(flops, bytes)),
        Mode::Colormap | Mode::ArticleReshape => {
            if g.channels != 1 {
                return Err(Error::shape(LAYER, format!("a colormap maps one channel, the data has {}", g.channels)));
            }
            let lut = lut.ok_or_else(|| Error::shape(LAYER, "the colormap modes need the lookup table"))?;
            expect_len(LAYER, "lut", lut, crate::data::colormap::LUT_SIZE * 3)?;
            // Four voxels an invocation where a channel's voxels come in whole words (and so
            // whole vec4s of x): lavapipe ~2× faster. Its 3·voxels/4 ≥ 3 invocations a sample
            // also cover the batch's labels.
            let (entry, threads) = match g.mode {
                Mode::Colormap if g.voxels.is_multiple_of(4) => ("forward4", g.out_len() / 4),
                _ => ("forward", g.out_len()),
            };
            Ok(Op::threads(label, Shader::Gather, entry, &p, &[data, labels, indices, x, y, lut], threads).with_cost(flops, bytes))
        }
    }
}
