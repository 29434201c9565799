package embedded_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/natsconf"
)

// TestEnsureStoresDeniedFailsAtOnce: a user without the JetStream API
// (here the edge's) gets no answer to a stream request, which looks like
// a request a settling cluster dropped; EnsureStores does not try again
// until its context ends but reports the permission violation after the
// first attempt.
func TestEnsureStoresDeniedFailsAtOnce(t *testing.T) {
	ns := permStart(t)
	edge := permConnect(t, ns.ClientURL(), natsconf.EdgeUser, permEdgePass)
	js, err := jetstream.New(edge.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = natsconf.EnsureStores(ctx, js, natsconf.MustSubjects("im"), natsconf.StoreConfig{})
	if !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("EnsureStores as the edge user: %v, want a permissions violation", err)
	}
	if ctx.Err() != nil {
		t.Fatal("EnsureStores tried until its context ended")
	}
}
