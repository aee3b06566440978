package api

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

func TestTopLevelKeys(t *testing.T) {
	for _, c := range []struct {
		in   string
		keys []string
		ok   bool
	}{
		{`{}`, nil, true},
		{` { "a" : 1 } `, []string{"a"}, true},
		{`{"a":"x","a":"y"}`, []string{"a", "a"}, true},
		{`{"source_code":"{\"a\":1}\\","language":"c"}`, []string{"source_code", "language"}, true},
		{`{"a":{"b":[1,{"c":"}"}],"d":null},"e":true}`, []string{"a", "e"}, true},
		{`{"langu\u0061ge":"python"}`, []string{"language"}, true},
		{`{"a":-1.5e3,"b":false}`, []string{"a", "b"}, true},
		{`{"a":"]"}`, []string{"a"}, true},
		{`[1]`, nil, false},
		{`"s"`, nil, false},
		{``, nil, false},
		{`{"a":1`, nil, false},
		{`{"a" 1}`, nil, false},
		{`{"a":"unterminated}`, nil, false},
		{`{"a":{"b":1}`, nil, false},
		{`{a:1}`, nil, false},
	} {
		keys, ok := topLevelKeys([]byte(c.in))
		if ok != c.ok || !slices.Equal(keys, c.keys) {
			t.Errorf("topLevelKeys(%s) = %q, %v; want %q, %v", c.in, keys, ok, c.keys, c.ok)
		}
	}
}

// FuzzTopLevelKeys: on every JSON object the decoder accepts, the scan
// finds the keys json.Decoder's tokens give.
func FuzzTopLevelKeys(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":[{"b":"\"}"}]}`, `{"x":"\\\\","y":{}}`, `{"k\u00e9":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		var want []string
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') { // null
			return
		}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, k.(string))
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := topLevelKeys(data)
		if !ok || !slices.Equal(got, want) {
			t.Fatalf("topLevelKeys(%q) = %q, %v; want %q", data, got, ok, want)
		}
	})
}

// TestReadBodyReservesLittleAhead: a client announcing 1 MiB and sending
// two bytes (or nothing, holding the connection) gets no 1 MiB buffer.
func TestReadBodyReservesLittleAhead(t *testing.T) {
	b, err := readBody(bytes.NewReader([]byte("{}")), 1<<20)
	if err != nil || string(b) != "{}" {
		t.Fatalf("%q %v", b, err)
	}
	if cap(b) > 65<<10 {
		t.Errorf("reserved %d bytes for a body that announced 1 MiB", cap(b))
	}
	big := bytes.Repeat([]byte("x"), 300<<10)
	if b, err := readBody(bytes.NewReader(big), int64(len(big))); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("a 300 KiB body: %d bytes, %v", len(b), err)
	}
}
