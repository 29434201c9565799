package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew allowed for exp and nbf when
// JWTConfig.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// MinSecretLen is the shortest HS256 secret NewJWT accepts, in bytes: the
// size of the SHA-256 output, as RFC 7518 §3.2 requires.
const MinSecretLen = 32

// minRSABits is the smallest RSA modulus NewJWT accepts.
const minRSABits = 2048

// maxTokenLen bounds the token size Authenticate will parse, in bytes; a
// longer token is refused without being decoded.
const maxTokenLen = 16 << 10

// JWTConfig configures production tokens.
//
// Exactly one of Secret and PublicKeyFile must be set. The key decides the
// one algorithm accepted: HS256 for Secret, RS256 for an RSA public key,
// ES256 for an EC P-256 public key. Tokens signed with any other algorithm,
// "none" included, are refused.
type JWTConfig struct {
	// Secret is the HS256 shared secret, at least MinSecretLen bytes.
	Secret []byte
	// PublicKeyFile is a PEM file with an RSA (RS256, at least 2048 bits)
	// or EC P-256 (ES256) public key: a "PUBLIC KEY" (PKIX) block, an
	// "RSA PUBLIC KEY" (PKCS #1) block, or a "CERTIFICATE" whose key is
	// used (the certificate itself is not verified). The first such block
	// is used; a private key in the file is refused.
	PublicKeyFile string
	// Leeway is the clock skew allowed for exp and nbf; zero means the
	// default 30s (DefaultLeeway). Negative is an error.
	Leeway time.Duration
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Issuer, when set, must be the token's iss.
	Issuer string
	// AllowNoExpiry accepts tokens without exp, which never expire. By
	// default a token must have one.
	AllowNoExpiry bool
}

// natterClaims are the claims of a natter token.
type natterClaims struct {
	jwt.RegisteredClaims
	// Sub shadows RegisteredClaims.Subject (encoding/json prefers the
	// shallower field) so that an empty sub can be told from a missing one.
	Sub    *string      `json:"sub"`
	Natter *natterClaim `json:"natter"`
}

// natterClaim is the optional "natter" claim.
type natterClaim struct {
	Rooms     []string `json:"rooms"`
	Broadcast bool     `json:"broadcast"`
}

// jwtAuth is the Authenticator returned by NewJWT. It is immutable.
type jwtAuth struct {
	alg    string // the one accepted algorithm
	key    any    // []byte, *rsa.PublicKey or *ecdsa.PublicKey
	parser *jwt.Parser
	leeway time.Duration
}

var (
	_ Authenticator = (*jwtAuth)(nil)
	_ Refresher     = (*jwtAuth)(nil)
)

// NewJWT validates the config (exactly one of Secret / PublicKeyFile), loads
// the key, and returns an Authenticator for tokens signed with it.
//
// The Authenticator takes the token from the ?token= query parameter or,
// when that is absent or empty, from an "Authorization: Bearer <token>"
// header (scheme case-insensitive). It accepts a token when:
//
//   - its algorithm is the one the key allows and its signature verifies;
//   - exp is present (unless AllowNoExpiry) and not past, and nbf, if
//     present, is not in the future, both allowing Leeway; iat is not
//     checked;
//   - aud contains Audience and iss is Issuer, each when set;
//   - sub is present; a sub that is not a valid user id (PROTOCOL.md,
//     "Names") gives [ErrBadUser], every other failure [ErrUnauthorized].
//
// The optional claim "natter", {"rooms": ["lobby", "team-*"], "broadcast":
// true}, fills Identity.Rooms and Identity.Broadcast. A missing (or null)
// rooms gives nil Rooms: any room. An empty list gives an empty non-nil
// slice: no room. Broadcast is false unless the claim grants it. Each room
// pattern must be a valid room name, or a valid name prefix (possibly empty)
// followed by one trailing '*' (see [protocol.RoomAllowed]); any other
// pattern, like a natter claim of the wrong shape, makes the token
// unauthorized.
func NewJWT(cfg JWTConfig) (Authenticator, error) {
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: JWTConfig.Leeway is negative")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	a := &jwtAuth{leeway: leeway}
	switch {
	case len(cfg.Secret) > 0 && cfg.PublicKeyFile != "":
		return nil, errors.New("auth: JWTConfig: set only one of Secret and PublicKeyFile")
	case len(cfg.Secret) > 0:
		if len(cfg.Secret) < MinSecretLen {
			return nil, fmt.Errorf("auth: JWTConfig.Secret is %d bytes, need at least %d", len(cfg.Secret), MinSecretLen)
		}
		a.alg = jwt.SigningMethodHS256.Alg()
		a.key = append([]byte(nil), cfg.Secret...)
	case cfg.PublicKeyFile != "":
		key, alg, err := loadPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		a.alg, a.key = alg, key
	default:
		return nil, errors.New("auth: JWTConfig: set one of Secret and PublicKeyFile")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{a.alg}), jwt.WithLeeway(leeway)}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if !cfg.AllowNoExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// loadPublicKey reads the first public key in the PEM file at path and
