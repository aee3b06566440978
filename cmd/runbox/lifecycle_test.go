package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// hello lists, per language, a program that prints "hello <stdin>".
var programs = map[string]struct{ ok, runtimeErr, compileErr string }{
	"python":     {"import sys\nprint('hello', sys.stdin.read().strip())\n", "raise SystemExit(3)\n", ""},
	"javascript": {"const s=require('fs').readFileSync(0,'utf8').trim();console.log('hello '+s);\n", "process.exit(3)\n", ""},
	"bash":       {"read x; echo \"hello $x\"\n", "exit 3\n", ""},
	"c":          {"#include <stdio.h>\nint main(void){char b[64];scanf(\"%63s\",b);printf(\"hello %s\\n\",b);return 0;}\n", "int main(void){return 3;}\n", "int main(void){ return x; }\n"},
	"cpp":        {"#include <iostream>\n#include <string>\nint main(){std::string s;std::cin>>s;std::cout<<\"hello \"<<s<<std::endl;}\n", "int main(){return 3;}\n", "int main(){ undeclared(); }\n"},
	"go":         {"package main\nimport \"fmt\"\nfunc main(){var s string;fmt.Scan(&s);fmt.Println(\"hello \"+s)}\n", "package main\nimport \"os\"\nfunc main(){os.Exit(3)}\n", "package main\nfunc main(){ x }\n"},
	"java":       {"import java.util.*;\npublic class Main{public static void main(String[] a){System.out.println(\"hello \"+new Scanner(System.in).next());}}\n", "public class Main{public static void main(String[] a){System.exit(3);}}\n", "public class Main{ broken }\n"},
	"rust":       {"use std::io::Read;\nfn main(){let mut s=String::new();std::io::stdin().read_to_string(&mut s).unwrap();println!(\"hello {}\",s.trim());}\n", "fn main(){std::process::exit(3);}\n", "fn main(){ let x: i32 = \"s\"; }\n"},
}

// TestLifecycleEveryLanguage goes from create to a terminal status for each
// language available on this machine: its template, a program reading stdin,
// a runtime error and (compiled languages) a compile error.
func TestLifecycleEveryLanguage(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", nil)
	testLifecycle(t, s)
}

func testLifecycle(t *testing.T, s *server) {
	langs := s.do("GET", "/languages", nil).expect(t, 200, "")
	var available []map[string]any
	for _, l := range decodeList(t, langs.raw) {
		available = append(available, l)
	}
	if len(available) < 5 {
		t.Fatalf("only %d languages available: %s", len(available), langs.raw)
	}
	for _, l := range available {
		id := l["id"].(string)
		p, ok := programs[id]
		if !ok {
			t.Errorf("no test programs for language %s", id)
			continue
		}
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			sid := s.createSession(id, "")
			e := s.runAndWait(sid, "")
			if e["status"] != "COMPLETED" || !strings.Contains(e["stdout"].(string), "Hello, world!") {
				t.Fatalf("template: %v", e)
			}
			if e["attempts"] != 1.0 {
				t.Errorf("attempts %v: a healthy sandbox needed a retry", e["attempts"])
			}
			for _, field := range []string{"started_at", "finished_at", "execution_time_ms", "cpu_time_ms", "memory_kb", "exit_code"} {
				if e[field] == nil {
					t.Errorf("%s is null on a completed run", field)
				}
			}
			s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": p.ok}).expect(t, 200, "")
			if e := s.runAndWait(sid, "world\n"); e["status"] != "COMPLETED" || e["stdout"] != "hello world\n" {
				t.Fatalf("stdin program: %v", e)
			}
			if p.compileErr != "" {
				// Unchanged source: the worker runs the build it kept.
				if e := s.runAndWait(sid, "again\n"); e["status"] != "COMPLETED" || e["stdout"] != "hello again\n" {
					t.Fatalf("run of the kept build: %v", e)
				}
				hit := `runbox_compile_cache_total{language="` + id + `",result="hit"} `
				if m := string(s.do("GET", "/metrics", nil).expect(t, 200, "").raw); !strings.Contains(m, hit) {
					t.Errorf("no run of %s used a kept build", id)
				}
			}
			s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": p.runtimeErr}).expect(t, 200, "")
			e = s.runAndWait(sid, "")
			if e["status"] != "FAILED" || errCode(e) != "RUNTIME_ERROR" || e["exit_code"] != 3.0 || e["attempts"] != 1.0 {
				t.Fatalf("runtime error: %v", e)
			}
			if p.compileErr != "" {
				s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": p.compileErr}).expect(t, 200, "")
				e = s.runAndWait(sid, "")
				if e["status"] != "FAILED" || errCode(e) != "COMPILATION_ERROR" || e["compile_output"] == "" || e["compile_output"] == nil {
					t.Fatalf("compile error: %v", e)
				}
				// The program never ran: no output to show, not "".
				for _, field := range []string{"stdout", "stderr", "stdout_truncated", "execution_time_ms", "exit_code"} {
					if e[field] != nil {
						t.Errorf("%s is %v after a compilation error", field, e[field])
					}
				}
			}
			if id == "java" { // the JVM's heap bound stands for the memory limit
				s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": "import java.util.*;\npublic class Main{public static void main(String[] a){List<int[]> l=new ArrayList<>();while(true)l.add(new int[1<<20]);}}\n"}).expect(t, 200, "")
				if e := s.runAndWait(sid, ""); e["status"] != "FAILED" || errCode(e) != "MEMORY_LIMIT_EXCEEDED" || !strings.Contains(e["stderr"].(string), "OutOfMemoryError") {
					t.Fatalf("heap exhausted: %v", e)
				}
			}
		})
	}
}

