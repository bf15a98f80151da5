//! Issue 6, reliability: bad configs, checkpoints and flags end in exit code 2 with a message
//! naming the file, the field and what was expected; runs survive SIGKILL, Ctrl-C and
//! diverging losses; device limits are refused before a run starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cnn3d::checkpoint::{self, Tensor};

fn cnn3d(args: &[&str]) -> (i32, String, String) {
    cnn3d_env(args, &[])
}

fn cnn3d_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn3d")).args(args).env("CNN3D_NO_TUNE", "1").envs(env.iter().copied()).output().expect("run cnn3d");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fresh folder under the target dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reliability-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny.toml")).unwrap()
}

/// tests/fixtures/tiny.toml with `from` replaced by `to` (which must occur in it).
fn tiny_with(from: &str, to: &str) -> String {
    let text = tiny_text();
    assert!(text.contains(from), "tiny.toml has no {from:?}");
    text.replacen(from, to, 1)
}

/// `cnn3d train` on the bundled digits, one channel, few samples.
fn train_args<'a>(config: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", "--config", config, "--colormap", "none", "--limit-train", "48", "--limit-test", "16", "--quiet", "--out", out];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_configs_name_the_file_the_field_and_the_expectation() {
    let dir = scratch("bad-configs");
    let out = dir.join("run").display().to_string();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("syntax error", tiny_with("classes = 10", "classes = "), vec!["line 4, column 11", "expected"]),
        ("unknown layer kind", tiny_with("kind = \"leaky_relu\"", "kind = \"leaky_rleu\""), vec![
            "unknown variant `leaky_rleu`",
            "expected one of",
            "did you mean `leaky_relu`?",
        ]),
        ("unknown layer option", tiny_with("out_channels = 2", "out_chanels = 2"), vec![
            "unknown field `out_chanels`",
            "did you mean `out_channels`?",
        ]),
        ("unknown train option", tiny_with("batch_size = 16", "batchsize = 16"), vec![
            "unknown field `batchsize`",
            "did you mean `batch_size`?",
        ]),
        ("zero size", tiny_with("out_channels = 2", "out_channels = 0"), vec!["layer 0 (conv, conv3d)", "out_channels must be positive"]),
        ("negative size", tiny_with("out_channels = 2", "out_channels = -2"), vec!["line 6", "invalid value: integer `-2`, expected usize"]),
        ("zero kernel", tiny_with("kernel = 3", "kernel = 0"), vec!["layer 0 (conv, conv3d)", "kernel, stride and dilation must be positive"]),
        ("zero input", tiny_with("input = [16, 16, 16]", "input = [16, 0, 16]"), vec!["model input", "[16, 0, 16]", "[16, 16, 16]"]),
        ("kernel larger than its padded input", tiny_with("kernel = 3", "kernel = [3, 17, 3]\npadding = [0, 0, 1]"), vec![
            "layer 0 (conv, conv3d)",
            "kernel 17 (dilation 1) along H does not fit its input of 16 padded by 0",
            "[1, 16, 16, 16]",
        ]),
        ("shapes that do not chain", tiny_with("kind = \"flatten\"", "kind = \"relu\""), vec![
            "layer 4 (fc1, dense)",
            "needs flat (F) features",
            "[2, 3, 3, 3]",
        ]),
        ("output that is not the classes", tiny_with("out_features = 10", "out_features = 7"), vec![
            "layer 7 (fc2, dense)",
            "10 class logits",
            "[7]",
        ]),
        ("unknown optimizer", tiny_with("kind = \"adam\"", "kind = \"adagrad\""), vec![
            "optimizer.kind",
            "unknown optimizer \"adagrad\": expected one of sgd, adam, adamw",
        ]),
        ("misspelt optimizer", tiny_with("kind = \"adam\"", "kind = \"adamm\""), vec!["did you mean \"adam\"?"]),
        ("learning rate 0", tiny_with("lr = 0.01", "lr = 0.0"), vec!["optimizer.lr", "must be a finite number > 0", "got 0"]),
        ("negative learning rate", tiny_with("lr = 0.01", "lr = -0.5"), vec!["optimizer.lr", "got -0.5"]),
        ("NaN learning rate", tiny_with("lr = 0.01", "lr = nan"), vec!["optimizer.lr", "got NaN"]),
        ("infinite learning rate", tiny_with("lr = 0.01", "lr = inf"), vec!["optimizer.lr", "got inf"]),
        ("zero batch size", tiny_with("batch_size = 16", "batch_size = 0"), vec!["train.batch_size must be at least 2", "got 0"]),
        ("zero epochs", tiny_with("epochs = 2", "epochs = 0"), vec!["train.epochs must be at least 1"]),
    ];
    let mut failures = vec![];
    for (what, text, needles) in &cases {
        let path = dir.join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&path, text).unwrap();
        let p = path.display().to_string();
        let (code, _, err) = cnn3d(&train_args(&p, &out, &["--epochs", "1"]));
        let err = err.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR") && !l.starts_with("[INFO")).collect::<Vec<_>>().join("\n");
        let missing: Vec<&str> = std::iter::once(p.as_str()).chain(needles.iter().copied()).filter(|n| !err.contains(n)).collect();
        if code != 2 || !missing.is_empty() || err.contains("panicked") {
            failures.push(format!("{what}: exit code {code}, missing {missing:?} in:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(!dir.join("run").join("model.safetensors").exists(), "a bad config started a run");
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = scratch("bad-flags");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_text()).unwrap();
    let (c, out) = (config.display().to_string(), dir.join("run").display().to_string());
    for (flags, needles) in [
        (&["--lr=nan"][..], &["optimizer.lr", "got NaN"][..]),
        (&["--lr", "0"][..], &["optimizer.lr", "got 0"][..]),
        (&["--checkpoint-every", "0"][..], &["--checkpoint-every"][..]),
        (&["--clip-grad-norm=-1"][..], &["--clip-grad-norm", "a finite number > 0", "-1"][..]),
        (&["--clip-grad-norm", "inf"][..], &["--clip-grad-norm", "inf"][..]),
    ] {
        let (code, _, err) = cnn3d(&train_args(&c, &out, flags));
        assert_eq!(code, 2, "{flags:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{flags:?}: the message lacks {n:?}: {err}");
        }
    }
}

/// A state_dict of the tiny model (one input channel) with every value 0.5 — no training needed
/// to make a checkpoint the loader accepts, and each bad variant differs from it in one way.
fn tiny_state_dict() -> Vec<Tensor> {
    let f = |name: &str, shape: &[usize]| Tensor::f32(name, shape, vec![0.5; shape.iter().product()]);
    vec![
        f("conv.weight", &[2, 1, 3, 3, 3]),
        f("conv.bias", &[2]),
        f("fc1.weight", &[12, 54]),
        f("fc1.bias", &[12]),
        f("batch.weight", &[12]),
        f("batch.bias", &[12]),
        f("batch.running_mean", &[12]),
        f("batch.running_var", &[12]),
        Tensor::i64("batch.num_batches_tracked", &[], vec![3]),
        f("fc2.weight", &[10, 12]),
        f("fc2.bias", &[10]),
    ]
}

#[test]
fn bad_checkpoints_name_the_file_the_tensor_and_both_shapes() {
    let dir = scratch("bad-checkpoints");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_text()).unwrap();
    let meta = BTreeMap::from([("colormap".to_string(), "none".to_string())]);
    let write = |name: &str, tensors: Vec<Tensor>| {
        let path = dir.join(name);
        checkpoint::save(&path, &tensors, &meta).unwrap();
        path
    };
    let good = write("good.safetensors", tiny_state_dict());
    let bytes = std::fs::read(&good).unwrap();
    let raw = |name: &str, b: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, b).unwrap();
        path
    };
    let swap = |name: &str, t: Tensor| {
        tiny_state_dict().into_iter().map(|x| if x.name == name { t.clone() } else { x }).collect::<Vec<_>>()
    };
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        ("not safetensors", raw("text.safetensors", b"epoch,train_loss\n1,0.5\n"), vec!["not a valid safetensors file"]),
        ("empty", raw("empty.safetensors", b""), vec!["not a valid safetensors file"]),
        ("truncated", raw("cut.safetensors", &bytes[..bytes.len() - 7]), vec!["not a valid safetensors file", "truncated"]),
        ("tensor missing", write("missing.safetensors", tiny_state_dict().into_iter().filter(|t| t.name != "fc2.bias").collect()), vec![
            "tensor \"fc2.bias\" is missing",
            "F32 [10]",
        ]),
        ("extra tensor", write("extra.safetensors", [tiny_state_dict(), vec![Tensor::f32("fc3.weight", &[2, 2], vec![0.0; 4])]].concat()), vec![
            "unexpected tensor \"fc3.weight\"",
            "F32 [2, 2]",
        ]),
        ("wrong shape", write("shape.safetensors", swap("conv.weight", Tensor::f32("conv.weight", &[2, 3, 3, 3, 3], vec![0.0; 162]))), vec![
            "tensor \"conv.weight\"",
            "expected F32 [2, 1, 3, 3, 3], found F32 [2, 3, 3, 3, 3]",
        ]),
        ("wrong dtype", write("dtype.safetensors", swap("fc1.bias", Tensor::i64("fc1.bias", &[12], vec![0; 12]))), vec![
            "tensor \"fc1.bias\"",
            "expected F32 [12], found I64 [12]",
        ]),
    ];
    let c = config.display().to_string();
    let mut failures = vec![];
    for (what, path, needles) in &cases {
        let p = path.display().to_string();
        // predict shares eval's loading; one case shows it.
        let cmds: &[&str] = if *what == "wrong shape" { &["eval", "predict"] } else { &["eval"] };
        for &cmd in cmds {
            let (code, _, err) = cnn3d(&[cmd, "--checkpoint", &p, "--config", &c, "--limit", "4"]);
            let missing: Vec<&str> = std::iter::once(p.as_str()).chain(needles.iter().copied()).filter(|n| !err.contains(n)).collect();
            if code != 2 || !missing.is_empty() {
                failures.push(format!("{cmd} {what}: exit code {code}, missing {missing:?} in:\n{err}"));
            }
        }
    }
    // The same checks guard --init, and the good file passes them.
    let out = dir.join("run").display().to_string();
    let missing = dir.join("missing.safetensors").display().to_string();
    let (code, _, err) = cnn3d(&train_args(&c, &out, &["--init", &missing, "--epochs", "1"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fc2.bias"), "{err}");
    let (code, _, err) = cnn3d(&["eval", "--checkpoint", &good.display().to_string(), "--config", &c, "--limit", "4"]);
    assert_eq!(code, 0, "the unmodified checkpoint loads: {err}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The data and sizes of the long-run tests: 240 steps of 4 samples per epoch (about 2 s on
/// lavapipe), so that a signal sent after the first checkpoint lands mid-epoch.
fn long_args<'a>(config: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train", "--config", config, "--colormap", "none", "--limit-train", "960", "--limit-test", "16", "--batch-size", "4",
        "--epochs", "3", "--seed", "5", "--quiet", "--out", out,
    ];
    args.extend_from_slice(extra);
    args
}

fn tiny_config_file(dir: &Path) -> String {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, tiny_text()).unwrap();
    path.display().to_string()
}

/// The uninterrupted long run, made once per test binary and shared by the tests that
/// compare an interrupted run with it.
fn uninterrupted() -> &'static Path {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("uninterrupted");
        let (config, out) = (tiny_config_file(&dir), dir.join("run"));
        let o = out.display().to_string();
        let (code, _, err) = cnn3d(&long_args(&config, &o, &[]));
        assert_eq!(code, 0, "{err}");
        out
    })
}

