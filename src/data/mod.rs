//! Voxel datasets on the host: HDF5 files (the 3D MNIST layout and general N-D volumes), the
//! bundled synthetic digits, train/val/test splits, and the article's colormap preprocessing.
//!
//! Data stays one value per voxel (NCDHW, f32) on the host and on the GPU; the colormap is applied
//! when a batch is gathered on the GPU ([`Input::gather`]), so RGB volumes are never stored.
//!
//! The flow of a training run:
//! ```no_run
//! # fn main() -> cnn3d::Result<()> {
//! use cnn3d::data::{self, DataOptions, Input};
//! let opts = DataOptions::default();          // bundled digits, Oranges colormap
//! let ds = data::load(&opts)?;                // host copy, validated
//! let input = Input::new(&ds, opts.colormap, opts.article_reshape)?;
//! let in_channels = input.channels();         // 3 with a colormap: the model's input channels
//! # let _ = in_channels;
//! # Ok(()) }
//! ```

mod budget;
pub mod colormap;
#[cfg(feature = "hdf5")]
pub mod hdf5;
mod input;
pub mod synth;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::rng::Rng;

pub use budget::{DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_ENV};
pub use colormap::Colormap;
pub use input::{DeviceSplit, Input};
pub use synth::SynthOptions;

/// What went wrong with a data file or a data option. Every message names the file, the dataset
/// and what was expected.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{file}: no such file (expected an HDF5 file such as 3D MNIST's full_dataset_vectors.h5)")]
    MissingFile { file: String },

    #[error("{file}: cannot read the file: {message}")]
    Io { file: String, message: String },

    #[error("{file} is not an HDF5 file (no HDF5 signature in its first bytes); expected an HDF5 file such as 3D MNIST's full_dataset_vectors.h5")]
    NotHdf5 { file: String },

    #[error("{file}: cannot read {what}: {why} (HDF5 says: {message})")]
    Damaged { file: String, what: String, why: &'static str, message: String },

    #[error("{file}: no dataset {dataset:?}; the file has {present}. Name the datasets with --x-train-key, --y-train-key, --x-test-key, --y-test-key")]
    MissingDataset { file: String, dataset: String, present: String },

    #[error("{file}: dataset {dataset:?} holds {found}, expected {expected}")]
    Dtype { file: String, dataset: String, found: String, expected: String },

    #[error("{file}: dataset {dataset:?} has shape {shape:?}: {message}")]
    Shape { file: String, dataset: String, shape: Vec<usize>, message: String },

    #[error("{file}: dataset {dataset:?} has {voxels} voxels per sample, which is not a cube (n·n·n) and no shape was given; expected a cube such as 4096 = 16·16·16, or the volume's shape with --shape D,H,W")]
    NotCube { file: String, dataset: String, voxels: usize },

    #[error("{file}: dataset {dataset:?} is empty (shape {shape:?}); expected at least one sample with at least one voxel")]
    Empty { file: String, dataset: String, shape: Vec<usize> },

    #[error("{file}: dataset {x:?} has {nx} samples but {y:?} has {ny} labels; expected one label per sample")]
    LengthMismatch { file: String, x: String, y: String, nx: usize, ny: usize },

    #[error("{file}: dataset {dataset:?} has {count} label(s) outside 0..{classes} (the model's {classes} classes); the first is {dataset}[{index}] = {value}")]
    Label { file: String, dataset: String, count: usize, index: usize, value: i128, classes: usize },

    #[error("{file}: dataset {dataset:?} has {count} NaN or infinite value(s){note}; the first is {dataset}{index}. Expected finite numbers")]
    NonFinite { file: String, dataset: String, count: usize, index: String, note: &'static str },

    /// A dataset whose declared shape would take more memory to load than the cap allows
    /// (a few KB of compressed file can declare terabytes). Boxed: the largest variant.
    #[error("{0}")]
    TooBig(Box<TooBig>),

    /// An option that cannot work with this data, e.g. a split that leaves no training samples.
    #[error("{source_name}: {message}")]
    Option { source_name: String, message: String },

    /// An option value that does not parse, e.g. `--layout nhwdc`.
    #[error("{0}")]
    Parse(String),

    #[error("{file}: writing {what} failed: {message}")]
    Write { file: String, what: String, message: String },
}

/// What [`DataError::TooBig`] says: the dataset, its declared shape and element type, the
/// memory loading it would take and the cap it exceeds.
#[derive(Debug, Error)]
#[error("{file}: dataset {dataset:?} declares shape {shape:?} of {dtype}: loading it would take {bytes} bytes of memory ({detail}), above the cap of {cap} bytes ({cap_source}). Expected a file that fits; to load a larger one, set {env} to a larger number of bytes", env = MAX_DATA_BYTES_ENV)]
pub struct TooBig {
    pub file: String,
    pub dataset: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub bytes: u64,
    pub detail: String,
    pub cap: u64,
    pub cap_source: String,
}

/// How the voxels of a sample are laid out in the file's data dataset (N is the sample axis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// From the number of dimensions: 2 → flat, 4 → ndhw, 5 → channels-last or channels-first
    /// when the channel axis is the only small one.
    #[default]
    Auto,
    /// (N, V): one density per voxel, V = D·H·W in C order (the 3D MNIST layout).
    Flat,
    /// (N, D, H, W): one channel.
    Ndhw,
    /// (N, D, H, W, C): channels last.
    Ndhwc,
    /// (N, C, D, H, W): channels first.
    Ncdhw,
}

