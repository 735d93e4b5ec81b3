//! Host bindings of the WIT worlds. The node-selector world generates the
//! shared interfaces; the other worlds reuse them, so one `NodeInfo` or
//! `Value` type serves every kind.

pub mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "node-selector",
        with: {
            "strata:plugin/topology.topology": crate::state::Topology,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub mod strategy {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "replication-strategy",
        with: {
            "strata:plugin/types": crate::bindings::selector::strata::plugin::types,
            "strata:plugin/log": crate::bindings::selector::strata::plugin::log,
            "strata:plugin/topology": crate::bindings::selector::strata::plugin::topology,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub mod index {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "index-type",
        with: {
            "strata:plugin/types": crate::bindings::selector::strata::plugin::types,
            "strata:plugin/log": crate::bindings::selector::strata::plugin::log,
        },
        imports: { default: trappable },
        additional_derives: [PartialEq],
    });
}

pub use selector::strata::plugin::types;
