package natsconf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// StoredMsg is one message read from a stream.
type StoredMsg struct {
	Seq    uint64
	Time   time.Time // when the stream stored it
	Header nats.Header
	Data   []byte
}

// Reader reads a stream's messages of one subject with JetStream direct gets
// (the stream needs AllowDirect): pages forward after a sequence in one
// request, and pages backward before a sequence.
type Reader struct {
	nc      *nats.Conn
	subject string // $JS.API.DIRECT.GET.<stream>
}

// NewReader returns a Reader of stream on nc.
func NewReader(nc *nats.Conn, stream string) *Reader {
	return &Reader{nc: nc, subject: "$JS.API.DIRECT.GET." + stream}
}

type directRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
}

// After returns up to n messages on subject whose sequence is greater than
// after, oldest first.
func (r *Reader) After(ctx context.Context, subject string, after uint64, n int) ([]StoredMsg, error) {
	if n <= 0 {
		return nil, nil
	}
	return r.batch(ctx, directRequest{Seq: after + 1, NextFor: subject, Batch: n}, n)
}

// Any reports whether subject has a message after sequence after, with one
// request and no subscription of its own: the cheap look before a batch
// read, on paths where there is usually nothing.
func (r *Reader) Any(ctx context.Context, subject string, after uint64) (bool, error) {
	body, err := json.Marshal(directRequest{Seq: after + 1, NextFor: subject})
	if err != nil {
		return false, err
	}
	m, err := r.nc.RequestWithContext(ctx, r.subject, body)
	if err != nil {
		return false, fmt.Errorf("natsconf: direct get: %w", err)
	}
	switch status := m.Header.Get("Status"); status {
	case "":
		return true, nil
	case "404":
		return false, nil
	default:
		return false, fmt.Errorf("natsconf: direct get: status %s %s", status, m.Header.Get("Description"))
	}
}

// Before returns up to n messages on subject whose sequence is less than
// before (0: the latest), oldest first.
func (r *Reader) Before(ctx context.Context, subject string, before uint64, n int) ([]StoredMsg, error) {
	var out []StoredMsg
	upTo := uint64(0)
	if before > 0 {
		if before == 1 {
			return nil, nil
		}
		upTo = before - 1
	}
	for len(out) < n {
		msgs, err := r.batch(ctx, directRequest{MultiLast: []string{subject}, UpToSeq: upTo, Batch: 1}, 1)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			break
		}
		out = append(out, msgs[0])
		if msgs[0].Seq <= 1 {
			break
		}
		upTo = msgs[0].Seq - 1
	}
	slices.Reverse(out)
	return out, nil
}

// batch sends one direct get and collects its messages until the end of
// batch, "no results", or max messages.
func (r *Reader) batch(ctx context.Context, req directRequest, max int) ([]StoredMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(r.subject, inbox, body); err != nil {
		return nil, err
	}
	var out []StoredMsg
	for len(out) < max {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsconf: direct get: %w", err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204", "404":
			return out, nil // end of batch, or nothing there
		case "503":
			return nil, errors.New("natsconf: direct get: no stream responded")
		default:
			return nil, fmt.Errorf("natsconf: direct get: status %s %s", status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("natsconf: direct get: bad sequence header: %w", err)
		}
		stored, _ := time.Parse(time.RFC3339Nano, m.Header.Get(nats.JSTimeStamp))
		out = append(out, StoredMsg{Seq: seq, Time: stored, Header: m.Header, Data: m.Data})
	}
	return out, nil
}