impl std::str::FromStr for Layout {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Layout::Auto),
            "flat" | "nv" | "vectors" => Ok(Layout::Flat),
            "ndhw" => Ok(Layout::Ndhw),
            "ndhwc" | "channels-last" | "channels_last" => Ok(Layout::Ndhwc),
            "ncdhw" | "channels-first" | "channels_first" => Ok(Layout::Ncdhw),
            _ => Err(DataError::Parse(format!(
                "unknown layout {s:?}: expected auto, flat (N, V), ndhw, ndhwc (channels-last) or ncdhw (channels-first)"
            ))),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Auto => "auto",
            Layout::Flat => "flat",
            Layout::Ndhw => "ndhw",
            Layout::Ndhwc => "ndhwc",
            Layout::Ncdhw => "ncdhw",
        })
    }
}

/// Parses a volume shape `D,H,W` (or `DxHxW`), e.g. `16,16,16`.
pub fn parse_dims(s: &str) -> Result<[usize; 3], DataError> {
    let bad = || DataError::Parse(format!("shape {s:?}: expected three positive sizes D,H,W such as 16,16,16"));
    let parts: Vec<&str> = s.split([',', 'x', 'X']).map(str::trim).collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut dims = [0; 3];
    for (d, p) in dims.iter_mut().zip(parts) {
        *d = p.parse().map_err(|_| bad())?;
        if *d == 0 {
            return Err(bad());
        }
    }
    Ok(dims)
}

/// Dataset names inside the file. The test keys are optional: when neither is given and the
/// file has neither `X_test` nor `y_test`, a test split is carved off the training data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Keys {
    pub x_train: String,
    pub y_train: String,
    /// `None`: `X_test` if the file has it.
    pub x_test: Option<String>,
    /// `None`: `y_test` if the file has it.
    pub y_test: Option<String>,
}

impl Default for Keys {
    fn default() -> Self {
        Keys { x_train: "X_train".into(), y_train: "y_train".into(), x_test: None, y_test: None }
    }
}

/// How to read an HDF5 file (independent of the command line; `cnn3d` fills it from flags).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadOptions {
    pub layout: Layout,
    /// The volume's (D, H, W) for flat vectors that are not cubes.
    pub shape: Option<[usize; 3]>,
    pub keys: Keys,
    /// The model's class count: every label must lie in `0..classes`.
    pub classes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { layout: Layout::Auto, shape: None, keys: Keys::default(), classes: 10 }
    }
}

