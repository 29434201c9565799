package embedded

import (
	"github.com/nats-io/nats-server/v2/server"

	"natter/natsconf"
)

// EdgePermissions is what an edge may do on NATS with the subjects of s:
// request commands, publish lifecycle events, listen to connection, user,
// room and broadcast subjects and to its own inbox prefix, and answer the
// live-delivery requests it receives. It cannot touch JetStream, store
// messages, publish into rooms or inboxes itself, or read the handlers'
// replies.
func EdgePermissions(s natsconf.Subjects) *server.Permissions {
	p := s.Prefix()
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			p + ".cmd.*", p + ".evt.*",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".conn.*.*", p + ".user.*", p + ".room.*", p + ".bcast", p + ".edge.*", natsconf.EdgeInboxPrefix + ".>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// HandlersPermissions is what handlers may do on NATS with the subjects of
// s: serve commands and events in queue groups (as micro services,
// answering $SRV discovery), publish to connections, users, rooms and the
// broadcast subject, ask hooks (<prefix>.hook.*), use natter's streams and
// bucket (Subjects.HandlersJetStream, nothing else of JetStream), and
// listen to their own inbox prefix. Replies to edges go out through
// allow_responses, not through a publish permission on the edges' inbox
// prefix.
func HandlersPermissions(s natsconf.Subjects) *server.Permissions {
	p := s.Prefix()
	pub := []string{p + ".conn.*.*", p + ".user.*", p + ".room.*", p + ".bcast", p + ".store.>", p + ".edge.*", p + ".hook.*"}
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: append(pub, s.HandlersJetStream()...)},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".cmd.*", p + ".evt.*", "$SRV.>", natsconf.HandlersInboxPrefix + ".>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// Users returns the NATS users of an edge and of handlers (natsconf.EdgeUser
// and natsconf.HandlersUser) with their permissions for the subjects of s,
// for an embedded server (Config.Users). Production servers get the same
// from natsconf/auth.conf.
func Users(s natsconf.Subjects, edgePassword, handlersPassword string) []*server.User {
	return []*server.User{
		{Username: natsconf.EdgeUser, Password: edgePassword, Permissions: EdgePermissions(s)},
		{Username: natsconf.HandlersUser, Password: handlersPassword, Permissions: HandlersPermissions(s)},
	}
}
