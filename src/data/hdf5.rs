//! Reading voxel datasets from HDF5 (crate `hdf5-metno` over the system libhdf5) and writing the
//! 3D MNIST layout.
//!
//! Data: `(N, V)` vectors (3D MNIST: V = 4096 = 16³), `(N, D, H, W)`, `(N, D, H, W, C)` or
//! `(N, C, D, H, W)`, as u8, f16, f32 or f64. Labels: `(N,)` (or `(N, 1)`) of any integer type.
//! Every failure names the file and the dataset and says what was expected.

use std::io::Read;
use std::path::Path;

use ::hdf5 as h5;
use h5::types::{FloatSize, IntSize, TypeDescriptor};
use serde::Serialize;

use super::budget::{Budget, DataType};
use super::{file_name, DataError, Dataset, Layout, LoadOptions, Split};

pub use super::budget::{DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_ENV};

/// One dataset in a file, as `cnn3d data inspect` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetInfo {
    /// Path inside the file, e.g. `X_train` or `train/volumes`.
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// The 8 bytes every HDF5 superblock starts with.
const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Opens `path` as HDF5, telling a missing file, a file that is not HDF5 and a damaged one apart.
pub fn open(path: &Path) -> Result<h5::File, DataError> {
    let file = file_name(path);
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile { file: file.clone() },
        _ => DataError::Io { file: file.clone(), message: e.to_string() },
    })?;
    if meta.is_dir() {
        return Err(DataError::Io { file, message: "it is a directory; expected an HDF5 file".into() });
    }
    if !has_signature(path, meta.len()).map_err(|e| DataError::Io { file: file.clone(), message: e.to_string() })? {
        return Err(DataError::NotHdf5 { file });
    }
    h5::File::open(path).map_err(|e| damaged(&file, "the file".into(), e))
}

/// A read that libhdf5 refused, with the likely reason.
fn damaged(file: &str, what: String, e: h5::Error) -> DataError {
    let message = e.to_string();
    let why = if message.contains("unable to lock file") {
        "another program has it open for writing (HDF5_USE_FILE_LOCKING=FALSE skips HDF5's lock)"
    } else {
        "the file is truncated or damaged"
    };
    DataError::Damaged { file: file.into(), what, why, message }
}

/// HDF5 looks for the superblock at byte 0, 512, 1024, 2048, … (after an optional user block).
fn has_signature(path: &Path, len: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let mut offset = 0u64;
    while offset + 8 <= len {
        let mut buf = [0u8; 8];
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut buf)?;
        if &buf == SIGNATURE {
            return Ok(true);
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
    Ok(false)
}

/// Every dataset in the file, depth first, with its shape and type.
pub fn list(path: &Path) -> Result<Vec<DatasetInfo>, DataError> {
    let f = open(path)?;
    let mut out = vec![];
    walk(&file_name(path), &f, "", &mut out)?;
    Ok(out)
}

fn walk(file: &str, group: &h5::Group, prefix: &str, out: &mut Vec<DatasetInfo>) -> Result<(), DataError> {
    let damaged = |e| damaged(file, format!("group {:?}", if prefix.is_empty() { "/" } else { prefix }), e);
    let mut names = group.member_names().map_err(damaged)?;
    names.sort();
    for name in names {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if let Ok(ds) = group.dataset(&name) {
            out.push(DatasetInfo { name: path, shape: ds.shape(), dtype: dtype_name(&ds) });
        } else if let Ok(g) = group.group(&name) {
            walk(file, &g, &path, out)?;
        }
    }
    Ok(())
}

fn dtype_name(ds: &h5::Dataset) -> String {
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(d) => d.to_string(),
        Err(_) => format!("an unsupported type ({} bytes per element)", ds.dtype().map(|t| t.size()).unwrap_or(0)),
    }
}

/// The dataset `key`, or an error listing the datasets the file does have.
fn dataset(f: &h5::File, file: &str, key: &str) -> Result<h5::Dataset, DataError> {
    f.dataset(key).map_err(|_| {
        let mut names = vec![];
        let _ = walk(file, f, "", &mut names);
        let present = if names.is_empty() {
            "no datasets".to_string()
        } else {
            let list: Vec<String> = names.iter().map(|d| format!("{} {:?} {}", d.name, d.shape, d.dtype)).collect();
            format!("these datasets: {}", list.join(", "))
        };
        DataError::MissingDataset { file: file.into(), dataset: key.into(), present }
    })
}

