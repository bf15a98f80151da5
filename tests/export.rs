//! `cnn3d export` against outside runtimes. The fixtures (tests/fixtures/export/, made by
//! make_export.py with PyTorch and ONNX Runtime) hold, per config, a cnn3d checkpoint, 8 raw
//! volumes, the input model.py's `preprocess` made of them, and the logits of the generated
//! PyTorch module and of onnxruntime on the exported ONNX file. Here the same checkpoint runs on
//! this machine's GPU (as `cnn3d predict --logits`) and the freshly exported ONNX file runs
//! under tract, an independent ONNX implementation; all four must agree.

mod common;

use std::path::{Path, PathBuf};

use cnn3d::check::{compare_f64, Tol};
use cnn3d::checkpoint;
use cnn3d::config::LayerSpec;
use cnn3d::data::{Dataset, DataOptions, Split};
use cnn3d::export::{self, Exportable};
use cnn3d::model::Model;
use cnn3d::train::Session;
use common::gpu;
use tract_onnx::prelude::*;

const CASES: [&str; 5] = ["seed", "volume_bn_avgpool", "strided_padded", "every_option", "dilated_max_pool"];

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures/export").join(name)
}

struct Reference {
    raw: Vec<f32>,
    input: Vec<f32>,
    torch: Vec<f32>,
    onnxruntime: Vec<f32>,
    samples: usize,
}

fn reference(name: &str) -> Reference {
    let ck = checkpoint::load(&fixture(name).join("reference.safetensors")).unwrap();
    let get = |t: &str| ck.get(t).and_then(|t| t.as_f32()).unwrap_or_else(|| panic!("{name}: no f32 tensor {t}")).to_vec();
    let samples = ck.get("input").unwrap().shape[0];
    // Without a colormap the raw volumes are the input, stored once.
    let raw = if ck.get("raw").is_some() { get("raw") } else { get("input") };
    Reference { raw, input: get("input"), torch: get("torch_logits"), onnxruntime: get("onnxruntime_logits"), samples }
}

