package auth

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authCase is one token presented to an authenticator.
type authCase struct {
	name    string
	req     *http.Request
	tok     string // the token in req, for the "never in the error" check
	want    Identity
	wantErr error // nil, ErrUnauthorized or ErrBadUser
}

func runAuthCases(t *testing.T, a Authenticator, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			if req == nil {
				req = queryReq(tc.tok)
			}
			got, err := a.Authenticate(req)
			checkAuth(t, got, err, tc.tok, tc.want, tc.wantErr)
		})
	}
}

func checkAuth(t *testing.T, got Identity, err error, tok string, want Identity, wantErr error) {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		// When the identity ends is TestJWTIdentityExpires' matter.
		got.Expires = want.Expires
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("identity = %#v, want %#v", got, want)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("err = %v, want %v", err, wantErr)
	}
	t.Log(err)
	other := ErrBadUser
	if wantErr == ErrBadUser {
		other = ErrUnauthorized
	}
	if errors.Is(err, other) {
		t.Fatalf("err = %v is also %v", err, other)
	}
	if !reflect.DeepEqual(got, Identity{}) {
		t.Fatalf("identity on error = %#v, want zero", got)
	}
	if len(tok) > 8 && strings.Contains(err.Error(), tok) {
		t.Fatalf("error text contains the token: %v", err)
	}
	if _, reason, _ := strings.Cut(err.Error(), wantErr.Error()+": "); reason == "" {
		t.Fatalf("error %q has no reason after the sentinel", err)
	}
}

