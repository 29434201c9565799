// Package runtime is the small serverless runtime natter's handlers share.
// A handler is a function of one client command; the runtime owns the rest:
// a nats.go micro service whose endpoints subscribe in a queue group named
// after the handler (so any number of copies can run), decoding of the
// command and of the identity headers the edge set, a deadline per command,
// bounded concurrency, panic recovery, and error replies in the protocol's
// "error" frame.
//
// Commands of one connection reach a handler one request at a time: the
// edge sends the next request only when the previous one is answered, and
// the commands that queued up meanwhile travel together as one batch
// (natsconf.HeaderBatch), which the runtime applies in order on one
// goroutine. So handlers run commands of different connections
// concurrently without breaking per-connection order.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"natter/edge/protocol"
	"natter/natsconf"
)

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	// Name of the handler; also its queue group. Required.
	Name string
	// Version of the handler, semver (default "1.0.0").
	Version string
	// Description for service discovery ($SRV.INFO).
	Description string
	// Subjects is the subject set to serve (default prefix "im").
	Subjects natsconf.Subjects
	// Timeout bounds one command (default 4s, below the edge's 5s).
	Timeout time.Duration
	// MaxConcurrent bounds the commands in flight (default 256).
	MaxConcurrent int
	// Logger receives errors and recovered panics (default slog.Default()).
	Logger *slog.Logger
	// SweepInterval is how often the rooms handler looks for memberships
	// held by edges that are gone (default 30s).
	SweepInterval time.Duration
	// Stores is the storage policy handlers follow (retention is applied by
	// natsconf.EnsureStores; NoOfflineDMs by the inbox handler).
	Stores natsconf.StoreConfig
}

// Defaults of Config.
const (
	DefaultTimeout       = 4 * time.Second
	DefaultMaxConcurrent = 256
	DefaultSweepInterval = 30 * time.Second
)

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("runtime: handler needs a name")
	}
	if c.Version == "" {
		c.Version = "1.0.0"
	}
	if c.Subjects.Prefix() == "" {
		c.Subjects = natsconf.MustSubjects(natsconf.DefaultPrefix)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Identity is who sent a command, as the edge authenticated it.
type Identity struct {
	Conn      string
	User      string
	Edge      string
	Rooms     []string // room patterns the user may join; nil means any
	Broadcast bool     // may broadcast
}

// Request is one client command with its sender.
type Request struct {
	Identity
	Command protocol.Command
}

// Op is a control operation the edge applies to the requesting connection
// before it writes the reply frame.
type Op struct {
	Name string // natsconf.OpSubscribe, OpUnsubscribe or OpKick
	Room string
}

// Response is what a command handler answers: a frame for the client
// (encoded with protocol.Encode) and an optional control operation.
type Response struct {
	Frame any
	Op    *Op
}

// CommandFunc handles one command. A *protocol.Error it returns becomes an
// error frame with that code; any other error becomes "internal".
type CommandFunc func(ctx context.Context, req *Request) (Response, error)

// Outcome is what a BatchFunc answers for one command: a Response, or an
// error as a CommandFunc returns it.
type Outcome struct {
	Response
	Err error
}

// BatchFunc handles commands of one connection that arrived together, in
// the order sent; see Service.HandleBatch.
type BatchFunc func(ctx context.Context, reqs []*Request) []Outcome

// Event is a lifecycle event published by an edge.
type Event struct {
	Identity
	// First is set on a connect event when the connection is its user's
	// first on that edge.
	First bool
	Data  []byte
}

// EventFunc handles one event. When the event was sent as a request, the
// runtime replies with an empty message on success or a service error.
type EventFunc func(ctx context.Context, ev *Event) error

// Service is one running handler: a micro service with its endpoints.
type Service struct {
	cfg    Config
	nc     *nats.Conn
	svc    micro.Service
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup // commands in flight
	once   sync.Once

	mu       sync.Mutex
	stopping bool

	background     context.Context // of Every's work, ended first by Stop
	stopBackground context.CancelFunc
}

// New starts an empty handler service on nc. Add endpoints with Handle and
// On; stop it with Stop.
func New(nc *nats.Conn, cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        cfg.Name,
		Version:     cfg.Version,
		Description: cfg.Description,
		QueueGroup:  "natter-" + cfg.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: %w", cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, nc: nc, svc: svc, ctx: ctx, cancel: cancel, sem: make(chan struct{}, cfg.MaxConcurrent)}
	s.background, s.stopBackground = context.WithCancel(ctx)
	return s, nil
}

// Config returns the service's configuration, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Subjects returns the subject set the service serves.
func (s *Service) Subjects() natsconf.Subjects { return s.cfg.Subjects }

// Handle serves client commands of type cmdType.
func (s *Service) Handle(cmdType string, fn CommandFunc) error {
	return s.HandleBatch(cmdType, func(ctx context.Context, reqs []*Request) []Outcome {
		out := make([]Outcome, len(reqs))
		for i, req := range reqs {
			if err := ctx.Err(); err != nil {
				out[i].Err = protocol.Errorf(protocol.CodeUnavailable, "handler timed out")
				continue
			}
			out[i].Response, out[i].Err = fn(ctx, req)
		}
		return out
	})
}

// HandleBatch serves client commands of type cmdType with a function that
// takes the commands of one connection that arrived together (one or more,
// in the order sent) and returns one outcome per command, in that order.
// It must give them effect in that order; it may overlap their I/O (for
// example with ordered asynchronous JetStream publishes). Most handlers use
// Handle, which runs a CommandFunc on each command in turn.
func (s *Service) HandleBatch(cmdType string, fn BatchFunc) error {
	subject, err := s.cfg.Subjects.Command(cmdType)
	if err != nil {
		return err
	}
	return s.svc.AddEndpoint(cmdType, micro.HandlerFunc(func(r micro.Request) {
		s.run(inboundOf(r), func(ctx context.Context, in inbound) {
			s.serveCommand(ctx, in, fn)
		})
	}), micro.WithEndpointSubject(subject))
}

// On serves events published on subject.
func (s *Service) On(name, subject string, fn EventFunc) error {
	return s.svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
		s.run(inboundOf(r), func(ctx context.Context, in inbound) {
			err := fn(ctx, &Event{Identity: identity(in.header), First: in.header.Get(natsconf.HeaderFirst) != "", Data: in.data})
			if err != nil {
				s.cfg.Logger.Warn("event failed", "handler", s.cfg.Name, "event", name, "err", err)
				s.reply(in, nil, errorHeader("500", err.Error()))
				return
			}
			s.reply(in, nil, nil)
		})
	}), micro.WithEndpointSubject(subject))
}

