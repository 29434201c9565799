package natsconf_test

import (
	"errors"
	"strings"
	"testing"

	"natter/natsconf"
)

// builders are the subject builders that take a name.
var builders = []struct {
	name  string
	build func(natsconf.Subjects, string) (string, error)
	infix string // what follows the prefix
}{
	{"Command", natsconf.Subjects.Command, ".cmd."},
	{"Conn", func(s natsconf.Subjects, c string) (string, error) { return s.Conn("e1", c) }, ".conn.e1."},
	{"InboxPending", natsconf.Subjects.InboxPending, ".store.pending."},
	{"User", natsconf.Subjects.User, ".user."},
	{"Room", natsconf.Subjects.Room, ".room."},
	{"RoomStore", natsconf.Subjects.RoomStore, ".store.room."},
	{"InboxStore", natsconf.Subjects.InboxStore, ".store.user."},
}

var badNames = []string{
	"", ".", "a.b", "*", ">", "a.*", "a.>", "a b", " ", "a\tb", "a\n", "\x00",
	"é", strings.Repeat("a", 129), "a=b", "$SYS",
}

func TestBuildersRefuseBadNames(t *testing.T) {
	s := natsconf.MustSubjects("im")
	for _, b := range builders {
		for _, name := range badNames {
			subj, err := b.build(s, name)
			if !errors.Is(err, natsconf.ErrBadName) {
				t.Errorf("%s(%q) = %q, %v; want ErrBadName", b.name, name, subj, err)
			}
			if subj != "" {
				t.Errorf("%s(%q) returned subject %q with an error", b.name, name, subj)
			}
		}
	}
}

func TestConnRefusesBadEdge(t *testing.T) {
	s := natsconf.MustSubjects("im")
	for _, name := range badNames {
		if subj, err := s.Conn(name, "c1"); !errors.Is(err, natsconf.ErrBadName) || subj != "" {
			t.Errorf("Conn(%q, c1) = %q, %v; want ErrBadName", name, subj, err)
		}
		if subj, err := s.EdgeConns(name); !errors.Is(err, natsconf.ErrBadName) || subj != "" {
			t.Errorf("EdgeConns(%q) = %q, %v; want ErrBadName", name, subj, err)
		}
	}
}

func TestBuilders(t *testing.T) {
	for _, prefix := range []string{"im", "org-1.chat"} {
		s := natsconf.MustSubjects(prefix)
		for _, b := range builders {
			for _, name := range []string{"lobby", "a:b", "x", strings.Repeat("z", 128)} {
				got, err := b.build(s, name)
				if err != nil {
					t.Errorf("%s(%q): %v", b.name, name, err)
					continue
				}
				if want := prefix + b.infix + name; got != want {
					t.Errorf("%s(%q) = %q, want %q", b.name, name, got, want)
				}
			}
		}
		fixed := map[string]string{
			"CommandGroup":    s.CommandGroup(),
			"Broadcast":       s.Broadcast(),
			"EventConnect":    s.EventConnect(),
			"EventDisconnect": s.EventDisconnect(),
		}
		want := map[string]string{
			"CommandGroup":    prefix + ".cmd",
			"Broadcast":       prefix + ".bcast",
			"EventConnect":    prefix + ".evt.connect",
			"EventDisconnect": prefix + ".evt.disconnect",
		}
		for k, v := range fixed {
			if v != want[k] {
				t.Errorf("%s() with prefix %q = %q, want %q", k, prefix, v, want[k])
			}
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"im", "a.b.c"} {
		s := natsconf.MustSubjects(prefix)
		for _, tt := range []struct {
			build func(natsconf.Subjects, string) (string, error)
			kind  natsconf.Kind
		}{
			{func(s natsconf.Subjects, c string) (string, error) { return s.Conn("edge1", c) }, natsconf.KindConn},
			{natsconf.Subjects.User, natsconf.KindUser},
			{natsconf.Subjects.Room, natsconf.KindRoom},
		} {
			for _, name := range []string{"lobby", "a:b", "-", strings.Repeat("Z", 128), "bcast", "room"} {
				subj, err := tt.build(s, name)
				if err != nil {
					t.Fatal(err)
				}
				kind, got := s.Parse(subj)
				if kind != tt.kind || got != name {
					t.Errorf("Parse(%q) = %v, %q; want %v, %q", subj, kind, got, tt.kind, name)
				}
			}
		}
		if kind, name := s.Parse(s.Broadcast()); kind != natsconf.KindBroadcast || name != "" {
			t.Errorf("Parse(%q) = %v, %q; want KindBroadcast", s.Broadcast(), kind, name)
		}
	}
}

func TestParseUnknown(t *testing.T) {
	s := natsconf.MustSubjects("im")
	for _, subj := range []string{
		"",
		"im",
		"im.",
		"im..",
		"imx.room.a",                          // prefix is a longer token
		"i.room.a",                            // shorter prefix
		"chat.room.a",                         // foreign prefix
		"x.im.room.a",                         // prefix not at the start
		"IM.room.a",                           // case
		"im.room",                             // no name
		"im.room.",                            // empty name
		"im.room.a.b",                         // extra token
		"im.room.a.",                          // trailing dot
		"im.room.*",                           // wildcard
		"im.room.>",                           // wildcard
		"im.conn.a b",                         // space in name
		"im.foo.a",                            // unknown kind
		"im.cmd.join",                         // a command subject
		"im.store.room.a",                     // a store subject
		"im.store.user.a",                     // a store subject
		"im.evt.connect",                      // an event subject
		"im.evt.disconnect",                   // an event subject
		"im.bcast.x",                          // broadcast with a name
		"im.bcastx",                           // not broadcast
		"im.Room.a",                           // kind is case sensitive
		"im.room." + strings.Repeat("a", 129), // name too long
	} {
		if kind, name := s.Parse(subj); kind != natsconf.KindUnknown || name != "" {
			t.Errorf("Parse(%q) = %v, %q; want KindUnknown", subj, kind, name)
		}
	}
	// A multi-token prefix: subjects of a prefix that is a prefix of it.
	ab := natsconf.MustSubjects("a.b")
	for _, subj := range []string{"a.room.x", "a.b", "a.bx.room.x", "a.b.c.room.x"} {
		if kind, _ := ab.Parse(subj); kind != natsconf.KindUnknown {
			t.Errorf("prefix a.b: Parse(%q) = %v, want KindUnknown", subj, kind)
		}
	}
}
