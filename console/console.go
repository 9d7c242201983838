package console

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

//go:embed assets
var assets embed.FS

// Console is the console's http.Handler. Mount it anywhere; its links are
// relative, so it works under a prefix through http.StripPrefix:
//
//	mux.Handle("/debug/coord/", http.StripPrefix("/debug/coord", c))
type Console struct {
	cli   *clientv3.Client
	o     options
	cache *cache
	mux   *http.ServeMux
	tmpl  *template.Template
	csrf  string // this console's token for its forms
	cop   *http.CrossOriginProtection
}

// New returns a console of the root (WithPrefix, default "coord/") read
// through cli. It starts following etcd at its first request, with one
// watch of the root, and stops at Close or when cli is closed. It returns
// an error for a bad option.
func New(cli *clientv3.Client, opts ...Option) (*Console, error) {
	o := options{root: "coord/", rows: 20, log: slog.Default()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, err // never: the templates are embedded and tested
	}
	var b [16]byte
	rand.Read(b[:])
	c := &Console{cli: cli, o: o, cache: newCache(cli, o), tmpl: tmpl, csrf: hex.EncodeToString(b[:]),
		cop: http.NewCrossOriginProtection()}
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.page)
	mux.HandleFunc("GET /state", c.state)
	mux.HandleFunc("GET /events", c.events)
	mux.HandleFunc("POST /action", c.action)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	c.mux = mux
	return c, nil
}

// ServeHTTP serves the page (GET /), its live state (GET /state, the
// fragment the page's script swaps in; GET /events, server-sent events
// saying it changed), its assets (GET /static/) and, when actions are on,
// the actions (POST /action).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Frame-Options", "DENY") // no clickjacking of its buttons
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("Referrer-Policy", "same-origin")
	if r.URL.Path == "" {
		// Mounted with StripPrefix and asked for without the slash: the
		// page's relative links need it.
		// The Location is relative to what the browser asked for (not
		// http.Redirect's, which resolves it against the stripped path).
		base, _, _ := strings.Cut(r.RequestURI, "?")
		base = base[strings.LastIndex(base, "/")+1:]
		h.Set("Location", base+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	c.cache.start()
	c.mux.ServeHTTP(w, r)
}

// Close stops following etcd and ends every viewer's live updates.
func (c *Console) Close() error {
	c.cache.close()
	return nil
}
