//! `cocolm launch check`: the launch variables as `train` reads them, and a rendezvous.

use crate::cli::LaunchCheckArgs;
use anyhow::Result;
use cocolm_shared::hash::seed_of;
use cocolm_trainer::collective::launch::{Launch, rendezvous};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Resolve this process's launch, meet the other ranks, print what it learned.
pub fn check(args: &LaunchCheckArgs) -> Result<()> {
    let launch = Launch::from_env()?;
    println!(
        "rank {} of {} (local rank {}, from {:?} variables); rendezvous at {}:{}",
        launch.rank,
        launch.world,
        launch.local_rank,
        launch.launcher,
        launch.master_addr,
        launch.master_port
    );
    // Rank 0's token: anything that differs between launches.
    let token = || {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(seed_of(&[now, u64::from(std::process::id())])
            .to_le_bytes()
            .to_vec())
    };
    let token = rendezvous(&launch, token, Duration::from_secs(args.timeout))?;
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    println!("rank {}: every rank received token {hex}", launch.rank);
    Ok(())
}
