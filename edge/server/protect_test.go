package server_test

// Tests of the edge's protections, each against real servers on loopback:
// JWT identity on the upgrade, Origin, per-connection rate limit, slow
// consumers, connection caps, compression bombs, stalled handshakes, TLS
// certificate reload, NATS users with restricted permissions, and an
// upgrade in flight during Shutdown. The NATS permission sets themselves
// are tested in natsconf/permissions_test.go.
//
// Every helper and test here is named pt…/TestProtect… so that this file
// stays clear of the names of the other test files of the package.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"natter/edge/auth"
	"natter/edge/gateway"
	"natter/edge/server"
	"natter/edge/wstest"
	"natter/natsconf"
)

// ptSecret is the HS256 secret of the JWT tests (32+ bytes).
var ptSecret = []byte("natter-protect-test-secret-0123456789")

// ptEdge starts an edge with cfg and the default subject prefix named
// explicitly.
func ptEdge(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Gateway.Subjects.Prefix() == "" {
		cfg.Gateway.Subjects = natsconf.MustSubjects(natsconf.DefaultPrefix)
	}
	return wstest.StartEdge(t, cfg)
}

// ptDial connects to pathAndQuery on srv and returns the client and its
// welcome frame.
func ptDial(t testing.TB, srv *server.Server, pathAndQuery string, hdr http.Header) (*wstest.Client, wstest.Frame) {
	t.Helper()
	c := wstest.Dial(t, wstest.URL(srv, pathAndQuery), hdr)
	return c, c.Expect(t, "welcome")
}

// ptWant sends cmd and requires a reply of type want.
func ptWant(t testing.TB, c *wstest.Client, want string, cmd map[string]any) wstest.Frame {
	t.Helper()
	f := c.Request(t, cmd)
	if f.Type() != want {
		t.Fatalf("%v: want %q, got %s", cmd, want, f)
	}
	return f
}

// ptWantErr sends cmd and requires an error frame with code.
func ptWantErr(t testing.TB, c *wstest.Client, code string, cmd map[string]any) {
	t.Helper()
	f := c.Request(t, cmd)
	if f.Type() != "error" || f.Str("code") != code {
		t.Fatalf("%v: want error %q, got %s", cmd, code, f)
	}
}

// ptSign signs claims with method and key.
func ptSign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ptEventually polls cond every 10ms until it holds, failing the test after
// d.
func ptEventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("after %v: %s", d, what)
		case <-poll.C:
		}
	}
}

// ptHeap collects garbage and returns the heap in use and the bytes
// allocated so far (process-wide: the edge runs in the test process).
func ptHeap() (inuse, totalAlloc uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.TotalAlloc
}

// --- A raw WebSocket client, for what gws will not do: stop reading,
// write pre-compressed frames, dial from another local address.

// ptRaw is a TCP connection upgraded by hand.
type ptRaw struct {
	net.Conn
	br *bufio.Reader
}

// ptRawUpgrade sends a WebSocket upgrade request for pathAndQuery to addr,
// from localIP when not empty, and returns the connection and the HTTP
// status of the answer. A refused upgrade's connection is closed and nil.
func ptRawUpgrade(t testing.TB, addr, pathAndQuery string, hdr http.Header, localIP string) (*ptRaw, int) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	raw, status, err := ptUpgradeConn(conn, addr, pathAndQuery, hdr)
	if err != nil {
		_ = conn.Close()
		t.Fatalf("upgrade %s: %v", pathAndQuery, err)
	}
	if raw == nil {
		return nil, status
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw, status
}

