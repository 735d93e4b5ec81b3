//! Builds the built-in plugins (`plugins/` at the top of the repository)
//! for `wasm32-wasip2`, so this crate (and so the binary) embeds them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The built-in plugins by SDK feature (= kind). Each kind builds in its own
/// cargo invocation: the SDK generates one world's bindings per build.
const BUILTINS: &[(&str, &[&str])] = &[
    ("node-selector", &["rendezvous", "least-loaded", "zone-aware", "fixture"]),
    ("replication-strategy", &["eager", "lazy", "geographic", "quorum", "larger-wins"]),
    ("index-type", &["btree", "hash", "fulltext", "tags"]),
];

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    plugins(&out)?;
    Ok(())
}

fn plugins(out: &Path) -> Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../..");
    for dir in ["plugins", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // One plugin target dir beside the host's (target/<profile>/build/<pkg>/out
    // is four levels down), shared by debug and release builds.
    let target = out.ancestors().nth(4).map(|t| t.join("wasm-plugins")).unwrap_or_else(|| out.join("wasm-plugins"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target()?;
    for (kind, names) in BUILTINS {
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(root.join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        for name in *names {
            cmd.args(["-p", &format!("strata-plugin-{name}")]);
        }
        // The host build's flags are for the host target, not the guest's.
        for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"] {
            cmd.env_remove(var);
        }
        let status = cmd.status()?;
        if !status.success() {
            return Err(format!(
                "building the {kind} plugins for wasm32-wasip2 failed ({status}); \
                 is the target installed? `rustup target add wasm32-wasip2`"
            )
            .into());
        }
    }
    let mut table = String::from(
        "/// The built-in plugins, built by `build.rs` from `plugins/`.\n\
         pub const BUILTINS: &[Builtin] = &[\n",
    );
    for (kind, names) in BUILTINS {
        for name in *names {
            let file = target.join("wasm32-wasip2/release").join(format!("strata_plugin_{}.wasm", name.replace('-', "_")));
            let embedded = out.join(format!("{name}.wasm"));
            std::fs::copy(&file, &embedded).map_err(|e| format!("{}: {e}", file.display()))?;
            let kind = match *kind {
                "node-selector" => "NodeSelector",
                "replication-strategy" => "ReplicationStrategy",
                _ => "IndexType",
            };
            writeln!(
                table,
                "    Builtin {{ name: {name:?}, kind: Kind::{kind}, wasm: include_bytes!({:?}) }},",
                embedded.display().to_string()
            )?;
        }
    }
    table.push_str("];\n");
    std::fs::write(out.join("builtin_plugins.rs"), table)?;
    Ok(())
}

/// Adds the `wasm32-wasip2` target through rustup when the toolchain lacks
/// it, so `cargo run` and `cargo test` work on a machine with only rustup's
/// default toolchain.
fn ensure_target() -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output()?;
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Ok(());
    }
    println!("cargo:warning=the wasm32-wasip2 target is missing; running `rustup target add wasm32-wasip2`");
    // rustup sets RUSTUP_TOOLCHAIN for the toolchain that runs this build.
    let status = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        other => Err(format!(
            "the built-in plugins need the wasm32-wasip2 target and `rustup target add wasm32-wasip2` \
             failed ({other:?}): install the target for this toolchain and build again"
        )
        .into()),
    }
}
