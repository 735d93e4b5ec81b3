//! The client API, `strata.v1`: the generated protobuf types and gRPC stubs,
//! the descriptor set that reflection serves, and the codec both use.
#![allow(missing_docs, clippy::all)]

pub mod codec;

tonic::include_proto!("strata.v1");

pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("strata_descriptor");
