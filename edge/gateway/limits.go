package gateway

import "sync"

// connCounter counts open connections per key (user or IP address) and
// refuses one past the limit.
type connCounter struct {
	limit int // 0: no limit

	mu     sync.Mutex
	counts map[string]int
}

// acquire takes a slot for key; false when key already has limit.
func (c *connCounter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	if c.limit > 0 && c.counts[key] >= c.limit {
		return false
	}
	c.counts[key]++
	return true
}

// release gives back a slot of key.
func (c *connCounter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[key] <= 1 {
		delete(c.counts, key)
		return
	}
	c.counts[key]--
}
