package natsconf

import (
	"flag"
	"strconv"
)

// RegisterFlags defines the retention flags of c on fs, for the commands
// that create the stores (the edge in development mode, and handlers).
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.RoomMaxMsgs, "room-max-msgs", DefaultRoomMaxMsgs, "messages kept per room")
	fs.DurationVar(&c.RoomMaxAge, "room-max-age", DefaultRoomMaxAge, "how long room messages are kept")
	fs.Int64Var(&c.RoomMaxBytes, "room-max-bytes", DefaultRoomMaxBytes, "size bound of all room messages")
	fs.Int64Var(&c.InboxMaxMsgs, "inbox-max-msgs", DefaultInboxMaxMsgs, "undelivered direct messages kept per user (one more is refused: inbox_full)")
	fs.DurationVar(&c.InboxMaxAge, "inbox-max-age", DefaultInboxMaxAge, "how long undelivered direct messages are kept")
	fs.Int64Var(&c.InboxMaxBytes, "inbox-max-bytes", DefaultInboxMaxBytes, "size bound of all undelivered direct messages (one more is refused: inbox_full)")
	fs.DurationVar(&c.DedupWindow, "dedup-window", DefaultDedupWindow, "how long a client command id is remembered for idempotent send/dm")
	fs.IntVar(&c.Replicas, "replicas", 1, "JetStream replicas of the streams (3 in a cluster)")
	fs.BoolVar(&c.NoOfflineDMs, "no-offline-dms", false, "refuse dms to offline users (error offline) instead of storing them")
	c.StoreRateBytes, c.StoreBurstBytes = DefaultStoreRateBytes, DefaultStoreBurstBytes
	fs.Var(offIfZero{&c.StoreRateBytes}, "store-rate-bytes", "`bytes` of room messages and dms one user may store a minute, per handler process (0: no bound)")
	fs.Var(offIfZero{&c.StoreBurstBytes}, "store-burst-bytes", "`bytes` one user may store at once within -store-rate-bytes (0: no bound)")
}

// offIfZero is an int64 flag whose 0 (or a negative value) is stored as -1:
// in StoreConfig, 0 means the default and a negative value "off".
type offIfZero struct{ p *int64 }

func (v offIfZero) String() string {
	if v.p == nil || *v.p < 0 {
		return "0"
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v offIfZero) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	if n <= 0 {
		n = -1
	}
	*v.p = n
	return nil
}
