//! A small ONNX graph builder over tract-onnx's prost messages: named initializers, nodes with
//! one output each, inputs and outputs described by the manifest's `TensorSpec` (symbolic batch
//! `N`), and a `ModelProto` at
//! opset [`OPSET`].
//!
//! Every emitter in this module tree takes the graph, a name prefix (the burn module path, so
//! an ONNX node reads like the field it came from) and its input value, and returns the name
//! of its output value.

use anyhow::{ensure, Result};
use avsc_shared::bundle::{Dim, TensorSpec};
use prost::Message;
use std::collections::HashSet;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// ONNX opset of the exported graphs: 17 has LayerNormalization and keeps `ReduceMean`'s axes
/// an attribute; tract 0.23 and onnxruntime ≥ 1.12 both run it.
pub const OPSET: i64 = 17;
/// IR version matching opset 17 (onnx 1.12).
pub const IR_VERSION: i64 = 8;

/// A value (tensor) of the graph, by name.
pub type Value = String;

/// An ONNX graph under construction.
pub struct Graph {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    names: HashSet<String>,
    /// Set for the int8 pass: the activation ranges that decide which ops are quantized.
    pub calibration: Option<crate::export::quant::Calibration>,
    /// Sibling pointwise convolutions that read one input are written as one Conv and
    /// Slices (the default; off only to measure the difference).
    pub merge_pointwise: bool,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.into(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            names: HashSet::new(),
            calibration: None,
            merge_pointwise: true,
        }
    }

    /// `name` if unused, else `name_2`, `name_3`, ... (a module may emit one op twice).
    fn fresh(&mut self, name: &str) -> String {
        let mut candidate = name.to_string();
        let mut k = 1;
        while self.names.contains(&candidate) {
            k += 1;
            candidate = format!("{name}_{k}");
        }
        self.names.insert(candidate.clone());
        candidate
    }

    /// A float32 graph input; its shape carries the symbolic batch `N` (and any other symbol).
    pub fn input(&mut self, spec: &TensorSpec) -> Value {
        let name = self.fresh(&spec.name);
        assert_eq!(name, spec.name, "input name {} already used", spec.name);
        self.inputs.push(value_info(&name, &spec.shape));
        name
    }

    /// Declare `value` the graph output `spec` (through an Identity node when the value
    /// carries another name).
    pub fn output(&mut self, value: &str, spec: &TensorSpec) {
        let name = spec.name.as_str();
        if value != name {
            assert!(!self.names.contains(name), "output name {name} already used");
            self.names.insert(name.to_string());
            self.nodes.push(NodeProto {
                name: name.into(),
                op_type: "Identity".into(),
                input: vec![value.into()],
                output: vec![name.into()],
                ..NodeProto::default()
            });
        }
        self.outputs.push(value_info(name, &spec.shape));
    }

    /// A float32 constant.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Value {
        assert_eq!(dims.iter().product::<usize>(), data.len(), "initializer {name}: shape {dims:?}");
        let name = self.fresh(name);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(tensor(&name, dims, DataType::Float, raw));
        name
    }

    /// A float32 scalar constant.
    pub fn scalar(&mut self, name: &str, v: f32) -> Value {
        self.init_f32(name, &[], &[v])
    }

    /// An int64 constant (shapes, axes).
    pub fn init_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> Value {
        let name = self.fresh(name);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(tensor(&name, dims, DataType::Int64, raw));
        name
    }

    /// An int8 / uint8 constant (quantized weights, zero points).
    pub fn init_8bit(&mut self, name: &str, dims: &[usize], data: &[u8], signed: bool) -> Value {
        let name = self.fresh(name);
        let ty = if signed { DataType::Int8 } else { DataType::Uint8 };
        self.initializers.push(tensor(&name, dims, ty, data.to_vec()));
        name
    }

    /// An int32 constant (quantized biases).
    pub fn init_i32(&mut self, name: &str, dims: &[usize], data: &[i32]) -> Value {
        let name = self.fresh(name);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(tensor(&name, dims, DataType::Int32, raw));
        name
    }

    /// A node with one output, named `name` (made unique).
    pub fn node(&mut self, op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> Value {
        let name = self.fresh(name);
        self.nodes.push(NodeProto {
            name: name.clone(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.clone()],
            attribute: attrs,
            ..NodeProto::default()
        });
        name
    }

    pub fn nodes(&self) -> &[NodeProto] {
        &self.nodes
    }

    pub fn model(self) -> ModelProto {
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "avsc-host".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                name: self.name,
                node: self.nodes,
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    /// The serialized model (protobuf bytes of an `.onnx` file).
    pub fn to_bytes(self) -> Vec<u8> {
        self.model().encode_to_vec()
    }
}

/// Decode `.onnx` bytes, refusing anything that is not a model this exporter could have
/// written (a graph, opset import, inputs and outputs).
pub fn decode(bytes: &[u8]) -> Result<ModelProto> {
    let m = ModelProto::decode(bytes).map_err(|e| anyhow::anyhow!("not an ONNX protobuf: {e}"))?;
    let g = m.graph.as_ref().ok_or_else(|| anyhow::anyhow!("ONNX model without a graph"))?;
    ensure!(!m.opset_import.is_empty(), "ONNX model without an opset import");
    ensure!(!g.input.is_empty() && !g.output.is_empty(), "ONNX graph without inputs or outputs");
    Ok(m)
}

fn tensor(name: &str, dims: &[usize], ty: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: ty as i32,
        raw_data: raw,
        ..TensorProto::default()
    }
}

fn value_info(name: &str, shape: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value as V;
    let dim = |d: &Dim| tensor_shape_proto::Dimension {
        value: Some(match d {
            Dim::Fixed(n) => V::DimValue(*n as i64),
            Dim::Symbol(s) => V::DimParam(s.clone()),
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim: shape.iter().map(dim).collect() }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..Default::default() }
}

pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}
