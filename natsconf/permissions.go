package natsconf

// NATS user names of the two kinds of natter process.
const (
	EdgeUser     = "edge"
	HandlersUser = "handlers"
)

// Inbox prefixes of the two kinds of natter process (nats.go's
// CustomInboxPrefix): replies to an edge's requests arrive under
// EdgeInboxPrefix, replies to the handlers' (JetStream reads of history and
// stored dms among them) under HandlersInboxPrefix. Each user may subscribe
// only under its own, so neither can read the other's replies, and nobody
// reads "_INBOX.>". Connect (and embedded.Connect) picks the prefix of the
// user it connects as (InboxPrefix).
const (
	EdgeInboxPrefix     = "_INBOX_edge"
	HandlersInboxPrefix = "_INBOX_handlers"
)

// InboxPrefix returns the inbox prefix of a NATS user: EdgeInboxPrefix for
// EdgeUser, HandlersInboxPrefix for HandlersUser, and "" (nats.go's default,
// "_INBOX") for any other user or none.
func InboxPrefix(user string) string {
	switch user {
	case EdgeUser:
		return EdgeInboxPrefix
	case HandlersUser:
		return HandlersInboxPrefix
	}
	return ""
}

// HandlersJetStream lists the JetStream subjects handlers publish to, scoped
// to natter's streams and bucket (StoreNames) and to what natter does with
// them, as nats.go's jetstream package sends it:
//
//   - account info ($JS.API.INFO: creating a bucket checks it);
//   - on the rooms, inbox and pending streams and the bucket's stream:
//     create, update and info (EnsureStores and opening them), and direct
//     gets (history, stored and pending dms, KV Get);
//   - on the pending stream: message delete (a delivered dm's pending
//     entry); on the inbox stream: message delete (a dm refused with
//     "inbox_full", and pending entries an older natter kept there once
//     moved, MigratePending);
//   - on the read positions bucket (ReadStore, the receipts handler):
//     create, update, info, direct gets and its $KV subjects;
//   - on the bucket only: its $KV subjects (put, create, update, delete a
//     membership), ordered consumers (KV watches and key lists: create,
//     info, next, delete) and purge (forgetting every membership).
//
// So no stream can be deleted, no other stream created, read or changed,
// and room history can be neither purged nor edited. Acknowledgements and
// flow-control replies of consumers need no entry: they are replies to
// messages the handlers received (allow_responses).
func (s Subjects) HandlersJetStream() []string {
	const api = "$JS.API."
	n := s.StoreNames()
	kv := "KV_" + n.Members
	reads := "KV_" + s.ReadStore()
	out := []string{api + "INFO"}
	for _, stream := range []string{n.Rooms, n.Inbox, s.PendingStore(), kv, reads} {
		out = append(out,
			api+"STREAM.CREATE."+stream,
			api+"STREAM.UPDATE."+stream,
			api+"STREAM.INFO."+stream,
			api+"DIRECT.GET."+stream,
			api+"DIRECT.GET."+stream+".>",
		)
	}
	return append(out,
		api+"STREAM.MSG.DELETE."+n.Inbox,
		api+"STREAM.MSG.DELETE."+s.PendingStore(),
		api+"CONSUMER.CREATE."+kv+".>",
		api+"CONSUMER.INFO."+kv+".*",
		api+"CONSUMER.MSG.NEXT."+kv+".*",
		api+"CONSUMER.DELETE."+kv+".*",
		api+"STREAM.PURGE."+kv,
		"$KV."+n.Members+".>",
		"$KV."+s.ReadStore()+".>",
	)
}
