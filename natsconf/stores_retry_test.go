package natsconf

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStoreCallRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("wrapped: %w", nats.ErrTimeout), true},
		{nats.ErrNoResponders, true},
		{&jetstream.APIError{ErrorCode: jsErrCodeClusterNotAvailable}, true},
		{&jetstream.APIError{ErrorCode: jsErrCodeClusterNoPeers}, true},
		{&jetstream.APIError{ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, true},
		{&jetstream.APIError{ErrorCode: jetstream.JSErrCodeBadRequest}, false},
		{context.Canceled, false},
		{errors.New("invalid stream config"), false},
	} {
		if got := storeCallRetryable(tc.err); got != tc.want {
			t.Errorf("storeCallRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetryStoreCall(t *testing.T) {
	nc := &nats.Conn{} // no error ever
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A dropped request (the attempt's deadline passes), then an
	// unavailable cluster, then success.
	calls := 0
	err := RetryUnavailable(ctx, nc, func(attempt context.Context) error {
		calls++
		switch calls {
		case 1:
			if _, ok := attempt.Deadline(); !ok {
				t.Error("an attempt has no deadline")
			}
			return context.DeadlineExceeded
		case 2:
			return &jetstream.APIError{ErrorCode: jsErrCodeClusterNotAvailable}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("RetryUnavailable = %v after %d calls, want nil after 3", err, calls)
	}

	// A failure for good is returned at once.
	calls = 0
	bad := &jetstream.APIError{ErrorCode: jetstream.JSErrCodeBadRequest}
	if err := RetryUnavailable(ctx, nc, func(context.Context) error { calls++; return bad }); !errors.Is(err, bad) || calls != 1 {
		t.Fatalf("RetryUnavailable = %v after %d calls, want the bad request after 1", err, calls)
	}

	// When ctx ends, the last error comes back.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	err = RetryUnavailable(short, nc, func(context.Context) error { return nats.ErrNoResponders })
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("RetryUnavailable after its context ended = %v, want no responders", err)
	}
}
