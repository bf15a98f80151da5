//! `train`, `eval` and `predict` as a user runs them, on a tiny model (seconds per run on
//! lavapipe): the run folder's artifacts, determinism, learning, eval/predict agreement,
//! and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cnn3d(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn3d")).args(args).env("CNN3D_NO_TUNE", "1").output().expect("run cnn3d");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fresh folder under the target dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bundled 16³ volumes, one channel (--colormap none), conv → pool → dense.
fn tiny_config(dir: &Path, out_channels: usize) -> String {
    let text = format!(
        "[model]\ninput = [16, 16, 16]\nclasses = 10\n\
         [[model.layers]]\nkind = \"conv3d\"\nout_channels = {out_channels}\nkernel = 3\nstride = 2\n\
         [[model.layers]]\nkind = \"max_pool3d\"\nkernel = 2\n\
         [[model.layers]]\nkind = \"flatten\"\n\
         [[model.layers]]\nkind = \"dense\"\nout_features = 10\n\
         [train]\nepochs = 2\nbatch_size = 16\n\
         [optimizer]\nkind = \"adam\"\nlr = 0.05\n"
    );
    let path = dir.join(format!("tiny{out_channels}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn train(config: &str, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = out.display().to_string();
    let mut args = vec!["train", "--config", config, "--colormap", "none", "--limit-train", "64", "--limit-test", "32", "--quiet", "--out", &out];
    args.extend_from_slice(extra);
    cnn3d(&args)
}

#[test]
fn train_writes_the_run_folder_and_eval_predict_agree() {
    let dir = scratch("artifacts");
    let cfg = tiny_config(&dir, 2);
    let run = dir.join("run");
    let (code, out, err) = train(&cfg, &run, &["--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    for f in ["model.safetensors", "optimizer.safetensors", "metrics.csv", "curves.png", "curves.svg", "config.toml", "summary.json"] {
        assert!(run.join(f).is_file(), "{f} missing from {}", run.display());
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert!(lines[0].starts_with("epoch,train_loss,train_acc,test_loss,test_acc"), "{metrics}");
    assert_eq!(lines.len(), 3, "header and one row per epoch: {metrics}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let acc = summary["test_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{summary}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).expect("--json ends with the summary");
    assert_eq!(last["test_acc"], summary["test_acc"]);

    // eval on the run folder's model: its config.toml and the recorded colormap are used.
    let ck = run.join("model.safetensors").display().to_string();
    let (code, out, err) = cnn3d(&["eval", "--checkpoint", &ck, "--limit", "32", "--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("eval --json prints JSON");
    assert_eq!(report["samples"], 32);
    assert!((report["accuracy"].as_f64().unwrap() - acc).abs() < 1e-9, "eval {report} vs summary {summary}");
    let confusion = report["confusion"].as_array().unwrap();
    let diagonal: u64 = (0..10).map(|i| confusion[i][i].as_u64().unwrap()).sum();
    assert_eq!(diagonal as f64 / 32.0, acc, "the confusion matrix agrees with the accuracy");

    let csv = dir.join("pred.csv");
    let (code, _, err) = cnn3d(&["predict", "--checkpoint", &ck, "--limit", "32", "--out", &csv.display().to_string()]);
    assert_eq!(code, 0, "stderr: {err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "index,label,predicted,p0,p1,p2,p3,p4,p5,p6,p7,p8,p9");
    assert_eq!(rows.len(), 33, "one row per test sample");
    let mut hits = 0;
    for row in &rows[1..] {
        let v: Vec<f64> = row.split(',').map(|x| x.parse().unwrap()).collect();
        let sum: f64 = v[3..].iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}: {row}");
        hits += usize::from(v[1] == v[2]);
    }
    assert_eq!(hits as f64 / 32.0, acc);

    // --init from the checkpoint, and a checkpoint of another model refused by name and shape.
    let (code, _, err) = train(&cfg, &dir.join("again"), &["--init", &ck, "--epochs", "1"]);
    assert_eq!(code, 0, "--init from a checkpoint: {err}");
    let other = tiny_config(&dir, 3);
    let (code, _, err) = train(&other, &dir.join("other"), &["--init", &ck, "--epochs", "1"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("layers.0.weight") || err.contains(".weight"), "names the tensor: {err}");
    assert!(err.contains("[3, 1, 3, 3, 3]") && err.contains("[2, 1, 3, 3, 3]"), "names both shapes: {err}");
    let (code, _, err) = cnn3d(&["eval", "--checkpoint", &ck, "--config", &other, "--limit", "8"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("[3, 1, 3, 3, 3]") && err.contains("[2, 1, 3, 3, 3]"), "names both shapes: {err}");
}

#[test]
fn same_seed_same_weights_and_loss_falls() {
    let dir = scratch("determinism");
    let cfg = tiny_config(&dir, 2);
    let (a, b) = (dir.join("a"), dir.join("b"));
    for run in [&a, &b] {
        let (code, _, err) = train(&cfg, run, &["--epochs", "4", "--seed", "3"]);
        assert_eq!(code, 0, "stderr: {err}");
    }
    let wa = std::fs::read(a.join("model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(wa == wb, "the same seed gave different weights");
    let metrics = std::fs::read_to_string(a.join("metrics.csv")).unwrap();
    let losses: Vec<f64> = metrics.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert!(losses.last().unwrap() < &(losses[0] - 0.05), "the training loss does not fall: {losses:?}");
}

#[test]
fn bad_input_is_a_usage_error() {
    let dir = scratch("bad");
    let cfg = tiny_config(&dir, 2);
    let run = dir.join("run");
    for (flags, needle) in [
        (&["--epochs", "0"][..], "epochs"),
        (&["--batch-size", "0"][..], "batch_size"),
        (&["--batch-size", "1"][..], "batch_size"),
        (&["--optimizer", "foo"][..], "foo"),
        (&["--lr=-1"][..], "lr"),
    ] {
        let (code, _, err) = train(&cfg, &run, flags);
        assert_eq!(code, 2, "{flags:?}: stderr: {err}");
        assert!(err.contains(needle), "{flags:?}: the message names {needle}: {err}");
    }
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[model]\ninput = [16, 16, 16]\nclasses = 10\n[[model.layers]]\nkind = \"conv4d\"\n").unwrap();
    let (code, _, err) = train(&bad.display().to_string(), &run, &[]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("bad.toml") && err.contains("conv4d"), "names the file and the kind: {err}");
    let (code, _, err) = cnn3d(&["eval", "--checkpoint", &dir.join("nope.safetensors").display().to_string(), "--config", &cfg]);
    assert_ne!(code, 0);
    assert!(err.contains("nope.safetensors"), "names the file: {err}");
}
