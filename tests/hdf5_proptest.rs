//! Property test of the HDF5 reader: files written through the `hdf5` crate with random shapes
//! (every rank, empty dimensions), value types (u8, f16, f32, f64 and integers, where voxels
//! must be u8 or floats and labels integers), chunking, shuffle and deflate, NaNs, labels out
//! of range, and missing pieces (no labels, no data, half a test split, mismatched lengths).
//! Reading must never panic; a refusal must be a `cnn3d::Error::Data` naming the file and,
//! where it is about a dataset, one of the file's datasets; a file it takes must be a dataset
//! the model can train on.

use std::path::Path;

use cnn3d::data::{self, DataError, DataOptions};
use cnn3d::rng::Rng;
use proptest::prelude::*;

/// Element types the writer uses: those the reader takes for voxels (u8, f16, f32, f64) or
/// labels (integers), and others.
#[derive(Clone, Copy, Debug)]
enum Ty {
    U8,
    I8,
    U16,
    I32,
    I64,
    U64,
    F16,
    F32,
    F64,
}

const TYPES: [Ty; 9] = [Ty::U8, Ty::I8, Ty::U16, Ty::I32, Ty::I64, Ty::U64, Ty::F16, Ty::F32, Ty::F64];

/// One dataset as written: its type, shape, storage, and how its values are drawn.
#[derive(Clone, Debug)]
struct Ds {
    ty: Ty,
    shape: Vec<usize>,
    /// Chunked (each chunk dimension 1..=the dataset's), with deflate at this level if some.
    chunked: Option<(Vec<usize>, Option<u8>, bool)>,
    /// Values: floats in [-1, 1], u8 and u16 in 0..256, other integers (labels) in 0..10;
    /// where `bad`, one NaN among floats and labels from -1 to 11 (10 classes).
    seed: u64,
    bad: bool,
    /// Whether it holds labels (integer values in 0..10), else voxels.
    labels: bool,
}

fn values(d: &Ds, len: usize) -> Vec<f64> {
    let mut rng = Rng::new(d.seed);
    let mut v: Vec<f64> = (0..len)
        .map(|_| match d.ty {
            Ty::F16 | Ty::F32 | Ty::F64 if !d.labels => rng.uniform(-1.0, 1.0),
            Ty::U8 | Ty::U16 if !d.labels => rng.below(256) as f64,
            _ if d.bad => rng.below(13) as f64 - 1.0,
            _ => rng.below(10) as f64,
        })
        .collect();
    if d.bad && len > 0 && !d.labels && matches!(d.ty, Ty::F16 | Ty::F32 | Ty::F64) {
        let i = rng.below(len as u64) as usize;
        v[i] = f64::NAN;
    }
    v
}

fn write_as<T: hdf5::H5Type>(f: &hdf5::File, name: &str, d: &Ds, data: Vec<T>) -> hdf5::Result<()> {
    let mut b = f.new_dataset::<T>();
    if let Some((chunk, deflate, shuffle)) = &d.chunked {
        b = b.chunk(chunk.clone());
        if *shuffle {
            b = b.shuffle();
        }
        if let Some(level) = deflate {
            b = b.deflate(*level);
        }
    }
    let ds = b.shape(d.shape.clone()).create(name)?;
    ds.write_raw(&data)
}

fn write(f: &hdf5::File, name: &str, d: &Ds) -> hdf5::Result<()> {
    let v = values(d, d.shape.iter().product());
    match d.ty {
        Ty::U8 => write_as(f, name, d, v.iter().map(|&x| x as u8).collect()),
        Ty::I8 => write_as(f, name, d, v.iter().map(|&x| x as i8).collect()),
        Ty::U16 => write_as(f, name, d, v.iter().map(|&x| x as u16).collect()),
        Ty::I32 => write_as(f, name, d, v.iter().map(|&x| x as i32).collect()),
        Ty::I64 => write_as(f, name, d, v.iter().map(|&x| x as i64).collect()),
        Ty::U64 => write_as(f, name, d, v.iter().map(|&x| x as u64).collect()),
        Ty::F16 => write_as(f, name, d, v.iter().map(|&x| half::f16::from_f64(x)).collect()),
        Ty::F32 => write_as(f, name, d, v.iter().map(|&x| x as f32).collect()),
        Ty::F64 => write_as(f, name, d, v),
    }
}

