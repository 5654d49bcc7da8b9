//! End-to-end tests of the `cocolm` binary: one test binary, modules by area.

mod util;

mod bench;
mod finetune;
mod launch;
mod object_store;
mod prepare;
mod python;
#[cfg(unix)]
mod reliability;
mod train;
