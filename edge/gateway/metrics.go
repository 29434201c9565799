package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/natsconf/ops/metrics"
)

// What the gateway reports to Config.Metrics and logs about connections,
// kept apart from the code it observes.

// readTime is when a frame was read, for the command latency metric; zero
// (and no clock read) without metrics.
func (g *Gateway) readTime() time.Time {
	if g.cfg.Metrics == nil {
		return time.Time{}
	}
	return time.Now()
}

// observe records a command answered by the edge itself or by a handler:
// code is its error code, "" when it succeeded.
func (c *client) observe(p *pendingCommand, code protocol.Code) {
	c.g.cfg.Metrics.Command(p.cmd.Type, code, p.read)
}

// observeFault records a frame answered with an error before it could be
// relayed (binary, too large, not a command).
func (c *client) observeFault(p *pendingCommand) {
	code := protocol.CodeBadFrame
	if pe, ok := p.fault.(*protocol.Error); ok {
		code = pe.Code
	}
	c.observe(p, code)
}

// observeReply records a command a handler answered with frame.
func (c *client) observeReply(p *pendingCommand, frame []byte) {
	if c.g.cfg.Metrics == nil {
		return
	}
	code := protocol.CodeInternal // an empty reply
	if len(frame) > 0 {
		code = metrics.ReplyCode(frame)
	}
	c.observe(p, code)
}

// setBye counts a bye and remembers its code for the connection's close.
func (c *client) setBye(code protocol.ByeCode) {
	c.byeCode.Store(&code)
	c.g.cfg.Metrics.Bye(code)
}

// closedMetrics records a closed connection and logs it at debug level:
// who, for how long, and the bye it got. Nothing a client sent is logged.
func (c *client) closedMetrics() {
	var code protocol.ByeCode
	if p := c.byeCode.Load(); p != nil {
		code = *p
	}
	c.g.cfg.Metrics.ConnClosed(code)
	if log := c.g.cfg.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		bye := string(code)
		if bye == "" {
			bye = metrics.NoBye
		}
		log.Debug("connection closed", "conn", c.id, "user", c.user, "duration", time.Since(c.opened).Round(time.Millisecond), "bye", bye)
	}
}

// DroppedMessages returns how many messages nats.go dropped because the
// edge's subscriptions did not keep up (the dispatcher's channel was full):
// those of the subscriptions it holds now, and of those it let go.
func (g *Gateway) DroppedMessages() uint64 {
	h := g.hub
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := h.droppedGone.Load() + droppedOf(h.bcast) + droppedOf(h.conns)
	for _, set := range []map[string]*fanout{h.users, h.rooms} {
		for _, f := range set {
			n += droppedOf(f.sub)
		}
	}
	return n
}

// retire keeps the dropped count of a subscription about to be
// unsubscribed, so that DroppedMessages never goes down.
func (h *hub) retire(sub *nats.Subscription) { h.droppedGone.Add(droppedOf(sub)) }

func droppedOf(sub *nats.Subscription) uint64 {
	if sub == nil {
		return 0
	}
	n, err := sub.Dropped()
	if err != nil || n < 0 {
		return 0
	}
	return uint64(n)
}

// gwsLogger sends what gws logs (a panic it recovered in a callback) to
// the gateway's logger.
type gwsLogger struct{ log *slog.Logger }

func (l gwsLogger) Error(v ...any) {
	l.log.Error("websocket library error", "detail", fmt.Sprint(v...))
}
