package natsconf

import (
	"context"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect dials the NATS servers in urls (comma separated) with options suited
// to a long-lived service connection. As the user of nats.UserInfo in opts,
// or else of the first URL that names one (nats://edge:…@host:4222), it
// takes that user's inbox prefix (InboxPrefix), so an edge or handlers
// process connected as its natter user receives replies where its
// permissions let it subscribe; a nats.CustomInboxPrefix in opts wins.
//
// The NATS client shuffles the list (and the servers it learns from the
// cluster) before it connects and reconnects, which spreads processes over
// the nodes; after KeepURLOrder(true) Connect keeps the order given
// (nats.DontRandomize): the first URL is tried first, the next ones on a
// reconnect.
func Connect(urls, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append(ServiceOptions(name), inboxOf(urls, opts)...)
	if keepURLOrder.Load() {
		all = append(all, nats.DontRandomize())
	}
	return nats.Connect(urls, append(all, opts...)...)
}

// keepURLOrder is what KeepURLOrder set.
var keepURLOrder atomic.Bool

// KeepURLOrder sets whether the connections Connect makes from now on keep
// the order of their URL list (nats.DontRandomize) instead of letting the
// NATS client shuffle it, and returns the previous setting. It is a
// process-wide setting because the edge's server makes its connection
// itself: the -nats-no-randomize flag of the edge and of the handlers sets
// it; a test that sets it restores it.
func KeepURLOrder(keep bool) (previous bool) {
	return keepURLOrder.Swap(keep)
}

// connectUser returns the NATS user a connection with these URLs and options
// authenticates as: the user of nats.UserInfo in opts, else the first user
// named in urls (comma separated), else "".
func connectUser(urls string, opts ...nats.Option) string {
	var o nats.Options
	for _, opt := range opts {
		if opt != nil {
			_ = opt(&o) // a scratch copy: only User is read
		}
	}
	if o.User != "" {
		return o.User
	}
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		if parsed, err := url.Parse(u); err == nil && parsed.User != nil && parsed.User.Username() != "" {
			return parsed.User.Username()
		}
	}
	return ""
}

// inboxOf is the inbox prefix option of the user connectUser finds, if that
// user is one of natter's.
func inboxOf(urls string, opts []nats.Option) []nats.Option {
	if p := InboxPrefix(connectUser(urls, opts...)); p != "" {
		return []nats.Option{nats.CustomInboxPrefix(p)}
	}
	return nil
}

// ServiceOptions are the connection options every natter process uses:
// reconnect forever, a large pending buffer for fan-out bursts.
func ServiceOptions(name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
	}
}

// Drain drains nc (its subscriptions finish what they hold, its pending
// publishes are flushed) and waits until it is closed or ctx ends. It
// replaces nc's closed handler.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if nc == nil || nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return err
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return ctx.Err()
	}
}

// RedactURLs returns a comma-separated list of NATS URLs with their
// passwords replaced by "xxxxx", for logs.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