/// Everything about where the data comes from and how it becomes the model's input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataOptions {
    /// An HDF5 file; `None` is the bundled dataset.
    pub data: Option<PathBuf>,
    pub load: LoadOptions,
    /// The bundled dataset's size and seed (used when `data` is `None`).
    pub synth: SynthOptions,
    /// Fraction of the training data held out as the test set, for files without test data
    /// (`None`: 0.2 for such files; an error for files that have test data).
    pub test_split: Option<f64>,
    /// Fraction of the training data held out for validation (0: no validation set).
    pub val_split: f64,
    /// Seeds the test and validation splits.
    pub seed: u64,
    pub colormap: Colormap,
    /// Reproduce the article's plain `reshape(N, 3, 16, 16, 16)` of channels-last RGB data
    /// instead of the correct transpose.
    pub article_reshape: bool,
}

/// The test fraction carved off a file that has only training data.
pub const DEFAULT_TEST_SPLIT: f64 = 0.2;

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            data: None,
            load: LoadOptions::default(),
            synth: SynthOptions::default(),
            test_split: None,
            val_split: 0.0,
            seed: 0,
            colormap: Colormap::Oranges,
            article_reshape: false,
        }
    }
}

/// Samples of one split: `x` holds `len · sample_len` f32 values (NCDHW per sample), `y` one
/// label per sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub x: Vec<f32>,
    pub y: Vec<u32>,
    /// C·D·H·W: values per sample.
    pub sample_len: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The values of sample `i`, C·D·H·W of them.
    pub fn sample(&self, i: usize) -> &[f32] {
        &self.x[i * self.sample_len..(i + 1) * self.sample_len]
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut x = Vec::with_capacity(indices.len() * self.sample_len);
        for &i in indices {
            x.extend_from_slice(self.sample(i));
        }
        Split { x, y: indices.iter().map(|&i| self.y[i]).collect(), sample_len: self.sample_len }
    }
}

/// A dataset on the host: one value per voxel and channel (C is 1 for density data such as
/// 3D MNIST), labels in `0..classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Where it came from, for messages: the file's path or `bundled digits (seed 0)`.
    pub source: String,
    pub channels: usize,
    /// (D, H, W).
    pub dims: [usize; 3],
    pub classes: usize,
    pub train: Split,
    /// Empty without a validation split.
    pub val: Split,
    pub test: Split,
}

impl Dataset {
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// Values per sample: C·D·H·W.
    pub fn sample_len(&self) -> usize {
        self.channels * self.voxels()
    }

    /// (N, C, D, H, W) of a split.
    pub fn shape(&self, split: &Split) -> [usize; 5] {
        [split.len(), self.channels, self.dims[0], self.dims[1], self.dims[2]]
    }

