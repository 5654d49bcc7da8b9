//! One post-LN encoder layer (the computation of
//! [`reference::encoder_layer`](crate::kernels::reference::encoder_layer)), forward and
//! backward by hand on contiguous `f32` slices.
//!
//! ```text
//! qkv = x·W_qkv + b_qkv                      scores = q·kᵀ/√d + bias
//! P = softmax(scores)                        ctx = drop₀(P)·v
//! x₁ = LN₁(x + drop₁(ctx·W_o + b_o))         u = x₁·W_i + b_i
//! y = LN₂(x₁ + drop₂(GELU(u)·W_f + b_f))
//! ```
//!
//! Every matrix product goes straight to matrixmultiply with strides (heads and
//! transposes are views, never copies); attention runs one batch row per rayon task;
//! dropout masks are recomputed in the backward pass from their counter-based streams.

use super::math::{
    Dropout, Mat, MatMut, Norm, add_assign, broadcast_rows, column_sums, dropped, gelu,
    gelu_backward, gemm, layer_norm_backward, residual_layer_norm, softmax_row,
};
use crate::kernels::LayerWeights;
use rayon::prelude::*;

/// Sizes of one layer application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Hidden width H.
    pub hidden: usize,
    /// Attention heads (divide H).
    pub heads: usize,
    /// Feed-forward width.
    pub ffn: usize,
}

impl Dims {
    fn rows(&self) -> usize {
        self.batch * self.seq
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// The layer's parameters, row-major, weights `[in, out]`.
pub type Weights<'a> = LayerWeights<&'a [f32], &'a [f32]>;

/// The additive score bias `[batch or 1, heads or 1, seq or 1, seq]` (key padding mask
/// and relative positions), broadcast over the dimensions of size 1.
#[derive(Debug, Clone, Copy)]
pub struct ScoreBias<'a> {
    /// Row-major values.
    pub data: &'a [f32],
    /// `[batch or 1, heads or 1, seq or 1]` (the last dimension is `seq`).
    pub dims: [usize; 3],
}

impl ScoreBias<'_> {
    fn offset(&self, b: usize, h: usize, i: usize, seq: usize) -> usize {
        let [db, dh, dq] = self.dims;
        let pick = |v: usize, n: usize| if n == 1 { 0 } else { v };
        ((pick(b, db) * dh + pick(h, dh)) * dq + pick(i, dq)) * seq
    }

    fn row(&self, b: usize, h: usize, i: usize, seq: usize) -> &[f32] {
        &self.data[self.offset(b, h, i, seq)..][..seq]
    }
}

/// The three dropout streams of a layer (attention probabilities, attention output, FFN
/// output), or none.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerDropout {
    attention: Option<Dropout>,
    attention_out: Option<Dropout>,
    ffn_out: Option<Dropout>,
}

impl LayerDropout {
    /// Three independent streams keyed by `seed`: probability `attention` on the
    /// attention probabilities, `hidden` on both residual branches.
    pub fn new(attention: f64, hidden: f64, seed: u64) -> Self {
        let stream = |p: f64, stream: u64| Dropout::new(p, seed).map(|d| d.stream(stream));
        Self {
            attention: stream(attention, 0),
            attention_out: stream(hidden, 1),
            ffn_out: stream(hidden, 2),
        }
    }
}

/// Activations the backward pass needs.
#[derive(Debug, Clone)]
pub struct Saved {
    qkv: Vec<f32>,
    probs: Vec<f32>,
    ctx: Vec<f32>,
    x1: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    u: Vec<f32>,
    act: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
}

/// Gradients of everything the layer reads, shaped like the inputs.
#[derive(Debug, Clone)]
pub struct Grads {
    /// `∂x`, `[rows, H]`.
    pub x: Vec<f32>,
    /// `∂` of every parameter.
    pub weights: LayerWeights<Vec<f32>, Vec<f32>>,
    /// `∂bias` in the bias's own (broadcast) shape, when asked for.
    pub bias: Option<Vec<f32>>,
}

/// `x·W + b` for `x: [rows, in]`, `W: [in, out]`.
fn dense(x: &[f32], rows: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let (d_in, d_out) = (w.len() / b.len(), b.len());
    let mut y = broadcast_rows(b, rows);
    gemm(
        1.0,
        Mat::new(x, rows, d_in),
        Mat::new(w, d_in, d_out),
        1.0,
        MatMut::new(&mut y, rows, d_out),
    );
    y
}

/// `aᵀ·g` for `a: [rows, in]`, `g: [rows, out]`: a weight gradient `[in, out]`.
fn weight_grad(a: &[f32], g: &[f32], rows: usize) -> Vec<f32> {
    let (d_in, d_out) = (a.len() / rows, g.len() / rows);
    let mut out = vec![0.0; d_in * d_out];
    gemm(
        1.0,
        Mat::new(a, rows, d_in).t(),
        Mat::new(g, rows, d_out),
        0.0,
        MatMut::new(&mut out, d_in, d_out),
    );
    out
}