func TestJWTHS256(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret})
	rsaPriv := rsaKey(t, 2048)
	valid := hs256(t, claims("alice"))
	parts := strings.Split(valid, ".")
	long := strings.Repeat("x", maxNameLen)

	cases := []authCase{
		{name: "valid", tok: valid, want: Identity{User: "alice"}},
		{name: "valid with exp nbf iat", tok: hs256(t, claims("bob", "exp", unix(time.Hour), "nbf", unix(-time.Hour), "iat", unix(-time.Hour))), want: Identity{User: "bob"}},
		{name: "all name characters", tok: hs256(t, claims("aZ09_:-")), want: Identity{User: "aZ09_:-"}},
		{name: "128 char sub", tok: hs256(t, claims(long)), want: Identity{User: long}},

		{name: "wrong secret", tok: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims("alice")), wantErr: ErrUnauthorized},
		{name: "tampered payload", tok: parts[0] + "." + b64(`{"sub":"mallory"}`) + "." + parts[2], wantErr: ErrUnauthorized},
		{name: "signature removed", tok: parts[0] + "." + parts[1] + ".", wantErr: ErrUnauthorized},
		{name: "expired", tok: hs256(t, claims("alice", "exp", unix(-time.Hour))), wantErr: ErrUnauthorized},
		{name: "expired within leeway", tok: hs256(t, claims("alice", "exp", unix(-10*time.Second))), want: Identity{User: "alice"}},
		{name: "expired beyond leeway", tok: hs256(t, claims("alice", "exp", unix(-time.Minute))), wantErr: ErrUnauthorized},
		{name: "nbf in future", tok: hs256(t, claims("alice", "nbf", unix(time.Hour))), wantErr: ErrUnauthorized},
		{name: "nbf within leeway", tok: hs256(t, claims("alice", "nbf", unix(10*time.Second))), want: Identity{User: "alice"}},
		{name: "exp not a number", tok: hs256(t, claims("alice", "exp", "tomorrow")), wantErr: ErrUnauthorized},

		{name: "alg none", tok: unsigned(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice"}`, ""), wantErr: ErrUnauthorized},
		{name: "alg None", tok: unsigned(`{"alg":"None","typ":"JWT"}`, `{"sub":"alice"}`, ""), wantErr: ErrUnauthorized},
		{name: "alg NONE", tok: unsigned(`{"alg":"NONE"}`, `{"sub":"alice"}`, ""), wantErr: ErrUnauthorized},
		{name: "alg none keeping HS256 signature", tok: b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "." + parts[2], wantErr: ErrUnauthorized},
		{name: "alg missing", tok: unsigned(`{"typ":"JWT"}`, `{"sub":"alice"}`, parts[2]), wantErr: ErrUnauthorized},
		{name: "alg not a string", tok: unsigned(`{"alg":256}`, `{"sub":"alice"}`, parts[2]), wantErr: ErrUnauthorized},
		{name: "HS384", tok: sign(t, jwt.SigningMethodHS384, testSecret, claims("alice")), wantErr: ErrUnauthorized},
		{name: "HS512", tok: sign(t, jwt.SigningMethodHS512, testSecret, claims("alice")), wantErr: ErrUnauthorized},
		{name: "RS256 to HS256 authenticator", tok: sign(t, jwt.SigningMethodRS256, rsaPriv, claims("alice")), wantErr: ErrUnauthorized},

		{name: "missing sub", tok: hs256(t, jwt.MapClaims{"exp": unix(time.Hour)}), wantErr: ErrUnauthorized},
		{name: "null sub", tok: hs256(t, jwt.MapClaims{"sub": nil, "exp": unix(time.Hour)}), wantErr: ErrUnauthorized},
		{name: "numeric sub", tok: hs256(t, jwt.MapClaims{"sub": 42, "exp": unix(time.Hour)}), wantErr: ErrUnauthorized},
		{name: "empty sub", tok: hs256(t, claims("")), wantErr: ErrBadUser},
		{name: "dotted sub", tok: hs256(t, claims("a.b")), wantErr: ErrBadUser},
		{name: "wildcard sub >", tok: hs256(t, claims(">")), wantErr: ErrBadUser},
		{name: "wildcard sub *", tok: hs256(t, claims("*")), wantErr: ErrBadUser},
		{name: "sub with space", tok: hs256(t, claims("a b")), wantErr: ErrBadUser},
		{name: "non-ASCII sub", tok: hs256(t, claims("zoë")), wantErr: ErrBadUser},
		{name: "129 char sub", tok: hs256(t, claims(long+"x")), wantErr: ErrBadUser},
		{name: "bad sub but expired", tok: hs256(t, claims("a.b", "exp", unix(-time.Hour))), wantErr: ErrUnauthorized},
		{name: "bad sub but wrong secret", tok: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims("a.b")), wantErr: ErrUnauthorized},

		{name: "empty", tok: "", wantErr: ErrUnauthorized},
		{name: "one segment", tok: "abcdefghijkl", wantErr: ErrUnauthorized},
		{name: "garbage segments", tok: "a.b.c", wantErr: ErrUnauthorized},
		{name: "dots only", tok: "..", wantErr: ErrUnauthorized},
		{name: "four segments", tok: valid + ".x", wantErr: ErrUnauthorized},
		{name: "header not JSON", tok: b64("alg") + "." + parts[1] + "." + parts[2], wantErr: ErrUnauthorized},
		{name: "too long", tok: hs256(t, claims("alice", "pad", strings.Repeat("p", maxTokenLen))), wantErr: ErrUnauthorized},
	}
	runAuthCases(t, a, cases)
}

func TestJWTLeeway(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret, Leeway: 5 * time.Second})
	runAuthCases(t, a, []authCase{
		{name: "exp 2s ago", tok: hs256(t, claims("alice", "exp", unix(-2*time.Second))), want: Identity{User: "alice"}},
		{name: "exp 20s ago", tok: hs256(t, claims("alice", "exp", unix(-20*time.Second))), wantErr: ErrUnauthorized},
		{name: "nbf in 2s", tok: hs256(t, claims("alice", "nbf", unix(2*time.Second))), want: Identity{User: "alice"}},
		{name: "nbf in 20s", tok: hs256(t, claims("alice", "nbf", unix(20*time.Second))), wantErr: ErrUnauthorized},
	})
}

