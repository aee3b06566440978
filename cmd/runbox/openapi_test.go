package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The OpenAPI document is kept true three ways: its routes are the mux's
// (read from routes.go), its problem codes are the ones the source can emit
// (read from internal/api) and SPEC §2's table, and real answers of the real
// server validate against it.

const openAPIPath = "../../openapi/openapi.yaml"

// specErrorCodes is SPEC §2's error table ("complete list; code → HTTP
// status"). When SPEC.md is at hand it is also compared with this copy.
var specErrorCodes = map[string]int{
	"invalid_request": 400, "unsupported_language": 400,
	"unauthorized":      401,
	"session_not_found": 404, "execution_not_found": 404,
	"not_found": 404, "method_not_allowed": 405,
	"session_closed":   409,
	"version_conflict": 412,
	"source_too_large": 413, "stdin_too_large": 413, "body_too_large": 413,
	"idempotency_key_reused": 422,
	"rate_limited":           429, "too_many_inflight": 429,
	"internal_error": 500,
	"overloaded":     503, "unavailable": 503,
}

// apiRoute is one handle("METHOD /path", h, public) of routes.go.
type apiRoute struct {
	method, path string
	public       bool
}

func (r apiRoute) pattern() string { return r.method + " " + r.path }

// registeredRoutes reads the routes from internal/api/routes.go itself, so
// that the list cannot be a stale copy.
func registeredRoutes(t *testing.T) []apiRoute {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../internal/api/routes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var routes []apiRoute
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "handle" {
			return true
		}
		if len(call.Args) != 3 {
			t.Fatalf("handle call with %d arguments", len(call.Args))
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Fatal("handle pattern is not a string literal")
		}
		pattern, _ := strconv.Unquote(lit.Value)
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			t.Fatalf("route %q has no method", pattern)
		}
		pub, ok := call.Args[2].(*ast.Ident)
		if !ok || (pub.Name != "true" && pub.Name != "false") {
			t.Fatalf("route %q: public flag is not a literal", pattern)
		}
		routes = append(routes, apiRoute{method, path, pub.Name == "true"})
		return true
	})
	if len(routes) < 10 {
		t.Fatalf("found only %d routes in routes.go", len(routes))
	}
	return routes
}

// statusConstant maps http.StatusXxx names to their values.
func statusConstant(name string) (int, bool) {
	for code := 100; code < 600; code++ {
		text := http.StatusText(code)
		if text != "" && "Status"+strings.NewReplacer(" ", "", "-", "").Replace(text) == name {
			return code, true
		}
	}
	return 0, false
}

// emittedCodes finds every problem code the API source can answer with: the
// literal code of each errorf(status, "code", …) call and apiError{…}
// literal in internal/api, with its status.
func emittedCodes(t *testing.T) map[string]int {
	t.Helper()
	files, _ := filepath.Glob("../../internal/api/*.go")
	out := map[string]int{}
	fset := token.NewFileSet()
	add := func(pos token.Pos, status, code ast.Expr) {
		where := fset.Position(pos).String()
		lit, ok := code.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: problem code is not a string literal; keep codes literal so this test can see them", where)
			return
		}
		c, _ := strconv.Unquote(lit.Value)
		var st int
		switch s := status.(type) {
		case *ast.SelectorExpr:
			st, ok = statusConstant(s.Sel.Name)
		case *ast.BasicLit:
			st, _ = strconv.Atoi(s.Value)
			ok = st != 0
		}
		if !ok {
			t.Errorf("%s: cannot read the status of %q", where, c)
			return
		}
		if prev, dup := out[c]; dup && prev != st {
			t.Errorf("%s: code %q is answered with both %d and %d", where, c, prev, st)
		}
		out[c] = st
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				return n.Name.Name != "errorf" // its own literal passes its parameters through
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "errorf" {
					add(n.Pos(), n.Args[0], n.Args[1])
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "apiError" {
					var status, code ast.Expr
					for i, e := range n.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							switch kv.Key.(*ast.Ident).Name {
							case "status":
								status = kv.Value
							case "code":
								code = kv.Value
							}
						} else if i == 0 {
							status = e
						} else if i == 1 {
							code = e
						}
					}
					if status == nil || code == nil {
						t.Errorf("%s: apiError literal without status or code", fset.Position(n.Pos()))
					} else {
						add(n.Pos(), status, code)
					}
				}
			}
			return true
		})
	}
	return out
}