/// A shape for the voxels: flat (N, V) with V a cube or not, (N, D, H, W), five dimensions,
/// or any rank from 0 to 6; dimensions small, some 0.
fn x_shape() -> impl Strategy<Value = Vec<usize>> {
    let n = prop_oneof![1 => Just(0usize), 1 => Just(1usize), 8 => 2usize..6];
    prop_oneof![
        4 => (n.clone(), prop::sample::select(vec![1usize, 8, 27, 8, 27, 5, 0])).prop_map(|(n, v)| vec![n, v]),
        3 => (n.clone(), prop::collection::vec(1usize..4, 3)).prop_map(|(n, s)| [vec![n], s].concat()),
        // Channels last or first (the channel axis the one small end), or either end small.
        3 => (n, 5usize..7, prop::collection::vec(1usize..4, 2), prop_oneof![4 => 1usize..5, 1 => 5usize..8], any::<bool>()).prop_map(|(n, d, hw, c, last)| {
            if last { vec![n, d, hw[0], hw[1], c] } else { vec![n, c, hw[0], hw[1], d] }
        }),
        2 => prop::collection::vec(0usize..4, 0..7),
    ]
}

/// The labels' shape for `n` samples: (N,), (N, 1), one too many or too few, (N, 2), or any.
fn y_shape(n: usize, kind: u8, any: Vec<usize>) -> Vec<usize> {
    match kind % 13 {
        0..=7 => vec![n],
        8 => vec![n, 1],
        9 => vec![n + 1],
        10 => vec![n.saturating_sub(1)],
        11 => vec![n, 2],
        _ => any,
    }
}

/// A dataset of `shape`, mostly of a type that suits it (`usual`).
fn ds(shape: Vec<usize>, usual: Vec<Ty>, labels: bool) -> impl Strategy<Value = Ds> {
    let ty = prop_oneof![5 => prop::sample::select(usual), 1 => prop::sample::select(TYPES.to_vec())];
    let chunk_shape = shape.clone();
    (ty, any::<u64>(), prop::bool::weighted(0.05), prop::option::of((prop::collection::vec(any::<usize>(), shape.len()), prop::option::of(0u8..9), any::<bool>())))
        .prop_map(move |(ty, seed, bad, chunked)| {
            // Chunks need a dimension ≥ 1 each, within the dataset's; scalars are contiguous.
            let chunked = chunked
                .filter(|_| !chunk_shape.is_empty() && !chunk_shape.contains(&0))
                .map(|(c, deflate, shuffle)| (c.iter().zip(&chunk_shape).map(|(c, d)| 1 + c % d).collect(), deflate, shuffle));
            Ds { ty, shape: chunk_shape.clone(), chunked, seed, bad, labels }
        })
}

/// Data and labels, as written (`None`: missing).
type Pair = (Option<Ds>, Option<Ds>);

/// Data of shape `xs` and labels for its samples; either may be missing.
fn pair(xs: Vec<usize>) -> impl Strategy<Value = Pair> {
    (any::<u8>(), prop::collection::vec(0usize..4, 0..4), prop::bool::weighted(0.95), prop::bool::weighted(0.95)).prop_flat_map(
        move |(kind, any, has_x, has_y)| {
            let n = xs.first().copied().unwrap_or(1);
            let x = ds(xs.clone(), vec![Ty::U8, Ty::F16, Ty::F32, Ty::F64], false);
            let y = ds(y_shape(n, kind, any), vec![Ty::U8, Ty::I8, Ty::I32, Ty::I64, Ty::U64], true);
            (x.prop_map(move |x| has_x.then_some(x)), y.prop_map(move |y| has_y.then_some(y)))
        },
    )
}

