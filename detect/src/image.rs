//! Container image references and the patterns that match them.
//!
//! Patterns are matched against the image's repository in its canonical form, as the
//! container runtime resolves it: `nginx:1.27` is `docker.io/library/nginx`,
//! `calico/node@sha256:…` is `docker.io/calico/node`. Writing patterns against the
//! canonical form means `redis`, `docker.io/redis` and `index.docker.io/library/redis`
//! cannot slip past a rule by spelling.

/// The canonical repository of an image reference: registry and path, without tag or digest.
pub(crate) fn repository(image: &str) -> String {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    // A tag follows the last ':' after the last '/'; an earlier ':' is a registry port.
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_registry = first.contains(['.', ':']) || first == "localhost";
    let canonical = if has_registry {
        let registry = if first == "index.docker.io" { "docker.io" } else { first };
        format!("{registry}/{rest}")
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{name}")
    };
    canonical.to_ascii_lowercase()
}

/// Whether any pattern matches the repository; see [`glob`].
pub(crate) fn matches_any(patterns: &[String], repository: &str) -> Option<String> {
    patterns.iter().find(|p| glob(p, repository)).cloned()
}

/// Shell-style matching where `*` matches any run of characters, `/` included.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star, swallowed)) = backtrack {
            pi = star + 1;
            ti = swallowed + 1;
            backtrack = Some((star, swallowed + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_canonicalised() {
        assert_eq!(repository("nginx"), "docker.io/library/nginx");
        assert_eq!(repository("redis:7.2"), "docker.io/library/redis");
        assert_eq!(repository("bitnami/redis:7.2"), "docker.io/bitnami/redis");
        assert_eq!(repository("index.docker.io/library/redis"), "docker.io/library/redis");
        assert_eq!(repository("registry.k8s.io/kube-proxy:v1.33.1"), "registry.k8s.io/kube-proxy");
        assert_eq!(repository("localhost:5000/miner:latest"), "localhost:5000/miner");
        assert_eq!(repository("quay.io/cilium/cilium:v1.16@sha256:abc"), "quay.io/cilium/cilium");
        assert_eq!(repository("XMRig/XMRig"), "docker.io/xmrig/xmrig");
    }

    #[test]
    fn globs_match_whole_strings() {
        assert!(glob("registry.k8s.io/*", "registry.k8s.io/kube-proxy"));
        assert!(glob("*/redis", "docker.io/library/redis"));
        assert!(!glob("*/redis", "docker.io/oliver006/redis_exporter"));
        assert!(glob("*xmrig*", "docker.io/metal3d/xmrig"));
        assert!(glob(
            "602401143452.dkr.ecr.*.amazonaws.com/*",
            "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/kube-proxy"
        ));
        assert!(!glob("registry.k8s.io/*", "registry.k8s.io.evil.com/kube-proxy"));
        assert!(!glob("registry.k8s.io/*", "evil.io/registry.k8s.io"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
        assert_eq!(
            matches_any(&["*/postgres".into(), "*/postgresql".into()], "docker.io/bitnami/postgresql"),
            Some("*/postgresql".into())
        );
    }
}