func TestJWTNatterClaim(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret})
	natter := func(v any) string { return hs256(t, claims("alice", "natter", v)) }
	runAuthCases(t, a, []authCase{
		{name: "absent", tok: hs256(t, claims("alice")), want: Identity{User: "alice"}},
		{name: "null", tok: natter(nil), want: Identity{User: "alice"}},
		{name: "empty object", tok: natter(map[string]any{}), want: Identity{User: "alice"}},
		{name: "rooms null", tok: natter(map[string]any{"rooms": nil}), want: Identity{User: "alice"}},
		{name: "rooms empty", tok: natter(map[string]any{"rooms": []string{}}), want: Identity{User: "alice", Rooms: []string{}}},
		{name: "rooms list", tok: natter(map[string]any{"rooms": []string{"lobby", "team-*"}}), want: Identity{User: "alice", Rooms: []string{"lobby", "team-*"}}},
		{name: "broadcast", tok: natter(map[string]any{"broadcast": true}), want: Identity{User: "alice", Broadcast: true}},
		{name: "broadcast false", tok: natter(map[string]any{"broadcast": false}), want: Identity{User: "alice"}},
		{name: "both", tok: natter(map[string]any{"rooms": []string{"*"}, "broadcast": true}), want: Identity{User: "alice", Rooms: []string{"*"}, Broadcast: true}},
		{name: "unknown fields ignored", tok: natter(map[string]any{"rooms": []string{"a"}, "admin": true}), want: Identity{User: "alice", Rooms: []string{"a"}}},
		{name: "not an object", tok: natter("lobby"), wantErr: ErrUnauthorized},
		{name: "rooms not strings", tok: natter(map[string]any{"rooms": []int{1}}), wantErr: ErrUnauthorized},
		{name: "rooms a string", tok: natter(map[string]any{"rooms": "lobby"}), wantErr: ErrUnauthorized},
		{name: "broadcast a string", tok: natter(map[string]any{"broadcast": "yes"}), wantErr: ErrUnauthorized},
	})
}

// TestJWTRoomPatterns: every rooms pattern of the natter claim must be a
// valid room name, optionally followed by one '*', or a lone '*'.
func TestJWTRoomPatterns(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret})
	rooms := func(p ...string) string {
		return hs256(t, claims("alice", "natter", map[string]any{"rooms": p}))
	}
	long := strings.Repeat("r", maxNameLen)
	var cases []authCase
	for _, ok := range [][]string{{"lobby"}, {"team-*"}, {"*"}, {"a:b_c-D9"}, {long}, {long + "*"}, {"lobby", "team-*", "*"}} {
		cases = append(cases, authCase{name: "ok " + strings.Join(ok, " "), tok: rooms(ok...), want: Identity{User: "alice", Rooms: ok}})
	}
	for _, bad := range [][]string{{"team-a,*"}, {"a*b"}, {"**"}, {"*a"}, {""}, {"a.b"}, {"a b"}, {"a>"}, {"team-*", "lob by"}, {long + "r"}, {long + "r*"}} {
		cases = append(cases, authCase{name: "bad " + strings.Join(bad, " "), tok: rooms(bad...), wantErr: ErrUnauthorized})
	}
	// A bad pattern is refused even when the sub is bad too: 401, not 400.
	cases = append(cases, authCase{name: "bad pattern and bad sub", tok: hs256(t, claims("a.b", "natter", map[string]any{"rooms": []string{"a*b"}})), wantErr: ErrUnauthorized})
	runAuthCases(t, a, cases)
}

// TestJWTExpiry: exp is required unless AllowNoExpiry.
func TestJWTExpiry(t *testing.T) {
	noExp := hs256(t, jwt.MapClaims{"sub": "alice"})
	withExp := hs256(t, claims("alice"))
	expired := hs256(t, claims("alice", "exp", unix(-time.Hour)))
	runAuthCases(t, newJWT(t, JWTConfig{Secret: testSecret}), []authCase{
		{name: "no exp", tok: noExp, wantErr: ErrUnauthorized},
		{name: "null exp", tok: hs256(t, jwt.MapClaims{"sub": "alice", "exp": nil}), wantErr: ErrUnauthorized},
		{name: "exp", tok: withExp, want: Identity{User: "alice"}},
		{name: "expired", tok: expired, wantErr: ErrUnauthorized},
	})
	t.Run("AllowNoExpiry", func(t *testing.T) {
		runAuthCases(t, newJWT(t, JWTConfig{Secret: testSecret, AllowNoExpiry: true}), []authCase{
			{name: "no exp", tok: noExp, want: Identity{User: "alice"}},
			{name: "exp", tok: withExp, want: Identity{User: "alice"}},
			{name: "expired", tok: expired, wantErr: ErrUnauthorized},
		})
	})
}

