package natsconf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	// InboxMaxMsgs is the most undelivered direct messages kept per user
	// (default 1,000): one more is refused ("inbox_full"), none is
	// dropped. It also bounds the dms per user the inbox stream keeps.
	InboxMaxMsgs int64
	// InboxMaxAge is how long direct messages are kept (default 7 days).
	InboxMaxAge time.Duration
	// InboxMaxBytes bounds the pending stream (undelivered dms: a dm that
	// does not fit is refused with "inbox_full") and, separately, the
	// inbox stream (every dm; the oldest go) (default 1 GiB each).
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
	// StoreRateBytes is how many bytes one user may store a minute, room
	// messages and dms together (default 1 MiB; negative: no bound), and
	// StoreBurstBytes how many at once (default 4 MiB). The handlers
	// enforce it, each process on its own (see StoreRate).
	StoreRateBytes  int64
	StoreBurstBytes int64
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
	// DefaultStoreRateBytes and DefaultStoreBurstBytes bound what one
	// user stores: 1 MiB a minute, in bursts of up to 4 MiB.
	DefaultStoreRateBytes  = 1 << 20
	DefaultStoreBurstBytes = 4 << 20
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
	def(&c.StoreRateBytes, DefaultStoreRateBytes)
	def(&c.StoreBurstBytes, DefaultStoreBurstBytes)
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

// Stores names the JetStream streams and buckets of one subject prefix
// (the stream of pending dms is Subjects.PendingStore).
type Stores struct {
	// Rooms is the stream of room messages.
	Rooms string
	// Inbox is the stream of direct messages: every dm, once.
	Inbox string
	// Members is the KV bucket of room membership.
	Members string
}

// StoreNames returns the stream and bucket names for s's prefix.
func (s Subjects) StoreNames() Stores {
	base := s.storeBase()
	return Stores{
		Rooms:   base + "_ROOMS",
		Inbox:   base + "_INBOX",
		Members: base + "_MEMBERS",
	}
}

// PendingStore is the name of the stream of pending dms for s's prefix
// (IM_PENDING for "im"): the dms no connection took yet, on
// InboxPending subjects, delivered from there.
func (s Subjects) PendingStore() string { return s.storeBase() + "_PENDING" }

func (s Subjects) storeBase() string {
	return strings.ToUpper(strings.NewReplacer(".", "_", ":", "_", "-", "_").Replace(s.prefix))
}

// StoreRate returns the per-user store rate of c, defaults filled in:
// bytes a minute and burst, both 0 when there is no bound. Each handler
// process enforces it on its own (runtime.StoreBudget).
func (c StoreConfig) StoreRate() (perMinute, burst int64) {
	c = c.withDefaults()
	if c.StoreRateBytes <= 0 || c.StoreBurstBytes <= 0 {
		return 0, 0
	}
	return c.StoreRateBytes, c.StoreBurstBytes
}

