// Package receipts is the read-receipts handler: a user's read position per
// room, and unread counts.
//
//   - {"type":"read","room":R,"seq":S,"id":I} moves the user's read position
//     in R to S (at most the room's latest seq) and answers
//     {"type":"ack","id":I,"room":R,"seq":P}, P the position now. The
//     position only moves forward: a compare-and-set on the key
//     <room>.<user> of the KV bucket natsconf.Subjects.ReadStore (IM_READ),
//     which Start creates. When it moved, the user's other connections, on
//     every edge, get {"type":"read","room":R,"seq":P,"user":U} (published
//     on the user's subject, with natsconf.HeaderNoEcho naming the sending
//     connection).
//   - {"type":"unread","id":I} answers
//     {"type":"unread","id":I,"rooms":{R:n,...}}: for every room the user
//     has a connection in (the members bucket), n stored messages of R
//     follow the user's read position. It reads no message bodies beyond
//     one per room: one KV get and one single-message direct get (whose
//     Nats-Num-Pending gives the count) per room, for at most MaxRooms rooms.
package receipts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
	"natter/handlers/connset"
	"natter/handlers/runtime"
	"natter/natsconf"
)

// Name is the handler's name and queue group.
const Name = "receipts"

// MaxRooms bounds the rooms one "unread" counts.
const MaxRooms = 1000

// maxRetries bounds compare-and-set retries under contention.
const maxRetries = 32

type handler struct {
	nc      *nats.Conn
	subj    natsconf.Subjects
	stream  jetstream.Stream
	reads   jetstream.KeyValue
	members *connset.Store
	reader  *natsconf.Reader
}

// Start runs the receipts handler on nc: it creates (or updates) the read
// positions bucket; the rooms stream and members bucket must exist
// (natsconf.EnsureStores).
func Start(ctx context.Context, nc *nats.Conn, cfg runtime.Config) (*runtime.Service, error) {
	cfg.Name = Name
	cfg.Description = "natter receipts: read positions and unread counts"
	svc, err := runtime.New(nc, cfg)
	if err != nil {
		return nil, err
	}
	h, err := newHandler(ctx, nc, svc.Subjects(), cfg.Stores.Replicas)
	if err == nil {
		err = svc.Handle(protocol.TypeRead, h.read)
	}
	if err == nil {
		err = svc.Handle(protocol.TypeUnread, h.unread)
	}
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

func newHandler(ctx context.Context, nc *nats.Conn, subj natsconf.Subjects, replicas int) (*handler, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	names := subj.StoreNames()
	var (
		stream  jetstream.Stream
		members jetstream.KeyValue
		reads   jetstream.KeyValue
	)
	// While a cluster settles, a lookup may go unanswered and a new
	// bucket find no peers yet: tried again (natsconf.RetryUnavailable).
	err = natsconf.RetryUnavailable(ctx, nc, func(ctx context.Context) (err error) {
		stream, err = js.Stream(ctx, names.Rooms)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("receipts: stream %s: %w", names.Rooms, err)
	}
	err = natsconf.RetryUnavailable(ctx, nc, func(ctx context.Context) (err error) {
		members, err = js.KeyValue(ctx, names.Members)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("receipts: bucket %s: %w", names.Members, err)
	}
	err = natsconf.RetryUnavailable(ctx, nc, func(ctx context.Context) (err error) {
		reads, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      subj.ReadStore(),
			Description: "natter: read position of each user in each room",
			History:     1,
			Replicas:    max(replicas, 1),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("receipts: bucket %s: %w", subj.ReadStore(), err)
	}
	return &handler{nc: nc, subj: subj, stream: stream, reads: reads, members: connset.New(members), reader: natsconf.NewReader(nc, names.Rooms)}, nil
}

func key(room, user string) string { return natsconf.KeyToken(room) + "." + natsconf.KeyToken(user) }

func (h *handler) read(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	cmd := req.Command
	if err := runtime.Room(cmd.Room); err != nil {
		return runtime.Response{}, err
	}
	if err := req.MayJoin(cmd.Room); err != nil {
		return runtime.Response{}, err
	}
	if cmd.Seq == nil {
		return runtime.Response{}, protocol.Errorf(protocol.CodeBadFrame, "read needs a seq")
	}
	// A position past the room's latest message would hide the next ones.
	latest, err := h.latest(ctx, cmd.Room)
	if err != nil {
		return runtime.Response{}, err
	}
	pos, moved, err := h.advance(ctx, key(cmd.Room, req.User), min(*cmd.Seq, latest))
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	if moved {
		subject, _ := h.subj.User(req.User)
		_ = h.nc.PublishMsg(&nats.Msg{
			Subject: subject,
			Header:  nats.Header{natsconf.HeaderConn: {req.Conn}, natsconf.HeaderNoEcho: {"1"}},
			Data:    protocol.Encode(protocol.Read{Type: protocol.FrameRead, Room: cmd.Room, Seq: pos, User: req.User}),
		})
	}
	return runtime.Response{Frame: protocol.Reply{Type: protocol.FrameAck, ID: cmd.ID, Room: cmd.Room, Seq: protocol.Uint64(pos)}}, nil
}

// advance moves the position at key to seq unless it is there or further
// already; it returns the position after, and whether it moved.
func (h *handler) advance(ctx context.Context, k string, seq uint64) (uint64, bool, error) {
	for range maxRetries {
		cur, rev, err := h.position(ctx, k)
		if err != nil {
			return 0, false, err
		}
		if seq <= cur {
			return cur, false, nil
		}
		val := []byte(strconv.FormatUint(seq, 10))
		if rev == 0 {
			_, err = h.reads.Create(ctx, k, val)
		} else {
			_, err = h.reads.Update(ctx, k, val, rev)
		}
		if err == nil {
			return seq, true, nil
		}
		if !isConflict(err) {
			return 0, false, err
		}
	}
	return 0, false, errors.New("receipts: too much contention on " + k)
}

// position returns the stored position at k and its revision (0, 0: none).
func (h *handler) position(ctx context.Context, k string) (uint64, uint64, error) {
	e, err := h.reads.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, e.Revision(), nil // unreadable: overwritten by the next read
	}
	return v, e.Revision(), nil
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// latest returns the seq of room's latest stored message (0: none).
func (h *handler) latest(ctx context.Context, room string) (uint64, error) {
	subject, _ := h.subj.RoomStore(room)
	return runtime.LastSeq(ctx, h.stream, subject)
}

func (h *handler) unread(ctx context.Context, req *runtime.Request) (runtime.Response, error) {
	keys, err := h.members.Keys(ctx, "*."+natsconf.KeyToken(req.User))
	if err != nil {
		return runtime.Response{}, runtime.StoreError(err)
	}
	rooms := map[string]uint64{}
	for _, k := range keys {
		if len(rooms) >= MaxRooms {
			break
		}
		roomTok, _, _ := strings.Cut(k, ".")
		room := natsconf.NameFromKeyToken(roomTok)
		if !natsconf.ValidName(room) {
			continue
		}
		pos, _, err := h.position(ctx, key(room, req.User))
		if err != nil {
			return runtime.Response{}, runtime.StoreError(err)
		}
		subject, _ := h.subj.RoomStore(room)
		n, err := h.reader.CountAfter(ctx, subject, pos)
		if err != nil {
			return runtime.Response{}, runtime.StoreError(err)
		}
		rooms[room] = n
	}
	return runtime.Response{Frame: protocol.Unread{Type: protocol.FrameUnread, ID: req.Command.ID, Rooms: rooms}}, nil
}
