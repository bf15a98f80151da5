//! The profiler, `cnn3d profile`, `cnn3d bench` and `train --profile-every`, on a tiny model
//! so that they stay fast on a software adapter.

mod common;

use std::path::Path;
use std::process::Command;

use cnn3d::optim::UpdateRule;
use cnn3d::profile::{self, Bench};
use cnn3d::train::Config;

/// conv3d (2 channels, k3, stride 2) → leaky_relu → max_pool3d 2 → flatten → batch_norm →
/// dropout → dense 10: every layer kind the seed model has, at a few hundred parameters.
const TINY: &str = r#"
[model]
input = [16, 16, 16]
classes = 10

[[model.layers]]
kind = "conv3d"
name = "conv"
out_channels = 2
kernel = 3
stride = 2

[[model.layers]]
kind = "leaky_relu"
name = "act"
slope = 0.01

[[model.layers]]
kind = "max_pool3d"
name = "pool"
kernel = 2

[[model.layers]]
kind = "flatten"
name = "flat"

[[model.layers]]
kind = "batch_norm"
name = "bn"

[[model.layers]]
kind = "dropout"
name = "drop"
p = 0.1

[[model.layers]]
kind = "dense"
name = "fc"
out_features = 10

[train]
batch_size = 4
"#;

fn tiny_file(dir: &Path) -> String {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, TINY).unwrap();
    path.display().to_string()
}

fn cnn3d(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn3d")).args(args).env("CNN3D_NO_TUNE", "1").output().expect("run cnn3d");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_dispatch_of_a_step_is_timed_exactly_once() {
    let gpu = common::gpu();
    let config = Config::parse(TINY, "tiny.toml").unwrap();
    let mut bench = Bench::new(gpu, &config).unwrap();
    for kind in ["sgd", "adam"] {
        let mut step = bench.train_step(4, &UpdateRule::defaults(kind).unwrap()).unwrap();
        let expected: Vec<String> = step.plan.dispatch_labels().map(String::from).collect();
        assert!(expected.iter().any(|l| l == "conv/conv3d.backward_weight"), "{expected:?}");
        // Twice: the second replay reuses the plan's query set.
        for _ in 0..2 {
            let p = bench.run_profiled(&mut step).unwrap();
            let got: Vec<&str> = p.dispatches.iter().map(|d| d.label.as_str()).collect();
            assert_eq!(got, expected, "{kind}: the profile lists the plan's dispatches, once each, in order");
            for d in &p.dispatches {
                assert!(d.ns > 0, "{kind}: {} took 0 ns", d.label);
                // Every layer but conv3d (whose costs come with its kernel work) states its cost.
                if !d.label.contains("conv3d.") {
                    assert!(d.bytes > 0, "{kind}: {} has no byte count", d.label);
                }
            }
            assert!(p.gpu_ns() <= p.wall_ns, "{kind}: GPU {} ns > wall {} ns", p.gpu_ns(), p.wall_ns);
            let starts: Vec<u64> = p.dispatches.iter().map(|d| d.start_ns).collect();
            assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{kind}: dispatches start in order: {starts:?}");
        }
        // The plain replay of the same plan still works after profiled ones.
        bench.run(&mut step).unwrap();
    }
}

#[test]
fn each_timing_method_times_every_dispatch() {
    use cnn3d::gpu::TimingMethod;
    let gpu = common::gpu();
    let config = Config::parse(TINY, "tiny.toml").unwrap();
    let mut bench = Bench::new(gpu, &config).unwrap();
    let step = bench.train_step(4, &UpdateRule::defaults("sgd").unwrap()).unwrap();
    let expected: Vec<String> = step.plan.dispatch_labels().map(String::from).collect();
    let info = gpu.info();
    let mut methods = vec![TimingMethod::WallClock];
    if info.timestamp_query {
        methods.push(TimingMethod::TimestampsPerPass);
    }
    if info.timestamp_query && info.timestamp_query_inside_passes {
        methods.push(TimingMethod::TimestampsInsidePasses);
    }
    // Switching methods on one plan reuses its query set too.
    for m in methods.iter().chain(&methods) {
        let p = gpu.submit_profiled_as(&step.plan, *m).unwrap();
        assert_eq!(p.method, *m);
        let got: Vec<&str> = p.dispatches.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(got, expected, "{m:?}");
        assert!(p.dispatches.iter().all(|d| d.ns > 0), "{m:?}: {:?}", p.dispatches);
        assert!(p.gpu_ns() <= p.wall_ns, "{m:?}: GPU {} ns > wall {} ns", p.gpu_ns(), p.wall_ns);
    }
}