// EnsureStores creates or updates the streams and buckets natter needs. It is
// idempotent; every handler process calls it on start.
//
//   - The rooms stream keeps a room's latest RoomMaxMsgs messages for
//     RoomMaxAge, within RoomMaxBytes for all rooms; beyond a limit the
//     oldest go (of the room, or of the stream for the byte bound).
//   - The inbox stream stores every dm once, on the target's InboxStore
//     subject: its sequence is the dm's seq, and it deduplicates retries.
//     Within its limits the oldest go, but nothing is delivered from it.
//   - The pending stream (PendingStore) holds the dms no connection took,
//     each with its frame, until a connection of the target takes it. It
//     refuses rather than drops: a user's InboxMaxMsgs-th pending dm, or
//     one beyond InboxMaxBytes for all users, is not stored (the sender
//     gets "inbox_full"), so nobody's traffic removes another's pending
//     dms; only InboxMaxAge does.
//
// Before the pending stream existed, pending dms were kept in the inbox
// stream: EnsureStores takes that subject out of an existing inbox stream
// (a stream update keeps the messages it holds) and moves the entries left
// there into the pending stream (MigratePending).
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
		Subjects:          []string{s.prefix + ".store.user.*"},
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
	pending := jetstream.StreamConfig{
		Name:              s.PendingStore(),
		Description:       "natter pending direct messages: the dms no connection took yet",
		Subjects:          []string{s.prefix + ".store.pending.*"},
		MaxMsgsPerSubject: cfg.InboxMaxMsgs,
		MaxAge:            cfg.InboxMaxAge,
		MaxBytes:          cfg.InboxMaxBytes,
		Duplicates:        cfg.DedupWindow,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardNew,
		// JetStream needs a per-subject limit for this; without one
		// (InboxMaxMsgs negative) only the byte bound refuses.
		DiscardNewPerSubject: cfg.InboxMaxMsgs > 0,
		AllowDirect:          true,
	}
	// The inbox first: an inbox stream of an older natter still holds the
	// pending subjects, which the pending stream cannot take before.
	for _, sc := range []jetstream.StreamConfig{rooms, inbox, pending} {
		err := RetryUnavailable(ctx, js.Conn(), func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("natsconf: stream %s: %w", sc.Name, err)
		}
	}
	err := RetryUnavailable(ctx, js.Conn(), func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      names.Members,
			Description: "natter room membership: <room>.<user> -> connections",
			History:     1,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("natsconf: bucket %s: %w", names.Members, err)
	}
	// A new replicated stream answers (info, direct gets) only once it
	// has a leader and its replicas are up: wait for that here, so that
	// the lookups of the handlers starting next are answered.
	for _, name := range []string{rooms.Name, inbox.Name, pending.Name, "KV_" + names.Members} {
		if err := RetryUnavailable(ctx, js.Conn(), func(ctx context.Context) error { return streamLed(ctx, js, name) }); err != nil {
			return fmt.Errorf("natsconf: stream %s: %w", name, err)
		}
	}
	return RetryUnavailable(ctx, js.Conn(), func(ctx context.Context) error {
		_, err := MigratePending(ctx, js, s)
		return err
	})
}

// errNoLeader: a replicated stream has no leader yet.
var errNoLeader = errors.New("natsconf: the stream has no leader yet")

// streamLed returns nil once stream answers with a leader (a stream of one
// replica has no cluster info and always does).
func streamLed(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	if c := st.CachedInfo().Cluster; c != nil && c.Name != "" && c.Leader == "" {
		return errNoLeader
	}
	return nil
}

// storeCallTimeout bounds one attempt of a JetStream API call of
// EnsureStores; storeRetryMax is the longest pause between attempts.
const (
	storeCallTimeout = 5 * time.Second
	storeRetryMax    = 2 * time.Second
)

// RetryUnavailable runs call (a JetStream API call a process makes as it
// starts: creating or looking up a store) on nc until it succeeds, fails
// for good or ctx ends, each attempt bounded by storeCallTimeout. A
// clustered JetStream drops a stream request it gets while its meta
// leader changes (no answer at all), and answers "temporarily
// unavailable" or "no suitable peers" while a cluster forms or recovers:
// those are tried again, after a pause that grows to storeRetryMax. A
// request nc's user may not publish also goes unanswered; nats.go reports
// it on nc, and it fails at once. Creating or updating a store is
// idempotent, so an attempt that took effect but lost its answer is safe
// to repeat; call must be too. When ctx ends, the last attempt's error is
// returned.
func RetryUnavailable(ctx context.Context, nc *nats.Conn, call func(context.Context) error) error {
	pause := 100 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, storeCallTimeout)
		err := call(attempt)
		cancel()
		if err == nil || ctx.Err() != nil || !storeCallRetryable(err) {
			return err
		}
		// A request the user may not publish goes unanswered, like one
		// a cluster dropped; nats.go tells it apart as an async error.
		if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
			return fmt.Errorf("%w (%w)", err, last)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, storeRetryMax)
	}
}

// storeCallRetryable tells the failures of a JetStream API call that a
// forming or recovering cluster gives, and that pass by themselves.
func storeCallRetryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, errNoLeader) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jsErrCodeClusterNoPeers, jsErrCodeClusterNotAvailable, jetstream.JSErrCodeJetStreamNotEnabled:
		return true
	}
	return false
}

