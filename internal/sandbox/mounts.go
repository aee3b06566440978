package sandbox

// The jail's file system view, built by the jail init (as root, in its own
// mount namespace, before any untrusted code runs):
//
//	/            tmpfs, read-only after set-up
//	/usr /lib /lib64 /bin /sbin   read-only binds (or the same symlinks, on merged-usr)
//	/usr/local/etc                an empty read-only tmpfs (see maskedPaths)
//	ReadOnlyPaths                 read-only binds at the same place
//	/etc         a few selected read-only binds plus our own passwd, group, hosts
//	/box /tmp /dev/shm            subdirectories of the run's one scratch
//	                              tmpfs, fresh per run (/tmp and /dev/shm
//	                              emptied per step; see mountScratch)
//	/dev         null zero random urandom + fd/std* symlinks
//	/proc        fresh procfs of the jail's pid namespace, hidepid=2,
//	             with the host-wide entries of maskedProc hidden

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var baseReadOnly = []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"}

// maskedPaths are directories under the read-only binds that hold the
// host's own configuration rather than software (/usr/local/etc: an
// administrator's npmrc with a registry token, say); the jail sees them
// empty.
var maskedPaths = []string{"/usr/local/etc"}

// maskedProc are the host-wide /proc entries a program has no use for and
// that tell it about the host or its other tenants: interrupt and timer
// counts (a timing side channel on other users' activity), kernel symbols
// and configuration, I/O and memory maps, keys, SysRq. A file is covered by
// a read-only bind of /dev/null, which the mount's nodev makes unopenable
// (EACCES), a directory by an empty read-only tmpfs, as Docker's default
// masks do. What runtimes do read (cpuinfo, meminfo, stat, self, sys)
// stays, and with it host-wide counts that these files only detail
// (/proc/stat's intr and softirq lines, loadavg, pressure).
var maskedProc = []string{
	"interrupts", "softirqs", "timer_list", "timer_stats", "sched_debug", "latency_stats",
	"kallsyms", "kcore", "config.gz", "modules", "keys", "key-users", "sysrq-trigger",
	"iomem", "ioports", "vmallocinfo", "slabinfo", "kpagecount", "kpageflags", "kpagecgroup",
	"acpi", "asound", "bus", "driver", "fs", "irq", "scsi", "tty",
}

// etcEntries are the only host /etc entries visible in the jail: what the
// dynamic loader, libc name lookups, TLS and the toolchains read.
var etcEntries = []string{
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "nsswitch.conf",
	"localtime", "timezone", "ssl", "ca-certificates", "java-17-openjdk", "java-21-openjdk",
	"python3", "python3.11", "gcc", "mime.types", "protocols", "services",
}

const (
	roFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
)

func mountErr(what, target string, err error) error {
	return fmt.Errorf("mount %s on %s: %w", what, target, err)
}

// bindRO makes host path src visible read-only at root+dst. A symlink is
// reproduced as the same symlink (merged-usr /bin -> usr/bin); a missing
// src is skipped.
func bindRO(root, src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		return nil
	}
	target := filepath.Join(root, dst)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil && !os.IsExist(err) {
			return err
		}
		return nil
	case st.IsDir():
		if err := os.Mkdir(target, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
	default:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return mountErr(src, target, err)
	}
	return makeReadOnly(target)
}

// makeReadOnly makes the mount at target and every mount below it
// read-only, nosuid and nodev (a bind mount ignores MS_RDONLY on creation,
// and a remount only changes the top mount of an MS_REC bind).
func makeReadOnly(target string) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &attr)
	if err == nil {
		return nil
	}
	if err != unix.ENOSYS {
		return mountErr("mount_setattr ro", target, err)
	}
	// Kernels before 5.12: remount each mount of the subtree, top first.
	subs := mountsUnder(target)
	for i := len(subs) - 1; i >= 0; i-- {
		if err := unix.Mount("", subs[i], "", unix.MS_BIND|unix.MS_REMOUNT|roFlags, ""); err != nil {
			return mountErr("remount ro", subs[i], err)
		}
	}
	return nil
}

