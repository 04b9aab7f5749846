//! The in-kernel file filter: which paths the open, unlink, rename and utimensat events
//! are sent for. Both lists are LPM tries in the kernel; a suffix is stored reversed, so
//! that "ends with" is a longest-prefix lookup on the reversed path.

use crate::Error;

/// Longest prefix or suffix (bytes); the kernel compares at most this many.
pub const MAX_PATTERN_LEN: usize = 64;
/// Most patterns per list (the tries' `max_entries`).
pub const MAX_PATTERNS: usize = 256;

/// Paths starting with one of `prefixes` or ending with one of `suffixes`. A relative path
/// (`openat(dirfd, ".bash_history")`) can only match a suffix; the kernel tries it as if it
/// followed a `/`, so `authorized_keys` opened in `~/.ssh` matches `/authorized_keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathFilter {
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

/// What the runtime rules read: credentials, SSH and cron persistence, Kubernetes' and the
/// kubelet's secrets, logs that an intruder erases, shell histories.
pub const DEFAULT_PREFIXES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/sudoers",
    "/etc/kubernetes/",
    "/var/lib/kubelet/",
    "/var/log/",
    "/root/.ssh/",
    "/etc/ssh/",
    "/etc/cron",
    "/var/spool/cron",
    "/proc/self/exe",
    "/var/run/secrets/kubernetes.io/",
    "/run/secrets/kubernetes.io/",
];

pub const DEFAULT_SUFFIXES: &[&str] = &[
    "_history",
    "/authorized_keys",
    "/authorized_keys2",
    "/wtmp",
    "/btmp",
    "/lastlog",
    "/utmp",
    "/kubeconfig",
    "kubelet.conf",
    "/.kube/config",
    "/shadow",
];

impl Default for PathFilter {
    fn default() -> Self {
        PathFilter {
            prefixes: DEFAULT_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
            suffixes: DEFAULT_SUFFIXES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl PathFilter {
    pub fn new(
        prefixes: impl IntoIterator<Item = impl Into<String>>,
        suffixes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, Error> {
        let filter = PathFilter {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            suffixes: suffixes.into_iter().map(Into::into).collect(),
        };
        for list in [&filter.prefixes, &filter.suffixes] {
            if list.len() > MAX_PATTERNS {
                return Err(Error::Filter {
                    pattern: list[MAX_PATTERNS].clone(),
                    reason: "too many patterns (256 at most)",
                });
            }
            for pattern in list {
                if pattern.is_empty() {
                    return Err(Error::Filter { pattern: pattern.clone(), reason: "empty" });
                }
                if pattern.len() > MAX_PATTERN_LEN {
                    return Err(Error::Filter { pattern: pattern.clone(), reason: "longer than 64 bytes" });
                }
                if pattern.contains('\0') {
                    return Err(Error::Filter { pattern: pattern.clone(), reason: "contains a NUL" });
                }
            }
        }
        Ok(filter)
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    pub fn suffixes(&self) -> &[String] {
        &self.suffixes
    }

    /// The prefix trie's keys: (length in bits, the bytes).
    pub(crate) fn prefix_keys(&self) -> impl Iterator<Item = (u32, [u8; MAX_PATTERN_LEN])> + '_ {
        self.prefixes.iter().map(|p| key(p.bytes()))
    }

    /// The suffix trie's keys: each suffix reversed.
    pub(crate) fn suffix_keys(&self) -> impl Iterator<Item = (u32, [u8; MAX_PATTERN_LEN])> + '_ {
        self.suffixes.iter().map(|s| key(s.bytes().rev()))
    }
}

fn key(bytes: impl Iterator<Item = u8>) -> (u32, [u8; MAX_PATTERN_LEN]) {
    let mut data = [0; MAX_PATTERN_LEN];
    let mut len = 0;
    for (slot, byte) in data.iter_mut().zip(bytes) {
        *slot = byte;
        len += 1;
    }
    (len * 8, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An LPM trie's answer: some key whose first `bits` agree with the looked-up data.
    fn trie_has(keys: &[(u32, [u8; MAX_PATTERN_LEN])], bits: u32, data: &[u8; MAX_PATTERN_LEN]) -> bool {
        keys.iter().any(|(len, key)| *len <= bits && key[..*len as usize / 8] == data[..*len as usize / 8])
    }

    /// The lookups `path_wanted` in sensor.bpf.c makes, over the same keys.
    fn kernel_wants(filter: &PathFilter, path: &str) -> bool {
        let prefixes: Vec<_> = filter.prefix_keys().collect();
        let suffixes: Vec<_> = filter.suffix_keys().collect();
        let bytes = path.as_bytes();
        let (bits, data) = key(bytes.iter().copied());
        if trie_has(&prefixes, bits, &data) {
            return true;
        }
        let mut reversed: Vec<u8> = bytes.iter().rev().take(MAX_PATTERN_LEN).copied().collect();
        if !path.starts_with('/') && reversed.len() < MAX_PATTERN_LEN {
            reversed.push(b'/');
        }
        let (bits, data) = key(reversed.into_iter());
        trie_has(&suffixes, bits, &data)
    }

    #[test]
    fn default_filter_matches_what_the_rules_read_and_nothing_else() {
        let filter = PathFilter::default();
        for path in [
            "/etc/shadow",
            "/etc/shadow-",
            "/etc/sudoers.d/90-cloud",
            "/var/log/auth.log",
            "/root/.ssh/id_rsa",
            "/etc/crontab",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "/home/alice/.bash_history",
            ".bash_history",
            "authorized_keys",
            "/home/bob/.ssh/authorized_keys2",
            "/var/log/wtmp",
            "/home/bob/.kube/config",
            "/etc/kubernetes/kubelet.conf",
            "shadow",
            // Longer than the 64 bytes compared: the prefix still decides.
            "/var/lib/kubelet/pods/0a1b2c3d-0000-1111-2222-333344445555/volumes/kubernetes.io~secret/x/token",
        ] {
            assert!(kernel_wants(&filter, path), "{path} should match");
        }
        for path in [
            "/etc/hosts",
            "/etc/ld.so.cache",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/tmp/history",
            "/etc/passw",
            "/home/bob/.ssh/known_hosts",
            "config",
            "/proc/self/status",
        ] {
            assert!(!kernel_wants(&filter, path), "{path} should not match");
        }
    }

    #[test]
    fn suffixes_are_reversed_and_lengths_are_in_bits() {
        let filter = PathFilter::new(["/etc/"], ["_history"]).unwrap();
        let (bits, data) = filter.suffix_keys().next().unwrap();
        assert_eq!(bits, 64);
        assert_eq!(&data[..8], b"yrotsih_");
        let (bits, data) = filter.prefix_keys().next().unwrap();
        assert_eq!((bits, &data[..5]), (40, &b"/etc/"[..]));
    }

    #[test]
    fn invalid_patterns_are_refused() {
        assert!(PathFilter::new([""], Vec::<String>::new()).is_err());
        assert!(PathFilter::new(Vec::<String>::new(), ["x".repeat(65)]).is_err());
        assert!(PathFilter::new(["a\0b"], Vec::<String>::new()).is_err());
        assert!(PathFilter::new((0..257).map(|i| format!("/{i}")), Vec::<String>::new()).is_err());
        assert!(PathFilter::new(["x".repeat(64)], ["y"]).is_ok());
    }
}
