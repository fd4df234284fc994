package wire

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The cost model (sliceCost, mapCost, what scan adds for each value) must
// bound what materializing a value allocates, or the budget is not one.
// Each value is materialized many times; the bytes allocated per decode must
// not exceed the cost scan computed for it.

// measureNoise is what other goroutines may allocate during a measurement,
// per decode.
const measureNoise = 64

func costCases() map[string]any {
	cases := map[string]any{
		"nil":                nil,
		"small uint":         uint64(7),
		"uint":               uint64(1 << 40),
		"int":                int64(-1 << 40),
		"float":              1.5,
		"string":             "hello",
		"empty string":       "",
		"time":               time.Unix(1<<33, 5),
		"empty array":        []any{},
		"empty map":          map[string]any{},
		"map with int keys":  nil, // built below
		"nested":             []any{map[string]any{"a": []any{1.5, "x", []byte{1}}}},
		"array of strings":   []any{"a", "b", "c"},
		"deep arrays":        nil,
		"map of empty maps":  nil,
		"array of empty map": []any{map[string]any{}, map[string]any{}},
	}
	deep := any(nil)
	for range MaxDepth - 2 {
		deep = []any{deep}
	}
	cases["deep arrays"] = deep
	m := map[string]any{}
	for i := range 100 {
		m[fmt.Sprintf("k%d", i)] = map[string]any{}
	}
	cases["map of empty maps"] = m
	// Around the size classes of the allocator and the page size of large
	// objects: arrays, maps, binaries and strings of every interesting size.
	for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 127, 128, 129, 500, 896, 897, 1000, 1024, 1025, 1171, 1792, 1793,
		2048, 2049, 2050, 3000, 4097, 8192, 9000} {
		arr := make([]any, n)
		for i := range arr {
			arr[i] = int64(-i - 300)
		}
		cases[fmt.Sprintf("array of %d ints", n)] = arr
		cases[fmt.Sprintf("array of %d nils", n)] = make([]any, n)
		mp := make(map[string]any, n)
		for i := range n {
			mp[fmt.Sprintf("key%d", i)] = nil
		}
		cases[fmt.Sprintf("map of %d", n)] = mp
		cases[fmt.Sprintf("binary of %d", n)] = make([]byte, n)
		cases[fmt.Sprintf("binary of %d", 16*n+1)] = make([]byte, 16*n+1)
		cases[fmt.Sprintf("string of %d", n)] = strings.Repeat("s", n)
	}
	delete(cases, "map with int keys")
	return cases
}

func TestCostModelMsgpack(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	frames := map[string]string{"map with 256 uint64 keys": buildIntKeyMap(256)}
	for name, v := range costCases() {
		w := Writer{}
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
		frames[name] = string(w.B)
	}
	for name, s := range frames {
		r := newReader(s)
		cost, _, err := r.scan(0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		materialize := func() {
			r := reader{s: s}
			if _, err := r.value(0); err != nil {
				panic(err)
			}
		}
		materialize()
		alloc := allocBytes(runsFor(s), materialize)
		if alloc > float64(cost)+measureNoise {
			t.Errorf("%s (%d bytes): %.0f bytes allocated, cost %d", name, len(s), alloc, cost)
		}
	}
}

// runsFor is how many decodes of s a measurement averages: enough for the
// noise of other goroutines to vanish in small frames.
func runsFor(s string) int {
	if len(s) > 4096 {
		return 20
	}
	return 200
}

// buildIntKeyMap is a map of n entries with uint64 keys and nil values.
func buildIntKeyMap(n int) string {
	w := Writer{}
	w.MapLen(n)
	for i := range n {
		w.Uint(1<<63 + uint64(i))
		w.Nil()
	}
	return string(w.B)
}

func TestCostModelJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	frames := map[string]string{
		"escaped string":   `"` + strings.Repeat(`\n\u00e9x`, 100) + `"`,
		"escaped key":      `{"` + strings.Repeat(`\t`, 100) + `":1}`,
		"escaped keys":     "{" + strings.Repeat(`"\ta":1,`, 99) + `"\tb":1}`,
		"nulls":            "[" + strings.Repeat("null,", 999) + "null]",
		"numbers":          "[" + strings.Repeat("123456.5,", 999) + "1]",
		"objects in array": "[" + strings.Repeat(`{"a":1,"b":"x"},`, 99) + `{}]`,
	}
	for name, v := range costCases() {
		v = plainForJSON(v)
		b, err := stdJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		frames[name] = string(b)
	}
	for name, s := range frames {
		r := &jsonReader{s: s, budget: math.MaxInt}
		if _, err := r.any(0); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		charged := math.MaxInt - r.budget
		alloc := allocBytes(runsFor(s), func() {
			r := jsonReader{s: s, budget: math.MaxInt}
			if _, err := r.any(0); err != nil {
				panic(err)
			}
		})
		if alloc > float64(charged)+measureNoise {
			t.Errorf("%s (%d bytes): %.0f bytes allocated, %d charged", name, len(s), alloc, charged)
		}
	}
}

// plainForJSON replaces what JSON cannot carry (binary, times) with strings.
func plainForJSON(v any) any {
	switch t := v.(type) {
	case []byte:
		return strings.Repeat("b", len(t))
	case time.Time:
		return t.String()
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = plainForJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = plainForJSON(e)
		}
		return out
	}
	return v
}