// titleCodes reads the keys of the titles map in encode.go: the registry of
// codes writeProblem can title.
func titleCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../../internal/api/encode.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "titles" {
			return true
		}
		for _, e := range vs.Values[0].(*ast.CompositeLit).Elts {
			k, _ := strconv.Unquote(e.(*ast.KeyValueExpr).Key.(*ast.BasicLit).Value)
			codes = append(codes, k)
		}
		return false
	})
	return codes
}

// specTable reads SPEC §2's error table when SPEC.md is available (it lives
// beside the repository in the team's workspace, or at its root).
func specTable(t *testing.T) map[string]int {
	for _, p := range []string{"../../SPEC.md", "../../../shared/SPEC.md"} {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		_, table, ok := strings.Cut(string(raw), "### Error codes")
		if !ok {
			t.Fatalf("%s has no error code table", p)
		}
		out := map[string]int{}
		code := regexp.MustCompile("`([a-z_]+)`")
		for _, line := range strings.Split(table, "\n") {
			cells := strings.Split(line, "|")
			if len(cells) < 4 || !strings.HasPrefix(line, "| ") {
				if len(out) > 0 {
					break
				}
				continue
			}
			var statuses []int
			for _, s := range strings.Split(cells[1], "/") {
				if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
					statuses = append(statuses, n)
				}
			}
			codes := code.FindAllStringSubmatch(cells[2], -1)
			for i, c := range codes {
				switch {
				case len(statuses) == 1:
					out[c[1]] = statuses[0]
				case len(statuses) == len(codes):
					out[c[1]] = statuses[i]
				default:
					t.Fatalf("SPEC table row %q: cannot pair codes with statuses", line)
				}
			}
		}
		return out
	}
	t.Log("SPEC.md not found; comparing with the copy of its table in this test only")
	return nil
}

// oaDoc is the parsed document in JSON's data model (maps, []any, float64).
type oaDoc map[string]any

func loadOpenAPI(t *testing.T) oaDoc {
	t.Helper()
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	j, err := json.Marshal(y)
	if err != nil {
		t.Fatalf("openapi.yaml is not JSON-compatible (non-string keys or timestamps?): %v", err)
	}
	var doc oaDoc
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// resolve follows a local $ref ("#/components/…") until a non-ref node.
func (d oaDoc) resolve(node any) (map[string]any, error) {
	for range 10 {
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("not an object: %v", node)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return nil, fmt.Errorf("non-local $ref %q", ref)
		}
		var cur any = map[string]any(d)
		for _, part := range strings.Split(ref[2:], "/") {
			part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
			cm, ok := cur.(map[string]any)
			if !ok || cm[part] == nil {
				return nil, fmt.Errorf("dangling $ref %q", ref)
			}
			cur = cm[part]
		}
		node = cur
	}
	return nil, fmt.Errorf("$ref loop")
}

