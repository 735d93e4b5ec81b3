//! Generates the peer service's code (`strata.peer.v1`: Raft, membership
//! and replica transfer between nodes) with a vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().bytes(".strata.peer.v1.ReplicaFrame").compile_with_config(
        config,
        &["proto/strata/peer/v1/peer.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
