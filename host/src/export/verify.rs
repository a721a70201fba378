//! Loading and running exported files with tract, the engine the device uses: the parity
//! checks, the calibration pass of the int8 export and the latency measurements go through
//! here.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// A tract plan built from an exported file.
pub struct Plan {
    plan: Arc<TypedRunnableModel>,
}

/// A float32 tensor: shape and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn new(shape: &[usize], data: Vec<f32>) -> Array {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "shape {shape:?}");
        Array { shape: shape.to_vec(), data }
    }
}

fn model(bytes: &[u8]) -> Result<InferenceModel> {
    super::graph::decode(bytes)?;
    tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(|e| anyhow::anyhow!("tract refuses the model: {e:#}"))
}

impl Plan {
    /// Decode, check and optimise `.onnx` bytes.
    pub fn new(bytes: &[u8]) -> Result<Plan> {
        Self::build(model(bytes)?)
    }

    /// A plan for inputs of exactly these shapes (symbols such as `N` and `T` fixed before
    /// optimisation: tract picks its fast convolution paths only for concrete shapes).
    pub fn fixed(bytes: &[u8], shapes: &[&[usize]]) -> Result<Plan> {
        let mut m = model(bytes)?;
        for (i, s) in shapes.iter().enumerate() {
            m.set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), *s))
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        }
        Self::build(m)
    }

    /// As [`Plan::new`], with errors naming the file.
    pub fn open(path: &Path) -> Result<Plan> {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::new(&bytes).with_context(|| format!("{}: not a usable ONNX model", path.display()))
    }

    /// A plan whose outputs are the named values of the graph (for calibration).
    pub fn with_outputs(bytes: &[u8], names: &[String]) -> Result<Plan> {
        let m = model(bytes)?.with_outputs_by_name(names).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Self::build(m)
    }

    fn build(m: InferenceModel) -> Result<Plan> {
        let plan = m
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("tract cannot build a plan: {e:#}"))?;
        Ok(Plan { plan })
    }

    /// Run on float32 inputs (in graph-input order).
    pub fn run(&self, inputs: &[Array]) -> Result<Vec<Array>> {
        let tv = inputs
            .iter()
            .map(|a| Tensor::from_shape(&a.shape, &a.data).map(|t| t.into_tvalue()))
            .collect::<TractResult<TVec<TValue>>>()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let out = self.plan.run(tv).map_err(|e| anyhow::anyhow!("tract run failed: {e:#}"))?;
        out.iter()
            .map(|t| {
                let v = t.to_plain_array_view::<f32>().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                Ok(Array { shape: t.shape().to_vec(), data: v.iter().copied().collect() })
            })
            .collect()
    }
}
