//! The model as a TOML config: an input shape and a list of layers, each with its options
//! and an optional `name` (PyTorch's state_dict prefix). Unknown keys are errors.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::Dims3;
use crate::optim::OptimizerConfig;

/// A size given once for all three axes (`kernel = 3`) or per axis (`kernel = [3, 2, 3]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Triple {
    All(usize),
    Each([usize; 3]),
}

impl Triple {
    pub fn dims(self) -> Dims3 {
        match self {
            Triple::All(v) => [v; 3],
            Triple::Each(v) => v,
        }
    }
}

fn ones() -> Triple {
    Triple::All(1)
}
fn zeros() -> Triple {
    Triple::All(0)
}
fn yes() -> bool {
    true
}
fn slope() -> f32 {
    0.01
}
fn half() -> f32 {
    0.5
}
fn bn_eps() -> f32 {
    1e-5
}
fn bn_momentum() -> f32 {
    0.1
}

/// One layer of the model. `kind` selects the variant; the defaults are PyTorch's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv3d {
        name: Option<String>,
        out_channels: usize,
        kernel: Triple,
        #[serde(default = "ones")]
        stride: Triple,
        #[serde(default = "zeros")]
        padding: Triple,
        #[serde(default = "ones")]
        dilation: Triple,
        #[serde(default = "yes")]
        bias: bool,
    },
    MaxPool3d {
        name: Option<String>,
        kernel: Triple,
        /// PyTorch's default: the kernel size.
        stride: Option<Triple>,
        #[serde(default = "zeros")]
        padding: Triple,
        #[serde(default = "ones")]
        dilation: Triple,
    },
    AvgPool3d {
        name: Option<String>,
        kernel: Triple,
        stride: Option<Triple>,
        #[serde(default = "zeros")]
        padding: Triple,
    },
    Relu {
        name: Option<String>,
    },
    LeakyRelu {
        name: Option<String>,
        #[serde(default = "slope")]
        slope: f32,
    },
    Sigmoid {
        name: Option<String>,
    },
    Tanh {
        name: Option<String>,
    },
    BatchNorm {
        name: Option<String>,
        #[serde(default = "bn_eps")]
        eps: f32,
        #[serde(default = "bn_momentum")]
        momentum: f32,
    },
    Dropout {
        name: Option<String>,
        #[serde(default = "half")]
        p: f32,
    },
    Flatten {
        name: Option<String>,
    },
    Dense {
        name: Option<String>,
        out_features: usize,
        #[serde(default = "yes")]
        bias: bool,
    },
}

impl LayerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv3d { .. } => "conv3d",
            LayerSpec::MaxPool3d { .. } => "max_pool3d",
            LayerSpec::AvgPool3d { .. } => "avg_pool3d",
            LayerSpec::Relu { .. } => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::Sigmoid { .. } => "sigmoid",
            LayerSpec::Tanh { .. } => "tanh",
            LayerSpec::BatchNorm { .. } => "batch_norm",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten { .. } => "flatten",
            LayerSpec::Dense { .. } => "dense",
        }
    }

    /// The name given in the config, if any.
    pub fn given_name(&self) -> Option<&str> {
        match self {
            LayerSpec::Conv3d { name, .. }
            | LayerSpec::MaxPool3d { name, .. }
            | LayerSpec::AvgPool3d { name, .. }
            | LayerSpec::Relu { name }
            | LayerSpec::LeakyRelu { name, .. }
            | LayerSpec::Sigmoid { name }
            | LayerSpec::Tanh { name }
            | LayerSpec::BatchNorm { name, .. }
            | LayerSpec::Dropout { name, .. }
            | LayerSpec::Flatten { name }
            | LayerSpec::Dense { name, .. } => name.as_deref(),
        }
    }
}

/// The network: input volume (channels come from the data: 3 with the Oranges colormap, 1
/// without), the number of classes, and the layers in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Spatial input size (D, H, W).
    pub input: [usize; 3],
    pub classes: usize,
    pub layers: Vec<LayerSpec>,
}

