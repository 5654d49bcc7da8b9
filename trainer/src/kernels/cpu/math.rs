//! `f32` building blocks on contiguous slices: strided matrix products, exp, the normal
//! CDF, GELU, LayerNorm, softmax, dropout masks and column sums.
//!
//! Elementwise work is split over rayon in fixed row blocks, and every reduction across
//! rows sums fixed blocks in a fixed order, so results do not depend on thread timing
//! (exact resume relies on that).

use cocolm_shared::simd::wide;
use rayon::prelude::*;

/// Rows per rayon task in row-parallel kernels.
pub const ROWS_PER_TASK: usize = 32;

/// A strided read-only matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `[rows, cols]` with row stride `rs` and contiguous rows (a column block of a
    /// wider row-major matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        };
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) < data.len(),
            "a {rows}×{cols} view with row stride {rs} overruns {} elements",
            data.len()
        );
        m
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A strided mutable matrix with contiguous rows.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// `[rows, cols]` with row stride `rs`. Rows must not overlap (`rs ≥ cols` when
    /// there are two or more): [`gemm`] writes several rows at once from several
    /// threads.
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) < data.len(),
            "a {rows}×{cols} view with row stride {rs} overruns {} elements",
            data.len()
        );
        assert!(
            rows < 2 || rs >= cols,
            "a {rows}×{cols} view with row stride {rs} has overlapping rows"
        );
        Self {
            data,
            rows,
            cols,
            rs,
        }
    }
}

/// `c ← α·a·b + β·c` (with `β = 0`, `c` is not read). Large products use
/// matrixmultiply's own threads.
pub fn gemm(alpha: f32, a: Mat<'_>, b: Mat<'_>, beta: f32, c: MatMut<'_>) {
    assert_eq!(a.cols, b.rows, "inner dimensions of a matrix product");
    assert_eq!(
        (a.rows, b.cols),
        (c.rows, c.cols),
        "shape of a matrix product"
    );
    let s = |v: usize| v as isize;
    // SAFETY: the constructors checked that every element `(i, j)` addressed through
    // the strides lies inside its slice, and that the rows of `c` do not overlap (so the
    // threads matrixmultiply writes them from never write the same element); `c` is
    // borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            s(a.rs),
            s(a.cs),
            b.data.as_ptr(),
            s(b.rs),
            s(b.cs),
            beta,
            c.data.as_mut_ptr(),
            s(c.rs),
            1,
        );
    }
}

/// `[rows, cols]` filled with `bias` in every row (the `β = 1` start of `x·W + b`).
pub fn broadcast_rows(bias: &[f32], rows: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * bias.len());
    for _ in 0..rows {
        out.extend_from_slice(bias);
    }
    out
}

/// `eˣ` to about 2 ulp, written so the compiler vectorises loops over it (Cephes'
/// polynomial after a `2ⁿ` range reduction). Inputs below −87.3 give 0 (no subnormal
/// results, which would slow the products that consume them), above 88.3 give `e^88.3`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MIN: f32 = -87.3;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest without a library call: 1.5·2²³ pushes the fraction out.
    const SHIFTER: f32 = 12_582_912.0;
    let underflow = x < MIN;
    let x = x.clamp(MIN, 88.3);
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let y = y * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if underflow { 0.0 } else { y }
}

/// The standard normal CDF `Φ(x)`, with relative error about 1e−6 in both tails
/// (Numerical Recipes' `erfcc` Chebyshev fit, fractional error < 1.2e−7 in exact
/// arithmetic).
#[inline(always)]
pub fn normal_cdf(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = 0.170_872_77_f32;
    let p = p * t - 0.822_152_23;
    let p = p * t + 1.488_515_9;
    let p = p * t - 1.135_204;
    let p = p * t + 0.278_868_07;
    let p = p * t - 0.186_288_06;
    let p = p * t + 0.096_784_18;
    let p = p * t + 0.374_091_96;
    let p = p * t + 1.000_023_7;
    let p = p * t - 1.265_512_2;
    let half_erfc = 0.5 * t * exp(p - z * z);
    if x < 0.0 { half_erfc } else { 1.0 - half_erfc }
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Exact GELU `x·Φ(x)` of every element, in place, on rayon.
pub fn gelu(x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|chunk| {
        wide(|| {
            for v in chunk {
                *v *= normal_cdf(*v);
            }
        })
    });
}

/// `grad ← grad · GELU′(u)`, with `GELU′(u) = Φ(u) + u·φ(u)`, in place, on rayon.
pub fn gelu_backward(grad: &mut [f32], u: &[f32]) {
    grad.par_chunks_mut(4096)
        .zip(u.par_chunks(4096))
        .for_each(|(g, u)| {
            wide(|| {
                for (g, &u) in g.iter_mut().zip(u) {
                    *g *= normal_cdf(u) + u * FRAC_1_SQRT_2PI * exp(-0.5 * u * u);
                }
            })
        });
}

