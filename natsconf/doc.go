// Package natsconf holds everything natter knows about NATS itself: how its
// processes connect, the subject names that the edge and the handlers share
// (built only from validated names), the NATS users and inbox prefixes, and
// the JetStream streams and buckets that keep what must survive. It needs
// only the NATS client: the embedded server used by development mode and by
// tests, and the server-side permissions of natter's users, are in
// natsconf/embedded, which a process imports only if it starts a server.
package natsconf
