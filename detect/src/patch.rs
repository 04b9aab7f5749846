//! Which fields a patch document changes.
//!
//! A `patch` event's response is the whole object after the change, so a rule looking at it
//! alone would raise again on every later patch of an object that was already privileged
//! (a rollout restart, `kubectl set image`, a label). The patch document says what the
//! request changed: a rule keeps a patched object only when the patch touches the fields it
//! is about.

use serde_json::Value;

/// Whether the patch (JSON patch, merge patch, strategic merge patch or apply patch) sets or
/// removes a field named by one of `keys`, anywhere outside `metadata`. Labels and
/// annotations are never what a rule is about, and client-side `kubectl apply` puts the
/// whole object, as text, in an annotation. A patch that cannot be read touches everything.
pub(crate) fn patch_touches(patch: &str, keys: &[&str]) -> bool {
    match serde_json::from_str::<Value>(patch) {
        Ok(Value::Array(operations)) => operations.iter().any(|op| json_patch_operation_touches(op, keys)),
        Ok(Value::Object(fields)) => object_touches(&fields, keys),
        _ => true,
    }
}

fn json_patch_operation_touches(operation: &Value, keys: &[&str]) -> bool {
    let Some(path) = operation.get("path").and_then(Value::as_str) else {
        return true;
    };
    let segments: Vec<String> = path.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    if segments.iter().any(|s| s == "metadata") {
        return false;
    }
    if segments.iter().any(|s| keys.contains(&s.as_str())) {
        return true;
    }
    match operation.get("value") {
        Some(Value::Object(fields)) => object_touches(fields, keys),
        Some(Value::Array(items)) => items.iter().any(|item| item.as_object().is_some_and(|f| object_touches(f, keys))),
        _ => false,
    }
}

fn object_touches(fields: &serde_json::Map<String, Value>, keys: &[&str]) -> bool {
    fields.iter().any(|(key, value)| {
        if key == "metadata" {
            return false;
        }
        if keys.contains(&key.as_str()) {
            return true;
        }
        match value {
            Value::Object(inner) => object_touches(inner, keys),
            Value::Array(items) => items.iter().any(|item| item.as_object().is_some_and(|f| object_touches(f, keys))),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVILEGED: &[&str] = &["privileged"];

    #[test]
    fn strategic_merge_patches_are_walked_outside_metadata() {
        let restart = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-06-01T12:00:00Z"}}}}}"#;
        assert!(!patch_touches(restart, PRIVILEGED));
        let set_image = r#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.28","name":"web"}]}}}}"#;
        assert!(!patch_touches(set_image, PRIVILEGED));
        assert!(patch_touches(set_image, &["image"]));
        let escalate =
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","securityContext":{"privileged":true}}]}}}}"#;
        assert!(patch_touches(escalate, PRIVILEGED));
        // Client-side apply carries the whole object as text in an annotation.
        let apply = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"privileged\":true}"}},"spec":{"replicas":3}}"#;
        assert!(!patch_touches(apply, PRIVILEGED));
    }

    #[test]
    fn json_patches_are_read_by_path_and_value() {
        assert!(patch_touches(
            r#"[{"op":"replace","path":"/spec/containers/0/securityContext/privileged","value":true}]"#,
            PRIVILEGED
        ));
        assert!(patch_touches(
            r#"[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"x","securityContext":{"privileged":true}}}]"#,
            PRIVILEGED
        ));
        assert!(!patch_touches(r#"[{"op":"add","path":"/metadata/labels/privileged","value":"yes"}]"#, PRIVILEGED));
        assert!(!patch_touches(r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#, PRIVILEGED));
        assert!(patch_touches(
            r#"[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":"https://x"}]"#,
            &["url"]
        ));
    }

    #[test]
    fn an_unreadable_patch_touches_everything() {
        assert!(patch_touches("spec:\n  replicas: 2\n", PRIVILEGED));
        assert!(patch_touches("[{\"op\":\"add\"}]", PRIVILEGED));
    }
}
