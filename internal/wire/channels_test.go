package wire

import "testing"

func TestClassicChannels(t *testing.T) {
	c := NewClassicChannels("socket.io", "/", "zsEYvl")
	want := ClassicChannels{
		Broadcast:        "socket.io#/#",
		Pattern:          "socket.io#/#*",
		Request:          "socket.io-request#/#",
		Response:         "socket.io-response#/#",
		SpecificResponse: "socket.io-response#/#zsEYvl#",
	}
	if c != want {
		t.Fatalf("channels = %+v", c)
	}
	if got := c.Room("room1"); got != "socket.io#/#room1#" {
		t.Error(got)
	}
	if got := c.ResponseOf("XI7-0b"); got != "socket.io-response#/#XI7-0b#" {
		t.Error(got)
	}
	for ch, want := range map[string]string{"socket.io#/#": "", "socket.io#/#room1#": "room1", "socket.io#/#123#": "123", "socket.io#/#a#b#": "a#b"} {
		if room, ok := c.RoomOf(ch); !ok || room != want {
			t.Errorf("RoomOf(%q) = %q, %v", ch, room, ok)
		}
	}
	for _, ch := range []string{"socket.io#/#room1", "socket.io#/chat#", "socket.io#/", "other#/#r#"} {
		if room, ok := c.RoomOf(ch); ok {
			t.Errorf("RoomOf(%q) = %q, accepted", ch, room)
		}
	}
	if got := NewClassicChannels("k", "/a*b?[c]", "u").Pattern; got != `k#/a\*b\?\[c\]#*` {
		t.Errorf("pattern not escaped: %s", got)
	}
	if got := NewClassicChannels(`k\`, "/", "u").Pattern; got != `k\\#/#*` {
		t.Errorf("backslash not escaped: %s", got)
	}
}

func TestClusterChannels(t *testing.T) {
	c := NewClusterChannels("socket.io", "/chat", "434a7f5d4d4cd27e")
	if c.Main != "socket.io#/chat#" || c.Private != "socket.io#/chat#434a7f5d4d4cd27e#" {
		t.Fatalf("channels = %+v", c)
	}
	if c.Room("room1") != "socket.io#/chat#room1#" || c.ResponseOf("e22783506751d989") != "socket.io#/chat#e22783506751d989#" {
		t.Fatal(c.Room("room1"), c.ResponseOf("e22783506751d989"))
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{"": "", "plain#/#": "plain#/#", "*": `\*`, "a?b": `a\?b`, "[x]": `\[x\]`, `\`: `\\`, "é*": `é\*`} {
		if got := GlobEscape(in); got != want {
			t.Errorf("GlobEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

// A room is taken for a Node socket id when it has 20 UTF-16 code units
// (Node's looksLikeASocketId).
func TestLooksLikeNodeSocketID(t *testing.T) {
	cases := map[string]bool{
		"qNHieXLffp8HjhyrAAAA":     true,
		"abcdefghijklmnopqrstuvwx": false, // a Go socket id: 24 characters
		"room1":                    false,
		"éééééééééééééééééééé": true,  // 20 units, 40 bytes
		"😀😀😀😀😀😀😀😀😀😀":           true,  // 10 emoji, 20 units
		"😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀": false, // 40 units
		"": false,
	}
	for room, want := range cases {
		if got := LooksLikeNodeSocketID(room); got != want {
			t.Errorf("LooksLikeNodeSocketID(%q) = %v (JSLength %d)", room, got, JSLength(room))
		}
	}
	if JSLength("a😀é") != 4 {
		t.Errorf("JSLength = %d", JSLength("a😀é"))
	}
}

// HashCode wraps like JavaScript's h = h*31 + c | 0 over UTF-16 code units.
func TestHashCode(t *testing.T) {
	for s, want := range map[string]int32{"": 0, "/": 47, "/a": 1554, "/😀": 1818066, "/orders-namespace": -2133015902} {
		if got := HashCode(s); got != want {
			t.Errorf("HashCode(%q) = %d, want %d", s, got, want)
		}
	}
	if got := StreamName("s", 3, "/"); got != "s-2" { // 47 % 3
		t.Errorf("StreamName = %s", got)
	}
}