// TestJWTAudienceIssuer: aud and iss are checked when configured, and not
// otherwise.
func TestJWTAudienceIssuer(t *testing.T) {
	tok := func(kv ...any) string { return hs256(t, claims("alice", kv...)) }
	alice := Identity{User: "alice"}
	runAuthCases(t, newJWT(t, JWTConfig{Secret: testSecret, Audience: "natter", Issuer: "https://id.example"}), []authCase{
		{name: "both right", tok: tok("aud", "natter", "iss", "https://id.example"), want: alice},
		{name: "aud list", tok: tok("aud", []string{"other", "natter"}, "iss", "https://id.example"), want: alice},
		{name: "no aud", tok: tok("iss", "https://id.example"), wantErr: ErrUnauthorized},
		{name: "empty aud", tok: tok("aud", "", "iss", "https://id.example"), wantErr: ErrUnauthorized},
		{name: "wrong aud", tok: tok("aud", "chat", "iss", "https://id.example"), wantErr: ErrUnauthorized},
		{name: "aud list without it", tok: tok("aud", []string{"a", "b"}, "iss", "https://id.example"), wantErr: ErrUnauthorized},
		{name: "no iss", tok: tok("aud", "natter"), wantErr: ErrUnauthorized},
		{name: "wrong iss", tok: tok("aud", "natter", "iss", "https://evil.example"), wantErr: ErrUnauthorized},
		{name: "iss differs in case", tok: tok("aud", "natter", "iss", "https://ID.example"), wantErr: ErrUnauthorized},
	})
	t.Run("not configured", func(t *testing.T) {
		runAuthCases(t, newJWT(t, JWTConfig{Secret: testSecret}), []authCase{
			{name: "any aud and iss", tok: tok("aud", "whatever", "iss", "anyone"), want: alice},
			{name: "none", tok: tok(), want: alice},
		})
	})
}

func TestJWTTokenSources(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret})
	alice := hs256(t, claims("alice"))
	bob := hs256(t, claims("bob"))
	withHeader := func(r *http.Request, v string) *http.Request {
		r.Header.Set("Authorization", v)
		return r
	}
	cases := []authCase{
		{name: "query via httptest", req: httptest.NewRequest(http.MethodGet, "/ws?token="+alice, nil), tok: alice, want: Identity{User: "alice"}},
		{name: "bearer header", req: headerReq(alice), tok: alice, want: Identity{User: "alice"}},
		{name: "bearer lower case", req: withHeader(devReq(""), "bearer "+alice), tok: alice, want: Identity{User: "alice"}},
		{name: "bearer extra spaces", req: withHeader(devReq(""), "Bearer   "+alice+" "), tok: alice, want: Identity{User: "alice"}},
		{name: "query beats header", req: withHeader(queryReq(alice), "Bearer "+bob), tok: alice, want: Identity{User: "alice"}},
		{name: "bad query beats good header", req: withHeader(queryReq("garbage.token.here"), "Bearer "+bob), tok: "garbage.token.here", wantErr: ErrUnauthorized},
		{name: "empty query falls back to header", req: withHeader(devReq("token="), "Bearer "+bob), tok: bob, want: Identity{User: "bob"}},
		{name: "no token", req: devReq("user=alice"), wantErr: ErrUnauthorized},
		{name: "basic scheme", req: withHeader(devReq(""), "Basic YWxpY2U6cHc="), wantErr: ErrUnauthorized},
		{name: "token scheme", req: withHeader(devReq(""), "Token "+alice), tok: alice, wantErr: ErrUnauthorized},
		{name: "bearer without token", req: withHeader(devReq(""), "Bearer "), wantErr: ErrUnauthorized},
		{name: "bearer no space", req: withHeader(devReq(""), "Bearer"+alice), tok: alice, wantErr: ErrUnauthorized},
		{name: "bad bearer", req: headerReq("not-a-token"), tok: "not-a-token", wantErr: ErrUnauthorized},
		{name: "nil URL and header", req: &http.Request{}, wantErr: ErrUnauthorized},
	}
	runAuthCases(t, a, cases)
}

