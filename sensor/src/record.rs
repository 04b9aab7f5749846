//! Decoding the ring buffer's records (the structs of `bpf/sensor.bpf.c`, little-endian,
//! explicit padding) by offset, without casts: a short or unknown record is an error, not
//! undefined behaviour.

use std::net::{Ipv4Addr, Ipv6Addr};

use riposte_detect::runtime::Endpoint;

/// Sizes and offsets shared with the C structs (checked there by `_Static_assert`).
const HDR_LEN: usize = 24;
const EXEC_COMM: usize = 48;
const EXEC_CGROUP: usize = 64;
const EXEC_CGROUP_PARENT: usize = 192;
const EXEC_FILENAME: usize = 320;
const EXEC_ARGS: usize = 832;
const CGROUP_NAME_LEN: usize = 128;
const COMM_LEN: usize = 16;
const FILENAME_LEN: usize = 512;
const FILE_PATH: usize = 48;
const FILE_PATH2: usize = 560;
const PATH_LEN: usize = 512;
const NET_ADDR: usize = 40;
const NET_UNIX_PATH: usize = 56;
const NET_LEN: usize = 168;
const UNIX_PATH_LEN: usize = 108;
const MISC_SHORT_LEN: usize = 56;
const MISC_S1: usize = 312;
const MISC_S2: usize = 568;
const MISC_LEN: usize = 632;
const MOUNT_STR_LEN: usize = 256;
const FSTYPE_LEN: usize = 64;

const KIND_EXEC: u32 = 1;
const KIND_EXIT: u32 = 2;
const KIND_FORK: u32 = 3;
const KIND_FILE: u32 = 4;
const KIND_NET: u32 = 5;
const KIND_MISC: u32 = 6;

const EXEC_SESSION_ENTRY: u32 = 1;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;

/// x86_64 syscall numbers the program reports.
mod nr {
    pub const OPEN: u32 = 2;
    pub const DUP2: u32 = 33;
    pub const CONNECT: u32 = 42;
    pub const CLONE: u32 = 56;
    pub const KILL: u32 = 62;
    pub const RENAME: u32 = 82;
    pub const UNLINK: u32 = 87;
    pub const PTRACE: u32 = 101;
    pub const MOUNT: u32 = 165;
    pub const TKILL: u32 = 200;
    pub const TGKILL: u32 = 234;
    pub const OPENAT: u32 = 257;
    pub const UNLINKAT: u32 = 263;
    pub const RENAMEAT: u32 = 264;
    pub const UNSHARE: u32 = 272;
    pub const UTIMENSAT: u32 = 280;
    pub const DUP3: u32 = 292;
    pub const SETNS: u32 = 308;
    pub const RENAMEAT2: u32 = 316;
    pub const CLONE3: u32 = 435;
    pub const OPENAT2: u32 = 437;
}

/// `AT_FDCWD`: a path relative to the working directory.
pub(crate) const AT_FDCWD: i32 = -100;

const O_ACCMODE: u32 = 0o3;
const O_TRUNC: u32 = 0o1000;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} its kind needs")]
    Short { len: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("unknown syscall {syscall} in a {kind} record")]
    UnknownSyscall { kind: &'static str, syscall: u32 },
}

/// What every record starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// CLOCK_BOOTTIME, nanoseconds.
    pub boot_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exec {
    pub ppid: u32,
    /// The process entered a pid namespace from outside it (an exec session's first process).
    pub session_entry: bool,
    pub start_boot_ns: u64,
    pub comm: String,
    /// The leaf cgroup's name and its parent's.
    pub cgroup: String,
    pub cgroup_parent: String,
    pub filename: String,
    /// The whole argv, program name first.
    pub argv: Vec<String>,
}

