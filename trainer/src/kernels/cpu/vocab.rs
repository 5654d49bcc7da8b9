//! A tied vocabulary head ([`crate::vocab`]) on contiguous `f32` slices: one product for
//! the logits, one fused pass per row for the softmax, cross-entropy, argmax, draw and
//! loss gradient (in place, so one `[rows, vocab]` buffer in all), two products and a
//! column sum for the gradients. `E` is read through strides, never transposed.

use super::math::{Mat, MatMut, broadcast_rows, column_sums, exp, gemm};
use rayon::prelude::*;

/// Inputs of [`head`]: `rows` head inputs over a `[vocab, H]` table.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// `[rows, H]`.
    pub x: &'a [f32],
    /// `E`, `[vocab, H]`.
    pub table: &'a [f32],
    /// `[vocab]`.
    pub bias: &'a [f32],
    /// `[rows]`, each below `vocab`.
    pub targets: &'a [i64],
    /// Loss weight of each row, `[rows]`.
    pub weights: &'a [f32],
    /// One `U[0, 1)` per row when a class is to be drawn.
    pub uniforms: Option<&'a [f32]>,
}

/// Outputs of [`head`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeadGrads {
    /// Cross-entropy per row.
    pub cross_entropy: Vec<f32>,
    /// Rows whose (first) argmax is the target.
    pub correct: usize,
    /// Drawn classes, when uniforms were given.
    pub samples: Option<Vec<i64>>,
    /// `∂x`, `[rows, H]`.
    pub d_x: Vec<f32>,
    /// `∂E`, `[vocab, H]`.
    pub d_tokens: Vec<f32>,
    /// `∂b`, `[vocab]`.
    pub d_bias: Vec<f32>,
}

/// What the row pass learns about one row.
#[derive(Debug, Clone, Copy, Default)]
struct RowStats {
    cross_entropy: f32,
    correct: bool,
    sample: i64,
}

/// Loss, gradients and draws of a tied head (see [`crate::vocab`] for the formulas).
pub fn head(h: &Head<'_>) -> HeadGrads {
    let vocab = h.bias.len();
    let rows = h.targets.len();
    let hidden = h.table.len() / vocab;
    assert_eq!(h.x.len(), rows * hidden, "head input size");
    let mut logits = broadcast_rows(h.bias, rows);
    gemm(
        1.0,
        Mat::new(h.x, rows, hidden),
        Mat::new(h.table, vocab, hidden).t(),
        1.0,
        MatMut::new(&mut logits, rows, vocab),
    );
    let mut stats = vec![RowStats::default(); rows];
    logits
        .par_chunks_mut(vocab)
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(i, (row, stat))| {
            let uniform = h.uniforms.map(|u| u[i]);
            *stat = row_pass(row, h.targets[i] as usize, h.weights[i], uniform);
        });
    let mut d_x = vec![0.0f32; rows * hidden];
    gemm(
        1.0,
        Mat::new(&logits, rows, vocab),
        Mat::new(h.table, vocab, hidden),
        0.0,
        MatMut::new(&mut d_x, rows, hidden),
    );
    let mut d_tokens = vec![0.0f32; vocab * hidden];
    gemm(
        1.0,
        Mat::new(&logits, rows, vocab).t(),
        Mat::new(h.x, rows, hidden),
        0.0,
        MatMut::new(&mut d_tokens, vocab, hidden),
    );
    HeadGrads {
        cross_entropy: stats.iter().map(|s| s.cross_entropy).collect(),
        correct: stats.iter().filter(|s| s.correct).count(),
        samples: h.uniforms.map(|_| stats.iter().map(|s| s.sample).collect()),
        d_x,
        d_tokens,
        d_bias: column_sums(&logits, vocab),
    }
}

/// Lanes of the partial sums (a fixed order, so sums do not depend on the machine).
const LANES: usize = 8;

/// One row of logits in, `(softmax − onehot(target))·weight` out, in place.
fn row_pass(row: &mut [f32], target: usize, weight: f32, uniform: Option<f32>) -> RowStats {
    let picked = row[target];
    let max = row
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let argmax = row.iter().position(|&v| v == max).unwrap_or(0);
    let sum = exp_in_place(row, max);
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
    // Inverse CDF as `sample_categorical`: the first class whose cumulative probability
    // reaches u · total.
    let sample = uniform.map_or(0, |u| {
        let total: f32 = lane_sum(row);
        let threshold = u * total;
        let mut cumulative = 0.0f32;
        row.iter()
            .position(|&p| {
                cumulative += p;
                cumulative >= threshold
            })
            .unwrap_or(row.len() - 1) as i64
    });
    row.iter_mut().for_each(|v| *v *= weight);
    row[target] -= weight;
    RowStats {
        cross_entropy: sum.ln() + max - picked,
        correct: argmax == target,
        sample,
    }
}

/// `v ← exp(v − max)`; returns the sum.
fn exp_in_place(row: &mut [f32], max: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - max);
            *a += *v;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

fn lane_sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}
