//! AdamW (Loshchilov & Hutter) with decoupled weight decay, as PyTorch's `AdamW`.
//!
//! Per parameter `p` with gradient `g` at update `t` (1-based):
//!
//! ```text
//! p ← p · (1 − lr · wd)                      (see below for which parameters)
//! m ← β₁ m + (1 − β₁) g
//! v ← β₂ v + (1 − β₂) g²
//! p ← p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! With [`DecayScope::Matrices`] (the default) weight decay applies to parameters of
//! rank ≥ 2 (weight matrices, embedding and bias tables); every bias and LayerNorm
//! parameter is a vector and is not decayed. With [`DecayScope::All`] it applies to
//! every parameter, as fairseq's Adam (and so the released COCO-LM recipe) does.

use super::{Gradients, Optimizer, OptimizerState, StepOutcome, StepRequest};
use crate::kernels::{AdamWUpdate, Kernels};
use crate::params::{NamedTensor, ParamSpec, tensor_to_vec};
use crate::{Error, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use cocolm_shared::{DecayScope, TrainConfig};
use std::path::Path;

/// Hyper-parameters of [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// The parameters weight decay applies to.
    pub scope: DecayScope,
}

impl AdamWConfig {
    /// The values of a training configuration.
    pub fn from_train_config(t: &TrainConfig) -> Self {
        Self {
            beta1: t.beta1,
            beta2: t.beta2,
            eps: t.eps,
            weight_decay: t.weight_decay,
            scope: t.weight_decay_scope,
        }
    }

    /// Whether weight decay applies to a parameter.
    pub fn decays(&self, spec: &ParamSpec) -> bool {
        match self.scope {
            DecayScope::Matrices => spec.shape.len() >= 2,
            DecayScope::All => true,
        }
    }
}

struct Slot<B: Backend> {
    spec: ParamSpec,
    decay: bool,
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// AdamW with first and second moments per parameter.
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    slots: Vec<Slot<B>>,
    step: u64,
    device: B::Device,
}

const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

impl<B: Backend> AdamW<B> {
    /// Zero moments for the parameters `specs` (in parameter order).
    pub fn new(specs: Vec<ParamSpec>, config: AdamWConfig, device: &B::Device) -> Self {
        let slots = specs
            .into_iter()
            .map(|spec| Slot {
                decay: config.decays(&spec),
                exp_avg: Tensor::zeros([spec.numel()], device),
                exp_avg_sq: Tensor::zeros([spec.numel()], device),
                spec,
            })
            .collect();
        Self {
            config,
            slots,
            step: 0,
            device: device.clone(),
        }
    }

    /// Whether weight decay applies to each parameter, in order, with its name.
    pub fn decay_mask(&self) -> impl Iterator<Item = (&str, bool)> {
        self.slots.iter().map(|s| (s.spec.name.as_str(), s.decay))
    }
}

impl AdamWConfig {
    /// The scalars of update number `step` (1-based) with learning rate `lr`, gradients
    /// multiplied by `grad_scale`, with or without weight decay.
    pub fn update(&self, step: u64, lr: f64, grad_scale: f64, decay: bool) -> AdamWUpdate {
        let t = step as i32;
        // PyTorch's update with the bias corrections folded into two scalars:
        // lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε) = step_size · m/(√v + ε̂).
        let sqrt_bias2 = (1.0 - self.beta2.powi(t)).sqrt();
        AdamWUpdate {
            grad_scale,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps * sqrt_bias2,
            step_size: lr * sqrt_bias2 / (1.0 - self.beta1.powi(t)),
            decay: if decay {
                1.0 - lr * self.weight_decay
            } else {
                1.0
            },
        }
    }
}

