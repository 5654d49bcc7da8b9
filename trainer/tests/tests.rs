//! End-to-end tests of the trainer's public API. Fixtures live in `tests/data/`.

mod electra;
