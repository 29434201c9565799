package wstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"natter/edge/server"
	"natter/handlers/registry"
	"natter/handlers/runtime"
	"natter/natsconf"
	"natter/natsconf/embedded/embeddedtest"
)

// ClusterSize is the number of NATS nodes StartCluster runs.
const ClusterSize = 3

// Cluster is three clustered NATS servers with JetStream running in this
// process, the shape natsconf/cluster/n1.conf…n3.conf give separate
// processes (without their users: every connection may do anything). Each
// node stores in its own t.TempDir() and has routes to the two others.
//
// Every connection to a node goes through a TCP proxy of the harness: the
// clients' (URL, URLs) and the routes' (one proxy per direction of each
// pair of nodes; the nodes advertise no address for routes or clients, so
// nothing connects around them). That is what lets Crash cut a node off
// at once, from its clients and from the other nodes, as kill -9 of its
// process does; Shutdown stops a node the way a clean stop does. Whatever
// is left is stopped in cleanup.
//
// Edges and handlers started with its StartEdge and StartHandlers connect
// to a chosen node first and keep the order of the URL list
// (natsconf.KeepURLOrder, nats.DontRandomize): the NATS client otherwise
// shuffles it and a test could not tell which node a process uses.
type Cluster struct {
	mu      sync.Mutex
	nodes   [ClusterSize]*natsserver.Server
	dead    [ClusterSize]bool
	urls    [ClusterSize]string // client URLs: the client proxies'
	clients [ClusterSize]*proxy
	routes  [ClusterSize][ClusterSize]*proxy // [from][to], from != to
}

// ClusterSetupTimeout bounds each wait of the cluster harness for the
// cluster to get somewhere: nodes ready, the cluster formed, stores
// created, a stream leader current. It is generous: three clustered
// JetStream nodes under the race detector on a 2-core machine that also
// runs other packages' tests take their time.
const ClusterSetupTimeout = 90 * time.Second

// StartCluster starts the three nodes and waits (up to ClusterSetupTimeout
// each) until each
// has routes to the two others and JetStream has a meta leader that knows
// all three, so that streams with 3 replicas can be created.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	t.Cleanup(func() {
		for i := range c.nodes {
			if c.nodes[i] != nil {
				c.nodes[i].Shutdown()
				c.nodes[i].WaitForShutdown()
			}
		}
		for i := range ClusterSize {
			c.cut(i)
		}
	})
	// The route proxies need their targets' ports before the nodes start.
	ports := freePorts(t, ClusterSize)
	for from := range ClusterSize {
		for to := range ClusterSize {
			if from != to {
				c.routes[from][to] = startProxy(t, "127.0.0.1:"+strconv.Itoa(ports[to]))
			}
		}
	}
	for i := range ClusterSize {
		var routes []string
		for to, p := range c.routes[i] {
			if to != i {
				routes = append(routes, "nats-route://"+p.addr())
			}
		}
		opts := &natsserver.Options{
			ServerName: "n" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       natsserver.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20,
			Cluster: natsserver.ClusterOpts{
				Name: "natter-test",
				Host: "127.0.0.1",
				Port: ports[i],
				// Other nodes learn no address to route to this one
				// directly (gossiped routes to it fail: port 1 is
				// closed), clients none to connect to: every connection
				// stays on a proxy.
				Advertise:   "127.0.0.1:1",
				NoAdvertise: true,
			},
			Routes: natsserver.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatalf("wstest: cluster node %d: %v", i+1, err)
		}
		go ns.Start()
		c.nodes[i] = ns
	}
	// All nodes started before any is waited for: a clustered JetStream
	// node may wait for its peers, and a loaded machine is slow.
	for i, ns := range c.nodes {
		if !ns.ReadyForConnections(ClusterSetupTimeout) {
			t.Fatalf("wstest: cluster node %d is not ready", i+1)
		}
		host, port := ns.Addr().(*net.TCPAddr).IP.String(), ns.Addr().(*net.TCPAddr).Port
		c.clients[i] = startProxy(t, net.JoinHostPort(host, strconv.Itoa(port)))
		c.urls[i] = "nats://" + c.clients[i].addr()
	}
	if !embeddedtest.WaitFor(ClusterSetupTimeout, func() bool {
		leaders, routeConns := 0, 0
		for _, ns := range c.nodes {
			if embeddedtest.PeerCount(ns) != ClusterSize-1 || !ns.JetStreamIsClustered() {
				return false
			}
			routeConns += ns.NumRoutes()
			if ns.JetStreamIsLeader() {
				leaders++
				if len(ns.JetStreamClusterPeers()) != ClusterSize {
					return false
				}
			}
		}
		proxied := 0
		for from := range c.routes {
			for _, p := range c.routes[from] {
				if p != nil {
					proxied += p.count()
				}
			}
		}
		// Each route connection counts on both its nodes, and each
		// must be a proxied one.
		return leaders == 1 && routeConns == 2*proxied
	}) {
		t.Fatalf("wstest: the cluster did not form: routes %d %d %d", embeddedtest.PeerCount(c.nodes[0]), embeddedtest.PeerCount(c.nodes[1]), embeddedtest.PeerCount(c.nodes[2]))
	}
	return c
}

