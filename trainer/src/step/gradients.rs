//! The backward pass of a micro-batch: burn's autodiff for the graph, plus the gradients
//! the forward pass computed by hand (the vocabulary heads' `∂E` and `∂b`, and the token
//! table rows of every lookup).

use super::objective::MicroLoss;
use crate::model::CocoLm;
use crate::optim;
use crate::params::{self, ParamSpec};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Tensor};

/// Where the hand-differentiated parameters sit in the parameter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabParams {
    /// `token_embedding`.
    pub tokens: usize,
    /// `generator.head.bias`.
    pub generator_bias: usize,
    /// `corrector.lm_head.bias`.
    pub corrector_bias: usize,
}

impl VocabParams {
    /// Find them by path.
    pub fn find(specs: &[ParamSpec]) -> Self {
        let at = |name: &str| {
            specs
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("the model has a parameter `{name}`"))
        };
        Self {
            tokens: at("token_embedding"),
            generator_bias: at("generator.head.bias"),
            corrector_bias: at("corrector.lm_head.bias"),
        }
    }
}

/// Backward pass of a micro-batch: all parameter gradients, flattened, in parameter order.
///
/// The token table's gradient is assembled here: the vocabulary heads' `∂E` plus every
/// lookup's word gradient added into its rows.
pub fn micro_gradients<B: AutodiffBackend>(
    model: &CocoLm<B>,
    loss: MicroLoss<B>,
    at: VocabParams,
) -> optim::Gradients<B::InnerBackend> {
    let backward = loss.total.backward();
    let mut grads = params::gradients(model, &backward);
    let table = model.token_embedding.val();
    let [vocab_size, hidden] = table.dims();
    let mut table_grad = None;
    if let Some(vocab) = loss.vocab {
        table_grad = Some(vocab.tokens);
        add_grad(&mut grads[at.generator_bias], vocab.generator_bias);
        add_grad(&mut grads[at.corrector_bias], vocab.corrector_bias);
    }
    for lookup in loss.lookups {
        if let Some(words) = lookup.words.grad(&backward) {
            let base = table_grad
                .take()
                .unwrap_or_else(|| Tensor::zeros([vocab_size, hidden], &table.device()));
            table_grad = Some(base.select_assign(0, lookup.ids, words, IndexingUpdateOp::Add));
        }
    }
    if let Some(g) = table_grad {
        add_grad(&mut grads[at.tokens], g.reshape([vocab_size * hidden]));
    }
    grads
}

fn add_grad<B: Backend>(slot: &mut Option<Tensor<B, 1>>, grad: Tensor<B, 1>) {
    *slot = Some(match slot.take() {
        Some(g) => g + grad,
        None => grad,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::step::{DeviceBatch, LossWeights, forward_loss};
    use crate::test_util::{rng_lock, synthetic_batch, tiny_config};
    use cocolm_shared::RunConfig;
    use std::collections::BTreeMap;

    type B = CpuBackend;

    /// L1 norm of the gradient of every parameter, for a micro-batch with these weights.
    fn grad_norms(
        config: &RunConfig,
        model: &CocoLm<B>,
        b: &DeviceBatch<B>,
    ) -> BTreeMap<String, f32> {
        let loss = forward_loss(model, b, &LossWeights::from_config(config), 1.0);
        let specs = params::param_specs(model);
        let at = VocabParams::find(&specs);
        specs
            .into_iter()
            .zip(micro_gradients(model, loss, at))
            .filter_map(|(spec, g)| g.map(|g| (spec.name, g.abs().sum().into_scalar())))
            .collect()
    }

    fn has_grad(norms: &BTreeMap<String, f32>, prefix: &str) -> bool {
        norms
            .iter()
            .any(|(name, &n)| name.starts_with(prefix) && n > 0.0)
    }

    #[test]
    fn gradient_flows_only_where_it_should() {
        let _guard = rng_lock();
        let mut config = tiny_config();
        config.model.scl = true;
        let device = Default::default();
        B::seed(&device, 1);
        let model = CocoLm::<B>::init(&config.model, &device).unwrap();
        let b =
            DeviceBatch::upload(&synthetic_batch(&config, 0), &config.model, 0, &device).unwrap();
        let with = |mlm: f64, copy: f64, clm: f64, scl: f64| {
            let mut c = config.clone();
            (
                c.train.mlm_weight,
                c.train.copy_weight,
                c.train.clm_weight,
                c.train.scl_weight,
            ) = (mlm, copy, clm, scl);
            grad_norms(&c, &model, &b)
        };

        // The generator learns from its MLM loss only: with MLM weight 0 its layers get
        // no gradient through the sampled replacements, while the shared token table
        // still learns from the corrector.
        let without_mlm = with(0.0, 50.0, 1.0, 1.0);
        assert!(!has_grad(&without_mlm, "generator."), "{without_mlm:?}");
        assert!(has_grad(&without_mlm, "token_embedding"));
        assert!(has_grad(&without_mlm, "corrector.backbone.encoder"));
        assert!(has_grad(&without_mlm, "corrector.scl_head"));

        let mlm_only = with(1.0, 0.0, 0.0, 0.0);
        assert!(has_grad(&mlm_only, "generator.backbone.encoder"));
        assert!(has_grad(&mlm_only, "generator.head"));
        assert!(has_grad(&mlm_only, "token_embedding"));
        assert!(!has_grad(&mlm_only, "corrector."), "{mlm_only:?}");

        // The CLM weight 1 − σ(copy) is detached: CLM alone does not train the copy head.
        let clm_only = with(0.0, 0.0, 1.0, 0.0);
        assert!(!has_grad(&clm_only, "corrector.copy_head"));
        assert!(has_grad(&clm_only, "corrector.lm_head"));
        assert!(has_grad(&clm_only, "corrector.backbone.encoder"));
        let copy_only = with(0.0, 1.0, 0.0, 0.0);
        assert!(has_grad(&copy_only, "corrector.copy_head"));
        assert!(!has_grad(&copy_only, "corrector.lm_head"));
    }
}