/// metrics.csv without its wall-clock columns (seconds, samples_per_s).
fn metrics_without_times(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
        .collect()
}

fn assert_same_run(a: &Path, b: &Path) {
    let (wa, wb) = (std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(b.join("model.safetensors")).unwrap());
    assert!(wa == wb, "{} and {} end with different weights", a.display(), b.display());
    assert_eq!(metrics_without_times(a), metrics_without_times(b));
}

fn metadata(path: &Path) -> BTreeMap<String, String> {
    checkpoint::load(path).unwrap_or_else(|e| panic!("{e}")).metadata
}

/// Waits until `path` exists (a checkpoint is renamed into place whole), or panics.
fn wait_for(path: &Path, child: &mut std::process::Child) {
    let started = std::time::Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {} appeared", path.display());
        }
        assert!(started.elapsed().as_secs() < 300, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cnn3d"))
        .env("CNN3D_NO_TUNE", "1")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start cnn3d")
}

#[test]
fn a_run_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_one() {
    let dir = scratch("killed");
    let (config, out) = (tiny_config_file(&dir), dir.join("run"));
    let o = out.display().to_string();
    let mut child = spawn(&long_args(&config, &o, &["--checkpoint-every", "2"]));
    let resume_file = out.join("optimizer.safetensors");
    wait_for(&resume_file, &mut child);
    // Every second epoch: the first checkpoint is epoch 2's, with both metrics rows before it.
    assert_eq!(metadata(&resume_file)["epoch"], "2");
    assert!(metrics_without_times(&out).len() >= 3, "metrics.csv lacks the rows of epochs 1 and 2");
    std::thread::sleep(std::time::Duration::from_millis(400));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.join("summary.json").exists(), "the run finished before it was killed; nothing was tested");
    let (code, _, err) = cnn3d(&["train", "--resume", &o, "--limit-train", "960", "--limit-test", "16", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_same_run(uninterrupted(), &out);
}

#[test]
fn ctrl_c_saves_mid_epoch_and_resume_continues_exactly() {
    let dir = scratch("ctrl-c");
    let (config, out) = (tiny_config_file(&dir), dir.join("run"));
    let o = out.display().to_string();
    let mut child = spawn(&long_args(&config, &o, &[]));
    let resume_file = out.join("optimizer.safetensors");
    wait_for(&resume_file, &mut child);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted in epoch") && err.contains(&format!("cnn3d train --resume {o}")), "{err}");
    let meta = metadata(&resume_file);
    let step: usize = meta["epoch_step"].parse().unwrap();
    assert!((1..240).contains(&step), "not a mid-epoch checkpoint: {meta:?}");
    assert_eq!(metadata(&out.join("model.safetensors"))["step"], meta["step"], "model and optimizer state of different steps");
    let (code, _, err) = cnn3d(&["train", "--resume", &o, "--limit-train", "960", "--limit-test", "16", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_same_run(uninterrupted(), &out);
}

/// A kill between the two checkpoint writes leaves a model.safetensors (and metrics rows)
/// newer than optimizer.safetensors; --resume reads only the latter and redoes the epoch.
#[test]
fn a_kill_between_the_checkpoint_files_still_resumes_exactly() {
    let dir = scratch("between-files");
    let config = tiny_config_file(&dir);
    let run = |name: &str, epochs: &str| {
        let out = dir.join(name);
        let o = out.display().to_string();
        let (code, _, err) = cnn3d(&train_args(&config, &o, &["--epochs", epochs]));
        assert_eq!(code, 0, "{err}");
        out
    };
    let (one, two, three) = (run("one", "1"), run("two", "2"), run("three", "3"));
    for f in ["model.safetensors", "metrics.csv"] {
        std::fs::copy(two.join(f), one.join(f)).unwrap();
    }
    let o = one.display().to_string();
    let (code, _, err) = cnn3d(&["train", "--resume", &o, "--epochs", "3", "--limit-train", "48", "--limit-test", "16", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_same_run(&three, &one);
}

/// The checkpoint records the run's data (file, --limit-train, --limit-test, --batch-size):
/// resuming on other data is refused naming both values, as is a step beyond the epoch; a
/// checkpoint without the record (an older cnn3d's) resumes with a warning.
#[test]
fn resuming_on_other_data_is_refused_naming_both() {
    let dir = scratch("other-data");
    let config = tiny_config_file(&dir);
    let out = dir.join("run");
    let o = out.display().to_string();
    let args = |limit: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["train", "--colormap", "none", "--limit-train", limit, "--limit-test", "16", "--quiet"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| cnn3d(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut first = args("200", &["--epochs", "1"]);
    first.extend(["--config".to_string(), config.clone(), "--out".to_string(), o.clone()]);
    let (code, _, err) = run(first);
    assert_eq!(code, 0, "{err}");
    let ck = out.join("optimizer.safetensors");
    let meta = metadata(&ck);
    assert_eq!((meta["data"].as_str(), meta["limit_train"].as_str(), meta["limit_test"].as_str(), meta["batch_size"].as_str()), ("bundled", "200", "16", "16"));
    let before = std::fs::read(&ck).unwrap();
    let resume = |limit: &'static str, extra: &[&str]| {
        let mut a = args(limit, &["--epochs", "2"]);
        a.extend(["--resume".to_string(), o.clone()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        run(a)
    };
    let (code, _, err) = resume("300", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--limit-train 200") && err.contains("--limit-train 300") && err.contains("optimizer.safetensors"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| !l.starts_with('[')).count(), 1, "one line besides the log's: {err}");
    let (code, _, err) = resume("200", &["--batch-size", "8"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--batch-size 16") && err.contains("--batch-size 8"), "{err}");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist3d.h5");
    let (code, _, err) = resume("200", &["--data", fixture.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--data bundled") && err.contains("mnist3d.h5"), "{err}");
    assert!(std::fs::read(&ck).unwrap() == before, "a refused resume leaves the checkpoint as it was");

    // A step beyond the epoch (200 samples in batches of 16: 13 steps).
    let mut c = checkpoint::load(&ck).unwrap();
    c.metadata.insert("epoch_step".into(), "14".into());
    checkpoint::save(&ck, &c.tensors, &c.metadata).unwrap();
    let (code, _, err) = resume("200", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("step 14 of epoch 2") && err.contains("13 steps"), "{err}");

    // An older checkpoint without the record: resumed, with a warning naming what is unchecked.
    c.metadata.insert("epoch_step".into(), "0".into());
    for key in ["data", "limit_train", "limit_test", "batch_size"] {
        c.metadata.remove(key);
    }
    checkpoint::save(&ck, &c.tensors, &c.metadata).unwrap();
    let (code, _, err) = resume("200", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("does not record the run's --data, --limit-train, --limit-test, --batch-size"), "{err}");
    assert_eq!(metadata(&ck)["limit_train"], "200", "the resumed run records its data");
}

#[test]
fn same_seed_same_weights_and_metrics_and_clipping_is_applied() {
    let dir = scratch("determinism");
    let config = tiny_config_file(&dir);
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let o = out.display().to_string();
        let (code, _, err) = cnn3d(&train_args(&config, &o, extra));
        assert_eq!(code, 0, "{err}");
        out
    };
    let a = run("a", &[]);
    let b = run("b", &[]);
    assert_same_run(&a, &b);
    // A limit far above the gradients' norm multiplies them by exactly 1: the same run.
    let loose = run("loose", &["--clip-grad-norm", "1e6"]);
    assert_same_run(&a, &loose);
    // A tight one changes every step: other weights, and the same ones again with the same seed.
    let tight = run("tight", &["--clip-grad-norm", "0.01"]);
    let again = run("tight-again", &["--clip-grad-norm", "0.01"]);
    assert!(std::fs::read(a.join("model.safetensors")).unwrap() != std::fs::read(tight.join("model.safetensors")).unwrap());
    assert_same_run(&tight, &again);
}

/// A device whose max_storage_buffer_binding_size is lowered on purpose (as a small GPU's):
/// a batch whose activations exceed it is refused before the run starts, naming the tensor,
/// its size and the limit; a smaller batch of the same model trains.
#[test]
fn a_batch_beyond_the_devices_binding_limit_is_refused_before_the_run() {
    let dir = scratch("limits");
    let config = dir.join("wide.toml");
    // conv3d with 64 channels at 14³: 16 samples need 16·64·14³·4 = 11,239,424 bytes.
    let text = tiny_text().replacen("out_channels = 2\nkernel = 3\nstride = 2", "out_channels = 64\nkernel = 3", 1);
    assert!(text.contains("out_channels = 64"));
    std::fs::write(&config, text).unwrap();
    let (c, out) = (config.display().to_string(), dir.join("run"));
    let o = out.display().to_string();
    let limit = [("CNN3D_MAX_STORAGE_BINDING", "4000000")];
    let args = vec!["train", "--config", &c, "--colormap", "none", "--limit-train", "32", "--limit-test", "8", "--epochs", "1", "--quiet", "--out", &o];
    let (code, _, err) = cnn3d_env(&args, &limit);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tensor \"conv.y\" needs 11239424 bytes, above this adapter's max_storage_buffer_binding_size of 4000000 bytes"),
        "{err}"
    );
    assert!(!err.contains("panicked") && !err.contains("Validation Error"), "{err}");
    // The training batch is named, with the largest that fits: 4,000,000 / 702,464 bytes a sample.
    assert!(err.contains("a training batch of 16 samples does not fit this device"), "{err}");
    assert!(err.contains("the largest training batch that fits is 5 samples (--batch-size 5)"), "{err}");
    assert!(!out.exists(), "the refused run wrote {}", out.display());
    // 4 samples: 2,809,856 bytes, within the limit.
    let mut small = args.clone();
    small.extend_from_slice(&["--batch-size", "4"]);
    let (code, _, err) = cnn3d_env(&small, &limit);
    assert_eq!(code, 0, "{err}");

    // A batch larger than the training data (4 samples) trains on all of it; the per-epoch
    // evaluation of 8 samples at batch 1000 runs in micro-batches of 5 and 3.
    let o2 = dir.join("run-big").display().to_string();
    let mut big = args.clone();
    assert_eq!((big[5], big[12]), ("--limit-train", "--out"));
    (big[6], big[13]) = ("4", &o2);
    big.extend_from_slice(&["--batch-size", "1000"]);
    let (code, _, err) = cnn3d_env(&big, &limit);
    assert_eq!(code, 0, "{err}");

    // eval and predict of a batch beyond the limit: micro-batches, the same numbers as a
    // batch that fits on a device without the limit.
    let ck = out.join("model.safetensors").display().to_string();
    let eval = |batch: &str, env: &[(&str, &str)]| {
        let (code, out, err) = cnn3d_env(&["eval", "--checkpoint", &ck, "--limit", "8", "--batch-size", batch, "--json"], env);
        assert_eq!(code, 0, "eval --batch-size {batch}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["loss"].as_f64().unwrap(), v["accuracy"].as_f64().unwrap(), v["confusion"].clone())
    };
    let (loss, acc, confusion) = eval("1000", &limit);
    let (loss5, acc5, confusion5) = eval("5", &[]);
    assert_eq!((acc, &confusion), (acc5, &confusion5));
    assert!((loss - loss5).abs() <= 1e-6 * loss5.abs(), "{loss} vs {loss5}");
    let predict = |batch: &str, env: &[(&str, &str)]| {
        let (code, out, err) = cnn3d_env(&["predict", "--checkpoint", &ck, "--limit", "8", "--batch-size", batch, "--logits"], env);
        assert_eq!(code, 0, "predict --batch-size {batch}: {err}");
        out.lines().skip(1).map(|l| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let (a, b) = (predict("1000", &limit), predict("5", &[]));
    assert_eq!(a.len(), 8);
    for (ra, rb) in a.iter().zip(&b) {
        assert_eq!(ra[..3], rb[..3]);
        for (x, y) in ra[3..].iter().zip(&rb[3..]) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "logits {ra:?} vs {rb:?}");
        }
    }
}

/// The process's resident memory in kB (Linux: /proc/PID/status).
#[cfg(target_os = "linux")]
fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Memory stays flat over a long run: nothing is allocated per step, and what an epoch
/// allocates (evaluation plans, the curves' bitmap) is freed. On lavapipe GPU allocations are
/// host memory, so the process's RSS covers them too. Epoch 1 is left out of the baseline:
/// the first checkpoint and curves are drawn after its metrics row, and load fonts and encoders.
#[cfg(target_os = "linux")]
#[test]
fn memory_is_flat_over_fifty_epochs() {
    let dir = scratch("memory");
    let config = tiny_config_file(&dir);
    let out = dir.join("run");
    let o = out.display().to_string();
    let mut child = spawn(&train_args(&config, &o, &["--epochs", "50"]));
    let mut rss = BTreeMap::new();
    let mut epochs = 0;
    while child.try_wait().unwrap().is_none() {
        let rows = std::fs::read_to_string(out.join("metrics.csv")).map_or(0, |t| t.lines().count().saturating_sub(1));
        if rows != epochs {
            epochs = rows;
            if let Some(kb) = vm_rss_kb(child.id()) {
                rss.insert(rows, kb);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.wait().unwrap().success());
    let (Some(&early), Some(&late)) = (rss.get(&2), rss.get(&50)) else {
        panic!("RSS not sampled after epochs 2 and 50: {rss:?}");
    };
    // Measured on lavapipe: +140 kB from epoch 2 to 50. The bound is 7 kB per step over these
    // 144 steps: less than a plan (uniform buffers, bind groups) compiled per step would leak.
    assert!(late <= early + 1024, "RSS grew from {early} kB after epoch 2 to {late} kB after epoch 50: {rss:?}");
}

#[test]
fn a_diverging_run_stops_with_advice_and_keeps_the_last_checkpoint() {
    let dir = scratch("diverged");
    let config = tiny_config_file(&dir);
    let out = dir.join("run");
    let o = out.display().to_string();
    let (code, _, err) = cnn3d(&train_args(&config, &o, &["--epochs", "1"]));
    assert_eq!(code, 0, "{err}");
    let before: Vec<Vec<u8>> = ["model.safetensors", "optimizer.safetensors"].iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    // Adam's steps are about lr in size: 1e30 sends the weights, then the loss, to infinity.
    let (code, _, err) = cnn3d(&["train", "--resume", &o, "--epochs", "2", "--lr", "1e30", "--limit-train", "48", "--limit-test", "16", "--quiet"]);
    assert_eq!(code, 1, "{err}");
    // Step 1's loss is that of the good weights; its update is the one that breaks them.
    assert!(err.contains("the training loss became") && err.contains("at epoch 2, step 2;"), "{err}");
    assert!(err.contains("lower learning rate (--lr)"), "{err}");
    let after: Vec<Vec<u8>> = ["model.safetensors", "optimizer.safetensors"].iter().map(|f| std::fs::read(out.join(f)).unwrap()).collect();
    assert!(before == after, "the last good checkpoint was overwritten");
}
