//! `strata models`: models in the registry's repositories (`ls`, `show`,
//! `tag`, `rm`), found by what is inside them (`search`: the registry
//! records GGUF and safetensors headers as attributes of each manifest and
//! tag). Import and export of an Ollama models directory are in
//! [`super::ollama`].

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::api::pb;
use crate::cli::ModelsCmd;
use crate::cli::client::{Client, status};

pub async fn run(c: &mut Client, cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::Import { dir, models, json } => super::ollama::import(c, &dir, &models, json).await,
        ModelsCmd::Export { dir, models, host, json } => super::ollama::export(c, &dir, &models, host.as_deref(), json).await,
        ModelsCmd::Ls { prefix, json } => ls(c, prefix.unwrap_or_default(), json).await,
        ModelsCmd::Show { model, json } => show(c, &model, json).await,
        ModelsCmd::Tag { source, target, json } => tag(c, &source, &target, json).await,
        ModelsCmd::Rm { models, json } => rm(c, &models, json).await,
        ModelsCmd::Search { query, bucket, limit, json } => search(c, query, bucket, limit, json).await,
    }
}

/// A model name as `ollama` takes it: `[host/][namespace/]model[:tag|@digest]`.
/// No namespace means `library`, no tag `latest`; a first component that
/// looks like a host (a `.` or `:` in it, or `localhost`) is dropped.
/// Answers the repository and the reference.
pub fn model_ref(name: &str) -> anyhow::Result<(String, String)> {
    let (path, reference) = match name.split_once('@') {
        Some((p, d)) => (p, d.to_string()),
        None => match name.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, t.to_string()),
            _ => (name, "latest".to_string()),
        },
    };
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    if parts.len() == 1 {
        parts.insert(0, "library");
    }
    if parts.iter().any(|p| p.is_empty()) || reference.is_empty() {
        bail!("{name:?} is not a model name: write [namespace/]model[:tag], e.g. library/llama3:8b");
    }
    Ok((parts.join("/"), reference))
}

/// The tag's attributes, from their JSON text.
pub fn attributes(m: &pb::Model) -> serde_json::Map<String, Value> {
    serde_json::from_str(&m.attributes_json).unwrap_or_default()
}

pub fn model_json(m: &pb::Model) -> Value {
    json!({
        "name": format!("{}:{}", m.repository, m.tag), "repository": m.repository, "tag": m.tag,
        "digest": m.digest, "media_type": m.media_type, "size": m.size, "modified_ms": m.modified_ms,
        "attributes": attributes(m),
    })
}

/// `s` with control characters escaped: what a model file says must not
/// move the terminal's cursor or hide lines.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().collect() } else { c.to_string() }).collect()
}

/// Architecture and quantization (or dtype), when a layer said.
fn what(a: &serde_json::Map<String, Value>) -> (String, String) {
    let field = |o: &str, k: &str| a.get(o).and_then(|g| g.get(k)).and_then(|v| v.as_str()).map(printable);
    let arch = field("gguf", "architecture").unwrap_or_else(|| "-".into());
    let quant = field("gguf", "file_type").or_else(|| field("safetensors", "dtype")).unwrap_or_else(|| "-".into());
    (arch, quant)
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

async fn ls(c: &mut Client, prefix: String, json: bool) -> anyhow::Result<()> {
    let models = c.model_list(pb::ModelListRequest { prefix }).await.map_err(status)?.into_inner().models;
    if json {
        println!("{}", Value::Array(models.iter().map(model_json).collect()));
        return Ok(());
    }
    println!("{:<44} {:<12} {:>10}  {:<14} {:<10} MODIFIED", "NAME", "ID", "SIZE", "ARCH", "QUANT");
    for m in &models {
        let (arch, quant) = what(&attributes(m));
        let when = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.modified_ms.max(0) as u64));
        let name = format!("{}:{}", m.repository, m.tag);
        println!("{name:<44} {:<12} {:>10}  {arch:<14} {quant:<10} {when}", short(&m.digest), bytesize::ByteSize(m.size).to_string());
    }
    Ok(())
}