/// A row's softmax, in place.
#[inline]
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Inverted dropout with a counter-based mask: element `i` of a stream is kept when a
/// hash of `(seed, i)` clears `p`, and kept values are scaled by `1/(1 − p)`. The mask
/// is never stored; the backward pass recomputes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    seed: u64,
    threshold: u32,
    scale: f32,
}

impl Dropout {
    /// Dropout with probability `p` (`None` when `p` is 0) for the stream `seed`.
    pub fn new(p: f64, seed: u64) -> Option<Self> {
        (p > 0.0).then(|| {
            assert!(p < 1.0, "dropout probability {p} is not below 1");
            Self {
                seed,
                threshold: (p * f64::from(1u32 << 24)).round() as u32,
                scale: (1.0 / (1.0 - p)) as f32,
            }
        })
    }

    /// The same probability on another stream.
    pub fn stream(self, stream: u64) -> Self {
        Self {
            seed: cocolm_shared::hash::mix64(
                self.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            ..self
        }
    }

    /// The factor of element `i`: 0 or `1/(1 − p)`.
    #[inline(always)]
    pub fn factor(&self, i: usize) -> f32 {
        let h = cocolm_shared::hash::mix64(self.seed.wrapping_add(i as u64));
        if ((h >> 40) as u32) < self.threshold {
            0.0
        } else {
            self.scale
        }
    }

    /// Multiply `x` (elements `first..first + x.len()` of the stream) by the mask.
    #[inline]
    pub fn apply(&self, x: &mut [f32], first: usize) {
        for (k, v) in x.iter_mut().enumerate() {
            *v *= self.factor(first + k);
        }
    }
}

/// LayerNorm parameters: gain, shift, variance epsilon.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    /// γ, `[H]`.
    pub gamma: &'a [f32],
    /// β, `[H]`.
    pub beta: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
}

/// `x ← x + drop(a)` then LayerNorm of each row into `x` (the output, `γ·x̂ + β`),
/// keeping `x̂` and `1/σ` for the backward pass. Rows are `γ.len()` wide.
pub fn residual_layer_norm(
    x: &mut [f32],
    a: &[f32],
    dropout: Option<Dropout>,
    norm: &Norm<'_>,
    xhat: &mut [f32],
    rstd: &mut [f32],
) {
    let h = norm.gamma.len();
    let block = ROWS_PER_TASK * h;
    x.par_chunks_mut(block)
        .zip(a.par_chunks(block))
        .zip(xhat.par_chunks_mut(block))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (((x, a), xhat), rstd))| {
            wide(|| {
                for (r, ((x, a), xhat)) in x
                    .chunks_mut(h)
                    .zip(a.chunks(h))
                    .zip(xhat.chunks_mut(h))
                    .enumerate()
                {
                    let first = (task * ROWS_PER_TASK + r) * h;
                    match dropout {
                        Some(d) => {
                            for (k, (x, &a)) in x.iter_mut().zip(a).enumerate() {
                                *x += a * d.factor(first + k);
                            }
                        }
                        None => x.iter_mut().zip(a).for_each(|(x, &a)| *x += a),
                    }
                    rstd[r] = normalise_row(x, xhat, norm);
                }
            })
        });
}

#[inline]
fn normalise_row(x: &mut [f32], xhat: &mut [f32], norm: &Norm<'_>) -> f32 {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let rstd = 1.0 / (var + norm.eps).sqrt();
    for (((x, xh), &g), &b) in x
        .iter_mut()
        .zip(xhat.iter_mut())
        .zip(norm.gamma)
        .zip(norm.beta)
    {
        *xh = (*x - mean) * rstd;
        *x = *xh * g + b;
    }
    rstd
}