func ptUpgradeConn(conn net.Conn, host, pathAndQuery string, hdr http.Header) (*ptRaw, int, error) {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", pathAndQuery, host)
	fmt.Fprintf(&req, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", base64.StdEncoding.EncodeToString(key))
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(req.Bytes()); err != nil {
		return nil, 0, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		_ = conn.Close()
		return nil, resp.StatusCode, nil
	}
	return &ptRaw{Conn: conn, br: br}, resp.StatusCode, nil
}

// ptWriteFrame writes one final client frame (masked), with RSV1 set when
// compressed.
func ptWriteFrame(w io.Writer, opcode byte, payload []byte, compressed bool) error {
	return ptWriteFragment(w, opcode, payload, true, compressed)
}

// ptWriteFragment writes one client frame (masked), final when fin.
func ptWriteFragment(w io.Writer, opcode byte, payload []byte, fin, compressed bool) error {
	var hdr []byte
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	if compressed {
		b0 |= 0x40
	}
	hdr = append(hdr, b0)
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	frame := append(hdr, payload...)
	masked := frame[len(hdr):]
	// Eight bytes at a time: the slow-consumer test masks megabytes.
	key := uint64(binary.LittleEndian.Uint32(mask[:]))
	key |= key << 32
	i := 0
	for ; i+8 <= len(masked); i += 8 {
		binary.LittleEndian.PutUint64(masked[i:], binary.LittleEndian.Uint64(masked[i:])^key)
	}
	for ; i < len(masked); i++ {
		masked[i] ^= mask[i%4]
	}
	_, err := w.Write(frame)
	return err
}

// ptReadFrame reads one server frame (unmasked, not compressed).
// io.ErrUnexpectedEOF means the stream ended inside a frame.
func ptReadFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	opcode = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, ptEOF(err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, nil, ptEOF(err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("masked server frame")
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, ptEOF(err)
	}
	return opcode, payload, nil
}

func ptEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ptReadJSON reads server frames until a text frame of type typ, within
// 5s, and returns it decoded.
func (r *ptRaw) ptReadJSON(t testing.TB, typ string) map[string]any {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer r.SetReadDeadline(time.Time{})
	for {
		op, p, err := ptReadFrame(r.br)
		if err != nil {
			t.Fatalf("raw client: waiting for %q: %v", typ, err)
		}
		if op != 0x1 {
			t.Fatalf("raw client: waiting for %q: got opcode %d", typ, op)
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("raw client: bad frame %q: %v", p, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// --- Certificates.

// ptCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// localhost with serial, and returns it and its key as PEM.
func ptCert(t testing.TB, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("natter test %d", serial)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// ptWritePair writes a certificate pair over certFile and keyFile and moves
// their modification time forward by bump, so a watcher polling mtimes
// sees the change whatever the file system's time resolution.
func ptWritePair(t testing.TB, certFile, keyFile string, certPEM, keyPEM []byte, bump time.Duration) {
	t.Helper()
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if bump != 0 {
		mt := time.Now().Add(bump)
		for _, f := range []string{certFile, keyFile} {
			if err := os.Chtimes(f, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// ptTrust returns a client TLS config trusting only certPEM.
func ptTrust(t testing.TB, certPEM []byte) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("no certificate to trust")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// ptServedSerial makes a new TLS connection to addr and returns the serial
// number of the certificate the server presents.
func ptServedSerial(addr string) (int64, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return 0, errors.New("no peer certificate")
	}
	return certs[0].SerialNumber.Int64(), nil
}

// --- 1. JWT on the upgrade.

func TestProtectJWT(t *testing.T) {
	authn, err := auth.NewJWT(auth.JWTConfig{Secret: ptSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{Auth: authn}})
	exp := time.Now().Add(time.Hour).Unix()
	hs := func(claims jwt.MapClaims) string { return ptSign(t, jwt.SigningMethodHS256, ptSecret, claims) }

	// A valid token, in the query and as a bearer token: the user is sub.
	_, w := ptDial(t, srv, "/ws?token="+hs(jwt.MapClaims{"sub": "alice", "exp": exp}), nil)
	if w.Str("user") != "alice" {
		t.Errorf("?token=: welcome %s, want user alice", w)
	}
	_, w = ptDial(t, srv, "/ws", http.Header{"Authorization": {"Bearer " + hs(jwt.MapClaims{"sub": "bob", "exp": exp})}})
	if w.Str("user") != "bob" {
		t.Errorf("Authorization: Bearer: welcome %s, want user bob", w)
	}

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": exp}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := []byte("another-secret-that-is-also-32-bytes-long")
	refused := []struct {
		name   string
		token  string
		status int
	}{
		{"wrong key", ptSign(t, jwt.SigningMethodHS256, otherKey, jwt.MapClaims{"sub": "alice", "exp": exp}), http.StatusUnauthorized},
		{"expired", hs(jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}), http.StatusUnauthorized},
		{"not yet valid", hs(jwt.MapClaims{"sub": "alice", "exp": exp, "nbf": time.Now().Add(time.Hour).Unix()}), http.StatusUnauthorized},
		{"alg none", none, http.StatusUnauthorized},
		{"missing sub", hs(jwt.MapClaims{"exp": exp}), http.StatusUnauthorized},
		{"sub with a dot", hs(jwt.MapClaims{"sub": "a.b", "exp": exp}), http.StatusBadRequest},
		{"sub wildcard", hs(jwt.MapClaims{"sub": ">", "exp": exp}), http.StatusBadRequest},
		{"sub too long", hs(jwt.MapClaims{"sub": strings.Repeat("u", 129), "exp": exp}), http.StatusBadRequest},
	}
	for _, tc := range refused {
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws?token="+tc.token), nil); got != tc.status {
			t.Errorf("%s (?token=): HTTP %d, want %d", tc.name, got, tc.status)
		}
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws"), http.Header{"Authorization": {"Bearer " + tc.token}}); got != tc.status {
			t.Errorf("%s (Bearer): HTTP %d, want %d", tc.name, got, tc.status)
		}
	}
	if got := wstest.DialErr(t, wstest.URL(srv, "/ws?user=alice"), nil); got != http.StatusUnauthorized {
		t.Errorf("no token: HTTP %d, want 401", got)
	}

	// The natter claim: rooms "team-*", no broadcast.
	team, _ := ptDial(t, srv, "/ws?token="+hs(jwt.MapClaims{"sub": "carol", "exp": exp, "natter": map[string]any{"rooms": []string{"team-*"}}}), nil)
	ptWant(t, team, "joined", map[string]any{"type": "join", "room": "team-a"})
	ptWantErr(t, team, "forbidden", map[string]any{"type": "join", "room": "lobby"})
	ptWantErr(t, team, "forbidden", map[string]any{"type": "members", "room": "lobby"})
	ptWantErr(t, team, "forbidden", map[string]any{"type": "history", "room": "lobby"})
	ptWantErr(t, team, "forbidden", map[string]any{"type": "broadcast", "body": "hi all"})
	ptWant(t, team, "members", map[string]any{"type": "members", "room": "team-a"})
	ptWant(t, team, "history", map[string]any{"type": "history", "room": "team-a"})
	ptWant(t, team, "ack", map[string]any{"type": "send", "room": "team-a", "body": "in my team"})

	// With broadcast granted, a broadcast is acknowledged and reaches others.
	boss, _ := ptDial(t, srv, "/ws?token="+hs(jwt.MapClaims{"sub": "dave", "exp": exp, "natter": map[string]any{"rooms": []string{"team-*"}, "broadcast": true}}), nil)
	ptWant(t, boss, "ack", map[string]any{"type": "broadcast", "body": "hello everyone"})
	if f := team.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "broadcast" }); f.Str("from") != "dave" || f.JSON("body") != `"hello everyone"` {
		t.Errorf("broadcast received as %s", f)
	}

	// ES256 with a public key file.
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "jwt.pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	esAuth, err := auth.NewJWT(auth.JWTConfig{PublicKeyFile: pubFile})
	if err != nil {
		t.Fatal(err)
	}
	es := ptEdge(t, server.Config{Gateway: gateway.Config{Auth: esAuth}})
	_, w = ptDial(t, es, "/ws?token="+ptSign(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "erin", "exp": exp}), nil)
	if w.Str("user") != "erin" {
		t.Errorf("ES256: welcome %s, want user erin", w)
	}
	strangerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"ES256 by another key":      ptSign(t, jwt.SigningMethodES256, strangerKey, jwt.MapClaims{"sub": "erin", "exp": exp}),
		"HS256 on an ES256 edge":    hs(jwt.MapClaims{"sub": "erin", "exp": exp}),
		"alg none on an ES256 edge": none,
	} {
		if got := wstest.DialErr(t, wstest.URL(es, "/ws?token="+tok), nil); got != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, got)
		}
	}
}