#[test]
fn the_kernel_table_adds_up() {
    let gpu = common::gpu();
    let config = Config::parse(TINY, "tiny.toml").unwrap();
    let opts = profile::ProfileOptions { batch: 4, steps: 2, warmup: 0 };
    let steps = profile::profile_training(gpu, &config, &opts).unwrap();
    let rows = profile::kernel_table(&steps);
    // One row per label; a label that several dispatches of a step share (a convolution's
    // channel groups, a pass with a zeroing dispatch) counts them all as calls.
    let labels: Vec<&str> = steps[0].dispatches.iter().map(|d| d.label.as_str()).collect();
    let mut distinct = labels.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(rows.len(), distinct.len(), "every label of the step is one row");
    for r in &rows {
        assert_eq!(r.calls, 2 * labels.iter().filter(|&&l| l == r.name).count(), "{}", r.name);
    }
    let share: f64 = rows.iter().map(|r| r.share).sum();
    assert!((share - 1.0).abs() < 1e-9, "shares sum to {share}");
    // The dense layer runs on the convolution kernels (Dense::as_conv).
    let dense = rows.iter().find(|r| r.name == "fc/conv3d.forward").unwrap();
    assert!(dense.gflops.unwrap() > 0.0 && dense.gbps.unwrap() > 0.0);
    let text = profile::format_table(&steps);
    assert!(text.contains("GFLOP/s") && text.contains("step 2:"), "{text}");
}

