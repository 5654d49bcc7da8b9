//! [`Kernels`] for the CPU backends: the encoder layer of `layer.rs` on burn-ndarray
//! tensors, registered with burn's autodiff as one operation with a hand-written
//! backward pass, the vocabulary head of `vocab.rs` and AdamW in one pass (`math.rs`).
//!
//! Dropout masks come from a counter-based hash keyed by a seed drawn from the backend
//! RNG once per layer call, so a step stays a pure function of the RNG seed the trainer
//! sets before it (exact resume).

mod layer;
mod math;
mod vocab;

use super::{
    AdamWUpdate, HeadOutput, HeadRows, Kernels, LAYER_PARAMS, LayerCall, LayerTensors, LayerWeights,
};
use crate::backend::{CpuBackend, CpuInner};
use burn::tensor::{Distribution, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_ndarray::NdArrayTensor;
use layer::{Dims, LayerDropout, Saved, ScoreBias, Weights};
use std::borrow::Cow;
use std::sync::Arc;

/// The tensors a layer reads: `x`, the parameters in [`LayerWeights`] order, the score
/// bias.
const INPUTS: usize = LAYER_PARAMS + 2;

/// The values of an `f32` ndarray tensor in row-major order (borrowed when contiguous).
fn values(t: &NdArrayTensor) -> Cow<'_, [f32]> {
    let NdArrayTensor::F32(storage) = t else {
        panic!("the CPU kernels run in f32, got {:?}", t.dtype());
    };
    let view = storage.view();
    match view.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(view.iter().copied().collect()),
    }
}

/// The values of an `f32` ndarray tensor as an owned row-major vector, without a copy when
/// the tensor is contiguous and not shared.
fn into_values(t: NdArrayTensor) -> Vec<f32> {
    let NdArrayTensor::F32(storage) = t else {
        panic!("the CPU kernels run in f32, got {:?}", t.dtype());
    };
    let array = storage.into_shared().into_owned();
    if !array.is_standard_layout() {
        return array.iter().copied().collect();
    }
    // Contiguous: the elements are `data[offset..offset + n]` (all of it unless the array
    // was cut from a larger buffer).
    let n = array.len();
    let (data, offset) = array.into_raw_vec_and_offset();
    let offset = offset.unwrap_or(0);
    if offset == 0 && data.len() == n {
        data
    } else {
        data[offset..offset + n].to_vec()
    }
}

/// A tensor of `shape` holding `data`.
fn tensor(data: Vec<f32>, shape: &[usize]) -> NdArrayTensor {
    let array = ndarray::ArcArray::from_shape_vec(ndarray::IxDyn(shape), data)
        .expect("kernel outputs have the size of their shape");
    NdArrayTensor::from(array)
}

/// The primitives of one layer call: `x`, the parameters, the score bias.
fn primitives<B: burn::tensor::backend::Backend>(
    x: Tensor<B, 2>,
    weights: LayerTensors<B>,
    bias: Tensor<B, 4>,
) -> [B::FloatTensorPrimitive; INPUTS] {
    let mut all = Vec::with_capacity(INPUTS);
    all.push(x.into_primitive().tensor());
    all.extend(
        weights
            .map(
                |t| t.into_primitive().tensor(),
                |t| t.into_primitive().tensor(),
            )
            .into_array(),
    );
    all.push(bias.into_primitive().tensor());
    match all.try_into() {
        Ok(all) => all,
        Err(_) => unreachable!("x, {LAYER_PARAMS} parameters and the bias"),
    }
}

/// What a layer call needs besides its tensors.
#[derive(Debug, Clone, Copy)]
struct Call {
    dims: Dims,
    eps: f32,
    dropout: LayerDropout,
}

impl Call {
    fn new<B: burn::tensor::backend::Backend>(
        call: &LayerCall,
        weights: &LayerTensors<B>,
        dropout: LayerDropout,
    ) -> Self {
        let [hidden, ffn] = weights.ffn_in_w.dims();
        Self {
            dims: Dims {
                batch: call.batch,
                seq: call.seq,
                hidden,
                heads: call.heads,
                ffn,
            },
            eps: call.eps as f32,
            dropout,
        }
    }