/// LayerNorm backward: `grad` (∂ of the output, `[rows, H]`) becomes ∂ of the input;
/// returns `(∂γ, ∂β)`.
pub fn layer_norm_backward(
    grad: &mut [f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let block = ROWS_PER_TASK * h;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks_mut(block)
        .zip(xhat.par_chunks(block))
        .zip(rstd.par_chunks(ROWS_PER_TASK))
        .map(|((grad, xhat), rstd)| {
            wide(|| {
                let mut d_gamma = vec![0.0f32; h];
                let mut d_beta = vec![0.0f32; h];
                for ((g, xh), &rs) in grad.chunks_mut(h).zip(xhat.chunks(h)).zip(rstd) {
                    let (mut sum, mut dot) = (0.0f32, 0.0f32);
                    for k in 0..h {
                        d_gamma[k] += g[k] * xh[k];
                        d_beta[k] += g[k];
                        let gg = g[k] * gamma[k];
                        sum += gg;
                        dot += gg * xh[k];
                    }
                    let (mean, mean_dot) = (sum / h as f32, dot / h as f32);
                    for k in 0..h {
                        g[k] = rs * (g[k] * gamma[k] - mean - xh[k] * mean_dot);
                    }
                }
                (d_gamma, d_beta)
            })
        })
        .collect();
    let mut d_gamma = vec![0.0f32; h];
    let mut d_beta = vec![0.0f32; h];
    for (g, b) in partials {
        add_assign(&mut d_gamma, &g);
        add_assign(&mut d_beta, &b);
    }
    (d_gamma, d_beta)
}

/// Sum of the rows of a `[rows, cols]` matrix (a bias gradient), in fixed row blocks.
pub fn column_sums(x: &[f32], cols: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = x
        .par_chunks(ROWS_PER_TASK * cols)
        .map(|block| {
            let mut sum = vec![0.0f32; cols];
            for row in block.chunks(cols) {
                add_assign(&mut sum, row);
            }
            sum
        })
        .collect();
    let mut sum = vec![0.0f32; cols];
    for p in partials {
        add_assign(&mut sum, &p);
    }
    sum
}

/// `x ⊙ mask` for a dropout over a whole `[rows, cols]` buffer, on rayon; `x` itself
/// (no copy) without dropout.
pub fn dropped(x: &[f32], dropout: Option<Dropout>) -> std::borrow::Cow<'_, [f32]> {
    let Some(d) = dropout else {
        return std::borrow::Cow::Borrowed(x);
    };
    let mut out = x.to_vec();
    out.par_chunks_mut(4096)
        .enumerate()
        .for_each(|(i, chunk)| wide(|| d.apply(chunk, i * 4096)));
    std::borrow::Cow::Owned(out)
}

/// One AdamW update in a single pass over `p`, `g`, `m`, `v`, in place, on rayon (the
/// formula of [`crate::kernels::reference::adamw_update`], in `f32`).
pub fn adamw(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    u: &crate::kernels::AdamWUpdate,
) {
    let f = |x: f64| x as f32;
    let (scale, b1, c1, b2, c2) = (
        f(u.grad_scale),
        f(u.beta1),
        f(1.0 - u.beta1),
        f(u.beta2),
        f(1.0 - u.beta2),
    );
    let (eps, step, decay) = (f(u.eps), f(u.step_size), f(u.decay));
    const CHUNK: usize = 1 << 14;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            wide(|| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                    let g = g * scale;
                    *m = *m * b1 + g * c1;
                    *v = *v * b2 + g * g * c2;
                    *p = *p * decay - step * (*m / (v.sqrt() + eps));
                }
            })
        });
}