async fn show(c: &mut Client, name: &str, json: bool) -> anyhow::Result<()> {
    let (repository, reference) = model_ref(name)?;
    let s = c.model_show(pb::ModelShowRequest { repository, reference }).await.map_err(status)?.into_inner();
    let m = s.model.context("the server sent no model")?;
    let layer = |l: &pb::ModelLayer| json!({"media_type": l.media_type, "digest": l.digest, "size": l.size});
    if json {
        let manifest: Value = serde_json::from_slice(&s.manifest).unwrap_or(Value::Null);
        let out = json!({
            "model": model_json(&m), "manifest": manifest,
            "config": s.config.as_ref().map(layer), "layers": s.layers.iter().map(layer).collect::<Vec<_>>(),
            "manifests": s.manifests.iter().map(layer).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(());
    }
    let a = attributes(&m);
    println!("name:        {}:{}", m.repository, if m.tag.is_empty() { "-" } else { &m.tag });
    println!("digest:      {}", m.digest);
    println!("media type:  {}", printable(&m.media_type));
    println!("size:        {} ({} bytes)", bytesize::ByteSize(m.size), m.size);
    if let Some(h) = a.get("ollama.host").and_then(Value::as_str) {
        println!("imported from: {}", printable(h));
    }
    for (kind, l) in s
        .config
        .iter()
        .map(|l| ("config", l))
        .chain(s.layers.iter().map(|l| ("layer", l)))
        .chain(s.manifests.iter().map(|l| ("manifest", l)))
    {
        println!("{kind:<8} {:>10}  {}  {}", bytesize::ByteSize(l.size).to_string(), printable(&l.digest), printable(&l.media_type));
    }
    for key in ["gguf", "safetensors"] {
        if let Some(Value::Object(o)) = a.get(key) {
            println!("{key}:");
            for (k, v) in o {
                println!("  {:<20} {}", printable(k), printable(&v.as_str().map_or_else(|| v.to_string(), str::to_string)));
            }
        }
    }
    Ok(())
}

async fn tag(c: &mut Client, source: &str, target: &str, json: bool) -> anyhow::Result<()> {
    let (repository, reference) = model_ref(source)?;
    let (to_repository, to_tag) = model_ref(target)?;
    if to_tag.contains(':') {
        bail!("{target:?}: a new name takes a tag, not a digest");
    }
    let m = c.model_tag(pb::ModelTagRequest { repository, reference, to_repository, to_tag }).await.map_err(status)?.into_inner();
    if json {
        println!("{}", model_json(&m));
    } else {
        println!("tagged {}:{} ({})", m.repository, m.tag, m.digest);
    }
    Ok(())
}

async fn rm(c: &mut Client, names: &[String], json: bool) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for name in names {
        let (repository, tag) = model_ref(name)?;
        let r =
            c.model_remove(pb::ModelRemoveRequest { repository: repository.clone(), tag: tag.clone() }).await.map_err(status)?.into_inner();
        if json {
            out.push(json!({"name": format!("{repository}:{tag}"), "digest": r.digest, "manifest_removed": r.manifest_removed}));
        } else if tag.contains(':') {
            println!("removed manifest {repository}@{tag} and every tag naming it");
        } else if r.manifest_removed {
            println!("removed {repository}:{tag} and its manifest {} (layers nothing else uses are freed)", short(&r.digest));
        } else {
            println!("removed {repository}:{tag} (its manifest {} has other tags)", short(&r.digest));
        }
    }
    if json {
        println!("{}", Value::Array(out));
    }
    Ok(())
}

async fn search(c: &mut Client, query: String, bucket: String, limit: u32, json: bool) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::model_ref;

    #[test]
    fn names_as_ollama_writes_them() {
        let r = |n: &str| model_ref(n).unwrap();
        assert_eq!(r("llama3"), ("library/llama3".into(), "latest".into()));
        assert_eq!(r("llama3:8b"), ("library/llama3".into(), "8b".into()));
        assert_eq!(r("me/m:q4_K_M"), ("me/m".into(), "q4_K_M".into()));
        assert_eq!(r("registry.ollama.ai/library/llama3:8b"), ("library/llama3".into(), "8b".into()));
        assert_eq!(r("127.0.0.1:5000/me/m"), ("me/m".into(), "latest".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(r(&format!("me/m@{d}")), ("me/m".into(), d));
        assert!(model_ref("a//b").is_err());
        assert!(model_ref("a:").is_err());
    }
}