func TestJWTPublicKeys(t *testing.T) {
	rsaPriv := rsaKey(t, 2048)
	rsaOther := rsaKey(t, 2048)
	ecPriv := ecKey(t, elliptic.P256())
	ecOther := ecKey(t, elliptic.P256())

	rsaBlock := pkixBlock(t, &rsaPriv.PublicKey)
	rsaPath := writePEM(t, rsaBlock)
	rsaAuth := newJWT(t, JWTConfig{PublicKeyFile: rsaPath})
	ecAuth := newJWT(t, JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, &ecPriv.PublicKey))})

	rsaPEM, err := os.ReadFile(rsaPath)
	if err != nil {
		t.Fatal(err)
	}
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsaPriv, c) }
	es := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, ecPriv, c) }

	t.Run("RS256", func(t *testing.T) {
		runAuthCases(t, rsaAuth, []authCase{
			{name: "valid", tok: rs(claims("alice", "exp", unix(time.Hour), "natter", map[string]any{"rooms": []string{"lobby"}, "broadcast": true})), want: Identity{User: "alice", Rooms: []string{"lobby"}, Broadcast: true}},
			{name: "expired", tok: rs(claims("alice", "exp", unix(-time.Hour))), wantErr: ErrUnauthorized},
			{name: "bad sub", tok: rs(claims("a.b")), wantErr: ErrBadUser},
			{name: "missing sub", tok: rs(jwt.MapClaims{"exp": unix(time.Hour)}), wantErr: ErrUnauthorized},
			{name: "other RSA key", tok: sign(t, jwt.SigningMethodRS256, rsaOther, claims("alice")), wantErr: ErrUnauthorized},
			{name: "RS512 same key", tok: sign(t, jwt.SigningMethodRS512, rsaPriv, claims("alice")), wantErr: ErrUnauthorized},
			{name: "PS256 same key", tok: sign(t, jwt.SigningMethodPS256, rsaPriv, claims("alice")), wantErr: ErrUnauthorized},
			{name: "ES256 token", tok: es(claims("alice")), wantErr: ErrUnauthorized},
			{name: "HS256 with public key PEM as secret", tok: sign(t, jwt.SigningMethodHS256, rsaPEM, claims("alice")), wantErr: ErrUnauthorized},
			{name: "HS256 with public key DER as secret", tok: sign(t, jwt.SigningMethodHS256, rsaBlock.Bytes, claims("alice")), wantErr: ErrUnauthorized},
			{name: "alg none", tok: unsigned(`{"alg":"none"}`, `{"sub":"alice"}`, ""), wantErr: ErrUnauthorized},
		})
	})
	t.Run("ES256", func(t *testing.T) {
		runAuthCases(t, ecAuth, []authCase{
			{name: "valid", tok: es(claims("alice", "exp", unix(time.Hour))), want: Identity{User: "alice"}},
			{name: "nbf in future", tok: es(claims("alice", "nbf", unix(time.Hour))), wantErr: ErrUnauthorized},
			{name: "bad sub", tok: es(claims(">")), wantErr: ErrBadUser},
			{name: "other EC key", tok: sign(t, jwt.SigningMethodES256, ecOther, claims("alice")), wantErr: ErrUnauthorized},
			{name: "RS256 token", tok: rs(claims("alice")), wantErr: ErrUnauthorized},
			{name: "HS256 token", tok: hs256(t, claims("alice")), wantErr: ErrUnauthorized},
			{name: "alg none", tok: unsigned(`{"alg":"none"}`, `{"sub":"alice"}`, ""), wantErr: ErrUnauthorized},
		})
	})
	t.Run("HS256 authenticator refuses RS256", func(t *testing.T) {
		a := newJWT(t, JWTConfig{Secret: testSecret})
		runAuthCases(t, a, []authCase{
			{name: "RS256", tok: rs(claims("alice")), wantErr: ErrUnauthorized},
			{name: "ES256", tok: es(claims("alice")), wantErr: ErrUnauthorized},
		})
	})
}

func TestNewJWTConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaPriv := rsaKey(t, 2048)
	ecPriv := ecKey(t, elliptic.P256())
	ecParams := &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecPriv.PublicKey, ecPriv)
	if err != nil {
		t.Fatal(err)
	}

	ok := []struct {
		name string
		cfg  JWTConfig
		alg  string
	}{
		{"secret", JWTConfig{Secret: testSecret}, "HS256"},
		{"secret with leeway", JWTConfig{Secret: testSecret, Leeway: time.Minute}, "HS256"},
		{"RSA PKIX", JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, &rsaPriv.PublicKey))}, "RS256"},
		{"RSA PKCS1", JWTConfig{PublicKeyFile: writePEM(t, &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaPriv.PublicKey)})}, "RS256"},
		{"EC PKIX", JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, &ecPriv.PublicKey))}, "ES256"},
		{"EC after EC PARAMETERS", JWTConfig{PublicKeyFile: writePEM(t, ecParams, pkixBlock(t, &ecPriv.PublicKey))}, "ES256"},
		{"EC certificate", JWTConfig{PublicKeyFile: writePEM(t, &pem.Block{Type: "CERTIFICATE", Bytes: certDER})}, "ES256"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			a := newJWT(t, tc.cfg)
			if got := a.(*jwtAuth).alg; got != tc.alg {
				t.Fatalf("alg = %s, want %s", got, tc.alg)
			}
		})
	}

	bad := []struct {
		name string
		cfg  JWTConfig
	}{
		{"empty", JWTConfig{}},
		{"empty secret", JWTConfig{Secret: []byte{}}},
		{"both", JWTConfig{Secret: testSecret, PublicKeyFile: writePEM(t, pkixBlock(t, &ecPriv.PublicKey))}},
		{"short secret", JWTConfig{Secret: []byte("secret")}},
		{"negative leeway", JWTConfig{Secret: testSecret, Leeway: -time.Second}},
		{"missing file", JWTConfig{PublicKeyFile: filepath.Join(dir, "nope.pem")}},
		{"not PEM", JWTConfig{PublicKeyFile: file("junk.pem", "hello")}},
		{"corrupt PUBLIC KEY", JWTConfig{PublicKeyFile: writePEM(t, &pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}},
		{"private key", JWTConfig{PublicKeyFile: writePEM(t, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})}},
		{"RSA private key", JWTConfig{PublicKeyFile: writePEM(t, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)})}},
		{"RSA 1024", JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, &rsaKey(t, 1024).PublicKey))}},
		{"EC P-384", JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, &ecKey(t, elliptic.P384()).PublicKey))}},
		{"Ed25519", JWTConfig{PublicKeyFile: writePEM(t, pkixBlock(t, edPub))}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewJWT(tc.cfg)
			if err == nil || a != nil {
				t.Fatalf("NewJWT = %v, %v; want nil and an error", a, err)
			}
			if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrBadUser) {
				t.Fatalf("config error %v wraps a request sentinel", err)
			}
			t.Log(err)
		})
	}
}

func TestNewJWTCopiesSecret(t *testing.T) {
	secret := append([]byte(nil), testSecret...)
	a := newJWT(t, JWTConfig{Secret: secret})
	secret[0] ^= 0xff
	tok := hs256(t, claims("alice"))
	if _, err := a.Authenticate(queryReq(tok)); err != nil {
		t.Fatalf("changing the caller's secret slice changed the authenticator: %v", err)
	}
}

func TestJWTConcurrent(t *testing.T) {
	a := newJWT(t, JWTConfig{Secret: testSecret})
	good := hs256(t, claims("alice", "natter", map[string]any{"rooms": []string{"x"}}))
	bad := hs256(t, claims("alice", "exp", unix(-time.Hour)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if id, err := a.Authenticate(queryReq(good)); err != nil || id.User != "alice" {
					t.Errorf("good token: %v %v", id, err)
					return
				}
				if _, err := a.Authenticate(headerReq(bad)); !errors.Is(err, ErrUnauthorized) {
					t.Errorf("bad token: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestJWTIdentityExpires: the identity ends at the token's exp plus the
// leeway; a raw token (a "refresh") is checked the same way.
func TestJWTIdentityExpires(t *testing.T) {
	a, err := NewJWT(JWTConfig{Secret: testSecret, Leeway: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := hs256(t, jwt.MapClaims{"sub": "alice", "exp": exp.Unix()})
	id, err := a.(Refresher).AuthenticateToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Expires.Equal(exp.Add(5 * time.Second)) {
		t.Errorf("Expires = %v, want exp + leeway = %v", id.Expires, exp.Add(5*time.Second))
	}
	if _, err := a.(Refresher).AuthenticateToken("not.a.token"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("bad raw token: %v, want ErrUnauthorized", err)
	}
}