fn load(name: &str) -> Exportable {
    Exportable::load(&fixture(name).join("model.safetensors"), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The logits cnn3d computes on this GPU for the raw volumes, through the data path `predict`
/// takes (the colormap, if any, applied by the gather kernel), and the network's input as
/// cnn3d's own mapping makes it on the CPU (what the gather kernel is checked against).
fn cnn3d_logits_and_input(e: &Exportable, r: &Reference) -> (Vec<f32>, Vec<f32>) {
    let [c, d, h, w] = e.model.input;
    let data_channels = if e.colormap == cnn3d::data::Colormap::Oranges { 1 } else { c };
    let split = Split { x: r.raw.clone(), y: vec![0; r.samples], sample_len: data_channels * d * h * w };
    let ds = Dataset {
        source: "the export fixture".into(),
        channels: data_channels,
        dims: [d, h, w],
        classes: e.model.classes,
        train: split.clone(),
        val: Split { x: vec![], y: vec![], sample_len: split.sample_len },
        test: split,
    };
    let opts = DataOptions { colormap: e.colormap, article_reshape: e.article_reshape, ..Default::default() };
    let mut session = Session::new(gpu(), &e.config.model, &ds, &opts, 0).unwrap();
    session.load_weights(&e.checkpoint_path).unwrap();
    let on_gpu = session.input.upload(gpu(), &ds.test, "the fixture's volumes").unwrap();
    let input = ds.test.x.chunks(ds.test.sample_len).flat_map(|v| session.input.cpu(v)).collect();
    (session.predictions(&on_gpu, r.samples).unwrap().logits, input)
}

/// The exported ONNX file run by tract on `input`.
fn tract_logits(onnx: &Path, input: &[f32], shape: [usize; 5]) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_path(onnx)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot run {}: {e:?}", onnx.display()));
    let x = tract_ndarray::Array5::from_shape_vec(shape, input.to_vec()).unwrap();
    let out = plan.run(tvec!(Tensor::from(x).into())).unwrap_or_else(|e| panic!("tract failed on {}: {e:?}", onnx.display()));
    out[0].to_array_view::<f32>().unwrap().iter().copied().collect()
}

/// tract-onnx 0.22.5 reads MaxPool without its `dilations` attribute (`ops::nn::max_pool`
/// builds its PoolSpec with none), so a dilated max pool runs undilated there: such a network
/// is checked against onnxruntime only.
fn tract_reads_every_attribute(model: &Model) -> bool {
    !model.layers.iter().any(|l| matches!(&l.spec, LayerSpec::MaxPool3d { dilation, .. } if dilation.dims() != [1, 1, 1]))
}

/// The runtimes compute in f32 with different summation orders, so a logit carries the
/// rounding of every sum on its path: a sum of K terms in another order differs by about
/// u·√K of the terms' magnitude (u = 2⁻²⁴; rounding errors of random sign add like a random
/// walk), and each layer passes its input's relative error on, so a logit's error is about
/// u·S·T with S = Σ √K over the network's sums (a convolution's C·kD·kH·kW taps, a dense
/// layer's inputs, an average pool's window) plus a few roundings per element-wise layer, and
/// T the largest logit. Each logit must agree within C·u·S·T, C = 4 as in torch_model.rs;
/// a wrong weight layout, padding, stride or statistic moves logits by far more.
const C: f64 = 4.0;
const U: f64 = f32::EPSILON as f64 / 2.0;

fn sqrt_sums(model: &Model) -> f64 {
    let vol = |k: [usize; 3]| (k[0] * k[1] * k[2]) as f64;
    model
        .layers
        .iter()
        .map(|l| match &l.spec {
            LayerSpec::Conv3d { kernel, .. } => (l.input[0] as f64 * vol(kernel.dims())).sqrt(),
            LayerSpec::Dense { .. } => (l.input[0] as f64).sqrt(),
            LayerSpec::AvgPool3d { kernel, .. } => vol(kernel.dims()).sqrt() + 1.0,
            // (x − mean) / √(var + eps) · γ + β, fused differently by each runtime.
            LayerSpec::BatchNorm { .. } => 4.0,
            // Each runtime's exp and tanh are a few ulps apart.
            LayerSpec::Sigmoid { .. } | LayerSpec::Tanh { .. } => 4.0,
            LayerSpec::LeakyRelu { .. } => 1.0,
            _ => 0.0,
        })
        .sum()
}

/// Compares `got` with `want` within C·u·S·T; returns the C the worst logit needs.
fn agree(what: &str, got: &[f32], want: &[f32], s: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {} logits, expected {}", got.len(), want.len());
    let t = want.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let tol = C * U * s * t;
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    let r = compare_f64(what, "", &got, &want, Tol::new(tol, 0.0));
    let needs = r.err_over_tol * C;
    eprintln!("{what:50} max |diff| {:.2e}  tolerance {tol:.2e} (S = {s:.1}, T = {t:.2})  needs C = {needs:.2}", r.max_abs_err);
    assert!(r.pass, "{what}: logits disagree: {}", r.describe());
    needs
}

fn fnv1a64(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{h:016x}")
}

fn summary(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string("tests/fixtures/export/summary.json").unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all["cases"][name].clone()
}

#[test]
fn exports_match_pytorch_onnxruntime_and_tract() {
    let dir = tempfile::tempdir().unwrap();
    for name in CASES {
        let e = load(name);
        let r = reference(name);
        let s = sqrt_sums(&e.model);
        let [c, d, h, w] = e.model.input;

        // model.py's preprocess made the fixture's input; cnn3d's own mapping must be the same,
        // bit for bit.
        let (logits, ours) = cnn3d_logits_and_input(&e, &r);
        assert!(ours.len() == r.input.len() && ours.iter().zip(&r.input).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: model.py's preprocess differs from cnn3d's input mapping");

        // The files the fixture's runtimes ran are the ones the exporter writes today.
        let py = export::torch::model_py(&e).unwrap();
        let onnx = dir.path().join(format!("{name}.onnx"));
        export::write_onnx(&e, &onnx).unwrap();
        let sum = summary(name);
        let stale = "the exporter's output changed since the fixtures were made: rerun tests/fixtures/export/make_export.py";
        assert_eq!(fnv1a64(py.as_bytes()), sum["model_py_fnv1a64"], "{name}: model.py: {stale}");
        assert_eq!(fnv1a64(&std::fs::read(&onnx).unwrap()), sum["onnx_fnv1a64"], "{name}: ONNX file: {stale}");

        agree(&format!("{name}: PyTorch (model.py) vs cnn3d"), &r.torch, &logits, s);
        agree(&format!("{name}: onnxruntime vs cnn3d"), &r.onnxruntime, &logits, s);
        if tract_reads_every_attribute(&e.model) {
            let tract = tract_logits(&onnx, &r.input, [r.samples, c, d, h, w]);
            agree(&format!("{name}: tract vs cnn3d"), &tract, &logits, s);
        } else {
            eprintln!("{name}: not run under tract, whose MaxPool ignores dilations (onnxruntime checks this one)");
        }
    }
}

/// A checkpoint of `config` (a TOML model) with zero weights, written beside it.
fn checkpoint_of(dir: &Path, config: &str) -> PathBuf {
    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, config).unwrap();
    let cfg = cnn3d::train::Config::load(&cfg_path).unwrap();
    let model = Model::from_config(&cfg.model, 3).unwrap();
    let tensors: Vec<checkpoint::Tensor> = model
        .state_dict_specs()
        .into_iter()
        .map(|t| match t.dtype {
            checkpoint::DType::I64 => checkpoint::Tensor::i64(t.name, &t.shape, vec![0; t.shape.iter().product()]),
            _ => checkpoint::Tensor::f32(t.name, &t.shape, vec![0.0; t.shape.iter().product()]),
        })
        .collect();
    let path = dir.join("model.safetensors");
    checkpoint::save(&path, &tensors, &Default::default()).unwrap();
    path
}

const SMALL: &str = r#"
[model]
input = [4, 4, 4]
classes = 2
[[model.layers]]
kind = "conv3d"
name = "NAME_A"
out_channels = 2
kernel = 3
[[model.layers]]
kind = "flatten"
[[model.layers]]
kind = "dense"
name = "NAME_B"
out_features = 2
"#;

fn small(a: &str, b: &str) -> String {
    SMALL.replace("NAME_A", a).replace("NAME_B", b)
}

fn export_error(e: cnn3d::Result<impl std::fmt::Debug>) -> String {
    match e {
        Err(cnn3d::Error::Export { what, message }) => format!("{what}: {message}"),
        other => panic!("expected an export error, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_of_another_model_is_refused_naming_the_layer() {
    let seed = fixture("seed").join("model.safetensors");
    // Another config altogether: its first tensor is missing.
    let other = Exportable::load(&seed, Some(&fixture("volume_bn_avgpool").join("config.toml")));
    let msg = export_error(other);
    assert!(msg.starts_with("layer 0 (block1.conv, conv3d): the checkpoint does not match the config"), "{msg}");
    assert!(msg.contains("block1.conv.weight"), "{msg}");
    // The seed model with fc1 narrower: a tensor of the wrong shape, in layer 7.
    let dir = tempfile::tempdir().unwrap();
    let narrow = dir.path().join("narrow.toml");
    std::fs::write(&narrow, cnn3d::train::SEED_CONFIG.replace("out_features = 128", "out_features = 64")).unwrap();
    let msg = export_error(Exportable::load(&seed, Some(&narrow)));
    assert!(msg.starts_with("layer 7 (fc1, dense): "), "{msg}");
    assert!(msg.contains("fc1.weight") && msg.contains("[64, 512]") && msg.contains("[128, 512]"), "{msg}");
}

#[test]
fn layer_names_pytorch_cannot_hold_are_refused_and_onnx_takes_them() {
    let cases = [
        (small("conv", "conv.head"), "layer 2 (conv.head, dense)", "lies under layer \"conv\"'s"),
        (small("forward", "head"), "layer 0 (forward, conv3d)", "attribute every nn.Module has"),
        (small("block.training", "head"), "layer 0 (block.training, conv3d)", "attribute every nn.Module has"),
        (small("block._modules", "head"), "layer 0 (block._modules, conv3d)", "attribute every nn.Module has"),
    ];
    for (config, layer, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let ck = checkpoint_of(dir.path(), &config);
        let e = Exportable::load(&ck, None).unwrap();
        let msg = export_error(export::torch::model_py(&e));
        assert!(msg.starts_with(&format!("{layer}: PyTorch cannot express it")) && msg.contains(why), "{msg}");
        export::onnx::to_onnx(&e).unwrap();
    }
    // Dotted names are containers, as in the article's module.
    let dir = tempfile::tempdir().unwrap();
    let ck = checkpoint_of(dir.path(), &small("blocks.0.conv", "head.fc"));
    let py = export::torch::model_py(&Exportable::load(&ck, None).unwrap()).unwrap();
    assert!(py.contains("self._cnn3d_add(\"blocks.0.conv\", nn.Conv3d(3, 2, kernel_size=(3, 3, 3)"), "{py}");
}

#[test]
fn the_cli_exports_and_refuses_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cnn3d")).args(args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let ck = fixture("volume_bn_avgpool").join("model.safetensors");
    let torch_dir = dir.path().join("torch");
    let onnx = dir.path().join("m.onnx");
    let (code, out, err) = run(&["export", "--checkpoint", ck.to_str().unwrap(), "--torch", torch_dir.to_str().unwrap(), "--onnx", onnx.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model.py") && out.contains("m.onnx"), "{out}");
    assert_eq!(std::fs::read(torch_dir.join("model.safetensors")).unwrap(), std::fs::read(&ck).unwrap(), "the weights are copied as they are");
    assert!(std::fs::read_to_string(torch_dir.join("model.py")).unwrap().contains("COLORMAP = \"none\""));
    // The seed checkpoint with this config: refused, naming the layer, nothing written.
    let seed = fixture("seed").join("model.safetensors");
    let cfg = fixture("volume_bn_avgpool").join("config.toml");
    let bad = dir.path().join("bad.onnx");
    let (code, _, err) = run(&["export", "--checkpoint", seed.to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--onnx", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("layer 0 (block1.conv, conv3d)"), "{err}");
    assert!(!bad.exists());
    // Neither format asked for.
    let (code, _, err) = run(&["export", "--checkpoint", seed.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--torch") && err.contains("--onnx"), "{err}");
}