/// `g·Wᵀ (+ acc)` for `g: [rows, out]`, `W: [in, out]`: the input gradient `[rows, in]`,
/// added to `acc` when given.
fn input_grad(g: &[f32], rows: usize, w: &[f32], acc: Option<Vec<f32>>) -> Vec<f32> {
    let d_out = g.len() / rows;
    let d_in = w.len() / d_out;
    let (mut out, beta) = match acc {
        Some(acc) => (acc, 1.0),
        None => (vec![0.0; rows * d_in], 0.0),
    };
    gemm(
        1.0,
        Mat::new(g, rows, d_out),
        Mat::new(w, d_in, d_out).t(),
        beta,
        MatMut::new(&mut out, rows, d_in),
    );
    out
}

/// The layer's output `[rows, H]` and what its backward pass needs.
pub fn forward(
    d: &Dims,
    w: &Weights<'_>,
    x: &[f32],
    bias: &ScoreBias<'_>,
    eps: f32,
    dropout: LayerDropout,
) -> (Vec<f32>, Saved) {
    let (n, s, h, nh, hd) = (d.rows(), d.seq, d.hidden, d.heads, d.head_dim());
    assert_eq!(x.len(), n * h, "layer input size");
    let qkv = dense(x, n, w.qkv_w, w.qkv_b);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut probs = vec![0.0f32; d.batch * nh * s * s];
    let mut ctx = vec![0.0f32; n * h];
    ctx.par_chunks_mut(s * h)
        .zip(probs.par_chunks_mut(nh * s * s))
        .enumerate()
        .for_each(|(b, (ctx_b, probs_b))| {
            let qkv_b = &qkv[b * s * 3 * h..][..s * 3 * h];
            let mut dropped = vec![
                0.0f32;
                if dropout.attention.is_some() {
                    s * s
                } else {
                    0
                }
            ];
            for (head, p) in probs_b.chunks_mut(s * s).enumerate() {
                let col = head * hd;
                gemm(
                    scale,
                    Mat::strided(&qkv_b[col..], s, hd, 3 * h),
                    Mat::strided(&qkv_b[h + col..], s, hd, 3 * h).t(),
                    0.0,
                    MatMut::new(p, s, s),
                );
                for (i, row) in p.chunks_mut(s).enumerate() {
                    add_assign(row, bias.row(b, head, i, s));
                    softmax_row(row);
                }
                let used: &[f32] = match dropout.attention {
                    Some(drop) => {
                        dropped.copy_from_slice(p);
                        drop.apply(&mut dropped, (b * nh + head) * s * s);
                        &dropped
                    }
                    None => p,
                };
                gemm(
                    1.0,
                    Mat::new(used, s, s),
                    Mat::strided(&qkv_b[2 * h + col..], s, hd, 3 * h),
                    0.0,
                    MatMut::strided(&mut ctx_b[col..], s, hd, h),
                );
            }
        });
    let a = dense(&ctx, n, w.out_w, w.out_b);
    let mut x1 = x.to_vec();
    let (mut xhat1, mut rstd1) = (vec![0.0f32; n * h], vec![0.0f32; n]);
    residual_layer_norm(
        &mut x1,
        &a,
        dropout.attention_out,
        &Norm {
            gamma: w.norm1_g,
            beta: w.norm1_b,
            eps,
        },
        &mut xhat1,
        &mut rstd1,
    );
    let u = dense(&x1, n, w.ffn_in_w, w.ffn_in_b);
    let mut act = u.clone();
    gelu(&mut act);
    let f = dense(&act, n, w.ffn_out_w, w.ffn_out_b);
    let mut y = x1.clone();
    let (mut xhat2, mut rstd2) = (vec![0.0f32; n * h], vec![0.0f32; n]);
    residual_layer_norm(
        &mut y,
        &f,
        dropout.ffn_out,
        &Norm {
            gamma: w.norm2_g,
            beta: w.norm2_b,
            eps,
        },
        &mut xhat2,
        &mut rstd2,
    );
    let saved = Saved {
        qkv,
        probs,
        ctx,
        x1,
        xhat1,
        rstd1,
        u,
        act,
        xhat2,
        rstd2,
    };
    (y, saved)
}

