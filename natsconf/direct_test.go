package natsconf_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// directStream is a stream of interleaved subjects and, per subject, what
// it holds: the model the Reader's pages are checked against.
type directStream struct {
	srv      *server.Server
	nc       *nats.Conn
	reader   *natsconf.Reader
	last     uint64            // the stream's last sequence
	subjects map[string][]sMsg // oldest first
	counter  *nats.Conn
	requests *nats.Subscription // of the direct gets made on the stream
}

type sMsg struct {
	seq  uint64
	data string
}

// newDirectStream fills a stream "D" (subjects d.*, AllowDirect) with n
// messages; subjectOf names the subject of message i and sizeOf its size.
func newDirectStream(tb testing.TB, n int, subjectOf func(i int) string, sizeOf func(i int) int) *directStream {
	tb.Helper()
	srv := embeddedtest.StartServer(tb, embedded.Config{DontListen: true})
	nc := embeddedtest.ConnectInProcess(tb, srv)
	ctx := embeddedtest.Context(tb)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.*"}, AllowDirect: true}); err != nil {
		tb.Fatal(err)
	}
	s := &directStream{srv: srv, nc: nc, reader: natsconf.NewReader(nc, "D"), subjects: map[string][]sMsg{}}
	var futures []jetstream.PubAckFuture
	var data []string
	var subjects []string
	for i := range n {
		subject := subjectOf(i)
		body := fmt.Sprintf("%s#%d:", subject, i)
		body += strings.Repeat("x", max(sizeOf(i)-len(body), 0))
		f, err := js.PublishAsync(subject, []byte(body))
		if err != nil {
			tb.Fatal(err)
		}
		futures = append(futures, f)
		data = append(data, body)
		subjects = append(subjects, subject)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		tb.Fatal("publishing timed out")
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			s.subjects[subjects[i]] = append(s.subjects[subjects[i]], sMsg{seq: ack.Sequence, data: data[i]})
			s.last = max(s.last, ack.Sequence)
		case err := <-f.Err():
			tb.Fatal(err)
		}
	}
	for subj := range s.subjects {
		msgs := s.subjects[subj]
		for i := 1; i < len(msgs); i++ {
			if msgs[i].seq <= msgs[i-1].seq {
				tb.Fatalf("acks out of order on %s", subj)
			}
		}
	}
	return s
}

// countRequests starts counting the direct gets made on the stream: a
// second connection's synchronous subscription queues them up, unread.
func (s *directStream) countRequests(tb testing.TB) {
	tb.Helper()
	counter := embeddedtest.ConnectInProcess(tb, s.srv)
	sub, err := counter.SubscribeSync("$JS.API.DIRECT.GET.D")
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := counter.Flush(); err != nil {
		tb.Fatal(err)
	}
	s.counter, s.requests = counter, sub
}

