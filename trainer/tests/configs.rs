//! The shipped configurations parse and describe the documented shapes.

use cocolm_shared::RunConfig;
use std::path::PathBuf;

fn load(name: &str) -> RunConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name);
    RunConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn shipped_configs_parse() {
    let shape = |c: &RunConfig| {
        let m = &c.model;
        (
            m.num_layers,
            m.hidden_size,
            m.num_heads,
            m.ffn_size,
            m.generator_depth(),
        )
    };
    assert_eq!(shape(&load("tiny.toml")), (2, 64, 2, 128, 1));
    assert_eq!(shape(&load("small.toml")), (12, 256, 4, 1024, 2));
    assert_eq!(shape(&load("base.toml")), (12, 768, 12, 3072, 4));
    assert_eq!(shape(&load("large.toml")), (24, 1024, 16, 4096, 4));
    assert_eq!(load("small.toml").model.max_positions, 128);
    for name in ["tiny.toml", "small.toml", "base.toml", "large.toml"] {
        let c = load(name);
        assert!(c.model.relative_position && !c.model.scl, "{name}");
        assert_eq!(
            c.model.vocab_size, 0,
            "{name}: the vocabulary comes from the manifest"
        );
    }
    // The released recipe: clip norm 2.0, weight decay 0.01 on every parameter.
    for name in ["base.toml", "large.toml"] {
        let t = load(name).train;
        assert_eq!(t.clip_norm, 2.0, "{name}");
        assert_eq!(t.weight_decay, 0.01, "{name}");
        assert_eq!(
            t.weight_decay_scope,
            cocolm_shared::DecayScope::All,
            "{name}"
        );
    }
}