// freePorts returns n loopback TCP ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("wstest: free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// Node returns node i (0, 1 or 2), also once stopped.
func (c *Cluster) Node(i int) *natsserver.Server { return c.nodes[i] }

// URL returns the client URL of node i (its proxy's).
func (c *Cluster) URL(i int) string { return c.urls[i] }

// URLs returns the client URLs of every node, comma separated, node first's
// first and the others in node order: what a process that should use node
// first, and fail over to the others, is given with -nats.
func (c *Cluster) URLs(first int) string {
	urls := []string{c.urls[first]}
	for i, u := range c.urls {
		if i != first {
			urls = append(urls, u)
		}
	}
	return strings.Join(urls, ",")
}

// Index returns the number of the node whose server name is name, -1 when
// none is.
func (c *Cluster) Index(name string) int {
	for i, ns := range c.nodes {
		if ns.Name() == name {
			return i
		}
	}
	return -1
}

// Crash cuts node i off at once, as when its process dies (kill -9) or
// its machine fails: every connection of its clients and every route to
// and from it is closed by the proxies, so the node can tell nobody
// anything on the way out (a clean shutdown hands the leadership of its
// streams to another node first, see Shutdown); then it is stopped. The
// other nodes elect new leaders for what it led once they miss its
// heartbeats.
func (c *Cluster) Crash(i int) {
	c.mu.Lock()
	c.dead[i] = true
	c.mu.Unlock()
	c.cut(i)
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
}

// Shutdown stops node i the way a clean stop (SIGTERM, nats-server
// --signal quit) does: nats-server first hands the leadership of every
// stream and of the meta layer it leads to another node, then closes its
// connections.
func (c *Cluster) Shutdown(i int) {
	c.mu.Lock()
	c.dead[i] = true
	c.mu.Unlock()
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
	c.cut(i)
}

// cut closes every proxy of node i: its clients' and its routes'.
func (c *Cluster) cut(i int) {
	for _, p := range []*proxy{c.clients[i]} {
		if p != nil {
			p.cut()
		}
	}
	for j := range ClusterSize {
		for _, p := range []*proxy{c.routes[i][j], c.routes[j][i]} {
			if p != nil {
				p.cut()
			}
		}
	}
}

// alive returns the live nodes' numbers.
func (c *Cluster) alive() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i, d := range c.dead {
		if !d {
			out = append(out, i)
		}
	}
	return out
}

// connect opens a plain connection to the live nodes, closed in cleanup.
func (c *Cluster) connect(t testing.TB) *nats.Conn {
	t.Helper()
	live := c.alive()
	if len(live) == 0 {
		t.Fatal("wstest: every cluster node is dead")
	}
	nc, err := natsconf.Connect(c.URLs(live[0]), "wstest-cluster", nats.DontRandomize())
	if err != nil {
		t.Fatalf("wstest: connect to the cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// EnsureStores creates natter's streams and bucket (prefix "im") with cfg,
// as every handlers process does when it starts (natsconf.EnsureStores,
// which tries again while the cluster settles), waiting up to
// ClusterSetupTimeout.
func (c *Cluster) EnsureStores(t testing.TB, cfg natsconf.StoreConfig) {
	t.Helper()
	nc := c.connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ClusterSetupTimeout)
	defer cancel()
	if err := natsconf.EnsureStores(ctx, js, natsconf.MustSubjects(natsconf.DefaultPrefix), cfg); err != nil {
		t.Fatalf("wstest: create the stores: %v", err)
	}
}

// StreamLeader waits (up to ClusterSetupTimeout) until stream has a leader on a live node
// and every replica it reports is current, and returns the leader's node
// number: found with the JetStream API (the stream info's
// cluster.leader), as an operator would.
func (c *Cluster) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	nc := c.connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader, last := -1, ""
	if !embeddedtest.WaitFor(ClusterSetupTimeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			last = err.Error()
			return false
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			last = "no leader"
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				last = fmt.Sprintf("replica %s not current", r.Name)
				return false
			}
		}
		leader = c.Index(info.Cluster.Leader)
		return leader >= 0
	}) {
		t.Fatalf("wstest: stream %s has no leader: %s", stream, last)
	}
	return leader
}

