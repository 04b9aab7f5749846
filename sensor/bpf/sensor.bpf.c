// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0-only)
//
// Riposte's node sensor: process execs, forks and exits, and the handful of syscalls the
// runtime rules read (sensitive files, connections, sockets on stdio, namespaces, mounts,
// ptrace, signals). Raw tracepoints only: this kernel refuses kprobes and fentry, and raw
// tracepoints need no tracefs.
//
// No vmlinux.h: the few kernel structs read here are declared below with only the fields
// used, and `preserve_access_index` lets the loader (aya) relocate every access against
// the running kernel's BTF.
//
// Records are little-endian structs with explicit padding; `src/record.rs` decodes them
// by offset. Keep the two in step.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// ---- kernel types (CO-RE) ----

struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long r8;
} __attribute__((preserve_access_index));

struct upid {
	int nr;
	void *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct kernfs_node {
	struct kernfs_node *__parent;
	const char *name;
} __attribute__((preserve_access_index));

// Before 6.15 the parent was `parent`; CO-RE picks whichever the kernel has.
struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup_subsys_state *subsys[12];
} __attribute__((preserve_access_index));

enum cgroup_subsys_id {
	memory_cgrp_id = 4,
	pids_cgrp_id = 11,
};

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct riposte_in6 {
	__u8 b[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	struct riposte_in6 skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct socket {
	short type;
	struct sock *sk;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	unsigned long long start_boottime;
	struct task_struct *real_parent;
	struct pid *thread_pid;
	struct css_set *cgroups;
	struct mm_struct *mm;
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

// ---- records ----

#define COMM_LEN 16
#define CGROUP_NAME_LEN 128
#define FILENAME_LEN 512
#define ARGS_LEN 2048
#define PATH_LEN 512
#define MOUNT_STR_LEN 256
#define FSTYPE_LEN 64
#define UNIX_PATH_LEN 108
#define FILTER_LEN 64
#define PATH_DEPTH 16 // components of a path rebuilt from a file's dentries
#define NAME_LEN 256

enum kind {
	KIND_EXEC = 1,
	KIND_EXIT = 2,
	KIND_FORK = 3,
	KIND_FILE = 4,
	KIND_NET = 5,
	KIND_MISC = 6,
};

#define EXEC_SESSION_ENTRY 1

struct hdr {
	__u64 ts; // CLOCK_BOOTTIME, ns
	__u32 kind;
	__u32 tgid;
	__u32 tid;
	__u32 uid;
};

struct exec_event {
	struct hdr h;
	__u32 ppid;
	__u32 flags;
	__u64 start_boottime;
	__u32 filename_len;
	__u32 args_len;
	char comm[COMM_LEN];
	char cgroup[CGROUP_NAME_LEN];
	char cgroup_parent[CGROUP_NAME_LEN];
	char filename[FILENAME_LEN];
	char args[ARGS_LEN]; // last: only args_len bytes of it are sent
};

struct exit_event {
	struct hdr h;
	__u32 code;
	__u32 pad;
};

struct fork_event {
	struct hdr h;
	__u32 child;
	__u32 pad;
	__u64 child_start_boottime;
};

struct file_event {
	struct hdr h;
	__u32 syscall;
	__u32 flags;
	__s32 dirfd;
	__s32 dirfd2;
	__u32 path_len;
	__u32 path2_len;
	char path[PATH_LEN];
	char path2[PATH_LEN]; // last: only path2_len bytes of it are sent
};

struct net_event {
	struct hdr h;
	__u32 syscall;
	__s32 fd;
	__u16 family;
	__u16 port;
	__u16 sock_type;
	__u16 has_remote;
	__u8 addr[16];
	char unix_path[UNIX_PATH_LEN];
	__u8 pad[4];
};

struct misc_event {
	struct hdr h;
	__u32 syscall;
	__u32 pad;
	__u64 arg0;
	__u64 arg1;
	__u64 arg2;
	// Mount only; other syscalls send the record up to here.
	char s0[MOUNT_STR_LEN];
	char s1[MOUNT_STR_LEN];
	char s2[FSTYPE_LEN];
};

#define MISC_SHORT_LEN 56

struct filter_key {
	__u32 prefixlen;
	__u8 data[FILTER_LEN];
};

struct scratch {
	union {
		struct exec_event exec;
		struct file_event file;
		struct net_event net;
		struct misc_event misc;
	};
	struct filter_key key;
};

// The layout src/record.rs decodes.
_Static_assert(sizeof(struct hdr) == 24, "hdr");
_Static_assert(offsetof(struct exec_event, comm) == 48, "exec comm");
_Static_assert(offsetof(struct exec_event, cgroup) == 64, "exec cgroup");
_Static_assert(offsetof(struct exec_event, cgroup_parent) == 192, "exec cgroup_parent");
_Static_assert(offsetof(struct exec_event, filename) == 320, "exec filename");
_Static_assert(offsetof(struct exec_event, args) == 832, "exec args");
_Static_assert(sizeof(struct exit_event) == 32, "exit");
_Static_assert(sizeof(struct fork_event) == 40, "fork");
_Static_assert(offsetof(struct file_event, path) == 48, "file path");
_Static_assert(offsetof(struct file_event, path2) == 560, "file path2");
_Static_assert(sizeof(struct file_event) >= offsetof(struct file_event, path) + PATH_LEN + NAME_LEN, "file_path's room");
_Static_assert(offsetof(struct net_event, addr) == 40, "net addr");
_Static_assert(offsetof(struct net_event, unix_path) == 56, "net unix_path");
_Static_assert(sizeof(struct net_event) == 168, "net");
_Static_assert(offsetof(struct misc_event, s0) == MISC_SHORT_LEN, "misc s0");
_Static_assert(offsetof(struct misc_event, s1) == 312, "misc s1");
_Static_assert(offsetof(struct misc_event, s2) == 568, "misc s2");
_Static_assert(sizeof(struct misc_event) == 632, "misc");

// ---- maps ----

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20); // the loader sets the configured size
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

// Paths as written, and suffixes reversed, so that both are longest-prefix lookups.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct filter_key);
	__type(value, __u8);
} path_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct filter_key);
	__type(value, __u8);
} path_suffixes SEC(".maps");