// --- 2. Origin.

func TestProtectOrigin(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{AllowedOrigins: []string{"https://chat.example.com"}}})
	for _, hdr := range []http.Header{{"Origin": {"https://chat.example.com"}}, nil} {
		if _, w := ptDial(t, srv, "/ws?user=alice", hdr); w.Str("user") != "alice" {
			t.Errorf("origin %v: welcome %s", hdr, w)
		}
	}
	for _, origin := range []string{
		"https://evil.example",
		"http://chat.example.com",               // another scheme
		"https://chat.example.com.evil.example", // a prefix is not a match
		"https://chat.example.com:8443",         // another port
		"null",                                  // sandboxed or file: pages
	} {
		if got := wstest.DialErr(t, wstest.URL(srv, "/ws?user=alice"), http.Header{"Origin": {origin}}); got != http.StatusForbidden {
			t.Errorf("Origin %q: HTTP %d, want 403", origin, got)
		}
	}
}

// --- 3. Rate limit.

func TestProtectRateLimit(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{Rate: 10, Burst: 10}})

	// 10 quick pings pass, the 11th is refused. They go in one TCP write,
	// so that no token comes back (one per 100ms) while they are read.
	c, _ := ptDial(t, srv, "/ws?user=alice", nil)
	var pings bytes.Buffer
	for i := range 11 {
		_ = ptWriteFrame(&pings, 0x1, fmt.Appendf(nil, `{"type":"ping","id":"p%d"}`, i), false)
	}
	if _, err := c.Conn().NetConn().Write(pings.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := range 11 {
		f := c.Next(t)
		if f.Str("id") != fmt.Sprint("p", i) {
			t.Fatalf("reply %d: %s", i, f)
		}
		if i < 10 && f.Type() != "pong" {
			t.Errorf("ping %d of the burst: %s, want pong", i, f)
		}
		if i == 10 && (f.Type() != "error" || f.Str("code") != "rate_limited") {
			t.Errorf("ping 11: %s, want error rate_limited", f)
		}
	}

	// A client that sends a burst of 40 and stops: bye rate_limited, close
	// 1008.
	burst, status := ptRawUpgrade(t, srv.Addr().String(), "/ws?user=burst", nil, "")
	if burst == nil {
		t.Fatalf("burst client: HTTP %d", status)
	}
	burst.ptReadJSON(t, "welcome")
	var frames bytes.Buffer
	for i := range 40 {
		_ = ptWriteFrame(&frames, 0x1, []byte(fmt.Sprintf(`{"type":"ping","id":"b%d"}`, i)), false)
	}
	if _, err := burst.Write(frames.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got := ptReadToEnd(burst, 10*time.Second); got.bye != "rate_limited" || got.closeCode != 1008 {
		t.Errorf("client that sent 40 pings at once: %s; want bye rate_limited and close 1008", got)
	}

	// A client that keeps sending is said bye and closed, while a
	// well-behaved client on the same edge is served throughout.
	good, _ := ptDial(t, srv, "/ws?user=good", nil)
	ptWant(t, good, "pong", map[string]any{"type": "ping"})
	abuser, status := ptRawUpgrade(t, srv.Addr().String(), "/ws?user=abuser", nil, "")
	if abuser == nil {
		t.Fatalf("abuser: HTTP %d", status)
	}
	abuser.ptReadJSON(t, "welcome")
	flooded := make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		ping := []byte(`{"type":"ping"}`)
		for ; n < 100_000; n++ {
			if ptWriteFrame(abuser, 0x1, ping, false) != nil {
				return
			}
		}
	}()
	abused := make(chan ptEnd, 1)
	go func() { abused <- ptReadToEnd(abuser, 10*time.Second) }()
	tick := time.NewTicker(150 * time.Millisecond) // pacing below 10/s
	defer tick.Stop()
	for i := range 6 {
		<-tick.C
		if f := good.Request(t, map[string]any{"type": "ping"}); f.Type() != "pong" {
			t.Fatalf("good client, ping %d while another floods: %s", i, f)
		}
	}
	got := <-abused
	sent := <-flooded
	t.Logf("flooding client: %d pings written; it saw %s", sent, got)
	if !got.closed {
		t.Errorf("flooding client: not closed")
	}
	if got.bye != "rate_limited" {
		t.Errorf("flooding client: no bye rate_limited before the close; it saw %s", got)
	}
	ptWant(t, good, "pong", map[string]any{"type": "ping"})
}

// TestProtectRateLimitByeWhileSending floods with a gws client (wstest),
// which keeps writing until a write fails, as a misbehaving app would: it
// too must get its bye rate_limited and the close frame 1008, not a
// reset connection (close 1006) with nothing.
func TestProtectRateLimitByeWhileSending(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{Rate: 10, Burst: 10}})
	abuser, _ := ptDial(t, srv, "/ws?user=abuser", nil)
	flooded := make(chan int)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		for ; n < 100_000; n++ {
			select {
			case <-abuser.Done():
				return
			default:
			}
			if abuser.Send(map[string]any{"type": "ping", "id": fmt.Sprint("f", n)}) != nil {
				return
			}
		}
	}()
	code := abuser.Closed(t)
	sent := <-flooded
	var seen []string
	bye := ""
	for {
		f, ok := abuser.TryNext(time.Second) // closed: returns at once
		if !ok {
			break
		}
		seen = append(seen, f.Type())
		if f.Type() == "bye" {
			bye = f.Str("code")
		}
	}
	if bye != "rate_limited" || code != 1008 {
		t.Errorf("a gws client that kept sending (%d pings written) saw %d frames %q, bye %q, close code %d; want bye rate_limited and close 1008",
			sent, len(seen), seen[max(0, len(seen)-3):], bye, code)
	}
}

