package wstest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
)

// DefaultTimeout is how long a Client waits for a frame, a pong or its
// close when its Timeout is zero.
const DefaultTimeout = 5 * time.Second

// frameBuffer is the capacity of a Client's frame channel. A test that lets
// more frames pile up without reading them stalls the client's reader (and
// eventually makes the edge see a slow client).
const frameBuffer = 1 << 14

// CloseNoFrame is the close code a Client reports when the connection ended
// without a close frame (RFC 6455's 1006, "abnormal closure").
const CloseNoFrame = 1006

// Options configure a client connection beyond its URL.
type Options struct {
	// Header is sent with the upgrade request (Origin, Authorization …).
	Header http.Header
	// TLS configures a wss:// connection (trusted roots, server name); nil
	// means the system defaults.
	TLS *tls.Config
	// Compression offers permessage-deflate.
	Compression bool
}

// Client is a WebSocket client connected to an edge. A goroutine reads every
// frame the server sends into a buffer; Next, Expect, WaitFor and Request
// take them from there in order. The connection is closed in cleanup.
type Client struct {
	// Timeout is how long the reading methods wait before failing the test
	// (DefaultTimeout when zero). Set it from the goroutine that reads.
	Timeout time.Duration

	conn    *gws.Conn
	header  http.Header // of the upgrade response
	frames  chan Frame
	pongs   chan []byte
	stop    chan struct{} // closed in cleanup: the reader stops delivering
	done    chan struct{} // closed once the read loop has ended
	pending []Frame       // frames read ahead by Request, oldest first
	ids     atomic.Uint64
	once    sync.Once

	// Written by the read goroutine before done is closed.
	closeCode   uint16
	closeReason string
}

// Dial connects to url (ws:// or wss://) with hdr on the upgrade request and
// fails the test if the upgrade is refused.
func Dial(t testing.TB, url string, hdr http.Header) *Client {
	t.Helper()
	return DialWith(t, url, Options{Header: hdr})
}

// DialWith is Dial with Options (TLS, compression).
func DialWith(t testing.TB, url string, opts Options) *Client {
	t.Helper()
	c, resp, err := dial(url, opts)
	if err != nil {
		status := "no HTTP response"
		if resp != nil {
			status = "HTTP " + resp.Status
		}
		t.Fatalf("wstest: dial %s: %s: %v", url, status, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("wstest: close %s: %v", url, err)
		}
	})
	return c
}

// DialErr tries to connect to url with hdr, expects the upgrade to be
// refused, and returns the HTTP status of the refusal. It fails the test if
// the connection is accepted or no HTTP response comes back.
func DialErr(t testing.TB, url string, hdr http.Header) int {
	t.Helper()
	c, resp, err := dial(url, Options{Header: hdr})
	if err == nil {
		_ = c.Close()
		t.Fatalf("wstest: dial %s: accepted, want a refusal", url)
	}
	if resp == nil {
		t.Fatalf("wstest: dial %s: no HTTP response: %v", url, err)
	}
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	return resp.StatusCode
}

func dial(url string, opts Options) (*Client, *http.Response, error) {
	c := &Client{
		frames: make(chan Frame, frameBuffer),
		pongs:  make(chan []byte, 16),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	hdr := http.Header{}
	for k, v := range opts.Header {
		hdr[k] = append([]string(nil), v...)
	}
	copt := &gws.ClientOption{
		Addr:              url,
		RequestHeader:     hdr,
		PermessageDeflate: gws.PermessageDeflate{Enabled: opts.Compression},
	}
	if opts.TLS != nil {
		copt.TlsConfig = opts.TLS.Clone()
	}
	conn, resp, err := gws.NewClient(reader{c}, copt)
	if err != nil {
		return nil, resp, err
	}
	c.conn = conn
	c.header = resp.Header
	go func() {
		defer close(c.done)
		conn.ReadLoop()
	}()
	return c, resp, nil
}

// Conn returns the underlying gws connection, for what the Client does not
// wrap.
func (c *Client) Conn() *gws.Conn { return c.conn }

// UpgradeHeader returns the header of the server's upgrade response
// (negotiated extensions and subprotocol).
func (c *Client) UpgradeHeader() http.Header { return c.header }

// Send writes v as a JSON text frame. It returns the write's error; a test
// usually need not check it, since a lost command shows as a missing reply.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wstest: encode frame: %w", err)
	}
	return c.SendRaw(gws.OpcodeText, b)
}

// SendRaw writes one frame with opcode (gws.OpcodeText, OpcodeBinary,
// OpcodePing …) and payload as given: invalid JSON, binary data, huge
// frames.
func (c *Client) SendRaw(opcode gws.Opcode, payload []byte) error {
	return c.conn.WriteMessage(opcode, payload)
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

var (
	errTimeout = errors.New("timed out")
	errClosed  = errors.New("connection closed")
)

// next returns the next frame: a pending one, else one from the reader.
func (c *Client) next(deadline time.Time) (Frame, error) {
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return f, nil
	}
	return c.receive(deadline)
}

// receive returns the next frame from the reader, ignoring pending ones.
func (c *Client) receive(deadline time.Time) (Frame, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case f := <-c.frames:
		return f, nil
	case <-c.done:
		// Every frame is in the channel before done is closed.
		select {
		case f := <-c.frames:
			return f, nil
		default:
			return Frame{}, fmt.Errorf("%w (close code %d %q)", errClosed, c.closeCode, c.closeReason)
		}
	case <-timer.C:
		return Frame{}, errTimeout
	}
}

