//! Mixed precision: the compute dtype of a run, and dynamic loss scaling for fp16.
//!
//! Parameters, gradients and optimiser state stay fp32 (master weights); the model casts
//! parameters to the compute dtype where activations meet them
//! ([`crate::kernels::reference`] says what stays fp32). fp16's narrow range needs the
//! loss multiplied by a scale before the backward pass, so that small gradients do not
//! flush to zero, and the gradients divided by it afterwards (the optimiser does that).
//!
//! The scale follows Megatron's `DynamicGradScaler`: it starts at
//! `train.loss_scale_initial`, doubles after `train.loss_scale_window` steps without
//! overflow, and on a step whose gradient norm (or loss) is not finite the step is
//! skipped — parameters and optimiser state untouched — and the scale is halved once
//! `train.loss_scale_hysteresis` such steps have accumulated since the scale last grew,
//! never below `train.loss_scale_min`. A non-finite step at the floor stops the run.

use burn::tensor::DType;
use cocolm_shared::{Precision, TrainConfig};
use serde::{Deserialize, Serialize};

/// The dtype activations are computed in.
pub fn compute_dtype(precision: Precision) -> DType {
    match precision {
        Precision::Fp32 => DType::F32,
        Precision::Bf16 => DType::BF16,
        Precision::Fp16 => DType::F16,
    }
}

/// The state of a [`LossScaler`], as checkpoints store it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScale {
    /// The current scale.
    pub scale: f64,
    /// Steps without overflow since the scale last changed or overflowed.
    pub clean_steps: u64,
    /// Overflows still tolerated before the scale is halved.
    pub hysteresis_left: u32,
    /// Steps skipped so far in the run.
    pub skipped_steps: u64,
}

/// Dynamic loss scaling (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    state: LossScale,
    window: u64,
    hysteresis: u32,
    min: f64,
}

impl LossScaler {
    /// The scaler of a run: `Some` in fp16 only.
    pub fn from_config(train: &TrainConfig) -> Option<Self> {
        (train.precision == Precision::Fp16).then_some(Self {
            state: LossScale {
                scale: train.loss_scale_initial,
                clean_steps: 0,
                hysteresis_left: train.loss_scale_hysteresis,
                skipped_steps: 0,
            },
            window: train.loss_scale_window,
            hysteresis: train.loss_scale_hysteresis,
            min: train.loss_scale_min,
        })
    }

    /// The scale of the next step.
    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    /// The state to checkpoint.
    pub fn state(&self) -> LossScale {
        self.state
    }

    /// Continue from a checkpointed state.
    pub fn restore(&mut self, state: LossScale) {
        self.state = state;
    }

    /// A step whose gradients were finite and applied.
    pub fn clean_step(&mut self) {
        self.state.clean_steps += 1;
        if self.state.clean_steps >= self.window {
            self.state.scale *= 2.0;
            self.state.clean_steps = 0;
            self.state.hysteresis_left = self.hysteresis;
        }
    }

    /// A step whose gradient norm or loss was not finite. Returns `true` when it is
    /// skipped and the run goes on, `false` when the scale is already at its floor (the
    /// run stops).
    pub fn overflow(&mut self) -> bool {
        if self.state.scale <= self.min {
            return false;
        }
        self.state.clean_steps = 0;
        self.state.skipped_steps += 1;
        self.state.hysteresis_left = self.state.hysteresis_left.saturating_sub(1);
        if self.state.hysteresis_left == 0 {
            self.state.scale = (self.state.scale * 0.5).max(self.min);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(hysteresis: u32) -> LossScaler {
        let train = TrainConfig {
            precision: Precision::Fp16,
            loss_scale_initial: 8.0,
            loss_scale_window: 3,
            loss_scale_hysteresis: hysteresis,
            loss_scale_min: 2.0,
            ..TrainConfig::default()
        };
        LossScaler::from_config(&train).unwrap()
    }

    #[test]
    fn only_fp16_scales() {
        for precision in [Precision::Fp32, Precision::Bf16] {
            let train = TrainConfig {
                precision,
                ..TrainConfig::default()
            };
            assert!(LossScaler::from_config(&train).is_none());
        }
        let fp16 = TrainConfig {
            precision: Precision::Fp16,
            ..TrainConfig::default()
        };
        assert_eq!(LossScaler::from_config(&fp16).unwrap().scale(), 65536.0);
    }

    #[test]
    fn grows_after_a_clean_window_and_halves_on_overflow() {
        let mut s = scaler(1);
        s.clean_step();
        s.clean_step();
        assert_eq!(s.scale(), 8.0);
        s.clean_step();
        assert_eq!(s.scale(), 16.0);
        assert!(s.overflow());
        assert_eq!(s.scale(), 8.0);
        assert!(s.overflow());
        assert_eq!(s.scale(), 4.0);
        assert!(s.overflow());
        assert_eq!(s.scale(), 2.0, "the floor");
        assert!(!s.overflow(), "at the floor the run stops");
        assert_eq!(s.state().skipped_steps, 3);
        // An overflow restarts the clean window.
        let mut s = scaler(1);
        s.clean_step();
        s.clean_step();
        assert!(s.overflow());
        s.clean_step();
        s.clean_step();
        assert_eq!(s.scale(), 4.0);
    }

    #[test]
    fn hysteresis_delays_the_first_halving_until_the_scale_grows_again() {
        let mut s = scaler(2);
        assert!(s.overflow());
        assert_eq!(s.scale(), 8.0, "the first overflow is tolerated");
        assert!(s.overflow());
        assert_eq!(s.scale(), 4.0);
        assert!(s.overflow());
        assert_eq!(s.scale(), 2.0, "exhausted hysteresis halves at once");
        for _ in 0..3 {
            s.clean_step();
        }
        assert_eq!(s.scale(), 4.0);
        assert!(s.overflow());
        assert_eq!(s.scale(), 4.0, "growth restored the hysteresis");
    }
}
