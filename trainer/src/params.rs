//! A module's float parameters by path, in a stable order.
//!
//! The path of a parameter is the chain of field names that reaches it, joined by `.`
//! (`corrector.backbone.encoder.layers.0.ffn_in.weight`). The order is the order in which
//! burn visits the fields: declaration order, which is stable across runs and builds.
//! Checkpoints, the optimiser state and the Hugging Face loader all address parameters
//! through these functions.

use crate::{Error, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

/// A host copy of one tensor, row-major `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Parameter path (or any name in a file).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Name and shape of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Parameter path.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
}

impl ParamSpec {
    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn path(&self) -> String {
        self.0.join(".")
    }
}

/// Names and shapes of all float parameters, in visit order.
pub fn param_specs<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamSpec> {
    struct Specs {
        path: PathStack,
        out: Vec<ParamSpec>,
    }
    impl<B: Backend> ModuleVisitor<B> for Specs {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.push(ParamSpec {
                name: self.path.path(),
                shape: param.lazy_shape().to_vec(),
            });
        }
    }
    let mut v = Specs {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Host copies of all float parameters, in visit order.
pub fn export<B: Backend, M: Module<B>>(module: &M) -> Vec<NamedTensor> {
    struct Export {
        path: PathStack,
        out: Vec<NamedTensor>,
    }
    impl<B: Backend> ModuleVisitor<B> for Export {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = param.val();
            self.out.push(NamedTensor {
                name: self.path.path(),
                shape: tensor.dims().to_vec(),
                data: tensor_to_vec(tensor),
            });
        }
    }
    let mut v = Export {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// A tensor's values as host `f32`, row-major.
pub fn tensor_to_vec<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("a converted f32 tensor reads back as f32")
}

/// Replace every float parameter by the tensor of the same name.
///
/// Every parameter must be present with its exact shape, and every tensor must be used;
/// `source` names the file in errors. Parameter ids and gradient requirements are kept.
pub fn import<B: Backend, M: Module<B>>(
    module: M,
    tensors: Vec<NamedTensor>,
    source: &Path,
    device: &B::Device,
) -> Result<M> {
    struct Import<'a, B: Backend> {
        path: PathStack,
        tensors: BTreeMap<String, NamedTensor>,
        source: &'a Path,
        device: B::Device,
        error: Option<Error>,
    }
    impl<B: Backend> ModuleMapper<B> for Import<'_, B> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let name = self.path.path();
            let expected = param.lazy_shape().to_vec();
            let found = match self.tensors.remove(&name) {
                Some(t) if t.shape == expected => t,
                Some(t) => {
                    self.error.get_or_insert(Error::TensorMismatch {
                        path: self.source.to_path_buf(),
                        name,
                        expected: format!("shape {expected:?}"),
                        got: format!("shape {:?}", t.shape),
                    });
                    return param;
                }
                None => {
                    self.error.get_or_insert(Error::MissingTensor {
                        path: self.source.to_path_buf(),
                        name,
                    });
                    return param;
                }
            };
            let (id, old, mapper) = param.consume();
            let value =
                Tensor::<B, D>::from_data(TensorData::new(found.data, found.shape), &self.device)
                    .set_require_grad(old.is_require_grad());
            Param::from_mapped_value(id, value, mapper)
        }
    }
    let mut mapper = Import {
        path: PathStack::default(),
        tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
        source,
        device: device.clone(),
        error: None,
    };
    let module = module.map(&mut mapper);
    if let Some(error) = mapper.error {
        return Err(error);
    }
    if !mapper.tensors.is_empty() {
        return Err(Error::UnexpectedTensors {
            path: source.to_path_buf(),
            names: mapper.tensors.into_keys().take(8).collect(),
        });
    }
    Ok(module)
}

/// Flattened gradients of all float parameters in visit order (`None` where a parameter
/// took no part in the loss).
pub fn gradients<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
) -> Vec<Option<Tensor<B::InnerBackend, 1>>> {
    struct Grads<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        out: Vec<Option<Tensor<B::InnerBackend, 1>>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Grads<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let grad = param.val().grad(self.grads).map(|g| {
                let n = g.shape().num_elements();
                g.reshape([n])
            });
            self.out.push(grad);
        }
    }
    let mut v = Grads::<B> {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Flattened parameter values on the inner backend, in visit order.
pub fn flat_values<B: AutodiffBackend, M: Module<B>>(
    module: &M,
) -> Vec<Tensor<B::InnerBackend, 1>> {
    struct Values<B: AutodiffBackend> {
        out: Vec<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Values<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val().inner();
            let n = value.shape().num_elements();
            self.out.push(value.reshape([n]));
        }
    }
    let mut v = Values::<B> { out: Vec::new() };
    module.visit(&mut v);
    v.out
}

/// Replace the parameter values by `values` (flattened, visit order) as fresh leaves that
/// require gradients. Ids are kept.
pub fn set_flat_values<B: AutodiffBackend, M: Module<B>>(
    module: M,
    values: Vec<Tensor<B::InnerBackend, 1>>,
) -> M {
    struct Setter<B: AutodiffBackend> {
        values: std::vec::IntoIter<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleMapper<B> for Setter<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, old, mapper) = param.consume();
            let value = self
                .values
                .next()
                .expect("one value per parameter")
                .reshape(old.dims());
            Param::from_mapped_value(id, Tensor::from_inner(value).require_grad(), mapper)
        }
    }
    let mut mapper = Setter::<B> {
        values: values.into_iter(),
    };
    let module = module.map(&mut mapper);
    debug_assert!(
        mapper.values.next().is_none(),
        "more values than parameters"
    );
    module
}
