package natsconf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

// Page is one page of a subject's messages, oldest first.
type Page struct {
	Msgs []StoredMsg
	// More reports that, when the page was read, the subject held messages
	// beyond it in the direction read: newer ones for AfterPage, older
	// ones for BeforePage.
	More bool
}

// Reader reads a stream's messages of one subject with JetStream direct gets
// (the stream needs AllowDirect): pages forward after a sequence in one
// request, and pages backward before a sequence in a few (see BeforePage).
type Reader struct {
	nc      *nats.Conn
	subject string // $JS.API.DIRECT.GET.<stream>
}

// NewReader returns a Reader of stream on nc.
func NewReader(nc *nats.Conn, stream string) *Reader {
	return &Reader{nc: nc, subject: "$JS.API.DIRECT.GET." + stream}
}

type directRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// After returns up to n messages on subject whose sequence is greater than
// after, oldest first: n whenever there are n (no byte bound of its own).
func (r *Reader) After(ctx context.Context, subject string, after uint64, n int) ([]StoredMsg, error) {
	p, err := r.AfterPage(ctx, subject, after, n, 0)
	return p.Msgs, err
}

// AfterPage returns the oldest messages on subject whose sequence is greater
// than after, oldest first, in one request: at most n of them, and at most
// maxBytes of message data (0: no bound), but always at least one when there
// is one. More tells whether newer messages exist beyond the page.
func (r *Reader) AfterPage(ctx context.Context, subject string, after uint64, n, maxBytes int) (Page, error) {
	if n <= 0 || after == math.MaxUint64 {
		return Page{}, nil
	}
	req := directRequest{Seq: after + 1, NextFor: subject, Batch: n}
	if maxBytes > 0 {
		// The server counts subjects and headers too, and stops after
		// the message that reaches its bound: ask for what data of
		// maxBytes needs, and trim.
		req.MaxBytes = maxBytes + n*(len(subject)+msgOverhead)
	}
	res, err := r.batch(ctx, req)
	if err != nil {
		return Page{}, err
	}
	keep := len(res.msgs)
	if maxBytes > 0 {
		keep = fitOldest(res.msgs, maxBytes)
	}
	return Page{Msgs: res.msgs[:keep], More: keep < len(res.msgs) || res.pending > 0}, nil
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
// before (0: the latest), oldest first (no bound on their bytes).
func (r *Reader) Before(ctx context.Context, subject string, before uint64, n int) ([]StoredMsg, error) {
	p, err := r.BeforePage(ctx, subject, before, n, 0)
	return p.Msgs, err
}

// BeforePage returns the newest messages on subject whose sequence is less
// than before (0: the newest of all), oldest first: at most n of them, and
// at most maxBytes of message data (0: no bound), but always at least one
// when there is one. More tells whether older messages exist before the
// page. The page may hold fewer messages than both bounds allow (its size
// in bytes is estimated before it is read), never a message out of order
// or with a gap up to before.
//
// JetStream reads forward only, and the stream interleaves many subjects,
// so where the page starts is not known in advance. Direct gets in batch
// mode report how many messages of the subject follow the one returned
// (Nats-Num-Pending): BeforePage looks at both ends, then seeks a start
// with single-message probes (interpolation, alternating with bisection,
// so at most about twice log2 of the stream's length, usually one or two),
// and reads the page forward in one batch: some five requests a page,
// whatever n.
func (r *Reader) BeforePage(ctx context.Context, subject string, before uint64, n, maxBytes int) (Page, error) {
	if n <= 0 || before == 1 {
		return Page{}, nil
	}
	var sizes sizeSample
	// The upper end: hi, the first sequence past the page, and k, how many
	// messages are at or after it.
	var hi, k uint64
	if before > 0 {
		m, count, err := r.probe(ctx, subject, before)
		if err != nil {
			return Page{}, err
		}
		if m != nil {
			hi, k = before, count
			sizes.add(m)
		}
	}
	if hi == 0 {
		// Every message is before before: the newest bounds the seek.
		last, err := r.last(ctx, subject)
		if err != nil || last == nil {
			return Page{}, err
		}
		hi = last.Seq + 1
		if before > 0 {
			hi = min(hi, before)
		}
		sizes.add(last)
	}
	// The lower end: the oldest message, and how many lie before hi.
	first, total, err := r.probe(ctx, subject, 1)
	if err != nil || first == nil || first.Seq >= hi {
		return Page{}, err
	}
	sizes.add(first)
	avail := uint64(1)
	if total > k {
		avail = total - k
	}
	want := min(uint64(n), avail)
	if maxBytes > 0 {
		want = min(want, sizes.fit(maxBytes))
	}
	slack := max(want/2, 8)
	start, count := first.Seq, avail
	if avail > want+slack {
		start, count, err = r.seek(ctx, subject, first.Seq, avail, hi, k, want, slack)
		if err != nil {
			return Page{}, err
		}
	}
	// Read forward from start up to hi, keeping the newest n (want, and
	// those of the slack that come along). The page is complete once a
	// read reaches hi (count+1 asks for the message at hi, if there is
	// one, along) or the end: counts only guide, so a stream that changed
	// meanwhile, or a replica behind another, costs reads, not a gap.
	var tail []StoredMsg
	for {
		res, err := r.batch(ctx, directRequest{Seq: start, NextFor: subject, Batch: int(min(count+1, maxFetch))})
		if err != nil {
			return Page{}, err
		}
		done := len(res.msgs) == 0 || res.pending == 0
		for _, m := range res.msgs {
			if m.Seq >= hi {
				done = true
				break
			}
			tail = append(tail, m)
		}
		if over := len(tail) - n; over > 0 {
			tail = append(tail[:0], tail[over:]...)
		}
		if done {
			break
		}
		start, count = res.msgs[len(res.msgs)-1].Seq+1, 0
		if res.pending > k {
			count = res.pending - k
		}
	}
	if maxBytes > 0 {
		tail = tail[len(tail)-fitNewest(tail, maxBytes):]
	}
	return Page{Msgs: tail, More: len(tail) > 0 && tail[0].Seq > first.Seq}, nil
}

// msgOverhead is about what the server adds to a message's data when it
// counts a batch's bytes: headers (a message id).
const msgOverhead = 128

// maxFetch bounds the batch of one forward read of BeforePage.
const maxFetch = 1024

// maxProbes bounds the probes of one seek; bisection alone ends a seek in
// 64 (sequences are 64 bits).
const maxProbes = 160

// seek returns the sequence s of a message on subject before hi such that
// c(s), the number of messages on subject in [s, hi), is between want and
// want+slack, with c(s). It starts from lo, a message with c(lo) = loCount
// > want+slack; k is the number of messages at or after hi. If the counts
// do not allow it (the stream changed meanwhile), it returns the best lower
// start found, which reads more but is still right.
func (r *Reader) seek(ctx context.Context, subject string, lo, loCount, hi, k, want, slack uint64) (uint64, uint64, error) {
	hiSeq, hiCount := hi, uint64(0)
	target := want + slack/2
	for i := 0; i < maxProbes && hiSeq-lo > 1; i++ {
		guess := lo + (hiSeq-lo)/2
		if i%2 == 0 && loCount > hiCount && loCount > target {
			// c falls from loCount at lo to hiCount at hiSeq: assume
			// the subject's messages are spread evenly between.
			frac := float64(loCount-target) / float64(loCount-hiCount)
			guess = lo + uint64(frac*float64(hiSeq-lo))
		}
		guess = min(max(guess, lo+1), hiSeq-1)
		m, count, err := r.probe(ctx, subject, guess)
		if err != nil {
			return 0, 0, err
		}
		var c uint64 // c(guess) = c(m.Seq): no message of subject in between
		if m != nil && m.Seq < hi && count > k {
			c = count - k
		}
		switch {
		case c >= want && c <= want+slack:
			return m.Seq, c, nil
		case c < want:
			hiSeq, hiCount = guess, c
		default:
			lo, loCount = m.Seq, c
		}
	}
	return lo, loCount, nil
}

// probe returns the first message on subject at or after seq and how many
// messages on subject are at or after it, in one request (nil, 0 when there
// is none).
func (r *Reader) probe(ctx context.Context, subject string, seq uint64) (*StoredMsg, uint64, error) {
	res, err := r.batch(ctx, directRequest{Seq: seq, NextFor: subject, Batch: 1})
	if err != nil || len(res.msgs) == 0 {
		return nil, 0, err
	}
	return &res.msgs[0], res.pending + 1, nil
}

// last returns the newest message on subject (nil when there is none).
func (r *Reader) last(ctx context.Context, subject string) (*StoredMsg, error) {
	body, err := json.Marshal(directRequest{LastFor: subject})
	if err != nil {
		return nil, err
	}
	m, err := r.nc.RequestWithContext(ctx, r.subject, body)
	if err != nil {
		return nil, fmt.Errorf("natsconf: direct get: %w", err)
	}
	switch status := m.Header.Get("Status"); status {
	case "":
		sm, err := storedMsg(m)
		return &sm, err
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("natsconf: direct get: status %s %s", status, m.Header.Get("Description"))
	}
}

// batchResult is what one batch direct get returned.
type batchResult struct {
	msgs []StoredMsg
	// pending is how many messages of the subject follow the last one
	// returned (the end of batch's Nats-Num-Pending); 0 with no messages.
	pending uint64
}

// batch sends one batch direct get and collects its messages until the end
// of batch or "no results".
func (r *Reader) batch(ctx context.Context, req directRequest) (batchResult, error) {
	var res batchResult
	body, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	// The answer is at most the batch and its end: a channel of that size
	// holds it all (a synchronous subscription would allocate 64K slots).
	replies := make(chan *nats.Msg, max(req.Batch, 1)+1)
	inbox := r.nc.NewRespInbox()
	sub, err := r.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return res, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(r.subject, inbox, body); err != nil {
		return res, err
	}
	for {
		var m *nats.Msg
		select {
		case m = <-replies:
		case <-ctx.Done():
			return batchResult{}, fmt.Errorf("natsconf: direct get: %w", ctx.Err())
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			if p := m.Header.Get("Nats-Num-Pending"); p != "" {
				res.pending, err = strconv.ParseUint(p, 10, 64)
				if err != nil {
					return batchResult{}, fmt.Errorf("natsconf: direct get: bad pending count: %w", err)
				}
			}
			return res, nil
		case "404":
			return res, nil // nothing there
		case "503":
			return batchResult{}, fmt.Errorf("natsconf: direct get: no stream responded: %w", nats.ErrNoResponders)
		default:
			return batchResult{}, fmt.Errorf("natsconf: direct get: status %s %s", status, m.Header.Get("Description"))
		}
		sm, err := storedMsg(m)
		if err != nil {
			return batchResult{}, err
		}
		res.msgs = append(res.msgs, sm)
		if len(res.msgs) > req.Batch && req.Batch > 0 {
			return batchResult{}, errors.New("natsconf: direct get: more messages than asked for")
		}
	}
}

func storedMsg(m *nats.Msg) (StoredMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
	if err != nil {
		return StoredMsg{}, fmt.Errorf("natsconf: direct get: bad sequence header: %w", err)
	}
	stored, _ := time.Parse(time.RFC3339Nano, m.Header.Get(nats.JSTimeStamp))
	return StoredMsg{Seq: seq, Time: stored, Header: m.Header, Data: m.Data}, nil
}

// fitOldest returns how many of msgs, from the oldest, fit in maxBytes of
// data; at least one when there is one.
func fitOldest(msgs []StoredMsg, maxBytes int) int {
	size := 0
	for i, m := range msgs {
		size += len(m.Data)
		if size > maxBytes && i > 0 {
			return i
		}
	}
	return len(msgs)
}

// fitNewest returns how many of msgs, from the newest, fit in maxBytes of
// data; at least one when there is one.
func fitNewest(msgs []StoredMsg, maxBytes int) int {
	size := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		size += len(msgs[i].Data)
		if size > maxBytes && i < len(msgs)-1 {
			return len(msgs) - 1 - i
		}
	}
	return len(msgs)
}

// sizeSample estimates the size of a subject's messages from the ones seen.
type sizeSample struct{ n, bytes int }

func (s *sizeSample) add(m *StoredMsg) { s.n, s.bytes = s.n+1, s.bytes+len(m.Data) }

// fit is about how many messages fill maxBytes (one more, so that a page
// is rather trimmed than short).
func (s *sizeSample) fit(maxBytes int) uint64 {
	avg := 1
	if s.n > 0 {
		avg = max(s.bytes/s.n, 1)
	}
	return uint64(maxBytes/avg) + 1
}
