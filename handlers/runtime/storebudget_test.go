package runtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"natter/edge/protocol"
)

// TestStoreBudget: a user's bytes are bounded by the burst, then by the
// rate; other users are not affected; a refusal charges nothing and says
// rate_limited with the bound; a nil budget bounds nothing.
func TestStoreBudget(t *testing.T) {
	b := NewStoreBudget(60<<10, 100<<10) // 1 KiB a second, bursts of 100 KiB
	for i := range 10 {
		if err := b.Take("mallory", 10<<10); err != nil {
			t.Fatalf("take %d of 10 KiB within the burst: %v", i, err)
		}
	}
	err := b.Take("mallory", 10<<10)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeRateLimited || !strings.Contains(pe.Message, "60 KiB") || !strings.Contains(pe.Message, "100 KiB") {
		t.Fatalf("beyond the burst: %v, want rate_limited naming the bounds", err)
	}
	if err := b.Take("alice", 100<<10); err != nil {
		t.Errorf("another user: %v", err)
	}
	// A message larger than the burst passes on a full budget, and empties it.
	if err := b.Take("bob", 1<<20); err != nil {
		t.Errorf("a message larger than the burst on a full budget: %v", err)
	}
	if err := b.Take("bob", 1); err == nil {
		t.Error("the large message did not empty the budget")
	}
	// A refusal charged nothing: about 1 KiB comes back a second.
	time.Sleep(1100 * time.Millisecond)
	if err := b.Take("mallory", 1<<10); err != nil {
		t.Errorf("after a second: %v", err)
	}

	var none *StoreBudget
	if err := none.Take("anyone", 1<<30); err != nil {
		t.Errorf("nil budget: %v", err)
	}
	if NewStoreBudget(0, 100) != nil || NewStoreBudget(100, -1) != nil {
		t.Error("a budget with a bound off is not nil")
	}
}

// TestStoreBudgetForgets: the users tracked stay bounded; idle users (full
// buckets) are forgotten first, so a busy user keeps its debt.
func TestStoreBudgetForgets(t *testing.T) {
	b := NewStoreBudget(60, 1000) // 1 byte a second
	if err := b.Take("busy", 1000); err != nil {
		t.Fatal(err)
	}
	for i := range maxBudgetUsers + 10 {
		if err := b.Take(fmt.Sprint("u", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	n := len(b.users)
	b.mu.Unlock()
	if n > maxBudgetUsers {
		t.Errorf("%d users tracked, bound %d", n, maxBudgetUsers)
	}
	if err := b.Take("busy", 500); err == nil {
		t.Error("the busy user was forgotten (its debt with it) while idle users were tracked")
	}
	// Every tracked user busy: arbitrary ones go, the bound holds.
	b = NewStoreBudget(60, 1000)
	for i := range maxBudgetUsers + 10 {
		if err := b.Take(fmt.Sprint("u", i), 1000); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	n = len(b.users)
	b.mu.Unlock()
	if n > maxBudgetUsers {
		t.Errorf("%d busy users tracked, bound %d", n, maxBudgetUsers)
	}
}
