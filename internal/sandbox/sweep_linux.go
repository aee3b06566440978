package sandbox

// Leftovers of dead Sandbox instances.
//
// Every Sandbox instance (one per worker process, one per test) owns
//
//	Dir/<id>.lock   held with an exclusive flock for the instance's lifetime
//	Dir/<id>/       its run directories (empty mount points)
//	runbox/<id>-*   its cgroups, in every hierarchy
//
// A flock is released by the kernel when its holder dies, however it dies,
// so a lock file that New can lock without blocking belongs to a dead
// instance: New (and a periodic sweep of every live instance) then kills
// whatever is left in that instance's cgroups, detaches every mount under
// its directory (deepest first, MNT_DETACH: the host never resolves a path
// inside a jail's writable area), removes the directories (plain, empty
// host directories once unmounted; os.RemoveAll does not follow symlinks
// anyway) and finally the lock file. A live instance's lock can never be
// taken, so live instances never sweep each other. The lock file is created
// under a temporary name and renamed only once locked, so a sweeper never
// sees an unlocked lock file of an instance that is still starting.

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const lockSuffix = ".lock"

// lockInstance creates and locks dir/<id>.lock.
func lockInstance(dir, id string) (*os.File, error) {
	tmp := filepath.Join(dir, ".tmp-"+id+lockSuffix)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, id+lockSuffix)); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

// sweep removes the leftovers of every dead instance under s.dir.
func (s *Sandbox) sweep() {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, lockSuffix) || !e.Type().IsRegular() {
			continue
		}
		id := strings.TrimSuffix(name, lockSuffix)
		if strings.HasPrefix(id, ".tmp-") {
			// A crash between create and rename; give a starting
			// instance time to rename it.
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Minute {
				continue
			}
			id = strings.TrimPrefix(id, ".tmp-")
		}
		if id == s.prefix || id == "" || strings.ContainsAny(id, "/.") {
			continue
		}
		path := filepath.Join(s.dir, name)
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // alive
			continue
		}
		if err := s.sweepInstance(id); err != nil {
			s.log.Error("sandbox: sweep dead instance", "instance", id, "err", err)
		} else {
			s.log.Info("sandbox: swept leftovers of a dead instance", "instance", id)
			os.Remove(path)
		}
		f.Close()
	}
}

// sweepInstance removes what instance id left behind: processes and
// cgroups first (nothing may still use the mounts), then mounts, then
// directories.
func (s *Sandbox) sweepInstance(id string) error {
	var errs []error
	for _, parent := range s.cg.parentDirs() {
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), id+"-") {
				continue
			}
			dir := filepath.Join(parent, e.Name())
			procs := func() []int { return readPids(filepath.Join(dir, "cgroup.procs")) }
			errs = append(errs, removeCgroupDir(dir, procs, func() { killPids(procs()) }))
		}
	}
	instDir := filepath.Join(s.dir, id)
	for _, m := range mountsUnder(instDir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			errs = append(errs, err)
		}
	}
	if len(mountsUnder(instDir)) == 0 {
		errs = append(errs, os.RemoveAll(instDir))
	} else {
		errs = append(errs, errors.New("mounts remain under "+instDir))
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir in this process's
// mount namespace, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// Deepest first; a path mounted twice appears twice (one detach each).
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// unescapeMountinfo decodes the \ooo escapes of mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
