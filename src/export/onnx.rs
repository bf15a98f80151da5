//! The eval-mode network as an ONNX graph (opset 17): Conv, MaxPool, AveragePool, Relu,
//! LeakyRelu, Sigmoid, Tanh, BatchNormalization (running statistics), Flatten and Gemm, with
//! the weights as initializers under their state_dict names. Dropout, the identity in eval
//! mode, is left out. Input `input`, (batch, C, D, H, W) float32 with a dynamic batch axis;
//! output `logits`, (batch, classes).

use prost::Message;

use super::onnx_proto::{
    attribute_type, dimension, type_proto, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, FLOAT,
};
use super::{refuse, Exportable};
use crate::config::LayerSpec;
use crate::error::Result;
use crate::model::Layer;

/// The operator set the graph is written for (the oldest with every operator and attribute
/// used here: dilated MaxPool from 10, Gemm without C from 11, BatchNormalization's
/// `training_mode` from 15).
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// The graph's input and output names.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// The name of the dynamic batch axis.
const BATCH: &str = "batch";

/// The ONNX file's bytes.
pub fn to_onnx(e: &Exportable) -> Result<Vec<u8>> {
    Ok(model(e)?.encode_to_vec())
}

fn model(e: &Exportable) -> Result<ModelProto> {
    let layers = &e.model.layers;
    // The last layer that becomes a node names its output `logits`.
    let last = layers.iter().rposition(|l| !matches!(l.spec, LayerSpec::Dropout { .. }));
    let mut nodes = vec![];
    let mut initializers = vec![];
    // Names are unique because layer names are: values are `NAME/output` (the last `logits`),
    // initializers `NAME.TENSOR`, and the graph's input `input`.
    let mut x = INPUT.to_string();
    for (i, layer) in layers.iter().enumerate() {
        let out = if Some(i) == last { OUTPUT.to_string() } else { format!("{}/output", layer.name) };
        let Some(node) = node(e, layer, &x, &out, &mut initializers)? else { continue };
        nodes.push(node);
        x = out;
    }
    if last.is_none() {
        nodes.push(NodeProto { input: vec![x], output: vec![OUTPUT.into()], name: OUTPUT.into(), op_type: "Identity".into(), ..Default::default() });
    }
    let [c, d, h, w] = e.model.input;
    let graph = GraphProto {
        node: nodes,
        name: "cnn3d".into(),
        initializer: initializers,
        doc_string: format!(
            "{}, eval mode. The input is the network's, after the preprocessing the run used ({}); see `cnn3d export --torch`'s model.py.",
            e.checkpoint_path.display(),
            super::torch::preprocessing_summary(e)
        ),
        input: vec![value_info(INPUT, &[None, Some(c), Some(d), Some(h), Some(w)])],
        output: vec![value_info(OUTPUT, &[None, Some(e.model.classes)])],
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "cnn3d".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("exported by cnn3d from {} (config {})", e.checkpoint_path.display(), e.config_origin),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
    })
}

/// The node of one layer (`None` for dropout), reading `x` and writing `out`; its tensors are
/// appended to `initializers`.
fn node(e: &Exportable, layer: &Layer, x: &str, out: &str, initializers: &mut Vec<TensorProto>) -> Result<Option<NodeProto>> {
    let mut inputs = vec![x.to_string()];
    let mut tensor = |what: &str| {
        let name = format!("{}.{what}", layer.name);
        let spec = layer.params.iter().chain(&layer.buffers).find(|t| t.name == name).expect("the model declares the layer's tensors");
        initializers.push(TensorProto {
            dims: spec.shape.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: e.f32s(&name).iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        inputs.push(name);
    };
    let (op, attributes) = match &layer.spec {
        LayerSpec::Conv3d { kernel, stride, padding, dilation, bias, .. } => {
            tensor("weight");
            if *bias {
                tensor("bias");
            }
            let attrs = vec![
                ints("kernel_shape", &kernel.dims()),
                ints("strides", &stride.dims()),
                pads(padding.dims()),
                ints("dilations", &dilation.dims()),
                int("group", 1),
            ];
            ("Conv", attrs)
        }
        LayerSpec::MaxPool3d { kernel, stride, padding, dilation, .. } => {
            let stride = stride.unwrap_or(*kernel);
            let attrs = vec![ints("kernel_shape", &kernel.dims()), ints("strides", &stride.dims()), pads(padding.dims()), ints("dilations", &dilation.dims())];
            ("MaxPool", attrs)
        }
        LayerSpec::AvgPool3d { kernel, stride, padding, .. } => {
            let stride = stride.unwrap_or(*kernel);
            // cnn3d divides by the whole window, padding included, as PyTorch's default.
            let attrs = vec![ints("kernel_shape", &kernel.dims()), ints("strides", &stride.dims()), pads(padding.dims()), int("count_include_pad", 1)];
            ("AveragePool", attrs)
        }
        LayerSpec::Relu { .. } => ("Relu", vec![]),
        LayerSpec::LeakyRelu { slope, .. } => ("LeakyRelu", vec![float("alpha", *slope)]),
        LayerSpec::Sigmoid { .. } => ("Sigmoid", vec![]),
        LayerSpec::Tanh { .. } => ("Tanh", vec![]),
        LayerSpec::BatchNorm { eps, momentum, .. } => {
            if !(layer.input.len() == 1 || layer.input.len() == 4) {
                return Err(refuse(layer, "ONNX", format!("batch norm over an input of shape {:?}", layer.input)));
            }
            for what in ["weight", "bias", "running_mean", "running_var"] {
                tensor(what);
            }
            // ONNX's momentum weighs the old running value, PyTorch's the new batch's.
            ("BatchNormalization", vec![float("epsilon", *eps), float("momentum", 1.0 - momentum)])
        }
        LayerSpec::Dropout { .. } => return Ok(None),
        LayerSpec::Flatten { .. } => ("Flatten", vec![int("axis", 1)]),
        LayerSpec::Dense { bias, .. } => {
            tensor("weight");
            if *bias {
                tensor("bias");
            }
            // y = x·Wᵀ + b with W as PyTorch's Linear stores it, (out, in).
            ("Gemm", vec![int("transB", 1)])
        }
    };
    Ok(Some(NodeProto {
        input: inputs,
        output: vec![out.to_string()],
        name: layer.name.clone(),
        op_type: op.into(),
        attribute: attributes,
        doc_string: layer.describe(),
    }))
}

fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam(BATCH.into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(TensorTypeProto { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) })),
        }),
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.iter().map(|&v| v as i64).collect(), r#type: attribute_type::INTS, ..Default::default() }
}

/// ONNX pads: every axis's start, then every axis's end.
fn pads(p: [usize; 3]) -> AttributeProto {
    ints("pads", &[p[0], p[1], p[2], p[0], p[1], p[2]])
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: attribute_type::INT, ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: value, r#type: attribute_type::FLOAT, ..Default::default() }
}
