package procstat

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		name, text string
		want       Times
		bad        bool
	}{
		{name: "all ten fields", text: "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 5\n",
			want: Times{User: 1, Nice: 2, System: 3, Idle: 4, IOWait: 5, IRQ: 6, SoftIRQ: 7, Steal: 8}},
		{name: "an old kernel's eight", text: "cpu 10 0 20 30 0 0 0 0\n",
			want: Times{User: 10, System: 20, Idle: 30}},
		{name: "too few fields", text: "cpu 1 2 3 4 5 6 7\n", bad: true},
		{name: "a per-CPU line first", text: "cpu0 1 2 3 4 5 6 7 8\n", bad: true},
		{name: "not a number", text: "cpu 1 2 x 4 5 6 7 8\n", bad: true},
		{name: "empty", text: "", bad: true},
	}
	for _, c := range cases {
		got, err := Parse([]byte(c.text))
		if c.bad {
			if err == nil {
				t.Errorf("%s: parsed %+v, want an error", c.name, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestSums(t *testing.T) {
	x := Times{User: 1, Nice: 2, System: 4, Idle: 8, IOWait: 16, IRQ: 32, SoftIRQ: 64, Steal: 128}
	if got := x.Busy(); got != 1+2+4+32+64 {
		t.Errorf("Busy %d", got)
	}
	if got := x.Waiting(); got != 8+16 {
		t.Errorf("Waiting %d", got)
	}
	if got := x.Total(); got != 255 {
		t.Errorf("Total %d", got)
	}
}

func TestSince(t *testing.T) {
	a := Times{User: 10, Nice: 1, System: 5, Idle: 100, IOWait: 2, IRQ: 1, SoftIRQ: 1, Steal: 3}
	b := Times{User: 15, Nice: 1, System: 9, Idle: 130, IOWait: 2, IRQ: 2, SoftIRQ: 1, Steal: 7}
	d, ok := b.Since(a)
	if want := (Times{User: 5, System: 4, Idle: 30, IRQ: 1, Steal: 4}); !ok || d != want {
		t.Errorf("Since: %+v, %v; want %+v", d, ok, want)
	}
	if _, ok := a.Since(b); ok {
		t.Error("counters that went backwards gave a difference")
	}
}

func TestReadThisHost(t *testing.T) {
	x, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if x.Total() == 0 {
		t.Errorf("no CPU time since boot: %+v", x)
	}
}
