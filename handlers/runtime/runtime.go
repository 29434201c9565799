// The package documentation is in doc.go.

package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"natter/edge/protocol"
	"natter/natsconf"
	"natter/natsconf/ops/metrics"
)

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	// Name of the handler (rooms). Required. Its queue group and its
	// name in service discovery are natter-<Name>.
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
	// Budget bounds the bytes each user stores (room messages and dms);
	// one value serves every handler of a process (registry.Start makes it
	// from Stores). Nil bounds nothing.
	Budget *StoreBudget
	// Metrics receives requests, errors and durations per handler and
	// type (nil: none). One value serves every handler of a process.
	Metrics *metrics.Handlers
}

// Defaults of Config.
const (
	DefaultTimeout       = 4 * time.Second
	DefaultMaxConcurrent = 256
	DefaultSweepInterval = 30 * time.Second
)

// nameRE and versionRE are what micro accepts as a service name and
// version (semver).
var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9\-_]+$`)
	versionRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("runtime: handler needs a name")
	}
	if c.Version == "" {
		c.Version = "1.0.0"
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("runtime: handler name %q: letters, digits, - and _ only", c.Name)
	}
	if !versionRE.MatchString(c.Version) {
		return fmt.Errorf("runtime: handler version %q is not semver", c.Version)
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

// Service is one running handler: a NATS service with its endpoints.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	id      string    // the instance's id in service discovery
	started time.Time // UTC, for $SRV.STATS
	ctx     context.Context
	cancel  context.CancelFunc
	sem     chan struct{}
	wg      sync.WaitGroup // commands in flight
	once    sync.Once

	mu        sync.Mutex
	stopping  bool
	removed   bool // endpoints and discovery unsubscribed
	endpoints []*endpoint
	control   []*nats.Subscription // $SRV discovery

	background     context.Context // of Every's work, ended first by Stop
	stopBackground context.CancelFunc
}

// New starts an empty handler service on nc: it answers service discovery
// at once. Add endpoints with Handle and On; stop it with Stop.
func New(nc *nats.Conn, cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, nc: nc, id: nuid.Next(), started: time.Now().UTC(), ctx: ctx, cancel: cancel, sem: make(chan struct{}, cfg.MaxConcurrent)}
	s.background, s.stopBackground = context.WithCancel(ctx)
	if err := s.serveDiscovery(); err != nil {
		_ = s.unsubscribe()
		cancel()
		return nil, fmt.Errorf("runtime: %s: %w", cfg.Name, err)
	}
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
	return s.addEndpoint(cmdType, subject, func(ctx context.Context, in *call) {
		s.serveCommand(ctx, in, fn)
	})
}

// On serves events published on subject.
func (s *Service) On(name, subject string, fn EventFunc) error {
	return s.addEndpoint(name, subject, func(ctx context.Context, in *call) {
		err := fn(ctx, &Event{Identity: identity(in.msg.Header), First: in.msg.Header.Get(natsconf.HeaderFirst) != "", Data: in.msg.Data})
		if err != nil {
			s.cfg.Logger.Warn("event failed", "handler", s.cfg.Name, "event", name, "err", err)
			in.count(protocol.CodeInternal)
			in.failed("500", err.Error())
			s.reply(in, nil, errorHeader("500", err.Error()))
			return
		}
		in.count("")
		s.reply(in, nil, nil)
	})
}

// run executes work in its own goroutine, bounded by MaxConcurrent, with the
// command deadline, and turns a panic into an "internal" reply. After Stop
// began, requests are answered "unavailable" at once. It records the
// request in the endpoint's statistics once answered.
func (s *Service) run(in *call, work func(ctx context.Context, in *call)) {
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
		in.count(protocol.CodeUnavailable)
		s.replyError(in, commandID(in.msg.Data), protocol.Errorf(protocol.CodeUnavailable, "handler stopping"))
		in.finish()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		defer in.finish()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Logger.Error("handler panic", "handler", s.cfg.Name, "subject", in.msg.Subject, "panic", p, "stack", string(debug.Stack()))
				if !in.counted {
					in.count(protocol.CodeInternal)
				}
				s.replyError(in, commandID(in.msg.Data), protocol.Errorf(protocol.CodeInternal, "handler failed"))
			}
		}()
		work(ctx, in)
	}()
}

func (s *Service) serveCommand(ctx context.Context, in *call, fn BatchFunc) {
	batch := in.msg.Header.Get(natsconf.HeaderBatch) != ""
	items := [][]byte{in.msg.Data}
	if batch {
		// Several commands of one connection, applied in the order sent,
		// each answered in the same order.
		var err error
		items, err = natsconf.SplitBatch(in.msg.Data)
		if err != nil || len(items) > natsconf.MaxBatch {
			in.count(protocol.CodeInternal)
			s.replyError(in, "", protocol.Errorf(protocol.CodeInternal, "malformed batch"))
			return
		}
	}
	id := identity(in.msg.Header)
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
		var code protocol.Code
		if err := results[i].err; err != nil {
			results[i].err = s.clientError(results[i].cmdType, err)
			pe := asProtocolError(results[i].err)
			code = pe.Code
			in.failed(string(pe.Code), pe.Message)
		}
		in.count(code)
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
// is; a deadline or a NATS or JetStream failure as "unavailable"; anything
// else is logged and becomes "internal".
func (s *Service) clientError(cmdType string, err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s.cfg.Logger.Warn("command timed out", "handler", s.cfg.Name, "type", cmdType, "err", err)
		return protocol.Errorf(protocol.CodeUnavailable, "handler timed out")
	}
	// NATS or JetStream failing (a node lost, a leader being elected) is
	// "unavailable": the client retries with the same id.
	if u := StoreError(err); u != err {
		s.cfg.Logger.Warn("command failed: messaging unavailable", "handler", s.cfg.Name, "type", cmdType, "err", err)
		return u
	}
	s.cfg.Logger.Error("command failed", "handler", s.cfg.Name, "type", cmdType, "err", err)
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
func (s *Service) replyError(in *call, id string, err error) {
	pe := asProtocolError(err)
	in.failed(string(pe.Code), pe.Message)
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
func (s *Service) reply(in *call, data []byte, hdr nats.Header) {
	if in.msg.Reply == "" {
		return
	}
	in.finish()
	if err := s.nc.PublishMsg(&nats.Msg{Subject: in.msg.Reply, Header: hdr, Data: data}); err != nil {
		in.ep.recordError("500:reply not sent: " + err.Error())
		s.cfg.Logger.Warn("reply failed", "handler", s.cfg.Name, "err", err)
	}
}

func identity(h nats.Header) Identity {
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
		err = s.unsubscribe()
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
