package natsconf

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StoreConfig sets the retention of what natter keeps in JetStream. Zero
// values mean the documented defaults.
type StoreConfig struct {
	// RoomMaxMsgs is the most messages kept per room (default 10,000).
	RoomMaxMsgs int64
	// RoomMaxAge is how long room messages are kept (default 30 days).
	RoomMaxAge time.Duration
	// RoomMaxBytes bounds the whole rooms stream (default 10 GiB).
	RoomMaxBytes int64
	// InboxMaxMsgs is the most direct messages kept per user (default 1,000).
	InboxMaxMsgs int64
	// InboxMaxAge is how long direct messages are kept (default 7 days).
	InboxMaxAge time.Duration
	// InboxMaxBytes bounds the whole inbox stream (default 1 GiB).
	InboxMaxBytes int64
	// DedupWindow is how long a client id is remembered for idempotent
	// sends (default 2 minutes).
	DedupWindow time.Duration
	// Replicas is the JetStream replication factor (default 1; 3 in a
	// cluster).
	Replicas int
	// NoOfflineDMs refuses a dm to a user with no live connection with the
	// error "offline" instead of storing it.
	NoOfflineDMs bool
}

// Defaults of StoreConfig.
const (
	DefaultRoomMaxMsgs   = 10_000
	DefaultRoomMaxAge    = 30 * 24 * time.Hour
	DefaultRoomMaxBytes  = 10 << 30
	DefaultInboxMaxMsgs  = 1_000
	DefaultInboxMaxAge   = 7 * 24 * time.Hour
	DefaultInboxMaxBytes = 1 << 30
	DefaultDedupWindow   = 2 * time.Minute
)

func (c StoreConfig) withDefaults() StoreConfig {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.RoomMaxMsgs, DefaultRoomMaxMsgs)
	def(&c.RoomMaxBytes, DefaultRoomMaxBytes)
	def(&c.InboxMaxMsgs, DefaultInboxMaxMsgs)
	def(&c.InboxMaxBytes, DefaultInboxMaxBytes)
	if c.RoomMaxAge == 0 {
		c.RoomMaxAge = DefaultRoomMaxAge
	}
	if c.InboxMaxAge == 0 {
		c.InboxMaxAge = DefaultInboxMaxAge
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

// Stores names the JetStream streams and buckets of one subject prefix.
type Stores struct {
	// Rooms is the stream of room messages.
	Rooms string
	// Inbox is the stream of direct messages.
	Inbox string
	// Members is the KV bucket of room membership.
	Members string
}

// StoreNames returns the stream and bucket names for s's prefix.
func (s Subjects) StoreNames() Stores {
	base := strings.ToUpper(strings.NewReplacer(".", "_", ":", "_", "-", "_").Replace(s.prefix))
	return Stores{
		Rooms:   base + "_ROOMS",
		Inbox:   base + "_INBOX",
		Members: base + "_MEMBERS",
	}
}

// EnsureStores creates or updates the streams and buckets natter needs. It is
// idempotent; every handler process calls it on start.
func EnsureStores(ctx context.Context, js jetstream.JetStream, s Subjects, cfg StoreConfig) error {
	cfg = cfg.withDefaults()
	names := s.StoreNames()
	rooms := jetstream.StreamConfig{
		Name:              names.Rooms,
		Description:       "natter room messages",
		Subjects:          []string{s.prefix + ".store.room.*"},
		MaxMsgsPerSubject: cfg.RoomMaxMsgs,
		MaxAge:            cfg.RoomMaxAge,
		MaxBytes:          cfg.RoomMaxBytes,
		Duplicates:        cfg.DedupWindow,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
		RePublish: &jetstream.RePublish{
			Source:      s.prefix + ".store.room.*",
			Destination: s.prefix + ".room.{{wildcard(1)}}",
		},
	}
	inbox := jetstream.StreamConfig{
		Name:              names.Inbox,
		Description:       "natter direct messages",
		Subjects:          []string{s.prefix + ".store.user.*", s.prefix + ".store.pending.*"},
		AllowRollup:       false,
		DenyDelete:        false,
		MaxMsgsPerSubject: cfg.InboxMaxMsgs,
		MaxAge:            cfg.InboxMaxAge,
		MaxBytes:          cfg.InboxMaxBytes,
		Duplicates:        cfg.DedupWindow,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	}
	for _, sc := range []jetstream.StreamConfig{rooms, inbox} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("natsconf: stream %s: %w", sc.Name, err)
		}
	}
	_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      names.Members,
		Description: "natter room membership: <room>.<user> -> connections",
		History:     1,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("natsconf: bucket %s: %w", names.Members, err)
	}
	return nil
}

// KeyToken turns a valid name into a KV key token: KV keys cannot hold ':',
// so it is written "=3A" ('=' never occurs in a valid name).
func KeyToken(name string) string {
	if strings.IndexByte(name, ':') < 0 {
		return name
	}
	return strings.ReplaceAll(name, ":", "=3A")
}

// NameFromKeyToken reverses KeyToken.
func NameFromKeyToken(tok string) string {
	if strings.IndexByte(tok, '=') < 0 {
		return tok
	}
	return strings.ReplaceAll(tok, "=3A", ":")
}