// inbound is what the runtime keeps of a request: micro's Request is only
// used inside micro's callback (micro reads it again when the callback
// returns), and the work runs after that, on its own goroutine.
type inbound struct {
	subject, replyTo string
	data             []byte
	header           micro.Headers
}

func inboundOf(r micro.Request) inbound {
	return inbound{subject: r.Subject(), replyTo: r.Reply(), data: r.Data(), header: r.Headers()}
}

// run executes work in its own goroutine, bounded by MaxConcurrent, with the
// command deadline, and turns a panic into an "internal" reply. After Stop
// began, requests are answered "unavailable" at once.
func (s *Service) run(in inbound, work func(ctx context.Context, in inbound)) {
	acquired := false
	select {
	case s.sem <- struct{}{}:
		acquired = true
	case <-s.ctx.Done():
	}
	s.mu.Lock()
	if s.stopping || !acquired {
		s.mu.Unlock()
		if acquired {
			<-s.sem
		}
		s.replyError(in, commandID(in.data), protocol.Errorf(protocol.CodeUnavailable, "handler stopping"))
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Logger.Error("handler panic", "handler", s.cfg.Name, "subject", in.subject, "panic", p, "stack", string(debug.Stack()))
				s.replyError(in, commandID(in.data), protocol.Errorf(protocol.CodeInternal, "handler failed"))
			}
		}()
		work(ctx, in)
	}()
}

