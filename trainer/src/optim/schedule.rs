//! Linear warm-up then linear decay of the learning rate.

/// `lr(s) = peak · (s + 1) / warmup` for the first `warmup` steps, then
/// `peak · (total − s) / (total − warmup)`, reaching 0 at step `total` (steps are 0-based
/// optimiser steps; the first update already uses a non-zero rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps of the run.
    pub total: u64,
}

impl LinearSchedule {
    /// The learning rate of 0-based optimiser step `step`.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let remaining = self.total.saturating_sub(step) as f64;
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        self.peak * (remaining / span).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_decay() {
        let s = LinearSchedule {
            peak: 1.0,
            warmup: 4,
            total: 12,
        };
        let lrs: Vec<f64> = (0..13).map(|k| s.lr(k)).collect();
        assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(lrs[4], 1.0);
        assert_eq!(lrs[8], 0.5);
        assert_eq!(lrs[12], 0.0);
        assert_eq!(s.lr(100), 0.0);
    }

    #[test]
    fn no_warm_up() {
        let s = LinearSchedule {
            peak: 2.0,
            warmup: 0,
            total: 2,
        };
        assert_eq!((s.lr(0), s.lr(1), s.lr(2)), (2.0, 1.0, 0.0));
    }
}