// counted runs fn and returns how many direct gets it made (countRequests
// first).
func (s *directStream) counted(tb testing.TB, fn func()) int {
	tb.Helper()
	count := func() int {
		// Once both connections have flushed, every request fn made
		// has reached the counter's subscription.
		if err := s.nc.Flush(); err != nil {
			tb.Fatal(err)
		}
		if err := s.counter.Flush(); err != nil {
			tb.Fatal(err)
		}
		n, _, err := s.requests.Pending()
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	before := count()
	fn()
	return count() - before
}

// checkBefore checks a BeforePage answer against the model: a run of the
// newest messages before before, oldest first, within the bounds, at least
// one when there is one, with More telling whether older ones exist.
func checkBefore(t *testing.T, s *directStream, subject string, before uint64, n, maxBytes int, page natsconf.Page) {
	t.Helper()
	var want []sMsg
	for _, m := range s.subjects[subject] {
		if before == 0 || m.seq < before {
			want = append(want, m)
		}
	}
	desc := fmt.Sprintf("%s before %d n %d maxBytes %d", subject, before, n, maxBytes)
	if len(want) == 0 {
		if len(page.Msgs) != 0 || page.More {
			t.Fatalf("%s: nothing there, got %d messages, more %v", desc, len(page.Msgs), page.More)
		}
		return
	}
	if len(page.Msgs) == 0 {
		t.Fatalf("%s: empty page, %d messages there", desc, len(want))
	}
	if len(page.Msgs) > n {
		t.Fatalf("%s: %d messages, more than n", desc, len(page.Msgs))
	}
	// The page is the tail of want.
	off := len(want) - len(page.Msgs)
	size := 0
	for i, m := range page.Msgs {
		w := want[off+i]
		if m.Seq != w.seq || string(m.Data) != w.data {
			t.Fatalf("%s: message %d is seq %d %q, want seq %d %q", desc, i, m.Seq, trunc(m.Data), w.seq, trunc([]byte(w.data)))
		}
		size += len(m.Data)
	}
	if maxBytes > 0 && len(page.Msgs) > 1 && size > maxBytes {
		t.Fatalf("%s: %d bytes in %d messages, over the bound", desc, size, len(page.Msgs))
	}
	if page.More != (off > 0) {
		t.Fatalf("%s: more %v with %d older messages", desc, page.More, off)
	}
	if maxBytes == 0 && len(page.Msgs) != min(n, len(want)) {
		t.Fatalf("%s: %d messages, want %d", desc, len(page.Msgs), min(n, len(want)))
	}
}

// checkAfter checks an AfterPage answer likewise.
func checkAfter(t *testing.T, s *directStream, subject string, after uint64, n, maxBytes int, page natsconf.Page) {
	t.Helper()
	var want []sMsg
	for _, m := range s.subjects[subject] {
		if m.seq > after {
			want = append(want, m)
		}
	}
	desc := fmt.Sprintf("%s after %d n %d maxBytes %d", subject, after, n, maxBytes)
	if len(want) > 0 && len(page.Msgs) == 0 || len(page.Msgs) > n || len(page.Msgs) > len(want) {
		t.Fatalf("%s: %d messages of %d", desc, len(page.Msgs), len(want))
	}
	size := 0
	for i, m := range page.Msgs {
		if m.Seq != want[i].seq || string(m.Data) != want[i].data {
			t.Fatalf("%s: message %d is seq %d, want %d", desc, i, m.Seq, want[i].seq)
		}
		size += len(m.Data)
	}
	if maxBytes > 0 && len(page.Msgs) > 1 && size > maxBytes {
		t.Fatalf("%s: %d bytes in %d messages, over the bound", desc, size, len(page.Msgs))
	}
	if maxBytes > 0 && len(page.Msgs) < min(n, len(want)) && size+len(want[len(page.Msgs)].data) <= maxBytes {
		t.Fatalf("%s: %d messages, %d bytes: cut short below the bound", desc, len(page.Msgs), size)
	}
	if maxBytes == 0 && len(page.Msgs) != min(n, len(want)) {
		t.Fatalf("%s: %d messages, want %d", desc, len(page.Msgs), min(n, len(want)))
	}
	if page.More != (len(page.Msgs) < len(want)) {
		t.Fatalf("%s: more %v, %d of %d messages", desc, page.More, len(page.Msgs), len(want))
	}
}

func trunc(b []byte) string {
	if len(b) > 24 {
		return string(b[:24]) + "…"
	}
	return string(b)
}

// mixedStream: "even" every third message with random sizes, "burst" in
// clumps of 100 every 500, "rare" every 997th, "one" once, "noise" the
// rest.
func mixedStream(tb testing.TB) *directStream {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, 3000)
	for i := range sizes {
		sizes[i] = 20 + rng.IntN(3000)
	}
	return newDirectStream(tb, len(sizes), func(i int) string {
		switch {
		case i == 1500:
			return "d.one"
		case i%997 == 0:
			return "d.rare"
		case (i/100)%5 == 0:
			return "d.burst"
		case i%3 == 0:
			return "d.even"
		default:
			return "d.noise"
		}
	}, func(i int) int { return sizes[i] })
}

func TestReaderPages(t *testing.T) {
	s := mixedStream(t)
	ctx := embeddedtest.Context(t)
	subjects := []string{"d.even", "d.burst", "d.rare", "d.one", "d.noise", "d.none"}
	for _, subject := range subjects {
		befores := []uint64{0, 1, 2, s.last, s.last + 1, math.MaxUint64}
		afters := []uint64{0, s.last - 1, s.last, math.MaxUint64}
		for i, m := range s.subjects[subject] {
			if i == 0 || rand.IntN(len(s.subjects[subject])) < 2 {
				befores = append(befores, m.seq, m.seq+1)
				afters = append(afters, m.seq, m.seq-1)
			}
		}
		for range 2 {
			befores = append(befores, 1+rand.Uint64N(s.last))
			afters = append(afters, rand.Uint64N(s.last))
		}
		for _, bounds := range [][2]int{{1, 0}, {7, 1}, {50, 4 << 10}, {500, 0}, {500, 16 << 10}} {
			n, maxBytes := bounds[0], bounds[1]
			{
				for _, before := range befores {
					page, err := s.reader.BeforePage(ctx, subject, before, n, maxBytes)
					if err != nil {
						t.Fatalf("BeforePage %s %d: %v", subject, before, err)
					}
					checkBefore(t, s, subject, before, n, maxBytes, page)
				}
				for _, after := range afters {
					page, err := s.reader.AfterPage(ctx, subject, after, n, maxBytes)
					if err != nil {
						t.Fatalf("AfterPage %s %d: %v", subject, after, err)
					}
					checkAfter(t, s, subject, after, n, maxBytes, page)
				}
			}
		}
	}
}

