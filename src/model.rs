//! Config → layers: names, shape inference, parameter tensors (PyTorch state_dict names and
//! layouts) and their PyTorch-default initialisation.

use crate::config::{LayerSpec, ModelConfig};
use crate::error::{Error, Result};
use crate::layers::window_out;
use crate::rng::Rng;

/// How a parameter or buffer starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−bound, bound), as PyTorch's kaiming_uniform_(a=√5) for weights and its bias rule.
    Uniform(f32),
    Const(f32),
}

/// One tensor of the state_dict.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// Full name, e.g. `conv_layer1.0.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A layer with its resolved name and per-sample input/output shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub index: usize,
    pub name: String,
    pub spec: LayerSpec,
    /// Per sample: (C, D, H, W) for volumes, (F) for flat features.
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    /// Trained parameters (weight, bias).
    pub params: Vec<TensorSpec>,
    /// Non-trained state (batch norm's running statistics).
    pub buffers: Vec<TensorSpec>,
}

impl Layer {
    /// `fc1 (dense)` or `layer 3 (dense)`: how errors name a layer.
    pub fn describe(&self) -> String {
        format!("layer {} ({}, {})", self.index, self.name, self.spec.kind())
    }
}

/// The whole network's shapes and tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub input: [usize; 4],
    pub classes: usize,
    pub layers: Vec<Layer>,
}

fn shape_err(index: usize, name: &str, kind: &str, message: String) -> Error {
    Error::shape(format!("layer {index} ({name}, {kind})"), message)
}

/// The most elements one tensor may have: the shaders index a tensor with u32.
pub const MAX_TENSOR_ELEMENTS: u64 = u32::MAX as u64;

/// The number of elements of `shape`, or `None` when the product overflows.
pub fn count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Refuses a tensor shape whose element count overflows or passes [`MAX_TENSOR_ELEMENTS`].
fn check_count(index: usize, name: &str, kind: &str, what: &str, shape: &[usize]) -> Result<()> {
    match count(shape) {
        Some(n) if n as u64 <= MAX_TENSOR_ELEMENTS => Ok(()),
        n => Err(shape_err(
            index,
            name,
            kind,
            format!(
                "{what} of shape {shape:?} has {} elements, above the limit of {MAX_TENSOR_ELEMENTS} (2^32 - 1: the shaders index a tensor with 32 bits)",
                n.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
            ),
        )),
    }
}

impl Model {
    /// Infers every layer's shapes for input volumes of `channels` × `cfg.input`.
    pub fn from_config(cfg: &ModelConfig, channels: usize) -> Result<Model> {
        let [d, h, w] = cfg.input;
        if channels == 0 || d == 0 || h == 0 || w == 0 {
            return Err(Error::shape("model input", format!("sizes must be positive, got channels {channels}, input {:?}", cfg.input)));
        }
        if cfg.classes < 2 {
            return Err(Error::shape("model", format!("classes must be at least 2, got {}", cfg.classes)));
        }
        if cfg.layers.is_empty() {
            return Err(Error::shape("model", "has no layers".to_string()));
        }
        let mut shape = vec![channels, d, h, w];
        if count(&shape).is_none_or(|n| n as u64 > MAX_TENSOR_ELEMENTS) {
            return Err(Error::shape(
                "model input",
                format!("{channels} channel(s) of {:?} voxels per sample exceed the limit of {MAX_TENSOR_ELEMENTS} elements (the shaders index a tensor with 32 bits)", cfg.input),
            ));
        }
        let mut layers = vec![];
        let mut names = std::collections::HashSet::new();
        for (index, spec) in cfg.layers.iter().enumerate() {
            // Unnamed layers are named by position, as in an nn.Sequential.
            let name = spec.given_name().map(str::to_string).unwrap_or_else(|| index.to_string());
            if !names.insert(name.clone()) {
                return Err(shape_err(index, &name, spec.kind(), format!("the name {name:?} is used by an earlier layer too")));
            }
            let (output, params, buffers) = infer(index, &name, spec, &shape)?;
            // Sizes that the config controls: counted without wrapping, and within what the
            // shaders can index (u32) before any buffer is sized from them.
            let kind = spec.kind();
            check_count(index, &name, kind, "its output per sample", &output)?;
            for t in params.iter().chain(&buffers) {
                check_count(index, &name, kind, &format!("tensor {}", t.name), &t.shape)?;
            }
            layers.push(Layer { index, name, spec: spec.clone(), input: shape.clone(), output: output.clone(), params, buffers });
            shape = output;
        }
        let last = layers.last().unwrap();
        if shape != [cfg.classes] {
            return Err(Error::shape(
                last.describe(),
                format!("the model must end in {} class logits, but its output shape is {shape:?}", cfg.classes),
            ));
        }
        Ok(Model { input: [channels, d, h, w], classes: cfg.classes, layers })
    }

