//! Property tests: no input makes the config parser, the model's shape inference or the
//! checkpoint loader panic; every bad input is an error value.

use std::collections::BTreeMap;

use cnn3d::checkpoint::{self, Tensor, TensorSpec};
use cnn3d::model::Model;
use cnn3d::train::Config;
use proptest::prelude::*;

const TINY: &str = include_str!("fixtures/tiny.toml");

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

/// Parses, and where that succeeds infers the shapes: both must return, never panic.
fn parse_and_infer(text: &str) {
    if let Ok(cfg) = Config::parse(text, "p.toml") {
        for channels in [1, 3] {
            let _ = Model::from_config(&cfg.model, channels);
        }
    }
}

/// One edit of a text: replace, insert or delete a byte at `at`, or cut the text there.
fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut b = text.as_bytes().to_vec();
    for &(at, op, byte) in edits {
        let i = at % (b.len() + 1);
        match op % 4 {
            0 if i < b.len() => b[i] = byte,
            1 => b.insert(i, byte),
            2 if i < b.len() => {
                b.remove(i);
            }
            3 => b.truncate(i),
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// A number as a config might hold it: small, zero, negative, huge, or not an integer.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..20).prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("18446744073709551615".to_string()),
        Just("9223372036854775807".to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        (0i64..20, 0i64..20, 0i64..20).prop_map(|(a, b, c)| format!("[{a}, {b}, {c}]")),
        Just("[1, 2]".to_string()),
        Just("\"3\"".to_string()),
    ]
}

/// A layer table with a random kind and random values for random option names.
fn layer() -> impl Strategy<Value = String> {
    let kinds = prop::sample::select(vec![
        "conv3d", "max_pool3d", "avg_pool3d", "relu", "leaky_relu", "sigmoid", "tanh", "batch_norm", "dropout", "flatten", "dense", "conv",
    ]);
    let keys = prop::sample::select(vec![
        "out_channels", "kernel", "stride", "padding", "dilation", "bias", "slope", "eps", "momentum", "p", "out_features", "name",
    ]);
    (kinds, prop::collection::vec((keys, number()), 0..5)).prop_map(|(kind, opts)| {
        let mut t = format!("[[model.layers]]\nkind = \"{kind}\"\n");
        let mut seen = std::collections::HashSet::new();
        for (k, v) in opts {
            if seen.insert(k) {
                t.push_str(&format!("{k} = {v}\n"));
            }
        }
        t
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        parse_and_infer(&text);
    }

    #[test]
    fn config_parser_never_panics_on_mutated_configs(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)) {
        parse_and_infer(&mutate(TINY, &edits));
    }

    #[test]
    fn shape_inference_never_panics_on_random_models(
        input in (0usize..40, 0usize..40, 0usize..40),
        classes in number(),
        layers in prop::collection::vec(layer(), 0..7),
        optimizer in prop::sample::select(vec!["sgd", "adam", "adamw", "rmsprop"]),
        lr in number(),
    ) {
        let text = format!(
            "[model]\ninput = [{}, {}, {}]\nclasses = {classes}\n{}[optimizer]\nkind = \"{optimizer}\"\nlr = {lr}\n",
            input.0, input.1, input.2, layers.concat()
        );
        parse_and_infer(&text);
    }
}

/// A small real checkpoint (the tiny model's state_dict) and what a reader of it expects.
fn checkpoint_bytes(dir: &std::path::Path) -> (Vec<u8>, Vec<TensorSpec>) {
    let tensors = vec![
        Tensor::f32("conv.weight", &[2, 1, 3, 3, 3], (0..54).map(|i| i as f32 * 0.01).collect()),
        Tensor::f32("conv.bias", &[2], vec![0.1, -0.2]),
        Tensor::f32("batch.running_var", &[3], vec![1.0; 3]),
        Tensor::i64("batch.num_batches_tracked", &[], vec![7]),
    ];
    let meta = BTreeMap::from([("epoch".to_string(), "3".to_string()), ("colormap".to_string(), "none".to_string())]);
    let path = dir.join("good.safetensors");
    checkpoint::save(&path, &tensors, &meta).unwrap();
    (std::fs::read(&path).unwrap(), tensors.iter().map(Tensor::spec).collect())
}

/// Loads `bytes` as a file, with and without expectations; both must return.
fn load_both(dir: &std::path::Path, bytes: &[u8], specs: &[TensorSpec]) -> Result<(), cnn3d::Error> {
    let path = dir.join("case.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let _ = checkpoint::load(&path);
    checkpoint::load_expected(&path, specs).map(|_| ())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn checkpoint_loader_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let (_, specs) = checkpoint_bytes(dir.path());
        prop_assert!(load_both(dir.path(), &bytes, &specs).is_err());
    }

    #[test]
    fn checkpoint_loader_never_panics_on_damaged_checkpoints(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        header_bytes in prop::collection::vec((0usize..8, any::<u8>()), 0..2),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (good, specs) = checkpoint_bytes(dir.path());
        let mut bad = good.clone();
        for (i, b) in &flips {
            let i = i.index(bad.len());
            bad[i] = *b;
        }
        // The 8-byte header length is where a reader most easily over-reads.
        for (i, b) in &header_bytes {
            bad[*i] = *b;
        }
        let cut = cut.index(bad.len() + 1);
        let truncated = cut < good.len();
        bad.truncate(cut);
        let result = load_both(dir.path(), &bad, &specs);
        if truncated {
            prop_assert!(result.is_err(), "a checkpoint cut at {cut} of {} bytes loaded", good.len());
        }
    }
}

#[test]
fn the_unmodified_checkpoint_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (good, specs) = checkpoint_bytes(dir.path());
    load_both(dir.path(), &good, &specs).unwrap();
}
