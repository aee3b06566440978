package main

import (
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/runbox/runbox/internal/config"
)

// The Dockerfile and docker-compose.yml cannot be built or started here (no
// container engine), so this test keeps them consistent with the code by
// reading them.

type dockerInstruction struct {
	cmd, args string
}

// parseDockerfile returns the instructions, continuation lines joined and
// comments dropped.
func parseDockerfile(t *testing.T, path string) []dockerInstruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

func knownVar(name string) bool {
	return slices.ContainsFunc(config.Vars, func(v config.Var) bool { return v.Name == name })
}

func knownSubcommand(name string) bool {
	return slices.ContainsFunc(subcommands, func(s subcommand) bool { return s.name == name })
}

var runboxVar = regexp.MustCompile(`RUNBOX_[A-Z0-9_]+`)

func checkVarsExist(t *testing.T, file string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range runboxVar.FindAllString(string(raw), -1) {
		if !knownVar(v) {
			t.Errorf("%s uses %s, which config.Vars does not know", file, v)
		}
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// toolchainPackages reads the packages=(…) list of install-toolchains.sh.
func toolchainPackages(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../scripts/install-toolchains.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^packages=\(([^)]*)\)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("install-toolchains.sh has no packages=(…) list")
	}
	return strings.Fields(string(m[1]))
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../../Dockerfile")
	env := map[string]string{}
	var froms, runs, copies, exposes []string
	var entrypoint, cmd, healthcheck string
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		case "COPY":
			copies = append(copies, in.args)
		case "EXPOSE":
			exposes = append(exposes, strings.Fields(in.args)...)
		case "ENV":
			k, v, ok := strings.Cut(in.args, "=")
			if !ok {
				t.Errorf("ENV %q: use the KEY=value form", in.args)
			}
			env[k] = v
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			cmd = in.args
		case "HEALTHCHECK":
			healthcheck = in.args
		}
	}
	checkVarsExist(t, "../../Dockerfile")
	checkVarsExist(t, "../../scripts/docker-entrypoint.sh")

	// Build stage: the Go of go.mod, a static binary of ./cmd/runbox.
	if len(froms) != 2 {
		t.Fatalf("want a build and a runtime stage, got FROM %v", froms)
	}
	gomod, _ := os.ReadFile("../../go.mod")
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "golang:" + string(goLine[1]) + "-"; !strings.HasPrefix(froms[0], want) || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("build stage FROM %q, want %s… AS build (go.mod says go %s)", froms[0], want, goLine[1])
	}
	if !strings.HasPrefix(froms[1], "debian:bookworm-slim") {
		t.Errorf("runtime stage FROM %q", froms[1])
	}
	build := slices.IndexFunc(runs, func(r string) bool { return strings.Contains(r, "go build") })
	if build < 0 {
		t.Fatal("no go build step")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/runbox", "./cmd/runbox"} {
		if !strings.Contains(runs[build], want) {
			t.Errorf("build step %q lacks %s", runs[build], want)
		}
	}
	if _, err := os.Stat("../../cmd/runbox/main.go"); err != nil {
		t.Errorf("build target ./cmd/runbox: %v", err)
	}

	// Runtime stage: the toolchains through the very installer CI uses.
	if !slices.ContainsFunc(copies, func(c string) bool { return strings.HasPrefix(c, "scripts/install-toolchains.sh ") }) {
		t.Error("the image does not COPY scripts/install-toolchains.sh")
	}
	if !slices.ContainsFunc(runs, func(r string) bool { return strings.Contains(r, "bash /usr/local/lib/runbox/install-toolchains.sh") }) {
		t.Error("the image does not run install-toolchains.sh")
	}
	pkgs := toolchainPackages(t)
	for _, want := range []string{"python3", "nodejs", "gcc", "g++", "libc6-dev", "golang-go", "openjdk-17-jdk-headless", "rustc", "bash"} {
		if !slices.Contains(pkgs, want) {
			t.Errorf("install-toolchains.sh lacks %s (SPEC §3)", want)
		}
	}
	// No toolchain is installed a second way that could drift from the script.
	for _, r := range runs {
		for _, f := range strings.Fields(r) {
			if slices.Contains(pkgs, f) && f != "bash" {
				t.Errorf("RUN installs %s directly; leave toolchains to install-toolchains.sh", f)
			}
		}
	}
	if !slices.ContainsFunc(copies, func(c string) bool { return strings.HasPrefix(c, "--from=build /out/runbox ") }) {
		t.Error("the binary is not copied from the build stage")
	}

	// Configuration and process.
	if env["RUNBOX_DATA_DIR"] != "/var/lib/runbox" || !slices.ContainsFunc(ins, func(i dockerInstruction) bool {
		return i.cmd == "VOLUME" && strings.Contains(i.args, env["RUNBOX_DATA_DIR"])
	}) {
		t.Errorf("RUNBOX_DATA_DIR %q must be /var/lib/runbox and a VOLUME", env["RUNBOX_DATA_DIR"])
	}
	addr := env["RUNBOX_HTTP_ADDR"]
	if config.LoopbackOnly(addr) {
		t.Errorf("RUNBOX_HTTP_ADDR %q is unreachable from outside the container", addr)
	}
	if port := portOf(t, addr); !slices.Contains(exposes, port) {
		t.Errorf("EXPOSE %v lacks the port of RUNBOX_HTTP_ADDR (%s)", exposes, port)
	}
	if !strings.Contains(healthcheck, "/healthz") {
		t.Errorf("HEALTHCHECK %q does not probe /healthz", healthcheck)
	}
	if !strings.Contains(entrypoint, "tini") || !strings.HasSuffix(entrypoint, `"/usr/local/bin/runbox-entrypoint"]`) {
		t.Errorf("ENTRYPOINT %s", entrypoint)
	}
	script, _ := os.ReadFile("../../scripts/docker-entrypoint.sh")
	if !strings.Contains(string(script), `exec runbox "$@"`) {
		t.Error("docker-entrypoint.sh does not end in exec runbox \"$@\"")
	}
	if m := regexp.MustCompile(`^\["([a-z]+)"\]$`).FindStringSubmatch(cmd); m == nil || !knownSubcommand(m[1]) {
		t.Errorf("CMD %s is not a runbox subcommand", cmd)
	}
}