// TestReaderPagesWalk pages through every subject both ways, with a byte
// bound, and gets every message once, in order.
func TestReaderPagesWalk(t *testing.T) {
	s := mixedStream(t)
	ctx := embeddedtest.Context(t)
	for subject, all := range s.subjects {
		var back []uint64
		before, pages := uint64(0), 0
		for more := true; more; pages++ {
			page, err := s.reader.BeforePage(ctx, subject, before, 100, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Msgs) == 0 {
				t.Fatalf("%s: empty page before %d with more", subject, before)
			}
			for i := len(page.Msgs) - 1; i >= 0; i-- {
				back = append(back, page.Msgs[i].Seq)
			}
			before, more = page.Msgs[0].Seq, page.More
		}
		if len(back) != len(all) {
			t.Fatalf("%s: paged back %d messages in %d pages, want %d", subject, len(back), pages, len(all))
		}
		for i, seq := range back {
			if seq != all[len(all)-1-i].seq {
				t.Fatalf("%s: paging back, message %d is %d, want %d", subject, i, seq, all[len(all)-1-i].seq)
			}
		}
		var fwd []uint64
		after := uint64(0)
		for more := true; more; {
			page, err := s.reader.AfterPage(ctx, subject, after, 100, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Msgs {
				fwd = append(fwd, m.Seq)
				after = m.Seq
			}
			more = page.More
		}
		if len(fwd) != len(all) {
			t.Fatalf("%s: paged forward %d messages, want %d", subject, len(fwd), len(all))
		}
	}
}

// TestReaderBeforeRequests: a backward page costs a few direct gets, not
// one per message.
func TestReaderBeforeRequests(t *testing.T) {
	s := mixedStream(t)
	s.countRequests(t)
	ctx := embeddedtest.Context(t)
	for _, subject := range []string{"d.even", "d.burst", "d.noise"} {
		all := s.subjects[subject]
		for _, before := range []uint64{0, all[len(all)/2].seq, s.last + 1000, math.MaxUint64} {
			for _, n := range []int{50, 500} {
				var page natsconf.Page
				reqs := s.counted(t, func() {
					var err error
					page, err = s.reader.BeforePage(ctx, subject, before, n, 0)
					if err != nil {
						t.Fatal(err)
					}
				})
				checkBefore(t, s, subject, before, n, 0, page)
				t.Logf("%s before %d n %d: %d messages in %d requests", subject, before, n, len(page.Msgs), reqs)
				// Two ends, a seek and the read; a seek of the
				// bursty subject may take a few more probes.
				if reqs > 10 {
					t.Errorf("%s before %d n %d: %d direct gets for %d messages", subject, before, n, reqs, len(page.Msgs))
				}
			}
		}
	}
}

// TestReaderBeforeWhileAppending reads the latest page while messages are
// appended to the same subject: each page is a run of stored messages.
func TestReaderBeforeWhileAppending(t *testing.T) {
	s := newDirectStream(t, 600, func(i int) string { return []string{"d.a", "d.b"}[i%2] }, func(int) int { return 100 })
	ctx := embeddedtest.Context(t)
	js, err := jetstream.New(s.nc)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := js.Publish(ctx, "d.a", []byte(fmt.Sprint("late", i))); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		page, err := s.reader.BeforePage(ctx, "d.a", 0, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Msgs) == 0 || !page.More {
			t.Fatalf("latest page: %d messages, more %v", len(page.Msgs), page.More)
		}
		for i := 1; i < len(page.Msgs); i++ {
			if page.Msgs[i].Seq <= page.Msgs[i-1].Seq {
				t.Fatalf("page out of order at %d", i)
			}
		}
		// No gap: the messages stored after the page's first one are
		// the rest of the page (messages are only appended later).
		next, err := s.reader.After(ctx, "d.a", page.Msgs[0].Seq, len(page.Msgs)-1)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range next {
			if m.Seq != page.Msgs[i+1].Seq {
				t.Fatalf("gap in the page: after seq %d comes %d, not %d", page.Msgs[i].Seq, m.Seq, page.Msgs[i+1].Seq)
			}
		}
	}
}

var benchSink int

// BenchmarkReaderPage reads a page of 500 of a subject interleaved with
// others (one message in three, 200 bytes) in a stream of 9,000: backward
// (the latest, and before the middle) and forward.
func BenchmarkReaderPage(b *testing.B) {
	s := newDirectStream(b, 9000, func(i int) string {
		if i%3 == 0 {
			return "d.room"
		}
		return fmt.Sprint("d.other", i%7)
	}, func(int) int { return 200 })
	ctx := context.Background()
	mid := s.subjects["d.room"][1500].seq
	run := func(name string, read func() (natsconf.Page, error)) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				p, err := read()
				if err != nil || len(p.Msgs) != 500 {
					b.Fatalf("%d messages, %v", len(p.Msgs), err)
				}
				benchSink += len(p.Msgs)
			}
		})
	}
	run("before=latest", func() (natsconf.Page, error) { return s.reader.BeforePage(ctx, "d.room", 0, 500, 0) })
	run("before=middle", func() (natsconf.Page, error) { return s.reader.BeforePage(ctx, "d.room", mid, 500, 0) })
	run("after=middle", func() (natsconf.Page, error) { return s.reader.AfterPage(ctx, "d.room", mid, 500, 0) })
}