// ptEnd is what a raw client saw until its connection ended.
type ptEnd struct {
	frames    int    // text frames
	bye       string // code of the bye frame, if any
	closeCode int    // code of the close frame, if any
	closed    bool   // the connection ended (not a timeout)
	err       error  // how the stream ended
}

func (e ptEnd) String() string {
	return fmt.Sprintf("%d text frames, bye %q, close frame %d, end %v", e.frames, e.bye, e.closeCode, e.err)
}

// ptReadToEnd reads server frames until the connection ends or limit
// passes. It may run on any goroutine: it does not fail the test.
func ptReadToEnd(r *ptRaw, limit time.Duration) ptEnd {
	var e ptEnd
	_ = r.SetReadDeadline(time.Now().Add(limit))
	for {
		op, p, err := ptReadFrame(r.br)
		if err != nil {
			e.err = err
			e.closed = !errors.Is(err, os.ErrDeadlineExceeded)
			return e
		}
		switch op {
		case 0x1:
			e.frames++
			var f struct{ Type, Code string }
			if json.Unmarshal(p, &f) == nil && f.Type == "bye" {
				e.bye = f.Code
			}
		case 0x8:
			if len(p) >= 2 {
				e.closeCode = int(binary.BigEndian.Uint16(p))
			}
		}
	}
}

// --- 4. Slow consumer.

func TestProtectSlowConsumer(t *testing.T) {
	const (
		room     = "flood"
		messages = 1000
		senders  = 4
		bodySize = 16 << 10
	)
	// Each sender pipelines its sends, so the room's messages come in
	// bursts: the write queue holds a burst for a member that reads, not
	// the 16 MB of the flood for one that does not.
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{Rate: -1, WriteQueueBytes: 2 << 20, IdleTimeout: 10 * time.Minute}})
	addr := srv.Addr().String()
	normal, _ := ptDial(t, srv, "/ws?user=normal", nil)
	normal.Timeout = 60 * time.Second
	ptWant(t, normal, "joined", map[string]any{"type": "join", "room": room})

	// The senders are raw clients that read everything and only count
	// their acks: decoding what they receive would cost more than the test.
	type sender struct {
		*ptRaw
		acks  atomic.Int64
		bad   atomic.Value // first frame that was not an ack or a msg
		ended chan struct{}
	}
	join := func(user string) *ptRaw {
		t.Helper()
		c, status := ptRawUpgrade(t, addr, "/ws?user="+user, nil, "")
		if c == nil {
			t.Fatalf("%s: HTTP %d", user, status)
		}
		c.ptReadJSON(t, "welcome")
		if err := ptWriteFrame(c, 0x1, []byte(`{"type":"join","room":"flood","id":"j"}`), false); err != nil {
			t.Fatal(err)
		}
		c.ptReadJSON(t, "joined")
		return c
	}
	var ss []*sender
	for i := range senders {
		s := &sender{ptRaw: join(fmt.Sprint("sender", i)), ended: make(chan struct{})}
		ss = append(ss, s)
		go func() {
			defer close(s.ended)
			for {
				_, p, err := ptReadFrame(s.br)
				if err != nil {
					return
				}
				switch {
				case bytes.Contains(p, []byte(`"type":"ack"`)):
					s.acks.Add(1)
				case bytes.Contains(p, []byte(`"type":"msg"`)), bytes.Contains(p, []byte(`"type":"presence"`)):
				default:
					s.bad.CompareAndSwap(nil, string(p))
				}
			}
		}()
	}
	t.Cleanup(func() {
		for i, s := range ss {
			if bad := s.bad.Load(); t.Failed() && bad != nil {
				t.Logf("sender %d (%d acks) got %.300s", i, s.acks.Load(), bad)
			}
			_ = s.Close()
			<-s.ended
		}
	})

	// The slow client joins and then never reads again.
	slow := join("slow")
	if n := srv.Gateway().Connections(); n != senders+2 {
		t.Fatalf("connections = %d, want %d", n, senders+2)
	}
	heapBefore, _ := ptHeap()

	pad := strings.Repeat("x", bodySize)
	sendErr := make(chan error, senders)
	for si, s := range ss {
		go func() {
			for n := range messages / senders {
				frame := fmt.Appendf(nil, `{"type":"send","room":"flood","id":"m%d","body":{"s":%d,"n":%d,"pad":"`, n, si, n)
				frame = append(append(frame, pad...), `"}}`...)
				if err := ptWriteFrame(s, 0x1, frame, false); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- nil
		}()
	}

	// The edge closes the slow client while the messages flow. Its stream
	// is read at once (a kernel drops an orphaned socket's unsent data
	// after a while): complete frames, possibly cut short at the end; a
	// bye, if one made it, says "slow".
	ptEventually(t, 60*time.Second, "the slow client is still connected", func() bool { return srv.Gateway().Connections() == senders+1 })
	end := ptReadToEnd(slow, 60*time.Second) // megabytes, on a loaded machine
	if !end.closed {
		t.Errorf("slow client: the edge did not close its socket (%s)", end)
	}
	if end.bye != "" && end.bye != "slow" {
		t.Errorf("slow client: bye %q, want slow", end.bye)
	}
	t.Logf("slow client saw %s", end)

	// The normal member gets every message, each sender's in order, with
	// increasing seqs.
	var last uint64
	next := make([]int64, senders)
	for i := 0; i < messages; {
		f := normal.Next(t)
		if f.Type() == "presence" {
			continue
		}
		body, _ := f.Get("body").(map[string]any)
		if f.Type() != "msg" || body == nil {
			t.Fatalf("normal member, message %d: got %.200s", i, f.String())
		}
		sn, _ := body["s"].(json.Number).Int64()
		n, _ := body["n"].(json.Number).Int64()
		if sn < 0 || sn >= senders || n != next[sn] || len(body["pad"].(string)) != bodySize {
			t.Fatalf("normal member, message %d: sender %d's message %d, want its %d", i, sn, n, next[sn])
		}
		next[sn]++
		seq, _ := f.Uint("seq")
		if seq <= last {
			t.Fatalf("normal member, message %d: seq %d after %d", i, seq, last)
		}
		last = seq
		i++
	}
	for range senders {
		if err := <-sendErr; err != nil {
			t.Fatalf("sender: %v", err)
		}
	}
	for i, s := range ss {
		ptEventually(t, 30*time.Second, fmt.Sprintf("sender %d: %d acks of %d", i, s.acks.Load(), messages/senders), func() bool {
			return s.acks.Load() == messages/senders
		})
		if bad := s.bad.Load(); bad != nil {
			t.Errorf("sender %d got %.200s", i, bad)
		}
	}

	for _, s := range ss {
		_ = s.Close()
		<-s.ended
	}
	_ = normal.Close()
	ptEventually(t, 10*time.Second, "connections did not close", func() bool { return srv.Gateway().Connections() == 0 })
	heapAfter, _ := ptHeap()
	growth := int64(heapAfter) - int64(heapBefore)
	t.Logf("heap in use: %d MiB before, %d MiB after %d × %d KiB through the room", heapBefore>>20, heapAfter>>20, messages, bodySize>>10)
	if growth > 64<<20 {
		t.Errorf("heap in use grew by %d MiB, want < 64 MiB", growth>>20)
	}
}

