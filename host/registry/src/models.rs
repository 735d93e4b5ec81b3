//! What is inside a model layer, as searchable attributes: the header of a
//! GGUF file (llama.cpp's format, which Ollama stores) or of a safetensors
//! file. Both readers work on the first bytes of the layer only, check
//! every length against what is there, and never allocate more than the
//! input holds.

use serde_json::{Map, Value, json};

/// How many leading bytes of a layer are read for its header.
pub const HEADER_WINDOW: u64 = 32 << 20;

/// Attributes of a layer whose bytes start with `head`: `{"gguf": {...}}`
/// or `{"safetensors": {...}}`, or nothing for other content.
pub fn describe(head: &[u8], size: u64) -> Option<(String, Value)> {
    if head.starts_with(b"GGUF") {
        return gguf(head).ok().map(|v| ("gguf".into(), v));
    }
    safetensors(head, size).ok().map(|v| ("safetensors".into(), v))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or("truncated")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn len(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        // Nothing can be longer than what is left.
        usize::try_from(n).ok().filter(|n| *n <= self.b.len() - self.at).ok_or_else(|| "a length beyond the data".to_string())
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    /// A value of GGUF type `t`: scalars and strings kept, arrays skipped.
    fn value(&mut self, t: u32, depth: u32) -> Result<Value, String> {
        Ok(match t {
            0 => json!(self.take(1)?[0]),
            1 => json!(self.take(1)?[0] as i8),
            2 => json!(u16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            3 => json!(i16::from_le_bytes(self.take(2)?.try_into().expect("2"))),
            4 => json!(self.u32()?),
            5 => json!(self.u32()? as i32),
            6 => json!(f32::from_le_bytes(self.take(4)?.try_into().expect("4"))),
            7 => json!(self.take(1)?[0] != 0),
            8 => json!(self.string()?),
            9 => {
                if depth > 2 {
                    return Err("arrays nested too deep".into());
                }
                let (et, n) = (self.u32()?, self.u64()?);
                let fixed = match et {
                    0 | 1 | 7 => Some(1u64),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    Some(w) => {
                        let bytes = n.checked_mul(w).and_then(|b| usize::try_from(b).ok()).ok_or("array too large")?;
                        self.take(bytes)?;
                    }
                    None => {
                        if n > (self.b.len() - self.at) as u64 {
                            return Err("array longer than the data".into());
                        }
                        for _ in 0..n {
                            self.value(et, depth + 1)?;
                        }
                    }
                }
                Value::Null
            }
            10 => json!(self.u64()?),
            11 => json!(self.u64()? as i64),
            12 => json!(f64::from_le_bytes(self.take(8)?.try_into().expect("8"))),
            other => return Err(format!("unknown value type {other}")),
        })
    }
}

/// llama.cpp's `general.file_type` names.
fn file_type(n: u64) -> Option<&'static str> {
    Some(match n {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

/// The header of a GGUF file (versions 2 and 3): its metadata's scalars
/// and strings under their keys, and the tensor and parameter counts.
pub fn gguf(b: &[u8]) -> Result<Value, String> {
    let mut c = Cursor { b, at: 0 };
    if c.take(4)? != b"GGUF" {
        return Err("not GGUF".into());
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not read (2 and 3 are)"));
    }
    let (tensors, kvs) = (c.u64()?, c.u64()?);
    let mut meta = Map::new();
    for _ in 0..kvs {
        let key = c.string()?;
        let t = c.u32()?;
        let v = c.value(t, 0)?;
        if !v.is_null() && key.len() <= 256 {
            meta.insert(key, v);
        }
    }
    let mut out = Map::new();
    out.insert("version".into(), json!(version));
    out.insert("tensor_count".into(), json!(tensors));
    let arch = meta.get("general.architecture").and_then(Value::as_str).map(str::to_string);
    if let Some(a) = &arch {
        out.insert("architecture".into(), json!(a));
    }
    for (k, name) in
        [("general.name", "name"), ("general.quantization_version", "quantization_version"), ("general.size_label", "size_label")]
    {
        if let Some(v) = meta.get(k) {
            out.insert(name.into(), v.clone());
        }
    }
    if let Some(ft) = meta.get("general.file_type").and_then(Value::as_u64) {
        out.insert("file_type".into(), json!(file_type(ft).map_or_else(|| ft.to_string(), str::to_string)));
        out.insert("file_type_id".into(), json!(ft));
    }
    if let Some(a) = &arch {
        for field in ["context_length", "block_count", "embedding_length", "expert_count"] {
            if let Some(v) = meta.get(&format!("{a}.{field}")) {
                out.insert(field.into(), v.clone());
            }
        }
    }
    // Tensor infos follow: their shapes give the parameter count, when
    // they all lie within the bytes read.
    let mut params: u64 = 0;
    let counted = (|| -> Result<(), String> {
        for _ in 0..tensors {
            c.string()?;
            let dims = c.u32()?;
            if dims > 8 {
                return Err("a tensor with more than 8 dimensions".into());
            }
            let mut n: u64 = 1;
            for _ in 0..dims {
                n = n.saturating_mul(c.u64()?);
            }
            c.u32()?;
            c.u64()?;
            params = params.saturating_add(n);
        }
        Ok(())
    })();
    if counted.is_ok() {
        out.insert("parameter_count".into(), json!(params));
    }
    Ok(Value::Object(out))
}

/// The header of a safetensors file: tensor and parameter counts, the
/// dtypes, and the free-form `__metadata__`. `size` is the whole file's,
/// to check the header's offsets against.
pub fn safetensors(b: &[u8], size: u64) -> Result<Value, String> {
    let n = u64::from_le_bytes(b.get(..8).ok_or("truncated")?.try_into().expect("8 bytes"));
    if n > 100 << 20 || 8 + n > size {
        return Err("not a safetensors header".into());
    }
    let json = b.get(8..8 + n as usize).ok_or("the header is beyond the bytes read")?;
    if json.first() != Some(&b'{') {
        return Err("not a safetensors header".into());
    }
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let tensors = meta.tensors();
    let mut params: u64 = 0;
    let mut dtypes = std::collections::BTreeMap::<String, u64>::new();
    for info in tensors.values() {
        let count = info.shape.iter().fold(1u64, |a, d| a.saturating_mul(*d as u64));
        params = params.saturating_add(count);
        *dtypes.entry(format!("{:?}", info.dtype)).or_default() += count;
        if 8 + n + info.data_offsets.1 as u64 > size {
            return Err("a tensor lies beyond the file".into());
        }
    }
    let mut out = Map::new();
    out.insert("tensor_count".into(), json!(tensors.len()));
    out.insert("parameter_count".into(), json!(params));
    if let Some((dtype, _)) = dtypes.iter().max_by_key(|(_, n)| **n) {
        out.insert("dtype".into(), json!(dtype));
    }
    if let Some(m) = meta.metadata() {
        for (k, v) in m.iter().take(64) {
            out.insert(format!("meta_{k}"), json!(v));
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 header: a few metadata values (with an array, as a vocab)
    /// and two tensors of 4x8 and 8.
    pub fn sample() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(5u64.to_le_bytes());
        let s = |b: &mut Vec<u8>, v: &str| {
            b.extend((v.len() as u64).to_le_bytes());
            b.extend(v.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "general.file_type");
        b.extend(4u32.to_le_bytes());
        b.extend(15u32.to_le_bytes());
        s(&mut b, "llama.context_length");
        b.extend(4u32.to_le_bytes());
        b.extend(4096u32.to_le_bytes());
        s(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        s(&mut b, "a");
        s(&mut b, "b");
        s(&mut b, "general.name");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "tiny");
        for (name, dims) in [("w", vec![4u64, 8]), ("b", vec![8])] {
            s(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(0u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_gguf_header_reads() {
        let v = gguf(&sample()).unwrap();
        assert_eq!(v["architecture"], "llama");
        assert_eq!(v["file_type"], "Q4_K_M");
        assert_eq!(v["context_length"], 4096);
        assert_eq!(v["name"], "tiny");
        assert_eq!(v["tensor_count"], 2);
        assert_eq!(v["parameter_count"], 40);
    }

    /// Every truncation and many random corruptions of a header: an error
    /// or a value, never a panic, never an allocation beyond the input.
    #[test]
    fn damaged_headers_never_panic() {
        let good = sample();
        for n in 0..good.len() {
            let _ = gguf(&good[..n]);
            let _ = describe(&good[..n], n as u64);
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            let _ = gguf(&b);
            let _ = safetensors(&b, b.len() as u64);
        }
    }

    #[test]
    fn a_safetensors_header_reads() {
        let header = br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header);
        file.extend([0u8; 24]);
        let v = safetensors(&file, file.len() as u64).unwrap();
        assert_eq!(v["tensor_count"], 2);
        assert_eq!(v["parameter_count"], 9);
        assert_eq!(v["meta_format"], "pt");
        assert!(safetensors(&file, file.len() as u64 - 1).is_err(), "a tensor beyond the file");
    }
}
