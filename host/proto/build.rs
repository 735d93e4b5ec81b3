//! Generates the client API's code from `strata/v1/strata.proto` with a
//! vendored protoc (no system protoc needed), plus the descriptor set that
//! server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("strata_descriptor.bin"))
        .bytes(".strata.v1")
        // Undecodable requests (invalid UTF-8) are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::StrataCodec")
        .compile_with_config(config, &["strata/v1/strata.proto"], &["."])?;
    println!("cargo:rerun-if-changed=strata");
    Ok(())
}