    /// Every trained parameter, in state_dict order.
    pub fn params(&self) -> impl Iterator<Item = &TensorSpec> {
        self.layers.iter().flat_map(|l| l.params.iter())
    }

    /// Every non-trained buffer (running statistics), in state_dict order.
    pub fn buffers(&self) -> impl Iterator<Item = &TensorSpec> {
        self.layers.iter().flat_map(|l| l.buffers.iter())
    }

    /// The state_dict as a checkpoint holds it: per layer its parameters and buffers (f32),
    /// and `NAME.num_batches_tracked` (i64, a scalar) after a batch norm's buffers.
    pub fn state_dict_specs(&self) -> Vec<crate::checkpoint::TensorSpec> {
        use crate::checkpoint::TensorSpec as Spec;
        let mut out = vec![];
        for layer in &self.layers {
            for t in layer.params.iter().chain(&layer.buffers) {
                out.push(Spec::f32(&t.name, &t.shape));
            }
            if !layer.buffers.is_empty() {
                out.push(Spec::i64(format!("{}.num_batches_tracked", layer.name), &[]));
            }
        }
        out
    }

    pub fn param_count(&self) -> usize {
        self.params().map(|t| t.len()).sum()
    }

    /// Initial values of every parameter, PyTorch's default rules, drawn from `rng` in
    /// state_dict order.
    pub fn init_params(&self, rng: &mut Rng) -> Vec<Vec<f32>> {
        self.params().map(|t| init(t, rng)).collect()
    }

    /// Initial values of every buffer (running mean 0, running variance 1).
    pub fn init_buffers(&self) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(0);
        self.buffers().map(|t| init(t, &mut rng)).collect()
    }
}

fn init(t: &TensorSpec, rng: &mut Rng) -> Vec<f32> {
    match t.init {
        Init::Const(v) => vec![v; t.len()],
        Init::Uniform(b) => (0..t.len()).map(|_| rng.uniform(-b as f64, b as f64) as f32).collect(),
    }
}

fn tensor(layer: &str, what: &str, shape: Vec<usize>, init: Init) -> TensorSpec {
    TensorSpec { name: format!("{layer}.{what}"), shape, init }
}

type Inferred = (Vec<usize>, Vec<TensorSpec>, Vec<TensorSpec>);