    /// Borrow the values of the inputs and run `f` on them.
    fn with_values<R>(
        inputs: &[NdArrayTensor; INPUTS],
        f: impl FnOnce(&[f32], &Weights<'_>, &ScoreBias<'_>) -> R,
    ) -> R {
        let v: Vec<Cow<'_, [f32]>> = inputs.iter().map(values).collect();
        let weights: Weights<'_> = LayerWeights::from_array(std::array::from_fn(|i| &*v[i + 1]));
        let shape = inputs[INPUTS - 1].shape();
        let bias = ScoreBias {
            data: &v[INPUTS - 1],
            dims: [shape[0], shape[1], shape[2]],
        };
        f(&v[0], &weights, &bias)
    }

    fn forward(&self, inputs: &[NdArrayTensor; INPUTS]) -> (NdArrayTensor, Saved) {
        let (y, saved) = Self::with_values(inputs, |x, w, bias| {
            layer::forward(&self.dims, w, x, bias, self.eps, self.dropout)
        });
        let shape = [self.dims.batch * self.dims.seq, self.dims.hidden];
        (tensor(y, &shape), saved)
    }
}

impl Kernels for CpuInner {
    /// Evaluation: the fused forward pass, no dropout.
    fn encoder_layer(
        x: Tensor<Self, 2>,
        weights: LayerTensors<Self>,
        call: &LayerCall,
        bias: Tensor<Self, 4>,
    ) -> Tensor<Self, 2> {
        let call = Call::new(call, &weights, LayerDropout::default());
        let (y, _) = call.forward(&primitives(x, weights, bias));
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }

    /// One pass of `math::adamw`.
    fn adamw_update(
        p: Tensor<Self, 1>,
        g: Tensor<Self, 1>,
        m: Tensor<Self, 1>,
        v: Tensor<Self, 1>,
        update: &AdamWUpdate,
    ) -> [Tensor<Self, 1>; 3] {
        let n = p.dims()[0];
        // The updated tensors are taken over (no copy when uniquely owned); the
        // gradient, shared with the caller, is only read.
        let owned = |t: Tensor<Self, 1>| into_values(t.into_primitive().tensor());
        let (mut p, mut m, mut v) = (owned(p), owned(m), owned(v));
        let g = g.into_primitive().tensor();
        math::adamw(&mut p, &values(&g), &mut m, &mut v, update);
        [p, m, v].map(|x| Tensor::from_primitive(TensorPrimitive::Float(tensor(x, &[n]))))
    }

    /// The fused head of `vocab::head`.
    fn vocab_head(
        rows: HeadRows<Self>,
        table: Tensor<Self, 2>,
        bias: Tensor<Self, 1>,
    ) -> HeadOutput<Self> {
        let device = table.device();
        let [n, hidden] = rows.x.dims();
        let vocab_size = bias.dims()[0];
        let host = |t: Tensor<Self, 1>| t.into_data().to_vec::<f32>().expect("f32 values");
        let targets = rows
            .targets
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("i64 values");
        let weights = host(rows.weights);
        let uniforms = rows.uniforms.map(host);
        let [x, table, bias] = [
            rows.x.into_primitive().tensor(),
            table.into_primitive().tensor(),
            bias.into_primitive().tensor(),
        ];
        let g = vocab::head(&vocab::Head {
            x: &values(&x),
            table: &values(&table),
            bias: &values(&bias),
            targets: &targets,
            weights: &weights,
            uniforms: uniforms.as_deref(),
        });
        fn float<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<CpuInner, D> {
            Tensor::from_primitive(TensorPrimitive::Float(tensor(v, &shape)))
        }
        HeadOutput {
            cross_entropy: float(g.cross_entropy, [n]),
            correct: Tensor::from_floats([g.correct as f32], &device),
            samples: g
                .samples
                .map(|s| Tensor::<Self, 1, Int>::from_data(TensorData::new(s, [n]), &device)),
            d_x: float(g.d_x, [n, hidden]),
            d_tokens: float(g.d_tokens, [vocab_size, hidden]),
            d_bias: float(g.d_bias, [vocab_size]),
        }
    }
}