/// Reads a dataset in the layout `opts` describes: training data, and test data when the file
/// has it (an empty test split otherwise, for the caller to carve). A file whose datasets
/// declare more than [`MAX_DATA_BYTES_ENV`] (default [`DEFAULT_MAX_DATA_BYTES`], or the
/// available memory if less) is refused before anything is read.
pub fn read(path: &Path, opts: &LoadOptions) -> crate::Result<Dataset> {
    let file = file_name(path);
    let f = open(path)?;
    let keys = &opts.keys;
    let mut budget = Budget::new()?;
    let (train, channels, dims) = read_pair(&f, &file, &keys.x_train, &keys.y_train, opts, &mut budget)?;
    let x_test = keys.x_test.as_deref().unwrap_or("X_test");
    let y_test = keys.y_test.as_deref().unwrap_or("y_test");
    let given = keys.x_test.is_some() || keys.y_test.is_some();
    let test = if given || f.link_exists(x_test) || f.link_exists(y_test) {
        let (test, c, d) = read_pair(&f, &file, x_test, y_test, opts, &mut budget)?;
        if (c, d) != (channels, dims) {
            return Err(DataError::Shape {
                file,
                dataset: x_test.into(),
                shape: dataset(&f, "", x_test).map(|d| d.shape()).unwrap_or_default(),
                message: format!(
                    "its samples are {c} channel(s) of {d:?} voxels, but {:?}'s are {channels} channel(s) of {dims:?}; expected the same",
                    keys.x_train
                ),
            }
            .into());
        }
        test
    } else {
        Split { sample_len: train.sample_len, ..Default::default() }
    };
    Ok(Dataset { source: file, channels, dims, classes: opts.classes, train, val: Split { sample_len: channels * dims.iter().product::<usize>(), ..Default::default() }, test })
}

/// Reads one (data, labels) pair: validates types and shapes, converts the data to f32 NCDHW.
fn read_pair(
    f: &h5::File,
    file: &str,
    x_key: &str,
    y_key: &str,
    opts: &LoadOptions,
    budget: &mut Budget,
) -> Result<(Split, usize, [usize; 3]), DataError> {
    let xd = dataset(f, file, x_key)?;
    let yd = dataset(f, file, y_key)?;
    let shape = xd.shape();
    let dtype = data_dtype(file, x_key, &xd)?;
    if shape.len() < 2 || shape.len() > 5 || shape.len() == 3 {
        return Err(DataError::Shape {
            file: file.into(),
            dataset: x_key.into(),
            shape,
            message: "expected (N, V) vectors, (N, D, H, W), (N, D, H, W, C) or (N, C, D, H, W) volumes".into(),
        });
    }
    if shape.contains(&0) {
        return Err(DataError::Empty { file: file.into(), dataset: x_key.into(), shape });
    }
    let (layout, channels, dims) = resolve_layout(file, x_key, &shape, opts)?;
    let n = shape[0];
    budget.take(file, x_key, &shape, dtype, layout == Layout::Ndhwc)?;
    let labels = read_labels(file, y_key, &yd, opts.classes, n, x_key)?;

    let values = read_values(file, x_key, &xd, dtype)?;
    check_finite(file, x_key, &values, &shape, dtype)?;
    let x = match layout {
        Layout::Ndhwc => channels_last_to_first(&values, n, channels, dims.iter().product()),
        _ => values,
    };
    let sample_len = channels * dims.iter().product::<usize>();
    Ok((Split { x, y: labels, sample_len }, channels, dims))
}

fn data_dtype(file: &str, key: &str, ds: &h5::Dataset) -> Result<DataType, DataError> {
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Unsigned(IntSize::U1)) => Ok(DataType::U8),
        Ok(TypeDescriptor::Float(FloatSize::U2)) => Ok(DataType::F16),
        Ok(TypeDescriptor::Float(FloatSize::U4)) => Ok(DataType::F32),
        Ok(TypeDescriptor::Float(FloatSize::U8)) => Ok(DataType::F64),
        _ => Err(DataError::Dtype {
            file: file.into(),
            dataset: key.into(),
            found: dtype_name(ds),
            expected: "voxel values as uint8, float16, float32 or float64".into(),
        }),
    }
}

