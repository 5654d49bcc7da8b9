//! An ordered worker pool: N threads produce items numbered 0, 1, 2, … and the consumer
//! receives them in that order, through bounded lock-free queues, with back-pressure
//! and wait times measured on both sides.
//!
//! Worker `w` produces items `w, w + N, w + 2N, …` into its own bounded crossbeam
//! channel; the consumer takes item `k` from channel `k mod N`. Order needs no reorder
//! buffer, and a worker at most `capacity` items ahead of the consumer blocks (that
//! blocked time is measured). Consumed items can be handed back ([`OrderedPool::recycle`])
//! so that workers refill them instead of allocating.
//!
//! Shutdown: dropping the pool stops and joins the workers. A worker's error is
//! delivered in order as an `Err` and ends that worker; a worker that panics is delivered
//! the same way, as [`Error::WorkerPanicked`] with its message (`worker.rs`), never
//! as a hang.

use crate::worker::report_panic;
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Counters of a pool, read with [`OrderedPool::metrics`].
#[derive(Debug, Default)]
struct Counters {
    produce_ns: AtomicU64,
    producer_blocked_ns: AtomicU64,
}

/// What the queue measured so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct QueueMetrics {
    /// Items delivered to the consumer.
    pub delivered: u64,
    /// Time the consumer waited for the next item.
    pub consumer_wait_ns: u64,
    /// Time producers spent building items, summed over workers.
    pub produce_ns: u64,
    /// Time producers were blocked on a full queue, summed over workers.
    pub producer_blocked_ns: u64,
    /// Mean number of items ready in the queues when the consumer asked.
    pub mean_depth: f64,
    /// Largest number of items ready when the consumer asked.
    pub max_depth: u64,
}

/// See the module docs.
pub struct OrderedPool<T> {
    queues: Vec<Receiver<Result<T>>>,
    next: u64,
    stop: Arc<AtomicBool>,
    spare: Arc<ArrayQueue<T>>,
    counters: Arc<Counters>,
    handles: Vec<JoinHandle<()>>,
    consumer_wait_ns: u64,
    depth_sum: u64,
    max_depth: u64,
    failed: bool,
}

impl<T: Send + 'static> OrderedPool<T> {
    /// Start `workers` threads that call `produce(k, spare)` for their items `k`,
    /// where `spare` is a recycled item to refill, if one is available. At most about
    /// `depth` items wait in the queues.
    pub fn start<F>(workers: usize, depth: usize, produce: F) -> Self
    where
        F: Fn(u64, Option<T>) -> Result<T> + Send + Sync + 'static,
    {
        let workers = workers.max(1);
        let capacity = depth.div_ceil(workers).max(1);
        let produce = Arc::new(produce);
        let stop = Arc::new(AtomicBool::new(false));
        let spare = Arc::new(ArrayQueue::new(depth + 2 * workers));
        let counters = Arc::new(Counters::default());
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(capacity);
            queues.push(rx);
            let (produce, stop, spare, counters) = (
                produce.clone(),
                stop.clone(),
                spare.clone(),
                counters.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("cocolm-loader-{w}"))
                .spawn(move || {
                    report_panic(&tx, || {
                        work(
                            w as u64,
                            workers as u64,
                            &tx,
                            &*produce,
                            &stop,
                            &spare,
                            &counters,
                        )
                    })
                })
                .expect("spawning a loader thread");
            handles.push(handle);
        }
        OrderedPool {
            queues,
            next: 0,
            stop,
            spare,
            counters,
            handles,
            consumer_wait_ns: 0,
            depth_sum: 0,
            max_depth: 0,
            failed: false,
        }
    }

    /// The next item in order. After an error, every later call fails too.
    pub fn next_item(&mut self) -> Result<T> {
        if self.failed {
            return Err(Error::LoaderStopped);
        }
        let depth = self.ready();
        self.depth_sum += depth as u64;
        self.max_depth = self.max_depth.max(depth as u64);
        let queue = &self.queues[(self.next % self.queues.len() as u64) as usize];
        let start = Instant::now();
        let received = queue.recv();
        self.consumer_wait_ns += start.elapsed().as_nanos() as u64;
        self.next += 1;
        let item = received.unwrap_or(Err(Error::WorkersEnded { stage: "loader" }));
        self.failed = item.is_err();
        item
    }

    /// Items ready in the queues now.
    pub fn ready(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    /// Hand a consumed item back for reuse.
    pub fn recycle(&self, item: T) {
        let _ = self.spare.push(item);
    }

    /// The measurements so far.
    pub fn metrics(&self) -> QueueMetrics {
        QueueMetrics {
            delivered: self.next,
            consumer_wait_ns: self.consumer_wait_ns,
            produce_ns: self.counters.produce_ns.load(Ordering::Relaxed),
            producer_blocked_ns: self.counters.producer_blocked_ns.load(Ordering::Relaxed),
            mean_depth: self.depth_sum as f64 / self.next.max(1) as f64,
            max_depth: self.max_depth,
        }
    }
}

