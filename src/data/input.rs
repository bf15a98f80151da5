//! From a host [`Dataset`] to the model's input on the GPU: the device copy of a split (one
//! value per voxel), the colormap's table, and the gather dispatch of a batch.

use crate::error::{Error, Result};
use crate::gpu::{Buffer, Gpu, Op};
use crate::layers::gather::{self, Gather, Mode};

use super::{colormap, Colormap, DataError, Dataset, Split};

/// How a dataset's samples become the model's input (B, channels(), D, H, W).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub colormap: Colormap,
    pub article_reshape: bool,
    /// Channels of the data (1 for density volumes such as 3D MNIST).
    pub data_channels: usize,
    pub dims: [usize; 3],
}

/// One split on the device: values as [`Input::upload`] lays them out, and labels.
#[derive(Clone, Debug)]
pub struct DeviceSplit {
    pub data: Buffer,
    pub labels: Buffer,
    pub len: usize,
}

impl Input {
    /// Checks that the options fit the data: a colormap maps one channel, and the article's
    /// reshape is a reshape of the colormap's RGB.
    pub fn new(ds: &Dataset, colormap: Colormap, article_reshape: bool) -> Result<Input> {
        let fail = |message: String| Error::from(DataError::Option { source_name: ds.source.clone(), message });
        if colormap == Colormap::Oranges && ds.channels != 1 {
            return Err(fail(format!(
                "--colormap oranges maps one density per voxel, but the data has {} channels; use --colormap none",
                ds.channels
            )));
        }
        if article_reshape && colormap == Colormap::None {
            return Err(fail("--article-reshape reproduces the article's reshape of the colormap's RGB; it needs --colormap oranges".into()));
        }
        Ok(Input { colormap, article_reshape, data_channels: ds.channels, dims: ds.dims })
    }

    /// The model's input channels: 3 with a colormap, the data's channels without.
    pub fn channels(&self) -> usize {
        self.colormap.out_channels(self.data_channels)
    }

    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn mode(&self) -> Mode {
        match (self.colormap, self.article_reshape) {
            (Colormap::None, _) => Mode::Raw,
            (Colormap::Oranges, false) => Mode::Colormap,
            (Colormap::Oranges, true) => Mode::ArticleReshape,
        }
    }

    /// Uploads a split once; batches are then gathered from it on the GPU. For the colormap,
    /// each voxel's table entry from its sample's min-max scaled value (in f32, exactly as
    /// matplotlib), one byte a voxel ([`colormap::pack_codes`]); the raw f32 values without
    /// one. Fails naming the adapter's limit when the split does not fit one storage binding.
    pub fn upload(&self, gpu: &Gpu, split: &Split, name: &str) -> Result<DeviceSplit> {
        let label = format!("{name} data");
        let data = match self.colormap {
            Colormap::Oranges => {
                let codes: Vec<u32> =
                    split.x.chunks(split.sample_len.max(1)).flat_map(|s| colormap::pack_codes(&colormap::min_max_scale(s))).collect();
                gpu.upload_u32(&label, &codes)?
            }
            Colormap::None => gpu.upload_f32(&label, &split.x)?,
        };
        let labels = gpu.upload_u32(&format!("{name} labels"), &split.y)?;
        Ok(DeviceSplit { data, labels, len: split.len() })
    }

    /// The colormap's 256 × 3 RGB table on the device, `None` without a colormap.
    pub fn lut(&self, gpu: &Gpu) -> Result<Option<Buffer>> {
        match self.colormap {
            Colormap::Oranges => Ok(Some(gpu.upload_f32("colormap lut", &colormap::oranges_rgb())?)),
            Colormap::None => Ok(None),
        }
    }

    /// The dispatch that writes x (batch, channels(), D, H, W) and y (batch) for the `batch`
    /// sample indices in `indices` (u32, each < split.len; larger ones give zeros and label 0).
    pub fn gather(&self, batch: usize, split: &DeviceSplit, indices: &Buffer, lut: Option<&Buffer>, x: &Buffer, y: &Buffer) -> Result<Op> {
        let g = Gather { batch, samples: split.len, channels: self.data_channels, voxels: self.voxels(), mode: self.mode() };
        gather::forward(&g, &split.data, &split.labels, indices, lut, x, y)
    }

    /// The model's input for one sample, computed on the CPU: what the GPU gather writes.
    pub fn cpu(&self, sample: &[f32]) -> Vec<f32> {
        match self.colormap {
            Colormap::Oranges => colormap::to_input(sample, self.article_reshape),
            Colormap::None => sample.to_vec(),
        }
    }
}
