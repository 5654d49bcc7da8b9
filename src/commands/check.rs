//! `cocolm check electra`: the encoder against Hugging Face's outputs, on any device.

use crate::cli::CheckElectraArgs;
use anyhow::{Result, bail};
use cocolm_shared::{Device, Precision};
use cocolm_trainer::hf::fixture::{FixtureErrors, check_fixture};
use cocolm_trainer::precision::compute_dtype;

/// Run the fixture on the chosen device and precision; fail above `--max-error`.
pub fn electra(args: &CheckElectraArgs) -> Result<()> {
    let (device, precision) = (args.device, args.precision);
    let dtype = compute_dtype(precision);
    let errors = match (device, precision) {
        (Device::Cpu, Precision::Fp32) => {
            check_fixture::<cocolm_trainer::CpuInner>(&args.fixture, dtype, &Default::default())?
        }
        (Device::Cpu, _) => check_fixture::<cocolm_trainer::backend::FlexInner>(
            &args.fixture,
            dtype,
            &Default::default(),
        )?,
        (Device::Cuda, _) => on_gpu(args, dtype)?,
    };
    println!(
        "ELECTRA fixture on {device:?} in {precision:?}: relative error embeddings {:.2e}, last hidden state {:.2e}, generator logits {:.2e}",
        errors.embeddings, errors.last_hidden_state, errors.generator_logits
    );
    println!(
        "{}",
        serde_json::json!({
            "check": "electra", "device": device, "precision": precision,
            "embeddings": errors.embeddings, "last_hidden_state": errors.last_hidden_state,
            "generator_logits": errors.generator_logits, "max_error": args.max_error,
        })
    );
    if errors.max() > args.max_error {
        bail!(
            "a relative error of {:.2e} exceeds --max-error {:.1e}",
            errors.max(),
            args.max_error
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn on_gpu(_: &CheckElectraArgs, _: burn::tensor::DType) -> Result<FixtureErrors> {
    Err(super::needs_cuda_build("--device cuda"))
}

#[cfg(feature = "cuda")]
fn on_gpu(args: &CheckElectraArgs, dtype: burn::tensor::DType) -> Result<FixtureErrors> {
    cocolm_trainer::backend::check_cuda(0, false)?;
    Ok(check_fixture::<cocolm_trainer::backend::CudaInner>(
        &args.fixture,
        dtype,
        &super::cuda::device(0),
    )?)
}