#define TAIL_FUTIMENS 0

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tail_calls SEC(".maps");

// ---- helpers ----

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_map, &zero);
}

// Waking the reader for every record costs a context switch per record, which at a
// thousand execs a second is most of the sensor's overhead: records wait until this much
// is pending (or the reader's poll times out, every POLL_TIMEOUT in src/sensor.rs).
#define WAKEUP_BYTES (64 << 10)

static __always_inline void emit(void *data, __u64 size)
{
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, data, size, flags) != 0) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&drops, &zero);
		if (count)
			*count += 1;
	}
}

static __always_inline void fill_hdr(struct hdr *h, __u32 kind)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	h->ts = bpf_ktime_get_boot_ns();
	h->kind = kind;
	h->tgid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->uid = (__u32)bpf_get_current_uid_gid();
}

static __always_inline void read_kernfs_name(char *dst, struct kernfs_node *kn)
{
	const char *name = BPF_CORE_READ(kn, name);
	if (!name || bpf_probe_read_kernel_str(dst, CGROUP_NAME_LEN, name) < 0)
		dst[0] = 0;
}

// The leaf cgroup's name (a container id under the kubelet's cgroupfs driver) and its
// parent's (`pod<uid>`), from the memory controller's hierarchy: on a cgroup v1 or hybrid
// node that is where the kubelet puts containers, and on v2 it is the unified hierarchy.
static __always_inline void read_cgroup(struct exec_event *e, struct task_struct *task)
{
	int id;
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	else
		id = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);

	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	bpf_core_read(&css, sizeof(css), &cset->subsys[id & 15]);
	struct kernfs_node *kn = BPF_CORE_READ(css, cgroup, kn);
	e->cgroup[0] = 0;
	e->cgroup_parent[0] = 0;
	if (!kn)
		return;
	read_kernfs_name(e->cgroup, kn);

	struct kernfs_node *parent;
	if (bpf_core_field_exists(struct kernfs_node___old, parent))
		parent = BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
	else
		parent = BPF_CORE_READ(kn, __parent);
	if (parent)
		read_kernfs_name(e->cgroup_parent, parent);
}

static __always_inline int ns_pid(struct pid *pid, unsigned int *level)
{
	int nr = 0;
	*level = BPF_CORE_READ(pid, level);
	bpf_core_read(&nr, sizeof(nr), &pid->numbers[*level & 63].nr);
	return nr;
}

