//! [`Engine`]: which `tokenizers` library encodes. Named by errors and by the encoder, so
//! it sits below both.

use std::fmt;

/// Which library encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `tokenizers` 1.0.0-rc.3.
    Fast,
    /// `tokenizers` 0.23.2.
    Reference,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Fast => "tokenizers 1.0.0-rc.3",
            Engine::Reference => "tokenizers 0.23.2",
        })
    }
}
