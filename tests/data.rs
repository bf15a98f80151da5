//! Data: the HDF5 fixtures in tests/fixtures (written by h5py, see make_fixtures.py), the
//! colormap and the article's reshape against values matplotlib and numpy produced, every bad
//! file's message and exit code, and the bundled dataset's round trip and determinism.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use cnn3d::data::{self, colormap, Colormap, DataOptions, Input, Keys, Layout, LoadOptions, SynthOptions};
use cnn3d::gpu::DType;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn file_options(name: &str) -> DataOptions {
    DataOptions { data: Some(fixture(name)), ..Default::default() }
}

fn load(name: &str) -> data::Dataset {
    data::load(&file_options(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A scratch path unique to this test process and `name`.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cnn3d-test-{}-{name}", std::process::id()))
}

/// Held while this process writes an HDF5 file and while it starts a child. libhdf5 opens files
/// without close-on-exec, so a child started meanwhile would inherit the writer's file lock and
/// keep it for its whole life, and reading the file back would fail with "unable to lock file".
static WRITING: Mutex<()> = Mutex::new(());

fn cnn3d(args: &[&str]) -> (i32, String, String) {
    let child = {
        let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        Command::new(env!("CARGO_BIN_EXE_cnn3d"))
            .args(args)
            .env("CNN3D_NO_TUNE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cnn3d")
    };
    let out = child.wait_with_output().expect("run cnn3d");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// matplotlib's values, written by make_fixtures.py.
fn matplotlib() -> hdf5::File {
    hdf5::File::open(fixture("matplotlib_oranges.h5")).expect("open matplotlib_oranges.h5")
}

// ---- colormap and the article's preprocessing -----------------------------------------------

#[test]
fn oranges_lut_is_matplotlibs() {
    let want: Vec<f64> = matplotlib().dataset("lut").unwrap().read_raw().unwrap();
    let got: Vec<f64> = colormap::oranges_lut().into_iter().flatten().collect();
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-6, "worst difference from matplotlib's table: {worst:e}");
    // Built operation for operation as matplotlib does, the table agrees to the bit.
    assert_eq!(got, want);
}

#[test]
fn colormap_of_probe_values_is_matplotlibs() {
    let m = matplotlib();
    let x: Vec<f32> = m.dataset("probe_x").unwrap().read_raw().unwrap();
    let rgba: Vec<f64> = m.dataset("probe_rgba").unwrap().read_raw().unwrap();
    let lut = colormap::oranges_lut();
    for (i, &v) in x.iter().enumerate() {
        let got = lut[colormap::lut_index(v)];
        let want = &rgba[i * 4..i * 4 + 4];
        for c in 0..4 {
            assert!((got[c] - want[c]).abs() <= 1e-6, "cmap({v:e}) channel {c}: {} vs matplotlib's {}", got[c], want[c]);
        }
    }
}

/// The first samples of mnist3d.h5 through the article's code (matplotlib + numpy), and
/// through cnn3d on the CPU, both ways.
#[test]
fn article_reshape_and_transpose_reproduce_numpy() {
    let ds = load("mnist3d.h5");
    let m = matplotlib();
    for (key, article) in [("article", true), ("transposed", false)] {
        let want: Vec<f32> = m.dataset(key).unwrap().read_raw().unwrap();
        let input = Input::new(&ds, Colormap::Oranges, article).unwrap();
        let got: Vec<f32> = (0..3).flat_map(|i| input.cpu(ds.train.sample(i))).collect();
        assert_eq!(got.len(), want.len());
        let mismatches = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(mismatches, 0, "{key}: {mismatches} of {} values differ from numpy's", want.len());
    }
    // The article's reshape is not the transpose.
    assert_ne!(Input::new(&ds, Colormap::Oranges, true).unwrap().cpu(ds.train.sample(0)), Input::new(&ds, Colormap::Oranges, false).unwrap().cpu(ds.train.sample(0)));
}

#[test]
fn u8_data_is_colormapped_as_matplotlib_does() {
    let ds = load("u8.h5");
    let want: Vec<f32> = matplotlib().dataset("u8_rgb").unwrap().read_raw().unwrap();
    let got: Vec<f32> = (0..2).flat_map(|i| colormap::article_rgb(ds.train.sample(i))).collect();
    assert_eq!(got, want);
}

/// The GPU gather gives the article's tensor exactly, and the transposed one without
/// --article-reshape.
#[test]
fn gpu_gather_reproduces_the_article_tensor() {
    let gpu = common::gpu();
    let ds = load("mnist3d.h5");
    let m = matplotlib();
    for (key, article) in [("article", true), ("transposed", false)] {
        let input = Input::new(&ds, Colormap::Oranges, article).unwrap();
        let split = input.upload(gpu, &ds.train, "train").unwrap();
        let lut = input.lut(gpu).unwrap();
        let idx = gpu.upload_u32("indices", &[0, 1, 2]).unwrap();
        let x = gpu.zeros("x", 3 * 3 * 4096, DType::F32).unwrap();
        let y = gpu.zeros("y", 3, DType::U32).unwrap();
        gpu.run_ops(&[input.gather(3, &split, &idx, lut.as_ref(), &x, &y).unwrap()]).unwrap();
        let want: Vec<f32> = m.dataset(key).unwrap().read_raw().unwrap();
        assert!(gpu.read_f32(&x).unwrap() == want, "{key}: the GPU's batch differs from numpy's");
        assert_eq!(gpu.read_u32(&y).unwrap(), ds.train.y[..3]);
    }
}

// ---- good files ------------------------------------------------------------------------------

#[test]
fn reads_the_3d_mnist_layout() {
    let ds = load("mnist3d.h5");
    assert_eq!((ds.channels, ds.dims, ds.classes), (1, [16, 16, 16], 10));
    assert_eq!((ds.train.len(), ds.test.len(), ds.val.len()), (20, 10, 0));
    assert_eq!(ds.train.x.len(), 20 * 4096);
    assert_eq!(ds.train.y[..11], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
    assert_eq!(ds.test.y[..3], [9, 8, 7]);
    let raw: Vec<f32> = hdf5::File::open(fixture("mnist3d.h5")).unwrap().dataset("X_test").unwrap().read_raw().unwrap();
    assert_eq!(ds.test.x, raw);
}

#[test]
fn channels_last_and_channels_first_load_to_the_same_tensor() {
    let last = load("channels_last.h5");
    let first = load("channels_first.h5");
    assert_eq!((last.channels, last.dims), (2, [5, 7, 9]));
    assert_eq!(last.shape(&last.train), [6, 2, 5, 7, 9]);
    assert_eq!(last.train.x, first.train.x);
    assert_eq!(last.test.x, first.test.x);
    // Explicit layouts agree with auto; the wrong one is refused.
    let mut o = file_options("channels_last.h5");
    o.load.layout = Layout::Ndhwc;
    assert_eq!(data::load(&o).unwrap().train.x, last.train.x);
    o.load.layout = Layout::Ndhw;
    let e = data::load(&o).unwrap_err().to_string();
    assert!(e.contains("--layout ndhw expects 4 dimensions") && e.contains("X_train"), "{e}");
    // A colormap needs one channel.
    let e = Input::new(&last, Colormap::Oranges, false).unwrap_err().to_string();
    assert!(e.contains("channels_last.h5") && e.contains("2 channels") && e.contains("--colormap none"), "{e}");
    assert_eq!(Input::new(&last, Colormap::None, false).unwrap().channels(), 2);
}

#[test]
fn u8_and_f16_data_and_small_label_types() {
    let u8 = load("u8.h5");
    assert_eq!((u8.channels, u8.dims), (1, [6, 5, 4]));
    assert!(u8.train.x.iter().all(|&v| v == v.round() && (0.0..=255.0).contains(&v)));
    assert_eq!(u8.train.x.iter().cloned().fold(0.0, f32::max), 255.0);
    let f16 = load("f16.h5");
    assert_eq!((f16.dims, f16.train.len(), f16.test.len()), ([8, 8, 8], 8, 4));
    assert_eq!(f16.train.y, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(f16.test.y, [0, 1, 2, 3]);
    // The values: libhdf5's own float16 → float32 conversion is the reference (every f16 is
    // exact in f32, so they must agree to the bit), in the same order.
    let file = hdf5::File::open(fixture("f16.h5")).unwrap();
    for (key, split) in [("X_train", &f16.train), ("X_test", &f16.test)] {
        let want: Vec<f32> = file.dataset(key).unwrap().read_raw::<f32>().unwrap();
        assert_eq!(want.len(), split.x.len(), "{key}");
        let differ: Vec<usize> = (0..want.len()).filter(|&i| want[i].to_bits() != split.x[i].to_bits()).collect();
        assert!(differ.is_empty(), "{key}: {} values differ from libhdf5's, the first [{}]: {} vs {}", differ.len(), differ[0], split.x[differ[0]], want[differ[0]]);
        // What make_fixtures.py wrote: sparse densities in [0, 1], each sample's max exactly 1.
        for (i, sample) in split.x.chunks(512).enumerate() {
            assert!(sample.iter().all(|v| (0.0..=1.0).contains(v)), "{key}[{i}]");
            assert_eq!(sample.iter().cloned().fold(0.0, f32::max), 1.0, "{key}[{i}]");
            let nonzero = sample.iter().filter(|&&v| v > 0.0).count();
            assert!((25..=200).contains(&nonzero), "{key}[{i}]: {nonzero} of 512 voxels set; expected about 20%");
        }
    }
}

#[test]
fn a_file_with_only_training_data_gets_a_seeded_test_split() {
    let ds = load("only_train.h5");
    assert_eq!((ds.train.len(), ds.test.len()), (32, 8));
    let mut o = file_options("only_train.h5");
    o.test_split = Some(0.25);
    o.val_split = 0.1;
    let a = data::load(&o).unwrap();
    assert_eq!((a.train.len(), a.val.len(), a.test.len()), (27, 3, 10));
    assert_eq!(data::load(&o).unwrap(), a, "same seed, same splits");
    o.seed = 1;
    assert_ne!(data::load(&o).unwrap().test.y, a.test.y, "another seed, another split");
    // Every sample ends up in exactly one split.
    let mut all: Vec<Vec<u32>> = [&a.train, &a.val, &a.test]
        .iter()
        .flat_map(|s| (0..s.len()).map(|i| s.sample(i).iter().map(|v| v.to_bits()).collect::<Vec<u32>>()))
        .collect();
    let raw: Vec<f32> = hdf5::File::open(fixture("only_train.h5")).unwrap().dataset("X_train").unwrap().read_raw().unwrap();
    let mut want: Vec<Vec<u32>> = raw.chunks(512).map(|s| s.iter().map(|v| v.to_bits()).collect()).collect();
    all.sort();
    want.sort();
    assert_eq!(all, want);
}

#[test]
fn a_test_split_for_a_file_with_test_data_is_refused() {
    let mut o = file_options("mnist3d.h5");
    o.test_split = Some(0.2);
    let e = data::load(&o).unwrap_err().to_string();
    assert!(e.contains("mnist3d.h5") && e.contains("has its own test data"), "{e}");
    let mut o = file_options("only_train.h5");
    o.val_split = 1.5;
    assert!(data::load(&o).unwrap_err().to_string().contains("--val-split 1.5: expected a fraction in [0, 1)"));
}

#[test]
fn dataset_names_are_configurable() {
    let mut o = file_options("custom_keys.h5");
    o.load.keys = Keys {
        x_train: "train/volumes".into(),
        y_train: "train/classes".into(),
        x_test: Some("test/volumes".into()),
        y_test: Some("test/classes".into()),
    };
    let ds = data::load(&o).unwrap();
    assert_eq!((ds.dims, ds.train.len(), ds.test.len()), ([4, 4, 4], 5, 3));
    // A test key that is named but missing is an error, not a silent carve.
    o.load.keys.x_test = Some("test/nope".into());
    let e = data::load(&o).unwrap_err().to_string();
    assert!(e.contains("no dataset \"test/nope\"") && e.contains("test/volumes"), "{e}");
}

#[test]
fn flat_vectors_take_a_shape() {
    let mut o = file_options("not_cube.h5");
    o.load.shape = Some([4, 5, 5]);
    let ds = data::load(&o).unwrap();
    assert_eq!((ds.dims, ds.train.len() + ds.test.len()), ([4, 5, 5], 4));
    o.load.shape = Some([4, 5, 6]);
    let e = data::load(&o).unwrap_err().to_string();
    assert!(e.contains("has 120 voxels, but each sample has 100"), "{e}");
}

#[test]
fn inspect_prints_datasets_shapes_ranges_and_histograms() {
    let f = fixture("mnist3d.h5");
    let (code, out, err) = cnn3d(&["data", "inspect", f.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("inspect --json prints JSON");
    let names: Vec<&str> = doc["datasets"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["X_test", "X_train", "y_test", "y_train"]);
    assert_eq!(doc["datasets"][1]["dtype"], "float32");
    assert_eq!(doc["datasets"][1]["shape"], serde_json::json!([20, 4096]));
    let train = &doc["summary"]["splits"][0];
    assert_eq!(train["shape"], serde_json::json!([20, 1, 16, 16, 16]));
    assert_eq!(train["max"], 1.0);
    assert_eq!(train["label_histogram"], serde_json::json!([2, 2, 2, 2, 2, 2, 2, 2, 2, 2]));
    assert_eq!(doc["input"]["channels"], 3);
    let (code, out, _) = cnn3d(&["data", "inspect", f.to_str().unwrap(), "--colormap", "none"]);
    assert_eq!(code, 0);
    assert!(out.contains("X_train  [20, 4096]") && out.contains("labels 0:2 1:2") && out.contains("input: 1 channel(s)"), "{out}");
}

// ---- bad files: a clear message naming file and dataset, exit code 2 -------------------------

/// Loading `name` fails with a message containing each of `parts` (and the file's name), and
/// `cnn3d data inspect` says the same and exits with 2.
fn bad(name: &str, parts: &[&str]) {
    let path = fixture(name);
    let e = data::load(&file_options(name)).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains(&*path.display().to_string()), "{name}: the message names the file: {e}");
    for p in parts {
        assert!(e.contains(p), "{name}: the message lacks {p:?}: {e}");
    }
    let (code, out, err) = cnn3d(&["data", "inspect", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{name}: exit code; stderr: {err}");
    assert!(out.is_empty(), "{name}: nothing on stdout: {out}");
    assert!(err.contains(&e), "{name}: the CLI prints the message: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
}

#[test]
fn missing_file() {
    bad("no_such_file.h5", &["no such file", "expected an HDF5 file"]);
}

#[test]
fn not_an_hdf5_file() {
    bad("not_hdf5.h5", &["is not an HDF5 file", "no HDF5 signature"]);
}

#[test]
fn truncated_file() {
    bad("truncated.h5", &["truncated or damaged", "truncated file"]);
}

#[test]
fn missing_dataset_lists_the_present_ones() {
    bad("missing_dataset.h5", &["no dataset \"X_train\"", "images [4, 512] float32", "labels [4] int64", "--x-train-key"]);
}

#[test]
fn x_and_y_lengths_differ() {
    bad("length_mismatch.h5", &["\"X_train\" has 10 samples but \"y_train\" has 9 labels", "one label per sample"]);
}

#[test]
fn voxel_count_not_a_cube() {
    bad("not_cube.h5", &["\"X_train\" has 100 voxels per sample, which is not a cube", "--shape D,H,W"]);
}

#[test]
fn negative_label() {
    bad("negative_label.h5", &["\"y_train\" has 1 label(s) outside 0..10", "y_train[4] = -1"]);
}

#[test]
fn label_at_or_above_the_class_count() {
    bad("label_out_of_range.h5", &["\"y_train\" has 1 label(s) outside 0..10", "the model's 10 classes", "y_train[2] = 10"]);
    // With more classes the same file loads.
    let mut o = file_options("label_out_of_range.h5");
    o.load.classes = 11;
    assert!(data::load(&o).is_ok());
}

#[test]
fn nan_and_inf_give_count_and_first_index() {
    bad("nan.h5", &["\"X_train\" has 3 NaN or infinite value(s)", "X_train[1, 7]", "finite"]);
}

#[test]
fn empty_dataset() {
    bad("empty.h5", &["\"X_train\" is empty (shape [0, 4096])", "at least one sample"]);
}

#[test]
fn wrong_dtype_strings() {
    bad("strings.h5", &["\"X_train\" holds string (len 4)", "uint8, float16, float32 or float64"]);
}

#[test]
fn wrong_dtype_float_labels() {
    bad("float_labels.h5", &["\"y_train\" holds float64", "integer type"]);
}

/// A few KB of chunked, compressed HDF5 that declares 10⁹ samples of 4096 float32 (16 TB) is
/// refused from its declared shape, with the numbers, before anything is read.
#[test]
fn a_dataset_declaring_terabytes_is_refused_before_reading() {
    let path = scratch("bomb.h5");
    {
        let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let f = hdf5::File::create(&path).unwrap();
        let n = 1_000_000_000usize;
        f.new_dataset::<f32>().chunk([1, 4096]).deflate(4).shape([n, 4096]).create("X_train").unwrap();
        f.new_dataset::<u8>().chunk([1 << 16]).deflate(4).shape([n]).create("y_train").unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 64 << 10, "the bomb is small on disk: {size} bytes");
    let started = std::time::Instant::now();
    let (code, out, err) = cnn3d(&["data", "inspect", path.to_str().unwrap()]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, 2, "stderr: {err}");
    assert!(out.is_empty(), "{out}");
    for part in [&*path.display().to_string(), "dataset \"X_train\"", "[1000000000, 4096] of float32", "4096000000000 values", "16396000000000 bytes", "above the cap", "CNN3D_MAX_DATA_BYTES"] {
        assert!(err.contains(part), "the message lacks {part:?}: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(seconds < 10.0, "refused from the shape, not after reading: {seconds:.2} s");
    std::fs::remove_file(&path).ok();
}

/// `data synth` sample counts beyond the cap (10¹⁵ samples of 16³ floats: 1.6·10¹⁹ bytes) are
/// refused before anything is allocated.
#[test]
fn synth_sample_counts_beyond_the_cap_are_refused() {
    let out = scratch("synth-huge.h5");
    let started = std::time::Instant::now();
    let (code, _, err) = cnn3d(&["data", "synth", "--out", out.to_str().unwrap(), "--train", "1000000000000000"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--train 1000000000000000 and --test 1000 samples") && err.contains("16388000000016388000 bytes"), "{err}");
    assert!(err.contains("above the cap") && err.contains("CNN3D_MAX_DATA_BYTES"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(started.elapsed().as_secs_f64() < 10.0);
    assert!(!out.exists());
}

/// The cap is CNN3D_MAX_DATA_BYTES where set: a small real file above it is refused, naming it.
#[test]
fn the_data_memory_cap_is_overridable() {
    let f = fixture("mnist3d.h5");
    let run = |cap: &str| {
        let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        Command::new(env!("CARGO_BIN_EXE_cnn3d"))
            .args(["data", "inspect", f.to_str().unwrap()])
            .env("CNN3D_MAX_DATA_BYTES", cap)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cnn3d")
    };
    let out = run("1000").wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("above the cap of 1000 bytes (CNN3D_MAX_DATA_BYTES=1000)"), "{err}");
    let out = run("100000000000").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("lots").wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CNN3D_MAX_DATA_BYTES=\"lots\": expected a number of bytes"), "{err}");
}

#[test]
fn bad_option_values_are_usage_errors() {
    let f = fixture("mnist3d.h5");
    let f = f.to_str().unwrap();
    let (code, _, err) = cnn3d(&["data", "inspect", f, "--layout", "nhwdc"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown layout \"nhwdc\""), "{err}");
    // A --shape whose voxel count overflows 64 bits is counted without wrapping.
    let (code, _, err) = cnn3d(&["data", "inspect", f, "--shape", "4294967296,4294967296,16"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--shape [4294967296, 4294967296, 16] has more than 2^64 voxels, but each sample has 4096"), "{err}");
    let (code, _, err) = cnn3d(&["data", "inspect", f, "--colormap", "viridis"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown colormap \"viridis\""), "{err}");
    let (code, _, err) = cnn3d(&["data", "inspect", f, "--colormap", "none", "--article-reshape"]);
    assert_eq!(code, 2);
    assert!(err.contains("--article-reshape") && err.contains("--colormap oranges"), "{err}");
}

// ---- the bundled dataset -------------------------------------------------------------------

#[test]
fn synth_round_trips_through_hdf5() {
    let opts = SynthOptions { train: 30, test: 10, seed: 4 };
    let ds = data::synth::generate(&opts).unwrap();
    let path = scratch("roundtrip.h5");
    let back = {
        let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        data::hdf5::write(&path, &ds).unwrap();
        data::hdf5::read(&path, &LoadOptions::default()).unwrap()
    };
    std::fs::remove_file(&path).ok();
    assert_eq!((back.channels, back.dims), (1, [16, 16, 16]));
    assert_eq!(back.train, ds.train);
    assert_eq!(back.test, ds.test);
    // The bundled path (no --data) gives the same arrays.
    let bundled = data::load(&DataOptions { synth: opts, ..Default::default() }).unwrap();
    assert_eq!((bundled.train.clone(), bundled.test.clone()), (ds.train, ds.test));
}

#[test]
fn synth_cli_writes_the_3d_mnist_layout_deterministically() {
    let write = |name: &str, seed: &str| {
        let path = scratch(name);
        let (code, out, err) = cnn3d(&["data", "synth", "--out", path.to_str().unwrap(), "--train", "20", "--test", "10", "--seed", seed]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("20 training and 10 test samples"), "{out}");
        let f = hdf5::File::open(&path).unwrap();
        let x = f.dataset("X_train").unwrap();
        assert_eq!(x.shape(), vec![20, 4096]);
        let xs: Vec<f32> = x.read_raw().unwrap();
        let y: Vec<i64> = f.dataset("y_test").unwrap().read_raw().unwrap();
        drop(f);
        std::fs::remove_file(&path).ok();
        (xs, y)
    };
    let a = write("synth-a.h5", "7");
    let b = write("synth-b.h5", "7");
    let c = write("synth-c.h5", "8");
    assert!(a == b, "same seed, same file");
    assert_ne!(a.0, c.0, "another seed, other digits");
    assert_eq!(a.1, (0..10).collect::<Vec<i64>>(), "balanced labels");
}

#[test]
fn bundled_dataset_defaults() {
    let o = DataOptions::default();
    assert_eq!((o.synth.train, o.synth.test), (6000, 1000));
    assert_eq!((o.colormap, o.article_reshape, o.load.classes), (Colormap::Oranges, false, 10));
    // A small bundled set, split for validation, into the model's 3 input channels.
    let o = DataOptions { synth: SynthOptions { train: 50, test: 10, seed: 1 }, val_split: 0.2, ..Default::default() };
    let ds = data::load(&o).unwrap();
    assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (40, 10, 10));
    assert_eq!(Input::new(&ds, o.colormap, false).unwrap().channels(), 3);
}