fn read_values(file: &str, key: &str, ds: &h5::Dataset, dtype: DataType) -> Result<Vec<f32>, DataError> {
    let damaged = |e| damaged(file, format!("dataset {key:?}"), e);
    Ok(match dtype {
        DataType::U8 => ds.read_raw::<u8>().map_err(damaged)?.into_iter().map(f32::from).collect(),
        DataType::F16 => ds.read_raw::<half::f16>().map_err(damaged)?.into_iter().map(f32::from).collect(),
        DataType::F32 => ds.read_raw::<f32>().map_err(damaged)?,
        // Rounds to f32; values beyond f32's range become infinite and are reported as such.
        DataType::F64 => ds.read_raw::<f64>().map_err(damaged)?.into_iter().map(|v| v as f32).collect(),
    })
}

/// Works out (layout, channels, (D, H, W)) from the dataset's shape and the options.
fn resolve_layout(file: &str, key: &str, shape: &[usize], opts: &LoadOptions) -> Result<(Layout, usize, [usize; 3]), DataError> {
    let err = |message: String| DataError::Shape { file: file.into(), dataset: key.into(), shape: shape.to_vec(), message };
    let layout = match (opts.layout, shape.len()) {
        (Layout::Auto, 2) => Layout::Flat,
        (Layout::Auto, 4) => Layout::Ndhw,
        (Layout::Auto, _) => {
            // 5 dimensions: the channel axis is the small one, if only one end is small.
            let (first, last) = (shape[1], shape[4]);
            if last <= 4 && first > 4 {
                Layout::Ndhwc
            } else if first <= 4 && last > 4 {
                Layout::Ncdhw
            } else {
                return Err(err("cannot tell channels-last (N, D, H, W, C) from channels-first (N, C, D, H, W); give --layout ndhwc or --layout ncdhw".into()));
            }
        }
        (l, _) => l,
    };
    let want = match layout {
        Layout::Flat => 2,
        Layout::Ndhw => 4,
        _ => 5,
    };
    if shape.len() != want {
        return Err(err(format!("--layout {layout} expects {want} dimensions, the dataset has {}", shape.len())));
    }
    let (channels, dims) = match layout {
        Layout::Flat => {
            let v = shape[1];
            let dims = match opts.shape {
                Some(d) => {
                    // Counted without wrapping: the flag can name any sizes.
                    let voxels = d.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x));
                    if voxels != Some(v) {
                        let n = voxels.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
                        return Err(err(format!("--shape {d:?} has {n} voxels, but each sample has {v}")));
                    }
                    d
                }
                None => {
                    let c = (v as f64).cbrt().round() as usize;
                    if c.checked_mul(c).and_then(|c2| c2.checked_mul(c)) != Some(v) {
                        return Err(DataError::NotCube { file: file.into(), dataset: key.into(), voxels: v });
                    }
                    [c, c, c]
                }
            };
            (1, dims)
        }
        Layout::Ndhw => (1, [shape[1], shape[2], shape[3]]),
        Layout::Ndhwc => (shape[4], [shape[1], shape[2], shape[3]]),
        _ => (shape[1], [shape[2], shape[3], shape[4]]),
    };
    if let Some(d) = opts.shape {
        if d != dims {
            return Err(err(format!("--shape {d:?} differs from the volumes' {dims:?}")));
        }
    }
    Ok((layout, channels, dims))
}

