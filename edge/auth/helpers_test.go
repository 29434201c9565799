package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret is an HS256 secret of the minimum length.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// claims builds token claims: sub, exp in an hour (NewJWT requires exp by
// default) and extra key/value pairs, which may replace exp. (For a token
// without sub or exp, build a jwt.MapClaims directly.)
func claims(sub string, kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "exp": unix(time.Hour)}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// unix returns now+d as a NumericDate claim value.
func unix(d time.Duration) int64 { return time.Now().Add(d).Unix() }

// sign signs c with method and key.
func sign(tb testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

// hs256 signs c with testSecret.
func hs256(tb testing.TB, c jwt.MapClaims) string {
	tb.Helper()
	return sign(tb, jwt.SigningMethodHS256, testSecret, c)
}

// b64 is base64url without padding, as JWT segments are encoded.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// unsigned crafts a token by hand from a header and a payload JSON text,
// with sig as the (already encoded) signature segment.
func unsigned(header, payload, sig string) string {
	return b64(header) + "." + b64(payload) + "." + sig
}

// queryReq is an upgrade request carrying tok as ?token=.
func queryReq(tok string) *http.Request {
	return &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Path: "/ws", RawQuery: url.Values{"token": {tok}}.Encode()},
		Header: http.Header{},
	}
}

// headerReq is an upgrade request carrying tok in an Authorization header.
func headerReq(tok string) *http.Request {
	return &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Path: "/ws"},
		Header: http.Header{"Authorization": {"Bearer " + tok}},
	}
}

// devReq is a request with the given raw query.
func devReq(rawQuery string) *http.Request {
	return &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/ws", RawQuery: rawQuery}, Header: http.Header{}}
}

// newJWT calls NewJWT and fails the test on error.
func newJWT(tb testing.TB, cfg JWTConfig) Authenticator {
	tb.Helper()
	a, err := NewJWT(cfg)
	if err != nil {
		tb.Fatalf("NewJWT: %v", err)
	}
	return a
}

// writePEM writes blocks to a new file in a temp dir and returns its path.
func writePEM(tb testing.TB, blocks ...*pem.Block) string {
	tb.Helper()
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(tb.TempDir(), "key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// pkixBlock is the "PUBLIC KEY" PEM block of pub.
func pkixBlock(tb testing.TB, pub any) *pem.Block {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

func rsaKey(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func ecKey(tb testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
