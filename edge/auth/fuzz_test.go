package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthenticate feeds arbitrary token strings, in the query and in a
// Bearer header, to an HS256 authenticator. It must never panic; an error
// must wrap exactly one sentinel and not repeat the token; a success must
// yield a valid user and only come from a token whose HS256 signature
// really verifies with the secret (checked independently of the library).
func FuzzAuthenticate(f *testing.F) {
	seeds := []string{
		hs256(f, claims("alice")),
		hs256(f, claims("bob", "exp", int64(4102444800), "nbf", int64(1), "natter", map[string]any{"rooms": []string{"lobby", "team-*"}, "broadcast": true})),
		hs256(f, claims("carol", "natter", map[string]any{"rooms": []string{}})),
		hs256(f, claims("dave", "exp", int64(1))),
		hs256(f, claims("a.b")),
		hs256(f, claims("")),
		hs256(f, jwt.MapClaims{"exp": 1e300}),
		hs256(f, jwt.MapClaims{"sub": "e", "exp": "9999999999", "aud": []any{"x", 1}}),
		unsigned(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice"}`, ""),
		unsigned(`{"alg":"HS256"}`, `{"sub":"alice","sub":"x.y"}`, b64("sig")),
		"", ".", "..", "...", "a.b.c", "eyJ.eyJ.", " x ",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	a := newJWT(f, JWTConfig{Secret: testSecret, Leeway: time.Second})
	f.Fuzz(func(t *testing.T, tok string) {
		for _, r := range []struct {
			how  string
			req  *http.Request
			sent string // the token as the authenticator sees it
		}{
			{"query", queryReq(tok), tok},
			{"header", headerReq(tok), strings.TrimSpace(tok)},
		} {
			id, err := a.Authenticate(r.req)
			if err != nil {
				if errors.Is(err, ErrUnauthorized) == errors.Is(err, ErrBadUser) {
					t.Fatalf("%s: error %v wraps neither or both sentinels", r.how, err)
				}
				if len(r.sent) > 16 && strings.Contains(err.Error(), r.sent) {
					t.Fatalf("%s: error text contains the token", r.how)
				}
				continue
			}
			if !validName(id.User) {
				t.Fatalf("%s: accepted with invalid user %q", r.how, id.User)
			}
			if !hmacVerifies(r.sent) {
				t.Fatalf("%s: accepted a token whose HS256 signature does not verify: %q", r.how, r.sent)
			}
		}
	})
}

// hmacVerifies reports whether tok has three segments and its third is the
// HMAC-SHA256, under testSecret, of the first two.
func hmacVerifies(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, m.Sum(nil))
}