// ---- process lifecycle ----

SEC("raw_tp/sched_process_exec")
int riposte_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct exec_event *e = &s->exec;

	fill_hdr(&e->h, KIND_EXEC);
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->start_boottime = BPF_CORE_READ(task, start_boottime);
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	// An exec session (kubectl exec, runc exec) enters a pid namespace from outside: its
	// pid there is not 1 (that is the container's entry point) and its parent is in an
	// ancestor namespace, so getppid() would return 0.
	unsigned int level = 0, parent_level = 0;
	int nr = ns_pid(BPF_CORE_READ(task, thread_pid), &level);
	parent_level = BPF_CORE_READ(parent, thread_pid, level);
	e->flags = 0;
	if (level > 0 && nr != 1 && parent_level < level)
		e->flags |= EXEC_SESSION_ENTRY;

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	e->filename_len = n > 0 ? n - 1 : 0;

	// argv as the new program sees it: NUL-separated in the new mm's arg area.
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	unsigned long len = end > start ? end - start : 0;
	if (len > ARGS_LEN)
		len = ARGS_LEN; // the last argument is cut: ProcessEvent has no place for a flag
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) < 0)
		len = 0;
	e->args_len = len;

	read_cgroup(e, task);
	emit(e, offsetof(struct exec_event, args) + len);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int riposte_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	int pid = BPF_CORE_READ(child, pid);
	int tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0; // a thread, not a process
	struct fork_event e = {};
	fill_hdr(&e.h, KIND_FORK);
	e.h.tgid = BPF_CORE_READ(parent, tgid);
	e.child = tgid;
	e.child_start_boottime = BPF_CORE_READ(child, start_boottime);
	emit(&e, sizeof(e));
	return 0;
}

SEC("raw_tp/sched_process_exit")
int riposte_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0; // only the thread-group leader ends the process
	struct exit_event e = {};
	fill_hdr(&e.h, KIND_EXIT);
	e.code = BPF_CORE_READ(task, exit_code);
	emit(&e, sizeof(e));
	return 0;
}

// ---- syscalls ----

#define NR_open 2
#define NR_dup2 33
#define NR_connect 42
#define NR_clone 56
#define NR_kill 62
#define NR_rename 82
#define NR_unlink 87
#define NR_ptrace 101
#define NR_mount 165
#define NR_tkill 200
#define NR_tgkill 234
#define NR_openat 257
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_unshare 272
#define NR_utimensat 280
#define NR_dup3 292
#define NR_setns 308
#define NR_renameat2 316
#define NR_clone3 435
#define NR_openat2 437

#define AT_FDCWD -100
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define CLONE_NEW_MASK 0x7E020000ULL // NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
#define CLONE_NEWTIME 0x80ULL	     // clone3 and unshare only: in clone's flags it is the exit signal

// Whether a path (path_len bytes, no NUL) is one the rules watch: a configured prefix, or
// a configured suffix. A relative path is also tried as if it followed a '/', so that
// `authorized_keys` opened in ~/.ssh matches the suffix `/authorized_keys`.
static __always_inline int path_wanted(struct scratch *s, const char *path, __u32 len)
{
	struct filter_key *key = &s->key;
	if (len == 0 || len > PATH_LEN)
		return 0;

	key->prefixlen = (len < FILTER_LEN ? len : FILTER_LEN) * 8;
	bpf_probe_read_kernel(key->data, FILTER_LEN, path);
	if (bpf_map_lookup_elem(&path_prefixes, key))
		return 1;

	__u32 n = len < FILTER_LEN ? len : FILTER_LEN;
	for (__u32 i = 0; i < FILTER_LEN; i++) {
		if (i >= n)
			break;
		key->data[i] = path[(len - 1 - i) & (PATH_LEN - 1)];
	}
	if (path[0] != '/' && n < FILTER_LEN) {
		key->data[n & (FILTER_LEN - 1)] = '/';
		n++;
	}
	key->prefixlen = n * 8;
	return bpf_map_lookup_elem(&path_suffixes, key) != NULL;
}

static __always_inline __u32 read_user_path(char *dst, const void *src)
{
	long n = bpf_probe_read_user_str(dst, PATH_LEN, src);
	return n > 1 ? n - 1 : 0;
}