/// State of a recorded layer call: its inputs and saved activations.
#[derive(Debug, Clone)]
struct LayerState {
    call: Call,
    inputs: Arc<[NdArrayTensor; INPUTS]>,
    saved: Arc<Saved>,
}

#[derive(Debug)]
struct LayerBackward;

impl Backward<CpuInner, INPUTS> for LayerBackward {
    type State = LayerState;

    fn backward(
        self,
        ops: Ops<Self::State, INPUTS>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = grads.consume::<CpuInner>(&ops.node);
        let LayerState {
            call,
            inputs,
            saved,
        } = ops.state;
        let bias_grad = ops.parents[INPUTS - 1].is_some();
        let g = Call::with_values(&inputs, |x, w, bias| {
            layer::backward(
                &call.dims,
                w,
                x,
                bias,
                call.dropout,
                &saved,
                into_values(dy),
                bias_grad,
            )
        });
        let out = std::iter::once(Some(g.x))
            .chain(g.weights.into_array().map(Some))
            .chain([g.bias]);
        for ((parent, grad), input) in ops.parents.iter().zip(out).zip(inputs.iter()) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<CpuInner>(node.id, tensor(grad, &input.shape()));
            }
        }
    }
}

/// A fresh seed for the dropout masks of one layer call, from the backend RNG (which the
/// trainer reseeds before every micro-step).
fn draw_seed(device: &burn_ndarray::NdArrayDevice) -> u64 {
    let u = Tensor::<CpuInner, 1>::random([2], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .to_vec::<f32>()
        .expect("an f32 tensor");
    (u64::from(u[0].to_bits()) << 32) | u64::from(u[1].to_bits())
}

impl Kernels for CpuBackend {
    /// Training: the fused forward pass, recorded as one autodiff operation.
    fn encoder_layer(
        x: Tensor<Self, 2>,
        weights: LayerTensors<Self>,
        call: &LayerCall,
        bias: Tensor<Self, 4>,
    ) -> Tensor<Self, 2> {
        let (attention, hidden) = (call.attention_dropout, call.hidden_dropout);
        let dropout = if attention > 0.0 || hidden > 0.0 {
            LayerDropout::new(attention, hidden, draw_seed(&x.device()))
        } else {
            LayerDropout::default()
        };
        let call = Call::new(call, &weights, dropout);
        let inputs = primitives(x, weights, bias);
        let nodes = inputs.each_ref().map(|t| t.node.clone());
        let inner = inputs.map(|t| t.primitive);
        let (y, saved) = call.forward(&inner);
        let out = match LayerBackward
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                LayerState {
                    call,
                    inputs: Arc::new(inner),
                    saved: Arc::new(saved),
                },
                y,
            ),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference;
    use crate::kernels::test_support::{call, random_layer};
    use crate::test_util::rng_lock;
    use burn::tensor::backend::Backend;
    use burn::tensor::{ElementConversion, Tensor, TensorData};

    const BATCH: usize = 3;
    const SEQ: usize = 5;
    const HEADS: usize = 2;
    const HIDDEN: usize = 8;

    /// Weights larger than BERT's 0.02 so that every term matters numerically.
    fn layer<B: Backend>(device: &B::Device) -> LayerTensors<B> {
        B::seed(device, 11);
        random_layer(HIDDEN, 12, 0.3, device)
    }

    fn random<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// A bias of each supported broadcast shape: the padding mask alone, and mask plus
    /// per-head relative positions.
    fn biases<B: Backend>(device: &B::Device) -> Vec<Tensor<B, 4>> {
        let mask: Vec<f32> = (0..BATCH * SEQ)
            .map(|i| {
                if i % SEQ >= SEQ - i / SEQ {
                    -10_000.0
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<B, 4>::from_data(TensorData::new(mask, [BATCH, 1, 1, SEQ]), device);
        let relative = random::<B, 4>([1, HEADS, SEQ, SEQ], device);
        vec![mask.clone(), mask + relative]
    }

    fn max_rel_diff<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
        let scale = b.clone().abs().max().into_scalar().elem::<f32>().max(1e-6);
        (a - b).abs().max().into_scalar().elem::<f32>() / scale
    }

    #[test]
    fn fused_forward_matches_the_reference() {
        let _rng = rng_lock();
        let device = Default::default();
        let weights = layer::<CpuInner>(&device);
        let call = call(BATCH, SEQ, HEADS, 0.0);
        for bias in biases::<CpuInner>(&device) {
            let x = random::<CpuInner, 2>([BATCH * SEQ, HIDDEN], &device);
            let fused = CpuInner::encoder_layer(x.clone(), weights.clone(), &call, bias.clone());
            let graph = reference::encoder_layer(x, weights.clone(), &call, bias);
            let diff = max_rel_diff(fused, graph);
            assert!(diff < 1e-5, "relative difference {diff}");
        }
    }

    /// The gradients of `Σ y ⊙ r` with respect to every input, by the fused layer and by
    /// burn's autodiff of the reference.
    fn gradients(fused: bool, bias: Tensor<CpuBackend, 4>) -> Vec<Tensor<CpuInner, 1>> {
        let device = Default::default();
        let weights = layer::<CpuBackend>(&device).map(|t| t.require_grad(), |t| t.require_grad());
        let call = call(BATCH, SEQ, HEADS, 0.0);
        CpuBackend::seed(&device, 5);
        let x = random::<CpuBackend, 2>([BATCH * SEQ, HIDDEN], &device).require_grad();
        let bias = bias.require_grad();
        let r = random::<CpuBackend, 2>([BATCH * SEQ, HIDDEN], &device);
        let (w, b) = (weights.clone(), bias.clone());
        let y = if fused {
            CpuBackend::encoder_layer(x.clone(), w, &call, b)
        } else {
            reference::encoder_layer(x.clone(), w, &call, b)
        };
        let grads = (y * r).sum().backward();
        let params = weights.map(
            |t| t.grad(&grads).expect("a gradient").flatten(0, 1),
            |t| t.grad(&grads).expect("a gradient"),
        );
        let mut out = vec![
            x.grad(&grads).unwrap().flatten(0, 1),
            bias.grad(&grads).unwrap().flatten(0, 3),
        ];
        out.extend(params.into_array());
        out
    }

    #[test]
    fn fused_gradients_match_autodiff_of_the_reference() {
        let _rng = rng_lock();
        let device = Default::default();
        for bias in biases::<CpuBackend>(&device) {
            let fused = gradients(true, bias.clone());
            let graph = gradients(false, bias);
            assert_eq!(fused.len(), graph.len());
            for (i, (f, g)) in fused.into_iter().zip(graph).enumerate() {
                let diff = max_rel_diff(f, g);
                assert!(diff < 1e-4, "input {i}: relative difference {diff}");
            }
        }
    }

    /// With dropout on, the backward pass must use the forward pass's masks: the
    /// gradient's directional derivative equals a central finite difference of the loss
    /// (the RNG is reseeded before each forward pass, so the masks repeat).
    #[test]
    fn fused_gradients_with_dropout_match_finite_differences() {
        let _rng = rng_lock();
        let device = Default::default();
        let weights = layer::<CpuBackend>(&device);
        let call = call(BATCH, SEQ, HEADS, 0.2);
        let bias = biases::<CpuBackend>(&device).pop().unwrap();
        let x = random::<CpuBackend, 2>([BATCH * SEQ, HIDDEN], &device);
        let r = random::<CpuBackend, 2>([BATCH * SEQ, HIDDEN], &device);
        let v = random::<CpuBackend, 2>([BATCH * SEQ, HIDDEN], &device);
        let forward = |x: Tensor<CpuBackend, 2>| {
            CpuBackend::encoder_layer(x, weights.clone(), &call, bias.clone())
        };
        let loss = |x: Tensor<CpuBackend, 2>| {
            CpuBackend::seed(&device, 99);
            (forward(x) * r.clone()).sum()
        };
        let xg = x.clone().require_grad();
        let grads = loss(xg.clone()).backward();
        let analytic = (xg.grad(&grads).unwrap() * v.clone().inner())
            .sum()
            .into_scalar();
        let eps = 1e-2;
        let up = loss(x.clone() + v.clone().mul_scalar(eps)).into_scalar();
        let down = loss(x - v.mul_scalar(eps)).into_scalar();
        let numeric = (up - down) / (2.0 * eps as f32);
        assert!(
            (numeric - analytic).abs() < 2e-2 * analytic.abs().max(1.0),
            "finite difference {numeric}, gradient {analytic}"
        );
        // And dropout is really on: another seed gives another output.
        CpuBackend::seed(&device, 98);
        let other = (forward(xg.clone()) * r.clone()).sum();
        assert_ne!(other.into_scalar(), loss(xg).into_scalar());
    }

    /// The fused head and the default built from burn operations agree on every output,
    /// the draws included (same uniforms).
    #[test]
    fn fused_vocab_head_matches_the_graph() {
        vocab_head_at(70, 8, 37);
    }

    #[test]
    fn fused_vocab_head_matches_the_graph_at_a_real_size() {
        vocab_head_at(600, 256, 16_000);
    }

    fn vocab_head_at(n: usize, hidden: usize, vocab: usize) {
        let _rng = rng_lock();
        let device = Default::default();
        CpuInner::seed(&device, 3);
        let rows = HeadRows::<CpuInner> {
            x: random([n, hidden], &device),
            targets: Tensor::from_data(
                TensorData::new((0..n as i64).map(|i| i * 7 % vocab as i64).collect(), [n]),
                &device,
            ),
            weights: Tensor::random([n], Distribution::Uniform(0.0, 1.0), &device),
            uniforms: Some(Tensor::random(
                [n],
                Distribution::Uniform(0.0, 1.0),
                &device,
            )),
        };
        let table = random::<CpuInner, 2>([vocab, hidden], &device);
        let bias = random::<CpuInner, 1>([vocab], &device);
        let fused = CpuInner::vocab_head(rows.clone(), table.clone(), bias.clone());
        let graph = reference::vocab_head(rows, table, bias);
        assert!(max_rel_diff(fused.cross_entropy, graph.cross_entropy) < 1e-5);
        assert!(max_rel_diff(fused.d_x, graph.d_x) < 1e-5);
        assert!(max_rel_diff(fused.d_tokens, graph.d_tokens) < 1e-5);
        assert!(max_rel_diff(fused.d_bias, graph.d_bias) < 1e-5);
        assert_eq!(
            fused.correct.into_scalar(),
            graph.correct.into_scalar(),
            "argmax hits"
        );
        let draws = |t: Option<Tensor<CpuInner, 1, Int>>| {
            t.expect("draws")
                .into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .unwrap()
        };
        assert_eq!(draws(fused.samples), draws(graph.samples));
    }

    /// The one-pass AdamW equals the default from burn operations, with and without
    /// decay.
    #[test]
    fn fused_adamw_matches_the_graph() {
        let _rng = rng_lock();
        let device = Default::default();
        CpuInner::seed(&device, 4);
        let n = 40_000;
        let [p, g, m] = [0, 1, 2].map(|_| random::<CpuInner, 1>([n], &device));
        let v = random::<CpuInner, 1>([n], &device).abs();
        for decay in [1.0, 0.999] {
            let update = AdamWUpdate {
                grad_scale: 0.5,
                beta1: 0.9,
                beta2: 0.98,
                eps: 1e-6,
                step_size: 1e-3,
                decay,
            };
            let args = || (p.clone(), g.clone(), m.clone(), v.clone());
            let (a, b, c, d) = args();
            let fused = CpuInner::adamw_update(a, b, c, d, &update);
            let (a, b, c, d) = args();
            let graph = reference::adamw_update(a, b, c, d, &update);
            for (f, g) in fused.into_iter().zip(graph) {
                assert!(max_rel_diff(f, g) < 1e-6);
            }
        }
    }
}
