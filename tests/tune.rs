//! Kernel tuning: winners are verified, cached per adapter and geometry, and a bad cache file
//! is ignored, never fatal.

use std::process::Command;

use cnn3d::gpu::{Gpu, GpuOptions, Tuning};
use cnn3d::layers::conv3d::{Conv3d, Kernels};

fn gpu_tuning(cache: &std::path::Path) -> Gpu {
    let opts = GpuOptions { adapter: std::env::var("CNN3D_ADAPTER").ok(), tune: Tuning::On { cache: Some(cache.to_path_buf()) }, ..Default::default() };
    Gpu::new(&opts).expect("an adapter")
}

#[test]
fn tuning_writes_a_cache_that_the_next_process_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    let conv = Conv3d::new(2, 9, 5, [6, 7, 5], [3, 2, 3]).with_padding([1, 0, 1]);
    let gpu = gpu_tuning(&cache);
    let first = cnn3d::tune::scratch(&gpu, &conv, true, None).unwrap().choice;
    let text = std::fs::read_to_string(&cache).expect("the cache was written");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = doc["conv3d"].as_object().expect("a conv3d map");
    assert_eq!(entries.len(), 1, "{text}");
    let (key, value) = entries.iter().next().unwrap();
    assert!(key.contains(&gpu.info().name) && key.contains("ci9 co5"), "{key}");
    assert_eq!(value["forward"].as_str().unwrap(), first.to_string().split('/').next().unwrap());

    // Another adapter handle (as in a new process) takes the cached choice, even a choice it
    // would not have measured: here one written by hand.
    let mut doc = doc.clone();
    let other = if first.backward_weight == cnn3d::layers::conv3d::WeightKernels::Channels { "columns" } else { "channels" };
    doc["conv3d"][key]["backward_weight"] = other.into();
    std::fs::write(&cache, serde_json::to_vec(&doc).unwrap()).unwrap();
    let again = cnn3d::tune::scratch(&gpu_tuning(&cache), &conv, true, None).unwrap().choice;
    assert_eq!(again.to_string().rsplit('/').next().unwrap(), other);
}

#[test]
fn tuning_leaves_no_trace_in_the_memory_peak() {
    // The tuner's trial tensors at the batch (x, y, dy, dx, dweight: ~1.3 MB here) are freed
    // once it has chosen; the peak a run reports is that of the tensors it keeps.
    let dir = tempfile::tempdir().unwrap();
    let gpu = gpu_tuning(&dir.path().join("tune.json"));
    let kept = gpu.zeros("kept", 1000, cnn3d::gpu::DType::F32).unwrap();
    let before = gpu.memory();
    let scratch = cnn3d::tune::scratch(&gpu, &Conv3d::new(16, 4, 8, [12, 12, 12], [3, 3, 3]), true, None).unwrap();
    let after = gpu.memory();
    assert!(after.live_bytes >= before.live_bytes, "{before:?} {after:?}");
    assert_eq!(after.peak_bytes, before.peak_bytes.max(after.live_bytes), "{before:?} {after:?}");
    drop((kept, scratch));
}

#[test]
fn a_corrupt_cache_is_ignored_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    std::fs::write(&cache, b"{ not json").unwrap();
    let conv = Conv3d::new(1, 2, 3, [5, 5, 5], [2, 2, 2]);
    cnn3d::tune::scratch(&gpu_tuning(&cache), &conv, false, None).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(doc["conv3d"].as_object().unwrap().len(), 1);
}

#[test]
fn the_cli_tunes_into_cnn3d_cache_dir_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cnn3d"))
            .args(["profile", "--config", "tests/fixtures/tiny.toml", "--steps", "1", "--batch-size", "3", "--out"])
            .arg(dir.path())
            .args(extra)
            .env("CNN3D_CACHE_DIR", dir.path())
            .env_remove("CNN3D_NO_TUNE")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["--no-tune"]);
    assert!(!dir.path().join("tune.json").exists());
    run(&[]);
    assert!(dir.path().join("tune.json").exists());
}

#[test]
fn a_cached_kernel_the_device_cannot_run_is_tuned_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    // 11·10·11 taps do not fit a uniform block: no tiled kernel can run forward and
    // backward_input (the direct and implicit-GEMM kernels can).
    let conv = Conv3d::new(1, 2, 3, [12, 11, 12], [11, 10, 11]);
    let gpu = gpu_tuning(&cache);
    let unblocked = |k: Kernels| k == Kernels::Direct || k.tile().is_some();
    let first = cnn3d::tune::scratch(&gpu, &conv, true, None).unwrap().choice;
    assert!(unblocked(first.forward), "{first}");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let key = doc["conv3d"].as_object().unwrap().keys().next().unwrap().clone();
    doc["conv3d"][&key]["forward"] = "tiled".into();
    std::fs::write(&cache, serde_json::to_vec(&doc).unwrap()).unwrap();
    // A new process reads the stale entry, tunes again instead of failing, and rewrites it.
    let again = cnn3d::tune::scratch(&gpu_tuning(&cache), &conv, true, None).unwrap().choice;
    assert!(unblocked(again.forward), "{again}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(doc["conv3d"][&key]["forward"], again.forward.name());
}

