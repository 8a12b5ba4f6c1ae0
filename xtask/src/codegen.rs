//! `cargo xtask codegen [--check]`: writes `openapi/openapi.json` from `api::openapi()` (the
//! same registrations the server mounts; no server, state or database needed). With `--check`,
//! and in the `openapi_is_fresh` test, a stale committed file is an error.

use crate::root;
use anyhow::bail;

/// The document as committed: pretty JSON with a trailing newline.
pub(crate) fn openapi_text() -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&api::openapi())? + "\n")
}

pub(crate) fn generate(check: bool) -> anyhow::Result<()> {
    let path = root().join("openapi/openapi.json");
    let text = openapi_text()?;
    let current = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .replace("\r\n", "\n");
    if current == text {
        eprintln!("xtask: {} is fresh", path.display());
        return Ok(());
    }
    if check {
        bail!(
            "{} is stale; run `cargo xtask codegen` and commit the result",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn openapi_is_fresh() {
        super::generate(true).unwrap();
    }

    fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        out.push((path.clone(), v));
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| walk(c, format!("{path}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, c)| walk(c, format!("{path}/{i}"), out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_no_stray_nulls_and_every_route_is_documented() {
        let doc: Value = serde_json::from_str(&super::openapi_text().unwrap()).unwrap();
        let mut nodes = Vec::new();
        walk(&doc, String::new(), &mut nodes);
        for (path, v) in &nodes {
            if let Some(r) = v.get("$ref").and_then(Value::as_str) {
                let target = r
                    .trim_start_matches("#/")
                    .split('/')
                    .try_fold(&doc, |cur, seg| cur.get(seg));
                assert!(target.is_some(), "{path}: $ref {r} does not resolve");
            }
            // Nulls only where an example shows Stytch's null fields, or where an enum admits
            // null (an optional field that may be sent as null).
            if v.is_null() {
                assert!(
                    path.contains("/example") || path.contains("/enum/"),
                    "{path} is null"
                );
            }
        }
        // Every field of every schema says what it is.
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let mut props = Vec::new();
            walk(schema, name.clone(), &mut props);
            for (path, node) in props {
                if let Some(p) = node.get("properties").and_then(Value::as_object) {
                    for (field, def) in p {
                        if path.contains("oneOf") || path.contains("anyOf") || path.ends_with("/items") {
                            continue; // the combinators' branches restate fields already described
                        }
                        // utoipa drops doc comments on fields that are references to another
                        // schema; those schemas describe themselves.
                        let is_ref = def.get("$ref").is_some()
                            || def["oneOf"]
                                .as_array()
                                .is_some_and(|o| o.iter().any(|b| b.get("$ref").is_some()));
                        assert!(
                            is_ref || def.get("description").is_some(),
                            "{path}: field `{field}` has no description"
                        );
                    }
                }
            }
        }
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/users",
            "/v1/users/search",
            "/v1/users/{user_id}",
            "/v1/users/totps/{totp_id}",
            "/v1/totps",
            "/v1/totps/authenticate",
            "/v1/totps/recovery_codes",
            "/v1/totps/recover",
            "/v1/sessions/authenticate",
            "/v1/sessions",
            "/v1/sessions/revoke",
            "/v1/sessions/jwks/{project_id}",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        for (p, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{method} {p}: no summary"
                );
                let responses = op["responses"].as_object().unwrap();
                for status in ["200", "404", "429", "500", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {p}: {status} undocumented"
                    );
                }
                let public = p.starts_with("/v1/sessions/jwks");
                assert_eq!(op.get("security").is_some(), !public, "{method} {p}: security");
            }
        }
    }
}
