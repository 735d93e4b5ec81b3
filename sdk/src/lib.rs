//! The Strata plugin SDK.
//!
//! Not built yet: the plugin issue fills this crate with the traits and the
//! export macro over the WIT bindings in `../wit`. It is empty on purpose so
//! that nothing claims a feature the code lacks.
#![deny(missing_docs)]
