package sandbox

// Cgroups, v1 and v2, behind one small interface.
//
// We write the few cgroupfs files ourselves instead of using
// containerd/cgroups: we need about ten files, we need exact control over
// the order of writes (v1 memsw after limit_in_bytes), over how an OOM kill
// is recognised (only the kernel's oom_kill counter, never exit 137) and
// over the v2 CLONE_INTO_CGROUP directory fd, and a dependency would hide
// all of that behind an API of its own.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parentName is the cgroup, directly under each hierarchy's root, that holds
// every step cgroup of this host.
const parentName = "runbox"

// cgroupFS is a cgroup hierarchy layout (v1: one directory per controller;
// v2: the unified tree).
type cgroupFS interface {
	version() int
	// create makes a cgroup with the limits l applied.
	create(name string, l Limits) (stepCgroup, error)
	// parentDirs lists the parent directories (for tests and clean-up).
	parentDirs() []string
	// memoryLimitFile is the memory limit of the parent cgroup.
	memoryLimitFile() string
	// peakResettable reports whether a cgroup's peak memory can be reset,
	// so that one cgroup can serve every step of a jail (v1; v2 from
	// Linux 6.12, where memory.peak became writable).
	peakResettable() bool
}

// stepCgroup is the cgroup of one step.
type stepCgroup interface {
	// setLimits applies the memory (swap off) and pids limits.
	setLimits(l Limits) error
	// place moves a process (the jail's init) into the cgroup.
	place(pid int) error
	// cgroupFD is the directory fd for SysProcAttr.CgroupFD, or -1 (v1).
	cgroupFD() int
	cpuUsage() (time.Duration, error)
	// resetPeak starts a new peak-memory measurement: memoryPeak then
	// reports the highest usage since, which starts at memoryUsage.
	resetPeak() error
	memoryUsage() int64
	memoryPeak() int64
	// oomKills counts the OOM kills in the cgroup's life.
	oomKills() int64
	// shmem is the tmpfs and memfd memory charged to the cgroup.
	shmem() int64
	procs() []int
	// kill sends SIGKILL to every process in the cgroup.
	kill()
	// destroy waits (bounded) until the cgroup is empty and removes it.
	destroy() error
}

// cgroupRoot is where the hierarchies are mounted; a variable for tests.
var cgroupRoot = "/sys/fs/cgroup"

// detectCgroupVersion returns 2 when root is a usable unified hierarchy
// (cgroup.controllers lists memory and pids), 1 when the v1 controllers we
// need are mounted, and an error otherwise.
func detectCgroupVersion(root string) (int, error) {
	if b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		f := strings.Fields(string(b))
		if contains(f, "memory") && contains(f, "pids") {
			return 2, nil
		}
	}
	var missing []string
	for _, c := range []string{"memory", "pids", "cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, c, "cgroup.procs")); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return 1, nil
	}
	return 0, fmt.Errorf("sandbox: no usable cgroup hierarchy under %s (v2 without memory+pids, v1 missing %s)",
		root, strings.Join(missing, ","))
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func newCgroupFS(root string) (cgroupFS, error) {
	v, err := detectCgroupVersion(root)
	if err != nil {
		return nil, err
	}
	if v == 2 {
		return newCgroupV2(root)
	}
	return newCgroupV1(root)
}

// capJails sets the memory limit of the cgroup all jails share to capBytes,
// or to half the host's RAM when capBytes is 0. Each step's cgroup has its
// own limit, but a run can pin memory past its end (files passed over a
// unix socket in a cycle, freed by the kernel's unix GC tens of seconds
// later) and its jail is then retired (see release), so that memory is no
// longer bounded by any live jail's limit; runs repeated fast enough could
// exhaust the host. With the cap they exhaust only the jails' share, and
// runs fail MEMORY_LIMIT_EXCEEDED until the kernel frees it.
func capJails(limitFile string, capBytes int64) error {
	if capBytes <= 0 {
		b, err := os.ReadFile("/proc/meminfo")
		if err != nil {
			return err
		}
		kib := memTotalKiB(b)
		if kib <= 0 {
			return errors.New("no MemTotal in /proc/meminfo")
		}
		capBytes = kib * 1024 / 2
	}
	return writeFile(limitFile, strconv.FormatInt(capBytes, 10))
}

