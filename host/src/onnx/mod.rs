//! ONNX writing: [`graph`] builds tract-onnx's prost messages, [`layers`] is the op vocabulary
//! (burn's primitive modules and tensor operations as ONNX nodes). The networks emit
//! themselves with it beside their forward passes (`nets/`); `export/` writes the files.

pub mod graph;
pub mod layers;
