package natsconf

import (
	"github.com/nats-io/nats-server/v2/server"
)

// NATS user names of the two kinds of natter process.
const (
	EdgeUser     = "edge"
	HandlersUser = "handlers"
)

// EdgePermissions is what an edge may do on NATS: request commands, publish
// lifecycle events, listen to connection, user, room and broadcast
// subjects, and answer the live-delivery requests it receives. It cannot
// touch JetStream, store messages, or publish into rooms or inboxes itself.
func (s Subjects) EdgePermissions() *server.Permissions {
	p := s.prefix
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			p + ".cmd.*", p + ".evt.*",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".conn.*.*", p + ".user.*", p + ".room.*", p + ".bcast", p + ".edge.*", "_INBOX.>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// HandlersPermissions is what handlers may do on NATS: serve commands and
// events in queue groups (as micro services), use JetStream, and publish to
// connections, users, rooms and the broadcast subject.
func (s Subjects) HandlersPermissions() *server.Permissions {
	p := s.prefix
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			p + ".conn.*.*", p + ".user.*", p + ".room.*", p + ".bcast", p + ".store.>", p + ".edge.*",
			"$JS.API.>", "$KV.>", "$SRV.>", "_INBOX.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			p + ".cmd.*", p + ".evt.*", "$SRV.>", "_INBOX.>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

// Users returns the NATS users of an edge and of handlers with their
// permissions, for an embedded server (EmbeddedConfig.Users). Production
// servers get the same from natsconf/auth.conf.
func (s Subjects) Users(edgePassword, handlersPassword string) []*server.User {
	return []*server.User{
		{Username: EdgeUser, Password: edgePassword, Permissions: s.EdgePermissions()},
		{Username: HandlersUser, Password: handlersPassword, Permissions: s.HandlersPermissions()},
	}
}