// Next returns the next frame the server sent, failing the test if none
// comes within the client's Timeout or the connection closes first.
func (c *Client) Next(t testing.TB) Frame {
	t.Helper()
	f, err := c.next(time.Now().Add(c.timeout()))
	if err != nil {
		t.Fatalf("wstest: waiting for a frame: %v after %v", err, c.timeout())
	}
	return f
}

// TryNext returns the next frame if one comes within d; ok is false when
// none does or the connection closes first. It never fails the test: use it
// to tell what happened before failing with a precise message.
func (c *Client) TryNext(d time.Duration) (f Frame, ok bool) {
	f, err := c.next(time.Now().Add(d))
	return f, err == nil
}

// Expect returns the next frame and fails the test unless its type is typ:
// it skips nothing.
func (c *Client) Expect(t testing.TB, typ string) Frame {
	t.Helper()
	f, err := c.next(time.Now().Add(c.timeout()))
	if err != nil {
		t.Fatalf("wstest: waiting for a %q frame: %v", typ, err)
	}
	if f.Type() != typ {
		t.Fatalf("wstest: want a %q frame, got %s", typ, f)
	}
	return f
}

// WaitFor skips frames until one satisfies pred and returns it, failing the
// test if none does within the client's Timeout. The skipped frames are
// gone.
func (c *Client) WaitFor(t testing.TB, pred func(Frame) bool) Frame {
	t.Helper()
	deadline := time.Now().Add(c.timeout())
	var skipped []string
	for {
		f, err := c.next(deadline)
		if err != nil {
			t.Fatalf("wstest: waiting for a matching frame: %v; skipped %d: %s", err, len(skipped), strings.Join(skipped, " "))
		}
		if pred(f) {
			return f
		}
		skipped = append(skipped, f.String())
	}
}

// Request sends cmd with a fresh unique "id" and returns the frame that
// carries that id (the reply or an error). Frames that arrive meanwhile
// (deliveries, presence …) are kept, in order, for later Next, Expect and
// WaitFor calls. cmd is not modified.
func (c *Client) Request(t testing.TB, cmd map[string]any) Frame {
	t.Helper()
	id := fmt.Sprintf("wstest-%d", c.ids.Add(1))
	m := maps.Clone(cmd)
	if m == nil {
		m = map[string]any{}
	}
	m["id"] = id
	if err := c.Send(m); err != nil {
		t.Fatalf("wstest: send %v: %v", m, err)
	}
	deadline := time.Now().Add(c.timeout())
	for {
		f, err := c.receive(deadline)
		if err != nil {
			t.Fatalf("wstest: waiting for the reply to %v: %v", m, err)
		}
		if f.Str("id") == id {
			return f
		}
		c.pending = append(c.pending, f)
	}
}

// Pong waits for the next WebSocket pong and returns its payload (send a
// ping with SendRaw(gws.OpcodePing, payload)).
func (c *Client) Pong(t testing.TB) []byte {
	t.Helper()
	timer := time.NewTimer(c.timeout())
	defer timer.Stop()
	select {
	case p := <-c.pongs:
		return p
	case <-c.done:
		t.Fatalf("wstest: waiting for a pong: connection closed (code %d)", c.closeCode)
	case <-timer.C:
		t.Fatalf("wstest: no pong within %v", c.timeout())
	}
	return nil
}

// Closed waits until the connection has closed and returns the close code
// the server sent (CloseNoFrame when none came: the connection broke, or
// this client closed it first). Frames not yet read stay readable. It fails the test if the connection is still
// open after the client's Timeout.
func (c *Client) Closed(t testing.TB) uint16 {
	t.Helper()
	timer := time.NewTimer(c.timeout())
	defer timer.Stop()
	select {
	case <-c.done:
		return c.closeCode
	case <-timer.C:
		t.Fatalf("wstest: connection still open after %v", c.timeout())
	}
	return 0
}

// Done is closed once the connection has closed, for a test that must not
// block on it (see Closed for the code).
func (c *Client) Done() <-chan struct{} { return c.done }

// CloseReason returns the reason of the server's close frame; call it after
// Closed.
func (c *Client) CloseReason() string {
	select {
	case <-c.done:
		return c.closeReason
	default:
		return ""
	}
}

// Close closes the connection with code 1000 (a client going away) and
// waits for the reader to end. It is safe to call more than once and after
// the server closed the connection; cleanup calls it.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		// An edge that stopped reading must not hold the close frame.
		_ = c.conn.SetWriteDeadline(time.Now().Add(DefaultTimeout))
		_ = c.conn.WriteClose(1000, nil)
		select {
		case <-c.done:
		case <-time.After(DefaultTimeout):
			_ = c.conn.NetConn().Close()
			err = errors.New("reader did not stop")
		}
	})
	return err
}

// reader receives gws's callbacks for one Client.
type reader struct{ c *Client }

func (reader) OnOpen(*gws.Conn) {}

func (r reader) OnClose(_ *gws.Conn, err error) {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		r.c.closeCode = ce.Code
		r.c.closeReason = string(ce.Reason)
		return
	}
	r.c.closeCode = CloseNoFrame
}

func (reader) OnPing(conn *gws.Conn, payload []byte) { _ = conn.WritePong(payload) }

func (r reader) OnPong(_ *gws.Conn, payload []byte) {
	select {
	case r.c.pongs <- append([]byte(nil), payload...):
	default:
	}
}

func (r reader) OnMessage(_ *gws.Conn, msg *gws.Message) {
	raw := append([]byte(nil), msg.Bytes()...)
	binary := msg.Opcode == gws.OpcodeBinary
	_ = msg.Close()
	select {
	case r.c.frames <- decodeFrame(raw, binary):
	case <-r.c.stop:
	}
}
