//! AdamW with ZeRO stage 1: the fp32 master weights and both moments partitioned across
//! the `W` data-parallel ranks.
//!
//! The layout is Megatron's distributed optimiser's: the parameters, flattened in
//! parameter order into one buffer of `N` elements, are cut into buckets of
//! [`ShardInfo::bucket`] elements (the last one shorter); each bucket is padded to a
//! multiple of `W` and rank `r` owns the `r`-th `1/W` of every bucket. A step:
//!
//! 1. every rank flattens its gradient (summed over its micro-batches) and
//!    reduce-scatters it bucket by bucket: rank `r` receives the sum over ranks of its
//!    own parts;
//! 2. the squared norms of the parts are all-reduced into the global norm (with one flag
//!    per parameter saying whether any rank had a gradient for it), which clips;
//! 3. each rank runs AdamW on its own parts ([`Kernels::adamw_update`]);
//! 4. the updated parts are all-gathered, bucket by bucket, into the whole parameter
//!    vector on every rank.
//!
//! Optimiser memory per rank is `12·N/W` bytes (master, two moments; `12·N` unsharded).
//! Where this differs from Megatron and DeepSpeed: the model keeps its parameters in fp32
//! and casts them to the compute precision where they are used, so gradients are
//! reduced and parameters gathered in fp32 (twice the bytes of a bf16 gather); and
//! communication does not overlap the backward pass.

use super::{
    AdamWConfig, Gradients, Optimizer, OptimizerState, ShardInfo, StepOutcome, StepRequest,
};
use crate::collective::Collective;
use crate::kernels::Kernels;
use crate::params::{NamedTensor, ParamSpec, tensor_to_vec};
use crate::{Error, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

/// A run of consecutive elements of one rank's shard that belong to one parameter (or
/// are padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position in the shard.
    pub local: Range<usize>,
    /// The parameter, and the elements of its flattened value; `None` for padding.
    pub param: Option<(usize, Range<usize>)>,
}

/// One bucket of the flat buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// First element in the flat buffer.
    start: usize,
    /// Elements (before padding).
    len: usize,
    /// Elements each rank owns (`len` padded to a multiple of `W`, divided by `W`).
    chunk: usize,
}

/// The ZeRO-1 partition of parameters of the given sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    numel: Vec<usize>,
    world: usize,
    bucket: usize,
}

impl Layout {
    /// The partition of parameters of `numel` elements each among `world` ranks, in
    /// buckets of `bucket` elements.
    pub fn new(numel: Vec<usize>, world: usize, bucket: usize) -> Self {
        assert!(world > 0 && bucket > 0, "a layout has ranks and buckets");
        Self {
            numel,
            world,
            bucket,
        }
    }

    /// Elements of all parameters.
    pub fn total(&self) -> usize {
        self.numel.iter().sum()
    }

    fn buckets(&self) -> Vec<Bucket> {
        let total = self.total();
        (0..total.div_ceil(self.bucket))
            .map(|b| {
                let start = b * self.bucket;
                let len = self.bucket.min(total - start);
                Bucket {
                    start,
                    len,
                    chunk: len.div_ceil(self.world),
                }
            })
            .collect()
    }

    /// Elements of each rank's shard, padding included.
    pub fn shard_len(&self) -> usize {
        self.buckets().iter().map(|b| b.chunk).sum()
    }

    /// The segments of rank `rank`'s shard, in shard order.
    pub fn segments(&self, rank: usize) -> Vec<Segment> {
        let starts: Vec<usize> = self
            .numel
            .iter()
            .scan(0, |at, &n| {
                let start = *at;
                *at += n;
                Some(start)
            })
            .collect();
        let mut segments = Vec::new();
        let mut local = 0;
        for b in self.buckets() {
            let own = (b.start + rank * b.chunk).min(b.start + b.len)
                ..(b.start + (rank + 1) * b.chunk).min(b.start + b.len);
            // The parameters overlapping `own`, each cut to the overlap.
            let mut at = own.start;
            while at < own.end {
                let p = starts.partition_point(|&s| s <= at) - 1;
                let end = own.end.min(starts[p] + self.numel[p]);
                segments.push(Segment {
                    local: local..local + end - at,
                    param: Some((p, at - starts[p]..end - starts[p])),
                });
                local += end - at;
                at = end;
            }
            let padding = b.chunk - own.len();
            if padding > 0 {
                segments.push(Segment {
                    local: local..local + padding,
                    param: None,
                });
                local += padding;
            }
        }
        segments
    }
}

