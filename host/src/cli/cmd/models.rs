//! `strata models`: models in the OCI registry, found by what is inside
//! them (the registry records GGUF and safetensors headers as attributes
//! of each manifest and tag).

use anyhow::bail;
use serde_json::json;

use crate::api::pb;
use crate::cli::ModelsCmd;
use crate::cli::client::{Client, status};

pub async fn run(c: &mut Client, cmd: ModelsCmd) -> anyhow::Result<()> {
    let ModelsCmd::Search { query, bucket, limit, json } = cmd;
    let expr = match crate::search::parse(&query) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}", e.pointer(&query));
            bail!("bad query {e}");
        }
    };
    let req = pb::SearchRequest { bucket, filter: Some(super::search::filter_of(&expr)), limit, ..Default::default() };
    let found = c.search(req).await.map_err(status)?.into_inner();
    // Tags name models (`repo:tag`); manifests found by digest alone are left out.
    let mut rows = Vec::new();
    for o in &found.objects {
        let Some((repo, tag)) = o.key.split_once("/_tags/") else { continue };
        let attrs: serde_json::Map<String, serde_json::Value> =
            o.attributes.iter().map(|(k, v)| (k.clone(), unfold(crate::cli::output::value(v)))).collect();
        rows.push((format!("{repo}:{tag}"), attrs));
    }
    if json {
        let out: Vec<_> = rows.iter().map(|(m, a)| json!({"model": m, "attributes": a})).collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(());
    }
    for (model, a) in &rows {
        let g = a.get("gguf").or_else(|| a.get("safetensors"));
        let field = |k: &str| g.and_then(|g| g.get(k)).map(|v| v.to_string().trim_matches('"').to_string()).unwrap_or_else(|| "-".into());
        println!("{model:<40} {:<12} {:<10} {:>14}", field("architecture"), field("file_type"), field("parameter_count"));
    }
    Ok(())
}

/// The API carries an object attribute (the registry's `gguf`,
/// `safetensors`) as its JSON text: shown as the object again.
fn unfold(v: serde_json::Value) -> serde_json::Value {
    match v.as_str().filter(|s| s.starts_with('{')).and_then(|s| serde_json::from_str(s).ok()) {
        Some(o) => o,
        None => v,
    }
}