    /// The splits by name, train first.
    pub fn splits(&self) -> [(&'static str, &Split); 3] {
        [("train", &self.train), ("val", &self.val), ("test", &self.test)]
    }

    /// Shapes, value ranges and label histograms, as `cnn3d data inspect` prints them.
    pub fn summary(&self) -> Summary {
        let splits = self
            .splits()
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(name, s)| {
                let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
                for &v in &s.x {
                    let v = v as f64;
                    min = min.min(v);
                    max = max.max(v);
                    sum += v;
                }
                let mut histogram = vec![0usize; self.classes];
                for &l in &s.y {
                    histogram[l as usize] += 1;
                }
                SplitSummary {
                    name,
                    shape: self.shape(s),
                    min,
                    max,
                    mean: if s.x.is_empty() { 0.0 } else { sum / s.x.len() as f64 },
                    nonzero: s.x.iter().filter(|&&v| v != 0.0).count() as f64 / s.x.len().max(1) as f64,
                    label_histogram: histogram,
                }
            })
            .collect();
        Summary { source: self.source.clone(), channels: self.channels, dims: self.dims, classes: self.classes, splits }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub source: String,
    pub channels: usize,
    pub dims: [usize; 3],
    pub classes: usize,
    pub splits: Vec<SplitSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SplitSummary {
    pub name: &'static str,
    /// (N, C, D, H, W) after layout handling.
    pub shape: [usize; 5],
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Fraction of values that are not zero.
    pub nonzero: f64,
    /// Samples per class, `0..classes`.
    pub label_histogram: Vec<usize>,
}

/// Loads the data `opts` names — an HDF5 file, or the bundled digits — and carves the test and
/// validation splits.
pub fn load(opts: &DataOptions) -> crate::Result<Dataset> {
    let mut ds = match &opts.data {
        #[cfg(not(feature = "hdf5"))]
        Some(path) => {
            return Err(DataError::Option {
                source_name: file_name(path),
                message: "this build of cnn3d reads no HDF5 files (it was built without the `hdf5` feature); use the bundled digits".into(),
            }
            .into())
        }
        #[cfg(feature = "hdf5")]
        Some(path) => {
            let mut ds = hdf5::read(path, &opts.load)?;
            if ds.test.is_empty() {
                let f = opts.test_split.unwrap_or(DEFAULT_TEST_SPLIT);
                check_fraction("--test-split", f)?;
                let mut rng = Rng::new(opts.seed ^ 0x7E57);
                let (train, test) = carve(&ds.source, "--test-split", std::mem::take(&mut ds.train), f, &mut rng)?;
                ds.train = train;
                ds.test = test;
            } else if let Some(f) = opts.test_split {
                return Err(DataError::Option {
                    source_name: ds.source.clone(),
                    message: format!(
                        "--test-split {f}: the file has its own test data ({} samples); --test-split is for files with only training data",
                        ds.test.len()
                    ),
                }
                .into());
            }
            ds
        }
        None => {
            if opts.load.classes < synth::CLASSES {
                return Err(DataError::Option {
                    source_name: "bundled digits".into(),
                    message: format!("the bundled digits have {} classes, but the model has {}", synth::CLASSES, opts.load.classes),
                }
                .into());
            }
            let mut ds = synth::generate(&opts.synth)?;
            ds.classes = opts.load.classes;
            if let Some(f) = opts.test_split {
                return Err(DataError::Option {
                    source_name: ds.source.clone(),
                    message: format!("--test-split {f}: the bundled dataset has its own test set; set its size instead"),
                }
                .into());
            }
            ds
        }
    };
    check_fraction("--val-split", opts.val_split)?;
    if opts.val_split > 0.0 {
        let mut rng = Rng::new(opts.seed ^ 0x7A1);
        let (train, val) = carve(&ds.source, "--val-split", std::mem::take(&mut ds.train), opts.val_split, &mut rng)?;
        ds.train = train;
        ds.val = val;
    }
    Ok(ds)
}

fn check_fraction(flag: &str, f: f64) -> Result<(), DataError> {
    if !(0.0..1.0).contains(&f) {
        return Err(DataError::Parse(format!("{flag} {f}: expected a fraction in [0, 1)")));
    }
    Ok(())
}

/// Moves a seeded random `fraction` of `split`'s samples into a second split; both keep the
/// original sample order.
pub fn carve(source: &str, flag: &str, split: Split, fraction: f64, rng: &mut Rng) -> Result<(Split, Split), DataError> {
    let n = split.len();
    let k = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && (k == 0 || k >= n) {
        return Err(DataError::Option {
            source_name: source.to_string(),
            message: format!("{flag} {fraction} of {n} training samples leaves {k} held out and {} for training; expected at least one in each", n - k.min(n)),
        });
    }
    // Fisher–Yates: the first k of a seeded permutation are held out.
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut held: Vec<usize> = order[..k].to_vec();
    let mut kept: Vec<usize> = order[k..].to_vec();
    held.sort_unstable();
    kept.sort_unstable();
    Ok((split.select(&kept), split.select(&held)))
}

/// The display name of a file in messages.
pub(crate) fn file_name(path: &Path) -> String {
    path.display().to_string()
}