static __always_inline void file_event(struct scratch *s, __u32 nr, int dirfd, const void *path, __u32 flags,
				       int dirfd2, const void *path2)
{
	struct file_event *e = &s->file;
	e->path_len = read_user_path(e->path, path);
	e->path2_len = path2 ? read_user_path(e->path2, path2) : 0;
	int wanted = path_wanted(s, e->path, e->path_len);
	if (!wanted && path2)
		wanted = path_wanted(s, e->path2, e->path2_len);
	if (!wanted)
		return;
	fill_hdr(&e->h, KIND_FILE);
	e->syscall = nr;
	e->flags = flags;
	e->dirfd = dirfd;
	e->dirfd2 = dirfd2;
	__u32 len2 = e->path2_len;
	emit(e, offsetof(struct file_event, path2) + (len2 < PATH_LEN ? len2 : PATH_LEN));
}

static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd < 0 || (unsigned int)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// The path of an open file, as the process's mount namespace shows it: the dentry chain up
// to each mount's root, then on from where that mount is mounted (what d_path does, which
// raw tracepoints may not call). Components past PATH_DEPTH are left out. Both loops are
// bpf_loop callbacks: as plain loops the verifier's state count passes its limit.
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 depth;
	__u32 off;
	const unsigned char *names[PATH_DEPTH];
};

static long walk_up(__u32 i, void *data)
{
	struct path_walk *w = data;
	if (w->depth >= PATH_DEPTH)
		return 1;
	// Locals, not w->...: BPF_CORE_READ would relocate path_walk's own fields.
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
	if (dentry == root || dentry == parent) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt)
			return 1; // the namespace's root
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = (void *)up + bpf_core_field_offset(struct mount, mnt);
		return 0;
	}
	w->names[w->depth & (PATH_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.name);
	w->depth++;
	w->dentry = parent;
	return 0;
}

// Appends the components, root first, to the scratch file_event's path (which has room
// for PATH_LEN + NAME_LEN bytes: path2 follows it).
static long append_name(__u32 j, void *data)
{
	struct path_walk *w = data;
	struct scratch *s = get_scratch();
	if (!s || j >= w->depth || w->off >= PATH_LEN - 1)
		return 1;
	char *buf = s->file.path;
	__u32 off = w->off;
	buf[off & (PATH_LEN - 1)] = '/';
	off++;
	// Keeps clang from dropping the mask the verifier needs to bound the write.
	__u32 at = off;
	barrier_var(at);
	at &= PATH_LEN - 1;
	long n = bpf_probe_read_kernel_str(buf + at, NAME_LEN, w->names[(w->depth - 1 - j) & (PATH_DEPTH - 1)]);
	if (n > 1)
		off += n - 1;
	w->off = off;
	return 0;
}

static __always_inline __u32 file_path(struct scratch *s, struct file *f)
{
	struct path_walk w = {};
	w.dentry = BPF_CORE_READ(f, f_path.dentry);
	w.vfsmnt = BPF_CORE_READ(f, f_path.mnt);
	w.mnt = (void *)w.vfsmnt - bpf_core_field_offset(struct mount, mnt);
	bpf_loop(PATH_DEPTH + 8, walk_up, &w, 0);
	bpf_loop(PATH_DEPTH, append_name, &w, 0);
	__u32 off = w.off;
	if (off == 0)
		s->file.path[off++] = '/';
	if (off > PATH_LEN - 1)
		off = PATH_LEN - 1;
	s->file.path[off] = 0;
	return off;
}

// utimensat(fd, NULL, ...), which is futimens(): what `touch -d` and `touch -r` call on the
// file they opened, so the name comes from the descriptor.
static __always_inline void fd_file_event(struct scratch *s, __u32 nr, int fd, __u32 flags)
{
	struct file_event *e = &s->file;
	struct file *f = fd_file(fd);
	if (!f)
		return;
	e->path_len = file_path(s, f);
	e->path2_len = 0;
	if (!path_wanted(s, e->path, e->path_len))
		return;
	fill_hdr(&e->h, KIND_FILE);
	e->syscall = nr;
	e->flags = flags;
	e->dirfd = fd;
	e->dirfd2 = 0;
	emit(e, offsetof(struct file_event, path2));
}