func (d oaDoc) mustResolve(t *testing.T, node any) map[string]any {
	t.Helper()
	m, err := d.resolve(node)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// operation returns the operation of "METHOD /path", or nil.
func (d oaDoc) operation(method, path string) map[string]any {
	paths, _ := d["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	return op
}

// responses of an operation (or of x-unrouted when op is nil), resolved.
func (d oaDoc) responses(t *testing.T, op map[string]any) map[string]map[string]any {
	t.Helper()
	var raw map[string]any
	if op == nil {
		raw, _ = d["x-unrouted"].(map[string]any)
	} else {
		raw, _ = op["responses"].(map[string]any)
	}
	out := map[string]map[string]any{}
	for status, r := range raw {
		out[status] = d.mustResolve(t, r)
	}
	return out
}

// problemCodes returns the codes a problem response enumerates: the enum on
// `code` in its schema (directly or in an allOf part).
func (d oaDoc) problemCodes(t *testing.T, resp map[string]any) []string {
	t.Helper()
	content, _ := resp["content"].(map[string]any)
	media, ok := content["application/problem+json"].(map[string]any)
	if !ok {
		return nil
	}
	var codes []string
	var walk func(s any)
	walk = func(s any) {
		sm := d.mustResolve(t, s)
		if props, ok := sm["properties"].(map[string]any); ok {
			if c, ok := props["code"].(map[string]any); ok {
				if enum, ok := c["enum"].([]any); ok {
					codes = codes[:0]
					for _, e := range enum {
						codes = append(codes, e.(string))
					}
				}
			}
		}
		if all, ok := sm["allOf"].([]any); ok {
			for _, part := range all {
				walk(part)
			}
		}
	}
	// The last allOf part (the response-specific one) narrows Problem's enum.
	walk(media["schema"])
	return codes
}

// ---- a JSON Schema checker for the subset the document uses ----

var schemaAnnotations = map[string]bool{
	"description": true, "format": true, "example": true, "examples": true,
	"default": true, "title": true, "summary": true,
}

func (d oaDoc) validate(schema any, v any, at string) []string {
	sm, err := d.resolve(schema)
	if err != nil {
		return []string{at + ": " + err.Error()}
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	for k := range sm {
		switch k {
		case "type", "enum", "required", "properties", "additionalProperties", "items",
			"allOf", "oneOf", "anyOf", "minimum", "maximum", "maxLength", "pattern", "minProperties":
		default:
			if !schemaAnnotations[k] {
				fail("schema keyword %q is not supported by this checker", k)
			}
		}
	}
	if ty, ok := sm["type"]; ok {
		var types []string
		switch ty := ty.(type) {
		case string:
			types = []string{ty}
		case []any:
			for _, x := range ty {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(ty string) bool { return jsonType(v, ty) }) {
			fail("%s is not of type %v", short(v), types)
			return errs
		}
	}
	if enum, ok := sm["enum"].([]any); ok {
		if !slices.ContainsFunc(enum, func(e any) bool { return jsonEqual(e, v) }) {
			fail("%s is not one of %v", short(v), enum)
		}
	}
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		parts, ok := sm[kw].([]any)
		if !ok {
			continue
		}
		passed := 0
		var sub []string
		for i, p := range parts {
			e := d.validate(p, v, fmt.Sprintf("%s(%s[%d])", at, kw, i))
			if len(e) == 0 {
				passed++
			}
			sub = append(sub, e...)
		}
		switch {
		case kw == "allOf" && passed != len(parts), kw == "anyOf" && passed == 0:
			errs = append(errs, sub...)
		case kw == "oneOf" && passed != 1:
			fail("matches %d of oneOf's %d schemas: %v", passed, len(parts), sub)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := sm["properties"].(map[string]any)
		for _, r := range asSlice(sm["required"]) {
			if _, ok := v[r.(string)]; !ok {
				fail("required property %q is missing", r)
			}
		}
		if n, ok := sm["minProperties"].(float64); ok && float64(len(v)) < n {
			fail("fewer than %v properties", n)
		}
		for k, pv := range v {
			if ps, ok := props[k]; ok {
				errs = append(errs, d.validate(ps, pv, at+"."+k)...)
				continue
			}
			switch ap := sm["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("property %q is not allowed", k)
				}
			case map[string]any:
				errs = append(errs, d.validate(ap, pv, at+"."+k)...)
			}
		}
	case []any:
		if items, ok := sm["items"]; ok {
			for i, it := range v {
				errs = append(errs, d.validate(items, it, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case string:
		if n, ok := sm["maxLength"].(float64); ok && float64(len([]rune(v))) > n {
			fail("longer than %v characters", n)
		}
		if p, ok := sm["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			fail("%q does not match %s", short(v), p)
		}
	case float64:
		if n, ok := sm["minimum"].(float64); ok && v < n {
			fail("%v < minimum %v", v, n)
		}
		if n, ok := sm["maximum"].(float64); ok && v > n {
			fail("%v > maximum %v", v, n)
		}
	}
	return errs
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func jsonType(v any, ty string) bool {
	switch ty {
	case "null":
		return v == nil
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	}
	return false
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func short(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// ---- static checks ----

func TestOpenAPIMatchesRoutesAndCodes(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi: %q, want 3.1.x", v)
	}
	routes := registeredRoutes(t)

	// (a) The document's operations are exactly the mux's routes, with the
	// same authentication.
	documented := map[string]bool{}
	for path, item := range doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			switch method {
			case "get", "put", "post", "patch", "delete", "head", "options", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, r := range routes {
		op := doc.operation(r.method, r.path)
		if op == nil {
			t.Errorf("route %s is not documented", r.pattern())
			continue
		}
		delete(documented, r.pattern())
		sec, has := op["security"].([]any)
		if r.public && (!has || len(sec) != 0) {
			t.Errorf("%s is public: it must declare security: []", r.pattern())
		}
		if !r.public && has && len(sec) == 0 {
			t.Errorf("%s needs a key but is documented as public", r.pattern())
		}
		resps := doc.responses(t, op)
		if _, ok := resps["401"]; !r.public && !ok {
			t.Errorf("%s: 401 not documented", r.pattern())
		}
		if _, ok := resps["500"]; !ok {
			t.Errorf("%s: 500 not documented (any handler's panic becomes internal_error)", r.pattern())
		}
		// Every {param} of the pattern is a documented path parameter.
		params := map[string]bool{}
		for _, list := range []any{doc["paths"].(map[string]any)[r.path].(map[string]any)["parameters"], op["parameters"]} {
			for _, p := range asSlice(list) {
				pm := doc.mustResolve(t, p)
				if pm["in"] == "path" {
					params[pm["name"].(string)] = true
				}
			}
		}
		for _, m := range regexp.MustCompile(`\{([a-z_]+)\}`).FindAllStringSubmatch(r.path, -1) {
			if !params[m[1]] {
				t.Errorf("%s: path parameter %s not documented", r.pattern(), m[1])
			}
			if _, ok := resps["404"]; !ok {
				t.Errorf("%s: 404 for an unknown {%s} not documented", r.pattern(), m[1])
			}
		}
		if rb, ok := op["requestBody"]; ok {
			body := doc.mustResolve(t, rb)
			schema := doc.mustResolve(t, body["content"].(map[string]any)["application/json"].(map[string]any)["schema"])
			if schema["additionalProperties"] != false {
				t.Errorf("%s: request body schema must set additionalProperties: false (the server refuses unknown fields)", r.pattern())
			}
			if !slices.Contains(doc.problemCodes(t, resps["413"]), "body_too_large") {
				t.Errorf("%s: takes a body but does not document 413 body_too_large", r.pattern())
			}
			if !slices.Contains(doc.problemCodes(t, resps["400"]), "invalid_request") {
				t.Errorf("%s: takes a body but does not document 400 invalid_request", r.pattern())
			}
		}
	}
	for extra := range documented {
		t.Errorf("%s is documented but not routed", extra)
	}
	if sec := doc.mustResolve(t, doc["components"].(map[string]any)["securitySchemes"].(map[string]any)["bearerAuth"]); sec["scheme"] != "bearer" {
		t.Error("bearerAuth is not an HTTP bearer scheme")
	}

	// (b) Codes: the source's, the titles registry, SPEC's table and the
	// document agree.
	emitted := emittedCodes(t)
	if spec := specTable(t); spec != nil && !mapsEqual(spec, specErrorCodes) {
		t.Errorf("SPEC.md's error table %v differs from this test's copy %v", spec, specErrorCodes)
	}
	if !mapsEqual(emitted, specErrorCodes) {
		t.Errorf("codes the API can emit %v differ from SPEC's table %v", emitted, specErrorCodes)
	}
	titles := titleCodes(t)
	sort.Strings(titles)
	if want := sortedKeys(specErrorCodes); !slices.Equal(titles, want) {
		t.Errorf("titles registry %v, want SPEC's codes %v", titles, want)
	}
	problem := doc.mustResolve(t, map[string]any{"$ref": "#/components/schemas/Problem"})
	var enum []string
	for _, c := range problem["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any) {
		enum = append(enum, c.(string))
	}
	sort.Strings(enum)
	if want := sortedKeys(specErrorCodes); !slices.Equal(enum, want) {
		t.Errorf("Problem.code enum %v, want %v", enum, want)
	}
	documentedAt := map[string]map[int]bool{}
	ops := []map[string]any{nil} // nil: x-unrouted
	for _, r := range routes {
		ops = append(ops, doc.operation(r.method, r.path))
	}
	for _, op := range ops {
		for status, resp := range doc.responses(t, op) {
			st, _ := strconv.Atoi(status)
			codes := doc.problemCodes(t, resp)
			if st >= 400 && st != 503 && len(codes) == 0 {
				t.Errorf("a %s response documents no problem codes", status)
			}
			for _, c := range codes {
				if specErrorCodes[c] != st {
					t.Errorf("code %q is documented under %d; SPEC gives %d", c, st, specErrorCodes[c])
				}
				if documentedAt[c] == nil {
					documentedAt[c] = map[int]bool{}
				}
				documentedAt[c][st] = true
			}
		}
	}
	for c, st := range emitted {
		if !documentedAt[c][st] {
			t.Errorf("code %q (%d) can be emitted but is documented under no %d response", c, st, st)
		}
	}

	// Every example validates against its schema.
	checkExamples(t, doc)
}

// checkExamples validates each media type's example(s) against its schema.
func checkExamples(t *testing.T, doc oaDoc) {
	t.Helper()
	checked := 0
	var walk func(node any, at string)
	walk = func(node any, at string) {
		switch n := node.(type) {
		case map[string]any:
			if schema, ok := n["schema"]; ok {
				if ex, ok := n["example"]; ok {
					for _, e := range doc.validate(schema, ex, at+".example") {
						t.Error(e)
					}
					checked++
				}
				if exs, ok := n["examples"].(map[string]any); ok {
					for name, ex := range exs {
						for _, e := range doc.validate(schema, ex.(map[string]any)["value"], at+".examples."+name) {
							t.Error(e)
						}
						checked++
					}
				}
			}
			for k, v := range n {
				if k != "example" && k != "examples" {
					walk(v, at+"."+k)
				}
			}
		case []any:
			for i, v := range n {
				walk(v, fmt.Sprintf("%s[%d]", at, i))
			}
		}
	}
	walk(map[string]any{"paths": doc["paths"], "components": doc["components"]}, "")
	if checked < 20 {
		t.Errorf("only %d examples found", checked)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- live conformance ----

// conformance checks real answers against the document and remembers which
// documented (route, status) pairs were seen.
type conformance struct {
	t      *testing.T
	doc    oaDoc
	mux    *http.ServeMux
	mu     sync.Mutex
	seen   map[string]bool
	routes []apiRoute
}

func newConformance(t *testing.T) *conformance {
	c := &conformance{t: t, doc: loadOpenAPI(t), mux: http.NewServeMux(), seen: map[string]bool{}, routes: registeredRoutes(t)}
	for _, r := range c.routes {
		c.mux.Handle(r.pattern(), http.NotFoundHandler())
	}
	return c
}

// anyStatus makes call accept whatever documented status comes.
const anyStatus = -1

// call sends a request, checks its status, and checks the answer against
// the documented response of the route the mux picks for it.
func (c *conformance) call(t *testing.T, s *server, method, path string, body any, status int, headers ...string) response {
	t.Helper()
	r := s.do(method, path, body, headers...)
	if r.status != status && status != anyStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.raw)
	}
	status = r.status
	req, _ := http.NewRequest(method, "http://x"+path, nil)
	_, pattern := c.mux.Handler(req)
	var op map[string]any
	route := "(unrouted)"
	if pattern != "" {
		m, p, _ := strings.Cut(pattern, " ")
		op = c.doc.operation(m, p)
		route = pattern
		if op == nil {
			t.Fatalf("%s: route %s is not documented", path, pattern)
		}
	}
	resp, ok := c.doc.responses(t, op)[strconv.Itoa(status)]
	if !ok {
		t.Fatalf("%s %s answered %d, which is not documented for %s: %s", method, path, status, route, r.raw)
	}
	c.mu.Lock()
	c.seen[route+" "+strconv.Itoa(status)] = true
	if code, ok := r.body["code"].(string); ok {
		c.seen[code] = true
		if !slices.Contains(c.doc.problemCodes(t, resp), code) {
			t.Errorf("%s %s %d: code %q is not among the documented %v", method, path, status, code, c.doc.problemCodes(t, resp))
		}
	}
	c.mu.Unlock()

	for name, h := range asMap(resp["headers"]) {
		hm := c.doc.mustResolve(t, h)
		got := r.header.Get(name)
		if got == "" {
			if hm["required"] == true {
				t.Errorf("%s %s %d: header %s missing", method, path, status, name)
			}
			continue
		}
		var v any = got
		if asMap(hm["schema"])["type"] == "integer" {
			n, err := strconv.Atoi(got)
			if err != nil {
				t.Errorf("%s %s: header %s=%q is not an integer", method, path, name, got)
				continue
			}
			v = float64(n)
		}
		for _, e := range c.doc.validate(hm["schema"], v, "header "+name) {
			t.Errorf("%s %s %d: %s", method, path, status, e)
		}
	}
	content := asMap(resp["content"])
	if len(content) == 0 {
		if len(r.raw) != 0 {
			t.Errorf("%s %s %d: documented without a body, got %q", method, path, status, r.raw)
		}
		return r
	}
	ct := r.header.Get("Content-Type")
	mediaType, _, _ := strings.Cut(ct, ";")
	media, ok := content[strings.TrimSpace(mediaType)].(map[string]any)
	if !ok {
		t.Fatalf("%s %s %d: content type %q is not documented (%v)", method, path, status, ct, slices.Sorted(mapKeys(content)))
	}
	var v any
	if strings.HasSuffix(mediaType, "json") {
		if err := json.Unmarshal(r.raw, &v); err != nil {
			t.Fatalf("%s %s: body is not JSON: %s", method, path, r.raw)
		}
	} else {
		v = string(r.raw)
	}
	for _, e := range c.doc.validate(media["schema"], v, "body") {
		t.Errorf("%s %s %d: %s\n%s", method, path, status, e, r.raw)
	}
	return r
}

// report logs the documented (route, status) pairs no request provoked.
func (c *conformance) report() {
	var missing []string
	for _, r := range c.routes {
		for status := range c.doc.responses(c.t, c.doc.operation(r.method, r.path)) {
			if !c.seen[r.pattern()+" "+status] {
				missing = append(missing, r.pattern()+" "+status)
			}
		}
	}
	sort.Strings(missing)
	c.t.Logf("documented answers not provoked here: %s", strings.Join(missing, ", "))
	var codes []string
	for code := range specErrorCodes {
		if !c.seen[code] {
			codes = append(codes, code)
		}
	}
	sort.Strings(codes)
	c.t.Logf("problem codes not provoked here: %v", codes)
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestOpenAPIConformance drives the real `runbox api` (no sandbox needed)
// through a request for each answer it can provoke and checks every answer
// against the document.
func TestOpenAPIConformance(t *testing.T) {
	c := newConformance(t)
	defer c.report()
	missing := "00000000-0000-4000-8000-000000000000"
	big := strings.Repeat("x", 65537)

	t.Run("open", func(t *testing.T) {
		s := apiOnly(t, map[string]string{"RUNBOX_MAX_QUEUE_DEPTH": "3", "RUNBOX_MAX_INFLIGHT_PER_SESSION": "2"})

		// The document is served as is.
		file, _ := os.ReadFile(openAPIPath)
		if r := c.call(t, s, "GET", "/openapi.yaml", nil, 200); !bytes.Equal(r.raw, file) {
			t.Error("GET /openapi.yaml does not serve openapi/openapi.yaml")
		}
		c.call(t, s, "GET", "/healthz", nil, 200)
		c.call(t, s, "GET", "/readyz", nil, 200)
		c.call(t, s, "GET", "/metrics", nil, 200)
		c.call(t, s, "GET", "/languages", nil, 200)

		// Sessions.
		a := c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python"}, 201).body["session_id"].(string)
		c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python", "source_code": "print(input())"}, 201)
		c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "cobol"}, 400)
		c.call(t, s, "POST", "/code-sessions", `{"language":"python","x":1}`, 400)
		c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python", "source_code": big}, 413)
		c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python", "source_code": strings.Repeat("x", 2<<20)}, 413)
		c.call(t, s, "GET", "/code-sessions/"+a, nil, 200)
		c.call(t, s, "GET", "/code-sessions/"+missing, nil, 404)
		c.call(t, s, "GET", "/code-sessions/nope", nil, 404)
		c.call(t, s, "PATCH", "/code-sessions/"+a, map[string]any{"source_code": "print(2)"}, 200, "If-Match", `"1"`)
		c.call(t, s, "PATCH", "/code-sessions/"+a, map[string]any{"source_code": "print(3)"}, 412, "If-Match", `"1"`)
		c.call(t, s, "PATCH", "/code-sessions/"+a, map[string]any{}, 400)
		c.call(t, s, "PATCH", "/code-sessions/"+a, map[string]any{"language": "cobol"}, 400)
		c.call(t, s, "PATCH", "/code-sessions/"+a, map[string]any{"source_code": big}, 413)
		c.call(t, s, "PATCH", "/code-sessions/"+missing, map[string]any{"source_code": "x"}, 404)

		// Runs.
		r := c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdin": "1"}, 202, "Idempotency-Key", "k1")
		eid := r.body["execution_id"].(string)
		if again := c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdin": "1"}, 202, "Idempotency-Key", "k1"); again.body["execution_id"] != eid {
			t.Error("an idempotent repeat made a new execution")
		}
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdin": "2"}, 422, "Idempotency-Key", "k1")
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", nil, 400, "Idempotency-Key", strings.Repeat("k", 256))
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdn": ""}, 400)
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdin": big}, 413)
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", map[string]any{"stdin": strings.Repeat("x", 2<<20)}, 413)
		c.call(t, s, "POST", "/code-sessions/"+missing+"/run", nil, 404)
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", nil, 202)
		c.call(t, s, "POST", "/code-sessions/"+a+"/run", nil, 429)

		// Reading executions (they stay QUEUED: no worker).
		c.call(t, s, "GET", "/executions/"+eid, nil, 200)
		c.call(t, s, "GET", "/executions/"+eid+"?wait=0.2", nil, 200)
		c.call(t, s, "GET", "/executions/"+eid+"?wait=31", nil, 400)
		c.call(t, s, "GET", "/executions/"+missing, nil, 404)
		c.call(t, s, "GET", "/executions/nope", nil, 404)
		page := c.call(t, s, "GET", "/code-sessions/"+a+"/executions?limit=1", nil, 200)
		cursor, _ := page.body["next_cursor"].(string)
		if cursor == "" {
			t.Fatalf("no next_cursor with 2 executions and limit=1: %s", page.raw)
		}
		c.call(t, s, "GET", "/code-sessions/"+a+"/executions?cursor="+cursor, nil, 200)
		c.call(t, s, "GET", "/code-sessions/"+a+"/executions?limit=0", nil, 400)
		c.call(t, s, "GET", "/code-sessions/"+a+"/executions?cursor=zzz", nil, 400)
		c.call(t, s, "GET", "/code-sessions/"+missing+"/executions", nil, 404)

		// Closing.
		b := c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python"}, 201).body["session_id"].(string)
		c.call(t, s, "DELETE", "/code-sessions/"+b, nil, 204)
		c.call(t, s, "DELETE", "/code-sessions/"+missing, nil, 404)
		c.call(t, s, "PATCH", "/code-sessions/"+b, map[string]any{"source_code": "x"}, 409)
		c.call(t, s, "POST", "/code-sessions/"+b+"/run", nil, 409)

		// Overload: a third queued run anywhere reaches the bound of 3.
		d := c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python"}, 201).body["session_id"].(string)
		c.call(t, s, "POST", "/code-sessions/"+d+"/run", nil, 202)
		// The depth is a sampled count (refreshed in the background) plus
		// the runs accepted since: the bound may hold at once or after a
		// refresh; then it holds.
		for range 30 {
			time.Sleep(100 * time.Millisecond)
			if s.do("POST", "/code-sessions/"+d+"/run", nil).status == 503 {
				break
			}
		}
		c.call(t, s, "POST", "/code-sessions/"+d+"/run", nil, 503)

		// Unrouted.
		c.call(t, s, "GET", "/nope", nil, 404)
		r = c.call(t, s, "PUT", "/code-sessions/"+a, nil, 405)
		if !strings.Contains(r.header.Get("Allow"), "PATCH") {
			t.Errorf("Allow %q", r.header.Get("Allow"))
		}
	})

	t.Run("keys and rate limits", func(t *testing.T) {
		s := apiOnly(t, map[string]string{
			"RUNBOX_API_KEYS":      "alice:key-a",
			"RUNBOX_AUTOSAVE_RATE": "0.01", "RUNBOX_AUTOSAVE_BURST": "1",
			"RUNBOX_RUN_RATE": "0.01", "RUNBOX_RUN_BURST": "1",
			"RUNBOX_SESSION_RATE": "0.01", "RUNBOX_SESSION_BURST": "1",
		})
		// Every route that needs a key answers 401 without one; the others 200.
		for _, r := range c.routes {
			path := strings.ReplaceAll(r.path, "{id}", missing)
			var body any
			if r.method == "POST" || r.method == "PATCH" {
				body = map[string]any{}
			}
			want := 401
			if r.public {
				want = 200
			}
			c.call(t, s, r.method, path, body, want)
		}
		s.key = "wrong"
		c.call(t, s, "GET", "/languages", nil, 401)

		s.key = "key-a"
		id := c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python"}, 201).body["session_id"].(string)
		c.call(t, s, "PATCH", "/code-sessions/"+id, map[string]any{"source_code": "x"}, 200)
		c.call(t, s, "PATCH", "/code-sessions/"+id, map[string]any{"source_code": "y"}, 429)
		c.call(t, s, "POST", "/code-sessions/"+id+"/run", nil, 202)
		c.call(t, s, "POST", "/code-sessions/"+id+"/run", nil, 429)
		c.call(t, s, "POST", "/code-sessions", map[string]any{"language": "python"}, 429)
	})

	t.Run("terminal executions", func(t *testing.T) {
		requireRoot(t)
		s := start(t, "serve", nil)
		// Not ready (503) until the sandbox self-check has passed.
		deadline := time.Now().Add(60 * time.Second)
		for c.call(t, s, "GET", "/readyz", nil, anyStatus).status != 200 {
			if time.Now().After(deadline) {
				t.Fatal("never ready")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, src := range []string{`print(input())`, "import sys\nprint('out')\nsys.exit(3)"} {
			id := s.createSession("python", src)
			eid := c.call(t, s, "POST", "/code-sessions/"+id+"/run", map[string]any{"stdin": "hi\n"}, 202).body["execution_id"].(string)
			s.wait(eid)
			r := c.call(t, s, "GET", "/executions/"+eid, nil, 200)
			if r.body["stdout"] == nil || r.body["finished_at"] == nil {
				t.Errorf("terminal execution without output: %s", r.raw)
			}
			c.call(t, s, "GET", "/code-sessions/"+id+"/executions", nil, 200)
		}
	})
}
