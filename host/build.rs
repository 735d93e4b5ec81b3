//! Generates the gRPC code from `proto/` with a vendored protoc (no system
//! protoc needed), plus the descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("strata_descriptor.bin"))
        .bytes(".strata.v1")
        // Undecodable requests (invalid UTF-8) are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::StrataCodec")
        .compile_with_config(config, &["proto/strata/v1/strata.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}
