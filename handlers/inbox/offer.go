package inbox

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"natter/natsconf"
)

// offer is one live delivery: a frame for the connections of a user (or of
// the one connection subject), and whether an edge took it.
type offer struct {
	user    string // the target user; or
	subject string // a connection's subject
	frame   []byte
	taken   bool
}

// replies offers frames live and collects the edges' answers on one
// subscription of the handler's: a batch of offers is published in order
// (so one target gets them in that order) and answered together.
type replies struct {
	nc     *nats.Conn
	subj   natsconf.Subjects
	sub    *nats.Subscription
	prefix string // <inbox>. ; a reply subject is prefix + token

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan bool
}

func newReplies(nc *nats.Conn, subj natsconf.Subjects) (*replies, error) {
	r := &replies{nc: nc, subj: subj, prefix: nc.NewInbox() + ".", waiting: map[string]chan bool{}}
	sub, err := nc.Subscribe(r.prefix+"*", r.answer)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	return r, nil
}

// answer records an edge's answer: an empty reply means taken; a "no
// responders" status (503) means nobody holds the target.
func (r *replies) answer(m *nats.Msg) {
	token := strings.TrimPrefix(m.Subject, r.prefix)
	r.mu.Lock()
	ch := r.waiting[token]
	delete(r.waiting, token)
	r.mu.Unlock()
	if ch != nil {
		ch <- m.Header.Get("Status") == ""
	}
}

// offer publishes every offer, in order, and waits up to liveTimeout for
// their answers, setting taken on each.
func (r *replies) offer(ctx context.Context, offers []offer) {
	if len(offers) == 0 {
		return
	}
	chans := make([]chan bool, len(offers))
	tokens := make([]string, len(offers))
	r.mu.Lock()
	for i := range offers {
		r.next++
		tokens[i] = strconv.FormatUint(r.next, 36)
		chans[i] = make(chan bool, 1)
		r.waiting[tokens[i]] = chans[i]
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		for _, t := range tokens {
			delete(r.waiting, t)
		}
		r.mu.Unlock()
	}()
	for i, o := range offers {
		subject := o.subject
		if subject == "" {
			subject, _ = r.subj.User(o.user)
		}
		if err := r.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: r.prefix + tokens[i], Data: o.frame}); err != nil {
			chans[i] <- false
		}
	}
	timer := time.NewTimer(liveTimeout)
	defer timer.Stop()
	for i, ch := range chans {
		select {
		case offers[i].taken = <-ch:
		case <-timer.C:
			return // the rest: not taken
		case <-ctx.Done():
			return
		}
	}
}
