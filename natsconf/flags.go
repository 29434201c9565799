package natsconf

import "flag"

// RegisterFlags defines the retention flags of c on fs, for the commands
// that create the stores (the edge in development mode, and handlers).
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.RoomMaxMsgs, "room-max-msgs", DefaultRoomMaxMsgs, "messages kept per room")
	fs.DurationVar(&c.RoomMaxAge, "room-max-age", DefaultRoomMaxAge, "how long room messages are kept")
	fs.Int64Var(&c.RoomMaxBytes, "room-max-bytes", DefaultRoomMaxBytes, "size bound of all room messages")
	fs.Int64Var(&c.InboxMaxMsgs, "inbox-max-msgs", DefaultInboxMaxMsgs, "undelivered direct messages kept per user")
	fs.DurationVar(&c.InboxMaxAge, "inbox-max-age", DefaultInboxMaxAge, "how long undelivered direct messages are kept")
	fs.Int64Var(&c.InboxMaxBytes, "inbox-max-bytes", DefaultInboxMaxBytes, "size bound of all undelivered direct messages")
	fs.DurationVar(&c.DedupWindow, "dedup-window", DefaultDedupWindow, "how long a client command id is remembered for idempotent send/dm")
	fs.IntVar(&c.Replicas, "replicas", 1, "JetStream replicas of the streams (3 in a cluster)")
	fs.BoolVar(&c.NoOfflineDMs, "no-offline-dms", false, "refuse dms to offline users (error offline) instead of storing them")
}
