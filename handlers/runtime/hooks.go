package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"natter/edge/protocol"
	"natter/natsconf"
)

// Hooks lets a team's process see a command before it takes effect and
// reject it or replace its body, without touching natter: the handler of
// the command asks the hook on natsconf.Subjects.Hook(type) (im.hook.send,
// im.hook.dm) with a NATS request whose body is the command frame (as
// protocol.Command encodes it) and whose headers are the sender's identity
// (natsconf.HeaderConn, HeaderUser, HeaderEdge, HeaderRooms,
// HeaderBroadcast). The hook answers a HookReply:
//
//	{"action":"accept"}
//	{"action":"reject","message":"no links please"}   → error "rejected" with that message
//	{"action":"replace","body":{"text":"***"}}        → the message is stored with this body
//
// A hook serves its subject in a queue group (any number of copies). The
// default is to accept: with no hook deployed, a hook that does not answer
// within HookTimeout, or an answer that cannot be read, the command goes on
// unchanged. With none deployed nothing waits: NATS answers "no
// responders" at once, and that answer is remembered for HookRecheck, so
// for a second after it the handler does not even ask (a hook deployed
// meanwhile sees commands within that second).
type Hooks struct {
	nc      *nats.Conn
	subj    natsconf.Subjects
	log     *slog.Logger
	timeout time.Duration
	recheck time.Duration

	mu     sync.Mutex
	absent map[string]time.Time // command type -> no hook until then
}

// Defaults of Hooks.
const (
	// HookTimeout is how long a command waits for its hook's answer.
	HookTimeout = 200 * time.Millisecond
	// HookRecheck is how long "no hook deployed" is remembered.
	HookRecheck = time.Second
)

// Hook actions of a HookReply.
const (
	HookAccept  = "accept"
	HookReject  = "reject"
	HookReplace = "replace"
)

// HookReply is a hook's answer.
type HookReply struct {
	Action  string          `json:"action"`
	Message string          `json:"message,omitempty"` // reject: what the client is told
	Body    json.RawMessage `json:"body,omitempty"`    // replace: the new body
}

// Hooks returns the hooks of the service's subjects, with HookTimeout and
// HookRecheck.
func (s *Service) Hooks() *Hooks {
	return NewHooks(s.nc, s.cfg.Subjects, s.cfg.Logger, HookTimeout, HookRecheck)
}

// NewHooks returns hooks asked on nc under subj's prefix; zero durations
// mean the defaults, a nil log slog.Default().
func NewHooks(nc *nats.Conn, subj natsconf.Subjects, log *slog.Logger, timeout, recheck time.Duration) *Hooks {
	if timeout <= 0 {
		timeout = HookTimeout
	}
	if recheck <= 0 {
		recheck = HookRecheck
	}
	if log == nil {
		log = slog.Default()
	}
	return &Hooks{nc: nc, subj: subj, log: log, timeout: timeout, recheck: recheck, absent: map[string]time.Time{}}
}

// Apply asks the hook of each request's command type about it, all at
// once, and returns one error per request: nil to go on (req.Command.Body
// replaced when the hook said so), or a *protocol.Error with
// CodeRejected. nil entries of reqs are skipped.
func (h *Hooks) Apply(ctx context.Context, reqs []*Request) []error {
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		if req == nil || h.skip(req.Command.Type) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.ask(ctx, req)
		}()
	}
	wg.Wait()
	return errs
}

// skip reports whether no hook for t was deployed a moment ago.
func (h *Hooks) skip(t string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.absent[t]
	if ok && time.Now().Before(until) {
		return true
	}
	delete(h.absent, t)
	return false
}

func (h *Hooks) ask(ctx context.Context, req *Request) error {
	subject, err := h.subj.Hook(req.Command.Type)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	reply, err := h.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Header: req.Identity.Header(), Data: protocol.Encode(req.Command)})
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		h.mu.Lock()
		h.absent[req.Command.Type] = time.Now().Add(h.recheck)
		h.mu.Unlock()
		return nil
	case err != nil:
		h.log.Warn("hook did not answer: accepted", "type", req.Command.Type, "err", err)
		return nil
	}
	var r HookReply
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		h.log.Warn("hook answer unreadable: accepted", "type", req.Command.Type, "err", err)
		return nil
	}
	switch r.Action {
	case HookReject:
		msg := r.Message
		if msg == "" {
			msg = "refused by a hook"
		}
		return protocol.Errorf(protocol.CodeRejected, msg)
	case HookReplace:
		if len(r.Body) == 0 || !json.Valid(r.Body) {
			h.log.Warn("hook replaced the body with nothing valid: accepted", "type", req.Command.Type)
			return nil
		}
		req.Command.Body = r.Body
	}
	return nil
}

// Header returns the identity as the edge's headers carry it, for requests
// made on the sender's behalf (hooks).
func (id Identity) Header() nats.Header {
	h := nats.Header{
		natsconf.HeaderConn: {id.Conn},
		natsconf.HeaderUser: {id.User},
		natsconf.HeaderEdge: {id.Edge},
	}
	if id.Rooms != nil {
		h.Set(natsconf.HeaderRooms, strings.Join(id.Rooms, ","))
	}
	if id.Broadcast {
		h.Set(natsconf.HeaderBroadcast, "1")
	}
	return h
}