// Leaders describes which node leads the JetStream meta layer and each
// of the given streams (a KV bucket is the stream KV_<bucket>), for logs:
// "meta n1, IM_ROOMS n2, …"; "?" when a stream has no leader now.
func (c *Cluster) Leaders(t testing.TB, streams ...string) string {
	t.Helper()
	meta := "?"
	for i, ns := range c.nodes {
		if !c.isDead(i) && ns.JetStreamIsLeader() {
			meta = ns.Name()
		}
	}
	out := []string{"meta " + meta}
	nc := c.connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range streams {
		leader := "?"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if s, err := js.Stream(ctx, name); err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
			leader = s.CachedInfo().Cluster.Leader
		}
		cancel()
		out = append(out, name+" "+leader)
	}
	return strings.Join(out, ", ")
}

func (c *Cluster) isDead(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead[i]
}

// edgeConns counts the connections named like an edge's on node i.
func (c *Cluster) edgeConns(i int) int {
	cz, err := c.nodes[i].Connz(&natsserver.ConnzOptions{})
	if err != nil {
		return -1
	}
	n := 0
	for _, conn := range cz.Conns {
		if conn.Name == "natter-edge" {
			n++
		}
	}
	return n
}

// StartEdge starts an edge (StartEdge) connected to node first, with every
// node in its NATS URL list (URLs(first), order kept): when first dies it
// reconnects to another node by itself. It fails the test if the edge did
// not connect to node first.
func (c *Cluster) StartEdge(t testing.TB, first int, cfg server.Config) *server.Server {
	t.Helper()
	before := c.edgeConns(first)
	cfg.NATSURL = c.URLs(first)
	prev := natsconf.KeepURLOrder(true)
	srv := StartEdge(t, cfg)
	natsconf.KeepURLOrder(prev)
	if !embeddedtest.WaitFor(ClusterSetupTimeout, func() bool { return c.edgeConns(first) == before+1 }) {
		t.Fatalf("wstest: the edge did not connect to node %d first", first+1)
	}
	return srv
}

// StartHandlers starts a copy of the named handlers (registry names, or
// "all") on a NATS connection of its own to node first, with every node in
// its URL list (order kept), creating the stores with stores. kill closes
// that connection abruptly, as when the process dies; whatever is left is
// stopped, and the connection drained, in cleanup.
func (c *Cluster) StartHandlers(t testing.TB, first int, stores natsconf.StoreConfig, names ...string) (kill func()) {
	t.Helper()
	nc, err := natsconf.Connect(c.URLs(first), "wstest-handlers-n"+strconv.Itoa(first+1), nats.DontRandomize())
	if err != nil {
		t.Fatalf("wstest: connect handlers to node %d: %v", first+1, err)
	}
	if got := nc.ConnectedUrl(); got != c.urls[first] {
		nc.Close()
		t.Fatalf("wstest: handlers connected to %s, not to node %d (%s)", got, first+1, c.urls[first])
	}
	ctx, cancel := context.WithTimeout(context.Background(), ClusterSetupTimeout)
	defer cancel()
	set, err := registry.Start(ctx, nc, runtime.Config{Logger: QuietLogger()}, stores, names...)
	if err != nil {
		nc.Close()
		t.Fatalf("wstest: start handlers %v on node %d: %v", names, first+1, err)
	}
	var once sync.Once
	kill = func() { once.Do(nc.Close) }
	t.Cleanup(func() {
		set.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := natsconf.Drain(ctx, nc); err != nil {
			nc.Close()
		}
		kill()
	})
	return kill
}

// proxy forwards the TCP connections it accepts on a loopback port to
// target, until cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	isCut  bool
	wg     sync.WaitGroup
}

// startProxy starts a proxy to target; it is cut in cleanup.
func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("wstest: proxy listener: %v", err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// count returns the number of connections the proxy forwards.
func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(in)
	}
}

// track registers conns to be closed by cut; false when cut already was.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

// forward copies both ways between in and a new connection to the target
// until either side ends, then closes both.
func (p *proxy) forward(in net.Conn) {
	defer p.wg.Done()
	out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !p.track(in, out) {
		_ = in.Close()
		_ = out.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(out, in)
		_ = in.Close()
		_ = out.Close()
	}()
	_, _ = io.Copy(in, out)
	_ = in.Close()
	_ = out.Close()
	p.untrack(in, out)
}

// cut stops accepting and closes every forwarded connection at once (both
// sides see it end, as when the kernel closes a killed process's
// sockets), and waits until the proxy's
// goroutines are done. It may be called more than once.
func (p *proxy) cut() {
	p.mu.Lock()
	p.isCut = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}