/// Gradients of the layer from `dy = ∂y`, `[rows, H]`. `bias_grad` asks for `∂bias`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: &Dims,
    w: &Weights<'_>,
    x: &[f32],
    bias: &ScoreBias<'_>,
    dropout: LayerDropout,
    saved: &Saved,
    mut dy: Vec<f32>,
    bias_grad: bool,
) -> Grads {
    let (n, s, h, nh, hd) = (d.rows(), d.seq, d.hidden, d.heads, d.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();

    // FFN block.
    let (norm2_g, norm2_b) = layer_norm_backward(&mut dy, &saved.xhat2, &saved.rstd2, w.norm2_g);
    let dh2 = dy;
    let df = dropped(&dh2, dropout.ffn_out);
    let ffn_out_w = weight_grad(&saved.act, &df, n);
    let ffn_out_b = column_sums(&df, h);
    let mut du = input_grad(&df, n, w.ffn_out_w, None);
    drop(df);
    gelu_backward(&mut du, &saved.u);
    let ffn_in_w = weight_grad(&saved.x1, &du, n);
    let ffn_in_b = column_sums(&du, d.ffn);
    let mut dx1 = input_grad(&du, n, w.ffn_in_w, Some(dh2));
    drop(du);

    // Attention block.
    let (norm1_g, norm1_b) = layer_norm_backward(&mut dx1, &saved.xhat1, &saved.rstd1, w.norm1_g);
    let dh1 = dx1;
    let da = dropped(&dh1, dropout.attention_out);
    let out_w = weight_grad(&saved.ctx, &da, n);
    let out_b = column_sums(&da, h);
    let dctx = input_grad(&da, n, w.out_w, None);
    drop(da);

    let mut dqkv = vec![0.0f32; n * 3 * h];
    let mut dscores = vec![0.0f32; d.batch * nh * s * s];
    dqkv.par_chunks_mut(s * 3 * h)
        .zip(dscores.par_chunks_mut(nh * s * s))
        .enumerate()
        .for_each(|(b, (dqkv_b, ds_b))| {
            let qkv_b = &saved.qkv[b * s * 3 * h..][..s * 3 * h];
            let dctx_b = &dctx[b * s * h..][..s * h];
            let mut dropped = vec![
                0.0f32;
                if dropout.attention.is_some() {
                    s * s
                } else {
                    0
                }
            ];
            for (head, ds) in ds_b.chunks_mut(s * s).enumerate() {
                let col = head * hd;
                let first = (b * nh + head) * s * s;
                let p = &saved.probs[first..][..s * s];
                let used: &[f32] = match dropout.attention {
                    Some(drop) => {
                        dropped.copy_from_slice(p);
                        drop.apply(&mut dropped, first);
                        &dropped
                    }
                    None => p,
                };
                let d_ctx = Mat::strided(&dctx_b[col..], s, hd, h);
                // ∂v = drop(P)ᵀ·∂ctx
                gemm(
                    1.0,
                    Mat::new(used, s, s).t(),
                    d_ctx,
                    0.0,
                    MatMut::strided(&mut dqkv_b[2 * h + col..], s, hd, 3 * h),
                );
                // ∂P = drop′(∂ctx·vᵀ), then the softmax backward in place.
                gemm(
                    1.0,
                    d_ctx,
                    Mat::strided(&qkv_b[2 * h + col..], s, hd, 3 * h).t(),
                    0.0,
                    MatMut::new(ds, s, s),
                );
                if let Some(drop) = dropout.attention {
                    drop.apply(ds, first);
                }
                for (ds, p) in ds.chunks_mut(s).zip(p.chunks(s)) {
                    let dot: f32 = ds.iter().zip(p).map(|(a, b)| a * b).sum();
                    ds.iter_mut().zip(p).for_each(|(g, &p)| *g = p * (*g - dot));
                }
                let ds: &[f32] = ds;
                // scores = scale·q·kᵀ + bias: ∂q = scale·∂S·k, ∂k = scale·∂Sᵀ·q.
                gemm(
                    scale,
                    Mat::new(ds, s, s),
                    Mat::strided(&qkv_b[h + col..], s, hd, 3 * h),
                    0.0,
                    MatMut::strided(&mut dqkv_b[col..], s, hd, 3 * h),
                );
                gemm(
                    scale,
                    Mat::new(ds, s, s).t(),
                    Mat::strided(&qkv_b[col..], s, hd, 3 * h),
                    0.0,
                    MatMut::strided(&mut dqkv_b[h + col..], s, hd, 3 * h),
                );
            }
        });
    drop(dctx);
    let qkv_w = weight_grad(x, &dqkv, n);
    let qkv_b = column_sums(&dqkv, 3 * h);
    let dx = input_grad(&dqkv, n, w.qkv_w, Some(dh1));
    let bias = bias_grad.then(|| reduce_to_bias(dscores, d, bias));
    Grads {
        x: dx,
        weights: LayerWeights {
            qkv_w,
            qkv_b,
            out_w,
            out_b,
            norm1_g,
            norm1_b,
            ffn_in_w,
            ffn_in_b,
            ffn_out_w,
            ffn_out_b,
            norm2_g,
            norm2_b,
        },
        bias,
    }
}

/// Sum `∂scores` `[batch, heads, seq, seq]` over the bias's broadcast dimensions.
fn reduce_to_bias(dscores: Vec<f32>, d: &Dims, bias: &ScoreBias<'_>) -> Vec<f32> {
    let s = d.seq;
    if bias.dims == [d.batch, d.heads, s] {
        return dscores;
    }
    let mut out = vec![0.0f32; bias.data.len()];
    for (r, row) in dscores.chunks(s).enumerate() {
        let (i, bh) = (r % s, r / s);
        let at = bias.offset(bh / d.heads, bh % d.heads, i, s);
        add_assign(&mut out[at..at + s], row);
    }
    out
}