type composeService struct {
	Image         string            `yaml:"image"`
	Build         any               `yaml:"build"`
	Command       []string          `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	Ports         []string          `yaml:"ports"`
	Volumes       []string          `yaml:"volumes"`
	ContainerName string            `yaml:"container_name"`
	Privileged    bool              `yaml:"privileged"`
	CapAdd        []string          `yaml:"cap_add"`
	Cgroup        string            `yaml:"cgroup"`
	SecurityOpt   []string          `yaml:"security_opt"`
	Restart       string            `yaml:"restart"`
	Secrets       []string          `yaml:"secrets"`
	Healthcheck   map[string]any    `yaml:"healthcheck"`
	DependsOn     map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func TestDockerCompose(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
		Secrets  map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	checkVarsExist(t, "../../docker-compose.yml")
	svc := func(name string) composeService {
		s, ok := doc.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		return s
	}

	pg := svc("postgres")
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %q", pg.Image)
	}
	if !strings.Contains(strings.Join(asStrings(pg.Healthcheck["test"]), " "), "pg_isready") {
		t.Errorf("postgres healthcheck %v does not use pg_isready", pg.Healthcheck)
	}
	if len(pg.Volumes) == 0 {
		t.Error("postgres has no volume")
	}
	for _, v := range pg.Volumes {
		name, _, _ := strings.Cut(v, ":")
		if _, ok := doc.Volumes[name]; !ok {
			t.Errorf("postgres volume %q is not a named volume", v)
		}
	}

	// Each runbox service runs a real subcommand against PostgreSQL.
	roles := map[string]string{"migrate": "migrate", "api": "api", "worker": "worker"}
	for name, sub := range roles {
		s := svc(name)
		if len(s.Command) == 0 || s.Command[0] != sub || !knownSubcommand(s.Command[0]) {
			t.Errorf("%s: command %v, want [%s]", name, s.Command, sub)
		}
		if s.Build == nil && s.Image == "" {
			t.Errorf("%s: neither build nor image", name)
		}
		if u := s.Environment["RUNBOX_DATABASE_URL"]; !strings.HasPrefix(u, "postgres://") || !strings.Contains(u, "@postgres:") {
			t.Errorf("%s: RUNBOX_DATABASE_URL %q does not point at the postgres service", name, u)
		}
		if s.Privileged {
			t.Errorf("%s: privileged; grant the specific capabilities instead", name)
		}
		// Every variable set must be one runbox reads in that role.
		for k := range s.Environment {
			ok := slices.ContainsFunc(config.VarsFor(sub), func(v config.Var) bool { return v.Name == k })
			if !ok {
				t.Errorf("%s sets %s, which `runbox %s` does not read", name, k, sub)
			}
		}
	}
	if m := svc("migrate"); m.DependsOn["postgres"].Condition != "service_healthy" || m.Restart != "no" {
		t.Errorf("migrate: depends_on %v, restart %q", m.DependsOn, m.Restart)
	}
	for _, name := range []string{"api", "worker"} {
		if c := svc(name).DependsOn["migrate"].Condition; c != "service_completed_successfully" {
			t.Errorf("%s: depends on migrate with %q", name, c)
		}
	}

	api := svc("api")
	addr := api.Environment["RUNBOX_HTTP_ADDR"]
	if addr == "" {
		t.Fatal("api: RUNBOX_HTTP_ADDR unset")
	}
	port := portOf(t, addr)
	if !slices.ContainsFunc(api.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) || p == port }) {
		t.Errorf("api publishes %v, not the port of RUNBOX_HTTP_ADDR (%s)", api.Ports, port)
	}
	if !config.LoopbackOnly(addr) && api.Environment["RUNBOX_API_KEYS"] == "" && api.Environment["RUNBOX_API_KEYS_FILE"] == "" &&
		api.Environment["RUNBOX_ALLOW_UNAUTHENTICATED"] != "true" {
		t.Error("api listens on a non-loopback address without keys: runbox would refuse to start")
	}
	if f := api.Environment["RUNBOX_API_KEYS_FILE"]; f != "" {
		secret := strings.TrimPrefix(f, "/run/secrets/")
		if !slices.Contains(api.Secrets, secret) || doc.Secrets[secret].File == "" {
			t.Errorf("RUNBOX_API_KEYS_FILE %s is not a secret of the api service", f)
		}
	}

	w := svc("worker")
	if w.ContainerName != "" || len(w.Ports) > 0 {
		t.Errorf("worker cannot scale: container_name %q, ports %v", w.ContainerName, w.Ports)
	}
	for _, c := range []string{"SYS_ADMIN", "NET_ADMIN"} {
		if !slices.Contains(w.CapAdd, c) {
			t.Errorf("worker lacks cap_add %s (the sandbox needs it)", c)
		}
	}
	if w.Cgroup != "private" {
		t.Errorf("worker: cgroup %q, want private", w.Cgroup)
	}
	for _, o := range []string{"seccomp=unconfined", "apparmor=unconfined"} {
		if !slices.Contains(w.SecurityOpt, o) {
			t.Errorf("worker lacks security_opt %s", o)
		}
	}
	if w.Healthcheck["disable"] != true {
		t.Error("worker serves no HTTP: disable the image's /healthz check")
	}
	if len(api.CapAdd) > 0 || len(svc("migrate").CapAdd) > 0 {
		t.Error("api and migrate need no extra capabilities")
	}
}

func asStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