fn infer(index: usize, name: &str, spec: &LayerSpec, input: &[usize]) -> Result<Inferred> {
    let kind = spec.kind();
    let err = |m: String| shape_err(index, name, kind, m);
    let volume = || -> Result<[usize; 4]> {
        match *input {
            [c, d, h, w] => Ok([c, d, h, w]),
            _ => Err(err(format!("needs a (C, D, H, W) volume per sample, but its input shape is {input:?}"))),
        }
    };
    let window = |c: usize, dhw: [usize; 3], k: [usize; 3], s: [usize; 3], p: [usize; 3], dil: [usize; 3]| -> Result<Vec<usize>> {
        let mut out = vec![c];
        for (axis, a) in ["D", "H", "W"].iter().enumerate() {
            if k[axis] == 0 || s[axis] == 0 || dil[axis] == 0 {
                return Err(err(format!("kernel, stride and dilation must be positive, got kernel {k:?}, stride {s:?}, dilation {dil:?}")));
            }
            let o = window_out(dhw[axis], k[axis], s[axis], p[axis], dil[axis]).ok_or_else(|| {
                err(format!(
                    "kernel {} (dilation {}) along {a} does not fit its input of {} padded by {} on each side (input shape {input:?})",
                    k[axis], dil[axis], dhw[axis], p[axis]
                ))
            })?;
            out.push(o);
        }
        Ok(out)
    };
    Ok(match spec {
        LayerSpec::Conv3d { out_channels, kernel, stride, padding, dilation, bias, .. } => {
            let [c, d, h, w] = volume()?;
            if *out_channels == 0 {
                return Err(err("out_channels must be positive".into()));
            }
            let k = kernel.dims();
            let mut out = window(c, [d, h, w], k, stride.dims(), padding.dims(), dilation.dims())?;
            out[0] = *out_channels;
            let fan_in = count(&[c, k[0], k[1], k[2]]).ok_or_else(|| err(format!("kernel {k:?} over {c} input channels: the fan-in overflows")))?;
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut params = vec![tensor(name, "weight", vec![*out_channels, c, k[0], k[1], k[2]], Init::Uniform(bound))];
            if *bias {
                params.push(tensor(name, "bias", vec![*out_channels], Init::Uniform(bound)));
            }
            (out, params, vec![])
        }
        LayerSpec::MaxPool3d { kernel, stride, padding, dilation, .. } => {
            let [c, d, h, w] = volume()?;
            let k = kernel.dims();
            let p = padding.dims();
            for a in 0..3 {
                if k[a] > 0 && p[a] > k[a] / 2 {
                    return Err(err(format!("padding {p:?} must be at most half the kernel {k:?} (as in PyTorch)")));
                }
            }
            (window(c, [d, h, w], k, stride.unwrap_or(*kernel).dims(), p, dilation.dims())?, vec![], vec![])
        }
        LayerSpec::AvgPool3d { kernel, stride, padding, .. } => {
            let [c, d, h, w] = volume()?;
            let k = kernel.dims();
            let p = padding.dims();
            for a in 0..3 {
                if k[a] > 0 && p[a] > k[a] / 2 {
                    return Err(err(format!("padding {p:?} must be at most half the kernel {k:?} (as in PyTorch)")));
                }
            }
            (window(c, [d, h, w], k, stride.unwrap_or(*kernel).dims(), p, [1; 3])?, vec![], vec![])
        }
        LayerSpec::Relu { .. } | LayerSpec::Sigmoid { .. } | LayerSpec::Tanh { .. } => (input.to_vec(), vec![], vec![]),
        LayerSpec::LeakyRelu { slope, .. } => {
            if !slope.is_finite() {
                return Err(err(format!("slope must be finite, got {slope}")));
            }
            (input.to_vec(), vec![], vec![])
        }
        LayerSpec::Dropout { p, .. } => {
            if !(0.0..=1.0).contains(p) {
                return Err(err(format!("p must be in [0, 1], got {p}")));
            }
            (input.to_vec(), vec![], vec![])
        }
        LayerSpec::BatchNorm { eps, momentum, .. } => {
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(err(format!("eps must be positive, got {eps}")));
            }
            if !(0.0..=1.0).contains(momentum) {
                return Err(err(format!("momentum must be in [0, 1], got {momentum}")));
            }
            if input.len() != 1 && input.len() != 4 {
                return Err(err(format!("needs (F) features or a (C, D, H, W) volume per sample, got {input:?}")));
            }
            let c = input[0];
            (
                input.to_vec(),
                vec![tensor(name, "weight", vec![c], Init::Const(1.0)), tensor(name, "bias", vec![c], Init::Const(0.0))],
                vec![tensor(name, "running_mean", vec![c], Init::Const(0.0)), tensor(name, "running_var", vec![c], Init::Const(1.0))],
            )
        }
        LayerSpec::Flatten { .. } => {
            (vec![count(input).ok_or_else(|| err(format!("the flattened size of {input:?} overflows")))?], vec![], vec![])
        }
        LayerSpec::Dense { out_features, bias, .. } => {
            let [fin] = *input else {
                return Err(err(format!("needs flat (F) features per sample, but its input shape is {input:?}; add a flatten layer before it")));
            };
            if *out_features == 0 {
                return Err(err("out_features must be positive".into()));
            }
            let bound = 1.0 / (fin as f32).sqrt();
            let mut params = vec![tensor(name, "weight", vec![*out_features, fin], Init::Uniform(bound))];
            if *bias {
                params.push(tensor(name, "bias", vec![*out_features], Init::Uniform(bound)));
            }
            (vec![*out_features], params, vec![])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_model;

    const ARTICLE: &str = include_str!("../assets/seed.toml");

    fn article() -> Model {
        #[derive(serde::Deserialize)]
        struct Seed {
            model: ModelConfig,
        }
        let seed: Seed = toml::from_str(ARTICLE).unwrap();
        Model::from_config(&seed.model, 3).unwrap()
    }

    #[test]
    fn the_article_model_has_the_article_shapes_and_names() {
        let m = article();
        let shapes: Vec<(String, Vec<usize>)> = m.layers.iter().map(|l| (l.name.clone(), l.output.clone())).collect();
        assert_eq!(shapes[0], ("conv_layer1.0".into(), vec![32, 14, 14, 14]));
        assert_eq!(shapes[2], ("conv_layer1.2".into(), vec![32, 7, 7, 7]));
        assert_eq!(shapes[3], ("conv_layer2.0".into(), vec![64, 5, 5, 5]));
        assert_eq!(shapes[5], ("conv_layer2.2".into(), vec![64, 2, 2, 2]));
        let names: Vec<&str> = m.params().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv_layer1.0.weight", "conv_layer1.0.bias", "conv_layer2.0.weight", "conv_layer2.0.bias",
                "fc1.weight", "fc1.bias", "batch.weight", "batch.bias", "fc2.weight", "fc2.bias"
            ]
        );
        let buffers: Vec<&str> = m.buffers().map(|t| t.name.as_str()).collect();
        assert_eq!(buffers, ["batch.running_mean", "batch.running_var"]);
        // 2,624 + 55,360 + 65,664 + 256 + 1,290 parameters, as PyTorch counts them.
        assert_eq!(m.param_count(), 2_624 + 55_360 + 65_664 + 256 + 1_290);
    }

    #[test]
    fn default_init_follows_pytorch_bounds() {
        let m = article();
        let p = m.init_params(&mut Rng::new(7));
        let fc1 = &p[4];
        let bound = 1.0 / (512f32).sqrt();
        assert!(fc1.iter().all(|v| v.abs() <= bound));
        assert!(fc1.iter().any(|v| v.abs() > 0.9 * bound));
        assert_eq!(p[6], vec![1.0; 128]);
        assert_eq!(p[7], vec![0.0; 128]);
        assert_eq!(m.init_buffers()[1], vec![1.0; 128]);
    }

    #[test]
    fn shape_errors_name_the_layer_and_the_shapes() {
        let bad = |layers: &str| {
            let text = format!("input = [8, 8, 8]\nclasses = 3\n{layers}");
            let cfg = parse_model(&text, "bad.toml").unwrap();
            Model::from_config(&cfg, 1).unwrap_err().to_string()
        };
        let e = bad("[[layers]]\nkind = \"dense\"\nname = \"fc\"\nout_features = 3\n");
        assert!(e.contains("layer 0 (fc, dense)") && e.contains("[1, 8, 8, 8]") && e.contains("flatten"), "{e}");
        let e = bad("[[layers]]\nkind = \"conv3d\"\nout_channels = 2\nkernel = [3, 9, 3]\n");
        assert!(e.contains("layer 0 (0, conv3d)") && e.contains("kernel 9") && e.contains("along H"), "{e}");
        let e = bad("[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nout_features = 4\n");
        assert!(e.contains("3 class logits") && e.contains("[4]"), "{e}");
    }

    #[test]
    fn unknown_keys_and_kinds_are_config_errors() {
        let e = parse_model("input = [8, 8, 8]\nclasses = 3\n[[layers]]\nkind = \"conv4d\"\n", "m.toml").unwrap_err().to_string();
        assert!(e.starts_with("m.toml:") && e.contains("conv4d"), "{e}");
        let e = parse_model("input = [8, 8, 8]\nclasses = 3\n[[layers]]\nkind = \"dense\"\nout_feature = 3\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out_feature"), "{e}");
    }
}
