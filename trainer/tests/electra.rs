//! The reference check: Hugging Face ELECTRA weights loaded into our encoder reproduce
//! the outputs `transformers` computed (`tests/data/electra-tiny`, see its README entry in
//! `../shared/README.md`), through the fused CPU kernels and through the portable path
//! (the one CUDA runs).

use crate::rng_lock;
use burn::tensor::DType;
use cocolm_shared::ModelConfig;
use cocolm_trainer::CpuInner;
use cocolm_trainer::backend::FlexInner;
use cocolm_trainer::hf::fixture::{check_fixture, electra_tiny};
use cocolm_trainer::hf::load_discriminator;
use cocolm_trainer::model::CocoLm;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/electra-tiny")
}

#[test]
fn the_fused_cpu_path_reproduces_hugging_face() {
    let _guard = rng_lock();
    let errors = check_fixture::<CpuInner>(&fixture(), DType::F32, &Default::default()).unwrap();
    eprintln!("fused CPU kernels: {errors:?}");
    assert!(errors.max() < 1e-5, "{errors:?}");
}

#[test]
fn the_portable_path_reproduces_hugging_face() {
    let _guard = rng_lock();
    let device = Default::default();
    let errors = check_fixture::<FlexInner>(&fixture(), DType::F32, &device).unwrap();
    eprintln!("portable path, fp32: {errors:?}");
    assert!(errors.max() < 1e-5, "{errors:?}");
    // In half precision the same function, to the precision's resolution.
    for (dtype, tolerance) in [(DType::BF16, 1e-2), (DType::F16, 2e-3)] {
        let errors = check_fixture::<FlexInner>(&fixture(), dtype, &device).unwrap();
        eprintln!("portable path, {dtype:?}: {errors:?}");
        assert!(errors.max() < tolerance, "{dtype:?}: {errors:?}");
    }
}

#[test]
fn wrong_depth_is_an_error_naming_the_tensor() {
    let _guard = rng_lock();
    let device = Default::default();
    let config = ModelConfig {
        num_layers: 3,
        ..electra_tiny()
    };
    let model = CocoLm::<CpuInner>::init(&config, &device).unwrap();
    let err = load_discriminator(
        model.corrector.backbone,
        &fixture().join("discriminator.safetensors"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("electra.encoder.layer.2"), "{err}");
}