/// AdamW over one rank's shard (see the module docs).
pub struct ShardedAdamW<B: Backend> {
    config: AdamWConfig,
    specs: Vec<ParamSpec>,
    layout: Layout,
    segments: Vec<Segment>,
    collective: Arc<dyn Collective<B>>,
    /// fp32 master weights, first and second moments, one tensor per segment.
    master: Vec<Tensor<B, 1>>,
    exp_avg: Vec<Tensor<B, 1>>,
    exp_avg_sq: Vec<Tensor<B, 1>>,
    step: u64,
    device: B::Device,
}

impl<B: Backend> std::fmt::Debug for ShardedAdamW<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedAdamW")
            .field("rank", &self.collective.rank())
            .field("layout", &self.layout)
            .field("step", &self.step)
            .finish()
    }
}

impl<B: Kernels> ShardedAdamW<B> {
    /// The shard of this rank (`collective.rank()`) for parameters `specs` whose current
    /// values are `params` (the same on every rank), with zero moments.
    pub fn new(
        specs: Vec<ParamSpec>,
        params: &[Tensor<B, 1>],
        config: AdamWConfig,
        collective: Arc<dyn Collective<B>>,
        bucket: usize,
        device: &B::Device,
    ) -> Self {
        let layout = Layout::new(
            specs.iter().map(ParamSpec::numel).collect(),
            collective.world(),
            bucket,
        );
        let segments = layout.segments(collective.rank());
        let zeros = |s: &Segment| Tensor::<B, 1>::zeros([s.local.len()], device);
        let mut optimizer = Self {
            exp_avg: segments.iter().map(zeros).collect(),
            exp_avg_sq: segments.iter().map(zeros).collect(),
            master: Vec::new(),
            config,
            specs,
            layout,
            segments,
            collective,
            step: 0,
            device: device.clone(),
        };
        optimizer.set_master(params);
        optimizer
    }

    /// Take this rank's parts of `params` as the master weights.
    fn set_master(&mut self, params: &[Tensor<B, 1>]) {
        self.master = self
            .segments
            .iter()
            .map(|s| match &s.param {
                Some((p, range)) => params[*p].clone().narrow(0, range.start, range.len()),
                None => Tensor::zeros([s.local.len()], &self.device),
            })
            .collect();
    }

    /// The layout of this rank's shard.
    pub fn info(&self) -> ShardInfo {
        ShardInfo {
            rank: self.collective.rank(),
            world: self.layout.world,
            bucket: self.layout.bucket,
        }
    }

