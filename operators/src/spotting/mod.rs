//! Scene-text spotting: the spotter, its glue and geometry from vemo-models, and the search
//! of spotted words in a Lance dataset ([`search`]).

pub use vemo_models::spotting::*;

pub mod search;
