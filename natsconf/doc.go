// Package natsconf holds everything natter knows about NATS itself: the
// embedded server used by development mode and by tests, the subject names
// that the edge and the handlers share (built only from validated names), and
// the JetStream streams and buckets that keep what must survive.
package natsconf
