//! How a process learns its place in a data-parallel run, and meets the others.
//!
//! One process per GPU, launched the way clusters already launch them:
//!
//! - `torchrun`-style variables: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//!   `MASTER_PORT`;
//! - Slurm's (`srun`): `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, and the first host
//!   of the step's node list (`SLURM_STEP_NODELIST`, else `SLURM_JOB_NODELIST`) as the
//!   rendezvous host unless `MASTER_ADDR` is set; `MASTER_PORT` or [`DEFAULT_PORT`].
//!
//! [`rendezvous`] then hands rank 0's payload (the NCCL unique id) to every rank over TCP
//! at `MASTER_ADDR:MASTER_PORT`; NCCL does the rest, across nodes too. Only those bytes
//! cross this connection, never tensors. Under `torchrun` (which sets
//! `TORCHELASTIC_RUN_ID`) its agent already listens on `MASTER_PORT`, so the rendezvous
//! takes the next port; `COCOLM_RENDEZVOUS_PORT` overrides either.

use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The rendezvous port when neither the environment nor the caller gives one.
pub const DEFAULT_PORT: u16 = 29500;

/// Bytes every rendezvous message starts with (protocol name and version).
const MAGIC: &[u8; 8] = b"COCOLMv1";

/// Where the launch variables came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// None set: one process.
    Single,
    /// `RANK` / `WORLD_SIZE` (torchrun, or set by hand).
    Torchrun,
    /// `SLURM_PROCID` / `SLURM_NTASKS` (srun).
    Slurm,
}

/// This process's place in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank, `0..world`.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Rank on this machine: the GPU ordinal it uses.
    pub local_rank: usize,
    /// Host of the rendezvous (rank 0's machine).
    pub master_addr: String,
    /// Port of the rendezvous.
    pub master_port: u16,
    /// Where the variables came from.
    pub launcher: Launcher,
}

impl Launch {
    /// A single process.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: DEFAULT_PORT,
            launcher: Launcher::Single,
        }
    }

    /// The launch described by the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The launch described by the variables `var` returns (torchrun's first, then
    /// Slurm's; none set is a single process).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| Error::Launch {
                    variable: name.to_string(),
                    message: format!("`{v}` is not a non-negative integer"),
                }),
            }
        };
        let parse_port = |name: &str, v: String| -> Result<u16> {
            v.trim().parse().map_err(|_| Error::Launch {
                variable: name.to_string(),
                message: format!("`{v}` is not a port number"),
            })
        };
        let port = || -> Result<u16> {
            if let Some(v) = var("COCOLM_RENDEZVOUS_PORT") {
                return parse_port("COCOLM_RENDEZVOUS_PORT", v);
            }
            match var("MASTER_PORT") {
                None => Ok(DEFAULT_PORT),
                Some(v) => {
                    let port = parse_port("MASTER_PORT", v)?;
                    match var("TORCHELASTIC_RUN_ID") {
                        // torchrun's agent serves its own store on MASTER_PORT.
                        Some(_) => port.checked_add(1).ok_or_else(|| Error::Launch {
                            variable: "MASTER_PORT".into(),
                            message: "no port after it for the rendezvous".into(),
                        }),
                        None => Ok(port),
                    }
                }
            }
        };
        let (launcher, rank, world, local_rank, addr) = if let Some(world) = number("WORLD_SIZE")? {
            let rank = number("RANK")?.ok_or_else(|| Error::Launch {
                variable: "RANK".into(),
                message: "WORLD_SIZE is set but RANK is not".into(),
            })?;
            let local = number("LOCAL_RANK")?.unwrap_or(0);
            (Launcher::Torchrun, rank, world, local, var("MASTER_ADDR"))
        } else if let Some(world) = number("SLURM_NTASKS")? {
            let rank = number("SLURM_PROCID")?.ok_or_else(|| Error::Launch {
                variable: "SLURM_PROCID".into(),
                message: "SLURM_NTASKS is set but SLURM_PROCID is not".into(),
            })?;
            let local = number("SLURM_LOCALID")?.unwrap_or(0);
            let first_host = [
                "SLURM_STEP_NODELIST",
                "SLURM_JOB_NODELIST",
                "SLURM_NODELIST",
            ]
            .iter()
            .find_map(|name| var(name).map(|list| (name, list)))
            .map(|(name, list)| {
                first_host(&list).ok_or_else(|| Error::Launch {
                    variable: name.to_string(),
                    message: format!("cannot read a host name from `{list}`"),
                })
            })
            .transpose()?;
            (
                Launcher::Slurm,
                rank,
                world,
                local,
                var("MASTER_ADDR").or(first_host),
            )
        } else {
            return Ok(Self::single());
        };
        if world == 0 || rank >= world {
            return Err(Error::Launch {
                variable: if launcher == Launcher::Slurm {
                    "SLURM_PROCID"
                } else {
                    "RANK"
                }
                .into(),
                message: format!("rank {rank} is not below the world size {world}"),
            });
        }
        let master_addr = match addr {
            Some(a) => a,
            None if world == 1 => "127.0.0.1".into(),
            None => {
                return Err(Error::Launch {
                    variable: "MASTER_ADDR".into(),
                    message: format!("{world} processes need a rendezvous host (rank 0's machine)"),
                });
            }
        };
        Ok(Self {
            rank,
            world,
            local_rank,
            master_addr,
            master_port: port()?,
            launcher,
        })
    }
}

