package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/protocol"
)

// TestStoreError: every failure of NATS or JetStream during a node loss is
// "unavailable" (retry), never "internal".
func TestStoreError(t *testing.T) {
	for _, err := range []error{
		context.DeadlineExceeded, context.Canceled, nats.ErrTimeout, nats.ErrNoResponders,
		nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, nats.ErrDisconnected,
		jetstream.ErrNoStreamResponse, fmt.Errorf("rooms: %w", nats.ErrConnectionDraining),
		&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"},
		fmt.Errorf("kv: %w", &jetstream.APIError{Code: 500, Description: "no suitable peers for placement"}),
	} {
		var pe *protocol.Error
		if got := StoreError(err); !errors.As(got, &pe) || pe.Code != protocol.CodeUnavailable {
			t.Errorf("StoreError(%v) = %v, want unavailable", err, got)
		}
	}
	own := protocol.Errorf(protocol.CodeNotMember, "x")
	if got := StoreError(own); got != own {
		t.Errorf("StoreError(%v) = %v, want it unchanged", own, got)
	}
	bug := errors.New("json: cannot unmarshal")
	if got := StoreError(bug); got != bug {
		t.Errorf("StoreError(%v) = %v, want it unchanged", bug, got)
	}
}