/// Parses a model config from TOML text; `origin` (a file name) prefixes error messages.
pub fn parse_model(text: &str, origin: &str) -> crate::Result<ModelConfig> {
    toml::from_str(text).map_err(|e| toml_error(origin, e))
}

/// A TOML or schema error of the file `origin`: toml's message (line, column, the offending
/// line) with a "did you mean" for a misspelt kind or option.
pub(crate) fn toml_error(origin: &str, e: toml::de::Error) -> crate::Error {
    crate::Error::Config { file: origin.to_string(), message: with_suggestion(e.to_string()) }
}

/// serde's "unknown variant `x`, expected one of `a`, `b`" and "unknown field `x`, expected
/// one of ..." list the valid names; this appends the one nearest to `x`, if any is near.
fn with_suggestion(message: String) -> String {
    let Some((_, rest)) = message.split_once("unknown variant `").or_else(|| message.split_once("unknown field `")) else {
        return message;
    };
    let Some((wanted, rest)) = rest.split_once('`') else {
        return message;
    };
    let Some((_, list)) = rest.split_once("expected one of ") else {
        return message;
    };
    let line = list.lines().next().unwrap_or_default();
    let candidates = line.split(", ").map(|c| c.trim_matches('`'));
    match nearest(wanted, candidates) {
        Some(best) => format!("{}\ndid you mean `{best}`?", message.trim_end()),
        None => message,
    }
}

/// The candidate nearest to `word` by edit distance, if it is near enough to be a typo of it:
/// at most a third of the word's letters (and at least one) differ.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (insertions, deletions, substitutions), over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names_a_likely_typo_only() {
        let kinds = ["conv3d", "max_pool3d", "leaky_relu", "relu", "dense"];
        assert_eq!(nearest("leaky_rleu", kinds), Some("leaky_relu"));
        assert_eq!(nearest("Conv3D", kinds), Some("conv3d"));
        assert_eq!(nearest("maxpool3d", kinds), Some("max_pool3d"));
        assert_eq!(nearest("lstm", kinds), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_kinds_and_options_get_a_suggestion() {
        let e = parse_model("input = [8, 8, 8]\nclasses = 3\n[[layers]]\nkind = \"conv_3d\"\n", "m.toml").unwrap_err().to_string();
        assert!(e.contains("unknown variant `conv_3d`") && e.ends_with("did you mean `conv3d`?"), "{e}");
        let e = parse_model("input = [8, 8, 8]\nclasses = 3\n[[layers]]\nkind = \"dense\"\nout_feature = 3\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.ends_with("did you mean `out_features`?"), "{e}");
        let e = parse_model("input = [8, 8, 8]\nclasses = 3\n[[layers]]\nkind = \"transformer\"\n", "m.toml").unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
    }
}

fn epochs_default() -> usize {
    45
}
fn batch_default() -> usize {
    100
}

/// The `[train]` table; the defaults are the article's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default = "epochs_default")]
    pub epochs: usize,
    #[serde(default = "batch_default")]
    pub batch_size: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "yes")]
    pub shuffle: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: epochs_default(), batch_size: batch_default(), seed: 0, shuffle: true }
    }
}

/// A whole run's config file: `[model]`, `[train]`, `[optimizer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
}

/// The article's model and set-up (`assets/seed.toml`).
pub const SEED_CONFIG: &str = include_str!("../assets/seed.toml");

impl Config {
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| crate::config::toml_error(origin, e))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "reading the config", e))?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn seed() -> Config {
        Config::parse(SEED_CONFIG, "assets/seed.toml").expect("the bundled seed config is valid")
    }

    /// Checks what the types cannot (call again after command-line overrides).
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |m: String| Error::Config { file: origin.to_string(), message: m };
        if self.train.epochs == 0 {
            return Err(bad("train.epochs must be at least 1".into()));
        }
        if self.train.batch_size < 2 {
            return Err(bad(format!(
                "train.batch_size must be at least 2 (batch norm needs more than one value per channel), got {}",
                self.train.batch_size
            )));
        }
        self.optimizer.validate().map_err(|e| bad(format!("optimizer: {e}")))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not serialise the config: {e}\n"))
    }
}
