// Package runtime is the small serverless runtime natter's handlers share.
// A handler is a function of one client command; the runtime owns the rest:
// a nats.go micro service whose endpoints subscribe in a queue group named
// after the handler (so any number of copies can run), decoding of the
// command and of the identity headers the edge set, a deadline per command,
// bounded concurrency, panic recovery, and error replies in the protocol's
// "error" frame.
//
// Commands of one connection reach a handler one at a time (the edge waits
// for each reply before sending the next), so handlers run commands of
// different connections concurrently without breaking per-connection order.
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
}

// Defaults of Config.
const (
	DefaultTimeout       = 4 * time.Second
	DefaultMaxConcurrent = 256
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

// Event is a lifecycle event published by an edge.
type Event struct {
	Identity
	Data []byte
}

// EventFunc handles one event. When the event was sent as a request, the
// runtime replies with an empty message on success or a service error.
type EventFunc func(ctx context.Context, ev *Event) error

// Service is one running handler: a micro service with its endpoints.
type Service struct {
	cfg    Config
	svc    micro.Service
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
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
	return &Service{cfg: cfg, svc: svc, ctx: ctx, cancel: cancel, sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Subjects returns the subject set the service serves.
func (s *Service) Subjects() natsconf.Subjects { return s.cfg.Subjects }

// Handle serves client commands of type cmdType.
func (s *Service) Handle(cmdType string, fn CommandFunc) error {
	subject, err := s.cfg.Subjects.Command(cmdType)
	if err != nil {
		return err
	}
	return s.svc.AddEndpoint(cmdType, micro.HandlerFunc(func(r micro.Request) {
		s.run(r, func(ctx context.Context) {
			s.serveCommand(ctx, r, fn)
		})
	}), micro.WithEndpointSubject(subject))
}

// On serves events published on subject.
func (s *Service) On(name, subject string, fn EventFunc) error {
	return s.svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
		s.run(r, func(ctx context.Context) {
			err := fn(ctx, &Event{Identity: identity(r.Headers()), Data: r.Data()})
			if err != nil {
				s.cfg.Logger.Warn("event failed", "handler", s.cfg.Name, "event", name, "err", err)
			}
			if r.Reply() == "" {
				return
			}
			if err != nil {
				_ = r.Error("500", err.Error(), nil)
				return
			}
			_ = r.Respond(nil)
		})
	}), micro.WithEndpointSubject(subject))
}

// run executes work in its own goroutine, bounded by MaxConcurrent, with the
// command deadline, and turns a panic into an "internal" reply.
func (s *Service) run(r micro.Request, work func(ctx context.Context)) {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Logger.Error("handler panic", "handler", s.cfg.Name, "subject", r.Subject(), "panic", p, "stack", string(debug.Stack()))
				if r.Reply() != "" {
					id := ""
					if c, err := protocol.DecodeCommand(r.Data()); err == nil {
						id = c.ID
					}
					_ = r.Error(string(protocol.CodeInternal), "handler failed", protocol.EncodeError(id, nil))
				}
			}
		}()
		work(ctx)
	}()
}

func (s *Service) serveCommand(ctx context.Context, r micro.Request, fn CommandFunc) {
	cmd, err := protocol.DecodeCommand(r.Data())
	if err != nil {
		s.replyError(r, cmd.ID, err)
		return
	}
	req := &Request{Identity: identity(r.Headers()), Command: cmd}
	if !natsconf.ValidName(req.User) || !natsconf.ValidName(req.Conn) {
		s.replyError(r, cmd.ID, protocol.Errorf(protocol.CodeInternal, "command without identity"))
		return
	}
	resp, err := fn(ctx, req)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			s.cfg.Logger.Error("command failed", "handler", s.cfg.Name, "type", cmd.Type, "err", err)
			if errors.Is(err, context.DeadlineExceeded) {
				err = protocol.Errorf(protocol.CodeUnavailable, "handler timed out")
			}
		}
		s.replyError(r, cmd.ID, err)
		return
	}
	var opts []micro.RespondOpt
	if resp.Op != nil {
		opts = append(opts, micro.WithHeaders(micro.Headers{
			natsconf.HeaderOp:   {resp.Op.Name},
			natsconf.HeaderRoom: {resp.Op.Room},
		}))
	}
	if err := r.Respond(protocol.Encode(resp.Frame), opts...); err != nil {
		s.cfg.Logger.Warn("reply failed", "handler", s.cfg.Name, "err", err)
	}
}

func (s *Service) replyError(r micro.Request, id string, err error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.Errorf(protocol.CodeInternal, "internal error")
	}
	if e := r.Error(string(pe.Code), pe.Message, protocol.EncodeError(id, pe)); e != nil {
		s.cfg.Logger.Warn("error reply failed", "handler", s.cfg.Name, "err", e)
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
		s.wg.Wait()
		s.cancel()
	})
	return err
}

// Stats returns the micro service's statistics (requests, errors, latency).
func (s *Service) Stats() micro.Stats { return s.svc.Stats() }
