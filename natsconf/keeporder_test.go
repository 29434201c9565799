package natsconf_test

import (
	"strings"
	"testing"

	"natter/natsconf"
	"natter/natsconf/embedded"
	"natter/natsconf/embedded/embeddedtest"
)

// TestKeepURLOrder: Connect lets the NATS client shuffle its URL list, and
// keeps the list's order (the first URL first) after KeepURLOrder(true),
// which the edge's and handlers' -nats-no-randomize set.
func TestKeepURLOrder(t *testing.T) {
	var urls []string
	for range 3 {
		urls = append(urls, embeddedtest.StartServer(t, embedded.Config{StoreDir: t.TempDir()}).ClientURL())
	}
	list := strings.Join(urls, ",")
	firsts := func() int {
		n := 0
		for range 24 {
			nc, err := natsconf.Connect(list, "order")
			if err != nil {
				t.Fatal(err)
			}
			if nc.ConnectedUrl() == urls[0] {
				n++
			}
			nc.Close()
		}
		return n
	}
	if n := firsts(); n == 24 {
		t.Errorf("by default, all 24 connections went to the first URL: the list is not shuffled")
	}
	prev := natsconf.KeepURLOrder(true)
	defer natsconf.KeepURLOrder(prev)
	if prev {
		t.Error("KeepURLOrder was on by default")
	}
	if n := firsts(); n != 24 {
		t.Errorf("with KeepURLOrder(true), %d of 24 connections went to the first URL, want all", n)
	}
}
