//! Named-entity recognition on the text tower: the CoNLL reader, the BIO tag set and its
//! decoding, conlleval's entity-level scores, and the token-classification branch.

pub mod conll;
pub mod entities;
pub mod metrics;
pub mod model;
pub mod tags;
pub mod train;