// --- 5. Connection caps.

func TestProtectConnCaps(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{MaxConnsPerUser: 2, MaxConnsPerIP: 3}})
	addr := srv.Addr().String()
	open := func(user, ip string) (*ptRaw, int) {
		t.Helper()
		c, status := ptRawUpgrade(t, addr, "/ws?user="+user, nil, ip)
		if c != nil {
			if w := c.ptReadJSON(t, "welcome"); w["user"] != user {
				t.Fatalf("welcome %v, want user %s", w, user)
			}
		}
		return c, status
	}
	mustOpen := func(user, ip string) *ptRaw {
		t.Helper()
		c, status := open(user, ip)
		if c == nil {
			t.Fatalf("%s from %s: HTTP %d, want the upgrade", user, ip, status)
		}
		return c
	}
	mustRefuse := func(user, ip string) {
		t.Helper()
		if _, status := open(user, ip); status != http.StatusTooManyRequests {
			t.Fatalf("%s from %s: HTTP %d, want 429", user, ip, status)
		}
	}
	// eventuallyOpen retries the upgrade (as a client would) until the
	// edge has released the slot of a closed connection.
	eventuallyOpen := func(user, ip string) *ptRaw {
		t.Helper()
		var c *ptRaw
		ptEventually(t, 5*time.Second, user+" from "+ip+" still refused", func() bool {
			var status int
			c, status = open(user, ip)
			if c == nil && status != http.StatusTooManyRequests {
				t.Fatalf("%s from %s: HTTP %d", user, ip, status)
			}
			return c != nil
		})
		return c
	}

	// A second loopback address (Linux routes all of 127/8 to lo) shows
	// that the counts are per address.
	other := ""
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err == nil {
		_ = ln.Close()
		other = "127.0.0.2"
	} else {
		t.Logf("no second loopback address (%v): the other-address cases are skipped", err)
	}
	conns := 0

	// Per user: the third connection of alice is refused, from any address.
	a1 := mustOpen("alice", "127.0.0.1")
	mustOpen("alice", "127.0.0.1")
	mustRefuse("alice", "127.0.0.1")
	if other != "" {
		mustRefuse("alice", other)
	}
	// Per IP: 127.0.0.1 holds 2; a third user fills it, a fourth is refused.
	b1 := mustOpen("bob", "127.0.0.1")
	mustRefuse("carol", "127.0.0.1")
	conns = 3
	if other != "" {
		mustOpen("carol", other) // another address has its own count
		conns++
	}

	// Closing a connection frees its slots.
	_ = a1.Close()
	eventuallyOpen("alice", "127.0.0.1")
	if other != "" {
		mustRefuse("alice", other)
	}
	mustRefuse("dave", "127.0.0.1")
	_ = b1.Close()
	eventuallyOpen("dave", "127.0.0.1")
	if n := srv.Gateway().Connections(); n != conns {
		t.Errorf("connections = %d, want %d", n, conns)
	}
	// A real client is refused in the same way.
	if got := wstest.DialErr(t, wstest.URL(srv, "/ws?user=erin"), nil); got != http.StatusTooManyRequests {
		t.Errorf("gws client past the IP cap: HTTP %d, want 429", got)
	}
}

// --- 6. Compression.

// ptBomb returns a permessage-deflate payload (raw DEFLATE without the
// final 00 00 ff ff) that inflates to mib MiB of zeros, without ever holding
// them: one flushed 1 MiB block, repeated (each starts with a literal, so
// the copies decode alone).
func ptBomb(t testing.TB, mib int) []byte {
	t.Helper()
	var chunk bytes.Buffer
	w, err := flate.NewWriter(&chunk, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out := bytes.Repeat(chunk.Bytes(), mib)
	return out[:len(out)-4]
}

func TestProtectCompression(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{Compression: true, MaxFrame: 64 << 10}})

	// A normal compressed conversation.
	c := wstest.DialWith(t, wstest.URL(srv, "/ws?user=alice"), wstest.Options{Compression: true})
	c.Expect(t, "welcome")
	if ext := c.UpgradeHeader().Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("compression not negotiated: %q", ext)
	}
	body := strings.Repeat("compressible ", 2000)
	ptWant(t, c, "joined", map[string]any{"type": "join", "room": "zip"})
	ptWant(t, c, "ack", map[string]any{"type": "send", "room": "zip", "body": body})
	if f := c.WaitFor(t, func(f wstest.Frame) bool { return f.Type() == "msg" }); f.Str("body") != body {
		t.Errorf("compressed message came back as %.100s", f.String())
	}

	// A bomb: ~100 KiB on the wire, 100 MiB inflated.
	bomb := ptBomb(t, 100)
	b := wstest.DialWith(t, wstest.URL(srv, "/ws?user=mallory"), wstest.Options{Compression: true})
	b.Expect(t, "welcome")
	heapBefore, allocBefore := ptHeap()
	// Written under gws, which would compress it again: the first client
	// message, so no earlier context is involved.
	if err := ptWriteFrame(b.Conn().NetConn(), 0x1, bomb, true); err != nil {
		t.Fatal(err)
	}
	code := b.Closed(t)
	heapAfter, allocAfter := ptHeap()
	// gws v1.8.9 stops inflating at the limit but reports every
	// decompression failure as 1011 (reader.go emitMessage), not 1009; what
	// matters is that the connection is closed and memory does not follow.
	if code != 1009 && code != 1011 {
		t.Errorf("bomb of %d KiB inflating to 100 MiB: close code %d (%q), want 1009 or gws's 1011", len(bomb)>>10, code, b.CloseReason())
	}
	t.Logf("bomb: %d bytes on the wire; heap in use %d → %d MiB; %d MiB allocated meanwhile",
		len(bomb), heapBefore>>20, heapAfter>>20, (allocAfter-allocBefore)>>20)
	if growth := int64(heapAfter) - int64(heapBefore); growth > 32<<20 {
		t.Errorf("heap in use grew by %d MiB", growth>>20)
	}
	if alloc := allocAfter - allocBefore; alloc > 48<<20 {
		t.Errorf("%d MiB allocated while the bomb was handled: it was inflated", alloc>>20)
	}

	// The other connection is unaffected, compressed frames still work.
	ptWant(t, c, "ack", map[string]any{"type": "send", "room": "zip", "body": "after the bomb"})
	ptWant(t, c, "pong", map[string]any{"type": "ping"})
}