#[test]
fn profile_writes_a_chrome_trace_and_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_file(dir.path());
    let out = dir.path().join("prof");
    let (code, stdout, err) = cnn3d(&[
        "profile", "--config", &config, "--batch-size", "4", "--steps", "2", "--warmup", "1", "--out", out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(stdout.contains("conv/conv3d.forward") && stdout.contains("wall"), "{stdout}");

    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("profile.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("a traceEvents array");
    let slices: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(!slices.is_empty());
    for e in &slices {
        for field in ["name", "ph", "ts", "dur", "pid", "tid"] {
            assert!(e.get(field).is_some(), "event lacks {field}: {e}");
        }
        assert!(e["dur"].as_f64().unwrap() > 0.0 && e["ts"].as_f64().unwrap() >= 0.0, "{e}");
    }
    // One track, and the slices of the two steps do not overlap on it.
    assert!(slices.iter().all(|e| e["pid"] == 1 && e["tid"] == 1));
    let mut ends = 0.0;
    for e in &slices {
        let ts = e["ts"].as_f64().unwrap();
        assert!(ts + 1e-3 >= ends, "slices overlap at {e}");
        ends = ts + e["dur"].as_f64().unwrap();
    }
    let csv = std::fs::read_to_string(out.join("profile.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,index,label,start_us,dur_us,flops,bytes"));
    assert_eq!(lines.count(), slices.len(), "one CSV row per slice");

    let (code, stdout, err) = cnn3d(&["profile", "--config", &config, "--steps", "1", "--warmup", "0", "--json", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {err}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("profile --json prints JSON");
    assert!(doc["kernels"].as_array().is_some_and(|k| !k.is_empty()) && doc["steps"][0]["wall_ms"].is_number(), "{doc}");
}

#[test]
fn profile_refuses_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_file(dir.path());
    let (code, _, err) = cnn3d(&["profile", "--config", &config, "--steps", "0", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("--steps"), "{err}");
    let (code, _, err) = cnn3d(&["profile", "--config", &config, "--batch-size", "1", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn bench_json_has_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_file(dir.path());
    // 20,000 samples (983 MB of input) exceed the binding limit (lowered to 100 MiB so that
    // every adapter behaves alike): they run as equal micro-batches that fit.
    let (code, stdout, err) = cnn3d(&[
        "bench", "--config", &config, "--batch-size", "4", "--reps", "1", "--warmup", "0", "--gemm-size", "64",
        "--infer-batch", "8,20000", "--max-storage-binding", "104857600", "--json",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("bench --json prints JSON");
    for field in ["name", "backend", "device_type", "driver", "driver_info"] {
        assert!(doc["adapter"][field].is_string(), "adapter.{field}: {doc}");
    }
    assert_eq!(doc["wgpu_version"], "30.0.2");
    assert!(doc["timing"].is_string());
    let train = doc["train"].as_array().unwrap();
    let kinds: Vec<&str> = train.iter().map(|t| t["optimizer"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sgd", "adam"]);
    for t in train {
        for s in ["median", "min", "max"] {
            assert!(t["samples_per_s"][s].as_f64().unwrap() > 0.0, "{t}");
        }
    }
    let infer = doc["inference"].as_array().unwrap();
    assert_eq!(infer[0]["batch"], 8);
    assert!(infer[0]["samples_per_s"]["median"].as_f64().unwrap() > 0.0);
    assert!(infer[0]["micro_batch"].is_null(), "{}", infer[0]);
    assert_eq!(infer[1]["batch"], 20000);
    assert!(infer[1]["samples_per_s"]["median"].as_f64().unwrap() > 0.0, "{}", infer[1]);
    let micro = infer[1]["micro_batch"].as_u64().unwrap();
    assert!(micro < 20000 && 20000 % micro == 0, "{micro}");
    assert!(infer[1]["skipped"].is_null());
    let layers = doc["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l["layer"] == "conv") && layers.iter().any(|l| l["layer"] == "fc" && l["gflops"].as_f64().unwrap() > 0.0));
    assert_eq!(doc["gemm"]["m"], 64);
    assert!(doc["gemm"]["gflops"].as_f64().unwrap() > 0.0);
    // Every candidate is reported, and the headline is the fastest of them.
    let candidates = doc["gemm"]["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 2, "{candidates:?}");
    let best = candidates.iter().map(|c| c["gflops"].as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(doc["gemm"]["gflops"].as_f64().unwrap(), best);
    assert!(candidates.iter().any(|c| c["kernel"] == doc["gemm"]["kernel"]));
    // The convolution passes, each against the GEMM of its rep.
    let passes = doc["conv_passes"].as_array().unwrap();
    let conv: Vec<&str> = passes.iter().filter(|p| p["layer"] == "conv").map(|p| p["pass"].as_str().unwrap()).collect();
    assert!(conv.contains(&"forward") && conv.contains(&"backward_weight"), "{passes:?}");
    for p in passes {
        assert!(p["ms"]["median"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["of_gemm"]["median"].as_f64().unwrap() > 0.0, "{p}");
        assert_eq!(p["of_gemm"]["reps"], 1, "{p}");
    }
}

#[test]
fn train_profile_every_records_a_step_in_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_file(dir.path());
    let out = dir.path().join("run");
    let (code, _, err) = cnn3d(&[
        "train", "--config", &config, "--epochs", "1", "--batch-size", "4", "--limit-train", "12", "--limit-test", "4",
        "--profile-every", "2", "--quiet", "--out", out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("profile.json")).unwrap()).unwrap();
    let slices = trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X").count();
    assert!(slices > 10, "one step's dispatches: {slices}");
    assert!(out.join("profile.csv").exists() && out.join("model.safetensors").exists());
    let (code, _, _) = cnn3d(&["train", "--config", &config, "--profile-every", "0", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "--profile-every 0 is a usage error");
}
