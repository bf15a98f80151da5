//! The command line as a user meets it: listings, JSON documents, and wrong flags.

use std::process::Command;

fn cnn3d(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn3d")).args(args).env("CNN3D_NO_TUNE", "1").output().expect("run cnn3d");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn adapters_json_lists_limits_and_timestamps() {
    let (code, out, err) = cnn3d(&["adapters", "--json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("adapters --json prints JSON");
    let list = doc["adapters"].as_array().expect("an adapters array");
    assert!(!list.is_empty(), "no adapters listed; these tests need one (apt-get install mesa-vulkan-drivers)");
    for a in list {
        for field in [
            "name", "backend", "device_type", "driver", "max_storage_buffer_binding_size", "max_buffer_size",
            "max_compute_workgroups_per_dimension", "timestamp_query",
        ] {
            assert!(a.get(field).is_some(), "adapter entry lacks {field}: {a}");
        }
    }
}

#[test]
fn missing_input_files_are_usage_errors_named_once() {
    for args in [
        &["train", "--config", "no-such-config.toml", "--quiet"][..],
        &["eval", "--checkpoint", "no-such-model.safetensors", "--config", "assets/seed.toml"][..],
    ] {
        let (code, _, err) = cnn3d(args);
        assert_eq!(code, 2, "{args:?}: stderr: {err}");
        let file = args.iter().find(|a| a.starts_with("no-such")).unwrap();
        assert!(err.contains("reading") && err.contains(file), "{args:?}: stderr: {err}");
        assert_eq!(err.matches("No such file").count(), 1, "{args:?}: the OS error once: {err}");
    }
}

#[test]
fn unknown_backend_is_a_usage_error() {
    let (code, _, err) = cnn3d(&["--backend", "glide", "adapters"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown backend \"glide\""), "stderr: {err}");
}

#[test]
fn missing_adapter_lists_the_available_ones() {
    let (code, _, err) = cnn3d(&["--adapter", "no-such-gpu-xyz", "check", "--layer", "activation"]);
    assert_eq!(code, 2, "stderr: {err}");
    assert!(err.contains("no adapter matches --adapter \"no-such-gpu-xyz\""), "stderr: {err}");
    assert!(err.contains("  0: "), "the available adapters are listed: {err}");
    let (code, _, err) = cnn3d(&["--adapter", "99", "check", "--layer", "activation"]);
    assert_eq!(code, 2, "stderr: {err}");
}

#[test]
fn unknown_layer_is_a_usage_error() {
    let (code, _, err) = cnn3d(&["check", "--layer", "conv4d"]);
    assert_eq!(code, 2);
    assert!(err.contains("conv4d") && err.contains("known layers: conv3d"), "stderr: {err}");
}

#[test]
fn check_json_reports_each_kernel() {
    let (code, out, err) = cnn3d(&["check", "--json", "--layer", "activation"]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("check --json prints JSON");
    assert_eq!(doc["pass"], true);
    let kernels = doc["kernels"].as_array().unwrap();
    let names: Vec<&str> = kernels.iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.contains(&"leaky_relu.backward"));
    for k in kernels {
        assert!(k["max_abs_err"].is_number() && k["pass"].is_boolean(), "{k}");
    }
}

/// `check --pipelines` lists every pipeline the check created, each once, with the override
/// constants it was created with (what tools/tint/validate.mjs compiles under Tint).
#[test]
fn check_lists_the_pipelines_it_created() {
    let file = std::env::temp_dir().join(format!("cnn3d-cli-pipelines-{}.json", std::process::id()));
    let path = file.display().to_string();
    let (code, out, err) = cnn3d(&["check", "--layer", "activation", "--pipelines", &path]);
    assert_eq!(code, 0, "stderr: {err}\nstdout: {out}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    std::fs::remove_file(&file).unwrap();
    let keys: Vec<String> = listed.iter().map(|p| format!("{} {} {}", p["shader"], p["entry"], p["constants"])).collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(unique, keys, "sorted, each once");
    // The activation kernels, and the subgroup probe that opening a device with subgroups runs.
    assert!(listed.iter().all(|p| (p["shader"] == "activation" || p["shader"] == "subgroup_layout") && p["constants"].is_object()), "{listed:?}");
    // Every entry point (scalar and vec4), each with the four activations' KIND constants.
    for entry in ["forward", "forward4", "backward", "backward4"] {
        let kinds: Vec<u64> = listed.iter().filter(|p| p["entry"] == entry).filter_map(|p| p["constants"]["KIND"].as_u64()).collect();
        assert_eq!(kinds.len(), 4, "{entry}: {keys:?}");
    }
}

/// Metal does not exist on Linux: the message must say that no adapter was found and how to
/// get one, and the command must fail.
#[cfg(target_os = "linux")]
#[test]
fn no_adapter_says_how_to_get_one() {
    let (code, _, err) = cnn3d(&["--backend", "metal", "check", "--layer", "activation"]);
    assert_eq!(code, 1, "stderr: {err}");
    assert!(err.contains("no GPU adapter found on backend(s) metal"), "stderr: {err}");
    assert!(err.contains("apt-get install mesa-vulkan-drivers"), "stderr: {err}");
}

/// Sizes that a config or a flag controls are counted without wrapping: a model or batch whose
/// tensors cannot be indexed is refused at once, with exit code 2 and one line naming it.
#[test]
fn sizes_beyond_what_the_shaders_index_are_refused_quickly() {
    let dir = std::env::temp_dir().join(format!("cnn3d-cli-sizes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = |conv: &str| {
        format!(
            "[model]\ninput = [16, 16, 16]\nclasses = 10\n[[model.layers]]\nkind = \"conv3d\"\nname = \"big\"\n{conv}\n[[model.layers]]\nkind = \"flatten\"\n[[model.layers]]\nkind = \"dense\"\nout_features = 10\n"
        )
    };
    let one_line = |args: &[&str], parts: &[&str]| {
        let started = std::time::Instant::now();
        let (code, _, err) = cnn3d(args);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(code, 2, "{args:?}: stderr: {err}");
        // One line besides the log's (`[INFO  cnn3d::…] using adapter …`).
        assert_eq!(err.trim().lines().filter(|l| !l.starts_with('[')).count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for p in parts {
            assert!(err.contains(p), "{args:?}: the message lacks {p:?}: {err}");
        }
        assert!(seconds < 20.0, "{args:?}: refused at once, took {seconds:.1} s");
    };
    // 3·10⁹ output channels: 8.2·10¹² values per sample.
    let wide = dir.join("wide.toml");
    std::fs::write(&wide, model("out_channels = 3000000000\nkernel = 3")).unwrap();
    let out = dir.join("run");
    let (w, o) = (wide.to_str().unwrap(), out.to_str().unwrap());
    one_line(&["train", "--config", w, "--quiet", "--out", o], &[w, "layer 0 (big, conv3d)", "[3000000000, 14, 14, 14]", "8232000000000 elements", "4294967295"]);
    one_line(&["profile", "--config", w, "--steps", "1", "--out", o], &["layer 0 (big, conv3d)", "4294967295"]);
    // Padding that makes the flattened size overflow 64 bits.
    let padded = dir.join("padded.toml");
    std::fs::write(&padded, model("out_channels = 3000000000\nkernel = 3\npadding = 2000000")).unwrap();
    let p = padded.to_str().unwrap();
    one_line(&["train", "--config", p, "--quiet", "--out", o], &[p, "layer 0 (big, conv3d)", "more than 2^64 elements"]);
    // 1501199875790166 samples of 3·16³ values: 2⁶⁴ + 8192, which wraps to 8192.
    one_line(&["profile", "--batch-size", "1501199875790166", "--steps", "1", "--out", o], &["6004799503160664 bytes"]);
    one_line(&["bench", "--batch-size", "1000000000000", "--reps", "1"], &["bench indices", "4000000000000 bytes"]);
    // The GEMM's size² matrices: checked before the run and before the host allocates them.
    one_line(&["bench", "--gemm-size", "100000", "--reps", "1"], &["gemm x (--gemm-size squared)", "40000000000 bytes"]);
    one_line(&["bench", "--gemm-size", "5000000000", "--reps", "1"], &["--gemm-size", "5000000000 squared overflows 64 bits"]);
    // Training on all of the bundled data in one batch of 10¹²: the batch that does not fit
    // is named with the largest that does.
    one_line(&["train", "--batch-size", "1000000000000", "--quiet", "--out", o], &["a training batch of", "--batch-size 1000000000000 is more than the data has", "the largest training batch that fits is"]);
    assert!(!out.exists(), "a refused run writes nothing");
    std::fs::remove_dir_all(&dir).ok();
}

/// On a machine without a display session, listing adapters prints no "XDG_RUNTIME_DIR" line
/// (Mesa's device-select layer printed it through libwayland on every start).
#[test]
fn no_display_session_noise_without_a_session() {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn3d")).arg("adapters").env_remove("XDG_RUNTIME_DIR").env_remove("NODEVICE_SELECT").output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

/// `report --quick` (the CPU drivers' mode) writes report.json and report.md with every part:
/// the adapter, check, training and inference throughput, convolution passes, top kernels and
/// the GEMM, each rate as a fraction of the peak given with --peak-tflops.
#[test]
fn report_quick_writes_both_files() {
    let dir = std::env::temp_dir().join(format!("cnn3d-cli-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.display().to_string();
    let (code, stdout, err) = cnn3d(&["report", "--quick", "--peak-tflops", "0.5", "--out", &out]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("kernels pass; wrote"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["quick"], true);
    assert_eq!(json["peak_fp32_tflops"], 0.5);
    assert!(json["check"]["kernels"].as_u64().unwrap() > 30 && json["check"]["kernels"] == json["check"]["passed"], "{}", json["check"]);
    let train: Vec<&str> = json["bench"][0]["train"].as_array().unwrap().iter().map(|t| t["optimizer"].as_str().unwrap()).collect();
    assert_eq!(train, ["sgd", "adam"]);
    let infer: Vec<u64> = json["bench"][0]["inference"].as_array().unwrap().iter().map(|i| i["batch"].as_u64().unwrap()).collect();
    assert_eq!(infer, [100, 1000]);
    assert_eq!(json["gemm"][0]["size"], 1024);
    assert!(json["gemm"][0]["of_peak"].as_f64().unwrap() > 0.0);
    assert!(json["top_kernels"].as_array().unwrap().len() >= 5);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for section in ["# cnn3d report: ", "## Limits", "## Check", "## Throughput", "## Convolution passes", "## Top kernels", "## GEMM", "0.5 TFLOP/s (--peak-tflops)"] {
        assert!(md.contains(section), "report.md lacks {section:?}:\n{md}");
    }
    // A peak that cannot be one is refused before anything is measured.
    let (code, _, err) = cnn3d(&["report", "--quick", "--peak-tflops", "0", "--out", &out]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--peak-tflops"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
