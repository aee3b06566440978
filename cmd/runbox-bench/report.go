package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Row is one figure of the report.
type Row struct {
	Section string   `json:"section"` // bare, sandbox, e2e, throughput, saturation
	Name    string   `json:"name"`
	Latency *Summary `json:"latency,omitempty"`
	// Rate is a throughput in operations per second, when the row has one.
	Rate float64 `json:"rate_per_s,omitempty"`
	// Value with Unit, for figures that are neither (e.g. backlog creation time).
	Value float64 `json:"value,omitempty"`
	Unit  string  `json:"unit,omitempty"`
	// Comparison with the bare baseline of the same run.
	OverP50MS *float64 `json:"over_bare_p50_ms,omitempty"` // latency p50 − bare p50
	Ratio     *float64 `json:"ratio_to_bare,omitempty"`    // rate / bare rate, or p50 / bare p50
	VsBare    string   `json:"vs_bare"`
	// CPU is the machine's CPU a run of a rate row, and CPURatio bare's
	// over it (see cpuUse).
	CPU      *cpuUse  `json:"cpu,omitempty"`
	CPURatio *float64 `json:"cpu_ratio_to_bare,omitempty"`
	Target   string   `json:"target,omitempty"`
	Note     string   `json:"note,omitempty"`
}

// DriverResult is the whole suite for one server (one database driver).
type DriverResult struct {
	Driver         string  `json:"driver"`
	ElapsedSeconds float64 `json:"elapsed_s"`
	Rows           []Row   `json:"rows"`
	Error          string  `json:"error,omitempty"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs          int    `json:"nproc"`
	CPUModel      string `json:"cpu_model"`
	MemoryBytes   int64  `json:"memory_bytes"`
	Kernel        string `json:"kernel"`
	CgroupVersion int    `json:"cgroup_version"`
	GoVersion     string `json:"go_version"`
	LoadAvg       string `json:"loadavg_at_start"`
	Source        string `json:"source"` // git revision of the working tree, "+dirty" when modified
}

// Report is what -json writes.
type Report struct {
	Machine        Machine        `json:"machine"`
	Command        string         `json:"command"`
	Started        time.Time      `json:"started"`
	ElapsedSeconds float64        `json:"elapsed_s"`
	Options        map[string]any `json:"options"`
	Results        []DriverResult `json:"results"`
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb int64
			if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
				m.MemoryBytes = kb << 10
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Source = strings.TrimSpace(string(out))
		// Only the Go sources matter to what was measured.
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", "*.go", "*.yaml", "go.mod").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			m.Source += "+dirty"
		}
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil {
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			m.CgroupVersion = 2
		} else {
			m.CgroupVersion = 1
		}
	}
	return m
}

func (m Machine) lines() []string {
	return []string{
		fmt.Sprintf("nproc:   %d (%s)", m.CPUs, m.CPUModel),
		fmt.Sprintf("memory:  %.1f GiB", float64(m.MemoryBytes)/(1<<30)),
		fmt.Sprintf("kernel:  %s", m.Kernel),
		fmt.Sprintf("cgroup:  v%d", m.CgroupVersion),
		fmt.Sprintf("go:      %s", m.GoVersion),
		fmt.Sprintf("load:    %s (1/5/15 min, at start)", m.LoadAvg),
		fmt.Sprintf("source:  %s", m.Source),
	}
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// printDriver writes one driver's table: the measurement left-aligned,
// the numbers right-aligned.
func printDriver(w io.Writer, d DriverResult) {
	fmt.Fprintf(w, "\n== driver: %s  (%.0f s) ==\n", d.Driver, d.ElapsedSeconds)
	if d.Error != "" {
		fmt.Fprintf(w, "ERROR: %s\n", d.Error)
	}
	nameW := len("measurement")
	for _, r := range d.Rows {
		nameW = max(nameW, utf8.RuneCountInString(r.Name)+2)
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s))) }
	line := func(name, n, p50, p90, p99, rate, vs, target string) {
		fmt.Fprintf(w, "%s %6s %8s %8s %8s %12s  %s", pad(name, nameW), n, p50, p90, p99, rate, vs)
		if target != "" {
			fmt.Fprintf(w, "  [target %s]", target)
		}
		fmt.Fprintln(w)
	}
	line("measurement", "n", "p50 ms", "p90 ms", "p99 ms", "rate /s", "vs bare", "")
	section := ""
	for _, r := range d.Rows {
		if r.Section != section {
			section = r.Section
			fmt.Fprintf(w, "[%s]\n", section)
		}
		n, p50, p90, p99 := "", "", "", ""
		if r.Latency != nil {
			n = fmt.Sprint(r.Latency.N)
			p50, p90, p99 = ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99)
		}
		rate := ""
		if r.Rate > 0 {
			rate = fmt.Sprintf("%.1f", r.Rate)
		}
		if r.Unit != "" {
			rate = fmt.Sprintf("%.2f %s", r.Value, r.Unit)
		}
		line("  "+r.Name, n, p50, p90, p99, rate, r.VsBare, r.Target)
	}
	for _, r := range d.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  note (%s / %s): %s\n", r.Section, strings.TrimSpace(r.Name), r.Note)
		}
	}
}

// over fills the comparison of a latency row with a bare p50.
func over(r Row, bare Summary, what string) Row {
	if r.Latency == nil || r.Latency.N == 0 || bare.N == 0 {
		return r
	}
	d := r.Latency.P50 - bare.P50
	x := r.Latency.P50 / bare.P50
	r.OverP50MS, r.Ratio = &d, &x
	r.VsBare = fmt.Sprintf("%+.1f ms (%.2f×) vs %s p50", d, x, what)
	return r
}

// ratio fills the comparison of a throughput row with a bare rate.
func ratio(r Row, bareRate float64, what string) Row {
	if bareRate <= 0 {
		return r
	}
	x := r.Rate / bareRate
	r.Ratio = &x
	r.VsBare = fmt.Sprintf("%.2f× %s", x, what)
	return r
}
