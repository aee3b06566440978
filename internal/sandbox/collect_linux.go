package sandbox

// Reading a compile step's output back, for a cache of compiled programs
// (Request.KeepCompiled). The host reads the jail's /box through the
// init's root (/proc/<init>/root), after every process of the step is dead
// and before the run step starts: nothing in the jail runs while we read.
// This is the one place the host opens a path inside a jail's box.
// What we read was written by a compiler fed untrusted source, so every
// name is resolved beneath /box with no symlink, magic link or mount
// crossing (openat2), and only regular files are taken: a box holding
// anything else (a directory, a symlink, a FIFO) or more than the bounds
// below is not kept, and its run simply compiles again next time.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// maxKeptFiles and maxKeptBytes bound what a compile step may leave to
	// be kept: a C, Rust or Go hello world leaves 2 files and 16 KiB to
	// 4 MiB; Java a class file per class.
	maxKeptFiles = 64
	maxKeptBytes = 32 << 20
)

// errNotKept says that a box does not qualify to be kept (not an error of
// the sandbox: the run goes on).
var errNotKept = errors.New("not kept")

// beneath resolves a name inside a directory the jail's programs could
// write: no symlinks (of theirs), no magic links, no other mount.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// collectBox returns every file of the jail's /box, or errNotKept.
func (j *jail) collectBox() ([]File, error) {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", j.pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	// The pid named the init when we opened its root only if the init had
	// not been reaped by then (a reaped pid may be any process's): it is
	// still there now, asked through its process handle (a pidfd).
	if err := j.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		return nil, errNotKept
	}
	// /box is a mount point inside the jail's root: crossing into it is
	// the one crossing allowed.
	boxFd, err := unix.Openat2(root, "box", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: beneath &^ unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, err
	}
	box := os.NewFile(uintptr(boxFd), "box")
	defer box.Close()
	entries, err := box.ReadDir(maxKeptFiles + 1)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(entries) > maxKeptFiles {
		return nil, errNotKept
	}
	var files []File
	var total int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return nil, errNotKept
		}
		f, err := readBoxFile(boxFd, e.Name(), maxKeptBytes-total)
		if err != nil {
			return nil, err
		}
		total += int64(len(f.Content))
		files = append(files, f)
	}
	return files, nil
}

// readBoxFile reads one regular file of at most limit bytes beneath dir.
func readBoxFile(dir int, name string, limit int64) (File, error) {
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		// O_NONBLOCK: opening a FIFO put there since the listing must not
		// wait for a writer.
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: beneath,
	})
	if err != nil {
		return File{}, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return File{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > limit {
		return File{}, errNotKept
	}
	content := make([]byte, st.Size)
	if _, err := io.ReadFull(f, content); err != nil {
		return File{}, err
	}
	return File{Name: name, Content: content, Mode: st.Mode & 0o777}, nil
}