    /// This rank's part of the flat buffer `flat` (`[N]`), summed over ranks, bucket by
    /// bucket.
    fn reduce_scatter(&self, flat: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let world = self.layout.world;
        let mut parts = Vec::new();
        for b in self.layout.buckets() {
            let mut bucket = flat.clone().narrow(0, b.start, b.len);
            let padding = b.chunk * world - b.len;
            if padding > 0 {
                bucket = Tensor::cat(vec![bucket, Tensor::zeros([padding], &self.device)], 0);
            }
            parts.push(self.collective.reduce_scatter(bucket)?);
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The whole flat buffer `[N]` from every rank's shard, bucket by bucket.
    fn all_gather(&self, shard: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let mut parts = Vec::new();
        let mut local = 0;
        for b in self.layout.buckets() {
            let own = shard.clone().narrow(0, local, b.chunk);
            local += b.chunk;
            parts.push(self.collective.all_gather(own)?.narrow(0, 0, b.len));
        }
        Ok(Tensor::cat(parts, 0))
    }
}

/// Cut a flat `[N]` buffer into the parameters of `numel` elements each.
pub fn split<B: Backend>(flat: Tensor<B, 1>, numel: &[usize]) -> Vec<Tensor<B, 1>> {
    let mut at = 0;
    numel
        .iter()
        .map(|&n| {
            at += n;
            flat.clone().narrow(0, at - n, n)
        })
        .collect()
}

impl<B: Kernels> Optimizer<B> for ShardedAdamW<B> {
    fn step(
        &mut self,
        params: Vec<Tensor<B, 1>>,
        grads: Gradients<B>,
        request: &StepRequest,
    ) -> Result<StepOutcome<B>> {
        assert_eq!(params.len(), self.specs.len(), "one value per parameter");
        assert_eq!(grads.len(), self.specs.len(), "one gradient per parameter");
        let device = &self.device;
        let present: Vec<f32> = grads.iter().map(|g| f32::from(g.is_some())).collect();
        let flat = Tensor::cat(
            grads
                .into_iter()
                .zip(&self.specs)
                .map(|(g, spec)| g.unwrap_or_else(|| Tensor::zeros([spec.numel()], device)))
                .collect(),
            0,
        );
        let shard = self.reduce_scatter(flat)?;

        // One all-reduce for the norm and for which parameters any rank has a gradient of.
        let n = present.len();
        let summary = Tensor::cat(
            vec![
                shard.clone().square().sum(),
                Tensor::from_data(TensorData::new(present, [n]), device),
            ],
            0,
        );
        let summary = tensor_to_vec(self.collective.all_reduce(summary)?);
        let grad_norm = f64::from(summary[0]).sqrt() / request.grad_divisor;
        if !grad_norm.is_finite() {
            return Ok(StepOutcome {
                grad_norm,
                params: None,
            });
        }
        let trained: Vec<bool> = summary[1..].iter().map(|&c| c > 0.0).collect();
        let grad_scale = super::clip_factor(grad_norm, request.clip_norm) / request.grad_divisor;
        self.step += 1;
        for (i, segment) in self.segments.iter().enumerate() {
            let Some((p, _)) = &segment.param else {
                continue;
            };
            if !trained[*p] {
                continue;
            }
            let decay = self.config.decays(&self.specs[*p]);
            let update = self.config.update(self.step, request.lr, grad_scale, decay);
            let g = shard
                .clone()
                .narrow(0, segment.local.start, segment.local.len());
            let [p, m, v] = B::adamw_update(
                self.master[i].clone(),
                g,
                std::mem::replace(&mut self.exp_avg[i], Tensor::empty([0], device)),
                std::mem::replace(&mut self.exp_avg_sq[i], Tensor::empty([0], device)),
                &update,
            );
            (self.master[i], self.exp_avg[i], self.exp_avg_sq[i]) = (p, m, v);
        }
        let whole = self.all_gather(Tensor::cat(self.master.clone(), 0))?;
        Ok(StepOutcome {
            grad_norm,
            params: Some(split(whole, &self.layout.numel)),
        })
    }

    fn state(&self) -> OptimizerState {
        let flat = |slot: &str, tensors: &[Tensor<B, 1>]| NamedTensor {
            name: slot.to_string(),
            shape: vec![self.layout.shard_len()],
            data: tensor_to_vec(Tensor::cat(tensors.to_vec(), 0)),
        };
        OptimizerState {
            step: self.step,
            tensors: vec![
                flat(EXP_AVG, &self.exp_avg),
                flat(EXP_AVG_SQ, &self.exp_avg_sq),
            ],
            shard: Some(self.info()),
        }
    }

    fn load_state(
        &mut self,
        state: OptimizerState,
        params: &[Tensor<B, 1>],
        source: &Path,
    ) -> Result<()> {
        let [exp_avg, exp_avg_sq] = match state.shard {
            Some(info) if info == self.info() => own_shard(state.tensors, &self.layout, source)?,
            Some(info) => {
                return Err(Error::Checkpoint {
                    path: source.to_path_buf(),
                    message: format!(
                        "holds the shard of rank {} of {} (buckets of {}), this is rank {} of {} (buckets of {}); merge the shards first",
                        info.rank,
                        info.world,
                        info.bucket,
                        self.collective.rank(),
                        self.layout.world,
                        self.layout.bucket
                    ),
                });
            }
            None => {
                let whole = super::adamw::whole_state(state.tensors, &self.specs, source)?;
                let pick = |slot: usize| -> Vec<f32> {
                    let mut out = Vec::with_capacity(self.layout.shard_len());
                    for s in &self.segments {
                        match &s.param {
                            Some((p, range)) => {
                                out.extend_from_slice(&whole[*p][slot][range.clone()])
                            }
                            None => out.resize(out.len() + s.local.len(), 0.0),
                        }
                    }
                    out
                };
                [pick(0), pick(1)]
            }
        };
        let cut = |values: &[f32]| -> Vec<Tensor<B, 1>> {
            self.segments
                .iter()
                .map(|s| {
                    let data = values[s.local.clone()].to_vec();
                    Tensor::from_data(TensorData::new(data, [s.local.len()]), &self.device)
                })
                .collect()
        };
        self.exp_avg = cut(&exp_avg);
        self.exp_avg_sq = cut(&exp_avg_sq);
        self.set_master(params);
        self.step = state.step;
        Ok(())
    }

    fn state_bytes(&self) -> u64 {
        12 * self.layout.shard_len() as u64
    }

    fn shard(&self) -> Option<ShardInfo> {
        Some(self.info())
    }
}

/// The two flat moment tensors of a shard, checked against the layout.
fn own_shard(tensors: Vec<NamedTensor>, layout: &Layout, source: &Path) -> Result<[Vec<f32>; 2]> {
    let mut found: [Option<Vec<f32>>; 2] = [None, None];
    for t in tensors {
        let slot = match t.name.as_str() {
            EXP_AVG => 0,
            EXP_AVG_SQ => 1,
            _ => {
                return Err(Error::UnexpectedTensors {
                    path: source.to_path_buf(),
                    names: vec![t.name],
                });
            }
        };
        if t.shape != [layout.shard_len()] {
            return Err(Error::TensorMismatch {
                path: source.to_path_buf(),
                name: t.name,
                expected: format!("shape [{}]", layout.shard_len()),
                got: format!("shape {:?}", t.shape),
            });
        }
        found[slot] = Some(t.data);
    }
    let [a, b] = found;
    let missing = |name: &str| Error::MissingTensor {
        path: source.to_path_buf(),
        name: name.to_string(),
    };
    Ok([
        a.ok_or_else(|| missing(EXP_AVG))?,
        b.ok_or_else(|| missing(EXP_AVG_SQ))?,
    ])
}

/// The whole optimiser state (per parameter, as [`super::AdamW`] keeps it) from the
/// shards of every rank of one layout, in any order. `source` names the checkpoint in
/// errors.
pub fn merge(
    shards: Vec<OptimizerState>,
    specs: &[ParamSpec],
    source: &Path,
) -> Result<OptimizerState> {
    let bad = |message: String| Error::Checkpoint {
        path: source.to_path_buf(),
        message,
    };
    let first = shards
        .first()
        .and_then(|s| s.shard)
        .ok_or_else(|| bad("no optimiser shard to merge".into()))?;
    let step = shards[0].step;
    let layout = Layout::new(
        specs.iter().map(ParamSpec::numel).collect(),
        first.world,
        first.bucket,
    );
    let mut seen = vec![false; first.world];
    let mut whole: Vec<[Vec<f32>; 2]> = specs
        .iter()
        .map(|s| [vec![0.0; s.numel()], vec![0.0; s.numel()]])
        .collect();
    for shard in shards {
        let info = shard
            .shard
            .filter(|i| i.world == first.world && i.bucket == first.bucket && i.rank < i.world)
            .ok_or_else(|| bad("the optimiser shards come from different layouts".into()))?;
        if shard.step != step || std::mem::replace(&mut seen[info.rank], true) {
            return Err(bad(format!(
                "the optimiser shard of rank {} is repeated or from another step",
                info.rank
            )));
        }
        let moments = own_shard(shard.tensors, &layout, source)?;
        for s in layout.segments(info.rank) {
            if let Some((p, range)) = s.param {
                for slot in 0..2 {
                    whole[p][slot][range.clone()].copy_from_slice(&moments[slot][s.local.clone()]);
                }
            }
        }
    }
    if let Some(rank) = seen.iter().position(|s| !s) {
        return Err(bad(format!(
            "the optimiser shard of rank {rank} of {} is missing",
            first.world
        )));
    }
    Ok(OptimizerState {
        step,
        tensors: super::adamw::named_state(specs, whole),
        shard: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuInner;
    use crate::collective::threads::ThreadGroup;
    use proptest::prelude::*;

    proptest! {
        /// Every element of every parameter is owned by exactly one rank, every rank's
        /// shard has the same length, and the segments tile each shard in order.
        #[test]
        fn segments_partition_the_parameters(
            numel in proptest::collection::vec(1usize..40, 1..8),
            world in 1usize..5,
            bucket in 1usize..50,
        ) {
            let layout = Layout::new(numel.clone(), world, bucket);
            let mut owned: Vec<Vec<u32>> = numel.iter().map(|&n| vec![0; n]).collect();
            for rank in 0..world {
                let segments = layout.segments(rank);
                let mut at = 0;
                for s in &segments {
                    prop_assert_eq!(s.local.start, at);
                    prop_assert!(!s.local.is_empty());
                    at = s.local.end;
                    if let Some((p, range)) = &s.param {
                        prop_assert_eq!(range.len(), s.local.len());
                        for k in range.clone() {
                            owned[*p][k] += 1;
                        }
                    }
                }
                prop_assert_eq!(at, layout.shard_len());
            }
            prop_assert!(owned.iter().flatten().all(|&c| c == 1));
            prop_assert!(layout.shard_len() * world - layout.total() < world * layout.buckets().len());
        }
    }

    fn specs(numel: &[usize]) -> Vec<ParamSpec> {
        numel
            .iter()
            .enumerate()
            .map(|(i, &n)| ParamSpec {
                name: format!("p{i}"),
                shape: if i % 2 == 0 { vec![n] } else { vec![1, n] },
            })
            .collect()
    }

    /// Shards of three ranks merge into the whole state, and each rank takes its part
    /// back out of the whole.
    #[test]
    fn shards_merge_into_the_whole_and_split_back() {
        let numel = [5, 7, 3];
        let specs = specs(&numel);
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
            scope: cocolm_shared::DecayScope::Matrices,
        };
        let shards: Vec<OptimizerState> = std::thread::scope(|scope| {
            let handles: Vec<_> = ThreadGroup::new(3)
                .into_iter()
                .map(|group| {
                    let specs = specs.clone();
                    scope.spawn(move || {
                        let device = Default::default();
                        let params: Vec<Tensor<CpuInner, 1>> = numel
                            .iter()
                            .map(|&n| Tensor::from_floats(vec![1.0; n].as_slice(), &device))
                            .collect();
                        let mut opt = ShardedAdamW::new(
                            specs.clone(),
                            &params,
                            config,
                            Arc::new(group),
                            4,
                            &device,
                        );
                        let grads = numel
                            .iter()
                            .enumerate()
                            .map(|(i, &n)| {
                                let g: Vec<f32> = (0..n).map(|k| (i * 10 + k) as f32).collect();
                                Some(Tensor::from_floats(g.as_slice(), &device))
                            })
                            .collect();
                        let request = StepRequest {
                            lr: 0.1,
                            clip_norm: 0.0,
                            grad_divisor: 3.0,
                        };
                        opt.step(params.clone(), grads, &request).unwrap();
                        opt.state()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let whole = merge(shards.clone(), &specs, Path::new("ckpt")).unwrap();
        assert_eq!(whole.shard, None);
        // The gradient of element k of parameter i is the same on all three ranks, so
        // the summed mean is (10i + k); after one step m = 0.1·(10i + k).
        let moments =
            super::super::adamw::whole_state(whole.tensors.clone(), &specs, Path::new("x"))
                .unwrap();
        for (i, [m, _]) in moments.iter().enumerate() {
            for (k, &v) in m.iter().enumerate() {
                let want = 0.1 * (10 * i + k) as f32;
                assert!((v - want).abs() < 1e-5, "p{i}[{k}] = {v}, want {want}");
            }
        }
        // Splitting the whole state gives each rank its shard back.
        for (rank, own) in shards.iter().enumerate() {
            let layout = Layout::new(numel.to_vec(), 3, 4);
            let device = Default::default();
            let params: Vec<Tensor<CpuInner, 1>> =
                numel.iter().map(|&n| Tensor::zeros([n], &device)).collect();
            let mut opt = ShardedAdamW::new(
                specs.clone(),
                &params,
                config,
                Arc::new(FixedRank { rank, world: 3 }),
                4,
                &device,
            );
            opt.load_state(whole.clone(), &params, Path::new("x"))
                .unwrap();
            assert_eq!(&opt.state(), own);
            assert_eq!(layout.shard_len(), own.tensors[0].data.len());
        }
        // A missing rank is an error naming it.
        let mut partial = shards;
        partial.remove(1);
        let err = merge(partial, &specs, Path::new("ckpt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank 1 of 3 is missing"), "{err}");
    }

    /// A rank of a group whose other ranks are absent: enough for layout and state
    /// handling, which never communicate.
    struct FixedRank {
        rank: usize,
        world: usize,
    }

    impl Collective<CpuInner> for FixedRank {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.world
        }
        fn all_reduce(&self, _: Tensor<CpuInner, 1>) -> Result<Tensor<CpuInner, 1>> {
            unreachable!("no communication")
        }
        fn reduce_scatter(&self, _: Tensor<CpuInner, 1>) -> Result<Tensor<CpuInner, 1>> {
            unreachable!("no communication")
        }
        fn all_gather(&self, _: Tensor<CpuInner, 1>) -> Result<Tensor<CpuInner, 1>> {
            unreachable!("no communication")
        }
        fn broadcast(&self, _: Tensor<CpuInner, 1>, _: usize) -> Result<Tensor<CpuInner, 1>> {
            unreachable!("no communication")
        }
        fn barrier(&self) -> Result<()> {
            unreachable!("no communication")
        }
    }
}