/// `a ← a + b`.
#[inline]
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wide` changes the vector width, never a result: GELU and its gradient over a
    /// wide range, bit for bit against the same loops run without it.
    #[test]
    fn wide_loops_give_the_same_bits() {
        let xs: Vec<f32> = (-40_000..40_000).map(|i| i as f32 * 3.3e-4).collect();
        let mut wide_gelu = xs.clone();
        gelu(&mut wide_gelu);
        let narrow: Vec<f32> = xs.iter().map(|&v| v * normal_cdf(v)).collect();
        assert!(
            wide_gelu
                .iter()
                .zip(&narrow)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let mut wide_grad = vec![1.5f32; xs.len()];
        gelu_backward(&mut wide_grad, &xs);
        let narrow: Vec<f32> = xs
            .iter()
            .map(|&u| 1.5 * (normal_cdf(u) + u * FRAC_1_SQRT_2PI * exp(-0.5 * u * u)))
            .collect();
        assert!(
            wide_grad
                .iter()
                .zip(&narrow)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(-10_000.0), 0.0);
    }

    #[test]
    fn normal_cdf_is_accurate_in_both_tails() {
        // Φ from the f64 erfc identity via a long continued computation: use the
        // complementary series for moderate |x| (reference values from tables).
        let table = [
            (-5.0f32, 2.866_515_7e-7f64),
            (-3.0, 1.349_898_0e-3),
            (-1.0, 0.158_655_25),
            (0.0, 0.5),
            (0.5, 0.691_462_46),
            (2.0, 0.977_249_87),
            (4.0, 0.999_968_33),
        ];
        for (x, want) in table {
            let got = normal_cdf(x) as f64;
            assert!(
                ((got - want) / want).abs() < 2e-6,
                "Φ({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gemm_handles_transposed_and_strided_operands() {
        // a = [[1, 2, 3], [4, 5, 6]] stored in a wider buffer with row stride 4.
        let a = [1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // [3, 2]
        let mut c = [10.0; 4];
        gemm(
            1.0,
            Mat::strided(&a, 2, 3, 4),
            Mat::new(&b, 3, 2),
            1.0,
            MatMut::new(&mut c, 2, 2),
        );
        assert_eq!(c, [14.0, 15.0, 20.0, 21.0]);
        // aᵀ·a' with a' = the first 2×2 of b transposed: [[1, 0], [0, 1]]
        let mut d = [0.0; 6];
        gemm(
            2.0,
            Mat::strided(&a, 2, 3, 4).t(),
            Mat::new(&b[..4], 2, 2),
            0.0,
            MatMut::new(&mut d, 3, 2),
        );
        assert_eq!(d, [2.0, 8.0, 4.0, 10.0, 6.0, 12.0]);
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn views_that_overrun_their_slice_are_refused() {
        let a = [0.0f32; 5];
        let _ = Mat::strided(&a, 2, 3, 4);
    }

    #[test]
    #[should_panic(expected = "overlapping rows")]
    fn output_views_with_overlapping_rows_are_refused() {
        let mut c = [0.0f32; 8];
        let _ = MatMut::strided(&mut c, 3, 3, 2);
    }

    #[test]
    fn a_single_output_row_may_have_any_stride() {
        let mut c = [0.0f32; 3];
        let view = MatMut::strided(&mut c, 1, 3, 1);
        gemm(
            1.0,
            Mat::new(&[1.0, 2.0], 1, 2),
            Mat::new(&[1.0, 0.0, 1.0, 0.0, 1.0, 1.0], 2, 3),
            0.0,
            view,
        );
        assert_eq!(c, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn dropout_keeps_the_expected_fraction_and_is_deterministic() {
        let d = Dropout::new(0.1, 42).unwrap();
        let kept = (0..100_000).filter(|&i| d.factor(i) > 0.0).count();
        assert!((89_000..91_000).contains(&kept), "{kept} kept");
        assert!((0..1000).all(|i| d.factor(i) == d.factor(i)));
        assert!((d.factor(7) - 1.0 / 0.9).abs() < 1e-6 || d.factor(7) == 0.0);
        let other = d.stream(1);
        let same = (0..1000)
            .filter(|&i| (d.factor(i) > 0.0) == (other.factor(i) > 0.0))
            .count();
        assert!(same < 950, "streams are independent ({same} of 1000 agree)");
        assert!(Dropout::new(0.0, 1).is_none());
    }

    #[test]
    fn layer_norm_backward_matches_finite_differences() {
        let h = 6;
        let x0: Vec<f32> = (0..2 * h)
            .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.7)
            .collect();
        let gamma: Vec<f32> = (0..h).map(|i| 1.0 + 0.1 * i as f32).collect();
        let beta = vec![0.3f32; h];
        let dy: Vec<f32> = (0..2 * h)
            .map(|i| ((i * 3 % 4) as f32 - 1.5) * 0.5)
            .collect();
        let norm = Norm {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        };
        let zeros = vec![0.0f32; x0.len()];
        let forward = |x: &[f32]| {
            let mut y = x.to_vec();
            let (mut xh, mut rs) = (vec![0.0; y.len()], vec![0.0; 2]);
            residual_layer_norm(&mut y, &zeros, None, &norm, &mut xh, &mut rs);
            (y, xh, rs)
        };
        let loss = |x: &[f32]| -> f64 {
            let (y, _, _) = forward(x);
            y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum()
        };
        let (_, xh, rs) = forward(&x0);
        let mut g = dy.clone();
        let (d_gamma, d_beta) = layer_norm_backward(&mut g, &xh, &rs, &gamma);
        for i in 0..x0.len() {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += 1e-2;
            down[i] -= 1e-2;
            let numeric = (loss(&up) - loss(&down)) / 2e-2;
            assert!(
                (numeric - g[i] as f64).abs() < 2e-3,
                "∂x[{i}]: {numeric} vs {}",
                g[i]
            );
        }
        let want_beta: Vec<f32> = (0..h).map(|k| dy[k] + dy[h + k]).collect();
        assert_eq!(d_beta, want_beta);
        let want_gamma: Vec<f32> = (0..h)
            .map(|k| dy[k] * xh[k] + dy[h + k] * xh[h + k])
            .collect();
        for (a, b) in d_gamma.iter().zip(want_gamma) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn column_sums_add_rows_across_blocks() {
        let cols = 3;
        let rows = ROWS_PER_TASK * 2 + 5;
        let x: Vec<f32> = (0..rows * cols).map(|i| (i % cols) as f32 + 1.0).collect();
        assert_eq!(
            column_sums(&x, cols),
            vec![rows as f32, 2.0 * rows as f32, 3.0 * rows as f32]
        );
    }
}