// --- 7. Stalled handshakes.

// ptWaitClosed reads conn until the peer closes it and returns what it
// read and how long that took, or fails after limit.
func ptWaitClosed(t *testing.T, conn net.Conn, start time.Time, limit time.Duration) ([]byte, time.Duration) {
	t.Helper()
	_ = conn.SetReadDeadline(start.Add(limit))
	got, err := io.ReadAll(conn)
	took := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v (read %q)", limit, got)
	}
	return got, took
}

func TestProtectStalledHandshake(t *testing.T) {
	const readHeaderTimeout = 5 * time.Second
	const slack = 3 * time.Second

	t.Run("slow upgrade request", func(t *testing.T) {
		t.Parallel()
		srv := ptEdge(t, server.Config{})
		conn, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		req := "GET /ws?user=slowloris HTTP/1.1\r\nHost: " + srv.Addr().String() +
			"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		stop := make(chan struct{})
		wrote := make(chan int)
		go func() {
			tick := time.NewTicker(500 * time.Millisecond) // the attack's pace
			defer tick.Stop()
			n := 0
			defer func() { wrote <- n }()
			for ; n < len(req); n++ {
				if _, err := conn.Write([]byte{req[n]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		// Meanwhile a real client is served.
		c, _ := ptDial(t, srv, "/ws?user=alice", nil)
		ptWant(t, c, "pong", map[string]any{"type": "ping"})

		got, took := ptWaitClosed(t, conn, start, readHeaderTimeout+slack)
		close(stop)
		n := <-wrote
		if bytes.Contains(got, []byte(" 101 ")) {
			t.Errorf("the slow request was upgraded: %q", got)
		}
		t.Logf("slow request: closed after %v, %d of %d bytes sent, answer %q", took.Round(time.Millisecond), n, len(req), got)
		ptWant(t, c, "pong", map[string]any{"type": "ping"})
	})

	t.Run("TLS without ClientHello", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		certPEM, keyPEM := ptCert(t, 1)
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		ptWritePair(t, certFile, keyFile, certPEM, keyPEM, 0)
		srv := ptEdge(t, server.Config{TLSCert: certFile, TLSKey: keyFile})
		conn, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		c := wstest.DialWith(t, wstest.SecureURL(srv, "/ws?user=alice"), wstest.Options{TLS: ptTrust(t, certPEM)})
		c.Expect(t, "welcome")
		ptWant(t, c, "pong", map[string]any{"type": "ping"})

		got, took := ptWaitClosed(t, conn, start, readHeaderTimeout+slack)
		t.Logf("silent TLS client: closed after %v (read %d bytes)", took.Round(time.Millisecond), len(got))
		ptWant(t, c, "pong", map[string]any{"type": "ping"})
	})
}

// --- 8. TLS certificate reload.

func TestProtectTLSReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert1, key1 := ptCert(t, 1)
	ptWritePair(t, certFile, keyFile, cert1, key1, 0)
	srv := ptEdge(t, server.Config{TLSCert: certFile, TLSKey: keyFile, CertCheckInterval: 100 * time.Millisecond})
	addr := srv.Addr().String()

	old := wstest.DialWith(t, wstest.SecureURL(srv, "/ws?user=alice"), wstest.Options{TLS: ptTrust(t, cert1)})
	old.Expect(t, "welcome")
	if s, err := ptServedSerial(addr); err != nil || s != 1 {
		t.Fatalf("served serial %d (%v), want 1", s, err)
	}

	// New files: the watcher picks them up.
	cert2, key2 := ptCert(t, 2)
	ptWritePair(t, certFile, keyFile, cert2, key2, 2*time.Second)
	ptEventually(t, 5*time.Second, "new TLS connections still get serial 1", func() bool {
		s, err := ptServedSerial(addr)
		return err == nil && s == 2
	})
	// The established connection keeps working.
	ptWant(t, old, "pong", map[string]any{"type": "ping"})
	// New clients see the new certificate: trusting only the old one fails,
	// trusting the new one works.
	if conn, err := tls.Dial("tcp", addr, ptTrust(t, cert1)); err == nil {
		conn.Close()
		t.Error("a client trusting only the old certificate still connects")
	}
	c2 := wstest.DialWith(t, wstest.SecureURL(srv, "/ws?user=bob"), wstest.Options{TLS: ptTrust(t, cert2)})
	c2.Expect(t, "welcome")

	// TLS 1.1 is refused, 1.2 accepted.
	old11 := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if conn, err := tls.Dial("tcp", addr, old11); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Logf("TLS 1.1 refused with %v", err)
	}
	if conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2 refused: %v", err)
	} else {
		conn.Close()
	}

	// ReloadCertificate (SIGHUP), on an edge whose watcher would not look
	// for an hour.
	dir2 := t.TempDir()
	certFile2, keyFile2 := filepath.Join(dir2, "cert.pem"), filepath.Join(dir2, "key.pem")
	cert10, key10 := ptCert(t, 10)
	ptWritePair(t, certFile2, keyFile2, cert10, key10, 0)
	hup := ptEdge(t, server.Config{TLSCert: certFile2, TLSKey: keyFile2, CertCheckInterval: time.Hour})
	hupAddr := hup.Addr().String()
	cert11, key11 := ptCert(t, 11)
	ptWritePair(t, certFile2, keyFile2, cert11, key11, 2*time.Second)
	if s, err := ptServedSerial(hupAddr); err != nil || s != 10 {
		t.Fatalf("before ReloadCertificate: serial %d (%v), want 10", s, err)
	}
	if err := hup.ReloadCertificate(); err != nil {
		t.Fatalf("ReloadCertificate: %v", err)
	}
	if s, err := ptServedSerial(hupAddr); err != nil || s != 11 {
		t.Fatalf("after ReloadCertificate: serial %d (%v), want 11", s, err)
	}
	// A broken pair is refused and the previous certificate stays.
	cert12, _ := ptCert(t, 12)
	ptWritePair(t, certFile2, keyFile2, cert12, key11, 4*time.Second) // key of another certificate
	if err := hup.ReloadCertificate(); err == nil {
		t.Error("ReloadCertificate accepted a certificate with another's key")
	}
	ptWritePair(t, certFile2, keyFile2, []byte("not a certificate"), key11, 6*time.Second)
	if err := hup.ReloadCertificate(); err == nil {
		t.Error("ReloadCertificate accepted a file without a certificate")
	}
	if s, err := ptServedSerial(hupAddr); err != nil || s != 11 {
		t.Errorf("after failed reloads: serial %d (%v), want 11", s, err)
	}
	c11 := wstest.DialWith(t, wstest.SecureURL(hup, "/ws?user=carol"), wstest.Options{TLS: ptTrust(t, cert11)})
	c11.Expect(t, "welcome")
}

