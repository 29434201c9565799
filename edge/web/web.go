// Package web serves natter's browser assets, embedded in the binary: the
// JavaScript SDK at /natter.js (an ES module for browsers, Node.js and WeChat
// mini-programs) and, when asked for, a demo chat page at / with its
// stylesheet and script.
//
// The edge mounts it next to its WebSocket endpoint:
//
//	mux.Handle("GET /", web.Handler())                // the SDK only
//	mux.Handle("GET /", web.Handler(web.WithDemo()))  // the SDK and the demo page
//
// The page connects to the WebSocket endpoint of the origin it was loaded
// from (ws://host/ws, or wss:// on an https page); ?ws=URL points it at
// another one.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// contentTypes fixes the types of the files the page is made of, so that
// they do not depend on the host's mime tables.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
}

// csp is the page's Content-Security-Policy: its own scripts and styles
// only, and WebSockets to any host (?ws= may name another edge).
const csp = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
	"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// sdkFile is the one file served without the demo page.
const sdkFile = "natter.js"

type handler struct {
	files http.Handler
	etags map[string]string // file name in static/ -> strong ETag, for every file served
}

// Option changes what Handler serves.
type Option func(*options)

type options struct {
	demo bool
}

// WithDemo makes Handler serve the demo chat page too: / (index.html),
// app.js and style.css.
func WithDemo() Option { return func(o *options) { o.demo = true } }

// Handler returns the http.Handler of the SDK, and of the demo page with
// WithDemo: GET (and HEAD) of /natter.js, and with the demo of / and every
// other file of the page, with an ETag so that browsers revalidate
// cheaply; 404 for anything else, 405 for other methods.
func Handler(opts ...Option) http.Handler {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: " + err.Error()) // the embed pattern guarantees the folder
	}
	h := &handler{files: http.FileServerFS(sub), etags: map[string]string{}}
	err = fs.WalkDir(sub, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if name != sdkFile && !o.demo {
			return nil
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.etags[name] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		panic("web: " + err.Error())
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	etag, ok := h.etags[name]
	if !ok || (strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != "/") {
		// No directory listings, nothing outside static/.
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	if ct, ok := contentTypes[path.Ext(name)]; ok {
		hd.Set("Content-Type", ct)
	}
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	if name == "index.html" {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Referrer-Policy", "no-referrer")
	}
	if name == sdkFile {
		// The SDK may be imported by pages of other origins.
		hd.Set("Access-Control-Allow-Origin", "*")
	}
	h.files.ServeHTTP(w, r)
}