fn work<T>(
    first: u64,
    step: u64,
    tx: &Sender<Result<T>>,
    produce: &(dyn Fn(u64, Option<T>) -> Result<T> + Send + Sync),
    stop: &AtomicBool,
    spare: &ArrayQueue<T>,
    counters: &Counters,
) {
    let mut k = first;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let item = produce(k, spare.pop());
        counters
            .produce_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let failed = item.is_err();
        let start = Instant::now();
        if tx.send(item).is_err() || failed {
            return;
        }
        counters
            .producer_blocked_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        k += step;
    }
}

impl<T> Drop for OrderedPool<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queues.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn delivers_in_order_with_any_worker_count() {
        for workers in [1, 2, 3, 7] {
            let mut pool = OrderedPool::start(workers, 4, |k, _| {
                // Uneven work so that workers finish out of order.
                std::thread::sleep(Duration::from_micros((k * 37 % 5) * 200));
                Ok(k)
            });
            let got: Vec<u64> = (0..40).map(|_| pool.next_item().unwrap()).collect();
            assert_eq!(got, (0..40).collect::<Vec<_>>());
            assert_eq!(pool.metrics().delivered, 40);
        }
    }

    #[test]
    fn worker_error_reaches_the_consumer_in_order() {
        let mut pool = OrderedPool::start(3, 6, |k, _| {
            if k == 5 {
                Err(Error::shard(format!("shard-{k}"), format!("bad item {k}")))
            } else {
                Ok(k)
            }
        });
        for k in 0..5 {
            assert_eq!(pool.next_item().unwrap(), k);
        }
        assert!(
            pool.next_item()
                .unwrap_err()
                .to_string()
                .contains("bad item 5")
        );
        assert!(matches!(pool.next_item(), Err(Error::LoaderStopped)));
    }

    #[test]
    fn panicking_worker_is_an_error_not_a_hang() {
        let mut pool = OrderedPool::start(2, 2, |k, _| {
            assert!(k != 1, "boom");
            Ok(k)
        });
        assert_eq!(pool.next_item().unwrap(), 0);
        match pool.next_item() {
            Err(Error::WorkerPanicked { thread, message }) => {
                assert_eq!(thread, "cocolm-loader-1");
                assert!(message.contains("boom"), "{message}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(matches!(pool.next_item(), Err(Error::LoaderStopped)));
    }

    #[test]
    fn dropping_the_consumer_stops_blocked_workers() {
        let pool = OrderedPool::start(4, 4, |k, _| Ok(vec![k; 10]));
        std::thread::sleep(Duration::from_millis(20));
        drop(pool); // joins: would hang if a worker stayed blocked on a full queue
    }

    #[test]
    fn recycled_items_are_reused() {
        let mut pool = OrderedPool::start(1, 1, |k, spare: Option<Vec<u64>>| {
            let mut v = spare.unwrap_or_default();
            v.clear();
            v.push(k);
            Ok(v)
        });
        let first = pool.next_item().unwrap();
        let ptr = first.as_ptr();
        pool.recycle(first);
        // Within a few items the worker picks the recycled buffer up again.
        let reused = (0..4).any(|_| {
            let v = pool.next_item().unwrap();
            let same = v.as_ptr() == ptr;
            pool.recycle(v);
            same
        });
        assert!(reused);
    }
}