// --- 9. NATS users: the whole flow with the restricted users.

func TestProtectNATSAuth(t *testing.T) {
	srv := ptEdge(t, server.Config{NATSAuth: true})
	alice, _ := ptDial(t, srv, "/ws?user=alice", nil)
	bob, _ := ptDial(t, srv, "/ws?user=bob", nil)
	isType := func(typ string) func(wstest.Frame) bool {
		return func(f wstest.Frame) bool { return f.Type() == typ }
	}

	ptWant(t, alice, "joined", map[string]any{"type": "join", "room": "secure"})
	ptWant(t, bob, "joined", map[string]any{"type": "join", "room": "secure"})
	ack := ptWant(t, alice, "ack", map[string]any{"type": "send", "room": "secure", "body": "hi"})
	seq, ok := ack.Uint("seq")
	if !ok || seq == 0 {
		t.Fatalf("ack without a seq: %s", ack)
	}
	if m := bob.WaitFor(t, isType("msg")); m.Str("from") != "alice" || m.JSON("body") != `"hi"` {
		t.Errorf("bob got %s", m)
	}
	if users, _ := ptWant(t, bob, "members", map[string]any{"type": "members", "room": "secure"}).Strings("users"); !slices.Equal(users, []string{"alice", "bob"}) {
		t.Errorf("members = %q", users)
	}
	h := ptWant(t, bob, "history", map[string]any{"type": "history", "room": "secure"})
	if msgs, _ := h.Get("messages").([]any); len(msgs) != 1 {
		t.Errorf("history: %s", h)
	}

	// dm to an online user, and to an offline one who connects later.
	if a := ptWant(t, alice, "ack", map[string]any{"type": "dm", "to": "bob", "body": "psst"}); a.Str("status") != "delivered" {
		t.Errorf("dm to bob: %s, want status delivered", a)
	}
	if d := bob.WaitFor(t, isType("dm")); d.Str("from") != "alice" || d.JSON("body") != `"psst"` {
		t.Errorf("bob's dm: %s", d)
	}
	if a := ptWant(t, alice, "ack", map[string]any{"type": "dm", "to": "carol", "body": "later"}); a.Str("status") != "stored" {
		t.Errorf("dm to carol: %s, want status stored", a)
	}
	carol, _ := ptDial(t, srv, "/ws?user=carol", nil)
	if d := carol.WaitFor(t, isType("dm")); d.Str("from") != "alice" || d.JSON("body") != `"later"` {
		t.Errorf("carol's stored dm: %s", d)
	}

	// join with since replays; broadcast reaches everyone; leave.
	ptWant(t, carol, "joined", map[string]any{"type": "join", "room": "secure", "since": 0})
	if m := carol.WaitFor(t, isType("msg")); m.JSON("body") != `"hi"` {
		t.Errorf("carol's replay: %s", m)
	}
	ptWant(t, alice, "ack", map[string]any{"type": "broadcast", "body": "all"})
	for _, c := range []*wstest.Client{bob, carol} {
		if b := c.WaitFor(t, isType("broadcast")); b.Str("from") != "alice" {
			t.Errorf("broadcast: %s", b)
		}
	}
	ptWant(t, bob, "left", map[string]any{"type": "leave", "room": "secure"})

	// The in-process connections are the restricted users, nothing else.
	cz, err := srv.NATS().Connz(&natsserver.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]int{}
	for _, ci := range cz.Conns {
		users[ci.AuthorizedUser]++
	}
	if users[natsconf.EdgeUser] == 0 || users[natsconf.HandlersUser] == 0 || len(users) != 2 {
		t.Errorf("NATS connections by user: %v, want only %q and %q", users, natsconf.EdgeUser, natsconf.HandlersUser)
	}
}

// --- Shutdown while an upgrade is in flight.