func (s *Service) serveCommand(ctx context.Context, in inbound, fn BatchFunc) {
	batch := in.header.Get(natsconf.HeaderBatch) != ""
	items := [][]byte{in.data}
	if batch {
		// Several commands of one connection, applied in the order sent,
		// each answered in the same order.
		var err error
		items, err = natsconf.SplitBatch(in.data)
		if err != nil || len(items) > natsconf.MaxBatch {
			s.replyError(in, "", protocol.Errorf(protocol.CodeInternal, "malformed batch"))
			return
		}
	}
	id := identity(in.header)
	results := make([]result, len(items))
	reqs := make([]*Request, 0, len(items))
	slots := make([]int, 0, len(items)) // results index of each request
	for i, item := range items {
		cmd, err := protocol.DecodeCommand(item)
		results[i].id, results[i].cmdType = cmd.ID, cmd.Type
		switch {
		case err != nil:
			results[i].err = err
		case !natsconf.ValidName(id.User) || !natsconf.ValidName(id.Conn):
			results[i].err = protocol.Errorf(protocol.CodeInternal, "command without identity")
		default:
			reqs = append(reqs, &Request{Identity: id, Command: cmd})
			slots = append(slots, i)
		}
	}
	if len(reqs) > 0 {
		for i, out := range fn(ctx, reqs) {
			r := &results[slots[i]]
			r.err = out.Err
			if out.Err == nil {
				r.Frame = protocol.Encode(out.Frame)
				if out.Op != nil {
					r.Op, r.Room = out.Op.Name, out.Op.Room
				}
			}
		}
	}
	for i := range results {
		if err := results[i].err; err != nil {
			results[i].err = s.clientError(results[i].cmdType, err)
		}
	}
	if !batch {
		r := results[0]
		if r.err != nil {
			s.replyError(in, r.id, r.err)
			return
		}
		var hdr nats.Header
		if r.Op != "" {
			hdr = nats.Header{natsconf.HeaderOp: {r.Op}, natsconf.HeaderRoom: {r.Room}}
		}
		s.reply(in, r.Frame, hdr)
		return
	}
	var body []byte
	for _, r := range results {
		if r.err != nil {
			r.Op, r.Room, r.Frame = "", "", protocol.EncodeError(r.id, asProtocolError(r.err))
		}
		body = natsconf.AppendBatchResult(body, r.BatchResult)
	}
	s.reply(in, body, nats.Header{natsconf.HeaderBatch: {"1"}})
}

// result is one command's outcome, with its id for error replies.
type result struct {
	natsconf.BatchResult
	id, cmdType string
	err         error
}

// clientError is what the client is told of err: a *protocol.Error as it
// is; a deadline as "unavailable"; anything else is logged and becomes
// "internal".
func (s *Service) clientError(cmdType string, err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	s.cfg.Logger.Error("command failed", "handler", s.cfg.Name, "type", cmdType, "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		return protocol.Errorf(protocol.CodeUnavailable, "handler timed out")
	}
	return err
}

// asProtocolError is err as the client sees it: its own code, or "internal".
func asProtocolError(err error) *protocol.Error {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.Errorf(protocol.CodeInternal, "internal error")
	}
	return pe
}

// replyError answers with the protocol's error frame, and micro's service
// error headers so NATS tools see the failure.
func (s *Service) replyError(in inbound, id string, err error) {
	pe := asProtocolError(err)
	s.reply(in, protocol.EncodeError(id, pe), errorHeader(string(pe.Code), pe.Message))
}

// commandID is the id of a command body, for error replies made before (or
// instead of) running its handler.
func commandID(data []byte) string {
	c, _ := protocol.DecodeCommand(data)
	return c.ID
}

func errorHeader(code, description string) nats.Header {
	return nats.Header{micro.ErrorCodeHeader: {code}, micro.ErrorHeader: {description}}
}

// reply publishes the answer to a request (nothing for a plain publish).
func (s *Service) reply(in inbound, data []byte, hdr nats.Header) {
	if in.replyTo == "" {
		return
	}
	if err := s.nc.PublishMsg(&nats.Msg{Subject: in.replyTo, Header: hdr, Data: data}); err != nil {
		s.cfg.Logger.Warn("reply failed", "handler", s.cfg.Name, "err", err)
	}
}

func identity(h micro.Headers) Identity {
	id := Identity{
		Conn:      h.Get(natsconf.HeaderConn),
		User:      h.Get(natsconf.HeaderUser),
		Edge:      h.Get(natsconf.HeaderEdge),
		Broadcast: h.Get(natsconf.HeaderBroadcast) == "1",
	}
	if v := h.Values(natsconf.HeaderRooms); len(v) > 0 {
		id.Rooms = []string{}
		for _, p := range strings.Split(v[0], ",") {
			if p != "" {
				id.Rooms = append(id.Rooms, p)
			}
		}
	}
	return id
}

// Stop stops taking commands, waits for the ones in flight, and removes the
// service. It is safe to call more than once.
func (s *Service) Stop() error {
	var err error
	s.once.Do(func() {
		err = s.svc.Stop()
		s.mu.Lock()
		s.stopping = true // no new work from here: the wait below ends
		s.mu.Unlock()
		s.stopBackground() // Every's work stops; commands in flight finish
		s.wg.Wait()
		s.cancel()
	})
	return err
}

// Every runs fn every interval until the service stops: background work
// such as sweeping, owned by the service.
func (s *Service) Every(interval time.Duration, fn func(ctx context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.background.Done():
				return
			case <-t.C:
				fn(s.background)
			}
		}
	}()
}

// Stats returns the micro service's statistics (requests, errors, latency).
func (s *Service) Stats() micro.Stats { return s.svc.Stats() }