/// Labels as u32, each checked to lie in `0..classes`; (N,) or (N, 1) of any integer type.
fn read_labels(file: &str, key: &str, ds: &h5::Dataset, classes: usize, n: usize, x_key: &str) -> Result<Vec<u32>, DataError> {
    let shape = ds.shape();
    let desc = ds.dtype().and_then(|t| t.to_descriptor());
    if !matches!(desc, Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))) {
        return Err(DataError::Dtype {
            file: file.into(),
            dataset: key.into(),
            found: dtype_name(ds),
            expected: "class labels of an integer type (int8 … uint64)".into(),
        });
    }
    if !(shape.len() == 1 || shape.len() == 2 && shape[1] == 1) {
        return Err(DataError::Shape { file: file.into(), dataset: key.into(), shape, message: "expected (N,) class labels".into() });
    }
    if shape[0] != n {
        return Err(DataError::LengthMismatch { file: file.into(), x: x_key.into(), y: key.into(), nx: n, ny: shape[0] });
    }
    let damaged = |e| damaged(file, format!("dataset {key:?}"), e);
    let values: Vec<i128> = match desc {
        Ok(TypeDescriptor::Unsigned(_)) => ds.read_raw::<u64>().map_err(damaged)?.into_iter().map(i128::from).collect(),
        _ => ds.read_raw::<i64>().map_err(damaged)?.into_iter().map(i128::from).collect(),
    };
    let bad: Vec<usize> = (0..values.len()).filter(|&i| values[i] < 0 || values[i] >= classes as i128).collect();
    if let Some(&first) = bad.first() {
        return Err(DataError::Label { file: file.into(), dataset: key.into(), count: bad.len(), index: first, value: values[first], classes });
    }
    Ok(values.into_iter().map(|v| v as u32).collect())
}

fn check_finite(file: &str, key: &str, values: &[f32], shape: &[usize], dtype: DataType) -> Result<(), DataError> {
    let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
    if let Some((first, _)) = bad.next() {
        return Err(DataError::NonFinite {
            file: file.into(),
            dataset: key.into(),
            count: 1 + bad.count(),
            index: format!("{:?}", unravel(first, shape)),
            note: if dtype == DataType::F64 { " (or beyond float32's range)" } else { "" },
        });
    }
    Ok(())
}

/// A flat C-order index as a multi-index of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d;
        i /= d;
    }
    idx
}

/// (N, S, C) → (N, C, S).
fn channels_last_to_first(values: &[f32], n: usize, c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for i in 0..n {
        let base = i * s * c;
        for v in 0..s {
            for ch in 0..c {
                out[base + ch * s + v] = values[base + v * c + ch];
            }
        }
    }
    out
}

/// Writes `ds` in the 3D MNIST layout: `X_train` (N, V) float32 for one-channel data
/// ((N, C, D, H, W) otherwise), `y_train` (N,) int64, and `X_test`, `y_test` when the test split
/// is not empty. Deflate-compressed where libhdf5 has it. The validation split is not written.
pub fn write(path: &Path, ds: &Dataset) -> crate::Result<()> {
    let file = file_name(path);
    let fail = |what: &str| {
        let file = file.clone();
        let what = what.to_string();
        move |e: h5::Error| DataError::Write { file, what, message: e.to_string() }
    };
    let f = h5::File::create(path).map_err(fail("the file"))?;
    for (name, split) in [("train", &ds.train), ("test", &ds.test)] {
        if name == "test" && split.is_empty() {
            continue;
        }
        let (xk, yk) = (format!("X_{name}"), format!("y_{name}"));
        let n = split.len();
        let mut shape = vec![n];
        if ds.channels == 1 {
            shape.push(ds.voxels());
        } else {
            shape.extend([ds.channels, ds.dims[0], ds.dims[1], ds.dims[2]]);
        }
        let mut b = f.new_dataset::<f32>();
        if n > 0 && h5::filters::deflate_available() {
            b = b.chunk_min_kb(1024).deflate(4);
        }
        let x = b.shape(shape).create(xk.as_str()).map_err(fail(&xk))?;
        x.write_raw(split.x.as_slice()).map_err(fail(&xk))?;
        let y = f.new_dataset::<i64>().shape([n]).create(yk.as_str()).map_err(fail(&yk))?;
        let labels: Vec<i64> = split.y.iter().map(|&l| l as i64).collect();
        y.write_raw(labels.as_slice()).map_err(fail(&yk))?;
    }
    f.close().map_err(fail("the file"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_is_c_order() {
        assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel(7, &[5, 512]), vec![0, 7]);
    }

    #[test]
    fn channels_move_to_the_front() {
        // One sample, 2 voxels, 3 channels: (v0c0 v0c1 v0c2 v1c0 v1c1 v1c2).
        let x = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        assert_eq!(channels_last_to_first(&x, 1, 3, 2), vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
    }
}