#[test]
fn runs_tuning_at_once_keep_each_others_results() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    // Four devices (as four processes would) tune four geometries at the same time.
    std::thread::scope(|s| {
        for c_out in 2..6 {
            let cache = &cache;
            s.spawn(move || {
                let gpu = gpu_tuning(cache);
                cnn3d::tune::scratch(&gpu, &Conv3d::new(1, 2, c_out, [4, 4, 4], [2, 2, 2]), false, None).unwrap();
            });
        }
    });
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(doc["conv3d"].as_object().unwrap().len(), 4, "{doc}");
}

/// Tunes `conv` on a device of its own with a cache in `cache`, every output the tuner verifies
/// passed through `wrong` first (true: make it wrong, by 0.01 in one element, far beyond the
/// tolerance); returns the result and the candidates the tuner verified, per pass.
fn tune_with_wrong(
    cache: &std::path::Path,
    conv: &Conv3d,
    wrong: impl Fn(&str, cnn3d::layers::conv3d::ConvChoice) -> bool + 'static,
) -> (cnn3d::Result<cnn3d::layers::conv3d::ConvChoice>, Vec<(String, cnn3d::layers::conv3d::ConvChoice)>) {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    let gpu = gpu_tuning(cache);
    let got = cnn3d::tune::tamper_with_outputs(
        move |pass, choice, v| {
            log.lock().unwrap().push((pass.to_string(), choice));
            if wrong(pass, choice) {
                let i = v.len() / 2;
                v[i] += 0.01;
            }
        },
        || cnn3d::tune::scratch(&gpu, conv, true, None).map(|s| s.choice),
    );
    let seen = seen.lock().unwrap().clone();
    (got, seen)
}

/// The tuner verifies every candidate of every pass against the reference before timing it,
/// and a candidate whose output is wrong (here made wrong after it ran, as a broken kernel's
/// would be) is never chosen nor cached, even where it is the fastest: with every candidate
/// but the slow direct/columns kernels made wrong, those must win.
#[test]
fn a_candidate_with_wrong_results_is_never_chosen_nor_cached() {
    use cnn3d::layers::conv3d::WeightKernels;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    let conv = Conv3d::new(2, 9, 5, [6, 7, 5], [3, 2, 3]).with_padding([1, 0, 1]);
    let (kernels, weight) = conv.candidates(&gpu_tuning(&cache));
    assert!(kernels.len() >= 2 && weight.len() >= 2, "too few candidates to choose from: {kernels:?} {weight:?}");
    let (got, seen) = tune_with_wrong(&cache, &conv, |pass, c| match pass {
        "conv3d.forward" => c.forward != Kernels::Direct,
        "conv3d.backward_input" => c.backward_input != Kernels::Direct,
        "conv3d.backward_weight" => c.backward_weight != WeightKernels::Columns,
        p => panic!("unknown pass {p}"),
    });
    let choice = got.unwrap();
    assert_eq!((choice.forward, choice.backward_input, choice.backward_weight), (Kernels::Direct, Kernels::Direct, WeightKernels::Columns), "chose {choice}");
    // Every candidate was verified (no probe at this batch, so none was put out untried).
    for k in &kernels {
        assert!(seen.iter().any(|(p, c)| p == "conv3d.forward" && c.forward == *k), "forward {k:?} never verified: {seen:?}");
        assert!(seen.iter().any(|(p, c)| p == "conv3d.backward_input" && c.backward_input == *k), "backward_input {k:?} never verified: {seen:?}");
    }
    for k in &weight {
        assert!(seen.iter().any(|(p, c)| p == "conv3d.backward_weight" && c.backward_weight == *k), "backward_weight {k:?} never verified: {seen:?}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let entries = doc["conv3d"].as_object().unwrap();
    assert_eq!(entries.len(), 1, "{doc}");
    let cached = entries.values().next().unwrap();
    assert_eq!((cached["forward"].as_str(), cached["backward_input"].as_str(), cached["backward_weight"].as_str()), (Some("direct"), Some("direct"), Some("columns")), "{doc}");
}

/// Where no candidate of a pass matches the reference, tuning is an error naming the pass, and
/// nothing is cached: a wrong kernel is never the fallback.
#[test]
fn a_pass_without_a_right_candidate_is_an_error_and_nothing_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    let conv = Conv3d::new(2, 9, 5, [6, 7, 5], [3, 2, 3]).with_padding([1, 0, 1]);
    let (got, _) = tune_with_wrong(&cache, &conv, |pass, _| pass == "conv3d.backward_weight");
    let e = got.expect_err("every backward_weight kernel was wrong").to_string();
    assert!(e.contains("no BackwardWeight kernel matched the reference"), "{e}");
    assert!(!cache.exists(), "a cache was written: {:?}", std::fs::read_to_string(&cache));
}
