package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zishang520/engine.io/v2/types"
)

func TestNormalizeReadsReaders(t *testing.T) {
	in := []any{"ev", types.NewBytesBuffer([]byte{1, 2}), map[string]any{"s": types.NewStringBufferString("hi")}, 3}
	out, err := NormalizeArgs(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"ev", []byte{1, 2}, map[string]any{"s": "hi"}, 3}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("normalized %#v", out)
	}
	// In-memory buffers are read without being consumed (the local encoder
	// reads them again); other readers are read to EOF.
	buf := bytes.NewBufferString("abc")
	br := bytes.NewReader([]byte("xyz"))
	_, _ = br.ReadByte()
	sr := strings.NewReader("text")
	pr := io.MultiReader(strings.NewReader("pi"), strings.NewReader("pe"))
	out, err = NormalizeArgs([]any{buf, br, sr, pr})
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{[]byte("abc"), []byte("yz"), "text", []byte("pipe")}; !reflect.DeepEqual(out, want) {
		t.Fatalf("readers %#v", out)
	}
	if buf.Len() != 3 || br.Len() != 2 || sr.Len() != 4 {
		t.Fatalf("in-memory readers consumed: %d %d %d", buf.Len(), br.Len(), sr.Len())
	}
	// A failing reader is an error naming the argument.
	_, err = NormalizeArgs([]any{"ev", io.MultiReader(errReader{})})
	if err == nil || !strings.Contains(err.Error(), "argument 1") || !errors.Is(err, errRead) {
		t.Fatalf("failing reader: %v", err)
	}
}

var errRead = errors.New("read failed")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errRead }

// Data without anything to convert is returned as it is, not copied.
func TestNormalizeDoesNotCopy(t *testing.T) {
	plainData := []any{"ev", 1, "x", map[string]any{"k": []any{true}}, []byte{1}, time.Unix(0, 0), RawMsgpack{b: "\x01"}}
	out, err := Normalize(plainData)
	if err != nil {
		t.Fatal(err)
	}
	if &out.([]any)[0] != &plainData[0] {
		t.Fatal("data copied")
	}
	m := map[string]any{"a": 1}
	out, _ = Normalize(m)
	out.(map[string]any)["b"] = 2
	if len(m) != 2 {
		t.Fatal("map copied")
	}
	// A change deep inside copies the containers on its path only.
	inner := []any{float32(1.5)}
	outer := []any{"keep", inner}
	out, _ = Normalize(outer)
	if outer[1].([]any)[0] != float32(1.5) || out.([]any)[1].([]any)[0] != 1.5 {
		t.Fatalf("input changed or output wrong: %#v %#v", outer, out)
	}
}

// Structs and other types reach remote clients as they reach local ones:
// through encoding/json, tags and MarshalJSON included.
func TestNormalizeUsesJSON(t *testing.T) {
	type user struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin,omitempty"`
		Tags  []string
		Big   uint64
		F     float64
	}
	var nilUser *user
	out, err := NormalizeArgs([]any{"u", user{Name: "ada", Tags: []string{"x"}, Big: 1 << 63, F: 2}, &user{Name: "bob"}, nilUser,
		[]int{1, 2}, map[string]int{"a": 1}, json.RawMessage(`{"r":1.5}`), marshaler{}})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		"u",
		map[string]any{"name": "ada", "Tags": []any{"x"}, "Big": float64(1 << 63), "F": int64(2)},
		map[string]any{"name": "bob", "Tags": nil, "Big": int64(0), "F": int64(0)},
		nil,
		[]any{int64(1), int64(2)}, map[string]any{"a": int64(1)}, map[string]any{"r": 1.5}, "custom",
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("normalized\n got %#v\nwant %#v", out, want)
	}
	if _, err := Normalize(make(chan int)); err == nil {
		t.Fatal("a channel normalized")
	}
}

type marshaler struct{}

func (marshaler) MarshalJSON() ([]byte, error) { return []byte(`"custom"`), nil }

func TestHasBinary(t *testing.T) {
	cases := map[bool][]any{
		true:  {[]byte{}, []any{1, []byte{1}}, map[string]any{"a": []any{[]byte{1}}}, RawMsgpack{b: "\xc4\x00", bin: true}},
		false: {nil, "x", 1, []any{"a", map[string]any{}}, RawMsgpack{b: "\x01"}, RawJSON{b: []byte(`"AQ=="`)}},
	}
	for want, vs := range cases {
		for _, v := range vs {
			if HasBinary(v) != want {
				t.Errorf("HasBinary(%#v) = %v", v, !want)
			}
		}
	}
}

// Materialize replaces raw arguments only, and copies only when it does.
func TestMaterialize(t *testing.T) {
	data := []any{"ev", RawMsgpack{b: "\x81\xa1a\x01"}, RawJSON{b: []byte(`[1,"x"]`)}, 5}
	out, err := Materialize(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"ev", map[string]any{"a": uint64(1)}, []any{int64(1), "x"}, 5}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %#v", out)
	}
	if _, ok := data[1].(RawMsgpack); !ok {
		t.Fatal("input changed")
	}
	same := []any{"ev", 1}
	out, _ = Materialize(same)
	if &out[0] != &same[0] {
		t.Fatal("copied without raw arguments")
	}
	if _, err := Materialize([]any{RawJSON{b: []byte("{")}}); err == nil {
		t.Fatal("bad raw JSON materialized")
	}
}
