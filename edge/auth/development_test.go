package auth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestDevelopment(t *testing.T) {
	long := strings.Repeat("u", maxNameLen)
	cases := []struct {
		name    string
		query   string
		want    string // "" means a guest id
		wantErr error
	}{
		{name: "user", query: "user=alice", want: "alice"},
		{name: "id", query: "id=bob", want: "bob"},
		{name: "both, user wins", query: "id=bob&user=alice", want: "alice"},
		{name: "empty user, id used", query: "user=&id=bob", want: "bob"},
		{name: "user, empty id", query: "user=alice&id=", want: "alice"},
		{name: "escaped", query: "user=a%3Ab", want: "a:b"},
		{name: "128 chars", query: "user=" + long, want: long},
		{name: "neither", query: ""},
		{name: "both empty", query: "user=&id="},
		{name: "other params only", query: "token=abc&room=lobby"},
		{name: "bad user", query: "user=a.b", wantErr: ErrBadUser},
		{name: "bad id", query: "id=%3E", wantErr: ErrBadUser},
		{name: "bad user wins over good id", query: "user=a*&id=bob", wantErr: ErrBadUser},
		{name: "space", query: "user=a+b", wantErr: ErrBadUser},
		{name: "129 chars", query: "user=" + long + "u", wantErr: ErrBadUser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := Development{}.Authenticate(devReq(tc.query))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || errors.Is(err, ErrUnauthorized) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if id.User != "" {
					t.Fatalf("user = %q on error", id.User)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if !id.Broadcast || id.Rooms != nil {
				t.Fatalf("identity = %#v, want Broadcast true and Rooms nil", id)
			}
			if tc.want != "" {
				if id.User != tc.want {
					t.Fatalf("user = %q, want %q", id.User, tc.want)
				}
				return
			}
			if !strings.HasPrefix(id.User, "guest-") || !validName(id.User) {
				t.Fatalf("guest id %q is not a valid guest-… id", id.User)
			}
		})
	}
}

func TestDevelopmentGuestsDistinct(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id, err := Development{}.Authenticate(devReq(""))
		if err != nil {
			t.Fatal(err)
		}
		if !validName(id.User) || !strings.HasPrefix(id.User, "guest-") {
			t.Fatalf("guest id %q not valid", id.User)
		}
		if seen[id.User] {
			t.Fatalf("guest id %q made twice", id.User)
		}
		seen[id.User] = true
	}
}

func TestDevelopmentNoURL(t *testing.T) {
	id, err := Development{}.Authenticate(&http.Request{})
	if err != nil || !strings.HasPrefix(id.User, "guest-") {
		t.Fatalf("Authenticate(no URL) = %#v, %v; want a guest", id, err)
	}
}
