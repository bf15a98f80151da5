//! The model as a TOML config: an input shape and a list of layers, each with its options
//! and an optional `name` (PyTorch's state_dict prefix). Unknown keys are errors.

use serde::{Deserialize, Serialize};

use crate::layers::Dims3;

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
    toml::from_str(text).map_err(|e| crate::Error::Config { file: origin.to_string(), message: e.to_string() })
}