// returns it with the algorithm it verifies.
func loadPublicKey(path string) (key any, alg string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("auth: public key: %w", err)
	}
	var pub any
	for rest := data; pub == nil; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "", fmt.Errorf("auth: public key: no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM block in %s", path)
		}
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, "", fmt.Errorf("auth: public key: %s holds a private key; give the public key only", path)
			}
			continue // e.g. EC PARAMETERS
		}
		if err != nil {
			return nil, "", fmt.Errorf("auth: public key in %s: %w", path, err)
		}
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return nil, "", fmt.Errorf("auth: public key in %s: RSA key of %d bits, need at least %d", path, n, minRSABits)
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("auth: public key in %s: EC key on %s, ES256 needs P-256", path, k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	default:
		return nil, "", fmt.Errorf("auth: public key in %s: unsupported key type %T (want RSA or EC P-256)", path, pub)
	}
}

// Authenticate verifies the request's token and returns the identity it
// grants; see [NewJWT].
func (a *jwtAuth) Authenticate(r *http.Request) (Identity, error) {
	return a.AuthenticateToken(bearerToken(r))
}

// AuthenticateToken verifies a raw token, as Authenticate does the token of
// a request: a client's "refresh" gives one on an open connection.
func (a *jwtAuth) AuthenticateToken(raw string) (Identity, error) {
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: no token", ErrUnauthorized)
	}
	if len(raw) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthorized, maxTokenLen)
	}
	var c natterClaims
	tok, err := a.parser.ParseWithClaims(raw, &c, a.keyFunc)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s", ErrUnauthorized, a.reason(tok, err))
	}
	if c.Sub == nil {
		return Identity{}, fmt.Errorf("%w: token has no sub", ErrUnauthorized)
	}
	if c.Natter != nil && !validRoomPatterns(c.Natter.Rooms) {
		return Identity{}, fmt.Errorf("%w: natter claim has an invalid room pattern", ErrUnauthorized)
	}
	if !validName(*c.Sub) {
		return Identity{}, fmt.Errorf("%w: token sub is not a valid user id", ErrBadUser)
	}
	id := Identity{User: *c.Sub}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time.Add(a.leeway)
	}
	if c.Natter != nil {
		id.Rooms = c.Natter.Rooms
		id.Broadcast = c.Natter.Broadcast
	}
	return id, nil
}

// validRoomPatterns reports whether every pattern is a valid room name, or
// a valid name prefix followed by one '*', or a lone '*' (any room).
func validRoomPatterns(patterns []string) bool {
	for _, p := range patterns {
		name := strings.TrimSuffix(p, "*")
		if p != "*" && !validName(name) {
			return false
		}
	}
	return true
}

// keyFunc returns the verification key. The parser has already checked that
// the token's algorithm is a.alg; the type check below is a second guard
// against algorithm confusion.
func (a *jwtAuth) keyFunc(t *jwt.Token) (any, error) {
	if t.Method == nil || t.Method.Alg() != a.alg {
		return nil, errors.New("unexpected signing method")
	}
	return a.key, nil
}

// reason turns a parse error into a short text for the wrapped error. It
// never repeats the token or values taken from it.
func (a *jwtAuth) reason(tok *jwt.Token, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	case tok != nil && tok.Method != nil && tok.Method.Alg() != a.alg:
		return "signing algorithm not allowed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unknown or missing signing algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks a required claim (exp, aud or iss)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	default:
		return "invalid token"
	}
}

// bearerToken returns the request's token: the ?token= query parameter if
// non-empty, else the token of an "Authorization: Bearer" header, else "".
func bearerToken(r *http.Request) string {
	if r.URL != nil {
		if t := r.URL.Query().Get("token"); t != "" {
			return t
		}
	}
	scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(t)
}