/// A path as a syscall named it: relative to `dirfd` unless absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyscallPath {
    pub dirfd: i32,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Exec(Exec),
    /// The raw wait status (`exit_code` of the task).
    Exit {
        status: u32,
    },
    Fork {
        child: u32,
        child_start_boot_ns: u64,
    },
    Open {
        path: SyscallPath,
        write: bool,
        truncate: bool,
    },
    Unlink {
        path: SyscallPath,
    },
    Rename {
        from: SyscallPath,
        to: SyscallPath,
    },
    Utimes {
        path: SyscallPath,
    },
    Connect(Endpoint),
    Redirect {
        fd: u32,
        remote: Option<Endpoint>,
    },
    Namespace {
        syscall: &'static str,
        flags: u64,
    },
    Mount {
        source: String,
        target: String,
        fs_type: String,
    },
    Ptrace {
        request: u64,
        target_pid: u32,
    },
    Signal {
        target_pid: u32,
        signal: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub header: Header,
    pub body: Body,
}

impl Body {
    /// The exit code a shell would report: the status, or 128 + the signal that killed it.
    pub(crate) fn exit_code(status: u32) -> i32 {
        let signal = status & 0x7f;
        if signal == 0 { ((status >> 8) & 0xff) as i32 } else { 128 + signal as i32 }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    u32_at(b, at) as i32
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// A NUL-terminated string in a fixed field (or up to `max` bytes).
fn c_str(b: &[u8], at: usize, max: usize) -> String {
    let field = &b[at..(at + max).min(b.len())];
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A string of a known length in a field of `max` bytes.
fn sized_str(b: &[u8], at: usize, len: u32, max: usize) -> String {
    let len = (len as usize).min(max).min(b.len().saturating_sub(at));
    c_str(b, at, len)
}

fn need(b: &[u8], need: usize) -> Result<(), DecodeError> {
    if b.len() < need { Err(DecodeError::Short { len: b.len(), need }) } else { Ok(()) }
}

/// Splits the arg area (NUL-separated, the last NUL missing when truncated).
fn split_args(area: &[u8]) -> Vec<String> {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    if area.is_empty() {
        return Vec::new();
    }
    area.split(|&c| c == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect()
}

fn protocol(family: u16, sock_type: u16) -> &'static str {
    match (family, sock_type) {
        (AF_UNIX, _) => "unix",
        (_, SOCK_STREAM) => "tcp",
        (_, SOCK_DGRAM) => "udp",
        _ => "other",
    }
}

fn ip_address(family: u16, addr: &[u8]) -> String {
    if family == AF_INET6 {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&addr[..16]);
        Ipv6Addr::from(bytes).to_string()
    } else {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string()
    }
}

/// A Unix socket's path; an abstract one (leading NUL) is shown as `@name`.
fn unix_path(field: &[u8], len: usize) -> String {
    let field = &field[..len.min(field.len())];
    match field.split_first() {
        Some((0, name)) => {
            let end = name.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            format!("@{}", String::from_utf8_lossy(&name[..end]))
        }
        _ => {
            let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).into_owned()
        }
    }
}

pub(crate) fn decode(b: &[u8]) -> Result<Record, DecodeError> {
    need(b, HDR_LEN)?;
    let header = Header { boot_ns: u64_at(b, 0), tgid: u32_at(b, 12), tid: u32_at(b, 16), uid: u32_at(b, 20) };
    let body = match u32_at(b, 8) {
        KIND_EXEC => {
            need(b, EXEC_ARGS)?;
            let flags = u32_at(b, 28);
            let args_len = (u32_at(b, 44) as usize).min(b.len() - EXEC_ARGS);
            Body::Exec(Exec {
                ppid: u32_at(b, 24),
                session_entry: flags & EXEC_SESSION_ENTRY != 0,
                start_boot_ns: u64_at(b, 32),
                comm: c_str(b, EXEC_COMM, COMM_LEN),
                cgroup: c_str(b, EXEC_CGROUP, CGROUP_NAME_LEN),
                cgroup_parent: c_str(b, EXEC_CGROUP_PARENT, CGROUP_NAME_LEN),
                filename: sized_str(b, EXEC_FILENAME, u32_at(b, 40), FILENAME_LEN),
                argv: split_args(&b[EXEC_ARGS..EXEC_ARGS + args_len]),
            })
        }
        KIND_EXIT => {
            need(b, 32)?;
            Body::Exit { status: u32_at(b, 24) }
        }
        KIND_FORK => {
            need(b, 40)?;
            Body::Fork { child: u32_at(b, 24), child_start_boot_ns: u64_at(b, 32) }
        }
        KIND_FILE => {
            need(b, FILE_PATH2)?;
            let syscall = u32_at(b, 24);
            let flags = u32_at(b, 28);
            let path = SyscallPath { dirfd: i32_at(b, 32), path: sized_str(b, FILE_PATH, u32_at(b, 40), PATH_LEN) };
            match syscall {
                nr::OPEN | nr::OPENAT | nr::OPENAT2 => {
                    Body::Open { path, write: flags & O_ACCMODE != 0, truncate: flags & O_TRUNC != 0 }
                }
                nr::UNLINK | nr::UNLINKAT => Body::Unlink { path },
                nr::RENAME | nr::RENAMEAT | nr::RENAMEAT2 => Body::Rename {
                    from: path,
                    to: SyscallPath { dirfd: i32_at(b, 36), path: sized_str(b, FILE_PATH2, u32_at(b, 44), PATH_LEN) },
                },
                nr::UTIMENSAT => Body::Utimes { path },
                syscall => return Err(DecodeError::UnknownSyscall { kind: "file", syscall }),
            }
        }
        KIND_NET => {
            need(b, NET_LEN)?;
            let syscall = u32_at(b, 24);
            let fd = i32_at(b, 28);
            let family = u16_at(b, 32);
            let port = u16_at(b, 34);
            let sock_type = u16_at(b, 36);
            let has_remote = u16_at(b, 38);
            let address = if family == AF_UNIX {
                unix_path(&b[NET_UNIX_PATH..NET_UNIX_PATH + UNIX_PATH_LEN], has_remote as usize)
            } else {
                ip_address(family, &b[NET_ADDR..NET_ADDR + 16])
            };
            let endpoint = Endpoint { address, port, protocol: protocol(family, sock_type).to_owned() };
            match syscall {
                nr::CONNECT => Body::Connect(endpoint),
                nr::DUP2 | nr::DUP3 => Body::Redirect {
                    fd: fd as u32,
                    remote: (has_remote != 0 && matches!(family, AF_INET | AF_INET6)).then_some(endpoint),
                },
                syscall => return Err(DecodeError::UnknownSyscall { kind: "net", syscall }),
            }
        }
        KIND_MISC => {
            need(b, MISC_SHORT_LEN)?;
            let syscall = u32_at(b, 24);
            let (a0, a1) = (u64_at(b, 32), u64_at(b, 40));
            match syscall {
                nr::UNSHARE => Body::Namespace { syscall: "unshare", flags: a0 },
                nr::SETNS => Body::Namespace { syscall: "setns", flags: a0 },
                nr::CLONE => Body::Namespace { syscall: "clone", flags: a0 },
                nr::CLONE3 => Body::Namespace { syscall: "clone3", flags: a0 },
                nr::PTRACE => Body::Ptrace { request: a0, target_pid: a1 as u32 },
                nr::KILL | nr::TKILL | nr::TGKILL => Body::Signal { target_pid: a0 as u32, signal: a1 as u32 },
                nr::MOUNT => {
                    need(b, MISC_LEN)?;
                    Body::Mount {
                        source: c_str(b, MISC_SHORT_LEN, MOUNT_STR_LEN),
                        target: c_str(b, MISC_S1, MOUNT_STR_LEN),
                        fs_type: c_str(b, MISC_S2, FSTYPE_LEN),
                    }
                }
                syscall => return Err(DecodeError::UnknownSyscall { kind: "misc", syscall }),
            }
        }
        kind => return Err(DecodeError::UnknownKind(kind)),
    };
    Ok(Record { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&123_456_789u64.to_le_bytes());
        b[8..12].copy_from_slice(&kind.to_le_bytes());
        b[12..16].copy_from_slice(&42u32.to_le_bytes());
        b[16..20].copy_from_slice(&43u32.to_le_bytes());
        b[20..24].copy_from_slice(&1000u32.to_le_bytes());
        b
    }

    fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
        b[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn exec_records_decode_with_args_and_cgroups() {
        let args = b"/bin/sh\0-c\0echo hi\0";
        let mut b = header(KIND_EXEC, EXEC_ARGS + args.len());
        put(&mut b, 24, &7u32.to_le_bytes());
        put(&mut b, 28, &EXEC_SESSION_ENTRY.to_le_bytes());
        put(&mut b, 32, &99u64.to_le_bytes());
        put(&mut b, 40, &7u32.to_le_bytes());
        put(&mut b, 44, &(args.len() as u32).to_le_bytes());
        put(&mut b, EXEC_COMM, b"sh\0");
        put(&mut b, EXEC_CGROUP, b"0123abcd\0");
        put(&mut b, EXEC_CGROUP_PARENT, b"pod1234\0");
        // A stale tail after the length must not leak into the name.
        put(&mut b, EXEC_FILENAME, b"/bin/sh\0stale");
        put(&mut b, EXEC_ARGS, args);

        let record = decode(&b).unwrap();
        assert_eq!(record.header, Header { boot_ns: 123_456_789, tgid: 42, tid: 43, uid: 1000 });
        let Body::Exec(exec) = record.body else { panic!("not an exec: {record:?}") };
        assert_eq!(exec.ppid, 7);
        assert!(exec.session_entry);
        assert_eq!(exec.start_boot_ns, 99);
        assert_eq!(exec.comm, "sh");
        assert_eq!(exec.cgroup, "0123abcd");
        assert_eq!(exec.cgroup_parent, "pod1234");
        assert_eq!(exec.filename, "/bin/sh");
        assert_eq!(exec.argv, ["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn truncated_args_keep_their_partial_last_argument() {
        assert_eq!(split_args(b"a\0bb\0cc"), ["a", "bb", "cc"]);
        assert_eq!(split_args(b""), Vec::<String>::new());
        assert_eq!(split_args(b"x\0\0"), ["x", ""]);
    }

    #[test]
    fn file_records_decode_open_flags_and_renames() {
        let mut b = header(KIND_FILE, FILE_PATH2);
        put(&mut b, 24, &nr::OPENAT.to_le_bytes());
        put(&mut b, 28, &(0o1 | 0o100 | O_TRUNC).to_le_bytes());
        put(&mut b, 32, &AT_FDCWD.to_le_bytes());
        put(&mut b, 40, &13u32.to_le_bytes());
        put(&mut b, FILE_PATH, b".bash_history\0");
        let record = decode(&b).unwrap();
        assert_eq!(
            record.body,
            Body::Open {
                path: SyscallPath { dirfd: AT_FDCWD, path: ".bash_history".into() },
                write: true,
                truncate: true
            }
        );

        let mut b = header(KIND_FILE, FILE_PATH2 + 8);
        put(&mut b, 24, &nr::RENAMEAT2.to_le_bytes());
        put(&mut b, 32, &3i32.to_le_bytes());
        put(&mut b, 36, &AT_FDCWD.to_le_bytes());
        put(&mut b, 40, &2u32.to_le_bytes());
        put(&mut b, 44, &8u32.to_le_bytes());
        put(&mut b, FILE_PATH, b"ab");
        put(&mut b, FILE_PATH2, b"/etc/cd\0");
        assert_eq!(
            decode(&b).unwrap().body,
            Body::Rename {
                from: SyscallPath { dirfd: 3, path: "ab".into() },
                to: SyscallPath { dirfd: AT_FDCWD, path: "/etc/cd".into() }
            }
        );
    }

    #[test]
    fn net_records_decode_addresses() {
        let mut b = header(KIND_NET, NET_LEN);
        put(&mut b, 24, &nr::CONNECT.to_le_bytes());
        put(&mut b, 32, &AF_INET.to_le_bytes());
        put(&mut b, 34, &4444u16.to_le_bytes());
        put(&mut b, 36, &SOCK_STREAM.to_le_bytes());
        put(&mut b, 38, &1u16.to_le_bytes());
        put(&mut b, NET_ADDR, &[10, 0, 0, 1]);
        assert_eq!(
            decode(&b).unwrap().body,
            Body::Connect(Endpoint { address: "10.0.0.1".into(), port: 4444, protocol: "tcp".into() })
        );

        put(&mut b, 24, &nr::DUP2.to_le_bytes());
        put(&mut b, 28, &2i32.to_le_bytes());
        put(&mut b, 32, &AF_INET6.to_le_bytes());
        put(&mut b, NET_ADDR, &Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            decode(&b).unwrap().body,
            Body::Redirect {
                fd: 2,
                remote: Some(Endpoint { address: "::1".into(), port: 4444, protocol: "tcp".into() })
            }
        );

        let mut b = header(KIND_NET, NET_LEN);
        put(&mut b, 24, &nr::CONNECT.to_le_bytes());
        put(&mut b, 32, &AF_UNIX.to_le_bytes());
        put(&mut b, 38, &6u16.to_le_bytes());
        put(&mut b, NET_UNIX_PATH, b"\0abc\0\0");
        assert_eq!(
            decode(&b).unwrap().body,
            Body::Connect(Endpoint { address: "@abc".into(), port: 0, protocol: "unix".into() })
        );
    }

    #[test]
    fn misc_records_decode_signals_namespaces_and_mounts() {
        let mut b = header(KIND_MISC, MISC_SHORT_LEN);
        put(&mut b, 24, &nr::TGKILL.to_le_bytes());
        put(&mut b, 32, &77u64.to_le_bytes());
        put(&mut b, 40, &15u64.to_le_bytes());
        assert_eq!(decode(&b).unwrap().body, Body::Signal { target_pid: 77, signal: 15 });

        put(&mut b, 24, &nr::UNSHARE.to_le_bytes());
        put(&mut b, 32, &0x1000_0000u64.to_le_bytes());
        assert_eq!(decode(&b).unwrap().body, Body::Namespace { syscall: "unshare", flags: 0x1000_0000 });

        // A mount needs the strings that the short form leaves out.
        put(&mut b, 24, &nr::MOUNT.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::Short { len: MISC_SHORT_LEN, need: MISC_LEN }));
        let mut b = header(KIND_MISC, MISC_LEN);
        put(&mut b, 24, &nr::MOUNT.to_le_bytes());
        put(&mut b, MISC_SHORT_LEN, b"/dev/sda1\0");
        put(&mut b, MISC_S1, b"/mnt\0");
        put(&mut b, MISC_S2, b"ext4\0");
        assert_eq!(
            decode(&b).unwrap().body,
            Body::Mount { source: "/dev/sda1".into(), target: "/mnt".into(), fs_type: "ext4".into() }
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(DecodeError::Short { len: 10, need: HDR_LEN }));
        assert_eq!(decode(&header(99, HDR_LEN)), Err(DecodeError::UnknownKind(99)));
        assert_eq!(decode(&header(KIND_EXIT, 30)), Err(DecodeError::Short { len: 30, need: 32 }));
    }

    #[test]
    fn exit_statuses_become_shell_exit_codes() {
        assert_eq!(Body::exit_code(0), 0);
        assert_eq!(Body::exit_code(3 << 8), 3);
        assert_eq!(Body::exit_code(15), 143);
    }
}
