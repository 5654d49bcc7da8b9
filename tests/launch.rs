//! `cocolm launch check`: two processes on loopback meet at the rendezvous, launched with
//! torchrun's variables and with Slurm's.

use crate::util::cocolm;
use std::net::TcpListener;
use std::process::Output;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The command without any launch variable of the environment the tests run in.
fn clean(mut command: std::process::Command) -> std::process::Command {
    for var in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
        "SLURM_STEP_NODELIST",
        "SLURM_JOB_NODELIST",
        "SLURM_NODELIST",
    ] {
        command.env_remove(var);
    }
    command
}

/// Run `cocolm launch check` as each rank of `ranks` (its environment), concurrently.
fn launch(ranks: Vec<Vec<(&'static str, String)>>) -> Vec<Output> {
    let children: Vec<_> = ranks
        .into_iter()
        .map(|vars| {
            clean(cocolm())
                .args(["launch", "check", "--timeout", "60"])
                .envs(vars)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// The token line of every rank, asserting success.
fn tokens(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| {
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(
                o.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let line = stdout
                .lines()
                .find(|l| l.contains("received token"))
                .unwrap_or_else(|| panic!("no token line in {stdout}"))
                .to_string();
            line.rsplit(' ').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn two_processes_meet_with_torchrun_variables() {
    let port = free_port().to_string();
    let rank = |r: usize| {
        vec![
            ("RANK", r.to_string()),
            ("WORLD_SIZE", "2".to_string()),
            ("LOCAL_RANK", r.to_string()),
            ("MASTER_ADDR", "127.0.0.1".to_string()),
            ("MASTER_PORT", port.clone()),
        ]
    };
    let outputs = launch(vec![rank(1), rank(0)]);
    let tokens = tokens(&outputs);
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[0].len(), 16);
    let first = String::from_utf8_lossy(&outputs[0].stdout).into_owned();
    assert!(
        first.contains("rank 1 of 2 (local rank 1, from Torchrun"),
        "{first}"
    );
}

#[test]
fn two_processes_meet_with_slurm_variables() {
    let port = free_port().to_string();
    let rank = |r: usize| {
        vec![
            ("SLURM_PROCID", r.to_string()),
            ("SLURM_NTASKS", "2".to_string()),
            ("SLURM_LOCALID", r.to_string()),
            ("SLURM_JOB_NODELIST", "localhost".to_string()),
            ("MASTER_PORT", port.clone()),
        ]
    };
    let outputs = launch(vec![rank(0), rank(1)]);
    let tokens = tokens(&outputs);
    assert_eq!(tokens[0], tokens[1]);
    let second = String::from_utf8_lossy(&outputs[1].stdout).into_owned();
    assert!(second.contains("rendezvous at localhost:"), "{second}");
}

#[test]
fn a_lone_rank_gives_up_naming_the_missing_one() {
    let port = free_port().to_string();
    let out = clean(cocolm())
        .args(["launch", "check", "--timeout", "1"])
        .envs([
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", port.as_str()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ranks [1] never connected"), "{err}");
}
