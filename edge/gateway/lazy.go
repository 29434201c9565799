package gateway

import (
	"sync"
	"time"
)

// lazyFlusher writes the frames that may wait (see outbox.pushLazy) of
// every connection once per period: a member of a busy room gets the
// presence of many joins in one write instead of one write each.
type lazyFlusher struct {
	mu  sync.Mutex
	due []*outbox
}

// add schedules o for the next flush.
func (f *lazyFlusher) add(o *outbox) {
	f.mu.Lock()
	f.due = append(f.due, o)
	f.mu.Unlock()
}

// run flushes every period until done is closed.
func (f *lazyFlusher) run(done <-chan struct{}, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	var batch []*outbox
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		f.mu.Lock()
		batch, f.due = f.due, batch[:0]
		f.mu.Unlock()
		for i, o := range batch {
			o.flush()
			batch[i] = nil
		}
	}
}