static __always_inline struct socket *file_socket(struct file *f)
{
	if (!f)
		return NULL;
	unsigned short mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return BPF_CORE_READ(f, private_data);
}

static __always_inline void connect_event(struct scratch *s, int fd, const void *addr, __u32 addrlen)
{
	struct net_event *e = &s->net;
	__u16 family = 0;
	if (!addr || bpf_probe_read_user(&family, sizeof(family), addr) < 0)
		return;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	e->unix_path[0] = 0;
	e->port = 0;
	if (family == AF_INET) {
		__be16 port = 0;
		bpf_probe_read_user(&port, sizeof(port), addr + 2);
		bpf_probe_read_user(e->addr, 4, addr + 4);
		e->port = bpf_ntohs(port);
	} else if (family == AF_INET6) {
		__be16 port = 0;
		bpf_probe_read_user(&port, sizeof(port), addr + 2);
		bpf_probe_read_user(e->addr, 16, addr + 8);
		e->port = bpf_ntohs(port);
	} else if (family == AF_UNIX) {
		__u32 n = addrlen > 2 ? addrlen - 2 : 0;
		if (n > UNIX_PATH_LEN)
			n = UNIX_PATH_LEN;
		// Not a string read: an abstract socket's name starts with a NUL.
		if (n > 0 && bpf_probe_read_user(e->unix_path, n, addr + 2) < 0)
			return;
		e->has_remote = n;
	} else {
		return;
	}
	struct socket *sock = file_socket(fd_file(fd));
	e->sock_type = sock ? BPF_CORE_READ(sock, type) : 0;
	fill_hdr(&e->h, KIND_NET);
	e->syscall = NR_connect;
	e->fd = fd;
	e->family = family;
	if (family != AF_UNIX)
		e->has_remote = 1;
	emit(e, sizeof(*e));
}

static __always_inline void dup_event(struct scratch *s, __u32 nr, int oldfd, int newfd)
{
	if (newfd < 0 || newfd > 2)
		return;
	struct socket *sock = file_socket(fd_file(oldfd));
	if (!sock)
		return;
	struct net_event *e = &s->net;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	e->unix_path[0] = 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__be16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	e->family = family;
	e->port = bpf_ntohs(dport);
	e->sock_type = BPF_CORE_READ(sock, type);
	e->has_remote = 0;
	if (family == AF_INET) {
		__be32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->addr, &daddr, 4);
		e->has_remote = dport != 0;
	} else if (family == AF_INET6) {
		bpf_core_read(e->addr, 16, &sk->__sk_common.skc_v6_daddr);
		e->has_remote = dport != 0;
	}
	fill_hdr(&e->h, KIND_NET);
	e->syscall = nr;
	e->fd = newfd;
	emit(e, sizeof(*e));
}

static __always_inline void misc_event(struct scratch *s, __u32 nr, __u64 a0, __u64 a1, __u64 a2)
{
	struct misc_event *e = &s->misc;
	fill_hdr(&e->h, KIND_MISC);
	e->syscall = nr;
	e->pad = 0;
	e->arg0 = a0;
	e->arg1 = a1;
	e->arg2 = a2;
	emit(e, MISC_SHORT_LEN);
}

static __always_inline void mount_event(struct scratch *s, const void *src, const void *target, const void *fstype,
					__u64 flags)
{
	struct misc_event *e = &s->misc;
	fill_hdr(&e->h, KIND_MISC);
	e->syscall = NR_mount;
	e->pad = 0;
	e->arg0 = flags;
	e->arg1 = 0;
	e->arg2 = 0;
	if (!src || bpf_probe_read_user_str(e->s0, sizeof(e->s0), src) < 0)
		e->s0[0] = 0;
	if (!target || bpf_probe_read_user_str(e->s1, sizeof(e->s1), target) < 0)
		e->s1[0] = 0;
	if (!fstype || bpf_probe_read_user_str(e->s2, sizeof(e->s2), fstype) < 0)
		e->s2[0] = 0;
	emit(e, sizeof(*e));
}

// futimens' path walk is verified as a program of its own: inlined into sys_enter, the
// verifier's state count exceeds its limit.
SEC("raw_tp/sys_enter")
int riposte_futimens(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	struct scratch *s = get_scratch();
	if (s)
		fd_file_event(s, NR_utimensat, BPF_CORE_READ(regs, di), BPF_CORE_READ(regs, r10));
	return 0;
}

