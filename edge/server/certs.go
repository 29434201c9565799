package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certReloader serves the TLS certificate from a pair of files and loads
// them again when they change (polled) or when asked (SIGHUP), without
// touching established connections. A pair that fails to load is logged
// and the previous certificate stays in use.
type certReloader struct {
	certFile, keyFile string

	mu      sync.RWMutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// reload loads the pair now.
func (r *certReloader) reload() error {
	certMod, keyMod := modTime(r.certFile), modTime(r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("server: TLS certificate: %w", err)
	}
	r.mu.Lock()
	r.cert, r.certMod, r.keyMod = &cert, certMod, keyMod
	r.mu.Unlock()
	return nil
}

// changed reports whether either file changed since the last load.
func (r *certReloader) changed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return !modTime(r.certFile).Equal(r.certMod) || !modTime(r.keyFile).Equal(r.keyMod)
}

// watch reloads the pair when its files change, until done is closed.
func (r *certReloader) watch(every time.Duration, done <-chan struct{}, onReload func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if r.changed() {
				onReload(r.reload())
			}
		}
	}
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