// JetStream error codes the jetstream package has no names for.
const (
	jsErrCodeClusterNoPeers      jetstream.ErrorCode = 10005 // no suitable peers for placement (yet)
	jsErrCodeClusterNotAvailable jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
)

// migratePage is how many old pending entries MigratePending reads at once.
const migratePage = 256

// MigratePending moves the pending dm entries that an older natter kept in
// the inbox stream (on InboxPending subjects) into the pending stream, with
// their frame, headers and message id, then deletes them from the inbox
// stream; it returns how many it moved. An entry the pending stream refuses
// (that user's pending dms, or the stream, are full) stays where it is,
// undelivered, until a later call moves it or its age removes it. Several
// processes may run it at once: the message id stores an entry once
// (within the dedup window), and deleting one already gone is fine.
// EnsureStores calls it; when nothing is left to move it costs one read.
func MigratePending(ctx context.Context, js jetstream.JetStream, s Subjects) (int, error) {
	names := s.StoreNames()
	reader := NewReader(js.Conn(), names.Inbox)
	subject := s.prefix + ".store.pending.*"
	if left, err := reader.Any(ctx, subject, 0); err != nil || !left {
		if err != nil {
			return 0, fmt.Errorf("natsconf: pending entries in %s: %w", names.Inbox, err)
		}
		return 0, nil
	}
	inbox, err := js.Stream(ctx, names.Inbox)
	if err != nil {
		return 0, fmt.Errorf("natsconf: stream %s: %w", names.Inbox, err)
	}
	moved := 0
	for after := uint64(0); ; {
		msgs, err := reader.After(ctx, subject, after, migratePage)
		if err != nil {
			return moved, fmt.Errorf("natsconf: pending entries in %s: %w", names.Inbox, err)
		}
		futs := make([]jetstream.PubAckFuture, len(msgs))
		for i, m := range msgs {
			after = m.Seq
			seq := m.Header.Get(HeaderSeq)
			if seq == "" {
				continue // not an entry natter wrote
			}
			futs[i], err = js.PublishMsgAsync(&nats.Msg{
				Subject: m.Header.Get(nats.JSSubject),
				Data:    m.Data,
				Header:  nats.Header{HeaderSeq: {seq}},
			}, jetstream.WithMsgID("pending:"+seq), jetstream.WithExpectStream(s.PendingStore()))
			if err != nil {
				return moved, fmt.Errorf("natsconf: move pending entry %d: %w", m.Seq, err)
			}
		}
		for i, fut := range futs {
			if fut == nil {
				continue
			}
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				if IsStoreFull(err) {
					continue // stays in the inbox stream
				}
				return moved, fmt.Errorf("natsconf: move pending entry %d: %w", msgs[i].Seq, err)
			case <-ctx.Done():
				return moved, fmt.Errorf("natsconf: move pending entries: %w", ctx.Err())
			}
			err := inbox.DeleteMsg(ctx, msgs[i].Seq)
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
				return moved, fmt.Errorf("natsconf: delete moved pending entry %d: %w", msgs[i].Seq, err)
			}
			moved++
		}
		if len(msgs) < migratePage {
			return moved, nil
		}
	}
}

// IsStoreFull reports whether err is JetStream refusing a message because
// the stream (discard new) is at a limit: its bytes, its messages, or the
// messages of the message's subject.
func IsStoreFull(err error) bool {
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jsStoreFailed {
		return false
	}
	return strings.Contains(api.Description, "maximum messages") || strings.Contains(api.Description, "maximum bytes")
}

// IsSubjectFull reports whether err is JetStream refusing a message because
// its subject holds the most messages the stream keeps per subject.
func IsSubjectFull(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jsStoreFailed && strings.Contains(api.Description, "per subject")
}

// jsStoreFailed is JetStream's error code for a message it did not store
// (JSStreamStoreFailedF), which a discard-new limit gives.
const jsStoreFailed jetstream.ErrorCode = 10077

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