// TestRunVerdictsAndSnapshot covers timeout, the snapshot taken at Run, the
// long-poll waking on completion, idempotency and the history listing.
func TestRunVerdictsAndSnapshot(t *testing.T) {
	requireRoot(t)
	s := start(t, "serve", map[string]string{"RUNBOX_RUN_WALL_TIME": "1s", "RUNBOX_RUN_CPU_TIME": "1s"})
	testRunVerdicts(t, s)
}

func testRunVerdicts(t *testing.T, s *server) {
	sid := s.createSession("python", "import time\ntime.sleep(0.3)\nprint('first')\n")
	r := s.do("POST", "/code-sessions/"+sid+"/run", nil).expect(t, 202, "")
	if r.body["status"] != "QUEUED" || r.header.Get("Location") != "/executions/"+r.body["execution_id"].(string) {
		t.Fatalf("run: %s", r.raw)
	}
	first := r.body["execution_id"].(string)
	// An autosave after Run does not change what runs.
	s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": "print('second')\n"}).expect(t, 200, "")
	begin := time.Now()
	e := s.wait(first)
	if e["stdout"] != "first\n" {
		t.Fatalf("snapshot not honoured: %v", e)
	}
	if waited := time.Since(begin); waited > 10*time.Second {
		t.Fatalf("wait returned after %v", waited)
	}

	// Timeout keeps the output produced before the kill.
	s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": "print('before', flush=True)\nwhile True: pass\n"}).expect(t, 200, "")
	e = s.runAndWait(sid, "")
	if e["status"] != "TIMEOUT" || errCode(e) != "TIME_LIMIT_EXCEEDED" || e["stdout"] != "before\n" {
		t.Fatalf("timeout: %v", e)
	}

	// Idempotency: same key, same execution; different body, 422.
	s.do("PATCH", "/code-sessions/"+sid, map[string]any{"source_code": "print('idem')\n"}).expect(t, 200, "")
	a := s.do("POST", "/code-sessions/"+sid+"/run", map[string]any{"stdin": "x"}, "Idempotency-Key", "k1").expect(t, 202, "")
	b := s.do("POST", "/code-sessions/"+sid+"/run", map[string]any{"stdin": "x"}, "Idempotency-Key", "k1").expect(t, 202, "")
	if a.body["execution_id"] != b.body["execution_id"] {
		t.Fatalf("idempotent repeat created a new execution: %s vs %s", a.raw, b.raw)
	}
	s.do("POST", "/code-sessions/"+sid+"/run", map[string]any{"stdin": "y"}, "Idempotency-Key", "k1").expect(t, 422, "idempotency_key_reused")
	s.do("POST", "/code-sessions/"+sid+"/run", nil, "Idempotency-Key", strings.Repeat("k", 256)).expect(t, 400, "invalid_request")
	s.wait(a.body["execution_id"].(string))

	// History: newest first, paginated.
	page := s.do("GET", "/code-sessions/"+sid+"/executions?limit=2", nil).expect(t, 200, "")
	items := page.body["items"].([]any)
	if len(items) != 2 || page.body["next_cursor"] == nil {
		t.Fatalf("page 1: %s", page.raw)
	}
	if items[0].(map[string]any)["execution_id"] != a.body["execution_id"] {
		t.Fatalf("not newest first: %s", page.raw)
	}
	page = s.do("GET", "/code-sessions/"+sid+"/executions?limit=2&cursor="+page.body["next_cursor"].(string), nil).expect(t, 200, "")
	if items := page.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["execution_id"] != first || page.body["next_cursor"] != nil {
		t.Fatalf("page 2: %s", page.raw)
	}
}

func errCode(e map[string]any) string {
	if m, ok := e["error"].(map[string]any); ok {
		s, _ := m["code"].(string)
		return s
	}
	return ""
}

// TestNewcomerDefaults is the README's first command: `runbox serve` with no
// configuration at all, from the directory it was started in, runs code.
func TestNewcomerDefaults(t *testing.T) {
	requireRoot(t)
	t.Chdir(t.TempDir())
	s := start(t, "serve", map[string]string{"RUNBOX_DATA_DIR": ""})
	for deadline := time.Now().Add(15 * time.Second); s.do("GET", "/readyz", nil).status != 200; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never ready: the sandbox self-check did not pass")
		}
	}
	if e := s.runAndWait(s.createSession("python", ""), ""); e["status"] != "COMPLETED" {
		t.Fatalf("%v", e)
	}
	if _, err := os.Stat("data/runbox.db"); err != nil {
		t.Fatalf("the SQLite file is not under ./data: %v", err)
	}
}
