//! Wider vectors where the CPU has them, chosen at run time: the release binary targets
//! baseline x86-64 (SSE2), and the hot loops of both sides — the trainer's elementwise
//! kernels, `--dedup near`'s MinHash — run twice as wide under AVX2.

/// Run `f` with AVX2 enabled when the CPU has it, so that the loops inlined into `f` are
/// vectorised 8 lanes of 32 bits wide instead of baseline x86-64's 4. Results do not
/// change: Rust neither fuses nor reorders arithmetic, only the width differs.
///
/// Only code LLVM inlines into `f` is compiled for AVX2: keep the loop in the closure or
/// in an `#[inline(always)]` function it calls.
#[inline]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    /// [`super::wide`] runs its closure once and returns its result: the same values as
    /// the loop run without it.
    #[test]
    fn wide_runs_the_closure_once_with_its_result() {
        let xs: Vec<u32> = (0..10_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let narrow: Vec<u32> = xs.iter().map(|x| x.rotate_left(7) ^ 0x9e37).collect();
        let mut calls = 0;
        let wide = super::wide(|| {
            calls += 1;
            xs.iter()
                .map(|x| x.rotate_left(7) ^ 0x9e37)
                .collect::<Vec<u32>>()
        });
        assert_eq!(calls, 1);
        assert_eq!(wide, narrow);
    }
}