impl<B: Kernels> Optimizer<B> for AdamW<B> {
    fn step(
        &mut self,
        params: Vec<Tensor<B, 1>>,
        grads: Gradients<B>,
        request: &StepRequest,
    ) -> Result<StepOutcome<B>> {
        assert_eq!(params.len(), self.slots.len(), "one value per parameter");
        assert_eq!(grads.len(), self.slots.len(), "one gradient per parameter");
        let grad_norm = super::global_norm(&grads) / request.grad_divisor;
        if !grad_norm.is_finite() {
            return Ok(StepOutcome {
                grad_norm,
                params: None,
            });
        }
        let grad_scale = super::clip_factor(grad_norm, request.clip_norm) / request.grad_divisor;
        self.step += 1;
        // The moments are moved out and back so that, uniquely owned, they can be
        // updated in place.
        let (values, slots): (Vec<_>, Vec<_>) = params
            .into_iter()
            .zip(grads)
            .zip(std::mem::take(&mut self.slots))
            .map(|((p, g), slot)| {
                let Some(g) = g else { return (p, slot) };
                let update = self
                    .config
                    .update(self.step, request.lr, grad_scale, slot.decay);
                let [p, m, v] = B::adamw_update(p, g, slot.exp_avg, slot.exp_avg_sq, &update);
                let slot = Slot {
                    exp_avg: m,
                    exp_avg_sq: v,
                    ..slot
                };
                (p, slot)
            })
            .unzip();
        self.slots = slots;
        Ok(StepOutcome {
            grad_norm,
            params: Some(values),
        })
    }

    fn shard(&self) -> Option<super::ShardInfo> {
        None
    }

    fn state_bytes(&self) -> u64 {
        let numel: usize = self.slots.iter().map(|s| s.spec.numel()).sum();
        12 * numel as u64
    }

    fn state(&self) -> OptimizerState {
        let whole = self
            .slots
            .iter()
            .map(|s| [s.exp_avg.clone(), s.exp_avg_sq.clone()].map(tensor_to_vec))
            .collect();
        let specs: Vec<ParamSpec> = self.slots.iter().map(|s| s.spec.clone()).collect();
        OptimizerState {
            step: self.step,
            tensors: named_state(&specs, whole),
            shard: None,
        }
    }

    fn load_state(
        &mut self,
        state: OptimizerState,
        _params: &[Tensor<B, 1>],
        source: &Path,
    ) -> Result<()> {
        if let Some(shard) = state.shard {
            return Err(Error::Checkpoint {
                path: source.to_path_buf(),
                message: format!(
                    "holds the optimiser shard of rank {} of {}; merge the shards first",
                    shard.rank, shard.world
                ),
            });
        }
        let specs: Vec<ParamSpec> = self.slots.iter().map(|s| s.spec.clone()).collect();
        let whole = whole_state(state.tensors, &specs, source)?;
        for (slot, moments) in self.slots.iter_mut().zip(whole) {
            let n = slot.spec.numel();
            let [m, v] =
                moments.map(|data| Tensor::from_data(TensorData::new(data, [n]), &self.device));
            slot.exp_avg = m;
            slot.exp_avg_sq = v;
        }
        self.step = state.step;
        Ok(())
    }
}

/// The whole-model state tensors, `<path>.exp_avg` and `<path>.exp_avg_sq` of every
/// parameter in order, from their values (`[exp_avg, exp_avg_sq]` per parameter).
pub(crate) fn named_state(specs: &[ParamSpec], moments: Vec<[Vec<f32>; 2]>) -> Vec<NamedTensor> {
    specs
        .iter()
        .zip(moments)
        .flat_map(|(spec, values)| {
            [EXP_AVG, EXP_AVG_SQ]
                .into_iter()
                .zip(values)
                .map(|(slot, data)| NamedTensor {
                    name: format!("{}.{slot}", spec.name),
                    shape: spec.shape.clone(),
                    data,
                })
        })
        .collect()
}

