package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"natter/edge/protocol"
	"natter/natsconf/ops/metrics"
)

// endpoint is one subject a Service serves, with its statistics as
// service discovery ($SRV.STATS) reports them.
type endpoint struct {
	name, subject, queue string
	m                    *metrics.HandlerEndpoint

	mu         sync.Mutex // guards what follows; sub is set under Service.mu
	sub        *nats.Subscription
	requests   int
	errors     int
	lastError  string
	processing time.Duration
}

// record adds one answered request.
func (e *endpoint) record(took time.Duration, lastError string) {
	e.mu.Lock()
	e.requests++
	e.processing += took
	if lastError != "" {
		e.errors++
		e.lastError = lastError
	}
	e.mu.Unlock()
}

// recordError adds a failure found after its request was recorded (its
// reply could not be sent).
func (e *endpoint) recordError(lastError string) {
	e.mu.Lock()
	e.errors++
	e.lastError = lastError
	e.mu.Unlock()
}

// call is one request an endpoint received, followed from its arrival to
// its reply.
type call struct {
	ep      *endpoint
	msg     *nats.Msg
	start   time.Time
	err     string // the first failure ("code:description"), "" if none
	counted bool   // counted in the endpoint's metrics
	done    bool   // recorded in the endpoint's statistics
}

// failed records that the request (or a command of its batch) failed.
// The first failure is the one reported.
func (c *call) failed(code, description string) {
	if c.err == "" {
		c.err = code + ":" + description
	}
}

// count counts one command (or event) of the request in the metrics,
// answered with code ("" when it succeeded).
func (c *call) count(code protocol.Code) {
	c.counted = true
	c.ep.m.Request(code)
}

// finish records the request in the endpoint's statistics and metrics,
// once: just before its reply is published (so whoever got the reply sees
// it counted), or when its work ended without a reply.
func (c *call) finish() {
	if c.done {
		return
	}
	c.done = true
	took := time.Since(c.start)
	c.ep.m.Observe(took)
	c.ep.record(took, c.err)
}

// addEndpoint serves subject in the handler's queue group: every message
// becomes a call that run hands to work.
func (s *Service) addEndpoint(name, subject string, work func(ctx context.Context, in *call)) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("runtime: endpoint name %q: letters, digits, - and _ only", name)
	}
	ep := &endpoint{name: name, subject: subject, queue: s.ServiceName(), m: s.cfg.Metrics.Endpoint(s.cfg.Name, name)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return errors.New("runtime: " + s.cfg.Name + " is stopped")
	}
	for _, other := range s.endpoints {
		if other.name == name {
			return fmt.Errorf("runtime: %s: endpoint %q added twice", s.cfg.Name, name)
		}
	}
	sub, err := s.nc.QueueSubscribe(subject, ep.queue, func(m *nats.Msg) {
		s.run(&call{ep: ep, msg: m, start: time.Now()}, work)
	})
	if err != nil {
		return fmt.Errorf("runtime: %s: %w", s.cfg.Name, err)
	}
	ep.sub = sub
	s.endpoints = append(s.endpoints, ep)
	return nil
}

// ServiceName is the handler's name in service discovery, which is also
// its queue group: "natter-" and Config.Name (natter-rooms), so that
// `nats micro stats natter-rooms` shows every copy of the rooms handler.
func (s *Service) ServiceName() string { return "natter-" + s.cfg.Name }

// serveDiscovery answers micro's PING, INFO and STATS requests: for every
// service, for services of this name, and for this instance.
func (s *Service) serveDiscovery() error {
	for verb, answer := range map[micro.Verb]func() any{
		micro.PingVerb:  func() any { return micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType} },
		micro.InfoVerb:  func() any { return s.Info() },
		micro.StatsVerb: func() any { return s.Stats() },
	} {
		for _, scope := range [][2]string{{"", ""}, {s.ServiceName(), ""}, {s.ServiceName(), s.id}} {
			subject, err := micro.ControlSubject(verb, scope[0], scope[1])
			if err != nil {
				return err
			}
			sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
				data, err := json.Marshal(answer())
				if err == nil {
					_ = m.Respond(data)
				}
			})
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.control = append(s.control, sub)
			s.mu.Unlock()
		}
	}
	return nil
}

// unsubscribe stops the endpoints (what they already received is still
// handled) and service discovery. Later calls do nothing.
func (s *Service) unsubscribe() error {
	s.mu.Lock()
	if s.removed {
		s.mu.Unlock()
		return nil
	}
	s.removed = true
	subs := make([]*nats.Subscription, 0, len(s.endpoints)+len(s.control))
	for _, ep := range s.endpoints {
		subs = append(subs, ep.sub)
	}
	subs = append(subs, s.control...)
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, fmt.Errorf("runtime: %s: drain %s: %w", s.cfg.Name, sub.Subject, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: s.ServiceName(), ID: s.id, Version: s.cfg.Version, Metadata: map[string]string{}}
}

// ID returns the instance's id in service discovery.
func (s *Service) ID() string { return s.id }

// Info returns what $SRV.INFO answers: the service and its endpoints.
func (s *Service) Info() micro.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := micro.Info{
		ServiceIdentity: s.identity(),
		Type:            micro.InfoResponseType,
		Description:     s.cfg.Description,
		Endpoints:       make([]micro.EndpointInfo, 0, len(s.endpoints)),
	}
	for _, ep := range s.endpoints {
		info.Endpoints = append(info.Endpoints, micro.EndpointInfo{Name: ep.name, Subject: ep.subject, QueueGroup: ep.queue})
	}
	return info
}

// Stats returns what $SRV.STATS answers (`nats micro stats`): per
// endpoint, the requests answered (a batch of one connection's commands is
// one request), those that failed (the reply was an error, or a command
// of the batch failed; messages dropped because the endpoint did not keep
// up count too), the last failure, and the time from a request's arrival
// to its reply, in total and on average.
func (s *Service) Stats() micro.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := micro.Stats{
		ServiceIdentity: s.identity(),
		Type:            micro.StatsResponseType,
		Started:         s.started,
		Endpoints:       make([]*micro.EndpointStats, 0, len(s.endpoints)),
	}
	for _, ep := range s.endpoints {
		dropped := 0
		if n, err := ep.sub.Dropped(); err == nil {
			dropped = n
		}
		ep.mu.Lock()
		es := &micro.EndpointStats{
			Name:           ep.name,
			Subject:        ep.subject,
			QueueGroup:     ep.queue,
			NumRequests:    ep.requests,
			NumErrors:      ep.errors + dropped,
			LastError:      ep.lastError,
			ProcessingTime: ep.processing,
		}
		ep.mu.Unlock()
		if es.NumRequests > 0 {
			es.AverageProcessingTime = es.ProcessingTime / time.Duration(es.NumRequests)
		}
		if es.LastError == "" && dropped > 0 {
			es.LastError = nats.ErrSlowConsumer.Error()
		}
		stats.Endpoints = append(stats.Endpoints, es)
	}
	return stats
}

// Dropped returns how many messages nats.go dropped because an endpoint
// of the service did not keep up (a slow consumer).
func (s *Service) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, ep := range s.endpoints {
		if d, err := ep.sub.Dropped(); err == nil && d > 0 {
			n += uint64(d)
		}
	}
	return n
}

// ObservePublish records a JetStream publish to stream acknowledged after
// d (natter_jetstream_publish_duration_seconds). Handlers that store
// messages call it; stream is one of natsconf's store names.
func (s *Service) ObservePublish(stream string, d time.Duration) {
	s.cfg.Metrics.Published(stream, d)
}
