//! Write Strata plugins in Rust.
//!
//! A plugin is a WebAssembly component that implements one of the worlds in
//! Strata's WIT package `strata:plugin@0.1.0` (`wit/strata-plugin.wit`):
//! a node selector, a replication strategy or an index type. This crate
//! hides the generated bindings behind plain Rust types and one trait per
//! kind; an export macro turns a type implementing the trait into the
//! component's exports.
//!
//! ```ignore
//! // Cargo.toml: strata-sdk = { path = "…", features = ["node-selector"] }
//! //             [lib] crate-type = ["cdylib"]
//! use strata_sdk::{Config, NodeInfo, ObjectInfo, PluginError, Policy};
//! use strata_sdk::selector::NodeSelector;
//!
//! struct First;
//!
//! impl NodeSelector for First {
//!     const NAME: &'static str = "first";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "the first candidates, in order";
//!
//!     fn new(_config: &Config) -> Result<Self, String> {
//!         Ok(First)
//!     }
//!
//!     fn select(&self, _nodes: &[NodeInfo], candidates: &[u32], _object: &ObjectInfo,
//!               policy: &Policy) -> Result<Vec<u32>, PluginError> {
//!         Ok(candidates.iter().copied().take(policy.replicas as usize).collect())
//!     }
//! }
//!
//! strata_sdk::export_node_selector!(First);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is the component to name in the
//! server's `[[plugins]]` table.
//!
//! Enable exactly one of the features `node-selector`,
//! `replication-strategy` or `index-type`: the feature chooses which world's
//! bindings are generated. Cargo unifies features across one build, so
//! plugins of different kinds must be built by separate cargo invocations.
#![deny(missing_docs)]

mod config;
pub mod index;
pub mod log;
pub mod selector;
pub mod strategy;
mod types;

pub use config::Config;
pub use types::{Consistency, Health, NodeInfo, ObjectInfo, PluginError, Policy, Scalar, Value};

#[cfg(any(
    all(feature = "node-selector", feature = "replication-strategy"),
    all(feature = "node-selector", feature = "index-type"),
    all(feature = "replication-strategy", feature = "index-type"),
))]
compile_error!(
    "strata-sdk: enable only one of the features node-selector, replication-strategy, \
     index-type; build plugins of different kinds in separate cargo invocations"
);

/// The generated bindings of the world the enabled feature selects. Used by
/// the export macros; plugin code should not need it.
#[doc(hidden)]
#[cfg(any(feature = "node-selector", feature = "replication-strategy", feature = "index-type"))]
pub mod bindings {
    #![allow(missing_docs)]

    #[cfg(feature = "node-selector")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "node-selector",
        pub_export_macro: true,
        default_bindings_module: "strata_sdk::bindings",
    });

    #[cfg(feature = "replication-strategy")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "replication-strategy",
        pub_export_macro: true,
        default_bindings_module: "strata_sdk::bindings",
    });

    #[cfg(feature = "index-type")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "index-type",
        pub_export_macro: true,
        default_bindings_module: "strata_sdk::bindings",
    });
}

/// The per-instance plugin value, shared by the export macros: `install`
/// sets it at `init`, `with` runs a call on it.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_state {
    ($ty:ty) => {
        ::std::thread_local! {
            static PLUGIN: ::std::cell::RefCell<::std::option::Option<$ty>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        fn install(plugin: $ty) {
            PLUGIN.with(|p| *p.borrow_mut() = ::std::option::Option::Some(plugin));
        }

        fn with<R>(
            f: impl FnOnce(&$ty) -> ::std::result::Result<R, $crate::PluginError>,
        ) -> ::std::result::Result<R, $crate::bindings::strata::plugin::types::PluginError> {
            PLUGIN.with(|p| match &*p.borrow() {
                ::std::option::Option::None => ::std::result::Result::Err($crate::__glue::not_initialised()),
                ::std::option::Option::Some(plugin) => f(plugin).map_err($crate::__glue::error),
            })
        }
    };
}

/// The `lifecycle` export of a plugin `$ty` implementing kind trait `$kind`;
/// needs `Export` and [`__plugin_state!`] in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_lifecycle {
    ($ty:ty, $kind:path) => {
        impl $crate::bindings::exports::strata::plugin::lifecycle::Guest for Export {
            fn info() -> $crate::bindings::exports::strata::plugin::lifecycle::PluginInfo {
                $crate::__glue::info(<$ty as $kind>::NAME, <$ty as $kind>::VERSION, <$ty as $kind>::DESCRIPTION)
            }

            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                install(<$ty as $kind>::new(&$crate::Config::new(config))?);
                ::std::result::Result::Ok(())
            }
        }
    };
}

#[doc(hidden)]
#[cfg(any(feature = "node-selector", feature = "replication-strategy", feature = "index-type"))]
#[path = "glue.rs"]
pub mod __glue;
