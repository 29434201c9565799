package runtime

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"natter/edge/protocol"
	"natter/natsconf"
)

// Room validates a room id from a command: a bad one is CodeBadRoom.
func Room(room string) error {
	if !natsconf.ValidName(room) {
		return protocol.Errorf(protocol.CodeBadRoom, "room must match ^[A-Za-z0-9_:-]{1,128}$")
	}
	return nil
}

// User validates a user id from a command: a bad one is CodeBadUser.
func User(user string) error {
	if !natsconf.ValidName(user) {
		return protocol.Errorf(protocol.CodeBadUser, "user must match ^[A-Za-z0-9_:-]{1,128}$")
	}
	return nil
}

// MayJoin checks that the identity may join room (and so read its members
// and history): CodeForbidden otherwise.
func (id Identity) MayJoin(room string) error {
	if !protocol.RoomAllowed(id.Rooms, room) {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed in room "+room)
	}
	return nil
}

// Body checks that a command carries a body.
func Body(cmd protocol.Command) error {
	if len(cmd.Body) == 0 {
		return protocol.Errorf(protocol.CodeBadFrame, "body is required")
	}
	return nil
}

// MsgID is the JetStream dedup id of a command: the user, where it goes
// (the room of a send, the target of a dm) and the client's id, so a retry
// of the same command is stored once while the same id reused for another
// room or user is another message. Commands without an id are not
// deduplicated.
//
// Each part is base64url-encoded and the parts are joined with '.', which
// that alphabet lacks: two different commands never share an id, and the
// id holds no space or control character that a NATS header could trim
// or mangle (ids "k" and "k " stay apart).
func MsgID(req *Request) string {
	if req.Command.ID == "" {
		return ""
	}
	enc := base64.RawURLEncoding.EncodeToString
	return strings.Join([]string{
		enc([]byte(req.User)), enc([]byte(req.Command.Room)), enc([]byte(req.Command.To)), enc([]byte(req.Command.ID)),
	}, ".")
}

// Now is the server timestamp of a message, in unix milliseconds.
func Now() int64 { return time.Now().UnixMilli() }

// StoreError turns a failure of NATS or JetStream (no answer in time, no
// responders, a connection that is closed or reconnecting, an error the
// JetStream API reports, a canceled request) into CodeUnavailable: the
// client retries with the same id. A *protocol.Error stays as it is, and so
// does anything else (it becomes "internal": a bug, not an outage).
func StoreError(err error) error {
	if err == nil {
		return nil
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	var api *jetstream.APIError
	if errors.As(err, &api) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || fromNATS(err) {
		return protocol.Errorf(protocol.CodeUnavailable, "message store unavailable, retry with the same id")
	}
	return err
}

// fromNATS reports whether err is one of nats.go's or its jetstream
// package's errors (connection closed, reconnecting, timeout, no
// responders, no stream response...): they all say so.
func fromNATS(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "nats: ") || strings.Contains(s, ": nats: ")
}

// StoreBudget bounds the bytes each user stores (room messages and dms,
// as stored): a token bucket per user that refills perMinute bytes a
// minute and holds at most burst. A command over it is refused with
// CodeRateLimited and stores nothing. A nil *StoreBudget bounds nothing.
//
// It is kept in memory by each handler process, so the bound a user meets
// is per process: with n copies of the handlers sharing the commands, a
// user can store up to n times as much. It tracks at most maxBudgetUsers
// users: a user whose bucket is full again is forgotten first (which gives
// it nothing it did not have), and only when every tracked user stored
// within the last burst/perMinute minutes are busy ones forgotten too.
type StoreBudget struct {
	perSec    rate.Limit
	burst     int
	perMinute int64
	mu        sync.Mutex
	users     map[string]*rate.Limiter
}

// maxBudgetUsers bounds the users a StoreBudget tracks.
const maxBudgetUsers = 1 << 16

// NewStoreBudget returns a budget of perMinute bytes a minute in bursts of
// burst bytes per user, or nil (no bound) when either is not positive.
func NewStoreBudget(perMinute, burst int64) *StoreBudget {
	if perMinute <= 0 || burst <= 0 {
		return nil
	}
	return &StoreBudget{
		perSec:    rate.Limit(float64(perMinute) / 60),
		burst:     int(min(burst, math.MaxInt32)),
		perMinute: perMinute,
		users:     map[string]*rate.Limiter{},
	}
}

// Take charges n bytes to user, or returns a CodeRateLimited error (and
// charges nothing) when user's budget does not hold them. A message larger
// than the burst passes when the budget is full, and empties it.
func (b *StoreBudget) Take(user string, n int) error {
	if b == nil {
		return nil
	}
	now := time.Now()
	b.mu.Lock()
	l := b.users[user]
	if l == nil {
		if len(b.users) >= maxBudgetUsers {
			b.forget(now)
		}
		l = rate.NewLimiter(b.perSec, b.burst)
		b.users[user] = l
	}
	ok := l.AllowN(now, min(n, b.burst))
	b.mu.Unlock()
	if !ok {
		return protocol.Errorf(protocol.CodeRateLimited, fmt.Sprintf(
			"storing too fast: a user may store %s of messages a minute, in bursts of up to %s; retry later with the same id",
			byteSize(b.perMinute), byteSize(int64(b.burst))))
	}
	return nil
}

// forget drops the users whose bucket is full (idle: a new bucket is the
// same), then, if still too many are tracked, arbitrary ones, down to 7/8
// of the bound so that the next sweep is far off.
func (b *StoreBudget) forget(now time.Time) {
	for u, l := range b.users {
		if l.TokensAt(now) >= float64(b.burst) {
			delete(b.users, u)
		}
	}
	for u := range b.users {
		if len(b.users) < maxBudgetUsers*7/8 {
			break
		}
		delete(b.users, u)
	}
}

// byteSize writes n bytes for a message: "4 MiB", "64 KiB", "100 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// AwaitAck waits for an asynchronous JetStream publish to be acknowledged;
// a failure is returned as StoreError makes it.
func AwaitAck(ctx context.Context, fut jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		return nil, StoreError(err)
	case <-ctx.Done():
		return nil, StoreError(ctx.Err())
	}
}

// LastSeq returns the stream sequence of the latest message stream holds
// on subject (0 when it holds none), with StoreError's mapping of
// failures: a room's latest seq, for one.
func LastSeq(ctx context.Context, stream jetstream.Stream, subject string) (uint64, error) {
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, StoreError(err)
	}
	return msg.Sequence, nil
}