SEC("raw_tp/sys_enter")
int riposte_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = ctx->args[1];
	switch (nr) {
	case NR_open:
	case NR_openat:
	case NR_openat2:
	case NR_unlink:
	case NR_unlinkat:
	case NR_rename:
	case NR_renameat:
	case NR_renameat2:
	case NR_utimensat:
	case NR_connect:
	case NR_dup2:
	case NR_dup3:
	case NR_unshare:
	case NR_setns:
	case NR_clone:
	case NR_clone3:
	case NR_mount:
	case NR_ptrace:
	case NR_kill:
	case NR_tkill:
	case NR_tgkill:
		break;
	default:
		return 0;
	}

	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u64 a0 = BPF_CORE_READ(regs, di);
	__u64 a1 = BPF_CORE_READ(regs, si);
	__u64 a2 = BPF_CORE_READ(regs, dx);
	__u64 a3 = BPF_CORE_READ(regs, r10);
	__u64 a4 = BPF_CORE_READ(regs, r8);

	// Cheap refusals before any scratch work.
	switch (nr) {
	case NR_clone:
		if (!(a0 & CLONE_NEW_MASK))
			return 0;
		break;
	case NR_kill:
	case NR_tkill:
		if (a1 == 0 || (long)(int)a0 <= 0)
			return 0;
		break;
	case NR_tgkill:
		if (a2 == 0 || (long)(int)a0 <= 0)
			return 0;
		break;
	case NR_dup2:
	case NR_dup3:
		if (a1 > 2)
			return 0;
		break;
	}

	struct scratch *s = get_scratch();
	if (!s)
		return 0;

	switch (nr) {
	case NR_open:
		file_event(s, nr, AT_FDCWD, (void *)a0, a1, 0, NULL);
		break;
	case NR_openat:
		file_event(s, nr, a0, (void *)a1, a2, 0, NULL);
		break;
	case NR_openat2: {
		__u64 flags = 0; // struct open_how starts with the open flags
		bpf_probe_read_user(&flags, sizeof(flags), (void *)a2);
		file_event(s, nr, a0, (void *)a1, flags, 0, NULL);
		break;
	}
	case NR_unlink:
		file_event(s, nr, AT_FDCWD, (void *)a0, 0, 0, NULL);
		break;
	case NR_unlinkat:
		file_event(s, nr, a0, (void *)a1, a2, 0, NULL);
		break;
	case NR_rename:
		file_event(s, nr, AT_FDCWD, (void *)a0, 0, AT_FDCWD, (void *)a1);
		break;
	case NR_renameat:
		file_event(s, nr, a0, (void *)a1, 0, a2, (void *)a3);
		break;
	case NR_renameat2:
		file_event(s, nr, a0, (void *)a1, a4, a2, (void *)a3);
		break;
	case NR_utimensat:
		if (a1)
			file_event(s, nr, a0, (void *)a1, a3, 0, NULL);
		else
			bpf_tail_call(ctx, &tail_calls, TAIL_FUTIMENS);
		break;
	case NR_connect:
		connect_event(s, a0, (void *)a1, a2);
		break;
	case NR_dup2:
	case NR_dup3:
		dup_event(s, nr, a0, a1);
		break;
	case NR_unshare:
		misc_event(s, nr, a0, 0, 0);
		break;
	case NR_setns:
		misc_event(s, nr, a1, a0, 0);
		break;
	case NR_clone:
		misc_event(s, nr, a0 & CLONE_NEW_MASK, 0, 0);
		break;
	case NR_clone3: {
		__u64 flags = 0; // struct clone_args starts with the flags
		bpf_probe_read_user(&flags, sizeof(flags), (void *)a0);
		flags &= CLONE_NEW_MASK | CLONE_NEWTIME;
		if (flags)
			misc_event(s, nr, flags, 0, 0);
		break;
	}
	case NR_mount:
		mount_event(s, (void *)a0, (void *)a1, (void *)a2, a3);
		break;
	case NR_ptrace:
		misc_event(s, nr, a0, a1, 0);
		break;
	case NR_kill:
	case NR_tkill:
		misc_event(s, nr, a0, a1, 0);
		break;
	case NR_tgkill:
		misc_event(s, nr, a0, a2, a1);
		break;
	}
	return 0;
}