func writeFile(path, value string) error {
	// O_WRONLY without O_CREAT/O_TRUNC: cgroupfs files always exist.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseKeyed returns the value of key in a flat-keyed file ("key value\n").
func parseKeyed(b []byte, key string) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// memTotalKiB reads MemTotal from /proc/meminfo's text ("MemTotal: 123 kB").
func memTotalKiB(meminfo []byte) int64 {
	for _, line := range strings.Split(string(meminfo), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// keyedValue reads key of a flat-keyed file; 0 when it cannot.
func keyedValue(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := parseKeyed(b, key)
	return n
}

func parsePids(b []byte) []int {
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

func readPids(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return parsePids(b)
}

// removeCgroupDir kills what is left in dir (procs lists it), waits until it
// is empty and removes it. A pid namespace teardown finishes before the
// init is reaped, so this normally succeeds on the first try.
func removeCgroupDir(dir string, procs func() []int, kill func()) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s (procs %v): %w", dir, procs(), err)
		}
		kill()
		time.Sleep(2 * time.Millisecond)
	}
}

func killPids(pids []int) {
	for _, p := range pids {
		if p > 0 {
			_ = unix.Kill(p, unix.SIGKILL)
		}
	}
}

// ---- v1 ----

type cgroupV1 struct {
	parents map[string]string // controller -> parent dir
}

var v1Controllers = []string{"memory", "pids", "cpuacct"}

func newCgroupV1(root string) (*cgroupV1, error) {
	c := &cgroupV1{parents: map[string]string{}}
	for _, ctl := range v1Controllers {
		dir := filepath.Join(root, ctl, parentName)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return nil, fmt.Errorf("sandbox: create cgroup %s: %w", dir, err)
		}
		c.parents[ctl] = dir
	}
	// The parent cgroups only group; limits are per step.
	return c, nil
}

func (c *cgroupV1) version() int { return 1 }

func (c *cgroupV1) peakResettable() bool { return true }

func (c *cgroupV1) memoryLimitFile() string {
	return filepath.Join(c.parents["memory"], "memory.limit_in_bytes")
}

func (c *cgroupV1) parentDirs() []string {
	var d []string
	for _, ctl := range v1Controllers {
		d = append(d, c.parents[ctl])
	}
	return d
}

type stepV1 struct {
	dirs map[string]string
}

func (c *cgroupV1) create(name string, l Limits) (stepCgroup, error) {
	s := &stepV1{dirs: map[string]string{}}
	for _, ctl := range v1Controllers {
		d := filepath.Join(c.parents[ctl], name)
		if err := os.Mkdir(d, 0o755); err != nil {
			_ = s.destroy()
			return nil, fmt.Errorf("create cgroup: %w", err)
		}
		s.dirs[ctl] = d
	}
	if err := s.setLimits(l); err != nil {
		_ = s.destroy()
		return nil, err
	}
	return s, nil
}

func (s *stepV1) setLimits(l Limits) error {
	mem := s.dirs["memory"]
	lim := strconv.FormatInt(l.MemoryBytes, 10)
	memsw := filepath.Join(mem, "memory.memsw.limit_in_bytes")
	if _, err := os.Stat(memsw); err == nil {
		// memsw exists only with swap accounting; equal limits = no swap.
		// The kernel keeps memsw >= limit_in_bytes at every write: raise
		// memsw first when growing, lower it last when shrinking.
		_ = writeFile(memsw, lim)
		if err := writeFile(filepath.Join(mem, "memory.limit_in_bytes"), lim); err != nil {
			return err
		}
		if err := writeFile(memsw, lim); err != nil {
			return err
		}
	} else {
		if err := writeFile(filepath.Join(mem, "memory.limit_in_bytes"), lim); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(mem, "memory.swappiness"), "0"); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(s.dirs["pids"], "pids.max"), strconv.Itoa(l.Pids))
}

