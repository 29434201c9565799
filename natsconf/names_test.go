package natsconf_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"natter/natsconf"
)

// nameRE is the definition of a valid name in PROTOCOL.md.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_:-]{1,128}$`)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"simple", "lobby", true},
		{"all classes", "Az09_:-", true},
		{"single char", "a", true},
		{"digits", "12345", true},
		{"colon", "org:team", true},
		{"dash first", "-a", true},
		{"only punctuation", "_:-", true},
		{"128 chars", strings.Repeat("a", 128), true},
		{"129 chars", strings.Repeat("a", 129), false},
		{"empty", "", false},
		{"dot", "a.b", false},
		{"only dot", ".", false},
		{"star", "*", false},
		{"star in name", "a*", false},
		{"gt", ">", false},
		{"gt in name", "a>", false},
		{"space", "a b", false},
		{"leading space", " a", false},
		{"trailing space", "a ", false},
		{"tab", "a\tb", false},
		{"newline", "a\nb", false},
		{"carriage return", "a\r", false},
		{"NUL", "a\x00", false},
		{"DEL", "a\x7f", false},
		{"equals", "a=b", false},
		{"slash", "a/b", false},
		{"dollar", "$SYS", false},
		{"unicode letter", "café", false},
		{"cyrillic lookalike", "lobbу", false},
		{"fullwidth digit", "１", false},
		{"emoji", "😀", false},
		{"invalid utf8", "\xff", false},
		{"64 two-byte runes", strings.Repeat("é", 64), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := natsconf.ValidName(tt.in); got != tt.want {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if re := nameRE.MatchString(tt.in); re != tt.want {
				t.Fatalf("table disagrees with PROTOCOL.md for %q", tt.in)
			}
		})
	}
}

// TestValidNameEveryByte checks ValidName against the PROTOCOL.md regexp
// for every single byte, alone and inside a name.
func TestValidNameEveryByte(t *testing.T) {
	for b := 0; b < 256; b++ {
		for _, s := range []string{string([]byte{byte(b)}), "a" + string([]byte{byte(b)}) + "z"} {
			if got, want := natsconf.ValidName(s), nameRE.MatchString(s); got != want {
				t.Errorf("ValidName(%q) = %v, want %v", s, got, want)
			}
		}
	}
	if natsconf.MaxNameLen != 128 {
		t.Fatalf("MaxNameLen = %d, want 128", natsconf.MaxNameLen)
	}
}

func TestKeyTokenRoundTrip(t *testing.T) {
	tests := []struct {
		name, token string
	}{
		{"lobby", "lobby"},
		{"a:b", "a=3Ab"},
		{":", "=3A"},
		{"::", "=3A=3A"},
		{"org:team:x", "org=3Ateam=3Ax"},
		{":lead", "=3Alead"},
		{"trail:", "trail=3A"},
		{"3A", "3A"},
		{"a_b-c", "a_b-c"},
		{strings.Repeat(":", 128), strings.Repeat("=3A", 128)},
	}
	// KV keys: what nats.go accepts as a key (no ':').
	kvKey := regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)
	for _, tt := range tests {
		if !natsconf.ValidName(tt.name) {
			t.Fatalf("test name %q is not valid", tt.name)
		}
		tok := natsconf.KeyToken(tt.name)
		if tok != tt.token {
			t.Errorf("KeyToken(%q) = %q, want %q", tt.name, tok, tt.token)
		}
		if !kvKey.MatchString(tok) || strings.Contains(tok, ".") {
			t.Errorf("KeyToken(%q) = %q is not a single KV key token", tt.name, tok)
		}
		if back := natsconf.NameFromKeyToken(tok); back != tt.name {
			t.Errorf("NameFromKeyToken(%q) = %q, want %q", tok, back, tt.name)
		}
	}
}

func TestNewSubjects(t *testing.T) {
	good := []struct{ in, want string }{
		{"", natsconf.DefaultPrefix},
		{"im", "im"},
		{"chat", "chat"},
		{"a.b", "a.b"},
		{"org-1.chat_v2.x:y", "org-1.chat_v2.x:y"},
	}
	for _, tt := range good {
		s, err := natsconf.NewSubjects(tt.in)
		if err != nil {
			t.Errorf("NewSubjects(%q): %v", tt.in, err)
			continue
		}
		if s.Prefix() != tt.want {
			t.Errorf("NewSubjects(%q).Prefix() = %q, want %q", tt.in, s.Prefix(), tt.want)
		}
	}
	bad := []string{
		"a..b", "a.*", "a.>", ">", "*", "a b", " im", "im ", ".", ".im", "im.",
		"im.\t", "é", "a.b.", strings.Repeat("a", 129), "a." + strings.Repeat("b", 129), "im\x00",
	}
	for _, p := range bad {
		s, err := natsconf.NewSubjects(p)
		if !errors.Is(err, natsconf.ErrBadName) {
			t.Errorf("NewSubjects(%q) = %q, %v; want ErrBadName", p, s.Prefix(), err)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MustSubjects(%q) did not panic", p)
				}
			}()
			natsconf.MustSubjects(p)
		}()
	}
}

func TestStoreNames(t *testing.T) {
	tests := []struct {
		prefix string
		want   natsconf.Stores
	}{
		{"im", natsconf.Stores{Rooms: "IM_ROOMS", Inbox: "IM_INBOX", Members: "IM_MEMBERS"}},
		{"a.b", natsconf.Stores{Rooms: "A_B_ROOMS", Inbox: "A_B_INBOX", Members: "A_B_MEMBERS"}},
		{"my-app.v1:x", natsconf.Stores{Rooms: "MY_APP_V1_X_ROOMS", Inbox: "MY_APP_V1_X_INBOX", Members: "MY_APP_V1_X_MEMBERS"}},
	}
	// Stream and bucket names: no '.', '*', '>', whitespace or path chars.
	storeName := regexp.MustCompile(`^[A-Z0-9_]+$`)
	for _, tt := range tests {
		got := natsconf.MustSubjects(tt.prefix).StoreNames()
		if got != tt.want {
			t.Errorf("StoreNames(%q) = %+v, want %+v", tt.prefix, got, tt.want)
		}
		for _, n := range []string{got.Rooms, got.Inbox, got.Members} {
			if !storeName.MatchString(n) {
				t.Errorf("StoreNames(%q): %q is not a safe stream name", tt.prefix, n)
			}
		}
	}
}

func TestDecodeDisconnect(t *testing.T) {
	ev := natsconf.DisconnectEvent{Rooms: []string{"a", "b"}}
	got, err := natsconf.DecodeDisconnect(ev.Encode())
	if err != nil || len(got.Rooms) != 2 || got.Rooms[0] != "a" || got.Rooms[1] != "b" {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if got, err := natsconf.DecodeDisconnect(nil); err != nil || got.Rooms != nil {
		t.Fatalf("empty body = %+v, %v", got, err)
	}
	if _, err := natsconf.DecodeDisconnect([]byte(`{"rooms":`)); err == nil {
		t.Fatal("bad body: no error")
	}
}
