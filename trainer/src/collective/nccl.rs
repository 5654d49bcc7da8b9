//! NCCL through cudarc, on the device memory of burn's CUDA tensors (feature `cuda`).
//!
//! cubecl does not expose the CUDA stream its kernels run on, so every operation is
//! ordered by a host fence rather than on the device:
//!
//! 1. the output is allocated and both buffers are resolved to device pointers
//!    (`ComputeClient::get_resource`, which keeps them from being recycled);
//! 2. `Backend::sync` waits for every kernel this thread queued, the producer included;
//! 3. the NCCL call runs on this collective's own stream, in cubecl's (primary) context;
//! 4. that stream is synchronised before the tensors are handed back to burn.
//!
//! No data crosses the host; the cost is one host round-trip per call, a few per step for
//! ZeRO-1. Every rank must issue its calls from one thread (the training thread), so
//! that all the tensors involved live on one cubecl stream.

use super::Collective;
use crate::backend::CudaInner;
use crate::{Error, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::cubecl::cuda::{CudaDevice, CudaRuntime};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{result as nccl, sys};
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// Bytes of an NCCL unique id (what the rendezvous hands out).
pub const ID_BYTES: usize = 128;

/// A new NCCL unique id, for rank 0 to hand to the others.
pub fn unique_id() -> Result<Vec<u8>> {
    let id = nccl::get_uniqueid().map_err(|e| failed("ncclGetUniqueId", 0, e))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// An NCCL error as a [`Error::Collective`], with NCCL's own description.
fn failed(op: &'static str, rank: usize, e: nccl::NcclError) -> Error {
    // SAFETY: NCCL returns a static NUL-terminated string for every result code.
    let text = unsafe { std::ffi::CStr::from_ptr(sys::ncclGetErrorString(e.0)) };
    Error::Collective {
        op,
        rank,
        message: format!("NCCL {:?}: {}", e.0, text.to_string_lossy()),
    }
}

fn driver(op: &'static str, rank: usize, e: cudarc::driver::DriverError) -> Error {
    Error::Collective {
        op,
        rank,
        message: format!("CUDA driver: {e:?}"),
    }
}

/// The raw communicator handle; NCCL allows its use from any one thread at a time.
struct Comm(sys::ncclComm_t);

// SAFETY: the handle is only used under the collective's mutex.
unsafe impl Send for Comm {}

/// One rank of an NCCL communicator.
pub struct NcclCollective {
    comm: Mutex<Comm>,
    device: CudaDevice,
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    rank: usize,
    world: usize,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish()
    }
}

impl NcclCollective {
    /// Join the communicator `id` (from [`unique_id`] on rank 0, handed out by
    /// [`super::launch::rendezvous`]) as `rank` of `world`, on GPU `ordinal`.
    pub fn new(ordinal: usize, rank: usize, world: usize, id: &[u8]) -> Result<Self> {
        let id: [u8; ID_BYTES] = id.try_into().map_err(|_| Error::Collective {
            op: "ncclCommInitRank",
            rank,
            message: format!("an NCCL id has {ID_BYTES} bytes, got {}", id.len()),
        })?;
        let context = CudaContext::new(ordinal).map_err(|e| driver("cuCtxCreate", rank, e))?;
        let stream = context
            .new_stream()
            .map_err(|e| driver("cuStreamCreate", rank, e))?;
        let unique = sys::ncclUniqueId {
            internal: id.map(|b| b as std::ffi::c_char),
        };
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; the id came from `ncclGetUniqueId`.
        unsafe { nccl::comm_init_rank(&mut comm, world as i32, unique, rank as i32) }
            .map_err(|e| failed("ncclCommInitRank", rank, e))?;
        Ok(Self {
            comm: Mutex::new(Comm(comm)),
            device: CudaDevice::new(ordinal),
            context,
            stream,
            rank,
            world,
        })
    }

    /// Run `call(send, recv, dtype, comm, stream)` with `input`'s buffer as `send` and a
    /// new `[out_len]` tensor of the same dtype as `recv`, fenced as the module docs say.
    fn run(
        &self,
        op: &'static str,
        input: Tensor<CudaInner, 1>,
        out_len: usize,
        call: impl FnOnce(
            *const c_void,
            *mut c_void,
            sys::ncclDataType_t,
            sys::ncclComm_t,
            sys::cudaStream_t,
        ) -> std::result::Result<nccl::NcclStatus, nccl::NcclError>,
    ) -> Result<Tensor<CudaInner, 1>> {
        let send: CubeTensor<CudaRuntime> =
            burn_cubecl::kernel::into_contiguous(input.into_primitive().tensor());
        let dtype = match send.dtype {
            DType::F32 => sys::ncclDataType_t::ncclFloat32,
            DType::BF16 => sys::ncclDataType_t::ncclBfloat16,
            DType::F16 => sys::ncclDataType_t::ncclFloat16,
            other => {
                return Err(Error::Collective {
                    op,
                    rank: self.rank,
                    message: format!("no NCCL type for {other:?}"),
                });
            }
        };
        let out = empty_device_contiguous_dtype(
            send.client.clone(),
            send.device.clone(),
            Shape::new([out_len]),
            send.dtype,
        );
        let server = |e: burn_cubecl::cubecl::server::ServerError| Error::Collective {
            op,
            rank: self.rank,
            message: format!("cubecl: {e:?}"),
        };
        let sent = send
            .client
            .get_resource(send.handle.clone())
            .map_err(server)?;
        let received = out
            .client
            .get_resource(out.handle.clone())
            .map_err(server)?;
        CudaInner::sync(&send.device).map_err(|e| Error::Collective {
            op,
            rank: self.rank,
            message: format!("waiting for the producing kernels: {e:?}"),
        })?;
        self.context
            .bind_to_thread()
            .map_err(|e| driver(op, self.rank, e))?;
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        call(
            sent.resource().ptr as *const c_void,
            received.resource().ptr as *mut c_void,
            dtype,
            comm.0,
            self.stream.cu_stream() as sys::cudaStream_t,
        )
        .map_err(|e| failed(op, self.rank, e))?;
        self.stream
            .synchronize()
            .map_err(|e| driver(op, self.rank, e))?;
        drop((sent, received, send));
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        let comm = self.comm.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the communicator was created by `comm_init_rank` and is not used again.
        // A failure to destroy it at exit is not worth a panic.
        let _ = unsafe { nccl::comm_destroy(comm.0) };
    }
}

impl Collective<CudaInner> for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce(&self, tensor: Tensor<CudaInner, 1>) -> Result<Tensor<CudaInner, 1>> {
        let n = tensor.dims()[0];
        self.run(
            "ncclAllReduce",
            tensor,
            n,
            |send, recv, dtype, comm, stream| {
                // SAFETY: both buffers hold `n` elements of `dtype` and stay alive until the
                // stream is synchronised.
                unsafe {
                    nccl::all_reduce(
                        send,
                        recv,
                        n,
                        dtype,
                        sys::ncclRedOp_t::ncclSum,
                        comm,
                        stream,
                    )
                }
            },
        )
    }

    fn reduce_scatter(&self, tensor: Tensor<CudaInner, 1>) -> Result<Tensor<CudaInner, 1>> {
        let n = tensor.dims()[0];
        if !n.is_multiple_of(self.world) {
            return Err(Error::Collective {
                op: "ncclReduceScatter",
                rank: self.rank,
                message: format!("{n} elements do not split into {} equal parts", self.world),
            });
        }
        let part = n / self.world;
        self.run(
            "ncclReduceScatter",
            tensor,
            part,
            |send, recv, dtype, comm, stream| {
                // SAFETY: `send` holds `world · part` elements, `recv` `part`.
                unsafe {
                    nccl::reduce_scatter(
                        send,
                        recv,
                        part,
                        dtype,
                        sys::ncclRedOp_t::ncclSum,
                        comm,
                        stream,
                    )
                }
            },
        )
    }

    fn all_gather(&self, tensor: Tensor<CudaInner, 1>) -> Result<Tensor<CudaInner, 1>> {
        let part = tensor.dims()[0];
        self.run(
            "ncclAllGather",
            tensor,
            part * self.world,
            |send, recv, dtype, comm, stream| {
                // SAFETY: `send` holds `part` elements, `recv` `world · part`.
                unsafe { nccl::all_gather(send, recv, part, dtype, comm, stream) }
            },
        )
    }

    fn broadcast(&self, tensor: Tensor<CudaInner, 1>, root: usize) -> Result<Tensor<CudaInner, 1>> {
        let n = tensor.dims()[0];
        self.run(
            "ncclBroadcast",
            tensor,
            n,
            |send, recv, dtype, comm, stream| {
                // SAFETY: both buffers hold `n` elements.
                unsafe { nccl::broadcast(send, recv, n, dtype, root as i32, comm, stream) }
            },
        )
    }

    fn barrier(&self) -> Result<()> {
        self.all_reduce(Tensor::<CudaInner, 1>::zeros([1], &self.device))
            .map(|_| ())
    }
}
