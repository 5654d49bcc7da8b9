//! Classification scores: accuracy and macro-averaged F1.

use serde::{Deserialize, Serialize};

/// How predictions compare with the gold labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Examples scored.
    pub examples: usize,
    /// Fraction predicted right.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 over the classes present in the gold labels or
    /// the predictions (scikit-learn's `f1_score(average="macro")`); a class with no
    /// true positive has F1 0.
    pub macro_f1: f64,
}

impl Scores {
    /// Scores of `predicted` against `gold` (same length; classes below `classes`).
    pub fn of(predicted: &[usize], gold: &[usize], classes: usize) -> Self {
        assert_eq!(predicted.len(), gold.len(), "one prediction per example");
        let (mut tp, mut fp, mut fn_) = (
            vec![0u64; classes],
            vec![0u64; classes],
            vec![0u64; classes],
        );
        for (&p, &g) in predicted.iter().zip(gold) {
            if p == g {
                tp[g] += 1;
            } else {
                fp[p] += 1;
                fn_[g] += 1;
            }
        }
        let present: Vec<usize> = (0..classes)
            .filter(|&c| tp[c] + fp[c] + fn_[c] > 0)
            .collect();
        let f1 = |c: usize| {
            let denominator = 2 * tp[c] + fp[c] + fn_[c];
            2.0 * tp[c] as f64 / denominator as f64
        };
        let right: u64 = tp.iter().sum();
        Self {
            examples: gold.len(),
            accuracy: if gold.is_empty() {
                0.0
            } else {
                right as f64 / gold.len() as f64
            },
            macro_f1: if present.is_empty() {
                0.0
            } else {
                present.iter().map(|&c| f1(c)).sum::<f64>() / present.len() as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: gold 0 0 1 1 2, predicted 0 1 1 1 0.
    /// Class 0: tp 1, fp 1, fn 1 → F1 2/4; class 1: tp 2, fp 1 → 4/5; class 2: fn 1 → 0.
    #[test]
    fn accuracy_and_macro_f1_by_hand() {
        let s = Scores::of(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 4);
        assert_eq!(s.examples, 5);
        assert!((s.accuracy - 0.6).abs() < 1e-12);
        let want = (0.5 + 0.8 + 0.0) / 3.0; // class 3 never appears
        assert!((s.macro_f1 - want).abs() < 1e-12, "{}", s.macro_f1);
    }

    #[test]
    fn perfect_predictions_score_one() {
        let s = Scores::of(&[2, 0, 1], &[2, 0, 1], 3);
        assert_eq!((s.accuracy, s.macro_f1), (1.0, 1.0));
    }
}