/// The inverse of [`named_state`]: every parameter's moments, checked for presence and
/// shape; extra tensors are an error. `source` names the file in errors.
pub(crate) fn whole_state(
    tensors: Vec<NamedTensor>,
    specs: &[ParamSpec],
    source: &Path,
) -> Result<Vec<[Vec<f32>; 2]>> {
    let mut by_name: std::collections::BTreeMap<String, NamedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut take = |spec: &ParamSpec, slot: &str| -> Result<Vec<f32>> {
        let name = format!("{}.{slot}", spec.name);
        let t = by_name.remove(&name).ok_or_else(|| Error::MissingTensor {
            path: source.to_path_buf(),
            name: name.clone(),
        })?;
        if t.shape != spec.shape {
            return Err(Error::TensorMismatch {
                path: source.to_path_buf(),
                name,
                expected: format!("shape {:?}", spec.shape),
                got: format!("shape {:?}", t.shape),
            });
        }
        Ok(t.data)
    };
    let mut whole = Vec::with_capacity(specs.len());
    for spec in specs {
        whole.push([take(spec, EXP_AVG)?, take(spec, EXP_AVG_SQ)?]);
    }
    if !by_name.is_empty() {
        return Err(Error::UnexpectedTensors {
            path: source.to_path_buf(),
            names: by_name.into_keys().take(8).collect(),
        });
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;

    type B = CpuInner;

    fn spec(name: &str, shape: &[usize]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// No clipping, gradients halved (the mean of two micro-batches).
    fn halved(lr: f64) -> StepRequest {
        StepRequest {
            lr,
            clip_norm: 0.0,
            grad_divisor: 2.0,
        }
    }

    /// Two updates worked out in f64 by the PyTorch formulas.
    #[test]
    fn matches_reference_updates() {
        let device = Default::default();
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.1,
            scope: DecayScope::Matrices,
        };
        let mut opt = AdamW::<B>::new(vec![spec("w", &[1, 2]), spec("b", &[1])], config, &device);
        let mut params = vec![
            Tensor::<B, 1>::from_floats([1.0, -2.0], &device),
            Tensor::<B, 1>::from_floats([0.5], &device),
        ];
        let grad_steps = [[0.5f64, -1.0, 2.0], [0.25, 0.5, -1.0]];
        let lr = 0.01;
        // Reference.
        let mut p = [1.0f64, -2.0, 0.5];
        let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
        for (t, g) in grad_steps.iter().enumerate() {
            let t = t as i32 + 1;
            for k in 0..3 {
                let g = g[k] * 0.5; // grad_scale
                if k < 2 {
                    p[k] *= 1.0 - lr * 0.1;
                }
                m[k] = 0.9 * m[k] + 0.1 * g;
                v[k] = 0.98 * v[k] + 0.02 * g * g;
                let denom = v[k].sqrt() / (1.0 - 0.98f64.powi(t)).sqrt() + 1e-6;
                p[k] -= lr / (1.0 - 0.9f64.powi(t)) * m[k] / denom;
            }
            let grads: Gradients<B> = vec![
                Some(Tensor::from_floats([g[0] as f32, g[1] as f32], &device)),
                Some(Tensor::from_floats([g[2] as f32], &device)),
            ];
            params = opt
                .step(params, grads, &halved(lr))
                .unwrap()
                .params
                .unwrap();
        }
        let got: Vec<f32> = params.into_iter().flat_map(tensor_to_vec).collect();
        for (g, w) in got.iter().zip(p) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {p:?}");
        }
    }

    #[test]
    fn state_round_trips_exactly() {
        let device = Default::default();
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.01,
            scope: DecayScope::Matrices,
        };
        let specs = vec![spec("a.weight", &[2, 2]), spec("a.bias", &[2])];
        let mut opt = AdamW::<B>::new(specs.clone(), config, &device);
        let params = vec![
            Tensor::<B, 1>::ones([4], &device),
            Tensor::<B, 1>::ones([2], &device),
        ];
        let grads: Gradients<B> = vec![
            Some(Tensor::from_floats([0.1, -0.3, 0.7, 1e-3], &device)),
            Some(Tensor::from_floats([3.0, -1.0], &device)),
        ];
        let request = StepRequest {
            lr: 1e-3,
            clip_norm: 0.0,
            grad_divisor: 1.0,
        };
        let step = |opt: &mut AdamW<B>, params| {
            let grads = grads.clone();
            opt.step(params, grads, &request).unwrap().params.unwrap()
        };
        let params = step(&mut opt, params);
        let state = opt.state();
        let mut restored = AdamW::<B>::new(specs, config, &device);
        restored
            .load_state(state.clone(), &[], Path::new("x"))
            .unwrap();
        assert_eq!(restored.state(), state);
        let a: Vec<f32> = step(&mut opt, params.clone())
            .into_iter()
            .flat_map(tensor_to_vec)
            .collect();
        let b: Vec<f32> = step(&mut restored, params)
            .into_iter()
            .flat_map(tensor_to_vec)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn load_state_rejects_wrong_shapes() {
        let device = Default::default();
        let config = AdamWConfig::from_train_config(&TrainConfig::default());
        let opt = AdamW::<B>::new(vec![spec("w", &[3])], config, &device);
        let mut other = AdamW::<B>::new(vec![spec("w", &[4])], config, &device);
        let err = other
            .load_state(opt.state(), &[], Path::new("opt.safetensors"))
            .unwrap_err();
        assert!(err.to_string().contains("w.exp_avg"), "{err}");
    }
}