// covered reports whether p lies under one of the directories already bound.
func covered(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func tmpfs(target string, flags uintptr, opts string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", flags, opts); err != nil {
		return mountErr("tmpfs", target, err)
	}
	return nil
}

// mask hides what is at path, if anything: a directory under an empty
// read-only tmpfs, a file under a read-only bind of /dev/null.
func mask(path string) error {
	st, err := os.Lstat(path)
	switch {
	case err != nil:
		return nil // this kernel has no such entry
	case st.Mode()&os.ModeSymlink != 0:
		// A mount would follow it, out of the jail's root.
		return fmt.Errorf("mask %s: a symlink", path)
	case st.IsDir():
		if err := unix.Mount("tmpfs", path, "tmpfs", roFlags|unix.MS_NOEXEC, "size=4k,nr_inodes=2,mode=0555"); err != nil {
			return mountErr("tmpfs", path, err)
		}
		return nil
	}
	if err := unix.Mount("/dev/null", path, "", unix.MS_BIND, ""); err != nil {
		return mountErr("/dev/null", path, err)
	}
	if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|roFlags|unix.MS_NOEXEC, ""); err != nil {
		return mountErr("remount ro", path, err)
	}
	return nil
}

// buildRoot builds the jail's root at c.Root and pivots into it.
func buildRoot(c *initReq) error {
	// Nothing we mount may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return mountErr("private", "/", err)
	}
	root := c.Root
	if err := tmpfs(root, unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return err
	}
	var bound []string
	for _, p := range baseReadOnly {
		if err := bindRO(root, p, p); err != nil {
			return err
		}
		if st, err := os.Lstat(p); err == nil && st.IsDir() {
			bound = append(bound, p)
		}
	}
	for _, p := range c.ReadOnly {
		// Resolve on the host side so that a symlinked path is bound at its
		// real place (a path under a symlink we reproduced would otherwise
		// resolve to the host's tree when we create the mount point).
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		if !covered(real, bound) {
			if err := bindRO(root, real, real); err != nil {
				return err
			}
			bound = append(bound, real)
		}
		if real != p && !covered(p, bound) {
			if err := bindRO(root, p, p); err != nil { // reproduces the symlink
				return err
			}
		}
	}
	for _, p := range maskedPaths {
		if err := mask(filepath.Join(root, p)); err != nil {
			return err
		}
	}

	etc := filepath.Join(root, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		return err
	}
	for _, e := range etcEntries {
		if err := bindRO(root, "/etc/"+e, "/etc/"+e); err != nil {
			return err
		}
	}
	uid, gid := strconv.Itoa(c.UID), strconv.Itoa(c.GID)
	files := map[string]string{
		"passwd":   "root:x:0:0:root:/root:/usr/sbin/nologin\n" + jailUser + ":x:" + uid + ":" + gid + ":runbox:/box:/bin/sh\n",
		"group":    "root:x:0:\n" + jailUser + ":x:" + gid + ":\n",
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
		"hostname": jailHostname + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}

	// Mount points of the per-run and per-step tmpfs (see initState).
	for _, d := range []string{"box", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}

	dev := filepath.Join(root, "dev")
	if err := tmpfs(dev, unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		if err := bindRO(root, "/dev/"+d, "/dev/"+d); err != nil {
			return err
		}
		// Writes to /dev/null must work: remount the bind read-write.
		t := filepath.Join(dev, d)
		if err := unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
			return mountErr("remount rw", t, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(dev, "shm"), 0o755); err != nil {
		return err
	}
	if err := unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return mountErr("remount ro", dev, err)
	}

	// procfs of our pid namespace; hidepid=2 hides the root-owned init.
	proc := filepath.Join(root, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=2"); err != nil {
		return mountErr("proc", proc, err)
	}
	for _, name := range maskedProc {
		if err := mask(filepath.Join(proc, name)); err != nil {
			return err
		}
	}

	// pivot_root(".", "."): the old root ends up stacked on the new one and
	// is detached at once, so no path to the host tree remains.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|roFlags, ""); err != nil {
		return mountErr("remount ro", "/", err)
	}
	return unix.Chdir("/box")
}