/// The first host of a Slurm node list (`gpu[01-04,07],login2` → `gpu01`): the first
/// top-level entry, each bracket group replaced by its first element.
pub fn first_host(list: &str) -> Option<String> {
    let mut depth = 0usize;
    let end = list
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c == ',' && depth == 0
        })
        .map_or(list.len(), |(i, _)| i);
    let entry = list[..end].trim();
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        host.push_str(&rest[..open]);
        let close = rest[open..].find(']')? + open;
        let group = &rest[open + 1..close];
        let first = group.split(',').next()?.split('-').next()?.trim();
        if first.is_empty() {
            return None;
        }
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    (!host.is_empty()).then_some(host)
}

fn io_error(address: &str, message: impl std::fmt::Display) -> Error {
    Error::Rendezvous {
        address: address.to_string(),
        message: message.to_string(),
    }
}

/// Hand rank 0's `payload()` to every rank: rank 0 listens at `master_port` (on all
/// interfaces), the others connect to `master_addr:master_port`, retrying until
/// `timeout`. Every rank returns the same bytes. A single process returns its own
/// payload without opening a socket.
pub fn rendezvous(
    launch: &Launch,
    payload: impl FnOnce() -> Result<Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<u8>> {
    if launch.world == 1 {
        return payload();
    }
    let address = format!("{}:{}", launch.master_addr, launch.master_port);
    if launch.rank == 0 {
        serve(launch, &address, payload()?, timeout)
    } else {
        join(launch, &address, timeout)
    }
}

fn serve(launch: &Launch, address: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
    let listener = TcpListener::bind(("0.0.0.0", launch.master_port))
        .map_err(|e| io_error(address, format!("rank 0 cannot listen: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error(address, e))?;
    let deadline = Instant::now() + timeout;
    let mut peers: Vec<Option<TcpStream>> = (0..launch.world).map(|_| None).collect();
    while peers.iter().skip(1).any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(30))))
                    .map_err(|e| io_error(address, e))?;
                let mut hello = [0u8; 16];
                stream
                    .read_exact(&mut hello)
                    .map_err(|e| io_error(address, format!("reading from {from}: {e}")))?;
                let (rank, world) = (word(&hello[8..12]), word(&hello[12..16]));
                let problem = if &hello[..8] != MAGIC {
                    Some(format!("{from} does not speak this rendezvous protocol"))
                } else if world != launch.world {
                    Some(format!(
                        "{from} says the world has {world} ranks, rank 0 says {}",
                        launch.world
                    ))
                } else if rank == 0 || rank >= world {
                    Some(format!("{from} claims rank {rank}"))
                } else if peers[rank].is_some() {
                    Some(format!(
                        "rank {rank} connected twice (the second from {from})"
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    let _ = stream.write_all(&reply(false, problem.as_bytes()));
                    return Err(io_error(address, problem));
                }
                peers[rank] = Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> =
                        (1..launch.world).filter(|&r| peers[r].is_none()).collect();
                    return Err(io_error(
                        address,
                        format!("rank 0 waited {timeout:?}; ranks {missing:?} never connected"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_error(address, e)),
        }
    }
    let message = reply(true, &payload);
    for (rank, stream) in peers.iter_mut().enumerate().skip(1) {
        let stream = stream.as_mut().expect("every rank connected");
        stream
            .write_all(&message)
            .map_err(|e| io_error(address, format!("sending to rank {rank}: {e}")))?;
    }
    Ok(payload)
}

fn join(launch: &Launch, address: &str, timeout: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = loop {
        let attempt = address
            .to_socket_addrs()
            .map_err(|e| io_error(address, format!("cannot resolve: {e}")))?
            .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).ok());
        match attempt {
            Some(s) => break s,
            None if Instant::now() > deadline => {
                return Err(io_error(
                    address,
                    format!(
                        "rank {} found nobody listening for {timeout:?} (is rank 0 running?)",
                        launch.rank
                    ),
                ));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    stream
        .set_read_timeout(Some(remaining))
        .map_err(|e| io_error(address, e))?;
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&(launch.rank as u32).to_le_bytes());
    hello.extend_from_slice(&(launch.world as u32).to_le_bytes());
    stream.write_all(&hello).map_err(|e| io_error(address, e))?;
    let mut head = [0u8; 13];
    stream
        .read_exact(&mut head)
        .map_err(|e| io_error(address, format!("waiting for rank 0's answer: {e}")))?;
    if &head[..8] != MAGIC {
        return Err(io_error(
            address,
            "the answer does not speak this rendezvous protocol",
        ));
    }
    let mut body = vec![0u8; word(&head[9..13])];
    stream
        .read_exact(&mut body)
        .map_err(|e| io_error(address, e))?;
    if head[8] != 1 {
        return Err(io_error(
            address,
            format!("rank 0 refused: {}", String::from_utf8_lossy(&body)),
        ));
    }
    Ok(body)
}

/// An answer of rank 0: magic, ok flag, length, body.
fn reply(ok: bool, body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(u8::from(ok));
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn word(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes.try_into().expect("four bytes")) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let l = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(
            (
                l.rank,
                l.world,
                l.local_rank,
                l.master_addr.as_str(),
                l.master_port,
                l.launcher
            ),
            (3, 8, 1, "node7", 1234, Launcher::Torchrun)
        );
        assert_eq!(launch(&[]).unwrap(), Launch::single());
        let err = launch(&[("RANK", "8"), ("WORLD_SIZE", "8"), ("MASTER_ADDR", "a")]).unwrap_err();
        assert!(err.to_string().contains("RANK"), "{err}");
        let err = launch(&[("RANK", "1"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(err.to_string().contains("MASTER_ADDR"), "{err}");
        let err = launch(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(err.to_string().contains("RANK"), "{err}");
        let err = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "a"),
            ("MASTER_PORT", "99999"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("MASTER_PORT"), "{err}");
        // Under torchrun its agent holds MASTER_PORT; an explicit port wins over both.
        let torchrun = [
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "a"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_RUN_ID", "job"),
        ];
        assert_eq!(launch(&torchrun).unwrap().master_port, 29501);
        let mut explicit = torchrun.to_vec();
        explicit.push(("COCOLM_RENDEZVOUS_PORT", "4000"));
        assert_eq!(launch(&explicit).unwrap().master_port, 4000);
    }

    #[test]
    fn slurm_variables() {
        let l = launch(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_LOCALID", "5"),
            ("SLURM_JOB_NODELIST", "gpu[07-08,11]"),
        ])
        .unwrap();
        assert_eq!(
            (
                l.rank,
                l.world,
                l.local_rank,
                l.master_addr.as_str(),
                l.master_port,
                l.launcher
            ),
            (5, 16, 5, "gpu07", DEFAULT_PORT, Launcher::Slurm)
        );
        // The step's node list wins over the job's, MASTER_ADDR over both.
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_NODELIST", "a[3-4]"),
            ("SLURM_JOB_NODELIST", "a[1-4]"),
        ])
        .unwrap();
        assert_eq!(l.master_addr, "a3");
        let l = launch(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "a[1-4]"),
            ("MASTER_ADDR", "head"),
        ])
        .unwrap();
        assert_eq!(l.master_addr, "head");
        // torchrun's variables win over Slurm's (torchrun inside an allocation).
        let l = launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
        ])
        .unwrap();
        assert_eq!((l.world, l.launcher), (1, Launcher::Torchrun));
    }

    #[test]
    fn first_hosts_of_node_lists() {
        for (list, host) in [
            ("node1", "node1"),
            ("gpu[01-04,07],login2", "gpu01"),
            ("gpu[007,009-010]", "gpu007"),
            ("login2,gpu[1-2]", "login2"),
            ("rack[1-2]-node[3-4]", "rack1-node3"),
            (" a[9] ", "a9"),
        ] {
            assert_eq!(first_host(list).as_deref(), Some(host), "{list}");
        }
        for bad in ["", "[]", "gpu[01-04"] {
            assert_eq!(first_host(bad), None, "{bad}");
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn ranks(world: usize, port: u16) -> Vec<Launch> {
        (0..world)
            .map(|rank| Launch {
                rank,
                world,
                local_rank: rank,
                master_addr: "127.0.0.1".into(),
                master_port: port,
                launcher: Launcher::Torchrun,
            })
            .collect()
    }

    #[test]
    fn every_rank_receives_rank_0s_payload() {
        let port = free_port();
        let got: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranks(3, port)
                .into_iter()
                .map(|l| {
                    scope.spawn(move || {
                        rendezvous(&l, || Ok(vec![7u8; 128]), Duration::from_secs(20)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|p| p == &vec![7u8; 128]));
    }

    #[test]
    fn a_missing_rank_times_out_with_its_number() {
        let port = free_port();
        let err = rendezvous(
            &ranks(2, port)[0],
            || Ok(vec![1]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ranks [1] never connected"),
            "{err}"
        );
        let err = rendezvous(
            &ranks(2, free_port())[1],
            || Ok(vec![1]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is rank 0 running"), "{err}");
    }

    #[test]
    fn a_rank_with_another_world_size_is_refused() {
        let port = free_port();
        let mut stranger = ranks(3, port)[1].clone();
        let results = std::thread::scope(|scope| {
            let server = scope
                .spawn(|| rendezvous(&ranks(2, port)[0], || Ok(vec![1]), Duration::from_secs(20)));
            stranger.world = 3;
            let client = rendezvous(&stranger, || Ok(vec![]), Duration::from_secs(20));
            (server.join().unwrap(), client)
        });
        let (server, client) = results;
        assert!(server.unwrap_err().to_string().contains("3 ranks"));
        assert!(client.unwrap_err().to_string().contains("refused"));
    }
}