func (s *stepV1) place(pid int) error {
	for _, ctl := range v1Controllers {
		if err := writeFile(filepath.Join(s.dirs[ctl], "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

func (s *stepV1) cgroupFD() int { return -1 }

func (s *stepV1) cpuUsage() (time.Duration, error) {
	n, err := readInt(filepath.Join(s.dirs["cpuacct"], "cpuacct.usage"))
	return time.Duration(n), err
}

func (s *stepV1) resetPeak() error {
	// Any write sets the high-water mark to the current usage.
	return writeFile(filepath.Join(s.dirs["memory"], "memory.max_usage_in_bytes"), "0")
}

func (s *stepV1) memoryUsage() int64 {
	n, _ := readInt(filepath.Join(s.dirs["memory"], "memory.usage_in_bytes"))
	return n
}

func (s *stepV1) memoryPeak() int64 {
	n, _ := readInt(filepath.Join(s.dirs["memory"], "memory.max_usage_in_bytes"))
	return n
}

func (s *stepV1) oomKills() int64 {
	return keyedValue(filepath.Join(s.dirs["memory"], "memory.oom_control"), "oom_kill")
}

func (s *stepV1) shmem() int64 {
	return keyedValue(filepath.Join(s.dirs["memory"], "memory.stat"), "shmem")
}

func (s *stepV1) procs() []int {
	// Every process is in all three; pids is the one that can never be
	// escaped by charge moves.
	return readPids(filepath.Join(s.dirs["pids"], "cgroup.procs"))
}

func (s *stepV1) kill() { killPids(s.procs()) }

func (s *stepV1) destroy() error {
	var errs []error
	for _, ctl := range v1Controllers {
		if d, ok := s.dirs[ctl]; ok {
			dir := d
			errs = append(errs, removeCgroupDir(dir,
				func() []int { return readPids(filepath.Join(dir, "cgroup.procs")) },
				func() { killPids(readPids(filepath.Join(dir, "cgroup.procs"))) }))
		}
	}
	return errors.Join(errs...)
}

// ---- v2 ----

type cgroupV2 struct {
	parent string
}

func newCgroupV2(root string) (*cgroupV2, error) {
	parent := filepath.Join(root, parentName)
	if err := os.Mkdir(parent, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("sandbox: create cgroup %s: %w", parent, err)
	}
	// Delegate the controllers down to our parent, then to its children
	// (the step cgroups). The root may already have them enabled; "cpu" is
	// not needed (cpu.stat usage_usec exists without it) but is harmless.
	for _, dir := range []string{root, parent} {
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+memory +pids"); err != nil {
			return nil, fmt.Errorf("sandbox: enable memory,pids controllers in %s: %w", dir, err)
		}
	}
	return &cgroupV2{parent: parent}, nil
}

func (c *cgroupV2) version() int            { return 2 }
func (c *cgroupV2) parentDirs() []string    { return []string{c.parent} }
func (c *cgroupV2) memoryLimitFile() string { return filepath.Join(c.parent, "memory.max") }

func (c *cgroupV2) peakResettable() bool {
	fi, err := os.Stat(filepath.Join(c.parent, "memory.peak"))
	return err == nil && fi.Mode().Perm()&0o200 != 0
}

type stepV2 struct {
	dir string
	fd  int
	// peak is memory.peak, open once a step reset it: since Linux 6.12 a
	// write resets the peak as seen through the file description written
	// to, and only through it.
	peak *os.File
}

func (c *cgroupV2) create(name string, l Limits) (stepCgroup, error) {
	d := filepath.Join(c.parent, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	s := &stepV2{dir: d, fd: -1}
	err := s.setLimits(l)
	if err == nil {
		s.fd, err = unix.Open(d, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		_ = s.destroy()
		return nil, err
	}
	return s, nil
}

func (s *stepV2) setLimits(l Limits) error {
	if err := writeFile(filepath.Join(s.dir, "memory.max"), strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.dir, "memory.swap.max")); err == nil {
		if err := writeFile(filepath.Join(s.dir, "memory.swap.max"), "0"); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(s.dir, "pids.max"), strconv.Itoa(l.Pids))
}

// place moves the jail's init between step cgroups (a pooled jail outlives
// its steps, so cloning into the cgroup is not enough).
func (s *stepV2) place(pid int) error {
	return writeFile(filepath.Join(s.dir, "cgroup.procs"), strconv.Itoa(pid))
}

func (s *stepV2) cgroupFD() int { return s.fd }

func (s *stepV2) cpuUsage() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUStatV2(b)
}

func parseCPUStatV2(b []byte) (time.Duration, error) {
	us, ok := parseKeyed(b, "usage_usec")
	if !ok {
		return 0, errors.New("cpu.stat: no usage_usec")
	}
	return time.Duration(us) * time.Microsecond, nil
}

func (s *stepV2) resetPeak() error {
	if s.peak == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, "memory.peak"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		s.peak = f
	}
	if _, err := s.peak.WriteString("reset\n"); err != nil {
		return fmt.Errorf("reset memory.peak: %w", err)
	}
	return nil
}

func (s *stepV2) memoryUsage() int64 {
	n, _ := readInt(filepath.Join(s.dir, "memory.current"))
	return n
}

func (s *stepV2) memoryPeak() int64 {
	if s.peak == nil {
		n, _ := readInt(filepath.Join(s.dir, "memory.peak")) // kernel >= 5.19
		return n
	}
	var b [32]byte
	n, err := s.peak.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b[:n])), 10, 64)
	return v
}

func (s *stepV2) oomKills() int64 {
	return keyedValue(filepath.Join(s.dir, "memory.events"), "oom_kill")
}

func (s *stepV2) shmem() int64 { return keyedValue(filepath.Join(s.dir, "memory.stat"), "shmem") }

func (s *stepV2) procs() []int { return readPids(filepath.Join(s.dir, "cgroup.procs")) }

func (s *stepV2) kill() {
	// cgroup.kill (kernel >= 5.14) kills the whole subtree atomically;
	// fall back to a kill loop.
	if writeFile(filepath.Join(s.dir, "cgroup.kill"), "1") != nil {
		killPids(s.procs())
	}
}

func (s *stepV2) destroy() error {
	if s.peak != nil {
		_ = s.peak.Close()
		s.peak = nil
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	return removeCgroupDir(s.dir, s.procs, s.kill)
}