// ptGateAuth authenticates ?user= and holds the request of user "late"
// until release is closed.
type ptGateAuth struct {
	entered chan struct{}
	release chan struct{}
}

func (a ptGateAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	user := r.URL.Query().Get("user")
	if user == "late" {
		close(a.entered)
		<-a.release
	}
	return auth.Identity{User: user}, nil
}

// TestProtectShutdownDuringUpgrade holds an upgrade request inside the
// gateway (in its Authenticator, after the "shutting down" check) while
// Gateway.Shutdown runs, then lets it go on: the edge must refuse it or say
// bye "shutdown", not serve a connection nothing will ever close.
func TestProtectShutdownDuringUpgrade(t *testing.T) {
	ns := wstest.StartNATS(t)
	nc, err := natsconf.Connect(ns.ClientURL(), "protect-gateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := ptGateAuth{entered: make(chan struct{}), release: make(chan struct{})}
	gw, err := gateway.New(nc, gateway.Config{
		Subjects: natsconf.MustSubjects(natsconf.DefaultPrefix),
		Auth:     a,
		Logger:   wstest.QuietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	type result struct {
		raw    *ptRaw
		status int
		err    error
	}
	late := make(chan result, 1)
	go func() {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			late <- result{err: err}
			return
		}
		raw, status, err := ptUpgradeConn(conn, ln.Addr().String(), "/ws?user=late", nil)
		if raw == nil {
			_ = conn.Close()
		}
		late <- result{raw, status, err}
	}()
	select {
	case <-a.entered:
	case <-time.After(5 * time.Second):
		close(a.release)
		t.Fatal("the upgrade request did not reach the authenticator")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatalf("Gateway.Shutdown: %v", err)
	}
	close(a.release)
	var r result
	select {
	case r = <-late:
	case <-time.After(10 * time.Second):
		t.Fatal("the held upgrade got no answer")
	}
	if r.err != nil {
		t.Fatalf("late upgrade: %v", r.err)
	}
	if r.raw == nil {
		t.Logf("late upgrade refused with HTTP %d", r.status)
		return
	}
	defer func() {
		_ = r.raw.Close()
		ptEventually(t, 5*time.Second, "the late connection is still registered", func() bool { return gw.Connections() == 0 })
	}()
	end := ptReadToEnd(r.raw, 3*time.Second)
	if end.bye != "shutdown" || !end.closed {
		t.Errorf("an upgrade that was in flight during Gateway.Shutdown was accepted after Shutdown returned "+
			"(HTTP %d, gateway connections %d) and then saw %s; want a refusal (503) or bye shutdown and a close",
			r.status, gw.Connections(), end)
	}
}

// TestProtectUnfinishedHugeFrames: connections that announce frames of
// almost 1 MiB and stall hold no memory for them: a frame beyond twice the
// frame limit closes the connection at its header (1009).
func TestProtectUnfinishedHugeFrames(t *testing.T) {
	srv := ptEdge(t, server.Config{Gateway: gateway.Config{IdleTimeout: time.Minute}})
	addr := srv.Addr().String()
	const conns = 40
	heapBefore, _ := ptHeap()
	for i := range conns {
		c, status := ptRawUpgrade(t, addr, fmt.Sprint("/ws?user=big", i), nil, "")
		if c == nil {
			t.Fatalf("upgrade: HTTP %d", status)
		}
		c.ptReadJSON(t, "welcome")
		// A header for 1 MiB - 1 bytes, masked, then a few bytes only.
		hdr := []byte{0x81, 0x80 | 127}
		hdr = binary.BigEndian.AppendUint64(hdr, 1<<20-1)
		hdr = append(hdr, 1, 2, 3, 4, 'x', 'y')
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		end := ptReadToEnd(c, 10*time.Second)
		if !end.closed || end.closeCode != 1009 {
			t.Fatalf("connection %d: %s, want closed with 1009", i, end)
		}
		_ = c.Close()
	}
	heapAfter, _ := ptHeap()
	if growth := int64(heapAfter) - int64(heapBefore); growth > 8<<20 {
		t.Errorf("heap grew by %d MiB for %d unfinished frames", growth>>20, conns)
	}
}

// TestProtectDMNotConfirmedToClosingConnection: a live dm offered to a
// connection that is being closed (its bye sent, its socket lingering) is
// not confirmed: the dm is kept (status stored) and reaches the user's next
// connection, instead of being counted delivered and never written.
func TestProtectDMNotConfirmedToClosingConnection(t *testing.T) {
	ns := wstest.StartNATS(t)
	wstest.StartHandlers(t, ns.ClientURL(), "all")
	srv := ptEdge(t, server.Config{NATSURL: ns.ClientURL(), Gateway: gateway.Config{Rate: -1}})
	addr := srv.Addr().String()

	// bob's client never reads again and never answers the close, so his
	// connection lingers on the edge after its bye.
	bob, status := ptRawUpgrade(t, addr, "/ws?user=bob", nil, "")
	if bob == nil {
		t.Fatalf("upgrade: HTTP %d", status)
	}
	welcome := bob.ptReadJSON(t, "welcome")
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject, err := natsconf.MustSubjects(natsconf.DefaultPrefix).Conn(srv.Gateway().EdgeID(), welcome["conn"].(string))
	if err != nil {
		t.Fatal(err)
	}
	kick := nats.NewMsg(subject)
	kick.Header.Set(natsconf.HeaderOp, natsconf.OpKick)
	if err := nc.PublishMsg(kick); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	alice, _ := ptDial(t, srv, "/ws?user=alice", nil)
	ack := alice.Request(t, map[string]any{"type": "dm", "to": "bob", "body": "are you there?"})
	if ack.Type() != "ack" || ack.Str("status") != "stored" {
		t.Fatalf("dm to a connection being closed: %s, want ack stored", ack)
	}
	bob2, _ := ptDial(t, srv, "/ws?user=bob", nil)
	if f := bob2.Expect(t, "dm"); f.JSON("body") != `"are you there?"` {
		t.Fatalf("bob's next connection: %s, want the stored dm", f)
	}
}
