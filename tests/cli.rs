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
