//! Ranks as threads of one process: the CPU stand-in for NCCL.
//!
//! Every operation is a rendezvous: each rank leaves its tensor (as host data) in a slot,
//! the last to arrive combines the slots in rank order and leaves each rank its result.
//! Sums are taken in `f32` in rank order, so results do not depend on thread timing.

use super::Collective;
use crate::{Error, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorCreationOptions, TensorData};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What one rank brings to an operation.
struct Contribution {
    op: &'static str,
    data: TensorData,
}

#[derive(Default)]
struct State {
    /// Operations completed; waiters watch it change.
    completed: u64,
    /// Contributions to the operation being assembled, by rank.
    inputs: Vec<Option<Contribution>>,
    /// Results of the last completed operation not yet taken, by rank.
    outputs: Vec<Option<TensorData>>,
    /// Why the group cannot continue.
    aborted: Option<String>,
}

struct Shared {
    world: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// One rank's handle on a group of thread ranks. Dropping it before the others are done
/// (a rank that failed) aborts the group.
pub struct ThreadGroup {
    shared: Arc<Shared>,
    rank: usize,
}

impl std::fmt::Debug for ThreadGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadGroup")
            .field("rank", &self.rank)
            .field("world", &self.shared.world)
            .finish()
    }
}

impl ThreadGroup {
    /// Handles for ranks `0..world`, to be moved one to each rank's thread.
    pub fn new(world: usize) -> Vec<ThreadGroup> {
        assert!(world > 0, "a group has at least one rank");
        let shared = Arc::new(Shared {
            world,
            state: Mutex::new(State {
                inputs: (0..world).map(|_| None).collect(),
                outputs: vec![None; world],
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        (0..world)
            .map(|rank| ThreadGroup {
                shared: shared.clone(),
                rank,
            })
            .collect()
    }

    /// Stop the group: every pending and later operation of every rank fails with `why`.
    pub fn abort(&self, why: impl Into<String>) {
        let mut state = self.lock();
        state.aborted.get_or_insert_with(|| why.into());
        self.shared.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed(&self, op: &'static str, why: &str) -> Error {
        Error::Collective {
            op,
            rank: self.rank,
            message: why.to_string(),
        }
    }

    /// Leave `data` for operation `op`; the last rank to arrive runs `combine` on all
    /// contributions (in rank order), which returns one result per rank.
    fn exchange(
        &self,
        op: &'static str,
        data: TensorData,
        combine: impl FnOnce(Vec<TensorData>) -> std::result::Result<Vec<TensorData>, String>,
    ) -> Result<TensorData> {
        let world = self.shared.world;
        let mut state = self.lock();
        // The previous operation's results must all be taken before slots are reused.
        while state.outputs.iter().any(Option::is_some) && state.aborted.is_none() {
            state = self.wait(state);
        }
        if let Some(why) = &state.aborted {
            return Err(self.failed(op, why));
        }
        state.inputs[self.rank] = Some(Contribution { op, data });
        let round = state.completed;
        if state.inputs.iter().all(Option::is_some) {
            let inputs: Vec<Contribution> = state
                .inputs
                .iter_mut()
                .map(|slot| slot.take().expect("every rank has contributed"))
                .collect();
            let result = match inputs.iter().find(|c| c.op != op) {
                Some(other) => Err(format!(
                    "ranks disagree on the operation: `{op}` and `{}`",
                    other.op
                )),
                None => combine(inputs.into_iter().map(|c| c.data).collect()),
            };
            match result {
                Ok(outputs) if outputs.len() == world => {
                    state.outputs = outputs.into_iter().map(Some).collect();
                    state.completed += 1;
                }
                Ok(_) => unreachable!("one result per rank"),
                Err(why) => {
                    state.aborted = Some(why.clone());
                    self.shared.changed.notify_all();
                    return Err(self.failed(op, &why));
                }
            }
            self.shared.changed.notify_all();
        } else {
            while state.completed == round {
                if let Some(why) = &state.aborted {
                    let why = why.clone();
                    state.inputs[self.rank] = None;
                    return Err(self.failed(op, &why));
                }
                state = self.wait(state);
            }
        }
        let out = state.outputs[self.rank]
            .take()
            .expect("a completed operation leaves a result for every rank");
        self.shared.changed.notify_all();
        Ok(out)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.shared
            .changed
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `op` on the host copy of `tensor` and upload the result with the input's dtype.
    fn run<B: Backend>(
        &self,
        op: &'static str,
        tensor: Tensor<B, 1>,
        combine: impl FnOnce(Vec<TensorData>) -> std::result::Result<Vec<TensorData>, String>,
    ) -> Result<Tensor<B, 1>> {
        let device = tensor.device();
        let dtype = tensor.dtype();
        let out = self.exchange(op, tensor.into_data(), combine)?;
        Ok(Tensor::from_data(
            out.convert_dtype(dtype),
            TensorCreationOptions::new(device).with_dtype(dtype),
        ))
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abort(format!("rank {} panicked", self.rank));
        } else {
            self.abort(format!("rank {} left the group", self.rank));
        }
    }
}

/// The values of `data` as `f32`.
fn floats(data: TensorData) -> std::result::Result<Vec<f32>, String> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// The elementwise sum of equally long contributions, in rank order.
fn sum(inputs: Vec<TensorData>) -> std::result::Result<Vec<f32>, String> {
    let mut total: Option<Vec<f32>> = None;
    for (rank, data) in inputs.into_iter().enumerate() {
        let values = floats(data)?;
        match &mut total {
            None => total = Some(values),
            Some(t) if t.len() == values.len() => {
                t.iter_mut().zip(&values).for_each(|(a, b)| *a += b);
            }
            Some(t) => {
                return Err(format!(
                    "rank {rank} contributed {} elements, rank 0 {}",
                    values.len(),
                    t.len()
                ));
            }
        }
    }
    Ok(total.unwrap_or_default())
}

fn f32_data(values: Vec<f32>) -> TensorData {
    let n = values.len();
    TensorData::new(values, [n])
}

impl<B: Backend> Collective<B> for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.shared.world
    }

    fn all_reduce(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let world = self.shared.world;
        self.run("all_reduce", tensor, |inputs| {
            let total = f32_data(sum(inputs)?);
            Ok(vec![total; world])
        })
    }

    fn reduce_scatter(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let world = self.shared.world;
        self.run("reduce_scatter", tensor, |inputs| {
            let total = sum(inputs)?;
            if !total.len().is_multiple_of(world) {
                return Err(format!(
                    "{} elements do not split into {world} equal parts",
                    total.len()
                ));
            }
            let part = total.len() / world;
            if part == 0 {
                return Ok(vec![f32_data(Vec::new()); world]);
            }
            Ok(total.chunks(part).map(|c| f32_data(c.to_vec())).collect())
        })
    }

    fn all_gather(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let world = self.shared.world;
        self.run("all_gather", tensor, |inputs| {
            let dtype: DType = inputs[0].dtype;
            let mut bytes = Vec::new();
            let mut n = 0;
            for (rank, data) in inputs.into_iter().enumerate() {
                if data.dtype != dtype {
                    return Err(format!(
                        "rank {rank} gathers {:?}, rank 0 {dtype:?}",
                        data.dtype
                    ));
                }
                n += data.num_elements();
                bytes.extend_from_slice(data.as_bytes());
            }
            Ok(vec![TensorData::from_bytes_vec(bytes, [n], dtype); world])
        })
    }

    fn broadcast(&self, tensor: Tensor<B, 1>, root: usize) -> Result<Tensor<B, 1>> {
        let world = self.shared.world;
        if root >= world {
            return Err(self.failed("broadcast", &format!("root {root} is not a rank")));
        }
        self.run("broadcast", tensor, |mut inputs| {
            let data = inputs.swap_remove(root);
            Ok(vec![data; world])
        })
    }

    fn barrier(&self) -> Result<()> {
        self.exchange("barrier", TensorData::new(Vec::<f32>::new(), [0]), Ok)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuInner;

    type B = CpuInner;

    /// Run `f` on `world` thread ranks and collect their results in rank order.
    fn on_ranks<T: Send>(world: usize, f: impl Fn(ThreadGroup) -> T + Sync) -> Vec<T> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = ThreadGroup::new(world)
                .into_iter()
                .map(|group| scope.spawn(|| f(group)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn values(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn operations_combine_in_rank_order() {
        let out = on_ranks(3, |g| {
            let device = Default::default();
            let r = Collective::<B>::rank(&g) as f32;
            let own = |v: Vec<f32>| Tensor::<B, 1>::from_floats(v.as_slice(), &device);
            let reduced = values(g.all_reduce(own(vec![r, 1.0])).unwrap());
            let scattered = values(g.reduce_scatter(own(vec![r, 10.0 * r, 100.0 * r])).unwrap());
            let gathered = values(g.all_gather(own(vec![r, -r])).unwrap());
            let broadcast = values(g.broadcast(own(vec![r]), 2).unwrap());
            Collective::<B>::barrier(&g).unwrap();
            (reduced, scattered, gathered, broadcast)
        });
        for (rank, (reduced, scattered, gathered, broadcast)) in out.into_iter().enumerate() {
            assert_eq!(reduced, vec![3.0, 3.0]);
            assert_eq!(scattered, vec![3.0 * 10f32.powi(rank as i32)]);
            assert_eq!(gathered, vec![0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
            assert_eq!(broadcast, vec![2.0]);
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_instead_of_hanging() {
        let out = on_ranks(3, |g| {
            let device = Default::default();
            if Collective::<B>::rank(&g) == 1 {
                drop(g);
                return None;
            }
            let t = Tensor::<B, 1>::from_floats([1.0], &device);
            Some(g.all_reduce(t).unwrap_err().to_string())
        });
        for message in [&out[0], &out[2]] {
            let message = message.as_ref().unwrap();
            assert!(message.contains("rank 1 left the group"), "{message}");
        }
    }

    #[test]
    fn mismatched_operations_and_sizes_are_errors() {
        let out = on_ranks(2, |g| {
            let device = Default::default();
            let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
            if Collective::<B>::rank(&g) == 0 {
                g.all_reduce(t).map(|_| ())
            } else {
                g.all_gather(t).map(|_| ())
            }
        });
        let message = out[0].as_ref().unwrap_err().to_string();
        assert!(message.contains("disagree"), "{message}");
        let out = on_ranks(2, |g| {
            let device = Default::default();
            let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
            g.reduce_scatter(t).map(|_| ())
        });
        let message = out[1].as_ref().unwrap_err().to_string();
        assert!(message.contains("equal parts"), "{message}");
    }
}