/// A training pair, and a test pair mostly of the same sample shape (another N).
fn file() -> impl Strategy<Value = (Pair, Pair)> {
    (x_shape(), 1usize..5, prop::bool::weighted(0.8), x_shape()).prop_flat_map(|(xs, n, same, other)| {
        let ts = match (same, xs.is_empty()) {
            (true, false) => [vec![n], xs[1..].to_vec()].concat(),
            _ => other,
        };
        (pair(xs), pair(ts))
    })
}

/// The datasets a file may hold, for checking what an error names.
const KEYS: [&str; 4] = ["X_train", "y_train", "X_test", "y_test"];

/// Reads `path` as `cnn3d` does, and judges the outcome.
fn read_and_judge(path: &Path) -> Result<(), TestCaseError> {
    let file = path.display().to_string();
    // Listing the file (`cnn3d data inspect`) never panics either.
    let _ = data::hdf5::list(path);
    let opts = DataOptions { data: Some(path.to_path_buf()), ..Default::default() };
    match data::load(&opts) {
        Ok(ds) => {
            let sample_len = ds.channels * ds.dims.iter().product::<usize>();
            for (name, s) in [("train", &ds.train), ("test", &ds.test)] {
                prop_assert_eq!(s.sample_len, sample_len, "{} split", name);
                prop_assert_eq!(s.x.len(), s.len() * sample_len, "{} split", name);
                prop_assert!(s.y.iter().all(|&y| (y as usize) < ds.classes), "{name} labels beyond {} classes", ds.classes);
                prop_assert!(s.x.iter().all(|v| v.is_finite()), "{name} has a non-finite value");
            }
            prop_assert!(!ds.train.is_empty() && sample_len > 0, "an empty training split was taken");
        }
        Err(cnn3d::Error::Data(e)) => {
            let message = e.to_string();
            prop_assert!(message.contains(&file), "the error does not name the file {file}: {message}");
            let named = match &*e {
                DataError::MissingDataset { dataset, .. }
                | DataError::Dtype { dataset, .. }
                | DataError::Shape { dataset, .. }
                | DataError::NotCube { dataset, .. }
                | DataError::Empty { dataset, .. }
                | DataError::Label { dataset, .. }
                | DataError::NonFinite { dataset, .. }
                => vec![dataset.as_str()],
                DataError::TooBig(t) => vec![t.dataset.as_str()],
                DataError::LengthMismatch { x, y, .. } => vec![x.as_str(), y.as_str()],
                // Carving a test split off too few samples: about the file's samples.
                DataError::Option { .. } => vec![],
                other => return Err(TestCaseError::fail(format!("a well-formed HDF5 file refused as {other:?}: {message}"))),
            };
            for d in named {
                prop_assert!(KEYS.contains(&d), "the error names {d:?}, not one of the file's datasets: {message}");
            }
        }
        Err(other) => return Err(TestCaseError::fail(format!("not a data error: {other:?}"))),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// The reader never panics on a file of random datasets, and every refusal is a data error
    /// that names the file and the dataset.
    #[test]
    fn hdf5_reader_never_panics_and_names_what_it_refuses(
        (train, test) in file(),
        test_parts in prop_oneof![4 => Just(0u8), 4 => Just(3u8), 1 => Just(1u8), 1 => Just(2u8)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.h5");
        {
            let f = hdf5::File::create(&path).unwrap();
            let (x, y) = &train;
            // Test parts: none, X_test only, y_test only, or both.
            let (tx, ty) = &test;
            let parts = [
                ("X_train", x.as_ref()),
                ("y_train", y.as_ref()),
                ("X_test", tx.as_ref().filter(|_| test_parts & 1 != 0)),
                ("y_test", ty.as_ref().filter(|_| test_parts & 2 != 0)),
            ];
            for (name, d) in parts {
                if let Some(d) = d {
                    write(&f, name, d).unwrap_or_else(|e| panic!("writing {name} {d:?}: {e}"));
                }
            }
        }
        read_and_judge(&path)?;
    }
}

/// The values `d` holds as the reader must give them: f32, as the type rounds them.
fn as_read(d: &Ds) -> Vec<f32> {
    let v = values(d, d.shape.iter().product());
    match d.ty {
        Ty::F16 => v.iter().map(|&x| half::f16::from_f64(x).to_f32()).collect(),
        Ty::U8 => v.iter().map(|&x| x as u8 as f32).collect(),
        _ => v.iter().map(|&x| x as f32).collect(),
    }
}

/// A well-formed pair: voxels as u8, f16, f32 or f64 in a layout the reader recognises,
/// chunked and compressed or not, and (N,) or (N, 1) integer labels within the classes.
fn good_pair(n: usize, sample: Vec<usize>) -> impl Strategy<Value = (Ds, Ds)> {
    let xs = [vec![n], sample].concat();
    (ds(xs, vec![Ty::U8, Ty::F16, Ty::F32, Ty::F64], false), any::<bool>(), ds(vec![n], vec![Ty::U8, Ty::I8, Ty::I32, Ty::I64, Ty::U64], true))
        .prop_map(move |(mut x, column, mut y)| {
            if !matches!(x.ty, Ty::U8 | Ty::F16 | Ty::F32 | Ty::F64) {
                x.ty = Ty::F32;
            }
            if matches!(y.ty, Ty::F16 | Ty::F32 | Ty::F64) {
                y.ty = Ty::I64;
            }
            x.bad = false;
            y.bad = false;
            if column {
                y.shape = vec![n, 1];
                y.chunked = None;
            }
            (x, y)
        })
}

/// A sample's shape (after N) the reader takes without options, and whether it is channels
/// last: flat cubes, (D, H, W), channels last or first.
fn good_sample() -> impl Strategy<Value = (Vec<usize>, bool)> {
    prop_oneof![
        prop::sample::select(vec![1usize, 8, 27]).prop_map(|v| (vec![v], false)),
        prop::collection::vec(1usize..4, 3).prop_map(|s| (s, false)),
        (5usize..7, prop::collection::vec(1usize..4, 2), 1usize..5, any::<bool>()).prop_map(|(d, hw, c, last)| {
            // The channel axis is the one end of at most 4.
            if last { (vec![d, hw[0], hw[1], c], true) } else { (vec![c, hw[0], hw[1], d], false) }
        }),
    ]
}

/// (N, S, C) → (N, C, S), as the reader turns channels-last data.
fn to_channels_first(v: &[f32], n: usize, c: usize) -> Vec<f32> {
    let s = v.len() / n / c;
    let mut out = vec![0.0; v.len()];
    for i in 0..n {
        for p in 0..s {
            for ch in 0..c {
                out[i * s * c + ch * s + p] = v[i * s * c + p * c + ch];
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// A well-formed file, whatever its types, layout, chunking and compression, is read back
    /// exactly: every value as its type rounds it to f32, channels first, every label.
    #[test]
    fn hdf5_reader_reads_well_formed_files_exactly(
        ((train, test), last) in (1usize..5, 1usize..4, good_sample()).prop_flat_map(|(n, nt, (sample, last))| {
            ((good_pair(n, sample.clone()), prop::option::of(good_pair(nt, sample))), Just(last))
        }),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.h5");
        {
            let f = hdf5::File::create(&path).unwrap();
            write(&f, "X_train", &train.0).unwrap();
            write(&f, "y_train", &train.1).unwrap();
            if let Some((x, y)) = &test {
                write(&f, "X_test", x).unwrap();
                write(&f, "y_test", y).unwrap();
            }
        }
        let ds = data::hdf5::read(&path, &data::LoadOptions::default()).unwrap_or_else(|e| panic!("{train:?} {test:?}: {e}"));
        let check = |name: &str, (x, y): &(Ds, Ds), s: &data::Split| -> Result<(), TestCaseError> {
            let n = x.shape[0];
            let mut want = as_read(x);
            if last {
                want = to_channels_first(&want, n, *x.shape.last().unwrap());
            }
            prop_assert_eq!(&s.x, &want, "{} values", name);
            let labels: Vec<u32> = values(y, n).iter().map(|&v| v as u32).collect();
            prop_assert_eq!(&s.y, &labels, "{} labels", name);
            Ok(())
        };
        check("train", &train, &ds.train)?;
        match &test {
            Some(t) => check("test", t, &ds.test)?,
            None => prop_assert!(ds.test.is_empty()),
        }
    }
}
